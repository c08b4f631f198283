// The health endpoint's answer (contract §7). Only the app's reachability decides the status:
// the pool Machine cache and the Machines API outcome are reported but never fail the check,
// so a Fly API outage cannot take every Machine out of routing.
import type { PoolMachineSnapshot } from './machines/types.ts'

export interface HealthInput {
  readonly appUp: boolean
  /** The app accepted a connection at least once since start-up. */
  readonly everUp: boolean
  readonly pool: string
  readonly onFly: boolean
  readonly pools: readonly PoolMachineSnapshot[]
  readonly uptimeMs: number
}

export function healthResponse (input: HealthInput): { readonly status: 200 | 503, readonly body: Record<string, unknown> } {
  const status = input.appUp ? 'ok' : input.everUp ? 'app-down' : 'starting'
  return {
    status: input.appUp ? 200 : 503,
    body: {
      status,
      pool: input.pool,
      onFly: input.onFly,
      uptimeSeconds: Math.round(input.uptimeMs / 1000),
      pools: input.pools,
    },
  }
}
