// Rule matching, table-driven: path globs and regexes, methods, every condition kind on headers,
// query, JSON and form, selectors, first match wins across head and body rules, and explain.
import t, { type Test } from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import type { Condition, RuleConfig, RuleMatch, Scalar } from '../../src/config/types.ts'
import { compilePath, compileRules, type RequestHead } from '../../src/rules/compile.ts'
import { explainRules, matchBody, matchHead } from '../../src/rules/match.ts'
import { parseBody } from '../../src/body/parse.ts'
import { isSidecarError } from '../../src/errors.ts'

const eq = (value: Scalar): Condition => ({ kind: 'equals', value })
const oneOf = (...values: Scalar[]): Condition => ({ kind: 'in', values })
const prefix = (value: string): Condition => ({ kind: 'prefix', value })
const matches = (pattern: string, flags = ''): Condition => ({ kind: 'matches', pattern, flags })
const exists = (value: boolean): Condition => ({ kind: 'exists', value })

let line = 10
function rule (name: string, match: RuleMatch, to = 'tasker'): RuleConfig {
  return { name, match, to, line: line++ }
}

interface Req {
  readonly method?: string
  /** Path with an optional ?query. */
  readonly url?: string
  readonly headers?: IncomingHttpHeaders
  readonly json?: unknown
  readonly form?: string
}

function headOf (req: Req): RequestHead {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const headers: IncomingHttpHeaders = { ...req.headers }
  if (req.json !== undefined) headers['content-type'] ??= 'application/json'
  if (req.form !== undefined) headers['content-type'] ??= 'application/x-www-form-urlencoded'
  return { method: req.method ?? 'GET', path: q === -1 ? url : url.slice(0, q), query: q === -1 ? '' : url.slice(q + 1), headers }
}

function bodyBytes (req: Req): Buffer {
  if (req.json !== undefined) return Buffer.from(typeof req.json === 'string' ? req.json : JSON.stringify(req.json))
  return Buffer.from(req.form ?? '')
}

/** The whole two-step match as the request handler runs it: the rule name, or undefined. */
function decide (rules: readonly RuleConfig[], req: Req): string | undefined {
  const compiled = compileRules(rules)
  const head = headOf(req)
  const m = matchHead(compiled, head)
  if (m.kind === 'done') return m.rule?.name
  return matchBody(m.candidates, parseBody(head.headers['content-type'] as string | undefined, { bytes: bodyBytes(req), complete: true }))?.name
}

interface Case { readonly name: string, readonly input: { readonly rules: readonly RuleConfig[], readonly req: Req }, readonly want: string | undefined }

function runTable (t: Test, cases: readonly Case[]): void {
  for (const c of cases) t.equal(decide(c.input.rules, c.input.req), c.want, c.name)
}

