// The fake Machines API itself: lifecycle and runtime hooks, list filters, wait, destroy rules,
// auth, faults, and its answers checked against the OpenAPI spec (so it cannot drift from Fly).
// Also checks that the spec validator rejects what Fly would.
import t from 'tap'
import { request } from 'undici'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import type { FakeMachine, MachinesApi, RecordedCall } from '../../src/emulator/machines-api.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'

const spec = loadMachinesSpec()
const APP = 'demo'
const TOKEN = 'secret123'
const BASE = `/v1/apps/${APP}/machines`

async function call (api: MachinesApi, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, auth = `Bearer ${TOKEN}`): Promise<{ status: number, json: unknown }> {
  const res = await request(`${api.url}${path}`, {
    method,
    headers: { authorization: auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? null : JSON.stringify(body),
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: text === '' ? undefined : JSON.parse(text) }
}

t.test('create → created → started, with runtime hooks; stop, start, suspend, destroy', async (t) => {
  const events: string[] = []
  const api = await startMachinesApi({
    app: APP,
    token: TOKEN,
    createDelayMs: 20,
    region: 'lhr',
    runtime: {
      onCreate: (m) => { events.push(`create:${m.state}`) },
      onStart: async (m) => { events.push(`start:${m.state}`); await new Promise((resolve) => setTimeout(resolve, 5)) },
      onStop: (m) => { events.push(`stop:${m.state}`) },
      onDestroy: (m) => { events.push(`destroy:${m.state}`) },
    },
  })
  t.teardown(() => api.close())
  const created = await call(api, 'POST', BASE, { name: 'w1', config: { image: 'registry.fly.io/demo:v2', env: { A: '1' }, metadata: { sidecar_pool: 'tasker' } } })
  t.equal(created.status, 200)
  const id = (created.json as { id: string }).id
  t.match(created.json, {
    id: /^[0-9a-f]{14}$/,
    name: 'w1',
    state: 'created',
    region: 'lhr',
    instance_id: /^[0-9A-Z]{26}$/,
    private_ip: /^fdaa:/,
    created_at: /^\d{4}-\d\d-\d\dT/,
    image_ref: { registry: 'registry.fly.io', repository: 'demo', tag: 'v2', digest: '' },
    config: { image: 'registry.fly.io/demo:v2', env: { A: '1' }, metadata: { sidecar_pool: 'tasker' } },
  })
  const m = api.machines.get(id) as FakeMachine
  t.equal(m.image, 'registry.fly.io/demo:v2', 'image mirrors config.image')
  t.strictSame(m.metadata, { sidecar_pool: 'tasker' }, 'metadata mirrors config.metadata')
  const waited = await call(api, 'GET', `${BASE}/${id}/wait?state=started&timeout=5`)
  t.strictSame(waited, { status: 200, json: { ok: true, state: 'started', version: m.instance_id } })
  t.strictSame(events, ['create:created', 'start:starting'])
  t.equal((await call(api, 'DELETE', `${BASE}/${id}`)).status, 412, 'no destroy while started without force')
  t.strictSame(await call(api, 'POST', `${BASE}/${id}/stop`), { status: 200, json: { ok: true } })
  t.equal((await call(api, 'GET', `${BASE}/${id}/wait?state=stopped&timeout=5`)).status, 200)
  await call(api, 'POST', `${BASE}/${id}/start`)
  t.equal((await call(api, 'GET', `${BASE}/${id}/wait?state=started&timeout=5`)).status, 200)
  await call(api, 'POST', `${BASE}/${id}/suspend`)
  t.equal((await call(api, 'GET', `${BASE}/${id}/wait?state=suspended&timeout=5`)).status, 200)
  t.strictSame(await call(api, 'DELETE', `${BASE}/${id}`), { status: 200, json: { ok: true } })
  t.equal((await call(api, 'GET', `${BASE}/${id}/wait?state=destroyed&timeout=5`)).status, 200)
  t.strictSame(events, ['create:created', 'start:starting', 'stop:stopping', 'start:starting', 'stop:suspending', 'destroy:destroying'])
  t.strictSame(m.events.map((e) => e.status).reverse(), ['created', 'starting', 'started', 'stopping', 'stopped', 'starting', 'started', 'suspending', 'suspended', 'destroying', 'destroyed'])
  t.strictSame(spec.checkAll(api.calls), [], 'every answer follows the spec')
})

t.test('a failing start hook leaves the Machine failed', async (t) => {
  const api = await startMachinesApi({ app: APP, runtime: { onStart: () => { throw new Error('port in use') } } })
  t.teardown(() => api.close())
  const { json } = await call(api, 'POST', BASE, { config: { image: 'img:1' } })
  const id = (json as { id: string }).id
  t.equal((await call(api, 'GET', `${BASE}/${id}/wait?state=failed&timeout=5`)).status, 200)
})

t.test('list filters: metadata, state, region, include_deleted, summary', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  const a = api.addMachine({ region: 'ams', metadata: { sidecar_pool: 'tasker' } })
  const b = api.addMachine({ region: 'iad', state: 'stopped', metadata: { sidecar_pool: 'tasker', x: 'y' } })
  const c = api.addMachine({ state: 'destroyed', metadata: { sidecar_pool: 'tasker' } })
  api.addMachine({ metadata: { sidecar_pool: 'other' } })
  const ids = async (q: string): Promise<string[]> => ((await call(api, 'GET', `${BASE}${q}`)).json as { id: string }[]).map((m) => m.id)
  t.strictSame(await ids('?metadata.sidecar_pool=tasker'), [a.id, b.id])
  t.strictSame(await ids('?metadata.sidecar_pool=tasker&metadata.x=y'), [b.id])
  t.strictSame(await ids('?metadata.sidecar_pool=tasker&include_deleted=true'), [a.id, b.id, c.id])
  t.strictSame(await ids('?metadata.sidecar_pool=tasker&state=stopped,suspended'), [b.id])
  t.strictSame(await ids('?region=ams'), [a.id])
  const summary = (await call(api, 'GET', `${BASE}?summary=true&region=ams`)).json as Record<string, unknown>[]
  t.strictSame(Object.keys(summary[0] ?? {}).sort(), ['created_at', 'id', 'image_ref', 'instance_id', 'name', 'private_ip', 'region', 'state', 'updated_at'])
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('wait: 408 at the timeout (clamped by maxWaitMs), 400 on a bad timeout, 404 for unknown Machines', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, maxWaitMs: 50 })
  t.teardown(() => api.close())
  const m = api.addMachine({ state: 'stopped' })
  const started = performance.now()
  t.strictSame(await call(api, 'GET', `${BASE}/${m.id}/wait?state=started&timeout=60`), { status: 408, json: { error: 'deadline_exceeded: timeout waiting for machine to be started' } })
  t.ok(performance.now() - started < 1000)
  t.equal((await call(api, 'GET', `${BASE}/${m.id}/wait?timeout=soon`)).status, 400)
  t.strictSame(await call(api, 'GET', `${BASE}/nope/wait`), { status: 404, json: { error: 'machine not found' } })
  const woken = call(api, 'GET', `${BASE}/${m.id}/wait?state=started,suspended&timeout=1`)
  api.setState(m.id, 'suspended')
  t.match(await woken, { status: 200, json: { ok: true, state: 'suspended' } })
})

