// An in-memory Fly Machines API on 127.0.0.1 that follows the OpenAPI spec for the calls the
// sidecar makes (list, get, create, wait, start, stop, suspend, destroy), records every call and
// injects faults. The tests use it as the fake; the local emulator plugs real processes into it.
import http from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'

/** A Machine as the fake keeps it. `image` and `metadata` mirror `config.image`/`config.metadata`. */
export interface FakeMachine {
  id: string
  name: string
  state: string
  region: string
  readonly image: string
  config: Record<string, unknown> & { image?: string, metadata?: Record<string, string>, env?: Record<string, string> }
  readonly metadata: Record<string, string>
  created_at: string
  updated_at: string
  instance_id: string
  private_ip: string
  events: { id: string, type: string, status: string, source: string, timestamp: number }[]
}

/** Lifecycle hooks: the local emulator starts and stops real processes here. */
export interface MachinesApiRuntime {
  /** Once, right after a create (the Machine is `created`). */
  onCreate?(m: FakeMachine): Promise<void> | void
  /** Every time the Machine goes to `started`, its first boot included; it is `started` once this resolves (`failed` if it throws). */
  onStart?(m: FakeMachine): Promise<void> | void
  /** On stop and on suspend (the processes end); the state is `stopped`/`suspended` once this resolves. */
  onStop?(m: FakeMachine): Promise<void> | void
  /** On destroy; the state is `destroyed` once this resolves. */
  onDestroy?(m: FakeMachine): Promise<void> | void
  /**
   * Where a started Machine listens (e.g. http://127.0.0.1:40123), for the emulated private
   * network: `/_private/<id>/<path>` on this server is proxied there, as
   * `http://<id>.vm.<app>.internal:<port>/<path>` reaches a Machine on Fly.
   */
  privateUrl?(m: FakeMachine): string | undefined
}

export interface MachinesApiOptions {
  readonly app: string
  /** The expected token: `Authorization` must be it (FlyV1/Bearer tokens) or `Bearer <it>`; 401 otherwise. */
  readonly token?: string
  readonly runtime?: MachinesApiRuntime
  readonly logger?: Logger
  /** Time a new Machine stays `created` before it starts (Infinity: stuck in `created`). */
  readonly createDelayMs?: number | ((m: FakeMachine) => number)
  /** Region of Machines created without one, and of addMachine() without one. */
  readonly region?: string
  /** Like Fly's 60 s clamp, but shorter for tests: a wait never blocks longer than this. */
  readonly maxWaitMs?: number
  /** Lists leave out Machines created less than this long ago (Fly's list is eventually consistent). */
  readonly listLagMs?: number
}

export interface RecordedCall {
  readonly method: string
  readonly path: string
  readonly query: Record<string, string | string[]>
  readonly headers: IncomingHttpHeaders
  /** Parsed JSON request body; undefined when empty; the raw text when not JSON. */
  readonly body: unknown
  /** 0 until answered. */
  status: number
  /** The JSON answered (undefined for faults with garbage or a hang-up). */
  response?: unknown
}

/** Which calls a fault applies to. */
export type CallMatcher =
  | { readonly method?: string, readonly path?: string | RegExp }
  | ((call: RecordedCall) => boolean)

export interface FaultResponse {
  /** Answer this status instead of handling the call (unless `afterHandling`). Unset: handle normally after `delayMs`. */
  readonly status?: number
  /** JSON value, or a string sent as it is. */
  readonly body?: unknown
  readonly headers?: Readonly<Record<string, string>>
  /** Wait this long before answering. */
  readonly delayMs?: number
  /** Answer a body that is not JSON. */
  readonly garbage?: boolean
  /** Handle the call (e.g. really create), then answer the fault: the answer was lost. */
  readonly afterHandling?: boolean
  /** Close the connection without an answer. */
  readonly hangUp?: boolean
}

export interface FaultHandle {
  /** How many calls it has answered so far. */
  readonly hits: number
  clear(): void
}

