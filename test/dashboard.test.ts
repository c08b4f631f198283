// The Grafana dashboard (examples/grafana/fly-replay-sidecar.json) against a running sidecar: every
// query parses as PromQL (Prometheus' own grammar), and every metric and label it reads is in the
// sidecar's /metrics after ordinary traffic, or is one of the labels Fly adds when it scrapes.
import t from 'tap'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parser } from '@prometheus-io/lezer-promql'
import { parseConfig } from '../src/config/load.ts'
import { startSidecar } from '../src/sidecar.ts'
import { startMachinesApi } from '../src/emulator/machines-api.ts'
import { closeServer, listen } from './helpers/net.ts'
import { APP, IMAGE, TOKEN, captureLogs, seedSelf } from './fixtures/machines/setup.ts'

const DASHBOARD = fileURLToPath(new URL('../examples/grafana/fly-replay-sidecar.json', import.meta.url))
/** Labels Fly's scraper adds to every series (docs/metrics.md): not in /metrics, always in Prometheus. */
const FLY_LABELS = new Set(['app', 'region', 'host', 'instance'])
/** Grafana's range variables, replaced as Grafana does before a query reaches Prometheus. */
const GRAFANA_RANGES: Record<string, string> = { $__rate_interval: '1m', $__interval: '15s', $__range: '3h' }

interface Target { refId: string, expr: string, datasource?: { uid?: string } }
interface Panel { id: number, type: string, title: string, gridPos: { x: number, y: number, w: number, h: number }, datasource?: { type?: string, uid?: string }, targets?: Target[] }
interface Variable { name: string, type: string, query?: string | { query: string } }
interface Dashboard { uid: string, title: string, panels: Panel[], templating: { list: Variable[] } }

/** Metric name → every label name its samples carry, from the Prometheus text format. */
type Exposition = Map<string, Set<string>>

function exposition (text: string): Exposition {
  const out: Exposition = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line)
    if (m === null) continue
    const labels = out.get(m[1] as string) ?? new Set<string>()
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1] as string)
    out.set(m[1] as string, labels)
  }
  return out
}

/** What is wrong with one query against `metrics`: syntax errors, unknown metrics, unknown labels. */
function problems (query: string, metrics: Exposition): string[] {
  let expr = query
  for (const [v, range] of Object.entries(GRAFANA_RANGES)) expr = expr.replaceAll(v, range)
  const out: string[] = []
  const selectors: { metric: string, labels: string[] }[] = []
  const grouping: string[] = []
  const cursor = parser.parse(expr).cursor()
  do {
    const node = cursor.node
    if (node.type.isError) out.push(`syntax error at ${node.from}: ${JSON.stringify(expr.slice(node.from, node.from + 20))}`)
    if (node.name === 'VectorSelector') {
      const id = node.getChild('Identifier')
      const labels = node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher').map((m) => {
        const name = m.getChild('LabelName')
        return name === null ? '' : expr.slice(name.from, name.to)
      }) ?? []
      selectors.push({ metric: id === null ? '' : expr.slice(id.from, id.to), labels })
    }
    if (node.name === 'GroupingLabels') {
      for (const l of node.getChildren('LabelName')) grouping.push(expr.slice(l.from, l.to))
    }
  } while (cursor.next())
  if (selectors.length === 0) out.push('no metric selector')
  const known = new Set<string>(FLY_LABELS)
  for (const s of selectors) {
    const labels = metrics.get(s.metric)
    if (labels === undefined) { out.push(`metric ${s.metric} is not in /metrics`); continue }
    for (const l of labels) known.add(l)
    for (const l of s.labels) if (!labels.has(l) && !FLY_LABELS.has(l)) out.push(`label ${l} is not on ${s.metric}`)
  }
  for (const l of grouping) if (!known.has(l)) out.push(`grouping label ${l} is on none of the query's metrics`)
  return out
}

/** `label_values(<selector>, <label>)` of a template variable, as the query it stands for. */
function variableQuery (v: Variable): string | undefined {
  const q = typeof v.query === 'string' ? v.query : v.query?.query
  const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q ?? '')
  if (m === null) return undefined
  return `count by (${m[2] as string}) (${m[1] as string})`
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard

t.test('the checker itself finds each kind of mistake', async (t) => {
  const metrics = exposition('fly_replay_sidecar_requests_total{decision="local",rule=""} 1\nx_bucket{le="1"} 1\n')
  const cases: [string, string[]][] = [
    ['sum by (decision) (rate(fly_replay_sidecar_requests_total{app="$app", instance=~"$instance"}[$__rate_interval]))', []],
    ['histogram_quantile(0.9, sum by (le, instance) (rate(x_bucket[5m])))', []],
    ['sum(rate(fly_replay_sidecar_request_total[5m]))', ['metric fly_replay_sidecar_request_total is not in /metrics']],
    ['sum(rate(fly_replay_sidecar_requests_total{code="x"}[5m]))', ['label code is not on fly_replay_sidecar_requests_total']],
    ['sum by (op) (fly_replay_sidecar_requests_total)', ['grouping label op is on none of the query\'s metrics']],
  ]
  for (const [query, want] of cases) t.strictSame(problems(query, metrics), want, query)
  t.match(problems('sum(rate(fly_replay_sidecar_requests_total[5m])', metrics).join(), /syntax error/)
})

