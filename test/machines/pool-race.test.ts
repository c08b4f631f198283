// Two app Machines (two PoolMachines) find the pool empty at the same time and both create:
// after a re-list both keep the oldest; the loser's never-served Machine is stopped by its
// creator and destroyed once stopped. With a lagging list both first keep their own, and a
// later lookup converges; a served extra is destroyed only after it stopped.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import type { MachinesApi } from '../../src/emulator/machines-api.ts'
import { byAge } from '../../src/machines/select.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, TOKEN, live, seedSelf, startPools, until } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const BASE = `/v1/apps/${APP}/machines`
/** A lag no scheduling delay reaches: until catchUp(), lists never show a Machine created here. */
const LAG_MS = 60_000

/** The lagging list catches up: the pool's Machines look LAG_MS older (their order is kept). */
function catchUp (api: MachinesApi): void {
  for (const m of live(api)) m.created_at = new Date(Date.parse(m.created_at) - LAG_MS).toISOString()
}

t.test('both create; the re-list converges them on the oldest', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 60, listLagMs: 20 })
  t.teardown(() => api.close())
  seedSelf(api, 'selfa000000001')
  seedSelf(api, 'selfb000000002')
  const a = startPools(t, api, { fly: { machineId: 'selfa000000001' }, timing: { cacheTtlMs: 50 } })
  const b = startPools(t, api, { fly: { machineId: 'selfb000000002' }, timing: { cacheTtlMs: 50 } })
  const [pa, pb] = await Promise.all([a.pools.pick('tasker'), b.pools.pick('tasker')])
  t.equal(api.calls.filter((c) => c.method === 'POST').length, 2, 'the race happened: two creates')
  const [oldest, extra] = live(api).sort(byAge)
  if (oldest === undefined || extra === undefined) throw new Error('expected two Machines')
  t.strictSame([pa, pb], [{ ok: true, machineId: oldest.id }, { ok: true, machineId: oldest.id }], 'both use the oldest')
  t.ok(await until(() => extra.state === 'stopped'), 'the extra is stopped by its creator (it never served)')
  t.ok(api.calls.some((c) => c.method === 'POST' && c.path === `${BASE}/${extra.id}/stop`))
  await new Promise((resolve) => setTimeout(resolve, 60))
  await Promise.all([a.pools.pick('tasker'), b.pools.pick('tasker')])
  t.ok(await until(() => api.machines.get(extra.id)?.state === 'destroyed'), 'a later lookup destroys the stopped extra')
  const deletes = api.calls.filter((c) => c.method === 'DELETE')
  t.equal(deletes.length >= 1 && deletes.every((c) => c.path === `${BASE}/${extra.id}` && c.query.force === undefined), true, 'destroyed without force, only the extra')
  t.strictSame(live(api).map((m) => m.id), [oldest.id], 'converged to size 1')
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('a lagging list: each keeps its own at first, then converges; a served extra waits until stopped', async (t) => {
  // The lag is not raced against the wall clock: both creates stay out of every list until the
  // test lets the list catch up, however slowly the two sidecars are scheduled.
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 10, listLagMs: LAG_MS })
  t.teardown(() => api.close())
  seedSelf(api, 'selfa000000001')
  seedSelf(api, 'selfb000000002')
  const a = startPools(t, api, { fly: { machineId: 'selfa000000001' }, timing: { cacheTtlMs: 100 } })
  const b = startPools(t, api, { fly: { machineId: 'selfb000000002' }, timing: { cacheTtlMs: 100 } })
  const [pa, pb] = await Promise.all([a.pools.pick('tasker'), b.pools.pick('tasker')])
  t.ok(pa.ok && pb.ok)
  if (!pa.ok || !pb.ok) return
  t.not(pa.machineId, pb.machineId, 'split: the list did not show the other create yet')
  t.ok(api.calls.some((c) => c.method === 'GET' && c.path === `${BASE}/${pa.machineId}`), 'the list without its own create was checked with a get, not trusted')
  t.ok(api.calls.some((c) => c.method === 'GET' && c.path === `${BASE}/${pb.machineId}`), 'so was the other\'s')
  t.equal(api.calls.filter((c) => c.method === 'POST' && c.path === BASE).length, 2, 'the race happened: two creates')
  const [oldest, extra] = live(api).sort(byAge)
  if (oldest === undefined || extra === undefined) throw new Error('expected two Machines')
  catchUp(api)
  // After expiry, the next picks refresh in the background and converge.
  await new Promise((resolve) => setTimeout(resolve, 200))
  await Promise.all([a.pools.pick('tasker'), b.pools.pick('tasker')])
  const cached = (p: typeof a): string => JSON.stringify(p.pools.snapshot()[0]?.machines.map((m) => m.id))
  t.ok(await until(() => cached(a) === JSON.stringify([oldest.id]) && cached(b) === JSON.stringify([oldest.id])), 'both caches converge on the oldest')
  t.strictSame([await a.pools.pick('tasker'), await b.pools.pick('tasker')], [{ ok: true, machineId: oldest.id }, { ok: true, machineId: oldest.id }], 'both moved to the oldest')
  t.equal(extra.state, 'started', 'the extra served, so it is not stopped by the sidecar')
  t.notOk(api.calls.some((c) => c.method === 'DELETE'), 'nor destroyed while it may be streaming')
  api.setState(extra.id, 'stopped') // Fly's autostop
  await new Promise((resolve) => setTimeout(resolve, 110))
  await a.pools.pick('tasker')
  t.ok(await until(() => api.machines.get(extra.id)?.state === 'destroyed'), 'destroyed once stopped')
  t.strictSame(live(api).map((m) => m.id), [oldest.id])
})
