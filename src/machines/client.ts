// Fly Machines API client (undici): list, get, create, wait, stop, destroy. Every call has a
// timeout, a per-action rate limit, retries with backoff on 408/429/5xx and network errors (never
// for create, whose retry needs a re-list first), and goes through one circuit breaker.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Dispatcher, Pool } from 'undici'
import type { Logger } from 'pino'
import { SidecarError } from '../errors.ts'
import type { CreateMachineRequest, Machine, WaitMachineResponse } from './api-types.ts'
import { METADATA_POOL } from './api-types.ts'
import { CircuitBreaker, TokenBucket, backoffDelay, parseRetryAfter } from './resilience.ts'

export interface RateLimit {
  readonly perSecond: number
  readonly burst: number
}

/** Timing knobs; the defaults suit Fly, tests shrink them. */
export interface ClientTiming {
  /** Timeout of one HTTP attempt (a `wait` gets its own `timeout` on top). */
  readonly callTimeoutMs: number
  /** Attempts per call, the first included. */
  readonly attempts: number
  readonly backoffBaseMs: number
  readonly backoffCapMs: number
  /** A Retry-After longer than this is not waited for: the call fails instead. */
  readonly maxRetryAfterMs: number
  /** Per action (list, create, wait, stop, destroy): Fly allows 1 req/s, burst 3. */
  readonly rate: RateLimit
  /** `get` is allowed 5 req/s, burst 10. */
  readonly getRate: RateLimit
  readonly circuitFailureThreshold: number
  readonly circuitOpenMs: number
}

export const DEFAULT_CLIENT_TIMING: ClientTiming = {
  callTimeoutMs: 10_000,
  attempts: 4,
  backoffBaseMs: 250,
  backoffCapMs: 5_000,
  maxRetryAfterMs: 30_000,
  rate: { perSecond: 1, burst: 3 },
  getRate: { perSecond: 5, burst: 10 },
  circuitFailureThreshold: 5,
  circuitOpenMs: 30_000,
}

export interface MachinesClientOptions {
  /** e.g. http://_api.internal:4280; `/v1/apps/<app>/machines` is appended. */
  readonly apiUrl: string
  readonly app: string
  /** A secret: only ever put in the Authorization header. */
  readonly token: string
  readonly logger: Logger
  readonly timing?: Partial<ClientTiming>
  readonly now?: () => number
  readonly random?: () => number
  /** Every HTTP attempt: op, outcome (`ok` for 2xx, else the status, `timeout`, `network`, `bad_response` or `circuit_open`), seconds. */
  readonly onCall?: (op: string, outcome: string, seconds: number) => void
}

export interface MachinesClient {
  /** `GET /machines?metadata.sidecar_pool=<pool>`, filtered again here (the filter is not in the spec). */
  list (pool: string): Promise<Machine[]>
  /** `GET /machines/{id}`; undefined when the API answers 404. */
  get (id: string): Promise<Machine | undefined>
  /** `POST /machines`; never retried here (a 408/5xx create may have succeeded). */
  create (request: CreateMachineRequest): Promise<Machine>
  /** `GET /machines/{id}/wait?state=&timeout=`; false when the API answers 408 (not reached in time). */
  wait (id: string, state: string, timeoutSeconds: number): Promise<boolean>
  /** `POST /machines/{id}/stop`. */
  stop (id: string): Promise<void>
  /** `DELETE /machines/{id}` (`?force=true` when forced); a 404 counts as done. */
  destroy (id: string, force: boolean): Promise<void>
  /** The last outcome, for the health body (never contains the token). */
  readonly lastOutcome: { readonly at: number, readonly ok: boolean, readonly message?: string } | undefined
  close (): Promise<void>
}

/** The Authorization header value (contract §5): `FlyV1 `/`Bearer ` tokens as they are, else Bearer. */
export function authorizationHeader (token: string): string {
  const trimmed = token.trim()
  return /^(FlyV1|Bearer) /.test(trimmed) ? trimmed : `Bearer ${trimmed}`
}

const BODY_EXCERPT_CHARS = 300

/**
 * A failure worth retrying: timeouts, network errors, unreadable bodies, 408, 429 and 5xx. For a
 * create the same set means "it may have been created anyway" (platform notes §5.2).
 */
export function isTransient (err: unknown): boolean {
  if (!(err instanceof SidecarError)) return false
  switch (err.code) {
    case 'SIDECAR_ERR_MACHINES_TIMEOUT':
    case 'SIDECAR_ERR_MACHINES_NETWORK':
    case 'SIDECAR_ERR_MACHINES_BAD_RESPONSE':
      return true
    case 'SIDECAR_ERR_MACHINES_HTTP': {
      const status = err.details?.status as number
      return status === 408 || status === 429 || status >= 500
    }
    default:
      return false
  }
}

interface CallSpec {
  readonly op: string
  readonly method: Dispatcher.HttpMethod
  readonly path: string
  readonly query?: Record<string, string>
  readonly body?: unknown
  readonly retry: boolean
  readonly timeoutMs?: number
  /** Statuses answered to the caller instead of thrown (e.g. 404 on get, 408 on wait): answers, not failures. */
  readonly passStatuses?: readonly number[]
}

