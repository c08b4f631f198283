// The health answer, table-driven: the app's reachability alone decides the status; pool facts
// are reported, never decisive.
import t from 'tap'
import { healthResponse, type HealthInput } from '../src/health.ts'
import type { PoolMachineSnapshot } from '../src/machines/types.ts'

const healthyPools: PoolMachineSnapshot[] = [
  { pool: 'tasker', machines: [{ id: '148e21ea1b5089', state: 'started' }], lastOutcome: { at: '2026-01-01T00:00:00.000Z', ok: true } },
]
const failingPools: PoolMachineSnapshot[] = [
  { pool: 'tasker', machines: [], lastOutcome: { at: '2026-01-01T00:00:00.000Z', ok: false, message: 'Machines API list answered 503' } },
]
const base: HealthInput = { appUp: true, everUp: true, pool: 'app', onFly: true, pools: healthyPools, uptimeMs: 61_999 }

const cases: Array<{ name: string, input: Partial<HealthInput>, status: 200 | 503, body: Record<string, unknown> }> = [
  {
    name: 'app up',
    input: {},
    status: 200,
    body: { status: 'ok', pool: 'app', onFly: true, uptimeSeconds: 61, pools: healthyPools },
  },
  {
    name: 'app never up yet: starting',
    input: { appUp: false, everUp: false, uptimeMs: 1500 },
    status: 503,
    body: { status: 'starting', pool: 'app', onFly: true, uptimeSeconds: 1, pools: healthyPools },
  },
  {
    name: 'app was up once, not now: app-down',
    input: { appUp: false, everUp: true },
    status: 503,
    body: { status: 'app-down', pool: 'app', onFly: true, uptimeSeconds: 61, pools: healthyPools },
  },
  {
    name: 'a failing Machines API never fails the check',
    input: { pools: failingPools },
    status: 200,
    body: { status: 'ok', pool: 'app', onFly: true, uptimeSeconds: 61, pools: failingPools },
  },
  {
    name: 'a healthy pool never makes a down app healthy',
    input: { appUp: false, everUp: true, pool: 'tasker' },
    status: 503,
    body: { status: 'app-down', pool: 'tasker', onFly: true, uptimeSeconds: 61, pools: healthyPools },
  },
  {
    name: 'not on Fly, no pools',
    input: { onFly: false, pools: [], uptimeMs: 0 },
    status: 200,
    body: { status: 'ok', pool: 'app', onFly: false, uptimeSeconds: 0, pools: [] },
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const h = healthResponse({ ...base, ...c.input })
    t.equal(h.status, c.status)
    t.strictSame(h.body, c.body)
    t.strictSame(JSON.parse(JSON.stringify(h.body)), c.body, 'serialises as is')
  })
}

t.test('the in-flight count is reported whatever the status (the load report of elastic pools)', async (t) => {
  t.strictSame(healthResponse({ ...base, pool: 'tasker', inFlight: 3 }), {
    status: 200,
    body: { status: 'ok', pool: 'tasker', onFly: true, uptimeSeconds: 61, pools: healthyPools, inFlight: 3 },
  })
  t.strictSame(healthResponse({ ...base, appUp: false, inFlight: 0 }).body.inFlight, 0, 'also while the app is down')
})
