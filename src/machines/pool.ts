// PoolMachines over the Fly Machines API: a cache per pool, single-flight lookups and creations,
// convergence after create races, stale-image replacement and replacement of creates that never start.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Config, PoolConfig } from '../config/types.ts'
import { SidecarError, isSidecarError } from '../errors.ts'
import type { Machine } from './api-types.ts'
import { METADATA_CREATE_ID } from './api-types.ts'
import { buildCreateRequest } from './clone.ts'
import { DEFAULT_CLIENT_TIMING, createMachinesClient, isTransient } from './client.ts'
import type { ClientTiming, MachinesClient } from './client.ts'
import { DEAD_STATES, IDLE_STATES, placeByLoad, scaleDown, viewPool } from './select.ts'
import type { Placed } from './select.ts'
import { DEFAULT_LOAD_TIMING, createLoadBook } from './load.ts'
import type { LoadBook, LoadTiming } from './load.ts'
import type { Agent } from 'undici'
import type { PoolMachineSnapshot, PoolMachines, PoolPick } from './types.ts'
import { randomHex } from '../random-hex.ts'

/** Timing knobs of the pools (and of the client underneath); tests shrink them. */
export interface PoolTiming extends ClientTiming, LoadTiming {
  /** How long a lookup is trusted; after that the next pick refreshes in the background. */
  readonly cacheTtlMs: number
  /** After a failed lookup with nothing cached, picks fail at once for this long. */
  readonly errorRetryMs: number
  /** `timeout` of one wait call, in seconds (Fly's maximum is 60). */
  readonly waitSeconds: number
  /** A new Machine must reach `started` within this; one still `created` is destroyed and replaced. */
  readonly startTimeoutMs: number
  /** Pause before re-listing after an ambiguous create (the list lags behind creates). */
  readonly relistDelayMs: number
  /** Within this long after a create, a list that lacks the created Machine is checked with a get. */
  readonly distrustEmptyMs: number
  /** Create attempts per missing Machine (ambiguous failures and stuck creates included). */
  readonly createAttempts: number
  /** Elastic pools with Machines beyond `min`: how often (at most) they are listed to find ones to destroy; half of destroy-after when that is shorter, but not under 1 s. */
  readonly scaleDownEveryMs: number
  /** A Machine handed out this recently (or within destroy-after, when shorter) is never destroyed by scale-down. */
  readonly handedOutRecentMs: number
}

export const DEFAULT_POOL_TIMING: PoolTiming = {
  ...DEFAULT_CLIENT_TIMING,
  cacheTtlMs: 30_000,
  errorRetryMs: 5_000,
  waitSeconds: 60,
  startTimeoutMs: 120_000,
  relistDelayMs: 1_000,
  distrustEmptyMs: 60_000,
  createAttempts: 3,
  ...DEFAULT_LOAD_TIMING,
  scaleDownEveryMs: 60_000,
  handedOutRecentMs: 60_000,
}

export interface PoolMachinesHooks {
  /** Every Machines API attempt (metrics). */
  onCall?(op: string, outcome: string, seconds: number): void
  onCreated?(pool: string): void
  /** A Machine was created to replace one with a stale image. */
  onReplaced?(pool: string): void
  /** Elastic pool at `max`, every Machine at `concurrency`: placed on the least-loaded anyway. */
  onOverflow?(pool: string): void
  /** Elastic pool: a Machine beyond `min` destroyed after `destroy-after`. */
  onScaledDown?(pool: string): void
}

export interface PoolMachinesOptions {
  readonly config: Config
  readonly logger: Logger
  /** Clock for cache expiry and the distrust window (tests). */
  readonly now?: () => number
  readonly hooks?: PoolMachinesHooks
  readonly timing?: Partial<PoolTiming>
  /** Jitter source (tests). */
  readonly random?: () => number
  /**
   * Reads a pool Machine's reported in-flight count (elastic pools). Default: GET of the health
   * path at `fly.private-url` with the Machine's id, over the private network.
   */
  readonly readLoad?: (machineId: string, signal: AbortSignal) => Promise<number>
}

