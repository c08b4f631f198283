// Pure decisions of contract §4: where a request goes on a Machine of pool P, and, for a named
// pool, whether to replay, forward, serve here or reject. No I/O, no clock.
import type { IncomingHttpHeaders } from 'node:http'
import { FLY_REPLAY_MAX_BODY_BYTES, type PoolConfig } from '../config/types.ts'
import type { PoolPick } from '../machines/types.ts'
import { SidecarError } from '../errors.ts'

export interface RouteInput {
  /** This Machine's pool (env SIDECAR_POOL, else `app`). */
  readonly pool: string
  /** FLY_APP_NAME and FLY_MACHINE_ID are both known. */
  readonly onFly: boolean
  /** `fly-replay-src` is present: Fly's edge already replayed this request. */
  readonly replayed: boolean
  /** `fly-replay-failed` is present: a replay fallback came back here. */
  readonly fallback: boolean
  /** The matched rule's `to`, or `app` when no rule matched. */
  readonly target: string
  readonly ruleName: string | undefined
  /**
   * Set on a Machine of a pool on another Fly app (config `originApp`): requests for `app` go back
   * to that app with `fly-replay: app=<it>`, since `elsewhere` would stay inside the pool's app.
   * null: such a Machine without a known origin, where they are served here.
   */
  readonly originApp?: string | null | undefined
}

export type Route =
  | { readonly kind: 'local', readonly reason: 'not-on-fly' | 'replayed' | 'fallback' | 'same-pool' | 'no-origin' }
  /** Answer `fly-replay: elsewhere=true;state=<rule or "default">`. */
  | { readonly kind: 'elsewhere', readonly header: string }
  /** Send it to a Machine of this named pool (decidePool says how). */
  | { readonly kind: 'pool', readonly pool: string }

const LOCAL_REPLAYED: Route = Object.freeze({ kind: 'local', reason: 'replayed' })
const LOCAL_FALLBACK: Route = Object.freeze({ kind: 'local', reason: 'fallback' })
const LOCAL_NOT_ON_FLY: Route = Object.freeze({ kind: 'local', reason: 'not-on-fly' })
const LOCAL_SAME_POOL: Route = Object.freeze({ kind: 'local', reason: 'same-pool' })
const LOCAL_NO_ORIGIN: Route = Object.freeze({ kind: 'local', reason: 'no-origin' })

/**
 * Contract §4 steps 2-7 (the server answers the health path before this). In order: a replayed
 * request or a fallback is served here (never replay twice, never to yourself); off Fly everything
 * is served here; a target equal to this Machine's pool is served here; target `app` seen on a
 * named pool's Machine goes back to the ordinary Machines with `elsewhere=true`; any other target
 * is a named pool.
 */
export function route (input: RouteInput): Route {
  if (input.replayed) return LOCAL_REPLAYED
  if (input.fallback) return LOCAL_FALLBACK
  if (!input.onFly) return LOCAL_NOT_ON_FLY
  if (input.target === input.pool) return LOCAL_SAME_POOL
  if (input.target === 'app') {
    if (input.originApp === null) return LOCAL_NO_ORIGIN
    const to = input.originApp === undefined ? 'elsewhere=true' : `app=${input.originApp}`
    return { kind: 'elsewhere', header: `${to};state=${input.ruleName ?? 'default'}` }
  }
  return { kind: 'pool', pool: input.target }
}

const CONTENT_LENGTH_RE = /^[0-9]+$/

/**
 * Can Fly's edge replay this request? Yes when it has no body (neither content-length nor
 * transfer-encoding) or one valid content-length of at most `maxBytes` (1 MiB: exactly 1,048,576
 * still replays). No for any transfer-encoding (chunked: unknown length), a malformed or repeated
 * content-length, or a larger body.
 */
export function isReplayable (headers: IncomingHttpHeaders, maxBytes: number = FLY_REPLAY_MAX_BODY_BYTES): boolean {
  if (headers['transfer-encoding'] !== undefined) return false
  const length = headers['content-length']
  if (length === undefined) return true
  // Number() of a long digit string loses precision only far above any limit, so this is exact.
  return CONTENT_LENGTH_RE.test(length) && Number(length) <= maxBytes
}

