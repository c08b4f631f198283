// docs/rules-cookbook.md stays true: every YAML rule in it loads through the real config loader,
// and each recipe matches the requests the page says it matches, and not the others.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { parse, stringify } from 'yaml'
import type { IncomingHttpHeaders } from 'node:http'
import { parseConfig } from '../../src/config/load.ts'
import type { RuleConfig } from '../../src/config/types.ts'
import { compileRules } from '../../src/rules/compile.ts'
import { matchBody, matchHead } from '../../src/rules/match.ts'
import { parseBody } from '../../src/body/parse.ts'

const page = await readFile(new URL('../../docs/rules-cookbook.md', import.meta.url), 'utf8')

/** Every ```yaml block that holds whole rules: `rules:` documents and `- name:` list items. */
function cookbookRules (): unknown[] {
  const rules: unknown[] = []
  for (const m of page.matchAll(/^( *)```yaml\n([\s\S]*?)^\1```/gm)) {
    const indent = m[1] ?? ''
    const text = (m[2] ?? '').split('\n').map((l) => l.slice(indent.length)).join('\n')
    if (text.startsWith('- name:')) rules.push(...(parse(text) as unknown[]))
    else if (/^rules:/m.test(text)) rules.push(...((parse(text) as { rules: unknown[] }).rules))
  }
  return rules
}

const loaded = parseConfig(stringify({
  app: { url: 'http://127.0.0.1:8081' },
  pools: { tasker: {}, reports: {}, media: {} },
  rules: cookbookRules(),
}), '/cookbook/routes.yaml', {})
const byName = new Map(loaded.rules.map((r) => [r.name, r]))

interface Req { method: string, url: string, headers?: IncomingHttpHeaders, json?: unknown, form?: string }

/** Does this one rule, alone, match the request (head, then body as the handler reads it)? */
function matches (rule: RuleConfig, req: Req): boolean {
  const q = req.url.indexOf('?')
  const headers: IncomingHttpHeaders = { ...req.headers }
  let bytes = Buffer.alloc(0)
  if (req.json !== undefined) { headers['content-type'] = 'application/json'; bytes = Buffer.from(JSON.stringify(req.json)) }
  if (req.form !== undefined) { headers['content-type'] = 'application/x-www-form-urlencoded'; bytes = Buffer.from(req.form) }
  const head = { method: req.method, path: q === -1 ? req.url : req.url.slice(0, q), query: q === -1 ? '' : req.url.slice(q + 1), headers }
  const m = matchHead(compileRules([rule]), head)
  const got = m.kind === 'done' ? m.rule : matchBody(m.candidates, parseBody(headers['content-type'], { bytes, complete: true }))
  return got !== undefined
}

t.test('every recipe loads through the config loader', async (t) => {
  t.strictSame([...byName.keys()].sort(), [
    'dashboard-stats', 'graphql-heavy', 'graphql-heavy-batch', 'livewire-process', 'livewire-upload', 'livewire2-process',
    'report-by-id', 'report-download-by-file', 'report-export', 'report-form-post', 'reports', 'reports-status', 'uploads',
  ])
})