t.test('path: exact, * one segment, ** any rest, ~regex', async (t) => {
  const cases: Array<{ name: string, input: { pattern: string, path: string }, want: boolean }> = [
    { name: 'exact', input: { pattern: '/livewire/update', path: '/livewire/update' }, want: true },
    { name: 'exact is not a prefix', input: { pattern: '/livewire/update', path: '/livewire/update/x' }, want: false },
    { name: 'exact: trailing slash differs', input: { pattern: '/livewire/update', path: '/livewire/update/' }, want: false },
    { name: 'exact: case-sensitive', input: { pattern: '/Livewire', path: '/livewire' }, want: false },
    { name: 'exact: dot is literal', input: { pattern: '/a.b', path: '/aXb' }, want: false },
    { name: 'exact: percent-escapes are not decoded', input: { pattern: '/a b', path: '/a%20b' }, want: false },
    { name: '* one segment', input: { pattern: '/users/*/edit', path: '/users/42/edit' }, want: true },
    { name: '* not two segments', input: { pattern: '/users/*/edit', path: '/users/4/2/edit' }, want: false },
    { name: '* not an empty segment', input: { pattern: '/users/*/edit', path: '/users//edit' }, want: false },
    { name: '* at the end', input: { pattern: '/api/*', path: '/api/users' }, want: true },
    { name: '* at the end: not a deeper path', input: { pattern: '/api/*', path: '/api/users/1' }, want: false },
    { name: '* at the end: not the bare prefix', input: { pattern: '/api/*', path: '/api' }, want: false },
    { name: '* inside a segment', input: { pattern: '/exports/*.csv', path: '/exports/report-2024.csv' }, want: true },
    { name: '* inside a segment: other extension', input: { pattern: '/exports/*.csv', path: '/exports/report.csvx' }, want: false },
    { name: '* with regex specials around it', input: { pattern: '/a+(b)/*', path: '/a+(b)/c' }, want: true },
    { name: '** any rest', input: { pattern: '/api/**', path: '/api/v1/users/7' }, want: true },
    { name: '** empty rest', input: { pattern: '/api/**', path: '/api' }, want: true },
    { name: '** just the slash', input: { pattern: '/api/**', path: '/api/' }, want: true },
    { name: '** is per segment, not a string prefix', input: { pattern: '/api/**', path: '/apix' }, want: false },
    { name: '/** matches everything', input: { pattern: '/**', path: '/anything/at/all' }, want: true },
    { name: '/** matches the root', input: { pattern: '/**', path: '/' }, want: true },
    { name: '* and ** together', input: { pattern: '/t/*/files/**', path: '/t/acme/files/a/b.pdf' }, want: true },
    { name: '~regex', input: { pattern: '~^/reports/[0-9]+/export$', path: '/reports/12/export' }, want: true },
    { name: '~regex no match', input: { pattern: '~^/reports/[0-9]+/export$', path: '/reports/x/export' }, want: false },
    { name: '~regex unanchored finds anywhere', input: { pattern: '~export', path: '/a/export/b' }, want: true },
  ]
  for (const c of cases) {
    t.equal(decide([rule('r', { path: c.input.pattern })], { url: c.input.path }) === 'r', c.want, c.name)
  }
  t.strictSame(compilePath('/plain'), { text: '/plain', exact: '/plain', re: undefined }, 'a path without * is compared as a string')
})

t.test('method: one or a list', async (t) => {
  const r = [rule('post-put', { methods: ['POST', 'PUT'] })]
  runTable(t, [
    { name: 'POST', input: { rules: r, req: { method: 'POST' } }, want: 'post-put' },
    { name: 'PUT', input: { rules: r, req: { method: 'PUT' } }, want: 'post-put' },
    { name: 'GET', input: { rules: r, req: { method: 'GET' } }, want: undefined },
    { name: 'HEAD is not GET', input: { rules: [rule('get', { methods: ['GET'] })], req: { method: 'HEAD' } }, want: undefined },
    { name: 'lower-case in config', input: { rules: [rule('get', { methods: ['get'] })], req: { method: 'GET' } }, want: 'get' },
    { name: 'no method condition: any', input: { rules: [rule('any', {})], req: { method: 'DELETE' } }, want: 'any' },
  ])
})

