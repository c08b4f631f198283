// The Machines API client against the fake: Authorization forms, Retry-After on 429, a 500
// storm opening the circuit, timeouts, garbage bodies, error details and token redaction.
import t, { type Test } from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import type { MachinesApi } from '../../src/emulator/machines-api.ts'
import { authorizationHeader, createMachinesClient } from '../../src/machines/client.ts'
import type { ClientTiming, MachinesClient } from '../../src/machines/client.ts'
import { SidecarError } from '../../src/errors.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, FAST, TOKEN, brief, captureLogs } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const LIST = `/v1/apps/${APP}/machines`

async function setup (t: Test, timing: Partial<ClientTiming> = {}, token = TOKEN): Promise<{ api: MachinesApi, client: MachinesClient, logs: ReturnType<typeof captureLogs>, outcomes: string[] }> {
  const api = await startMachinesApi({ app: APP, token })
  const logs = captureLogs()
  const outcomes: string[] = []
  const client = createMachinesClient({ apiUrl: api.url, app: APP, token, logger: logs.logger, timing: { ...FAST, ...timing }, onCall: (op, outcome) => outcomes.push(`${op}:${outcome}`) })
  t.teardown(async () => { await client.close(); await api.close() })
  return { api, client, logs, outcomes }
}

async function rejection (p: Promise<unknown>): Promise<SidecarError> {
  try {
    await p
  } catch (err) {
    if (err instanceof SidecarError) return err
    throw err
  }
  throw new Error('expected a rejection')
}

t.test('Authorization header forms (contract §5)', async (t) => {
  t.equal(authorizationHeader('FlyV1 fm2_abc,fm2_def'), 'FlyV1 fm2_abc,fm2_def')
  t.equal(authorizationHeader('Bearer oauth123'), 'Bearer oauth123')
  t.equal(authorizationHeader('  rawtoken123\n'), 'Bearer rawtoken123')
  const { api, client } = await setup(t, {}, 'rawtoken123')
  t.strictSame(await client.list('tasker'), [])
  t.equal(api.calls[0]?.headers.authorization, 'Bearer rawtoken123')
})

t.test('a wrong token: 401 is not retried and carries the request id', async (t) => {
  const { api } = await setup(t)
  const other = createMachinesClient({ apiUrl: api.url, app: APP, token: 'wrongtoken', logger: captureLogs().logger, timing: FAST })
  t.teardown(() => other.close())
  const err = await rejection(other.list('tasker'))
  t.equal(err.code, 'SIDECAR_ERR_MACHINES_HTTP')
  t.match(err.details, { op: 'list', status: 401, body: '{"error":"unauthorized"}', flyRequestId: /^[0-9A-Z]{26}-local$/ })
  t.equal(api.calls.length, 1)
})