interface PoolState {
  readonly config: PoolConfig
  /** Kept Machines in rotation order, and their ready-made picks. */
  machines: Machine[]
  picks: PoolPick[]
  /** Machines with another image: a fallback while no current one can be had. */
  stale: Machine[]
  /** How many current-image Machines the pool has (usable or not): what creation tops up to `size`. */
  kept: number
  /** Created here but never reached `started` in time: not handed out until a list shows them started. */
  readonly unready: Set<string>
  next: number
  expiresAt: number
  failUntil: number
  refreshing: Promise<void> | undefined
  growing: Promise<void> | undefined
  /** Machines created in the last distrustEmptyMs: a list without one of them is checked with a get. */
  readonly recentCreates: Map<string, number>
  /** Created by this process; the ones never handed out may be stopped as extras. */
  readonly created: Set<string>
  readonly handedOut: Set<string>
  /** Elastic pools: when each Machine was last handed out (scale-down spares recent ones). */
  readonly handedAt: Map<string, number>
  /** Elastic pools: creations under way, and the requests waiting for a Machine with room. */
  creating: number
  readonly waiters: ((pick: PoolPick) => void)[]
  /** Elastic pools: a re-list is wanted after the one running (a create finished meanwhile). */
  settleAgain: boolean
  settling: Promise<void> | undefined
  /** Elastic pools: waiting for load reports before deciding to create. */
  confirming: Promise<void> | undefined
  scaleTimer: NodeJS.Timeout | undefined
  /** Machines this sidecar created and is still waiting to see started. */
  readonly waitingFor: Set<string>
  /** Stop/destroy already asked for (once per Machine). */
  readonly retiring: Set<string>
  lastError: SidecarError | undefined
  lastOutcome: PoolMachineSnapshot['lastOutcome']
}

/** A create id: time-ordered and random, short enough for a Machine name. */
function newCreateId (): string {
  return `${Date.now().toString(36)}${randomHex(4)}`
}

function asSidecarError (err: unknown, pool: string): SidecarError {
  return isSidecarError(err) ? err : new SidecarError('SIDECAR_ERR_MACHINES_CREATE_FAILED', [pool, String(err)], { cause: err })
}

/** PoolMachines that answers every pick with `error` (not on Fly, no token). */
function unavailable (error: SidecarError, pools: readonly string[]): PoolMachines {
  const pick: PoolPick = { ok: false, error }
  const at = new Date().toISOString()
  return {
    pick: async () => pick,
    reportFailed: () => {},
    snapshot: () => pools.map((pool) => ({ pool, machines: [], lastOutcome: { at, ok: false, message: error.message } })),
    close: async () => {},
  }
}

/**
 * The Machines-API-backed PoolMachines. Not on Fly (no app name or Machine id) or without a
 * token, every pick answers ok: false with SIDECAR_ERR_MACHINES_UNAVAILABLE saying why, and the
 * caller applies the pool's `unavailable` policy.
 */
