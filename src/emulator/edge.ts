// The emulator's edge: Fly Proxy on one computer. Load-balances requests across the app's
// Machines, honours `fly-replay` (header and JSON form), wakes stopped Machines, and streams
// responses and WebSocket tunnels through untouched.

import http from 'node:http'
import type { IncomingMessage, ServerResponse, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket, AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'

/** Fly replays at most this many times per request, then answers PA02 (platform notes §1.5). */
export const MAX_REPLAYS = 10
/** Fly cannot replay a request whose body is larger than this (platform notes §1.3). */
export const MAX_REPLAY_BODY_BYTES = 1024 * 1024
/** `timeout` when a fly-replay names none (Fly documents none; long enough for a cold start here). */
export const DEFAULT_REPLAY_TIMEOUT_MS = 10_000
const MAX_REPLAY_JSON_BYTES = 64 * 1024
const CONNECT_RETRY_MS = 100
/** A Machine that failed to start is asked again after this long (until the replay timeout). */
const WAKE_RETRY_MS = 250

/** A Machine as the edge sees it. */
export interface EdgeMachine {
  readonly id: string
  /** Fly Machine state: `started` is routable; `stopped`, `suspended`, `created` can be woken. */
  readonly state: string
  /** Base URL of the Machine's service (its sidecar), e.g. `http://127.0.0.1:41234`; set when started. */
  readonly url: string | undefined
}

/** What the edge needs from whatever runs the Machines (the runtime, or a test's fakes). */
export interface EdgeFleet {
  /** The app's Machines, any state. Called for each routing decision: keep it cheap. */
  list (): readonly EdgeMachine[]
  /** Starts a Machine that is not running and resolves with its URL once it accepts connections. */
  wake (id: string, signal: AbortSignal): Promise<string>
  /** The edge's count of open exchanges with a Machine changed (autostop watches this). */
  activity? (id: string, active: number): void
}

/** One line of the edge's story of a request; `dev` prints these and tests read them. */
export interface EdgeEvent {
  /**
   * route: sent to a Machine; replay: a Machine answered fly-replay; wake: a Machine is started for
   * it; ready: the woken Machine took the request (`ms` = how long the wake took); fallback: the
   * replay target could not be reached; served: a Machine's answer starts; chunk: response bytes
   * streamed so far (at most one event per 100 ms); done: the response ended; error: the edge
   * answered an error itself.
   */
  readonly type: 'route' | 'replay' | 'wake' | 'ready' | 'fallback' | 'served' | 'chunk' | 'done' | 'error'
  /** The `fly-request-id` the edge gave the client request (the same on every hop). */
  readonly requestId: string
  readonly method: string
  readonly path: string
  /** The Machine this event is about (served by, replayed from, woken). */
  readonly machine?: string
  /** replay: the Machine chosen (empty when none could be); fallback: the Machine that could not be reached. */
  readonly target?: string
  readonly state?: string
  readonly hop?: number
  readonly status?: number
  /** replay: `elsewhere` for elsewhere=true; wake: the state it was in; fallback: timeout | no_candidate; error: the code and message. */
  readonly reason?: string
  /** done: milliseconds from the request's arrival to the end of the response; ready: the wake's duration. */
  readonly ms?: number
  readonly bytes?: number
  /** chunk, done: response chunks streamed so far. */
  readonly chunks?: number
  /** replay: the instruction as the Machine sent it (the `fly-replay` header, or the JSON body). */
  readonly header?: string
  /** When it happened (ms since the epoch). */
  readonly at: number
}

/** Response chunks are reported at most this often (the live view counts them while they stream). */
const CHUNK_EVENT_MS = 100

export interface EdgeOptions {
  readonly app: string
  readonly fleet: EdgeFleet
  /** The region every emulated Machine is in (`fly-region`, `fly-replay-src`). */
  readonly region?: string
  readonly host?: string
  readonly port?: number
  readonly maxReplays?: number
  readonly maxReplayBodyBytes?: number
  readonly defaultReplayTimeoutMs?: number
  readonly onEvent?: (event: EdgeEvent) => void
  /**
   * Called first for every plain HTTP request; when it returns true it has answered the request
   * itself and the edge neither routes nor reports it (`dev` serves its live view this way).
   */
  readonly intercept?: (req: IncomingMessage, res: ServerResponse) => boolean
}

export interface Edge {
  readonly url: string
  readonly port: number
  /** Open exchanges per Machine id (least-connections balancing reads this). */
  active (id: string): number
  close (): Promise<void>
}

/** A parsed fly-replay instruction (header or `application/vnd.fly.replay+json`). */
export interface ReplayInstruction {
  instance?: string
  preferInstance?: string
  app?: string
  region?: string
  elsewhere: boolean
  state?: string
  timeoutMs?: number
  fallback?: 'prefer_self' | 'force_self'
  transform?: {
    path?: string
    deleteHeaders?: string[]
    setHeaders?: { name: string, value: string }[]
  }
}

// RFC 9110 §7.6.1 connection-specific fields, plus the ones Node manages itself.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
])

