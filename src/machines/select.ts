// Pure: a listed pool's Machines → which to keep and use, which are extras or stale, and the
// order requests rotate through. Every sidecar applies the same rule to the same list, so racing
// app Machines agree on the kept set without talking to each other.
import type { Machine } from './api-types.ts'
import { METADATA_POOL } from './api-types.ts'

/** Gone or going: never used, never counted. */
export const DEAD_STATES: ReadonlySet<string> = new Set(['destroyed', 'destroying', 'failed'])
/** Not running and not serving: an extra or stale Machine may be destroyed in these states. */
export const IDLE_STATES: ReadonlySet<string> = new Set(['stopped', 'suspended'])

/** Lower is better: started, then booting, then asleep (Fly's proxy wakes it on replay). */
export function stateRank (state: string | undefined): number {
  switch (state) {
    case 'started': return 0
    case 'starting': case 'created': case 'replacing': case 'updating': return 1
    case 'stopped': case 'suspended': return 2
    default: return 3
  }
}

export interface PoolView {
  /** The Machines requests go to: the oldest `size` with the current image, best state first. */
  readonly keep: readonly Machine[]
  /** Current image, but beyond `size`: destroyed once idle. */
  readonly extras: readonly Machine[]
  /** Another image (a deploy happened): used only while no current one exists, destroyed once idle. */
  readonly stale: readonly Machine[]
}

type Dated = Pick<Machine, 'id' | 'created_at'>

function createdAt (m: Dated): number {
  const t = Date.parse(m.created_at ?? '')
  return Number.isNaN(t) ? Number.POSITIVE_INFINITY : t
}

/** Oldest first; ties (Fly answers whole seconds) broken by id so every sidecar agrees. */
export function byAge (a: Dated, b: Dated): number {
  return createdAt(a) - createdAt(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/**
 * Splits the list of one pool. `image` undefined (unknown) treats every image as current.
 * Machines of other pools (the list filter is re-applied here) and dead ones are dropped.
 */
export function viewPool (machines: readonly Machine[], pool: string, size: number, image: string | undefined): PoolView {
  const live = machines
    .filter((m) => m.config?.metadata?.[METADATA_POOL] === pool && !DEAD_STATES.has(m.state ?? ''))
    .sort(byAge)
  const current = live.filter((m) => image === undefined || m.config?.image === image)
  const stale = live.filter((m) => !current.includes(m))
  const keep = current.slice(0, size).sort((a, b) => stateRank(a.state) - stateRank(b.state) || byAge(a, b))
  return { keep, extras: current.slice(size), stale }
}

/** A usable Machine of an elastic pool and its estimated load, best state then oldest first. */
export interface Placed {
  readonly id: string
  readonly load: number
}

export type Placement =
  /** The least-loaded Machine under `concurrency`. */
  | { readonly kind: 'use', readonly id: string }
  /** Every Machine is at `concurrency` (or there is none): `least` is the least-loaded, if any. */
  | { readonly kind: 'full', readonly least: string | undefined }

/**
 * Placement by load: the least-loaded Machine whose load is under `concurrency` (undefined = no
 * limit); ties go to the earlier one (started before asleep, then oldest), so a warm Machine is
 * filled before a stopped one is woken only when their loads are equal.
 */
export function placeByLoad (machines: readonly Placed[], concurrency: number | undefined): Placement {
  let least: Placed | undefined
  for (const m of machines) if (least === undefined || m.load < least.load) least = m
  if (least === undefined) return { kind: 'full', least: undefined }
  if (concurrency === undefined || least.load < concurrency) return { kind: 'use', id: least.id }
  return { kind: 'full', least: least.id }
}

export interface ScaleDownInput {
  /** Machines beyond this many are candidates (stopped ones count towards it). */
  readonly min: number
  readonly destroyAfterMs: number
  /** Never destroy one handed out this recently (by this sidecar). */
  readonly recentMs: number
  readonly now: number
  /** When this sidecar last handed the Machine out, if ever. */
  readonly handedOutAt: (id: string) => number | undefined
}

/**
 * Scale-down of an elastic pool: of the kept Machines, which to destroy. Only `stopped` or
 * `suspended` ones that have been so for `destroyAfterMs` (their `updated_at`, which Fly moves on
 * every state change) and were not handed out in the last `recentMs`; the newest go first, so the
 * oldest `min` stay, and never more than the pool has beyond `min`.
 */
export function scaleDown (kept: readonly Machine[], input: ScaleDownInput): Machine[] {
  const excess = kept.length - input.min
  if (excess <= 0) return []
  const eligible = kept.filter((m) => {
    if (!IDLE_STATES.has(m.state ?? '')) return false
    const since = Date.parse(m.updated_at ?? '')
    if (Number.isNaN(since) || input.now - since < input.destroyAfterMs) return false
    const handed = input.handedOutAt(m.id)
    return handed === undefined || input.now - handed >= input.recentMs
  })
  return eligible.sort((a, b) => byAge(b, a)).slice(0, excess)
}