t.test('auth: 401 without the token; Bearer or the token as it is', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  t.strictSame(await call(api, 'GET', BASE, undefined, 'Bearer wrong'), { status: 401, json: { error: 'unauthorized' } })
  t.equal((await call(api, 'GET', BASE, undefined, `Bearer ${TOKEN}`)).status, 200)
  const fly = await startMachinesApi({ app: APP, token: 'FlyV1 fm2_abc' })
  t.teardown(() => fly.close())
  t.equal((await call(fly, 'GET', BASE, undefined, 'FlyV1 fm2_abc')).status, 200)
  t.equal((await call(fly, 'GET', '/v1/apps/other/machines', undefined, 'FlyV1 fm2_abc')).status, 404)
})

t.test('faults: times, afterHandling, headers, delay, clear', async (t) => {
  const api = await startMachinesApi({ app: APP })
  t.teardown(() => api.close())
  const twice = api.fault({ method: 'GET', path: BASE }, { status: 503, body: { error: 'busy' }, headers: { 'retry-after': '1' } }, 2)
  t.equal((await call(api, 'GET', BASE)).status, 503)
  t.equal((await call(api, 'GET', BASE)).status, 503)
  t.equal((await call(api, 'GET', BASE)).status, 200)
  t.equal(twice.hits, 2)
  api.fault({ method: 'POST' }, { afterHandling: true, status: 408, body: { error: 'timeout' } })
  t.equal((await call(api, 'POST', BASE, { config: { image: 'i:1' } })).status, 408)
  t.equal(api.machines.size, 1, 'the create happened anyway')
  const slow = api.fault({ path: /\/machines$/ }, { delayMs: 60 }, Infinity)
  const started = performance.now()
  t.equal((await call(api, 'GET', BASE)).status, 200)
  t.ok(performance.now() - started >= 55, 'delayed, then handled')
  slow.clear()
  t.strictSame(api.calls.map((c) => c.status), [503, 503, 200, 408, 200])
})

t.test('the spec validator catches what Fly would refuse', async (t) => {
  const base: RecordedCall = { method: 'GET', path: BASE, query: {}, headers: { authorization: 'Bearer x' }, body: undefined, status: 200 }
  const problems = (c: Partial<RecordedCall>): string[] => spec.check({ ...base, ...c }).problems
  t.strictSame(problems({ query: { 'metadata.sidecar_pool': 'tasker' } }), [], 'the documented metadata filter is allowed on list')
  t.strictSame(problems({ query: { pool: 'tasker' } }), ['query parameter pool is not in the spec'])
  t.strictSame(problems({ query: { include_deleted: 'yes' } }), ['query parameter include_deleted=yes: / must be boolean'])
  t.strictSame(problems({ path: `${BASE}/abc/wait`, query: { state: 'running' } }), ['query parameter state=running: / must be equal to one of the allowed values'])
  t.strictSame(problems({ path: `${BASE}/abc/wait`, query: { timeout: '1.5' } }), ['query parameter timeout=1.5: / must be integer'])
  t.strictSame(problems({ path: `${BASE}/abc/explode` }), [`no operation GET ${BASE}/abc/explode in the spec`])
  t.strictSame(problems({ headers: {} }), ['no Authorization: Bearer/FlyV1 header'])
  t.strictSame(problems({ method: 'POST', body: undefined }), ['request body required'])
  t.strictSame(problems({ method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: { config: { image: 'i', services: [{ autostop: 'sometimes', autostrat: true }] } } }), [
    'request body: /config/services/0 must NOT have additional properties (autostrat); /config/services/0/autostop must be equal to one of the allowed values',
  ], 'unknown fields and bad enums in a create body')
  t.strictSame(problems({ method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: { config: { image: 'i' } } }), [])
  t.strictSame(problems({ response: [{ id: 1 }] }), ['response 200: /0/id must be string'], 'answers are checked too')
})