t.test('the dashboard imports: one datasource variable, unique ids, panels on the 24-column grid without overlap', async (t) => {
  t.equal(dashboard.uid, 'fly-replay-sidecar')
  const ds = dashboard.templating.list.find((v) => v.type === 'datasource')
  t.equal(ds?.name, 'datasource')
  t.equal((ds as { query?: string } | undefined)?.query, 'prometheus')
  const ids = dashboard.panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const cells = new Map<string, string>()
  const overlaps: string[] = []
  for (const p of dashboard.panels) {
    const g = p.gridPos
    t.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `${p.title} fits the grid`)
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const other = cells.get(`${x},${y}`)
        if (other !== undefined) overlaps.push(`${p.title} / ${other} at ${x},${y}`)
        cells.set(`${x},${y}`, p.title)
      }
    }
    if (p.type === 'row') continue
    t.equal(p.datasource?.uid, '${datasource}', `${p.title} reads the chosen datasource`)
    t.ok((p.targets ?? []).length > 0, `${p.title} has queries`)
    for (const target of p.targets ?? []) t.equal(target.datasource?.uid, '${datasource}')
  }
  t.strictSame(overlaps, [], 'no two panels overlap')
})

t.test('every metric and label the dashboard queries is in /metrics of a running sidecar', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 20, region: 'ams' })
  t.teardown(() => api.close())
  seedSelf(api)
  // A pool Machine of an older deploy: the sidecar replaces it, so the replaced counter has a series.
  api.addMachine({ image: 'registry.fly.io/shop:deployment-00OLD', metadata: { sidecar_pool: 'tasker', sidecar_create_id: 'old' }, config: { image: 'registry.fly.io/shop:deployment-00OLD', metadata: { sidecar_pool: 'tasker', sidecar_create_id: 'old' } } })
  const app = http.createServer((req, res) => {
    // A connection dropped before any answer: the sidecar counts an upstream error.
    if (req.url === '/broken') { req.socket.destroy(); return }
    res.end('ok')
  })
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
    size: 1
rules:
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      json:
        components[*].calls[*].method: process
    to: tasker
`
  const env = { FLY_APP_NAME: APP, FLY_MACHINE_ID: 'self0000000001', FLY_REGION: 'ams', FLY_IMAGE_REF: IMAGE, FLY_API_TOKEN: TOKEN }
  const sidecar = await startSidecar({ config: parseConfig(yaml, '/tmp/routes.yaml', env), logger: captureLogs().logger })
  t.teardown(() => sidecar.shutdown())
  const base = `http://127.0.0.1:${sidecar.address.port}`

  // Ordinary traffic: a local request, a replayed process() (which makes the pool Machine), a failed one.
  t.equal((await fetch(`${base}/`).then(async (r) => { await r.text(); return r.status })), 200)
  const replay = await fetch(`${base}/livewire/update`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ components: [{ calls: [{ method: 'process' }] }] }) })
  await replay.text()
  t.match(replay.headers.get('fly-replay'), /^instance=/)
  t.equal((await fetch(`${base}/broken`).then(async (r) => { await r.text(); return r.status })), 502)
  const scrape = async (): Promise<string> => await (await fetch(`http://127.0.0.1:${String(sidecar.metricsPort)}/metrics`)).text()
  let text = await scrape()
  const deadline = Date.now() + 5_000
  // The replay leaves the new pool Machine in the pool's view: pool_machines has its series too.
  while (!(text.includes('fly_replay_sidecar_pool_machines_replaced_total{') && text.includes('fly_replay_sidecar_pool_machines{')) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    text = await scrape()
  }
  const metrics = exposition(text)

  let checked = 0
  for (const p of dashboard.panels) {
    for (const target of p.targets ?? []) {
      t.strictSame(problems(target.expr, metrics), [], `${p.title} / ${target.refId}: ${target.expr}`)
      checked++
    }
  }
  for (const v of dashboard.templating.list) {
    const q = variableQuery(v)
    if (v.type !== 'query') continue
    t.ok(q !== undefined, `variable ${v.name} is a label_values() query`)
    t.strictSame(problems(q ?? '', metrics), [], `variable ${v.name}`)
  }
  t.comment(`${checked} panel queries checked against ${metrics.size} series names`)
  // Each area of the issue has a panel: a renamed metric in src/metrics.ts fails here.
  const all = dashboard.panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr)).join('\n')
  for (const name of ['requests_total', 'decision_duration_seconds_bucket', 'body_inspected_bytes_sum', 'streams_in_flight', 'machines_api_requests_total', 'machines_api_duration_seconds_bucket', 'pool_machines_created_total', 'pool_machines_replaced_total', 'upstream_errors_total']) {
    t.match(all, `fly_replay_sidecar_${name}`, `a panel reads fly_replay_sidecar_${name}`)
  }
  t.match(all, /fly_replay_sidecar_pool_machines\{/, 'a panel reads fly_replay_sidecar_pool_machines')
  t.match(all, 'process_resident_memory_bytes')
  t.match(all, 'process_cpu_seconds_total')
})
