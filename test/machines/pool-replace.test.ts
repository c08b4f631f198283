// Replacement: a pool Machine with another image (a deploy happened) is replaced by a fresh one
// and destroyed once stopped; a new Machine stuck in `created` past the deadline is destroyed
// (forced) and created again.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, IMAGE, TOKEN, brief, live, seedSelf, startPools, until } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const BASE = `/v1/apps/${APP}/machines`
const OLD_IMAGE = 'registry.fly.io/shop:deployment-01H0'

t.test('stale image: create and use a fresh one, destroy the old one once stopped', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 10 })
  t.teardown(() => api.close())
  seedSelf(api)
  const old = api.addMachine({ image: OLD_IMAGE, metadata: { sidecar_pool: 'tasker' }, created_at: '2026-11-01T00:00:00Z' })
  const { pools, created, replaced } = startPools(t, api, { timing: { cacheTtlMs: 40 } })
  const pick = await pools.pick('tasker')
  const fresh = live(api).find((m) => m.image === IMAGE)
  t.ok(fresh, 'a Machine with this image was created')
  t.strictSame(pick, { ok: true, machineId: fresh?.id }, 'and is used, although the old one is older')
  t.strictSame(created, ['tasker'])
  t.strictSame(replaced, ['tasker'])
  t.equal(old.state, 'started')
  t.notOk(api.calls.some((c) => c.method === 'DELETE' || c.path.endsWith('/stop')), 'the old one may be streaming: left alone')

  api.setState(old.id, 'stopped') // autostop, once its last stream ended
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.strictSame(await pools.pick('tasker'), pick, 'served from the expired cache while it refreshes')
  t.ok(await until(() => old.state === 'destroyed'), 'the stopped old Machine is destroyed')
  t.strictSame(api.calls.filter((c) => c.method === 'DELETE').map(brief), [`DELETE ${BASE}/${old.id}`], 'once, without force')
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('stale image and no fresh one can be made: the old one still serves', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const old = api.addMachine({ image: OLD_IMAGE, metadata: { sidecar_pool: 'tasker' } })
  api.fault({ method: 'POST', path: BASE }, { status: 422, body: { error: 'machine limit reached' } }, Infinity)
  const { pools } = startPools(t, api)
  t.strictSame(await pools.pick('tasker'), { ok: true, machineId: old.id })
})

t.test('stuck in created past the deadline: destroyed with force, created again', async (t) => {
  let n = 0
  const api = await startMachinesApi({ app: APP, token: TOKEN, maxWaitMs: 60, createDelayMs: () => (n++ === 0 ? Infinity : 10) })
  t.teardown(() => api.close())
  seedSelf(api)
  const { pools, created, logs } = startPools(t, api, { timing: { startTimeoutMs: 150 } })
  const pick = await pools.pick('tasker')
  const all = [...api.machines.values()].filter((m) => m.metadata.sidecar_pool === 'tasker')
  t.equal(all.length, 2)
  const [stuck, second] = all
  if (stuck === undefined || second === undefined) return
  t.strictSame(pick, { ok: true, machineId: second.id })
  t.ok(await until(() => stuck.state === 'destroyed'))
  const calls = api.calls.map((c) => `${brief(c)} ${c.status}`)
  const waits = calls.filter((c) => c.startsWith(`GET ${BASE}/${stuck.id}/wait?state=started&timeout=1 408`)).length
  t.ok(waits >= 2, `waited in several calls until the deadline (${waits})`)
  t.strictSame(calls.slice(3 + waits), [
    `GET ${BASE}/${stuck.id} 200`,
    `DELETE ${BASE}/${stuck.id}?force=true 200`,
    `POST ${BASE} 200`,
    `GET ${BASE}/${second.id}/wait?state=started&timeout=1 200`,
    `GET ${BASE}?metadata.sidecar_pool=tasker 200`,
  ])
  t.strictSame(created, ['tasker', 'tasker'])
  t.ok(logs.lines().some((l) => l.msg === 'pool machine did not start, replacing' && l.machine === stuck.id && l.state === 'created'))
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('failed to boot: destroyed with force, created again', async (t) => {
  let n = 0
  const api = await startMachinesApi({
    app: APP,
    token: TOKEN,
    maxWaitMs: 40,
    createDelayMs: 5,
    runtime: { onStart: () => { if (n++ === 0) throw new Error('exec format error') } },
  })
  t.teardown(() => api.close())
  seedSelf(api)
  const { pools, logs } = startPools(t, api, { timing: { startTimeoutMs: 100 } })
  const pick = await pools.pick('tasker')
  const [failed, second] = [...api.machines.values()].filter((m) => m.metadata.sidecar_pool === 'tasker')
  if (failed === undefined || second === undefined) throw new Error('expected two creates')
  t.strictSame(pick, { ok: true, machineId: second.id })
  t.ok(api.calls.some((c) => c.method === 'DELETE' && c.path === `${BASE}/${failed.id}` && c.query.force === 'true'))
  t.ok(logs.lines().some((l) => l.msg === 'pool machine did not start, replacing' && l.state === 'failed'))
})

t.test('never started and never stuck in created: the pick fails with NOT_STARTED', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, maxWaitMs: 40, createDelayMs: Infinity })
  t.teardown(() => api.close())
  seedSelf(api)
  // The Machine moves on to `starting` but never gets further (a boot that hangs).
  api.fault({ method: 'GET', path: /\/wait$/ }, (call) => {
    const id = call.path.split('/')[5] as string
    const m = api.machines.get(id)
    if (m !== undefined && m.state === 'created') api.setState(id, 'starting')
    return {}
  }, Infinity)
  const { pools } = startPools(t, api, { timing: { startTimeoutMs: 100 } })
  const pick = await pools.pick('tasker')
  t.equal(pick.ok, false)
  if (pick.ok) return
  t.equal(pick.error.code, 'SIDECAR_ERR_MACHINES_NOT_STARTED')
  t.match(pick.error.message, /^Machine [0-9a-f]{14} of pool tasker did not reach started within 100 ms$/)
  t.notOk(api.calls.some((c) => c.method === 'DELETE'), 'a booting Machine is not destroyed')
})
