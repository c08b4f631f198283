// Two real app-Machine processes (test/fixtures/machines/racer.ts) with an elastic pool
// (`max: 3`, `concurrency: 4`) get a burst of 20 requests each at the same moment against one fake
// Machines API: both create (each at most max), both converge on the oldest 3, every request goes to one of those,
// and the extras are stopped by their creators and destroyed: the pool never keeps more than max.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { byAge } from '../../src/machines/select.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { race } from '../helpers/racers.ts'
import { APP, TOKEN, live, until } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const MAX = 3

t.test('two app Machine processes racing on an elastic pool keep at most max', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 80 })
  t.teardown(() => api.close())
  const racers = await race(t, api, ['selfa000000001', 'selfb000000002'], { POOL_MAX: String(MAX), POOL_CONCURRENCY: '4' })
  t.strictSame(await Promise.all(racers.map((r) => r.exited)), [0, 0], 'both exited cleanly')
  const creates = api.calls.filter((c) => c.method === 'POST' && c.path === `/v1/apps/${APP}/machines`).length
  t.ok(creates >= MAX && creates <= 2 * MAX, `each created at most max (${creates} creates; fewer than ${2 * MAX} when one saw the other's first)`)
  if (creates > 2 * MAX) for (const r of racers) t.comment(JSON.stringify(r.seen.find((m) => m.logs !== undefined)))
  const oldest = [...api.machines.values()].filter((m) => m.metadata.sidecar_pool === 'tasker').sort(byAge).slice(0, MAX).map((m) => m.id)
  for (const [i, r] of racers.entries()) {
    const used = r.seen.flatMap((m) => [...(m.first as string[] | undefined ?? []), ...(m.later as string[] | undefined ?? [])])
    t.ok(used.length > 0 && used.every((id) => oldest.includes(id)), `racer ${i}: every request went to one of the oldest ${MAX}`)
  }
  t.ok(await until(() => live(api).length === MAX, 5_000), 'the extras are stopped and destroyed')
  t.strictSame(live(api).map((m) => m.id).sort(), [...oldest].sort(), 'the pool keeps exactly the oldest max')
  t.ok(api.calls.filter((c) => c.method === 'DELETE').every((c) => c.query.force === undefined), 'never forced')
  t.strictSame(spec.checkAll(api.calls), [])
})