t.test('header conditions', async (t) => {
  const h = (c: Condition): RuleConfig[] => [rule('h', { headers: { 'x-livewire': c } })]
  runTable(t, [
    { name: 'present', input: { rules: h(exists(true)), req: { headers: { 'x-livewire': 'true' } } }, want: 'h' },
    { name: 'present with an empty value', input: { rules: h(exists(true)), req: { headers: { 'x-livewire': '' } } }, want: 'h' },
    { name: 'present: absent', input: { rules: h(exists(true)), req: {} }, want: undefined },
    { name: 'absent: absent', input: { rules: h(exists(false)), req: {} }, want: 'h' },
    { name: 'absent: present', input: { rules: h(exists(false)), req: { headers: { 'x-livewire': '1' } } }, want: undefined },
    { name: 'equals', input: { rules: h(eq('yes')), req: { headers: { 'x-livewire': 'yes' } } }, want: 'h' },
    { name: 'equals: other value', input: { rules: h(eq('yes')), req: { headers: { 'x-livewire': 'no' } } }, want: undefined },
    { name: 'equals is case-sensitive', input: { rules: h(eq('yes')), req: { headers: { 'x-livewire': 'YES' } } }, want: undefined },
    { name: 'equals: absent', input: { rules: h(eq('yes')), req: {} }, want: undefined },
    { name: 'equals a number written in YAML', input: { rules: h(eq(1)), req: { headers: { 'x-livewire': '1' } } }, want: 'h' },
    { name: 'equals null never holds', input: { rules: h(eq(null)), req: { headers: { 'x-livewire': 'null' } } }, want: undefined },
    { name: 'equals: any of repeated lines (joined by Node)', input: { rules: h(eq('b')), req: { headers: { 'x-livewire': 'a, b' } } }, want: 'h' },
    { name: 'equals: the whole joined value', input: { rules: h(eq('a, b')), req: { headers: { 'x-livewire': 'a, b' } } }, want: 'h' },
    { name: 'equals: an array value', input: { rules: h(eq('b')), req: { headers: { 'x-livewire': ['a', 'b'] } } }, want: 'h' },
    { name: 'in', input: { rules: h(oneOf('a', 'b')), req: { headers: { 'x-livewire': 'b' } } }, want: 'h' },
    { name: 'in: none', input: { rules: h(oneOf('a', 'b')), req: { headers: { 'x-livewire': 'c' } } }, want: undefined },
    { name: 'prefix', input: { rules: h(prefix('Bearer ')), req: { headers: { 'x-livewire': 'Bearer abc' } } }, want: 'h' },
    { name: 'prefix: no', input: { rules: h(prefix('Bearer ')), req: { headers: { 'x-livewire': 'Basic abc' } } }, want: undefined },
    { name: 'matches', input: { rules: h(matches('^v[0-9]+$')), req: { headers: { 'x-livewire': 'v3' } } }, want: 'h' },
    { name: 'matches: no', input: { rules: h(matches('^v[0-9]+$')), req: { headers: { 'x-livewire': 'v3a' } } }, want: undefined },
    { name: 'matches with flags', input: { rules: h(matches('^yes$', 'i')), req: { headers: { 'x-livewire': 'YES' } } }, want: 'h' },
    { name: 'matches with g is not stateful', input: { rules: h(matches('a', 'g')), req: { headers: { 'x-livewire': ['a', 'a'] } } }, want: 'h' },
    { name: 'name in any case in config', input: { rules: [rule('h', { headers: { 'X-Inertia': exists(true) } })], req: { headers: { 'x-inertia': 'true' } } }, want: 'h' },
  ])
  // A g-flagged RegExp would alternate true/false across requests through lastIndex.
  const compiled = compileRules([rule('g', { headers: { 'x-a': matches('a', 'g') } })])
  const results = [1, 2, 3].map(() => matchHead(compiled, headOf({ headers: { 'x-a': 'a' } })))
  t.strictSame(results.map((m) => m.kind === 'done' ? m.rule?.name : 'body'), ['g', 'g', 'g'], 'the same request matches every time')
})

