// The health endpoint's answer (contract §7). Only the app's reachability decides the status:
// the pool Machine cache and the Machines API outcome are reported but never fail the check,
// so a Fly API outage cannot take every Machine out of routing. It also carries this Machine's
// in-flight request count: the load report elastic pools place requests by.
import type { PoolMachineSnapshot } from './machines/types.ts'

export interface HealthInput {
  /** The app accepted a TCP connection just now (src/app-probe.ts). */
  readonly appUp: boolean
  /** The app accepted a connection at least once since start-up. */
  readonly everUp: boolean
  /** This Machine's pool (`SIDECAR_POOL`, `app` when absent). */
  readonly pool: string
  readonly onFly: boolean
  readonly pools: readonly PoolMachineSnapshot[]
  readonly uptimeMs: number
  /**
   * Requests this sidecar is serving right now (the health check excluded): the load a Machine of
   * an elastic pool reports to the app Machines that place requests on it (docs/pools.md).
   */
  readonly inFlight?: number
}

export type HealthStatus = 'ok' | 'starting' | 'app-down'

/**
 * 200 `{"status":"ok"}` while the app accepts connections; 503 `"starting"` until it first did,
 * 503 `"app-down"` after it was up once. The body carries only facts already public to whoever
 * can reach the port (pool names, Machine ids and states): no env, no config, no secrets.
 */
export function healthResponse (input: HealthInput): { readonly status: 200 | 503, readonly body: Record<string, unknown> } {
  const status: HealthStatus = input.appUp ? 'ok' : input.everUp ? 'app-down' : 'starting'
  return {
    status: input.appUp ? 200 : 503,
    body: {
      status,
      pool: input.pool,
      onFly: input.onFly,
      uptimeSeconds: Math.floor(input.uptimeMs / 1000),
      pools: input.pools,
      ...(input.inFlight === undefined ? {} : { inFlight: input.inFlight }),
    },
  }
}
