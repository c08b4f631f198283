// When the pool looks again: on expiry (in the background), on a failed replay, when the cached
// Machine is found destroyed; an empty list right after a create is not trusted; size > 1
// spreads requests; a failing API leaves the cache in use and then the circuit opens.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { createPoolMachines } from '../../src/machines/pool.ts'
import { APP, FAST, IMAGE, TOKEN, brief, captureLogs, live, makeConfig, poolConfig, seedSelf, startPools, until } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const BASE = `/v1/apps/${APP}/machines`
const LIST = `GET ${BASE}?metadata.sidecar_pool=tasker`

t.test('an existing pool Machine is found (a stopped one counts: the edge wakes it) and cached until expiry', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const stopped = api.addMachine({ image: IMAGE, state: 'stopped', metadata: { sidecar_pool: 'tasker' }, created_at: '2026-11-21T00:00:00Z' })
  api.addMachine({ image: IMAGE, state: 'destroyed', metadata: { sidecar_pool: 'tasker' }, created_at: '2026-11-01T00:00:00Z' })
  api.addMachine({ image: IMAGE, state: 'started', metadata: { sidecar_pool: 'other' } })
  const { pools } = startPools(t, api, { timing: { cacheTtlMs: 60 } })
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: stopped.id }, 'a stopped Machine is used (the edge wakes it); a destroyed one is not')
  t.strictSame(api.calls.map(brief), [LIST], 'found: nothing created')
  await pools.pick('tasker')
  t.equal(api.calls.length, 1, 'cached')
  await new Promise((resolve) => setTimeout(resolve, 70))
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: stopped.id }, 'expired: answered from cache at once')
  t.ok(await until(() => api.calls.length === 2), 'while one lookup runs in the background')
  t.strictSame(api.calls.map(brief), [LIST, LIST])
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('reportFailed drops the Machine and the next pick looks again', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  const m = api.addMachine({ image: IMAGE, metadata: { sidecar_pool: 'tasker' } })
  const { pools } = startPools(t, api)
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: m.id })
  pools.reportFailed('tasker', 'someoneelse000')
  pools.reportFailed('nopool', m.id)
  await pools.pick('tasker')
  t.equal(api.calls.length, 1, 'reports naming other Machines or pools change nothing')
  pools.reportFailed('tasker', m.id)
  t.strictSame(pools.snapshot()[0]?.machines, [])
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: m.id }, 'listed again; still there, so used again')
  t.strictSame(api.calls.map(brief), [LIST, LIST])
})

t.test('the cached Machine found destroyed: a new one is created', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  const gone = api.addMachine({ image: IMAGE, metadata: { sidecar_pool: 'tasker' } })
  const { pools, created } = startPools(t, api)
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: gone.id })
  api.setState(gone.id, 'destroyed')
  pools.reportFailed('tasker', gone.id) // the replay to it failed
  const pick = await pools.pick('tasker')
  const [fresh] = live(api)
  t.not(fresh?.id, gone.id)
  t.strictSame(pick, { ok: true, machineId: fresh?.id })
  t.strictSame(created, ['tasker'])
})

t.test('an empty list within a minute of a create is checked with a get, not trusted', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  const { pools, created } = startPools(t, api, { timing: { cacheTtlMs: 20 } })
  const first = await pools.pick('tasker')
  t.ok(first.ok)
  if (!first.ok) return
  api.fault({ method: 'GET', path: BASE }, { status: 200, body: [] }) // the flaps incident
  pools.reportFailed('tasker', first.machineId)
  t.strictSame(await pools.pick('tasker'), first, 'the same Machine, confirmed by a get')
  t.strictSame(api.calls.map((c) => `${brief(c)} ${c.status}`).slice(-2), [`${LIST} 200`, `GET ${BASE}/${first.machineId} 200`])
  t.strictSame(created, ['tasker'], 'no second create')
  t.equal(live(api).length, 1)
})

t.test('size 2: two Machines are created and picks alternate between them', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  const { pools, created } = startPools(t, api, { pools: [poolConfig('tasker', { size: 2 })] })
  const picks = await Promise.all(Array.from({ length: 10 }, () => pools.pick('tasker')))
  t.strictSame(created, ['tasker', 'tasker'])
  const ids = live(api).map((m) => m.id).sort()
  t.equal(ids.length, 2)
  const counts = new Map<string, number>()
  for (const p of picks) if (p.ok) counts.set(p.machineId, (counts.get(p.machineId) ?? 0) + 1)
  t.strictSame([...counts.keys()].sort(), ids, 'both used')
  t.strictSame([...counts.values()], [5, 5], 'evenly')
  t.equal(api.calls.filter((c) => c.method === 'GET' && c.path === BASE).length, 2, 'one lookup and one re-list for both creates')
})

t.test('size 2 with one Machine: it serves at once while the second is created in the background', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 50 })
  t.teardown(() => api.close())
  seedSelf(api)
  const one = api.addMachine({ image: IMAGE, metadata: { sidecar_pool: 'tasker' } })
  const { pools } = startPools(t, api, { pools: [poolConfig('tasker', { size: 2 })] })
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: one.id })
  t.equal(api.calls.filter((c) => c.method === 'POST').length, 0, 'answered before the create was even sent')
  t.ok(await until(() => live(api).length === 2), 'the second is created')
  t.ok(await until(() => (pools.snapshot()[0]?.machines.length ?? 0) === 2), 'and joins the rotation once started')
})

t.test('the API failing: the cache keeps serving, then the circuit opens and picks fail fast', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const m = api.addMachine({ image: IMAGE, metadata: { sidecar_pool: 'tasker' } })
  const { pools } = startPools(t, api, { timing: { cacheTtlMs: 10, attempts: 2, circuitFailureThreshold: 3, circuitOpenMs: 5_000 }, pools: [poolConfig('tasker'), poolConfig('reports')] })
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: m.id })
  api.fault({ method: 'GET' }, { status: 502, body: 'bad gateway' }, Infinity)
  await new Promise((resolve) => setTimeout(resolve, 15))
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: m.id }, 'expired, refresh fails: the cached Machine still serves')
  t.ok(await until(() => pools.snapshot()[0]?.lastOutcome?.ok === false))
  t.match(pools.snapshot()[0]?.lastOutcome?.message, /^Machines API list answered 502/)
  const other = await pools.pick('reports')
  t.equal(other.ok, false, 'nothing cached for another pool: the pick fails')
  if (!other.ok) t.equal(other.error.code, 'SIDECAR_ERR_MACHINES_CIRCUIT_OPEN')
  const before = api.calls.length
  const again = await pools.pick('reports')
  t.equal(again.ok === false && again.error.code, 'SIDECAR_ERR_MACHINES_CIRCUIT_OPEN')
  t.equal(api.calls.length, before, 'open circuit: no call')
})

t.test('the cache lifetime follows the injected clock', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const m = api.addMachine({ image: IMAGE, metadata: { sidecar_pool: 'tasker' } })
  let clock = Date.parse('2026-11-26T12:00:00Z')
  const pools = createPoolMachines({ config: makeConfig(api), logger: captureLogs().logger, now: () => clock, timing: { ...FAST, cacheTtlMs: 30_000 } })
  t.teardown(() => pools.close())
  await pools.pick('tasker')
  clock += 29_999
  await pools.pick('tasker')
  t.equal(api.calls.length, 1, 'still fresh')
  clock += 1
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: m.id })
  t.ok(await until(() => api.calls.length === 2), 'expired: looked up again')
  t.match(pools.snapshot()[0]?.lastOutcome, { ok: true, at: '2026-11-26T12:00:30.000Z' })
})
