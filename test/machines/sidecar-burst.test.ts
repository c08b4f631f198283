// The "done when": a whole sidecar (real config, real PoolMachines, real server) with no
// tasker in the fake Machines API answers a burst of 500 concurrent Livewire process() calls with
// exactly one create and `fly-replay: instance=<new id>` on every one; the app sees none of them.
import http from 'node:http'
import t from 'tap'
import { Agent, request } from 'undici'
import { parseConfig } from '../../src/config/load.ts'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { startSidecar } from '../../src/sidecar.ts'
import { closeServer, listen } from '../helpers/net.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, IMAGE, TOKEN, captureLogs, live, seedSelf } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const PROCESS = JSON.stringify({ components: [{ snapshot: '{"data":{}}', updates: {}, calls: [{ path: '', method: 'process', params: [] }] }] })

t.test('500 concurrent Livewire process() calls: one create, every one replayed to it', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 100, region: 'ams' })
  t.teardown(() => api.close())
  seedSelf(api)
  let appHits = 0
  const app = http.createServer((_req, res) => { appHits++; res.end('app') })
  const appPort = await listen(app)
  t.teardown(() => closeServer(app))

  const yaml = `listen: 127.0.0.1:0
app:
  url: http://127.0.0.1:${appPort}
metrics: false
fly:
  api-url: ${api.url}
pools:
  tasker:
    size: 1
rules:
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      headers: { x-livewire: true }
      json:
        components[*].calls[*].method: process
    to: tasker
`
  const env = { FLY_APP_NAME: APP, FLY_MACHINE_ID: 'self0000000001', FLY_REGION: 'ams', FLY_IMAGE_REF: IMAGE, FLY_API_TOKEN: TOKEN }
  const logs = captureLogs()
  const sidecar = await startSidecar({ config: parseConfig(yaml, '/tmp/routes.yaml', env), logger: logs.logger })
  t.teardown(() => sidecar.shutdown())
  const agent = new Agent({ connections: 500 })
  t.teardown(() => agent.close())

  const started = performance.now()
  const answers = await Promise.all(Array.from({ length: 500 }, async () => {
    const res = await request(`http://127.0.0.1:${sidecar.address.port}/livewire/update`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', 'x-livewire': 'true' },
      body: PROCESS,
    })
    await res.body.dump()
    return `${res.statusCode} ${String(res.headers['fly-replay'])}`
  }))
  const seconds = (performance.now() - started) / 1000
  const tasker = live(api)
  t.equal(tasker.length, 1, 'one tasker Machine exists')
  const id = tasker[0]?.id as string
  t.strictSame([...new Set(answers)], [`307 instance=${id};timeout=30s;fallback=prefer_self;state=livewire-process`], 'every answer replays to it')
  t.equal(api.calls.filter((c) => c.method === 'POST').length, 1, 'exactly one create')
  t.equal(api.calls.filter((c) => c.method === 'GET' && c.path === `/v1/apps/${APP}/machines`).length, 2, 'one lookup and the re-list after the create')
  t.equal(appHits, 0, 'the app saw none of them')
  t.strictSame(spec.checkAll(api.calls), [])
  t.notOk(logs.text().includes(TOKEN.slice(6)), 'the token is not in the logs')
  t.comment(`500 requests answered in ${seconds.toFixed(2)} s, including a 100 ms Machine boot`)
})