t.test('query conditions', async (t) => {
  const q = (c: Condition): RuleConfig[] => [rule('q', { query: { format: c } })]
  runTable(t, [
    { name: 'equals', input: { rules: q(eq('csv')), req: { url: '/r?format=csv' } }, want: 'q' },
    { name: 'equals: other', input: { rules: q(eq('csv')), req: { url: '/r?format=pdf' } }, want: undefined },
    { name: 'equals: no query', input: { rules: q(eq('csv')), req: { url: '/r' } }, want: undefined },
    { name: 'repeated key: any value', input: { rules: q(eq('csv')), req: { url: '/r?format=pdf&format=csv' } }, want: 'q' },
    { name: 'percent-decoded', input: { rules: q(eq('a b/é')), req: { url: '/r?format=a%20b%2F%C3%A9' } }, want: 'q' },
    { name: '+ is a space', input: { rules: q(eq('a b')), req: { url: '/r?format=a+b' } }, want: 'q' },
    { name: 'encoded key', input: { rules: q(eq('x')), req: { url: '/r?form%61t=x' } }, want: 'q' },
    { name: 'malformed escape kept as written', input: { rules: q(eq('%zz')), req: { url: '/r?format=%zz' } }, want: 'q' },
    { name: 'YAML number equals "1"', input: { rules: [rule('q', { query: { page: eq(1) } })], req: { url: '/r?page=1' } }, want: 'q' },
    { name: 'key without = has the value ""', input: { rules: q(eq('')), req: { url: '/r?format' } }, want: 'q' },
    { name: 'exists: key without =', input: { rules: q(exists(true)), req: { url: '/r?format' } }, want: 'q' },
    { name: 'exists: absent', input: { rules: q(exists(true)), req: { url: '/r?other=1' } }, want: undefined },
    { name: 'exists false: absent', input: { rules: q(exists(false)), req: { url: '/r?other=1' } }, want: 'q' },
    { name: 'exists false: present', input: { rules: q(exists(false)), req: { url: '/r?format=' } }, want: undefined },
    { name: 'in', input: { rules: q(oneOf('csv', 'xlsx')), req: { url: '/r?format=xlsx' } }, want: 'q' },
    { name: 'prefix', input: { rules: q(prefix('xl')), req: { url: '/r?format=xlsx' } }, want: 'q' },
    { name: 'matches', input: { rules: q(matches('^(csv|xlsx)$')), req: { url: '/r?a=1&format=csv&b' } }, want: 'q' },
    { name: 'a __proto__ parameter is an ordinary key', input: { rules: [rule('q', { query: Object.fromEntries([['__proto__', eq('x')]]) })], req: { url: '/r?__proto__=x' } }, want: 'q' },
    { name: 'a __proto__ parameter: other value', input: { rules: [rule('q', { query: Object.fromEntries([['__proto__', eq('x')]]) })], req: { url: '/r?__proto__=y' } }, want: undefined },
  ])
  t.equal(({} as Record<string, unknown>).x, undefined, 'no prototype was touched')
})

t.test('json conditions: kinds and type-aware equality', async (t) => {
  const j = (sel: string, c: Condition): RuleConfig[] => [rule('j', { json: { [sel]: c } })]
  runTable(t, [
    { name: 'string equals string', input: { rules: j('op', eq('process')), req: { json: { op: 'process' } } }, want: 'j' },
    { name: 'string: other', input: { rules: j('op', eq('process')), req: { json: { op: 'render' } } }, want: undefined },
    { name: 'number equals number', input: { rules: j('n', eq(1)), req: { json: { n: 1 } } }, want: 'j' },
    { name: '1 equals 1.0', input: { rules: j('n', eq(1)), req: { json: '{"n":1.0}' } }, want: 'j' },
    { name: 'number is not its string', input: { rules: j('n', eq(1)), req: { json: { n: '1' } } }, want: undefined },
    { name: 'string is not the number', input: { rules: j('n', eq('1')), req: { json: { n: 1 } } }, want: undefined },
    { name: 'boolean equals boolean', input: { rules: j('b', eq(true)), req: { json: { b: true } } }, want: 'j' },
    { name: 'boolean is not "true"', input: { rules: j('b', eq(true)), req: { json: { b: 'true' } } }, want: undefined },
    { name: 'null equals null', input: { rules: j('x', eq(null)), req: { json: { x: null } } }, want: 'j' },
    { name: 'null is not absent', input: { rules: j('x', eq(null)), req: { json: {} } }, want: undefined },
    { name: 'an object equals nothing', input: { rules: j('x', eq('[object Object]')), req: { json: { x: {} } } }, want: undefined },
    { name: 'an array is not its element', input: { rules: j('x', eq('a')), req: { json: { x: ['a'] } } }, want: undefined },
    { name: 'unsafe integer equals nothing', input: { rules: j('id', eq(9007199254740992)), req: { json: '{"id":9007199254740993}' } }, want: undefined },
    { name: 'safe integer edge', input: { rules: j('id', eq(9007199254740991)), req: { json: '{"id":9007199254740991}' } }, want: 'j' },
    { name: 'in mixes types', input: { rules: j('x', oneOf('a', 2, false)), req: { json: { x: false } } }, want: 'j' },
    { name: 'in: type matters', input: { rules: j('x', oneOf('2')), req: { json: { x: 2 } } }, want: undefined },
    { name: 'prefix on a string', input: { rules: j('x', prefix('pro')), req: { json: { x: 'process' } } }, want: 'j' },
    { name: 'prefix never reads a number', input: { rules: j('x', prefix('12')), req: { json: { x: 123 } } }, want: undefined },
    { name: 'prefix never reads an object', input: { rules: j('x', prefix('[')), req: { json: { x: [1] } } }, want: undefined },
    { name: 'matches', input: { rules: j('x', matches('^p.*s$')), req: { json: { x: 'process' } } }, want: 'j' },
    { name: 'matches never reads a boolean', input: { rules: j('x', matches('^true$')), req: { json: { x: true } } }, want: undefined },
    { name: 'matches: any reached string', input: { rules: j('x[*]', matches('^b')), req: { json: { x: [1, 'a', 'b2'] } } }, want: 'j' },
    { name: 'exists: null counts as present', input: { rules: j('x', exists(true)), req: { json: { x: null } } }, want: 'j' },
    { name: 'exists: absent', input: { rules: j('x', exists(true)), req: { json: { y: 1 } } }, want: undefined },
    { name: 'exists false: nothing reached', input: { rules: j('a.b', exists(false)), req: { json: { a: 1 } } }, want: 'j' },
    { name: 'exists false: reached', input: { rules: j('a.b', exists(false)), req: { json: { a: { b: 0 } } } }, want: undefined },
    { name: 'exists false still needs a JSON body', input: { rules: j('a', exists(false)), req: { json: 'not json' } }, want: undefined },
    { name: 'inherited property is not reached', input: { rules: j('toString', exists(true)), req: { json: {} } }, want: undefined },
    { name: 'inherited: exists false holds', input: { rules: j('constructor', exists(false)), req: { json: { a: 1 } } }, want: 'j' },
    { name: 'array length is not a key', input: { rules: j('a.length', eq(2)), req: { json: { a: [1, 2] } } }, want: undefined },
  ])
})