/** Parses a duration like `30s`, `800ms`, `2m`, or a bare number of seconds; undefined if invalid. */
export function parseDuration (text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text)
  if (m === null) return undefined
  const n = Number(m[1])
  const unit = m[2] ?? 's'
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000))
}

/** Splits `a=1;b="x;y",c=2` into pairs; both `;` and `,` separate (Fly docs use both), quotes honoured. */
export function parseFields (text: string): Map<string, string> {
  const out = new Map<string, string>()
  let key = ''
  let value = ''
  let inValue = false
  let quoted = false
  const flush = (): void => {
    const k = key.trim().toLowerCase()
    if (k !== '') out.set(k, inValue ? value.trim() : '')
    key = ''; value = ''; inValue = false
  }
  for (const ch of text) {
    if (quoted) {
      if (ch === '"') quoted = false
      else value += ch
    } else if (ch === '"' && inValue) {
      quoted = true
    } else if (ch === ';' || ch === ',') {
      flush()
    } else if (ch === '=' && !inValue) {
      inValue = true
    } else if (inValue) {
      value += ch
    } else {
      key += ch
    }
  }
  flush()
  return out
}

function fallbackOf (v: unknown): ReplayInstruction['fallback'] {
  return v === 'prefer_self' || v === 'force_self' ? v : undefined
}

/** Parses a `fly-replay` header value. */
export function parseReplayHeader (value: string): ReplayInstruction {
  const f = parseFields(value)
  const r: ReplayInstruction = { elsewhere: f.get('elsewhere') === 'true' }
  const set = <K extends 'instance' | 'preferInstance' | 'app' | 'region' | 'state'>(k: K, name: string): void => {
    const v = f.get(name)
    if (v !== undefined && v !== '') r[k] = v
  }
  set('instance', 'instance'); set('preferInstance', 'prefer_instance'); set('app', 'app')
  set('region', 'region'); set('state', 'state')
  const t = f.get('timeout')
  if (t !== undefined) { const ms = parseDuration(t); if (ms !== undefined) r.timeoutMs = ms }
  const fb = fallbackOf(f.get('fallback'))
  if (fb !== undefined) r.fallback = fb
  return r
}

