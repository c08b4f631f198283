// The metrics: what each hot-path call exposes in the Prometheus text, the private registry
// with Node's default metrics, and the metrics server on its own port.
import t from 'tap'
import http from 'node:http'
import { Writable } from 'node:stream'
import { register as globalRegister } from 'prom-client'
import { createMetrics, startMetricsServer } from '../src/metrics.ts'
import { createLogger } from '../src/log.ts'
import { SidecarError } from '../src/errors.ts'
import { parseConfig } from '../src/config/load.ts'
import { startSidecar } from '../src/sidecar.ts'
import { startMachinesApi } from '../src/emulator/machines-api.ts'
import { createPoolMachines } from '../src/machines/pool.ts'
import type { PoolMachineSnapshot } from '../src/machines/types.ts'
import { listen, closeServer } from './helpers/net.ts'
import { APP, FAST, IMAGE, TOKEN, seedSelf } from './fixtures/machines/setup.ts'

/** Sample lines of the text format: `name{labels}` -> value. */
function samples (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

function ours (text: string): Map<string, number> {
  return new Map([...samples(text)].filter(([k]) => k.startsWith('fly_replay_sidecar_')))
}

const quietLogger = () => createLogger({ destination: new Writable({ write (_c, _e, cb) { cb() } }) })

t.test('every call shows up as the documented series', async (t) => {
  const m = createMetrics()
  m.decision('replay', 'livewire-process', 0.003)
  m.decision('replay', 'livewire-process', 0.2)
  m.decision('local', '', 0.00002)
  m.bodyInspected(2000)
  m.bodyInspected(2_000_000)
  m.upstreamError('SIDECAR_ERR_UPSTREAM_UNAVAILABLE')
  m.upstreamError('SIDECAR_ERR_UPSTREAM_UNAVAILABLE')
  m.upstreamError('SIDECAR_ERR_UPSTREAM_TIMEOUT')
  m.stream(1); m.stream(1); m.stream(-1)
  m.websocket(1)
  m.machinesCall('list', 'ok', 0.04)
  m.machinesCall('create', '429', 0.3)
  m.machinesCall('create', 'ok', 1.2)
  m.poolMachineCreated('tasker')
  m.poolMachineReplaced('tasker')
  m.poolOverflow('tasker')
  m.poolOverflow('tasker')
  m.poolMachineScaledDown('tasker')

  const s = ours(await m.registry.metrics())
  const P = 'fly_replay_sidecar_'
  t.equal(s.get(`${P}requests_total{decision="replay",rule="livewire-process"}`), 2)
  t.equal(s.get(`${P}requests_total{decision="local",rule=""}`), 1)
  t.equal(s.get(`${P}decision_duration_seconds_bucket{decision="replay",le="0.0025"}`), 0)
  t.equal(s.get(`${P}decision_duration_seconds_bucket{decision="replay",le="0.005"}`), 1)
  t.equal(s.get(`${P}decision_duration_seconds_bucket{decision="replay",le="0.25"}`), 2)
  t.equal(s.get(`${P}decision_duration_seconds_bucket{decision="replay",le="+Inf"}`), 2)
  t.equal(s.get(`${P}decision_duration_seconds_count{decision="replay"}`), 2)
  t.equal(s.get(`${P}decision_duration_seconds_sum{decision="replay"}`), 0.203)
  t.equal(s.get(`${P}decision_duration_seconds_bucket{decision="local",le="0.0001"}`), 1)
  // Decisions not yet taken still have their (zero) latency series, so rate() has a baseline.
  t.equal(s.get(`${P}decision_duration_seconds_count{decision="reject"}`), 0)
  t.equal(s.get(`${P}body_inspected_bytes_bucket{le="4096"}`), 1)
  t.equal(s.get(`${P}body_inspected_bytes_bucket{le="1048576"}`), 1)
  t.equal(s.get(`${P}body_inspected_bytes_bucket{le="4194304"}`), 2)
  t.equal(s.get(`${P}body_inspected_bytes_sum`), 2_002_000)
  t.equal(s.get(`${P}body_inspected_bytes_count`), 2)
  t.equal(s.get(`${P}upstream_errors_total{code="SIDECAR_ERR_UPSTREAM_UNAVAILABLE"}`), 2)
  t.equal(s.get(`${P}upstream_errors_total{code="SIDECAR_ERR_UPSTREAM_TIMEOUT"}`), 1)
  t.equal(s.get(`${P}streams_in_flight`), 1)
  t.equal(s.get(`${P}websockets_open`), 1)
  t.equal(s.get(`${P}machines_api_requests_total{op="list",outcome="ok"}`), 1)
  t.equal(s.get(`${P}machines_api_requests_total{op="create",outcome="429"}`), 1)
  t.equal(s.get(`${P}machines_api_requests_total{op="create",outcome="ok"}`), 1)
  t.equal(s.get(`${P}machines_api_duration_seconds_count{op="create"}`), 2)
  t.equal(s.get(`${P}machines_api_duration_seconds_bucket{op="create",le="0.25"}`), 0)
  t.equal(s.get(`${P}machines_api_duration_seconds_bucket{op="create",le="0.5"}`), 1)
  t.equal(s.get(`${P}machines_api_duration_seconds_bucket{op="create",le="2.5"}`), 2)
  t.equal(s.get(`${P}pool_machines_created_total{pool="tasker"}`), 1)
  t.equal(s.get(`${P}pool_machines_replaced_total{pool="tasker"}`), 1)
  t.equal(s.get(`${P}pool_overflow_total{pool="tasker"}`), 2)
  t.equal(s.get(`${P}pool_machines_scaled_down_total{pool="tasker"}`), 1)

  const text = await m.registry.metrics()
  for (const [name, type] of [
    ['requests_total', 'counter'], ['decision_duration_seconds', 'histogram'], ['body_inspected_bytes', 'histogram'],
    ['upstream_errors_total', 'counter'], ['streams_in_flight', 'gauge'], ['websockets_open', 'gauge'],
    ['machines_api_requests_total', 'counter'], ['machines_api_duration_seconds', 'histogram'],
    ['pool_machines_created_total', 'counter'], ['pool_machines_replaced_total', 'counter'],
    ['pool_overflow_total', 'counter'], ['pool_machines_scaled_down_total', 'counter'],
  ] as const) {
    t.match(text, `# TYPE ${P}${name} ${type}\n`, name)
    t.match(text, new RegExp(`# HELP ${P}${name} \\S`), `${name} has help`)
  }
})

t.test('repeat calls reuse their series: no new series after the first call', async (t) => {
  const m = createMetrics()
  m.decision('replay', 'r', 0.001)
  m.upstreamError('E')
  m.machinesCall('get', 'ok', 0.01)
  const before = samples(await m.registry.metrics()).size
  for (let i = 0; i < 1000; i++) {
    m.decision('replay', 'r', 0.001)
    m.upstreamError('E')
    m.machinesCall('get', 'ok', 0.01)
  }
  const after = ours(await m.registry.metrics())
  t.equal(samples(await m.registry.metrics()).size, before)
  t.equal(after.get('fly_replay_sidecar_requests_total{decision="replay",rule="r"}'), 1001)
  t.equal(after.get('fly_replay_sidecar_upstream_errors_total{code="E"}'), 1001)
})

t.test('label values are escaped in the text format', async (t) => {
  const m = createMetrics()
  m.upstreamError('odd "code"\\x')
  t.match(await m.registry.metrics(), 'fly_replay_sidecar_upstream_errors_total{code="odd \\"code\\"\\\\x"} 1')
})

t.test('each createMetrics has its own registry, with default Node metrics, and none in the global one', async (t) => {
  const a = createMetrics()
  const b = createMetrics()
  a.poolMachineCreated('tasker')
  t.equal(ours(await a.registry.metrics()).get('fly_replay_sidecar_pool_machines_created_total{pool="tasker"}'), 1)
  t.equal(ours(await b.registry.metrics()).get('fly_replay_sidecar_pool_machines_created_total{pool="tasker"}'), undefined)
  const text = await a.registry.metrics()
  t.match(text, /\nprocess_cpu_user_seconds_total \d/)
  t.match(text, /\nnodejs_heap_size_used_bytes \d/)
  t.notMatch(await globalRegister.metrics(), 'fly_replay_sidecar_')
})

/** The pool_machines series of a scrape, as `{pool,state}` -> count. */
function poolMachines (text: string): Record<string, number> {
  return Object.fromEntries([...ours(text)].filter(([k]) => k.startsWith('fly_replay_sidecar_pool_machines{')).map(([k, v]) => [k.slice('fly_replay_sidecar_pool_machines'.length), v]))
}

t.test('pool_machines counts the Machines of each pool by state, read at every scrape', async (t) => {
  const m = createMetrics()
  t.strictSame(poolMachines(await m.registry.metrics()), {}, 'no series before a source is set')
  t.match(await m.registry.metrics(), '# TYPE fly_replay_sidecar_pool_machines gauge\n')
  let view: PoolMachineSnapshot[] = [
    { pool: 'tasker', machines: [{ id: 'a', state: 'started' }, { id: 'b', state: 'stopped' }, { id: 'c', state: 'stopped' }] },
    { pool: 'reports', machines: [{ id: 'd', state: 'suspended' }] },
    { pool: 'empty', machines: [], lastOutcome: { at: '2026-12-07T00:00:00.000Z', ok: false, message: 'not on Fly' } },
  ]
  m.readPoolMachines(() => view)
  t.strictSame(poolMachines(await m.registry.metrics()), {
    '{pool="tasker",state="started"}': 1,
    '{pool="tasker",state="stopped"}': 2,
    '{pool="reports",state="suspended"}': 1,
  })
  // A state no Machine is in any more leaves no series behind (a stale 1 would be a lie).
  view = [{ pool: 'tasker', machines: [{ id: 'a', state: 'started' }, { id: 'b', state: 'started' }] }]
  t.strictSame(poolMachines(await m.registry.metrics()), { '{pool="tasker",state="started"}': 2 })
  m.registry.resetMetrics()
  t.strictSame(poolMachines(await m.registry.metrics()), { '{pool="tasker",state="started"}': 2 }, 'reset cannot zero what is read live')
})

t.test('a running sidecar exposes its pools\' Machines by state from the Machines API, and follows their changes', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, region: 'ams' })
  t.teardown(() => api.close())
  seedSelf(api)
  const inPool = (pool: string, state: string): string => api.addMachine({ image: IMAGE, state, metadata: { sidecar_pool: pool } }).id
  inPool('tasker', 'started')
  const sleeper = inPool('tasker', 'stopped')
  inPool('tasker', 'stopped')
  inPool('reports', 'suspended')
  // Not of the pool: another process group, and a destroyed pool Machine.
  api.addMachine({ image: IMAGE, state: 'started', metadata: { fly_process_group: 'worker' } })
  inPool('tasker', 'destroyed')
  const app = http.createServer((_req, res) => { res.end('ok') })
  const appPort = await listen(app)
  t.teardown(() => closeServer(app))
  const yaml = `listen: 127.0.0.1:0
app:
  url: http://127.0.0.1:${appPort}
metrics:
  listen: 127.0.0.1:0
fly:
  api-url: ${api.url}
pools:
  tasker:
    size: 3
  reports:
    size: 1
rules:
  - match: { path: /tasker }
    to: tasker
  - match: { path: /reports }
    to: reports
`
  const env = { FLY_APP_NAME: APP, FLY_MACHINE_ID: 'self0000000001', FLY_REGION: 'ams', FLY_IMAGE_REF: IMAGE, FLY_API_TOKEN: TOKEN }
  const config = parseConfig(yaml, '/tmp/routes.yaml', env)
  const logger = quietLogger()
  // The pools' own lookups, with a short cache so a second request re-lists.
  const pools = createPoolMachines({ config, logger, timing: { ...FAST, cacheTtlMs: 50 } })
  const sidecar = await startSidecar({ config, logger, pools })
  t.teardown(() => sidecar.shutdown())
  const scrape = async (): Promise<Record<string, number>> => poolMachines(await (await fetch(`http://127.0.0.1:${String(sidecar.metricsPort)}/metrics`)).text())
  const replay = async (path: string): Promise<string | null> => {
    const res = await fetch(`http://127.0.0.1:${sidecar.address.port}${path}`)
    await res.text()
    return res.headers.get('fly-replay')
  }

  t.strictSame(await scrape(), {}, 'nothing listed before a pool is first needed')
  t.match(await replay('/tasker'), /^instance=/)
  t.match(await replay('/reports'), /^instance=/)
  t.strictSame(await scrape(), {
    '{pool="tasker",state="started"}': 1,
    '{pool="tasker",state="stopped"}': 2,
    '{pool="reports",state="suspended"}': 1,
  })

  // Fly's proxy woke a Machine: the next lookup sees it, and the next scrape says so.
  api.setState(sleeper, 'started')
  await new Promise((resolve) => setTimeout(resolve, 60))
  let now = await scrape()
  const deadline = Date.now() + 5_000
  while (now['{pool="tasker",state="started"}'] !== 2 && Date.now() < deadline) {
    await replay('/tasker')
    await new Promise((resolve) => setTimeout(resolve, 60))
    now = await scrape()
  }
  t.strictSame(now, {
    '{pool="tasker",state="started"}': 2,
    '{pool="tasker",state="stopped"}': 1,
    '{pool="reports",state="suspended"}': 1,
  })
})