t.test('json selectors', async (t) => {
  const doc = {
    components: [
      { calls: [{ method: 'render' }], snapshot: 'x' },
      { calls: [{ method: 'save' }, { method: 'process', params: [1, 'two'] }] },
    ],
    'odd key': { 'a.b': 'dotted', '': 'empty' },
    matrix: [[1, 2], [3, 4]],
    map: { first: { id: 1 }, second: { id: 2 } },
  }
  const j = (sel: string, c: Condition): RuleConfig[] => [rule('j', { json: { [sel]: c } })]
  const cases: Case[] = [
    { name: 'Livewire: components[*].calls[*].method', input: { rules: j('components[*].calls[*].method', eq('process')), req: { json: doc } }, want: 'j' },
    { name: 'any reached value is enough', input: { rules: j('components[*].calls[*].method', eq('save')), req: { json: doc } }, want: 'j' },
    { name: 'nothing reached equals', input: { rules: j('components[*].calls[*].method', eq('delete')), req: { json: doc } }, want: undefined },
    { name: '[n] index', input: { rules: j('components[1].calls[0].method', eq('save')), req: { json: doc } }, want: 'j' },
    { name: '[n] index: other element', input: { rules: j('components[0].calls[0].method', eq('save')), req: { json: doc } }, want: undefined },
    { name: '[n] out of range', input: { rules: j('components[9].calls', exists(true)), req: { json: doc } }, want: undefined },
    { name: '[n] on an object', input: { rules: j('map[0]', exists(true)), req: { json: doc } }, want: undefined },
    { name: 'key on an array', input: { rules: j('components.0', exists(true)), req: { json: doc } }, want: undefined },
    { name: 'deep [n]', input: { rules: j('components[1].calls[1].params[1]', eq('two')), req: { json: doc } }, want: 'j' },
    { name: '["odd key"]', input: { rules: j('["odd key"]["a.b"]', eq('dotted')), req: { json: doc } }, want: 'j' },
    { name: '["odd key"] then empty key', input: { rules: j('["odd key"][""]', eq('empty')), req: { json: doc } }, want: 'j' },
    { name: 'nested [*][*]', input: { rules: j('matrix[*][*]', eq(4)), req: { json: doc } }, want: 'j' },
    { name: 'nested [*][n]', input: { rules: j('matrix[*][0]', eq(2)), req: { json: doc } }, want: undefined },
    { name: '[*] over object values', input: { rules: j('map[*].id', eq(2)), req: { json: doc } }, want: 'j' },
    { name: 'top-level [*]', input: { rules: j('[*].op', eq('x')), req: { json: [{ op: 'y' }, { op: 'x' }] } }, want: 'j' },
    { name: 'top-level [n]', input: { rules: j('[0]', eq('a')), req: { json: ['a'] } }, want: 'j' },
    { name: 'through a scalar', input: { rules: j('components[0].snapshot.x', exists(true)), req: { json: doc } }, want: undefined },
    { name: 'every selector of a rule must hold', input: { rules: [rule('j', { json: { 'components[*].calls[*].method': eq('process'), 'map.first.id': eq(2) } })], req: { json: doc } }, want: undefined },
  ]
  runTable(t, cases)
})

