// The one interface between the request path and whatever finds pool Machines.
// The real implementation is the Machines API client (src/machines/client.ts); tests and
// "not on Fly" use simpler ones. The request path only calls pick() and reportFailed().

import type { SidecarError } from '../errors.ts'

export type PoolPick =
  | { readonly ok: true, readonly machineId: string }
  | { readonly ok: false, readonly error: SidecarError }

export interface PoolMachineSnapshot {
  readonly pool: string
  /** Cached Machine ids (never secrets). */
  readonly machines: readonly { readonly id: string, readonly state: string }[]
  readonly lastOutcome?: { readonly at: string, readonly ok: boolean, readonly message?: string }
}

export interface PoolMachines {
  /**
   * The Machine a request of `pool` should be replayed to. Answers from cache when it can;
   * concurrent calls share one lookup/creation. Never rejects: failures come back as ok: false.
   */
  pick (pool: string): Promise<PoolPick>
  /** A `fly-replay-failed` fallback named this Machine: drop it from the cache. */
  reportFailed (pool: string, machineId: string): void
  /** For the health body: informational only. */
  snapshot (): readonly PoolMachineSnapshot[]
  close (): Promise<void>
}