export function createPoolMachines (options: PoolMachinesOptions): PoolMachines {
  const { config, logger, hooks } = options
  const fly = config.fly
  // A pool on another Fly app needs no Machines API: decidePool answers `app=` without a pick.
  const poolNames = Object.values(config.pools).filter((p) => p.app === undefined).map((p) => p.name)
  if (poolNames.length === 0) return unavailable(new SidecarError('SIDECAR_ERR_MACHINES_UNKNOWN_POOL', ['(none)']), [])
  if (fly.app === undefined || fly.machineId === undefined) {
    if (poolNames.length > 0) logger.info({ pools: poolNames }, 'not on fly: pools are unavailable')
    return unavailable(new SidecarError('SIDECAR_ERR_MACHINES_UNAVAILABLE', ['not on Fly (FLY_APP_NAME or FLY_MACHINE_ID is not set)']), poolNames)
  }
  if (fly.apiToken === undefined || fly.apiToken.trim() === '') {
    if (poolNames.length > 0) logger.warn({ pools: poolNames }, 'no fly api token: pools are unavailable')
    return unavailable(new SidecarError('SIDECAR_ERR_MACHINES_UNAVAILABLE', ['no API token (set the FLY_API_TOKEN secret)']), poolNames)
  }
  const app = fly.app
  const selfId = fly.machineId
  const timing: PoolTiming = { ...DEFAULT_POOL_TIMING, ...options.timing }
  const now = options.now ?? Date.now
  const client: MachinesClient = createMachinesClient({
    apiUrl: fly.apiUrl,
    app,
    token: fly.apiToken,
    logger,
    timing,
    ...(options.random === undefined ? {} : { random: options.random }),
    ...(hooks?.onCall === undefined ? {} : { onCall: hooks.onCall.bind(hooks) }),
  })
  const states = new Map<string, PoolState>()
  for (const pool of Object.values(config.pools)) {
    if (pool.app !== undefined) continue
    states.set(pool.name, {
      config: pool,
      machines: [],
      picks: [],
      stale: [],
      kept: 0,
      unready: new Set(),
      next: 0,
      expiresAt: 0,
      failUntil: 0,
      refreshing: undefined,
      growing: undefined,
      recentCreates: new Map(),
      created: new Set(),
      handedOut: new Set(),
      handedAt: new Map(),
      waitingFor: new Set(),
      creating: 0,
      waiters: [],
      settleAgain: false,
      settling: undefined,
      confirming: undefined,
      scaleTimer: undefined,
      retiring: new Set(),
      lastError: undefined,
      lastOutcome: undefined,
    })
  }
  let closed = false
  const closing = new AbortController()
  let own: Promise<Machine> | undefined

  // Load reports of elastic pools' Machines: GET <private-url>/<health path>, its `inFlight`.
  const privateTemplate = fly.privateUrl.replaceAll('{app}', app).replaceAll('{port}', String(config.listen.port))
  let loadAgent: Agent | undefined
  const readLoad = options.readLoad ?? (async (id: string, signal: AbortSignal): Promise<number> => {
    // undici is loaded with the first read, not at start (see createMachinesClient).
    const { Agent, request } = await import('undici')
    loadAgent ??= new Agent({ connections: 4, keepAliveTimeout: 10_000 })
    const res = await request(`${privateTemplate.replaceAll('{id}', id)}${config.health.path}`, { dispatcher: loadAgent, signal })
    const body = await res.body.json() as { inFlight?: unknown }
    if (typeof body.inFlight !== 'number' || !Number.isFinite(body.inFlight)) throw new SidecarError('SIDECAR_ERR_MACHINES_LOAD_REPORT', [id])
    return body.inFlight
  })
  const book: LoadBook = createLoadBook({
    timing,
    now,
    read: readLoad,
    onReadError: (id, err) => { logger.debug({ machine: id, err }, 'load report read failed') },
  })

  /** This Machine's own record, read once (its config only changes with a restart). */
  function ownRecord (): Promise<Machine> {
    own ??= client.get(selfId).then((m) => {
      if (m === undefined) throw new SidecarError('SIDECAR_ERR_MACHINES_UNAVAILABLE', [`this Machine (${selfId}) is not in app ${app}`])
      return m
    })
    own.catch(() => { own = undefined })
    return own
  }

  function outcome (state: PoolState, error?: SidecarError): void {
    state.lastOutcome = error === undefined
      ? { at: new Date(now()).toISOString(), ok: true }
      : { at: new Date(now()).toISOString(), ok: false, message: error.message }
  }

  function choose (state: PoolState): PoolPick {
    const pick = state.picks[state.next++ % state.picks.length] as PoolPick
    if (pick.ok) state.handedOut.add(pick.machineId)
    if (state.next >= 1e9) state.next = 0
    return pick
  }

  function setMachines (state: PoolState, machines: Machine[]): void {
    state.machines = machines
    state.picks = machines.map((m) => Object.freeze({ ok: true as const, machineId: m.id }))
  }

  /** Background work never throws: its failures are logged and kept for the health body. */
  function background (state: PoolState, what: string, work: Promise<unknown>): void {
    work.catch((err: unknown) => {
      if (closed) return
      logger.warn({ pool: state.config.name, err }, `${what} failed`)
    })
  }

  /** Stop (own, never handed out) or destroy (once idle) the Machines this pool does not keep. */
  function retire (state: PoolState, machines: readonly Machine[], why: 'extra' | 'stale' | 'idle'): void {
    for (const m of machines) {
      // Still being waited for by its create: the settle after that create retires it if need be.
      if (state.waitingFor.has(m.id)) continue
      if (IDLE_STATES.has(m.state ?? '')) {
        if (state.retiring.has(`destroy:${m.id}`)) continue
        state.retiring.add(`destroy:${m.id}`)
        logger.info({ pool: state.config.name, machine: m.id, state: m.state, why }, 'destroying pool machine')
        // Without force: Fly refuses to destroy a Machine that was woken meanwhile.
        const destroyed = client.destroy(m.id, false).then(() => { if (why === 'idle') hooks?.onScaledDown?.(state.config.name) })
        background(state, 'destroy', destroyed.catch((err) => { state.retiring.delete(`destroy:${m.id}`); throw err }))
      } else if (why === 'extra' && state.created.has(m.id) && !state.handedOut.has(m.id) && !state.retiring.has(`stop:${m.id}`)) {
        // Ours, lost the race and never served: stop it now; a later lookup destroys it.
        state.retiring.add(`stop:${m.id}`)
        logger.info({ pool: state.config.name, machine: m.id }, 'stopping extra pool machine')
        background(state, 'stop', client.stop(m.id))
      }
    }
  }

  /** A list of the pool → the cache, retiring what is not kept (and, elastic, what is idle too long). */
  async function apply (state: PoolState, listed: Machine[]): Promise<void> {
    const pool = state.config
    let machines = listed.filter((m) => m.id !== selfId)
    // The list is eventually consistent (and once answered empty in an incident): within a
    // minute of a create, a list without that Machine is checked against a get of it.
    for (const [id, at] of state.recentCreates) {
      if (now() - at >= timing.distrustEmptyMs) { state.recentCreates.delete(id); continue }
      if (machines.some((m) => m.id === id && !DEAD_STATES.has(m.state ?? ''))) continue
      const m = await client.get(id)
      if (m !== undefined && !DEAD_STATES.has(m.state ?? '')) machines = [...machines.filter((x) => x.id !== m.id), m]
      else state.recentCreates.delete(id)
    }
    const view = viewPool(machines, pool.name, pool.size, fly.image)
    for (const m of view.keep) if (m.state === 'started') state.unready.delete(m.id)
    // Elastic: Machines beyond `min` stopped for `destroy-after` go, and are not placed on meanwhile.
    const idle = pool.elastic === undefined
      ? []
      : scaleDown(view.keep, {
        min: pool.elastic.min,
        destroyAfterMs: pool.elastic.destroyAfterMs,
        // A short destroy-after shortens the guard too: the user asked for quick clean-up.
        recentMs: Math.min(timing.handedOutRecentMs, pool.elastic.destroyAfterMs),
        now: now(),
        handedOutAt: (id) => state.handedAt.get(id),
      })
    setMachines(state, view.keep.filter((m) => !state.unready.has(m.id) && !idle.includes(m)))
    state.kept = view.keep.length - idle.length
    state.stale = [...view.stale]
    state.expiresAt = now() + timing.cacheTtlMs
    retire(state, view.extras, 'extra')
    if (view.keep.length > 0) retire(state, view.stale, 'stale')
    if (pool.elastic !== undefined) {
      // A stopped Machine serves nothing, whatever was replayed to it before it stopped.
      for (const m of view.keep) if (IDLE_STATES.has(m.state ?? '')) book.report(m.id, 0, now())
      retire(state, idle, 'idle')
      const known = new Set(machines.map((m) => m.id))
      for (const id of state.handedAt.keys()) if (!known.has(id)) { state.handedAt.delete(id); book.forget(id) }
      scheduleScaleDown(state, state.kept > pool.elastic.min || view.extras.length > 0 || view.stale.length > 0)
    }
  }

  /**
   * An elastic pool with Machines beyond `min` is listed every scaleDownEveryMs, requests or not,
   * so idle ones are destroyed even when no request comes; at `min` or below, no timer runs.
   */
  function scheduleScaleDown (state: PoolState, beyondMin: boolean): void {
    if (!beyondMin || closed) {
      clearTimeout(state.scaleTimer)
      state.scaleTimer = undefined
      return
    }
    if (state.scaleTimer !== undefined) return
    state.scaleTimer = setTimeout(() => {
      state.scaleTimer = undefined
      if (!closed) void refresh(state)
    }, Math.min(timing.scaleDownEveryMs, Math.max((state.config.elastic?.destroyAfterMs ?? 0) / 2, 1_000)))
    state.scaleTimer.unref()
  }

  /** Single flight: list, apply, and create what is missing (awaited only when nothing is usable). */
  function refresh (state: PoolState): Promise<void> {
    state.refreshing ??= (async () => {
      try {
        await apply(state, await client.list(state.config.name))
        // Elastic pools grow by demand only (placeElastic), never to `max` on a lookup.
        if (state.config.elastic === undefined && state.kept < state.config.size) {
          const growing = grow(state)
          if (state.machines.length === 0) await growing
          else background(state, 'create', growing.catch((err: unknown) => { outcome(state, asSidecarError(err, state.config.name)); throw err }))
        }
        state.lastError = undefined
        outcome(state)
      } catch (err) {
        const error = asSidecarError(err, state.config.name)
        state.lastError = error
        state.failUntil = now() + timing.errorRetryMs
        // Keep serving what is cached; look again after errorRetryMs rather than on every pick.
        state.expiresAt = state.failUntil
        outcome(state, error)
        if (!closed) logger.warn({ pool: state.config.name, err: error }, 'pool machine lookup failed')
      } finally {
        state.refreshing = undefined
      }
    })()
    return state.refreshing
  }

  /** Single flight: create the missing Machines, wait for them, then re-list and converge. */
  function grow (state: PoolState): Promise<void> {
    state.growing ??= (async () => {
      try {
        const missing = state.config.size - state.kept
        const replacing = state.stale.length
        const results = await Promise.allSettled(Array.from({ length: missing }, () => createOne(state)))
        const made = results.filter((r) => r.status === 'fulfilled').length
        for (let i = 0; i < Math.min(made, replacing); i++) hooks?.onReplaced?.(state.config.name)
        // Converge: racing sidecars may have created too; everyone keeps the oldest `size`.
        try {
          await apply(state, await client.list(state.config.name))
        } catch (err) {
          const started = results.flatMap((r) => r.status === 'fulfilled' ? [r.value] : [])
          if (started.length === 0) throw err
          // The re-list failed, but what was just started is certainly usable.
          logger.warn({ pool: state.config.name, err }, 're-list after create failed, using the created machines')
          setMachines(state, [...state.machines.filter((m) => !started.some((x) => x.id === m.id)), ...started])
          state.kept = state.machines.length
        }
        const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
        if (state.machines.length === 0 && failure !== undefined) throw failure.reason
      } finally {
        state.growing = undefined
      }
    })()
    return state.growing
  }

  /** Creates one Machine and waits for it to start; replaces one stuck in `created` or `failed`. */
  async function createOne (state: PoolState): Promise<Machine> {
    const pool = state.config
    const self = await ownRecord()
    let lastError: unknown
    for (let attempt = 0; attempt < timing.createAttempts; attempt++) {
      if (closed) throw new SidecarError('SIDECAR_ERR_MACHINES_CLOSED')
      const createId = newCreateId()
      const request = buildCreateRequest(self, { pool, image: fly.image, region: fly.region, createId })
      let machine: Machine | undefined
      try {
        machine = await client.create(request)
      } catch (err) {
        lastError = err
        if (!isTransient(err)) throw new SidecarError('SIDECAR_ERR_MACHINES_CREATE_FAILED', [pool.name, (err as Error).message], { cause: err })
        const status = (err as SidecarError).details?.status
        if (status !== 429) {
          // A 408/5xx/timeout create may have succeeded: look for its create id before retrying.
          logger.warn({ pool: pool.name, createId, err }, 'create answered ambiguously, re-listing')
          await sleep(timing.relistDelayMs, undefined, { signal: closing.signal })
          machine = (await client.list(pool.name)).find((m) => m.config?.metadata?.[METADATA_CREATE_ID] === createId && !DEAD_STATES.has(m.state ?? ''))
        }
        if (machine === undefined) {
          const retryAfter = (err as SidecarError).details?.retryAfterMs as number | undefined
          await sleep(Math.min(retryAfter ?? timing.backoffBaseMs * 2 ** attempt, timing.maxRetryAfterMs), undefined, { signal: closing.signal })
          continue
        }
      }
      state.recentCreates.set(machine.id, now())
      state.created.add(machine.id)
      hooks?.onCreated?.(pool.name)
      logger.info({ pool: pool.name, machine: machine.id, createId, region: machine.region, image: machine.config?.image }, 'pool machine created')
      // Not retired while this waits for it: a settle of another create may see it as an extra.
      state.waitingFor.add(machine.id)
      const started = await waitStarted(machine.id).finally(() => state.waitingFor.delete(machine.id))
      if (started) {
        logger.info({ pool: pool.name, machine: machine.id }, 'pool machine started')
        return machine
      }
      const current = await client.get(machine.id)
      if (current !== undefined && current.state !== 'created' && !DEAD_STATES.has(current.state ?? '')) {
        state.unready.add(machine.id)
        throw new SidecarError('SIDECAR_ERR_MACHINES_NOT_STARTED', [machine.id, pool.name, timing.startTimeoutMs], { details: { state: current.state } })
      }
      // Stuck in `created` (seen for hours on Fly) or failed to boot: destroy it and make another.
      logger.warn({ pool: pool.name, machine: machine.id, state: current?.state ?? 'gone' }, 'pool machine did not start, replacing')
      lastError = new SidecarError('SIDECAR_ERR_MACHINES_NOT_STARTED', [machine.id, pool.name, timing.startTimeoutMs], { details: { state: current?.state ?? 'gone' } })
      state.retiring.add(`destroy:${machine.id}`)
      state.recentCreates.delete(machine.id)
      if (current !== undefined && (current.state === 'created' || current.state === 'failed')) await client.destroy(machine.id, true)
    }
    throw new SidecarError('SIDECAR_ERR_MACHINES_CREATE_FAILED', [pool.name, lastError instanceof Error ? lastError.message : 'no attempt succeeded'], { cause: lastError })
  }

  /** Waits for `started` with calls of at most waitSeconds, until startTimeoutMs overall. */
  async function waitStarted (id: string): Promise<boolean> {
    const deadline = performance.now() + timing.startTimeoutMs
    for (;;) {
      const left = deadline - performance.now()
      if (left <= 0) return false
      if (await client.wait(id, 'started', Math.min(timing.waitSeconds, Math.ceil(left / 1000)))) return true
    }
  }

  // ── Elastic pools: placement by load, growth by demand ──────────────────────

  function hand (state: PoolState, id: string): PoolPick {
    book.sent(id)
    state.handedOut.add(id)
    state.handedAt.set(id, now())
    return { ok: true, machineId: id }
  }

  function loads (state: PoolState): Placed[] {
    // Reports are re-read in the background: this placement uses what is known now.
    book.refresh(state.machines.map((m) => m.id))
    return state.machines.map((m) => ({ id: m.id, load: book.load(m.id) }))
  }

  /** How many waiting requests the Machines being created will take. */
  function pendingRoom (state: PoolState): number {
    if (state.creating === 0) return 0
    const per = state.config.elastic?.concurrency
    return per === undefined ? Number.POSITIVE_INFINITY : state.creating * per
  }

  /**
   * Serves the waiting requests in order: on a Machine under `concurrency`; else on a Machine
   * being created (each takes `concurrency` of them), creating more up to `max`; at `max`, on the
   * least-loaded Machine anyway (an overflow). With nothing usable and nothing coming, they fail.
   * Right after a failed create (`afterFailure`), no new one is started for them.
   */
  function drain (state: PoolState, afterFailure = false): void {
    const elastic = state.config.elastic
    if (elastic === undefined) return
    const { waiters } = state
    while (waiters.length > 0) {
      const p = placeByLoad(loads(state), elastic.concurrency)
      if (p.kind !== 'use') break
      ;(waiters.shift() as (pick: PoolPick) => void)(hand(state, p.id))
    }
    if (waiters.length === 0) return
    // A failed create does not start another for the same requests: they fail (or overflow) instead.
    const creatable = !afterFailure && now() >= state.failUntil
    if (creatable && pendingRoom(state) < waiters.length && state.kept + state.creating < elastic.max) {
      // Before creating (seconds, and rate-limited), wait for the reports being re-read (at most
      // loadTimeoutMs): a count from before a Machine finished its requests would add one for nothing.
      if (state.confirming !== undefined) return
      const reading = book.pending(state.machines.map((m) => m.id))
      if (reading !== undefined) {
        state.confirming = reading.finally(() => { state.confirming = undefined; drain(state) })
        return
      }
    }
    while (creatable && pendingRoom(state) < waiters.length && state.kept + state.creating < elastic.max) startCreate(state)
    while (waiters.length > pendingRoom(state)) {
      const p = placeByLoad(loads(state), elastic.concurrency)
      const least = p.kind === 'use' ? p.id : p.least
      if (least === undefined) break
      hooks?.onOverflow?.(state.config.name)
      ;(waiters.pop() as (pick: PoolPick) => void)(hand(state, least))
    }
    if (state.creating === 0 && waiters.length > 0) {
      // No current Machine, none being created: an old-image one serves better than none.
      const stale = state.stale[0]
      const error = state.lastError ?? new SidecarError('SIDECAR_ERR_MACHINES_CREATE_FAILED', [state.config.name, 'no Machine is available'])
      for (const resolve of waiters.splice(0)) resolve(stale === undefined ? { ok: false, error } : { ok: true, machineId: stale.id })
    }
  }

  /** One more Machine for the waiting requests; once it started, re-list (converge), then drain. */
  function startCreate (state: PoolState): void {
    state.creating++
    const replacing = state.stale.length > 0
    createOne(state).then(async (m) => {
      if (replacing) hooks?.onReplaced?.(state.config.name)
      state.lastError = undefined
      outcome(state)
      try {
        await settle(state)
      } catch (err) {
        // The re-list failed, but what was just started is certainly usable.
        logger.warn({ pool: state.config.name, err }, 're-list after create failed, using the created machine')
      }
      if (!state.machines.some((x) => x.id === m.id) && state.kept < (state.config.elastic?.max ?? 0)) {
        setMachines(state, [...state.machines, { ...m, state: 'started' }])
        state.kept++
      }
    }, async (err: unknown) => {
      const error = asSidecarError(err, state.config.name)
      state.lastError = error
      state.failUntil = now() + timing.errorRetryMs
      outcome(state, error)
      if (!closed) logger.warn({ pool: state.config.name, err: error }, 'pool machine create failed')
      // The Machine may exist all the same (the wait failed, or it was stopped as an extra):
      // count what the list shows before creating another.
      if (!closed) await settle(state).catch(() => {})
      return 'failed' as const
    }).catch(() => 'failed' as const).then((failed) => {
      state.creating--
      drain(state, failed === 'failed')
    })
  }

  /** A fresh list after a create: runs again when another create finished during the list. */
  function settle (state: PoolState): Promise<void> {
    state.settleAgain = true
    state.settling ??= (async () => {
      try {
        while (state.settleAgain) {
          state.settleAgain = false
          await apply(state, await client.list(state.config.name))
        }
      } finally {
        state.settling = undefined
      }
    })()
    return state.settling
  }

  async function pickElastic (state: PoolState): Promise<PoolPick> {
    if (state.machines.length === 0 && state.creating === 0 && state.stale.length === 0) {
      if (state.lastError !== undefined && now() < state.failUntil && state.refreshing === undefined) return { ok: false, error: state.lastError }
      // Nothing known yet (or it all went): one lookup, shared by every request that is here now.
      if (now() >= state.expiresAt || state.refreshing !== undefined) await refresh(state)
    } else if (now() >= state.expiresAt && state.refreshing === undefined) {
      void refresh(state)
    }
    if (closed) return { ok: false, error: new SidecarError('SIDECAR_ERR_MACHINES_CLOSED') }
    return await new Promise<PoolPick>((resolve) => {
      state.waiters.push(resolve)
      drain(state)
    })
  }

  async function pickSlow (state: PoolState): Promise<PoolPick> {
    await refresh(state)
    if (state.picks.length > 0) return choose(state)
    // No current Machine could be had: an old-image one still serves better than none.
    const stale = state.stale[0]
    if (stale !== undefined) return { ok: true, machineId: stale.id }
    return { ok: false, error: state.lastError ?? new SidecarError('SIDECAR_ERR_MACHINES_CREATE_FAILED', [state.config.name, 'no Machine is available']) }
  }

  return {
    pick (pool) {
      const state = states.get(pool)
      if (state === undefined) return Promise.resolve({ ok: false, error: new SidecarError('SIDECAR_ERR_MACHINES_UNKNOWN_POOL', [pool]) })
      if (closed) return Promise.resolve({ ok: false, error: new SidecarError('SIDECAR_ERR_MACHINES_CLOSED') })
      if (state.config.elastic !== undefined) return pickElastic(state)
      if (state.picks.length > 0) {
        if (now() >= state.expiresAt && state.refreshing === undefined) void refresh(state)
        return Promise.resolve(choose(state))
      }
      if (state.lastError !== undefined && now() < state.failUntil && state.refreshing === undefined) {
        return Promise.resolve({ ok: false, error: state.lastError })
      }
      return pickSlow(state)
    },
    reportFailed (pool, machineId) {
      const state = states.get(pool)
      if (state === undefined || !state.machines.some((m) => m.id === machineId)) return
      logger.info({ pool, machine: machineId }, 'replay to pool machine failed, looking again')
      setMachines(state, state.machines.filter((m) => m.id !== machineId))
      book.forget(machineId)
      state.expiresAt = 0
    },
    snapshot () {
      return [...states.values()].map((state) => ({
        pool: state.config.name,
        machines: state.machines.map((m) => ({ id: m.id, state: m.state ?? 'unknown' })),
        ...(state.lastOutcome === undefined ? {} : { lastOutcome: state.lastOutcome }),
      }))
    },
    async close () {
      if (closed) return
      closed = true
      closing.abort()
      book.close()
      for (const state of states.values()) {
        clearTimeout(state.scaleTimer)
        const error = new SidecarError('SIDECAR_ERR_MACHINES_CLOSED')
        for (const resolve of state.waiters.splice(0)) resolve({ ok: false, error })
      }
      await Promise.all([client.close(), loadAgent?.close()])
    },
  }
}