t.test('form conditions', async (t) => {
  const f = (c: Condition): RuleConfig[] => [rule('f', { form: { action: c } })]
  runTable(t, [
    { name: 'equals', input: { rules: f(eq('export')), req: { form: 'action=export&x=1' } }, want: 'f' },
    { name: 'equals: other', input: { rules: f(eq('export')), req: { form: 'action=view' } }, want: undefined },
    { name: 'repeated: any value', input: { rules: f(eq('export')), req: { form: 'action=view&action=export' } }, want: 'f' },
    { name: '+ and percent', input: { rules: f(eq('big export é')), req: { form: 'action=big+export%20%C3%A9' } }, want: 'f' },
    { name: 'malformed escape: not inspected', input: { rules: f(exists(false)), req: { form: 'x=%zz' } }, want: undefined },
    { name: 'in', input: { rules: f(oneOf('a', 'export')), req: { form: 'action=export' } }, want: 'f' },
    { name: 'prefix', input: { rules: f(prefix('exp')), req: { form: 'action=export' } }, want: 'f' },
    { name: 'matches', input: { rules: f(matches('^ex')), req: { form: 'action=export' } }, want: 'f' },
    { name: 'exists', input: { rules: f(exists(true)), req: { form: 'action=' } }, want: 'f' },
    { name: 'exists false', input: { rules: f(exists(false)), req: { form: 'other=1' } }, want: 'f' },
    { name: 'exists false on an empty form', input: { rules: f(exists(false)), req: { form: '' } }, want: 'f' },
    { name: 'a JSON body is not a form', input: { rules: f(exists(false)), req: { json: { action: 'x' } } }, want: undefined },
    { name: 'form rule, multipart body', input: { rules: f(exists(true)), req: { headers: { 'content-type': 'multipart/form-data; boundary=x' }, form: 'action=export' } }, want: undefined },
    { name: 'json and form conditions together never hold', input: { rules: [rule('f', { json: { a: exists(false) }, form: { a: exists(false) } })], req: { form: 'x=1' } }, want: undefined },
  ])
})