t.test('registry.resetMetrics zeroes our series', async (t) => {
  const m = createMetrics()
  m.decision('local', 'x', 0.001)
  m.bodyInspected(10)
  m.registry.resetMetrics()
  const s = ours(await m.registry.metrics())
  t.equal(s.get('fly_replay_sidecar_requests_total{decision="local",rule="x"}'), 0)
  t.equal(s.get('fly_replay_sidecar_body_inspected_bytes_count'), 0)
  t.equal(s.get('fly_replay_sidecar_body_inspected_bytes_bucket{le="256"}'), 0)
})

function get (port: number, path: string, method = 'GET'): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

t.test('the metrics server answers on its own port and path', async (t) => {
  const m = createMetrics()
  m.decision('replay', 'livewire', 0.01)
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, path: '/metrics' }, m, quietLogger())
  t.teardown(() => server.close())
  t.ok(server.port > 0)

  const ok = await get(server.port, '/metrics')
  t.equal(ok.status, 200)
  t.equal(ok.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(Number(ok.headers['content-length']), Buffer.byteLength(ok.body))
  t.equal(ours(ok.body).get('fly_replay_sidecar_requests_total{decision="replay",rule="livewire"}'), 1)
  t.match(ok.body, /\nprocess_resident_memory_bytes \d/)

  const withQuery = await get(server.port, '/metrics?x=1')
  t.equal(withQuery.status, 200)

  const head = await get(server.port, '/metrics', 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body, '')

  t.strictSame(await get(server.port, '/other').then((r) => [r.status, r.body]), [404, 'not found\n'])
  const post = await get(server.port, '/metrics', 'POST')
  t.strictSame([post.status, post.headers.allow, post.body], [405, 'GET, HEAD', 'method not allowed\n'])
})

t.test('a taken port is a SIDECAR_ERR_SERVER_LISTEN error with the cause', async (t) => {
  const blocker = http.createServer()
  const port = await listen(blocker)
  t.teardown(() => closeServer(blocker))
  const err = await startMetricsServer({ host: '127.0.0.1', port, path: '/metrics' }, createMetrics(), quietLogger()).then(
    () => t.fail('listen should fail'),
    (e: unknown) => e
  )
  t.ok(err instanceof SidecarError)
  t.equal((err as SidecarError).code, 'SIDECAR_ERR_SERVER_LISTEN')
  t.equal((err as SidecarError).message, `cannot listen on 127.0.0.1:${port} (metrics)`)
  t.equal(((err as SidecarError).cause as NodeJS.ErrnoException).code, 'EADDRINUSE')
})

t.test('close ends open keep-alive connections', async (t) => {
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, path: '/metrics' }, createMetrics(), quietLogger())
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  await new Promise<void>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port, path: '/metrics', agent }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject)
  })
  const started = Date.now()
  await server.close()
  t.ok(Date.now() - started < 1000, 'close does not wait for the idle socket to time out')
})