/**
 * Whether a pool Machine must be picked: false for a pool on another app (Fly picks its Machine),
 * and when the body cannot be replayed and oversize is local or reject.
 */
export function needsPick (pool: PoolConfig, replayable: boolean): boolean {
  if (pool.app !== undefined) return false
  return replayable || pool.oversize === 'forward'
}

export interface PoolInput {
  readonly pool: PoolConfig
  readonly replayable: boolean
  /** The picked Machine, or undefined when needsPick() said none was needed (or none was asked). */
  readonly pick: PoolPick | undefined
  /** fly.replay-timeout as sent, e.g. "30s" (formatDuration). */
  readonly replayTimeout: string
  readonly ruleName: string
}

export type PoolDecision =
  /**
   * Answer 307 with `fly-replay: instance=<id>;timeout=<t>;fallback=prefer_self;state=<rule>`, or
   * `app=<name>;…` for a pool on another app (machineId is then '').
   */
  | { readonly kind: 'replay', readonly machineId: string, readonly header: string }
  /** Proxy the request to that Machine over the private network (oversize: forward). */
  | { readonly kind: 'forward', readonly machineId: string }
  | { readonly kind: 'local', readonly reason: 'oversize' | 'unavailable' }
  /** Answer 503 with this error's JSON body. */
  | { readonly kind: 'reject', readonly error: SidecarError }

const LOCAL_OVERSIZE: PoolDecision = Object.freeze({ kind: 'local', reason: 'oversize' })
const LOCAL_UNAVAILABLE: PoolDecision = Object.freeze({ kind: 'local', reason: 'unavailable' })

/**
 * Contract §4 step 5, for a request whose target is the named pool `input.pool`:
 * - a pool on another app (`app:`), replayable → `fly-replay: app=<name>` (no pick);
 * - replayable and a Machine picked → replay to it;
 * - not replayable → the pool's `oversize`: `local`, `reject` (SIDECAR_ERR_REPLAY_OVERSIZE), or
 *   `forward` to the picked Machine;
 * - no Machine to be had (for a replay or a forward) → the pool's `unavailable`: `local`, or
 *   `reject` (SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE, the pick's error as cause).
 */
export function decidePool (input: PoolInput): PoolDecision {
  const { pool, pick } = input
  if (!input.replayable) {
    if (pool.oversize === 'local') return LOCAL_OVERSIZE
    if (pool.oversize === 'reject') return { kind: 'reject', error: new SidecarError('SIDECAR_ERR_REPLAY_OVERSIZE', [pool.name]) }
  }
  // Another app: Fly's proxy balances over its Machines (and starts stopped ones); no pick.
  if (pool.app !== undefined) {
    if (!input.replayable) return LOCAL_OVERSIZE
    return { kind: 'replay', machineId: '', header: `app=${pool.app};timeout=${input.replayTimeout};fallback=prefer_self;state=${input.ruleName}` }
  }
  if (pick === undefined || !pick.ok) {
    if (pool.unavailable === 'local') return LOCAL_UNAVAILABLE
    const options = pick === undefined ? {} : { cause: pick.error }
    return { kind: 'reject', error: new SidecarError('SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE', [pool.name], options) }
  }
  if (!input.replayable) return { kind: 'forward', machineId: pick.machineId }
  return {
    kind: 'replay',
    machineId: pick.machineId,
    header: `instance=${pick.machineId};timeout=${input.replayTimeout};fallback=prefer_self;state=${input.ruleName}`,
  }
}

/**
 * A duration as fly-replay's `timeout` field takes it (Go-style units): whole minutes as `5m`,
 * whole seconds as `30s`, anything else in `ms`. 30000 → "30s", 1500 → "1500ms", 300000 → "5m",
 * 3600000 → "60m".
 */
export function formatDuration (ms: number): string {
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms > 0 && ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}