t.test('first match wins across head rules and body rules', async (t) => {
  const lw = rule('lw', { methods: ['POST'], path: '/livewire/update', json: { 'components[*].calls[*].method': eq('process') } })
  const lwHead = rule('lw-any', { path: '/livewire/update' }, 'app')
  const exportForm = rule('export-form', { path: '/reports', form: { action: eq('export') } })
  const reportsGet = rule('reports', { path: '/reports' }, 'reports')
  const catchAll = rule('all', {}, 'app')
  const process = { json: { components: [{ calls: [{ method: 'process' }] }] }, method: 'POST', url: '/livewire/update' }
  const render = { json: { components: [{ calls: [{ method: 'render' }] }] }, method: 'POST', url: '/livewire/update' }
  const cases: Array<{ name: string, input: { rules: RuleConfig[], req: Req }, want: { head: string[] | string | undefined, final: string | undefined } }> = [
    { name: 'body rule then head rule: body matches', input: { rules: [lw, lwHead], req: process }, want: { head: ['lw', 'lw-any'], final: 'lw' } },
    { name: 'body rule then head rule: body does not', input: { rules: [lw, lwHead], req: render }, want: { head: ['lw', 'lw-any'], final: 'lw-any' } },
    { name: 'head rule before the body rule wins outright', input: { rules: [lwHead, lw], req: process }, want: { head: 'lw-any', final: 'lw-any' } },
    { name: 'body rule alone: no match is the app pool', input: { rules: [lw], req: render }, want: { head: ['lw'], final: undefined } },
    { name: 'candidates stop at the first head-only match', input: { rules: [lw, lwHead, catchAll], req: render }, want: { head: ['lw', 'lw-any'], final: 'lw-any' } },
    { name: 'head-failing body rule is no candidate', input: { rules: [lw, reportsGet], req: { method: 'GET', url: '/reports', json: {} } }, want: { head: 'reports', final: 'reports' } },
    { name: 'two body rules of different kinds: a JSON request skips the form rule', input: { rules: [exportForm, lw, catchAll], req: process }, want: { head: ['lw', 'all'], final: 'lw' } },
    { name: 'form body rule then head rule', input: { rules: [exportForm, reportsGet], req: { method: 'POST', url: '/reports', form: 'action=export' } }, want: { head: ['export-form', 'reports'], final: 'export-form' } },
    { name: 'form body rule falls through', input: { rules: [exportForm, reportsGet], req: { method: 'POST', url: '/reports', form: 'action=view' } }, want: { head: ['export-form', 'reports'], final: 'reports' } },
    { name: 'no rule matches', input: { rules: [lw, reportsGet], req: { url: '/' } }, want: { head: undefined, final: undefined } },
    { name: 'no content type: body rules are skipped, never buffered', input: { rules: [lw, catchAll], req: { method: 'POST', url: '/livewire/update' } }, want: { head: 'all', final: 'all' } },
    { name: 'text/plain: body rules skipped', input: { rules: [lw], req: { ...process, headers: { 'content-type': 'text/plain' } } }, want: { head: undefined, final: undefined } },
    { name: 'charset latin1: body rules skipped', input: { rules: [lw], req: { ...process, headers: { 'content-type': 'application/json; charset=latin1' } } }, want: { head: undefined, final: undefined } },
    { name: '+json type is JSON', input: { rules: [lw], req: { ...process, headers: { 'content-type': 'application/vnd.api+json; charset="UTF-8"' } } }, want: { head: ['lw'], final: 'lw' } },
  ]
  for (const c of cases) {
    const compiled = compileRules(c.input.rules)
    const m = matchHead(compiled, headOf(c.input.req))
    const head = m.kind === 'done' ? m.rule?.name : m.candidates.map((r) => r.name)
    t.strictSame(head, c.want.head, `${c.name}: head`)
    t.equal(decide(c.input.rules, c.input.req), c.want.final, `${c.name}: final`)
  }
})

t.test('matchHead with a max body: a declared oversize body is not offered to body rules', async (t) => {
  const rules = [rule('lw', { json: { a: exists(true) } }), rule('all', {}, 'app')]
  const compiled = compileRules(rules, { maxBodyBytes: 100 })
  const kinds = (headers: IncomingHttpHeaders): string[] | string | undefined => {
    const m = matchHead(compiled, { method: 'POST', path: '/', query: '', headers: { 'content-type': 'application/json', ...headers } })
    return m.kind === 'done' ? m.rule?.name : m.candidates.map((r) => r.name)
  }
  t.strictSame(kinds({ 'content-length': '100' }), ['lw', 'all'], 'exactly the max: buffered')
  t.strictSame(kinds({ 'content-length': '101' }), 'all', 'one over: decided on the head')
  t.strictSame(kinds({ 'transfer-encoding': 'chunked' }), ['lw', 'all'], 'unknown length: buffered up to the max')
  t.strictSame(kinds({}), ['lw', 'all'], 'no length at all')
})

