// When no pool Machine can be had at all: not on Fly, no token, unknown pool, API unreachable,
// after close. Every pick answers ok: false with a MACHINES code saying why; the token never
// shows in logs, errors or the snapshot.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { createPoolMachines } from '../../src/machines/pool.ts'
import { deadPort } from '../helpers/net.ts'
import { APP, FAST, TOKEN, captureLogs, makeConfig, seedSelf, startPools } from '../fixtures/machines/setup.ts'

const SECRET = TOKEN.slice('FlyV1 '.length)

t.test('not on Fly: every pick says why, without a call', async (t) => {
  const logs = captureLogs()
  const pools = createPoolMachines({ config: makeConfig(undefined, { app: undefined, machineId: undefined }), logger: logs.logger })
  const pick = await pools.pick('tasker')
  t.equal(pick.ok, false)
  if (pick.ok) return
  t.equal(pick.error.code, 'SIDECAR_ERR_MACHINES_UNAVAILABLE')
  t.equal(pick.error.message, 'the Machines API cannot be used: not on Fly (FLY_APP_NAME or FLY_MACHINE_ID is not set)')
  t.match(pools.snapshot(), [{ pool: 'tasker', machines: [], lastOutcome: { ok: false, message: pick.error.message } }])
  t.match(logs.lines(), [{ level: 'info', msg: 'not on fly: pools are unavailable', pools: ['tasker'] }])
  pools.reportFailed('tasker', 'x')
  await pools.close()
})

t.test('no token: every pick says to set the secret', async (t) => {
  const api = await startMachinesApi({ app: APP })
  t.teardown(() => api.close())
  const pools = createPoolMachines({ config: makeConfig(api, { apiToken: undefined }), logger: captureLogs().logger })
  const pick = await pools.pick('tasker')
  t.equal(!pick.ok && pick.error.message, 'the Machines API cannot be used: no API token (set the FLY_API_TOKEN secret)')
  t.equal(api.calls.length, 0)
  await pools.close()
})

t.test('unknown pool', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  const { pools } = startPools(t, api)
  const pick = await pools.pick('nope')
  t.equal(!pick.ok && pick.error.code, 'SIDECAR_ERR_MACHINES_UNKNOWN_POOL')
  t.equal(api.calls.length, 0)
})

t.test('API unreachable: a network error, then fail fast for errorRetryMs', async (t) => {
  const port = await deadPort()
  const logs = captureLogs()
  const pools = createPoolMachines({ config: makeConfig({ url: `http://127.0.0.1:${port}` }), logger: logs.logger, timing: { ...FAST, attempts: 2, errorRetryMs: 60_000 } })
  t.teardown(() => pools.close())
  const first = await pools.pick('tasker')
  t.equal(!first.ok && first.error.code, 'SIDECAR_ERR_MACHINES_NETWORK')
  const started = performance.now()
  const second = await pools.pick('tasker')
  const elapsed = performance.now() - started
  t.equal(!second.ok && !first.ok && second.error, !first.ok && first.error, 'the same error, without a call')
  t.ok(elapsed < 20, 'at once')
  t.ok(logs.lines().some((l) => l.msg === 'pool machine lookup failed' && l.level === 'warn'))
})

t.test('after close: picks fail with CLOSED', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  const { pools } = startPools(t, api)
  await pools.close()
  const pick = await pools.pick('tasker')
  t.equal(!pick.ok && pick.error.code, 'SIDECAR_ERR_MACHINES_CLOSED')
})

t.test('token redaction across failures, logs, errors and snapshot', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  // The API echoes the token in error bodies (it must still never reach a log line).
  api.fault({ method: 'GET' }, { status: 500, body: { error: `token ${TOKEN} rejected`, status: 'unknown' } }, 2)
  api.fault({ method: 'POST' }, { status: 400, body: { error: `bad request from ${SECRET}` } })
  const { pools, logs } = startPools(t, api, { timing: { attempts: 2 } })
  const failed = await pools.pick('tasker')
  t.equal(failed.ok, false)
  const failedCreate = await pools.pick('tasker')
  t.equal(failedCreate.ok, false)
  const ok = await pools.pick('tasker')
  t.equal(ok.ok, true)
  const everything = [
    logs.text(),
    JSON.stringify(pools.snapshot()),
    ...[failed, failedCreate].map((p) => p.ok ? '' : `${p.error.message} ${JSON.stringify(p.error.details)} ${String((p.error.cause as Error | undefined)?.message)}`),
  ].join('\n')
  t.ok(logs.lines().length >= 5, 'there were log lines to check')
  t.ok(everything.includes('[redacted]'), 'the echoed token was replaced')
  t.notOk(everything.includes(SECRET), 'the token is nowhere')
  t.ok(api.calls.every((c) => c.headers.authorization === TOKEN), 'yet every call carried it')
})
