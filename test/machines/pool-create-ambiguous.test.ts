// A create that times out (408) or fails with 5xx may have succeeded: the pool re-lists and
// looks for its create id before it creates again. A 429 create is retried after Retry-After.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, TOKEN, brief, live, seedSelf, startPools } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const BASE = `/v1/apps/${APP}/machines`

t.test('408 on create, but the Machine exists: found by its create id, no second create', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 10 })
  t.teardown(() => api.close())
  seedSelf(api)
  api.fault({ method: 'POST', path: BASE }, { afterHandling: true, status: 408, body: { error: 'deadline_exceeded: create timed out' } })
  const { pools, created } = startPools(t, api)
  const picks = await Promise.all([pools.pick('tasker'), pools.pick('tasker')])
  const machines = live(api)
  t.equal(machines.length, 1, 'exactly one tasker')
  const id = machines[0]?.id as string
  t.strictSame(picks, [{ ok: true, machineId: id }, { ok: true, machineId: id }])
  t.strictSame(api.calls.map((c) => `${brief(c)} ${c.status}`), [
    `GET ${BASE}?metadata.sidecar_pool=tasker 200`,
    `GET ${BASE}/self0000000001 200`,
    `POST ${BASE} 408`,
    `GET ${BASE}?metadata.sidecar_pool=tasker 200`,
    `GET ${BASE}/${id}/wait?state=started&timeout=1 200`,
    `GET ${BASE}?metadata.sidecar_pool=tasker 200`,
  ])
  t.strictSame(created, ['tasker'], 'counted once')
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('500 on create and nothing was made: re-list, then create again with a new create id', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 10 })
  t.teardown(() => api.close())
  seedSelf(api)
  api.fault({ method: 'POST', path: BASE }, { status: 500, body: { error: 'internal' } })
  const { pools, created } = startPools(t, api)
  const pick = await pools.pick('tasker')
  const machines = live(api)
  t.equal(machines.length, 1)
  t.strictSame(pick, { ok: true, machineId: machines[0]?.id })
  const creates = api.calls.filter((c) => c.method === 'POST')
  t.equal(creates.length, 2)
  const ids = creates.map((c) => ((c.body as { config: { metadata: Record<string, string> } }).config.metadata.sidecar_create_id))
  t.not(ids[0], ids[1], 'each attempt has its own create id')
  t.strictSame(api.calls.map(brief).slice(2, 5), [`POST ${BASE}`, `GET ${BASE}?metadata.sidecar_pool=tasker`, `POST ${BASE}`], 're-listed between the two creates')
  t.strictSame(created, ['tasker'])
})

t.test('429 on create: not made, so no re-list; retried after Retry-After', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 10 })
  t.teardown(() => api.close())
  seedSelf(api)
  api.fault({ method: 'POST', path: BASE }, { status: 429, headers: { 'retry-after': '0.1' }, body: { error: 'rate limited' } })
  const { pools } = startPools(t, api)
  const started = performance.now()
  const pick = await pools.pick('tasker')
  t.ok(pick.ok)
  t.ok(performance.now() - started >= 95, 'waited the Retry-After')
  t.strictSame(api.calls.map((c) => `${c.method} ${c.status}`).slice(2, 4), ['POST 429', 'POST 200'])
})

t.test('a 422 on create is final: the pick fails with the API error', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  api.fault({ method: 'POST', path: BASE }, { status: 422, headers: { 'fly-request-id': 'req-7' }, body: { error: 'machine limit reached' } })
  const { pools } = startPools(t, api)
  const pick = await pools.pick('tasker')
  t.equal(pick.ok, false)
  if (pick.ok) return
  t.equal(pick.error.code, 'SIDECAR_ERR_MACHINES_CREATE_FAILED')
  t.equal(pick.error.message, 'no Machine of pool tasker could be created: Machines API create answered 422 (fly-request-id req-7): {"error":"machine limit reached"}')
  t.match(pick.error.cause, { details: { status: 422, flyRequestId: 'req-7' } })
  t.equal(api.calls.filter((c) => c.method === 'POST').length, 1)
  t.match(pools.snapshot(), [{ pool: 'tasker', machines: [], lastOutcome: { ok: false, message: pick.error.message } }])
})

t.test('the re-list after a create fails: the started Machine is used anyway', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  api.fault((call) => call.method === 'GET' && call.path === BASE && api.calls.some((c) => c.method === 'POST'), { status: 500, body: { error: 'flaps down' } }, Infinity)
  const { pools, logs } = startPools(t, api)
  const pick = await pools.pick('tasker')
  t.strictSame(pick, { ok: true, machineId: live(api)[0]?.id })
  t.ok(logs.lines().some((l) => l.msg === 're-list after create failed, using the created machines'))
})