t.test('matchHead allocates no result for a head-only decision', async (t) => {
  const compiled = compileRules([rule('a', { path: '/a' }), rule('b', { path: '/b' })])
  const one = matchHead(compiled, headOf({ url: '/b' }))
  const two = matchHead(compiled, headOf({ url: '/b?x=1' }))
  t.equal(one, two, 'the same precomputed answer')
  t.equal(matchHead(compiled, headOf({ url: '/c' })), matchHead(compiled, headOf({ url: '/d' })), 'the same no-match answer')
  t.ok(Object.isFrozen(one) && Object.isFrozen(compiled) && Object.isFrozen(compiled.rules))
})

t.test('explainRules: why each rule did or did not match, up to the first match', async (t) => {
  const rules = compileRules([
    rule('posts', { methods: ['POST'] }),
    rule('path', { path: '/x/*' }),
    rule('hdr', { headers: { 'x-inertia': exists(true) } }),
    rule('qry', { query: { format: oneOf('csv') } }),
    rule('lw', { json: { 'components[*].calls[*].method': eq('process') } }),
    rule('frm', { form: { a: eq('1') } }),
    rule('all', {}),
    rule('never-reached', {}),
  ])
  const head = headOf({ url: '/y?format=pdf&format=xml', headers: { 'content-type': 'application/json' } })
  const body = parseBody('application/json', { bytes: Buffer.from('{"components":[{"calls":[{"method":"render"}]}]}'), complete: true })
  t.strictSame(explainRules(rules, head, body), [
    { name: 'posts', matched: false, reason: 'method GET, wants POST' },
    { name: 'path', matched: false, reason: 'path /y does not match /x/*' },
    { name: 'hdr', matched: false, reason: 'header x-inertia is absent, wants present' },
    { name: 'qry', matched: false, reason: 'query format is "pdf", "xml", wants in ["csv"]' },
    { name: 'lw', matched: false, reason: 'json components[*].calls[*].method reaches "render", wants equals "process"' },
    { name: 'frm', matched: false, reason: 'needs a form body; this one is JSON' },
    { name: 'all', matched: true, reason: 'no conditions: matches every request' },
  ])
  const only = compileRules([rule('lw', { methods: ['POST'], path: '/livewire/update', headers: { 'x-livewire': exists(true) }, json: { 'a.b': eq(1) } })])
  const lwHead = headOf({ method: 'POST', url: '/livewire/update', headers: { 'x-livewire': '' } })
  t.strictSame(explainRules(only, lwHead, undefined), [{ name: 'lw', matched: false, reason: 'needs a JSON body; the request has none' }])
  t.match(explainRules(only, lwHead, { kind: 'none' })[0]?.reason, /^needs a JSON body; this one cannot be inspected/)
  t.strictSame(explainRules(only, lwHead, { kind: 'json', value: { a: { b: 1 } } }), [
    { name: 'lw', matched: true, reason: 'matched: method POST; path /livewire/update; header x-livewire present; json a.b equals 1' },
  ])
  t.strictSame(explainRules(only, lwHead, { kind: 'json', value: { a: 1 } })[0]?.reason, 'json a.b reaches nothing, wants equals 1')
})

t.test('compileRules reports a rule that cannot be compiled with its name and line', async (t) => {
  const bad: RuleConfig = { name: 'broken', line: 42, to: 'tasker', match: { json: { 'a..b': eq(1) } } }
  const thrown = (rules: RuleConfig[]): unknown => {
    try {
      compileRules(rules)
    } catch (err) {
      return err
    }
    return undefined
  }
  const err = thrown([bad])
  t.ok(isSidecarError(err) && err.code === 'SIDECAR_ERR_RULE_COMPILE', 'a RULE code')
  t.match((err as Error).message, /^rule broken \(line 42\) cannot be compiled: invalid selector "a\.\.b"/)
  t.ok(isSidecarError((err as Error).cause), 'the selector error is kept as cause')
  t.ok((thrown([{ ...bad, match: { path: '~(' } }]) as Error).cause instanceof SyntaxError, 'a bad regex: its SyntaxError is the cause')
})