export interface MachinesApi {
  /** e.g. http://127.0.0.1:40123 (what `fly.api-url` takes). */
  readonly url: string
  readonly calls: RecordedCall[]
  readonly machines: Map<string, FakeMachine>
  /** Seeds a Machine (by default `started`, no lifecycle hooks run), e.g. the calling sidecar's own. */
  addMachine(partial?: Partial<Omit<FakeMachine, 'image' | 'metadata'>> & { image?: string, metadata?: Record<string, string> }): FakeMachine
  /** Sets a Machine's state (waits are woken), e.g. to simulate autostop. */
  setState(id: string, state: string): void
  /** Answers `times` matching calls (default 1; Infinity = until cleared) with `response`. */
  fault(matcher: CallMatcher, response: FaultResponse | ((call: RecordedCall) => FaultResponse), times?: number): FaultHandle
  close(): Promise<void>
}

interface Reply {
  status: number
  body?: unknown
}

/** Path prefix of the emulated private network (see MachinesApiRuntime.privateUrl). */
export const PRIVATE_PREFIX = '/_private/'

const RUNNING = new Set(['started', 'starting', 'stopping', 'suspending', 'replacing'])

function hex (bytes: number): string {
  return randomBytes(bytes).toString('hex')
}

/** A 26-character, Crockford-base32-looking version id (ULID shaped). */
function ulidish (): string {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  return Array.from(randomBytes(26), (b) => alphabet[b % 32]).join('')
}

function imageRef (image: string): Record<string, string> {
  const at = image.indexOf('@')
  const digest = at >= 0 ? image.slice(at + 1) : ''
  const name = at >= 0 ? image.slice(0, at) : image
  const slash = name.indexOf('/')
  const registry = slash >= 0 && /[.:]/.test(name.slice(0, slash)) ? name.slice(0, slash) : ''
  const rest = registry === '' ? name : name.slice(slash + 1)
  const colon = rest.lastIndexOf(':')
  return { registry, repository: colon >= 0 ? rest.slice(0, colon) : rest, tag: colon >= 0 ? rest.slice(colon + 1) : 'latest', digest }
}

function makeMachine (fields: Partial<FakeMachine> & { config: FakeMachine['config'] }, region: string): FakeMachine {
  const id = fields.id ?? hex(7)
  const at = new Date().toISOString()
  const m = {
    id,
    name: fields.name ?? `machine-${id}`,
    state: fields.state ?? 'created',
    region: fields.region ?? region,
    config: fields.config,
    created_at: fields.created_at ?? at,
    updated_at: fields.updated_at ?? at,
    instance_id: fields.instance_id ?? ulidish(),
    private_ip: fields.private_ip ?? `fdaa:0:1:a7b:${hex(2)}:${hex(2)}:${hex(2)}:2`,
    events: fields.events ?? [],
  }
  Object.defineProperties(m, {
    image: { enumerable: false, get: () => m.config.image ?? '' },
    metadata: { enumerable: false, get: () => (m.config.metadata ??= {}) },
  })
  return m as unknown as FakeMachine
}

/** The Machine JSON of the spec's `Machine` schema (`summary` leaves out config and events). */
function machineJson (m: FakeMachine, summary: boolean): Record<string, unknown> {
  return {
    id: m.id,
    name: m.name,
    state: m.state,
    region: m.region,
    instance_id: m.instance_id,
    private_ip: m.private_ip,
    created_at: m.created_at,
    updated_at: m.updated_at,
    image_ref: imageRef(m.image),
    ...(summary ? {} : { config: m.config, events: m.events, checks: [] }),
  }
}

function queryOf (url: URL): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {}
  for (const key of new Set(url.searchParams.keys())) {
    const values = url.searchParams.getAll(key)
    query[key] = values.length === 1 ? values[0] as string : values
  }
  return query
}

function matches (matcher: CallMatcher, call: RecordedCall): boolean {
  if (typeof matcher === 'function') return matcher(call)
  if (matcher.method !== undefined && matcher.method.toUpperCase() !== call.method) return false
  if (matcher.path === undefined) return true
  return typeof matcher.path === 'string' ? matcher.path === call.path : matcher.path.test(call.path)
}

