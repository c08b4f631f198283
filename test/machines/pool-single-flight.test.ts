// 500 concurrent picks with no pool Machine: one lookup, one create, one wait, one re-list, and
// every pick answers the same new Machine; later picks come from the cache without any call.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { createPoolMachines } from '../../src/machines/pool.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, FAST, IMAGE, TOKEN, brief, captureLogs, makeConfig, seedSelf } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()

t.test('500 concurrent picks share one lookup and one create', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 30, region: 'ams' })
  t.teardown(() => api.close())
  seedSelf(api)
  const logs = captureLogs()
  const created: string[] = []
  const ops: string[] = []
  const pools = createPoolMachines({
    config: makeConfig(api),
    logger: logs.logger,
    timing: FAST,
    hooks: { onCreated: (pool) => created.push(pool), onCall: (op, outcome) => ops.push(`${op}:${outcome}`) },
  })
  t.teardown(() => pools.close())

  const picks = await Promise.all(Array.from({ length: 500 }, () => pools.pick('tasker')))
  const tasker = [...api.machines.values()].find((m) => m.metadata.sidecar_pool === 'tasker')
  t.ok(tasker, 'a tasker Machine was created')
  if (tasker === undefined) return
  t.equal(tasker.state, 'started', 'and waited for until started')
  t.strictSame(new Set(picks.map((p) => JSON.stringify(p))), new Set([JSON.stringify({ ok: true, machineId: tasker.id })]), 'every pick answers the new Machine')

  const base = `/v1/apps/${APP}/machines`
  t.strictSame(api.calls.map(brief), [
    `GET ${base}?metadata.sidecar_pool=tasker`,
    `GET ${base}/self0000000001`,
    `POST ${base}`,
    `GET ${base}/${tasker.id}/wait?state=started&timeout=1`,
    `GET ${base}?metadata.sidecar_pool=tasker`,
  ], 'find, read own config, create, wait, re-list: nothing more')
  t.strictSame(created, ['tasker'])
  t.strictSame(ops, ['list:ok', 'get:ok', 'create:ok', 'wait:ok', 'list:ok'])
  t.strictSame(spec.checkAll(api.calls), [], 'every call and answer follows the OpenAPI spec')

  for (const call of api.calls) {
    t.equal(call.headers.authorization, TOKEN, 'FlyV1 token sent as it is')
    t.equal(call.headers.accept, 'application/json')
  }

  const create = api.calls[2]?.body as { name: string, region: string, config: Record<string, unknown> }
  const createId = (create.config.metadata as Record<string, string>).sidecar_create_id
  t.match(createId, /^[a-z0-9]{12,20}$/, 'a unique create id')
  t.strictSame(create, {
    name: `tasker-${createId}`,
    region: 'ams',
    config: {
      init: { cmd: ['fly-replay-sidecar', '--', 'php-fpm'] },
      restart: { policy: 'on-failure', max_retries: 10 },
      image: IMAGE,
      env: { APP_ENV: 'production', LOG_CHANNEL: 'stderr', SIDECAR_POOL: 'tasker' },
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 },
      services: [{
        protocol: 'tcp',
        internal_port: 8080,
        autostop: 'stop',
        autostart: true,
        min_machines_running: 0,
        ports: [{ port: 80, handlers: ['http'], force_https: true }, { port: 443, handlers: ['tls', 'http'] }],
        concurrency: { type: 'requests', soft_limit: 20, hard_limit: 25 },
        checks: [{ type: 'http', interval: '15s', timeout: '2s', grace_period: '5s', method: 'GET', path: '/_sidecar/health' }],
      }],
      checks: { alive: { type: 'tcp', port: 8080, interval: '15s', timeout: '2s' } },
      metadata: { sidecar_pool: 'tasker', sidecar_create_id: createId },
    },
  }, 'a clone of this Machine: no mounts, no flyctl metadata, pool autostop, same region')

  const before = api.calls.length
  const again = await Promise.all(Array.from({ length: 50 }, () => pools.pick('tasker')))
  t.equal(api.calls.length, before, 'cached: no call for later picks')
  t.ok(again.every((p) => p.ok && p.machineId === tasker.id))
  t.strictSame(pools.snapshot(), [{ pool: 'tasker', machines: [{ id: tasker.id, state: 'started' }], lastOutcome: pools.snapshot()[0]?.lastOutcome }])
  t.match(pools.snapshot()[0]?.lastOutcome, { ok: true, at: /^\d{4}-\d\d-\d\dT/ })
  t.notOk(logs.text().includes('secretTOKEN'), 'the token is not in the logs')
})