/** Parses the JSON form (`application/vnd.fly.replay+json`); undefined when it is not an object. */
export function parseReplayJson (body: string): ReplayInstruction | undefined {
  let j: unknown
  try { j = JSON.parse(body) } catch { return undefined }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) return undefined
  const o = j as Record<string, unknown>
  const str = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? v : undefined
  const r: ReplayInstruction = { elsewhere: o.elsewhere === true || o.elsewhere === 'true' }
  const instance = str(o.instance); if (instance !== undefined) r.instance = instance
  const prefer = str(o.prefer_instance); if (prefer !== undefined) r.preferInstance = prefer
  const app = str(o.app); if (app !== undefined) r.app = app
  const region = str(o.region); if (region !== undefined) r.region = region
  const state = str(o.state); if (state !== undefined) r.state = state
  const timeout = str(o.timeout)
  if (timeout !== undefined) { const ms = parseDuration(timeout); if (ms !== undefined) r.timeoutMs = ms }
  const fb = fallbackOf(o.fallback); if (fb !== undefined) r.fallback = fb
  const t = o.transform
  if (t !== null && typeof t === 'object') {
    const tr = t as Record<string, unknown>
    r.transform = {}
    const path = str(tr.path); if (path !== undefined) r.transform.path = path
    if (Array.isArray(tr.delete_headers)) r.transform.deleteHeaders = tr.delete_headers.filter((h): h is string => typeof h === 'string')
    if (Array.isArray(tr.set_headers)) {
      r.transform.setHeaders = tr.set_headers.flatMap((h: unknown) => {
        const e = h as { name?: unknown, value?: unknown } | null
        return e !== null && typeof e === 'object' && typeof e.name === 'string' && typeof e.value === 'string'
          ? [{ name: e.name, value: e.value }]
          : []
      })
    }
  }
  return r
}

/** The client request as buffered for (re)sending. */
interface Inbound {
  readonly requestId: string
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly clientIp: string
  /** The whole body when it is at most the replay limit; undefined when it streams. */
  readonly body: Buffer | undefined
  /** When the body streams: what was read before the limit was crossed, and the rest. */
  readonly prefix: Buffer[]
  readonly rest: IncomingMessage | undefined
  readonly upgrade: boolean
  readonly start: number
  /** Aborted when the client goes away before the answer starts: nothing more is tried for it. */
  readonly gone: AbortSignal
}

/** One exchange with one Machine, up to its response head. */
type Exchange =
  | { kind: 'response', machine: string, res: IncomingMessage, release: () => void }
  | { kind: 'upgrade', machine: string, res: IncomingMessage, socket: Socket, head: Buffer, release: () => void }
  | { kind: 'unreachable', machine: string, reason: 'timeout' | 'no_candidate' }

class EdgeHttpError extends Error {
  readonly status: number
  readonly flyCode: string
  constructor (status: number, flyCode: string, message: string) {
    super(message)
    this.status = status
    this.flyCode = flyCode
  }
}

/**
 * Starts the edge on `host:port` (default 127.0.0.1:0). Every request gets a `fly-request-id`;
 * requests are sent to the least-busy started Machine (a stopped one is woken when none runs),
 * and a `fly-replay` answer sends the same request on, as Fly Proxy does.
 */