/** Starts the fake on 127.0.0.1:`port` (0 = any free port). */
export async function startMachinesApi (options: MachinesApiOptions, port = 0): Promise<MachinesApi> {
  const { app, runtime, logger } = options
  const defaultRegion = options.region ?? 'local'
  const maxWaitMs = Math.min(options.maxWaitMs ?? 60_000, 60_000)
  const machines = new Map<string, FakeMachine>()
  const calls: RecordedCall[] = []
  const faults: { matcher: CallMatcher, response: FaultResponse | ((call: RecordedCall) => FaultResponse), left: number, hits: number }[] = []
  const waiters = new Set<() => void>()
  const timers = new Set<NodeJS.Timeout>()
  let closed = false

  function later (ms: number, fn: () => void): void {
    if (!Number.isFinite(ms)) return
    const timer = setTimeout(() => { timers.delete(timer); fn() }, ms)
    timers.add(timer)
  }

  function setState (m: FakeMachine, state: string): void {
    m.state = state
    m.updated_at = new Date().toISOString()
    m.events.unshift({ id: ulidish(), type: state === 'started' ? 'start' : state, status: state, source: 'flyd', timestamp: Date.now() })
    for (const wake of [...waiters]) wake()
  }

  async function run (m: FakeMachine, during: string, after: string, hook: ((m: FakeMachine) => Promise<void> | void) | undefined): Promise<void> {
    setState(m, during)
    try {
      await hook?.(m)
      if (!closed && m.state === during) setState(m, after)
    } catch (err) {
      logger?.warn({ machine: m.id, err }, `fake machine ${during} failed`)
      if (!closed) setState(m, 'failed')
    }
  }

  const start = (m: FakeMachine): Promise<void> => run(m, 'starting', 'started', runtime?.onStart?.bind(runtime))

  function authorized (header: string | undefined): boolean {
    if (options.token === undefined) return true
    const token = options.token.trim()
    return header === token || header === `Bearer ${token}`
  }

  async function waitFor (m: FakeMachine, states: string[], ms: number): Promise<boolean> {
    if (states.includes(m.state)) return true
    return await new Promise<boolean>((resolve) => {
      const wake = (): void => {
        if (closed || states.includes(m.state)) { finish(); resolve(!closed) }
      }
      const timer = setTimeout(() => { finish(); resolve(false) }, ms)
      const finish = (): void => { clearTimeout(timer); waiters.delete(wake) }
      waiters.add(wake)
    })
  }

  async function handle (call: RecordedCall, url: URL): Promise<Reply> {
    if (!authorized(call.headers.authorization)) return { status: 401, body: { error: 'unauthorized' } }
    const prefix = `/v1/apps/${encodeURIComponent(app)}/machines`
    if (!call.path.startsWith('/v1/apps/')) return { status: 404, body: { error: 'not found' } }
    if (call.path !== prefix && !call.path.startsWith(`${prefix}/`)) return { status: 404, body: { error: 'app not found' } }
    const parts = call.path.slice(prefix.length).split('/').filter(Boolean).map(decodeURIComponent)
    const q = url.searchParams
    if (parts.length === 0) {
      if (call.method === 'GET') return list(q)
      if (call.method === 'POST') return create(call.body)
      return { status: 405, body: { error: 'method not allowed' } }
    }
    const m = machines.get(parts[0] as string)
    if (m === undefined) return { status: 404, body: { error: 'machine not found' } }
    const action = parts[1]
    if (parts.length === 1) {
      if (call.method === 'GET') return { status: 200, body: machineJson(m, false) }
      if (call.method === 'DELETE') return destroy(m, q.get('force') === 'true')
    } else if (parts.length === 2 && call.method === 'GET' && action === 'wait') {
      return wait(m, q)
    } else if (parts.length === 2 && call.method === 'POST') {
      if (action === 'start') {
        if (['stopped', 'suspended', 'created'].includes(m.state)) void start(m)
        return { status: 200, body: { previous_state: m.state } }
      }
      if (action === 'stop' || action === 'suspend') {
        if (RUNNING.has(m.state) || m.state === 'created') void run(m, action === 'stop' ? 'stopping' : 'suspending', action === 'stop' ? 'stopped' : 'suspended', runtime?.onStop?.bind(runtime))
        return { status: 200, body: { ok: true } }
      }
    }
    return { status: 404, body: { error: 'not found' } }
  }

  function list (q: URLSearchParams): Reply {
    const includeDeleted = q.get('include_deleted') === 'true'
    const states = q.get('state')?.split(',').filter(Boolean)
    const region = q.get('region')
    const summary = q.get('summary') === 'true'
    const filters = [...q.keys()].filter((k) => k.startsWith('metadata.')).map((k) => [k.slice('metadata.'.length), q.get(k)] as const)
    const visibleBefore = Date.now() - (options.listLagMs ?? 0)
    const out = [...machines.values()].filter((m) =>
      (includeDeleted || m.state !== 'destroyed') &&
      (states === undefined || states.includes(m.state)) &&
      (region === null || m.region === region) &&
      filters.every(([k, v]) => m.metadata[k] === v) &&
      Date.parse(m.created_at) <= visibleBefore)
    return { status: 200, body: out.map((m) => machineJson(m, summary)) }
  }

  function create (body: unknown): Reply {
    const request = body as { name?: string, region?: string, config?: FakeMachine['config'], skip_launch?: boolean } | undefined
    if (typeof request !== 'object' || request === null || typeof request.config !== 'object' || request.config === null) {
      return { status: 400, body: { error: 'config is required' } }
    }
    if (typeof request.config.image !== 'string' || request.config.image === '') return { status: 400, body: { error: 'image is required' } }
    const m = makeMachine({ config: structuredClone(request.config), ...(request.name === undefined ? {} : { name: request.name }), ...(request.region === undefined ? {} : { region: request.region }) }, defaultRegion)
    machines.set(m.id, m)
    m.events.unshift({ id: ulidish(), type: 'launch', status: 'created', source: 'user', timestamp: Date.now() })
    void (async () => {
      try {
        await runtime?.onCreate?.(m)
      } catch (err) {
        logger?.warn({ machine: m.id, err }, 'fake machine create hook failed')
        setState(m, 'failed')
        return
      }
      if (request.skip_launch === true) return
      const delay = typeof options.createDelayMs === 'function' ? options.createDelayMs(m) : (options.createDelayMs ?? 0)
      later(delay, () => { if (m.state === 'created') void start(m) })
    })()
    return { status: 200, body: machineJson(m, false) }
  }

  async function wait (m: FakeMachine, q: URLSearchParams): Promise<Reply> {
    const states = q.getAll('state').flatMap((s) => s.split(',')).filter(Boolean)
    const wanted = states.length > 0 ? states : ['started']
    const timeout = q.get('timeout')
    if (timeout !== null && !/^\d+$/.test(timeout)) return { status: 400, body: { error: 'timeout must be an integer number of seconds' } }
    const ms = Math.min(timeout === null ? 60_000 : Number(timeout) * 1000, maxWaitMs)
    if (await waitFor(m, wanted, ms)) return { status: 200, body: { ok: true, state: m.state, version: m.instance_id } }
    return { status: 408, body: { error: `deadline_exceeded: timeout waiting for machine to be ${wanted.join(',')}` } }
  }

  function destroy (m: FakeMachine, force: boolean): Reply {
    if (m.state === 'destroyed' || m.state === 'destroying') return { status: 200, body: { ok: true } }
    if (!force && RUNNING.has(m.state)) {
      return { status: 412, body: { error: `failed_precondition: unable to destroy machine, not currently stopped, suspended, or failed (state: ${m.state})` } }
    }
    void run(m, 'destroying', 'destroyed', runtime?.onDestroy?.bind(runtime))
    return { status: 200, body: { ok: true } }
  }

  function send (res: http.ServerResponse, call: RecordedCall, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}, garbage = false): void {
    call.status = status
    const text = garbage ? '<html>502 bad gateway' : typeof body === 'string' ? body : body === undefined ? '' : JSON.stringify(body)
    if (!garbage && typeof body !== 'string') call.response = body
    res.writeHead(status, { 'content-type': 'application/json', 'fly-request-id': `${ulidish()}-${defaultRegion}`, ...headers })
    res.end(text)
  }

  /** The emulated private network: not part of the Machines API, never recorded or faulted. */
  function privateNetwork (req: http.IncomingMessage, res: http.ServerResponse): void {
    const rest = (req.url ?? '').slice(PRIVATE_PREFIX.length)
    const slash = rest.indexOf('/')
    const id = decodeURIComponent(slash === -1 ? rest : rest.slice(0, slash))
    const m = machines.get(id)
    const base = m === undefined || m.state !== 'started' ? undefined : runtime?.privateUrl?.(m)
    if (base === undefined) {
      res.writeHead(502, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: `machine ${id} is not reachable on the private network` }))
      return
    }
    const upstream = http.request(`${base}${slash === -1 ? '/' : rest.slice(slash)}`, { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    upstream.on('error', () => { if (!res.headersSent) { res.writeHead(502); res.end() } else res.destroy() })
    req.pipe(upstream)
  }

  const server = http.createServer((req, res) => {
    if (req.url?.startsWith(PRIVATE_PREFIX) === true) { privateNetwork(req, res); return }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'http://fake')
        const raw = Buffer.concat(chunks).toString('utf8')
        let body: unknown
        if (raw !== '') {
          try { body = JSON.parse(raw) } catch { body = raw }
        }
        const call: RecordedCall = { method: req.method ?? 'GET', path: url.pathname, query: queryOf(url), headers: req.headers, body, status: 0 }
        calls.push(call)
        const fault = faults.find((f) => f.left > 0 && matches(f.matcher, call))
        let response: FaultResponse | undefined
        if (fault !== undefined) {
          fault.left--
          fault.hits++
          response = typeof fault.response === 'function' ? fault.response(call) : fault.response
          if (response.delayMs !== undefined) await new Promise((resolve) => later(response?.delayMs ?? 0, () => resolve(undefined)))
          if (closed) return
          if (response.hangUp === true) { req.socket.destroy(); return }
        }
        if (response !== undefined && response.status !== undefined && response.afterHandling !== true) {
          send(res, call, response.status, response.body, response.headers, response.garbage)
          return
        }
        const reply = await handle(call, url)
        if (response?.afterHandling === true && response.status !== undefined) {
          send(res, call, response.status, response.body, response.headers, response.garbage)
          return
        }
        send(res, call, reply.status, reply.body, response?.headers)
      })().catch((err: unknown) => {
        logger?.error({ err }, 'fake machines api failed')
        if (!res.headersSent) { res.writeHead(500); res.end('{"error":"fake failed"}') }
      })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  const address = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${address.port}`,
    calls,
    machines,
    addMachine (partial = {}) {
      const { image, metadata, config, ...rest } = partial
      const cfg: FakeMachine['config'] = structuredClone(config ?? {})
      cfg.image ??= image ?? `registry.fly.io/${app}:deployment-1`
      if (metadata !== undefined) cfg.metadata = { ...cfg.metadata, ...metadata }
      const m = makeMachine({ state: 'started', ...rest, config: cfg }, defaultRegion)
      machines.set(m.id, m)
      return m
    },
    setState (id, state) {
      const m = machines.get(id)
      if (m === undefined) throw new Error(`no fake machine ${id}`)
      setState(m, state)
    },
    fault (matcher, response, times = 1) {
      const entry = { matcher, response, left: times, hits: 0 }
      faults.push(entry)
      return {
        get hits () { return entry.hits },
        clear () { entry.left = 0 },
      }
    },
    async close () {
      closed = true
      for (const timer of timers) clearTimeout(timer)
      for (const wake of [...waiters]) wake()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