t.test('429 with Retry-After is retried after the time it asks for', async (t) => {
  const { api, client, outcomes } = await setup(t, { backoffBaseMs: 1, backoffCapMs: 1 })
  api.fault({ method: 'GET', path: LIST }, { status: 429, headers: { 'retry-after': '0.15' }, body: { error: 'rate limited' } })
  const started = performance.now()
  t.strictSame(await client.list('tasker'), [])
  t.ok(performance.now() - started >= 145, 'waited the Retry-After, not the 1 ms backoff')
  t.strictSame(api.calls.map((c) => `${brief(c)} ${c.status}`), [
    `GET ${LIST}?metadata.sidecar_pool=tasker 429`,
    `GET ${LIST}?metadata.sidecar_pool=tasker 200`,
  ])
  t.strictSame(outcomes, ['list:429', 'list:ok'])
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('a Retry-After beyond maxRetryAfterMs fails the call instead of waiting', async (t) => {
  const { api, client } = await setup(t, { maxRetryAfterMs: 500 })
  api.fault({ method: 'GET' }, { status: 429, headers: { 'retry-after': '120' }, body: { error: 'slow down' } })
  const err = await rejection(client.list('tasker'))
  t.match(err.details, { status: 429, retryAfterMs: 120_000 })
  t.equal(api.calls.length, 1)
})

t.test('a 500 storm opens the circuit; a probe closes it again', async (t) => {
  const { api, client, outcomes } = await setup(t, { attempts: 2, circuitFailureThreshold: 3, circuitOpenMs: 150 })
  const storm = api.fault({ method: 'GET' }, { status: 500, body: { error: 'internal error', status: 'unknown' }, headers: { 'fly-request-id': 'req-storm' } }, Infinity)
  const first = await rejection(client.list('tasker'))
  t.equal(first.code, 'SIDECAR_ERR_MACHINES_HTTP')
  t.equal(first.message, 'Machines API list answered 500 (fly-request-id req-storm): {"error":"internal error","status":"unknown"}')
  t.strictSame(first.details, { op: 'list', status: 500, body: '{"error":"internal error","status":"unknown"}', flyRequestId: 'req-storm', retryAfterMs: undefined })
  t.equal(api.calls.length, 2, 'two attempts')
  const second = await rejection(client.list('tasker'))
  t.equal(second.code, 'SIDECAR_ERR_MACHINES_CIRCUIT_OPEN', 'the third failure opened it; the retry is refused')
  t.equal(api.calls.length, 3)
  const third = await rejection(client.get('m1'))
  t.equal(third.code, 'SIDECAR_ERR_MACHINES_CIRCUIT_OPEN', 'every call fails fast while open')
  t.match(third.message, /^Machines API calls are paused for \d+ ms after 3 consecutive failures$/)
  t.equal(api.calls.length, 3, 'no call reached the API')
  t.match(client.lastOutcome, { ok: false, message: third.message })
  await new Promise((resolve) => setTimeout(resolve, 170))
  storm.clear()
  t.strictSame(await client.list('tasker'), [], 'half-open: the probe goes through')
  t.equal(api.calls.length, 4)
  t.match(client.lastOutcome, { ok: true })
  t.strictSame(outcomes, ['list:500', 'list:500', 'list:500', 'list:circuit_open', 'get:circuit_open', 'list:ok'])
})

t.test('a call that does not answer in time fails with a timeout and is retried', async (t) => {
  const { api, client, outcomes } = await setup(t, { callTimeoutMs: 80, attempts: 2 })
  api.fault({ method: 'GET' }, { delayMs: 150 }, 2)
  const err = await rejection(client.get('nope'))
  t.equal(err.code, 'SIDECAR_ERR_MACHINES_TIMEOUT')
  t.equal(err.message, 'Machines API get did not answer within 80 ms')
  t.strictSame(outcomes, ['get:timeout', 'get:timeout'])
  t.equal(api.calls.length, 2)
})

t.test('a body that is not JSON is an error, retried like a 5xx', async (t) => {
  const { api, client } = await setup(t, { attempts: 2 })
  api.fault({ method: 'GET' }, { status: 200, garbage: true })
  t.strictSame(await client.list('tasker'), [], 'second attempt succeeded')
  api.fault({ method: 'GET' }, { status: 200, garbage: true }, 2)
  const err = await rejection(client.list('tasker'))
  t.equal(err.code, 'SIDECAR_ERR_MACHINES_BAD_RESPONSE')
})

t.test('a connection cut without an answer is a network error', async (t) => {
  const { api, client } = await setup(t, { attempts: 1 })
  api.fault({ method: 'GET' }, { hangUp: true })
  const err = await rejection(client.list('tasker'))
  t.equal(err.code, 'SIDECAR_ERR_MACHINES_NETWORK')
  t.match(err.message, /^Machines API list failed: /)
})

t.test('create is never retried by the client; 4xx details are kept', async (t) => {
  const { api, client } = await setup(t)
  api.fault({ method: 'POST' }, { status: 503, body: { error: 'capacity' } })
  const err = await rejection(client.create({ config: { image: 'img' } }))
  t.match(err.details, { op: 'create', status: 503 })
  t.equal(api.calls.length, 1, 'one attempt only')
  api.fault({ method: 'POST' }, { status: 422, headers: { 'fly-request-id': 'req-422' }, body: { error: 'machine limit reached', status: 'unknown' } })
  const limit = await rejection(client.create({ config: { image: 'img' } }))
  t.equal(limit.message, 'Machines API create answered 422 (fly-request-id req-422): {"error":"machine limit reached","status":"unknown"}')
})

t.test('the token never shows, even when the API echoes it', async (t) => {
  const { api, client, logs } = await setup(t, { attempts: 2 })
  api.fault({ method: 'GET' }, { status: 500, body: { error: `bad token ${TOKEN}` } }, 2)
  const err = await rejection(client.list('tasker'))
  t.equal(err.message, 'Machines API list answered 500 (fly-request-id ' + String(err.details?.flyRequestId) + '): {"error":"bad token [redacted]"}')
  logs.logger.error({ err }, 'logged error')
  const secret = TOKEN.slice('FlyV1 '.length)
  t.notOk(logs.text().includes(secret), 'not in the logs')
  t.notOk(JSON.stringify(err.details).includes(secret), 'not in the details')
  t.notOk(JSON.stringify(client.lastOutcome).includes(secret), 'not in the last outcome')
})

t.test('404 on get is undefined, 404 on destroy is done, 408 on wait is false', async (t) => {
  const { api, client } = await setup(t)
  const m = api.addMachine({ state: 'stopped', metadata: { sidecar_pool: 'tasker' } })
  t.equal(await client.get('missing0000000'), undefined)
  api.fault({ method: 'GET' }, { status: 404, body: '404 page not found' })
  t.equal(await client.get('missing0000000'), undefined, 'whatever the 404 body is')
  await client.destroy('missing0000000', false)
  t.equal(await client.wait(m.id, 'started', 1), false, '408 from the fake (clamped waits)')
  await client.destroy(m.id, false)
  t.equal(api.machines.get(m.id)?.state, 'destroyed')
  t.strictSame(api.calls.map((c) => `${brief(c)} ${c.status}`), [
    `GET ${LIST}/missing0000000 404`,
    `GET ${LIST}/missing0000000 404`,
    `DELETE ${LIST}/missing0000000 404`,
    `GET ${LIST}/${m.id}/wait?state=started&timeout=1 408`,
    `DELETE ${LIST}/${m.id} 200`,
  ])
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('list re-filters on the client side', async (t) => {
  const { api, client } = await setup(t)
  // A fake that ignores the filter, like an API version without it.
  api.fault({ method: 'GET', path: LIST }, () => ({ status: 200, body: [...api.machines.values()].map((m) => ({ id: m.id, state: m.state, config: m.config })) }))
  const mine = api.addMachine({ metadata: { sidecar_pool: 'tasker' } })
  api.addMachine({ metadata: { sidecar_pool: 'other' } })
  api.addMachine({})
  t.strictSame((await client.list('tasker')).map((m) => m.id), [mine.id])
})

t.test('per-action rate limit spaces calls out', async (t) => {
  const { client } = await setup(t, { rate: { perSecond: 20, burst: 2 } })
  const started = performance.now()
  for (let i = 0; i < 4; i++) await client.list('tasker')
  t.ok(performance.now() - started >= 95, 'two calls of the burst, then 50 ms apart')
})