export async function startEdge (options: EdgeOptions): Promise<Edge> {
  const region = options.region ?? 'dev'
  const maxReplays = options.maxReplays ?? MAX_REPLAYS
  const maxBody = options.maxReplayBodyBytes ?? MAX_REPLAY_BODY_BYTES
  const defaultTimeout = options.defaultReplayTimeoutMs ?? DEFAULT_REPLAY_TIMEOUT_MS
  const fleet = options.fleet
  const onEvent = options.onEvent
  const emit = (e: Omit<EdgeEvent, 'at'>): void => { onEvent?.({ ...e, at: Date.now() }) }
  const activeCount = new Map<string, number>()
  let roundRobin = 0
  const openSockets = new Set<Duplex>()

  function acquire (id: string): () => void {
    const n = (activeCount.get(id) ?? 0) + 1
    activeCount.set(id, n)
    fleet.activity?.(id, n)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (activeCount.get(id) ?? 1) - 1
      activeCount.set(id, left)
      fleet.activity?.(id, left)
    }
  }

  const startable = (state: string): boolean =>
    state === 'stopped' || state === 'suspended' || state === 'created' || state === 'starting'

  /** Least connections among started Machines; ties go round robin. */
  function pickRunning (exclude: ReadonlySet<string>): EdgeMachine | undefined {
    const running = fleet.list().filter((m) => m.state === 'started' && m.url !== undefined && !exclude.has(m.id))
    if (running.length === 0) return undefined
    let least = Infinity
    for (const m of running) least = Math.min(least, activeCount.get(m.id) ?? 0)
    const best = running.filter((m) => (activeCount.get(m.id) ?? 0) === least)
    return best[roundRobin++ % best.length]
  }

  function pickAny (exclude: ReadonlySet<string>): EdgeMachine | undefined {
    return pickRunning(exclude) ?? fleet.list().find((m) => startable(m.state) && !exclude.has(m.id))
  }

  function outgoingHeaders (inb: Inbound, extra: Record<string, string>, drop: ReadonlySet<string>): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {}
    const connectionNamed = new Set(String(inb.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()))
    for (const [k, v] of Object.entries(inb.headers)) {
      if (v === undefined || drop.has(k)) continue
      if (!inb.upgrade && (HOP_BY_HOP.has(k) || connectionNamed.has(k))) continue
      if (inb.upgrade && (k === 'transfer-encoding' || k === 'keep-alive' || k === 'te' || k === 'trailer')) continue
      out[k] = v
    }
    if (inb.upgrade) { out.connection = 'Upgrade'; out.upgrade = inb.headers.upgrade ?? 'websocket' }
    // A body of unknown length stays one (the sidecar treats it as not replayable): Node would
    // otherwise send a buffered body with a content-length.
    if (!inb.upgrade && inb.headers['transfer-encoding'] !== undefined && inb.headers['content-length'] === undefined) {
      out['transfer-encoding'] = 'chunked'
    }
    const xff = inb.headers['x-forwarded-for']
    out['x-forwarded-for'] = xff === undefined ? inb.clientIp : `${String(xff)}, ${inb.clientIp}`
    out['x-forwarded-proto'] = 'http'
    out['fly-client-ip'] = inb.clientIp
    out['fly-region'] = region
    out['fly-request-id'] = inb.requestId
    for (const [k, v] of Object.entries(extra)) out[k] = v
    return out
  }

  /**
   * Sends the request to one Machine, waking it if needed and retrying refused connections until
   * `deadline` (only a failure to connect is retried: once bytes are sent, the answer is final).
   */
  async function exchange (inb: Inbound, machineId: string, path: string, headers: OutgoingHttpHeaders, deadline: number): Promise<Exchange> {
    const waker = new AbortController()
    for (;;) {
      if (inb.gone.aborted) throw new EdgeHttpError(499, 'PC01', 'the client went away')
      const m = fleet.list().find((x) => x.id === machineId)
      if (m === undefined || m.state === 'destroyed' || m.state === 'destroying' || m.state === 'failed') {
        return { kind: 'unreachable', machine: machineId, reason: 'no_candidate' }
      }
      let url = m.state === 'started' ? m.url : undefined
      if (url === undefined) {
        if (!startable(m.state) && m.state !== 'stopping') return { kind: 'unreachable', machine: machineId, reason: 'no_candidate' }
        emit({ type: 'wake', requestId: inb.requestId, method: inb.method, path: inb.path, machine: machineId, reason: m.state })
        const left = deadline - Date.now()
        if (left <= 0) return { kind: 'unreachable', machine: machineId, reason: 'timeout' }
        const timer = setTimeout(() => waker.abort(), left)
        const wakeStart = Date.now()
        try {
          url = await fleet.wake(machineId, waker.signal)
          emit({ type: 'ready', requestId: inb.requestId, method: inb.method, path: inb.path, machine: machineId, ms: Date.now() - wakeStart })
        } catch {
          if (Date.now() >= deadline) return { kind: 'unreachable', machine: machineId, reason: 'timeout' }
          await sleep(Math.min(WAKE_RETRY_MS, Math.max(0, deadline - Date.now())))
          continue
        } finally {
          clearTimeout(timer)
        }
      }
      const release = acquire(machineId)
      const result = await attempt(inb, machineId, url, path, headers, release)
      if (result !== 'refused') return result
      release()
      if (Date.now() + CONNECT_RETRY_MS >= deadline) return { kind: 'unreachable', machine: machineId, reason: 'timeout' }
      await sleep(CONNECT_RETRY_MS)
    }
  }

  function attempt (inb: Inbound, machineId: string, base: string, path: string, headers: OutgoingHttpHeaders, release: () => void): Promise<Exchange | 'refused'> {
    return new Promise((resolve, reject) => {
      const u = new URL(base)
      const req = http.request({
        host: u.hostname, port: u.port, method: inb.method, path, headers, agent: false, signal: inb.gone,
      })
      let connected = false
      req.on('socket', (s) => {
        s.once('connect', () => {
          connected = true
          // The body goes out only once connected, so a refused connection can be retried with it.
          if (inb.upgrade) req.end()
          else if (inb.body !== undefined) req.end(inb.body)
          else streamRest(inb, req)
        })
      })
      req.on('error', (err) => {
        if (!connected) resolve('refused')
        else reject(new EdgeHttpError(502, 'PU02', `request to Machine ${machineId} failed: ${err.message}`))
      })
      req.on('response', (res) => resolve({ kind: 'response', machine: machineId, res, release }))
      req.on('upgrade', (res, socket, head) => resolve({ kind: 'upgrade', machine: machineId, res, socket, head, release }))
    })
  }

  function streamRest (inb: Inbound, req: http.ClientRequest): void {
    for (const b of inb.prefix) req.write(b)
    if (inb.rest === undefined) { req.end(); return }
    inb.rest.pipe(req)
    inb.rest.resume()
  }

  async function replayInstruction (res: IncomingMessage): Promise<{ instr: ReplayInstruction, raw: string } | undefined> {
    const h = res.headers['fly-replay']
    if (typeof h === 'string' && h.trim() !== '') {
      res.resume()
      return { instr: parseReplayHeader(h), raw: h }
    }
    const ct = String(res.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
    if (ct !== 'application/vnd.fly.replay+json') return undefined
    const chunks: Buffer[] = []
    let size = 0
    for await (const c of res as AsyncIterable<Buffer>) {
      size += c.length
      if (size > MAX_REPLAY_JSON_BYTES) throw new EdgeHttpError(502, 'PA03', 'fly-replay JSON body too large')
      chunks.push(c)
    }
    const raw = Buffer.concat(chunks).toString('utf8')
    const r = parseReplayJson(raw)
    if (r === undefined) throw new EdgeHttpError(502, 'PA03', 'invalid fly-replay JSON body')
    return { instr: r, raw }
  }

  /** Routes a request through as many replays as it takes, up to the final response head. */
  async function resolveRequest (inb: Inbound): Promise<Exclude<Exchange, { kind: 'unreachable' }>> {
    const forced = headerValue(inb.headers['fly-force-instance-id'])
    const preferred = headerValue(inb.headers['fly-prefer-instance-id'])
    let first: EdgeMachine | undefined
    if (forced !== undefined) {
      first = fleet.list().find((m) => m.id === forced)
      if (first === undefined) throw new EdgeHttpError(503, 'PR03', `no Machine ${forced} (fly-force-instance-id)`)
    } else if (preferred !== undefined) {
      first = fleet.list().find((m) => m.id === preferred && (m.state === 'started' || startable(m.state)))
    }
    const tried = new Set<string>()
    let path = inb.path
    let extra: Record<string, string> = {}
    let drop: ReadonlySet<string> = new Set()
    let hops = 0
    let fallbackSent = false

    // The first hop: Fly retries another Machine when one refuses the connection.
    let ex: Exchange | undefined
    for (;;) {
      const m = first ?? pickAny(tried)
      first = undefined
      if (m === undefined) throw new EdgeHttpError(503, 'PR01', `no Machine of app ${options.app} can take the request`)
      tried.add(m.id)
      emit({ type: 'route', requestId: inb.requestId, method: inb.method, path, machine: m.id })
      ex = await exchange(inb, m.id, path, outgoingHeaders(inb, extra, drop), Date.now() + defaultTimeout)
      if (ex.kind !== 'unreachable') break
      if (forced !== undefined) throw new EdgeHttpError(503, 'PR03', `Machine ${forced} cannot be reached (fly-force-instance-id)`)
    }

    let current: Exclude<Exchange, { kind: 'unreachable' }> = ex
    for (;;) {
      const answered = current.kind === 'response' ? await replayInstruction(current.res) : undefined
      if (answered === undefined) return current
      const instr = answered.instr
      current.release()
      const origin = current.machine
      if (fallbackSent) throw new EdgeHttpError(502, 'PA03', `Machine ${origin} answered fly-replay to a replay fallback, which cannot replay again`)
      hops++
      if (hops > maxReplays) throw new EdgeHttpError(502, 'PA02', `too many fly-replay hops (more than ${maxReplays})`)
      if (inb.body === undefined && !inb.upgrade) {
        throw new EdgeHttpError(502, 'PA01', `request body over ${maxBody} bytes cannot be replayed`)
      }
      if (instr.app !== undefined && instr.app !== options.app) {
        throw new EdgeHttpError(502, 'PA04', `fly-replay app=${instr.app}: only app ${options.app} runs in this emulator`)
      }
      const state = instr.state
      const startedAt = Date.now()
      const deadline = startedAt + (instr.timeoutMs ?? defaultTimeout)
      const t = instr.transform
      if (t?.path !== undefined) path = t.path
      const dropNow = new Set(drop)
      const extraNow: Record<string, string> = { ...extra }
      for (const h of t?.deleteHeaders ?? []) { dropNow.add(h.toLowerCase()); delete extraNow[h.toLowerCase()] }
      for (const h of t?.setHeaders ?? []) extraNow[h.name.toLowerCase()] = h.value
      delete extraNow['fly-replay-failed']
      extraNow['fly-replay-src'] = `instance=${origin};region=${region};t=${Date.now() * 1000}` + (state !== undefined ? `;state=${state}` : '')
      extra = extraNow
      drop = dropNow

      let target: string | undefined
      let unavailableNote: string | undefined
      if (instr.instance !== undefined) {
        target = instr.instance
      } else if (instr.preferInstance !== undefined && fleet.list().some((m) => m.id === instr.preferInstance && m.state !== 'destroyed')) {
        target = instr.preferInstance
      } else {
        if (instr.preferInstance !== undefined) unavailableNote = instr.preferInstance
        target = pickAny(instr.elsewhere ? new Set([origin]) : new Set())?.id
      }
      emit({ type: 'replay', requestId: inb.requestId, method: inb.method, path, machine: origin, target: target ?? '', ...(state !== undefined ? { state } : {}), ...(instr.elsewhere ? { reason: 'elsewhere' } : {}), hop: hops, header: answered.raw })
      if (unavailableNote !== undefined) extra['fly-preferred-instance-unavailable'] = unavailableNote

      let next: Exchange = target === undefined
        ? { kind: 'unreachable', machine: '', reason: 'no_candidate' }
        : await exchange(inb, target, path, outgoingHeaders(inb, extra, drop), deadline)
      if (next.kind === 'unreachable') {
        if (instr.fallback === undefined) {
          throw new EdgeHttpError(502, 'PR04', `fly-replay target ${target ?? '(none)'} unavailable: ${next.reason}`)
        }
        const failed = `instance=${target ?? ''};app=${options.app};region=${region};replay_source=${origin};reason=${next.reason};elapsed_ms=${Date.now() - startedAt}`
        emit({ type: 'fallback', requestId: inb.requestId, method: inb.method, path, machine: origin, target: target ?? '', reason: next.reason })
        // The fallback goes back to the origin with the failure, not as a replay.
        const back: Record<string, string> = { ...extra, 'fly-replay-failed': failed }
        delete back['fly-replay-src']
        fallbackSent = true
        next = await exchange(inb, origin, path, outgoingHeaders(inb, back, drop), Date.now() + defaultTimeout)
        if (next.kind === 'unreachable' && instr.fallback === 'prefer_self') {
          const other = pickAny(new Set([origin]))
          if (other !== undefined) next = await exchange(inb, other.id, path, outgoingHeaders(inb, back, drop), Date.now() + defaultTimeout)
        }
        if (next.kind === 'unreachable') throw new EdgeHttpError(502, 'PR04', `replay fallback to ${origin} failed: ${next.reason}`)
      }
      current = next
    }
  }

  async function readInbound (req: IncomingMessage, upgrade: boolean, clientGone: AbortController): Promise<Inbound> {
    const base = {
      requestId: `${randomBytes(10).toString('hex')}-${region}`,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: req.headers,
      clientIp: req.socket.remoteAddress ?? '127.0.0.1',
      upgrade,
      start: Date.now(),
      gone: clientGone.signal,
    }
    if (upgrade) return { ...base, body: Buffer.alloc(0), prefix: [], rest: undefined }
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) > maxBody) {
      req.pause()
      return { ...base, body: undefined, prefix: [], rest: req }
    }
    // Buffer up to the replay limit (Fly keeps the body to replay it); past it, stream the rest.
    const chunks: Buffer[] = []
    let size = 0
    return await new Promise<Inbound>((resolve, reject) => {
      const onData = (c: Buffer): void => {
        chunks.push(c)
        size += c.length
        if (size > maxBody) {
          req.off('data', onData); req.off('end', onEnd); req.off('error', reject)
          req.pause()
          resolve({ ...base, body: undefined, prefix: chunks, rest: req })
        }
      }
      const onEnd = (): void => {
        req.off('error', reject)
        resolve({ ...base, body: Buffer.concat(chunks, size), prefix: [], rest: undefined })
      }
      req.on('data', onData)
      req.once('end', onEnd)
      req.once('error', reject)
    })
  }

  function responseHeaders (res: IncomingMessage, requestId: string): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {}
    const connectionNamed = new Set(String(res.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()))
    for (const [k, v] of Object.entries(res.headers)) {
      if (v === undefined || HOP_BY_HOP.has(k) || connectionNamed.has(k)) continue
      out[k] = v
    }
    out['fly-request-id'] = requestId
    return out
  }

  function sendError (res: ServerResponse, inb: Inbound | undefined, err: unknown): void {
    const e = err instanceof EdgeHttpError ? err : new EdgeHttpError(502, 'PP01', err instanceof Error ? err.message : String(err))
    if (inb !== undefined) emit({ type: 'error', requestId: inb.requestId, method: inb.method, path: inb.path, status: e.status, reason: `${e.flyCode}: ${e.message}` })
    if (res.headersSent || res.destroyed || inb?.gone.aborted === true) { res.destroy(); return }
    const body = JSON.stringify({ error: { code: e.flyCode, message: e.message } })
    res.writeHead(e.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(inb !== undefined ? { 'fly-request-id': inb.requestId } : {}) })
    res.end(body)
  }

  async function onRequest (req: IncomingMessage, res: ServerResponse): Promise<void> {
    let inb: Inbound | undefined
    try {
      const clientGone = new AbortController()
      res.once('close', () => { if (!res.headersSent) clientGone.abort() })
      inb = await readInbound(req, false, clientGone)
      const ex = await resolveRequest(inb)
      if (ex.kind !== 'response') { ex.socket.destroy(); ex.release(); throw new EdgeHttpError(502, 'PU02', 'Machine switched protocols on a plain request') }
      const up = ex.res
      const inbound = inb
      emit({ type: 'served', requestId: inb.requestId, method: inb.method, path: inb.path, machine: ex.machine, status: up.statusCode ?? 502 })
      res.writeHead(up.statusCode ?? 502, up.statusMessage, responseHeaders(up, inb.requestId))
      // Each chunk goes out as it arrives: no buffering of streamed responses.
      res.flushHeaders()
      let bytes = 0
      let chunks = 0
      let reported = 0
      let finished = false
      const done = (): void => {
        if (finished) return
        finished = true
        ex.release()
        emit({ type: 'done', requestId: inbound.requestId, method: inbound.method, path: inbound.path, machine: ex.machine, status: up.statusCode ?? 502, ms: Date.now() - inbound.start, bytes, chunks })
      }
      up.on('data', (c: Buffer) => {
        bytes += c.length
        chunks++
        // Throttled: a large download must not become thousands of events.
        if (onEvent !== undefined && Date.now() - reported >= CHUNK_EVENT_MS) {
          reported = Date.now()
          emit({ type: 'chunk', requestId: inbound.requestId, method: inbound.method, path: inbound.path, machine: ex.machine, bytes, chunks })
        }
        if (!res.write(c)) { up.pause(); res.once('drain', () => up.resume()) }
      })
      up.on('end', () => { res.end(); done() })
      // A Machine that aborts mid-stream must not look like a complete answer to the client.
      up.on('close', () => { if (!up.complete) res.destroy(); done() })
      up.on('error', () => { res.destroy(); done() })
      res.on('close', () => { if (!res.writableFinished) up.destroy(); done() })
    } catch (err) {
      sendError(res, inb, err)
    }
  }

  async function onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    openSockets.add(socket)
    socket.on('close', () => openSockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let inb: Inbound | undefined
    try {
      const clientGone = new AbortController()
      socket.once('close', () => clientGone.abort())
      inb = await readInbound(req, true, clientGone)
      if (head.length > 0) socket.unshift(head)
      const ex = await resolveRequest(inb)
      emit({ type: 'served', requestId: inb.requestId, method: inb.method, path: inb.path, machine: ex.machine, status: ex.res.statusCode ?? 502 })
      if (ex.kind === 'response') {
        // Refused upgrade: pass the Machine's answer through as it is.
        const lines = [`HTTP/1.1 ${ex.res.statusCode ?? 502} ${ex.res.statusMessage ?? ''}`]
        for (let i = 0; i < ex.res.rawHeaders.length; i += 2) lines.push(`${ex.res.rawHeaders[i]}: ${ex.res.rawHeaders[i + 1]}`)
        socket.write(lines.join('\r\n') + '\r\n\r\n')
        ex.res.pipe(socket)
        ex.res.on('end', () => ex.release())
        return
      }
      const lines = [`HTTP/1.1 101 ${ex.res.statusMessage ?? 'Switching Protocols'}`]
      for (let i = 0; i < ex.res.rawHeaders.length; i += 2) lines.push(`${ex.res.rawHeaders[i]}: ${ex.res.rawHeaders[i + 1]}`)
      socket.write(lines.join('\r\n') + '\r\n\r\n')
      if (ex.head.length > 0) socket.write(ex.head)
      openSockets.add(ex.socket)
      ex.socket.pipe(socket)
      socket.pipe(ex.socket)
      const end = (): void => { socket.destroy(); ex.socket.destroy(); ex.release(); openSockets.delete(ex.socket) }
      ex.socket.on('close', end)
      ex.socket.on('error', end)
      socket.on('close', end)
    } catch (err) {
      const e = err instanceof EdgeHttpError ? err : new EdgeHttpError(502, 'PP01', err instanceof Error ? err.message : String(err))
      if (inb !== undefined) emit({ type: 'error', requestId: inb.requestId, method: inb.method, path: inb.path, status: e.status, reason: `${e.flyCode}: ${e.message}` })
      const body = JSON.stringify({ error: { code: e.flyCode, message: e.message } })
      socket.end(`HTTP/1.1 ${e.status} ${http.STATUS_CODES[e.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
    }
  }

  const intercept = options.intercept
  const server = http.createServer((req, res) => {
    if (intercept !== undefined && intercept(req, res)) return
    void onRequest(req, res)
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { void onUpgrade(req, socket, head) })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  const port = (server.address() as AddressInfo).port
  const host = options.host ?? '127.0.0.1'
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    active: (id) => activeCount.get(id) ?? 0,
    close: async () => {
      for (const s of openSockets) s.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function headerValue (v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v
  return s === undefined || s.trim() === '' ? undefined : s.trim()
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