interface CallResult {
  readonly status: number
  readonly json: unknown
}

/**
 * Creates the client; the buckets and circuit are built once, here, the undici pool at the first
 * call: undici (and the http2, tls, dns, zlib and worker_threads modules it loads) costs an idle
 * sidecar about 20 MiB, and a sidecar whose pools never call the API never needs it.
 */
export function createMachinesClient (options: MachinesClientOptions): MachinesClient {
  const timing: ClientTiming = { ...DEFAULT_CLIENT_TIMING, ...options.timing }
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const { logger } = options
  const url = new URL(options.apiUrl)
  const basePath = `${url.pathname.replace(/\/+$/, '')}/v1/apps/${encodeURIComponent(options.app)}/machines`
  let pool: Promise<Pool> | undefined
  const dispatcher = (): Promise<Pool> => {
    pool ??= import('undici').then(({ Pool }) => new Pool(url.origin, { connections: 8, keepAliveTimeout: 10_000, connect: { timeout: timing.callTimeoutMs } }))
    return pool
  }
  const auth = authorizationHeader(options.token)
  // The bare secret too: an API echoing it back must not get it into an error message.
  const secrets = [...new Set([options.token.trim(), auth.replace(/^(FlyV1|Bearer) /, '')])].filter((s) => s.length >= 4)
  const buckets = new Map<string, TokenBucket>()
  const circuit = new CircuitBreaker({ failureThreshold: timing.circuitFailureThreshold, openMs: timing.circuitOpenMs }, now)
  const closing = new AbortController()
  let lastOutcome: MachinesClient['lastOutcome']

  function redact (text: string): string {
    let out = text
    for (const secret of secrets) out = out.split(secret).join('[redacted]')
    return out
  }

  function bucketFor (op: string): TokenBucket {
    let bucket = buckets.get(op)
    if (bucket === undefined) {
      const rate = op === 'get' ? timing.getRate : timing.rate
      bucket = new TokenBucket(rate.perSecond, rate.burst, now)
      buckets.set(op, bucket)
    }
    return bucket
  }

  function record (op: string, outcome: string, startedAt: number, error?: SidecarError): void {
    options.onCall?.(op, outcome, (performance.now() - startedAt) / 1000)
    lastOutcome = error === undefined ? { at: now(), ok: true } : { at: now(), ok: false, message: error.message }
  }

  function httpError (op: string, status: number, body: string, flyRequestId: string | undefined, retryAfterMs: number | undefined): SidecarError {
    const excerpt = redact(body.replace(/\s+/g, ' ').trim().slice(0, BODY_EXCERPT_CHARS))
    return new SidecarError('SIDECAR_ERR_MACHINES_HTTP', [op, status, flyRequestId ?? '-', excerpt || '(empty body)'], {
      details: { op, status, body: excerpt, flyRequestId, retryAfterMs },
    })
  }

  /** One attempt; throws a SidecarError that isTransient() classifies. */
  async function attempt (spec: CallSpec): Promise<CallResult> {
    const wait = bucketFor(spec.op).take()
    if (wait > 0) await sleep(wait, undefined, { signal: closing.signal })
    const started = performance.now()
    const timeoutMs = spec.timeoutMs ?? timing.callTimeoutMs
    const signal = AbortSignal.any([closing.signal, AbortSignal.timeout(timeoutMs)])
    const path = spec.query === undefined ? basePath + spec.path : `${basePath}${spec.path}?${new URLSearchParams(spec.query).toString()}`
    const headers: Record<string, string> = { authorization: auth, accept: 'application/json', 'user-agent': 'fly-replay-sidecar' }
    let payload: string | undefined
    if (spec.body !== undefined) {
      payload = JSON.stringify(spec.body)
      headers['content-type'] = 'application/json'
    }
    let status: number
    let text: string
    let flyRequestId: string | undefined
    let retryAfter: string | string[] | undefined
    const api = await dispatcher()
    try {
      const res = await api.request({ method: spec.method, path, headers, body: payload ?? null, signal, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
      status = res.statusCode
      const id = res.headers['fly-request-id']
      flyRequestId = Array.isArray(id) ? id[0] : id
      retryAfter = res.headers['retry-after']
      text = await res.body.text()
    } catch (cause) {
      if (closing.signal.aborted) throw new SidecarError('SIDECAR_ERR_MACHINES_CLOSED', [], { cause })
      const timedOut = signal.aborted || (cause as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT' || (cause as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT'
      const error = timedOut
        ? new SidecarError('SIDECAR_ERR_MACHINES_TIMEOUT', [spec.op, timeoutMs], { cause, details: { op: spec.op } })
        : new SidecarError('SIDECAR_ERR_MACHINES_NETWORK', [spec.op, redact(String((cause as Error).message))], { cause, details: { op: spec.op, errno: (cause as { code?: string }).code } })
      circuit.failure()
      record(spec.op, timedOut ? 'timeout' : 'network', started, error)
      throw error
    }
    const passed = spec.passStatuses?.includes(status) === true
    const ok = status >= 200 && status < 300
    // Any answer but 408/429/5xx shows the API is up, as far as the circuit is concerned.
    if (passed || !(status === 408 || status === 429 || status >= 500)) circuit.success()
    else circuit.failure()
    if (passed || ok) {
      let json: unknown
      // A passed-through error status only needs its status: its body may be anything.
      if (text !== '' && ok) {
        try {
          json = JSON.parse(text)
        } catch (cause) {
          const error = new SidecarError('SIDECAR_ERR_MACHINES_BAD_RESPONSE', [spec.op], { cause, details: { op: spec.op, status, body: redact(text.slice(0, BODY_EXCERPT_CHARS)), flyRequestId } })
          record(spec.op, 'bad_response', started, error)
          throw error
        }
      }
      record(spec.op, ok ? 'ok' : String(status), started)
      return { status, json }
    }
    const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(retryAfter, now()) : undefined
    const error = httpError(spec.op, status, text, flyRequestId, retryAfterMs)
    record(spec.op, String(status), started, error)
    throw error
  }

  async function call (spec: CallSpec): Promise<CallResult> {
    for (let n = 0; ; n++) {
      if (closing.signal.aborted) throw new SidecarError('SIDECAR_ERR_MACHINES_CLOSED')
      const blockedMs = circuit.check()
      if (blockedMs > 0) {
        const error = new SidecarError('SIDECAR_ERR_MACHINES_CIRCUIT_OPEN', [blockedMs, circuit.consecutiveFailures], { details: { op: spec.op } })
        options.onCall?.(spec.op, 'circuit_open', 0)
        lastOutcome = { at: now(), ok: false, message: error.message }
        throw error
      }
      try {
        return await attempt(spec)
      } catch (err) {
        const e = err as SidecarError
        if (!spec.retry || !isTransient(e) || n + 1 >= timing.attempts) throw err
        const delay = (e.details?.retryAfterMs as number | undefined) ?? backoffDelay(n, { baseMs: timing.backoffBaseMs, capMs: timing.backoffCapMs }, random)
        if (delay > timing.maxRetryAfterMs) throw err
        logger.warn({ op: spec.op, code: e.code, status: e.details?.status, flyRequestId: e.details?.flyRequestId, attempt: n + 1, delayMs: delay }, 'machines api call failed, retrying')
        await sleep(delay, undefined, { signal: closing.signal }).catch(() => undefined)
      }
    }
  }

  function machines (json: unknown, op: string): Machine[] {
    if (!Array.isArray(json)) throw new SidecarError('SIDECAR_ERR_MACHINES_BAD_RESPONSE', [op])
    return json.filter((m): m is Machine => typeof m === 'object' && m !== null && typeof (m as Machine).id === 'string')
  }

  function machine (json: unknown, op: string): Machine {
    if (typeof json !== 'object' || json === null || typeof (json as Machine).id !== 'string') throw new SidecarError('SIDECAR_ERR_MACHINES_BAD_RESPONSE', [op])
    return json as Machine
  }

  const id = (machineId: string): string => `/${encodeURIComponent(machineId)}`

  return {
    async list (poolName) {
      const { json } = await call({ op: 'list', method: 'GET', path: '', query: { [`metadata.${METADATA_POOL}`]: poolName }, retry: true })
      return machines(json, 'list').filter((m) => m.config?.metadata?.[METADATA_POOL] === poolName)
    },
    async get (machineId) {
      const { status, json } = await call({ op: 'get', method: 'GET', path: id(machineId), retry: true, passStatuses: [404] })
      return status === 404 ? undefined : machine(json, 'get')
    },
    async create (request) {
      const { json } = await call({ op: 'create', method: 'POST', path: '', body: request, retry: false })
      return machine(json, 'create')
    },
    async wait (machineId, state, timeoutSeconds) {
      const seconds = Math.max(1, Math.min(60, Math.round(timeoutSeconds)))
      const { status, json } = await call({
        op: 'wait',
        method: 'GET',
        path: `${id(machineId)}/wait`,
        query: { state, timeout: String(seconds) },
        retry: true,
        timeoutMs: seconds * 1000 + timing.callTimeoutMs,
        passStatuses: [408],
      })
      return status !== 408 && (json as WaitMachineResponse | undefined)?.ok !== false
    },
    async stop (machineId) {
      await call({ op: 'stop', method: 'POST', path: `${id(machineId)}/stop`, retry: true })
    },
    async destroy (machineId, force) {
      await call({ op: 'destroy', method: 'DELETE', path: id(machineId), ...(force ? { query: { force: 'true' } } : {}), retry: true, passStatuses: [404] })
    },
    get lastOutcome () { return lastOutcome },
    async close () {
      closing.abort()
      if (pool !== undefined) await (await pool).destroy()
    },
  }
}
