// Two real sidecar processes (test/fixtures/machines/racer.ts) find the pool empty at the same
// moment against one fake Machines API: both create, and both converge on the oldest Machine;
// the extra is stopped by its creator and destroyed, leaving exactly `size` (1).
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { byAge } from '../../src/machines/select.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { race } from '../helpers/racers.ts'
import { APP, TOKEN, live } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()

t.test('two sidecar processes racing converge to one pool Machine', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 80, listLagMs: 20 })
  t.teardown(() => api.close())
  const racers = await race(t, api, ['selfa000000001', 'selfb000000002'])
  const codes = await Promise.all(racers.map((r) => r.exited))
  t.strictSame(codes, [0, 0], 'both exited cleanly')
  const creates = api.calls.filter((c) => c.method === 'POST' && c.path === `/v1/apps/${APP}/machines`)
  t.equal(creates.length, 2, 'each found the pool empty and created')
  const all = [...api.machines.values()].filter((m) => m.metadata.sidecar_pool === 'tasker').sort(byAge)
  const oldest = all[0]
  if (oldest === undefined) throw new Error('no tasker')
  for (const r of racers) {
    t.match(r.seen, [{ ready: true }, { first: [oldest.id] }, { final: oldest.id }], 'every pick of both processes went to the oldest')
  }
  const extra = all[1]
  t.ok(extra !== undefined && api.calls.some((c) => c.method === 'POST' && c.path.endsWith(`/${extra.id}/stop`)), 'the extra was stopped by its creator')
  t.strictSame(live(api).map((m) => m.id), [oldest.id], 'and destroyed by a later lookup: the pool is back to size 1')
  t.strictSame(spec.checkAll(api.calls), [])
})