t.test('each recipe matches what the page says', async (t) => {
  const calls = (...methods: string[]): unknown => ({ _token: 't', components: methods.map((method) => ({ snapshot: '{}', updates: {}, calls: [{ path: '', method, params: [] }] })) })
  const cases: Array<{ name: string, input: { rule: string, req: Req }, want: boolean }> = [
    { name: 'Livewire process() among batched calls', input: { rule: 'livewire-process', req: { method: 'POST', url: '/livewire/update', headers: { 'x-livewire': '' }, json: calls('render', 'process') } }, want: true },
    { name: 'Livewire other calls', input: { rule: 'livewire-process', req: { method: 'POST', url: '/livewire/update', headers: { 'x-livewire': '' }, json: calls('render') } }, want: false },
    { name: 'Livewire without the header', input: { rule: 'livewire-process', req: { method: 'POST', url: '/livewire/update', json: calls('process') } }, want: false },
    { name: 'Livewire 2 callMethod', input: { rule: 'livewire2-process', req: { method: 'POST', url: '/livewire/message/reports', json: { fingerprint: {}, serverMemo: {}, updates: [{ type: 'callMethod', payload: { id: 'x', method: 'process', params: [] } }] } } }, want: true },
    { name: 'Inertia partial with stats among props', input: { rule: 'dashboard-stats', req: { method: 'GET', url: '/dashboard', headers: { 'x-inertia': 'true', 'x-inertia-partial-component': 'Dashboard', 'x-inertia-partial-data': 'users, stats' } } }, want: true },
    { name: 'Inertia partial with statsSummary only', input: { rule: 'dashboard-stats', req: { method: 'GET', url: '/dashboard', headers: { 'x-inertia': 'true', 'x-inertia-partial-component': 'Dashboard', 'x-inertia-partial-data': 'statsSummary' } } }, want: false },
    { name: 'Inertia full visit', input: { rule: 'dashboard-stats', req: { method: 'GET', url: '/dashboard', headers: { 'x-inertia': 'true' } } }, want: false },
    { name: 'GraphQL operation', input: { rule: 'graphql-heavy', req: { method: 'POST', url: '/graphql', json: { operationName: 'ExportOrders', query: 'query ExportOrders { x }' } } }, want: true },
    { name: 'GraphQL other operation', input: { rule: 'graphql-heavy', req: { method: 'POST', url: '/graphql', json: { operationName: 'exportorders' } } }, want: false },
    { name: 'GraphQL batch on the object rule', input: { rule: 'graphql-heavy', req: { method: 'POST', url: '/graphql', json: [{ operationName: 'ExportOrders' }] } }, want: false },
    { name: 'GraphQL batch', input: { rule: 'graphql-heavy-batch', req: { method: 'POST', url: '/graphql', json: [{ operationName: 'Me' }, { operationName: 'RebuildSearchIndex' }] } }, want: true },
    { name: 'upload PUT deep', input: { rule: 'uploads', req: { method: 'PUT', url: '/uploads/a/b.png', headers: { 'content-type': 'multipart/form-data; boundary=x' } } }, want: true },
    { name: 'upload GET', input: { rule: 'uploads', req: { method: 'GET', url: '/uploads/a/b.png' } }, want: false },
    { name: 'Livewire upload with its signed query', input: { rule: 'livewire-upload', req: { method: 'POST', url: '/livewire/upload-file?expires=1&signature=abc' } }, want: true },
    { name: 'export, one of repeated formats', input: { rule: 'report-export', req: { method: 'GET', url: '/reports/2024-q3/export?format=pdf&format=xlsx' } }, want: true },
    { name: 'export two segments deep', input: { rule: 'report-export', req: { method: 'GET', url: '/reports/a/b/export?format=csv' } }, want: false },
    { name: 'export without format', input: { rule: 'report-export', req: { method: 'GET', url: '/reports/q3/export' } }, want: false },
    { name: 'csv file', input: { rule: 'report-download-by-file', req: { method: 'GET', url: '/exports/orders.csv' } }, want: true },
    { name: 'pdf by id', input: { rule: 'report-by-id', req: { method: 'GET', url: '/reports/12/pdf' } }, want: true },
    { name: 'not by id', input: { rule: 'report-by-id', req: { method: 'GET', url: '/reports/x/pdf' } }, want: false },
    { name: 'form post export', input: { rule: 'report-form-post', req: { method: 'POST', url: '/reports/run', form: '_token=x&action=export' } }, want: true },
    { name: 'form post view', input: { rule: 'report-form-post', req: { method: 'POST', url: '/reports/run', form: 'action=view' } }, want: false },
    { name: 'reports status', input: { rule: 'reports-status', req: { method: 'GET', url: '/reports/status' } }, want: true },
    { name: 'reports root', input: { rule: 'reports', req: { method: 'GET', url: '/reports' } }, want: true },
  ]
  for (const c of cases) {
    const rule = byName.get(c.input.rule)
    if (rule === undefined) { t.fail(`${c.name}: no rule ${c.input.rule}`); continue }
    t.equal(matches(rule, c.input.req), c.want, c.name)
  }
})

t.test('the anonymous-operation regex, as written in YAML, matches a mutation', async (t) => {
  const fragment = /json:\n\s+query: (\{ matches: .*\})/.exec(page)?.[1]
  t.ok(fragment !== undefined, 'found on the page')
  const c = parse(fragment ?? '{}') as { matches: string }
  const re = new RegExp(c.matches)
  t.ok(re.test('  mutation ExportOrders { run }'))
  t.notOk(re.test('query ExportOrdersList { x }'))
})
