// Property tests (fast-check) over the parser and the matcher: nothing throws on any input, JSON
// round-trips, and the two-step match (matchHead, then matchBody on parseBody) always picks the
// rule that explainRules, which evaluates every rule from scratch, says matched first.
import t from 'tap'
import fc from 'fast-check'
import type { IncomingHttpHeaders } from 'node:http'
import { isDeepStrictEqual } from 'node:util'
import type { Condition, RuleConfig, RuleMatch, Scalar } from '../../src/config/types.ts'
import { compileRules, type RequestHead } from '../../src/rules/compile.ts'
import { explainRules, matchBody, matchHead } from '../../src/rules/match.ts'
import { parseBody } from '../../src/body/parse.ts'

const KEYS = ['a', 'b', 'c'] as const
const scalar: fc.Arbitrary<Scalar> = fc.constantFrom<Scalar>('x', 'y', '1', '', 1, 2.5, true, false, null)
const text = fc.constantFrom('x', 'y', '1', '', 'x,y', 'xy')

const condition: fc.Arbitrary<Condition> = fc.oneof(
  scalar.map((value): Condition => ({ kind: 'equals', value })),
  fc.array(scalar, { minLength: 1, maxLength: 3 }).map((values): Condition => ({ kind: 'in', values })),
  fc.constantFrom('x', '', '1').map((value): Condition => ({ kind: 'prefix', value })),
  fc.constantFrom('^x', 'y$', '^1', '.', 'x', '^$').map((pattern): Condition => ({ kind: 'matches', pattern, flags: '' })),
  fc.boolean().map((value): Condition => ({ kind: 'exists', value }))
)
const conditions = (keys: fc.Arbitrary<string>): fc.Arbitrary<Record<string, Condition>> => fc.dictionary(keys, condition, { minKeys: 1, maxKeys: 2 })
const selector = fc.constantFrom('a', 'a.b', 'a[*]', 'a[0]', '[*].a', 'a[*].b', '["b"]', 'a[*][*]', '[0]', 'c.a.b')

// A rule has up to two parts, so that random rules still match random requests often enough.
const part: fc.Arbitrary<RuleMatch> = fc.oneof(
  fc.subarray(['GET', 'POST', 'PUT'], { minLength: 1 }).map((methods): RuleMatch => ({ methods })),
  fc.constantFrom('/a', '/a/*', '/**', '~^/a', '/a/**', '/b').map((path): RuleMatch => ({ path })),
  conditions(fc.constantFrom(...KEYS)).map((headers): RuleMatch => ({ headers })),
  conditions(fc.constantFrom(...KEYS)).map((query): RuleMatch => ({ query })),
  { weight: 3, arbitrary: conditions(selector).map((json): RuleMatch => ({ json })) },
  { weight: 2, arbitrary: conditions(fc.constantFrom(...KEYS)).map((form): RuleMatch => ({ form })) }
)
const match: fc.Arbitrary<RuleMatch> = fc.array(part, { minLength: 1, maxLength: 2 }).map((parts) => Object.assign({}, ...parts) as RuleMatch)

const rules: fc.Arbitrary<RuleConfig[]> = fc.array(match, { maxLength: 6 }).map((ms) => ms.map((m, i) => ({ name: `r${i}`, match: m, to: 'tasker', line: i + 1 })))

const { json } = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('json'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie('json'), { maxKeys: 3 })
  ),
}))

const pair = fc.tuple(fc.constantFrom(...KEYS, 'a%20', '%zz'), text)
const urlencoded = fc.array(pair, { maxLength: 4 }).map((ps) => ps.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&'))

interface Request { readonly head: RequestHead, readonly bytes: Buffer }

const request: fc.Arbitrary<Request> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT'),
  path: fc.constantFrom('/a', '/a/b', '/b', '/', '/a/b/c'),
  query: fc.oneof(urlencoded, fc.string({ maxLength: 12 })),
  headers: fc.dictionary(fc.constantFrom(...KEYS), fc.oneof(text, fc.array(text, { minLength: 1, maxLength: 2 })), { maxKeys: 3 }),
  body: fc.oneof(
    fc.record({ ct: fc.constant('application/json'), bytes: fc.dictionary(fc.constantFrom(...KEYS), json, { maxKeys: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? '')) }),
    fc.record({ ct: fc.constant('application/x-www-form-urlencoded'), bytes: urlencoded.map((s) => Buffer.from(s)) }),
    fc.record({ ct: fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', undefined), bytes: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) })
  ),
}).map(({ method, path, query, headers, body }) => {
  const h: IncomingHttpHeaders = { ...headers }
  if (body.ct !== undefined) h['content-type'] = body.ct
  if (body.bytes.length > 0 || method !== 'GET') h['content-length'] = String(body.bytes.length)
  return { head: { method, path, query, headers: h }, bytes: body.bytes }
})

t.test('parseBody never throws, whatever the bytes and content type', async (t) => {
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 300 }),
    fc.oneof(fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'a/b+json; charset=utf-8'), fc.string({ maxLength: 40 })),
    fc.boolean(),
    (bytes, ct, complete) => { parseBody(ct, { bytes: Buffer.from(bytes), complete }) }
  ), { numRuns: 2000 })
  t.pass('2000 random bodies')
})

t.test('any JSON without prototype keys and within depth 64 round-trips', async (t) => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 8 }), (v) => {
    const textOf = JSON.stringify(v)
    if (/"(__proto__|constructor|prototype)":/.test(textOf)) return
    const p = parseBody('application/json; charset=utf-8', { bytes: Buffer.from(textOf), complete: true })
    if (!isDeepStrictEqual(p, { kind: 'json', value: JSON.parse(textOf) })) throw new Error(`did not round-trip: ${textOf}`)
  }), { numRuns: 500 })
  t.pass('500 random JSON documents')
})

t.test('the two-step match agrees with explainRules, and nothing throws', async (t) => {
  let decidedOnHead = 0
  let neededBody = 0
  let bodyMatched = 0
  fc.assert(fc.property(rules, request, fc.option(fc.integer({ min: 0, max: 200 }), { nil: undefined }), (rs, req, max) => {
    const compiled = compileRules(rs, max === undefined ? {} : { maxBodyBytes: max })
    const parsed = parseBody(req.head.headers['content-type'] as string | undefined, { bytes: req.bytes, complete: max === undefined || req.bytes.length <= max })
    const m = matchHead(compiled, req.head)
    if (m.kind === 'done') decidedOnHead++
    else neededBody++
    const got = m.kind === 'done' ? m.rule : matchBody(m.candidates, parsed)
    if (got?.bodyKind != null) bodyMatched++
    const explained = explainRules(compiled, req.head, parsed)
    const want = explained.at(-1)?.matched === true ? explained.at(-1)?.name : undefined
    if (got?.name !== want) throw new Error(`two-step ${String(got?.name)} != explain ${String(want)}: ${JSON.stringify(explained)}`)
    // The same head again gives the same answer (no stateful RegExp, no mutation).
    const again = matchHead(compiled, req.head)
    if (m.kind === 'done' && again !== m) throw new Error('matchHead is not repeatable')
  }), { numRuns: 10_000 })
  // The generators must exercise every path, or agreement would prove little.
  t.ok(decidedOnHead > 1000, `decided on the head in ${decidedOnHead} runs`)
  t.ok(neededBody > 1000, `needed the body in ${neededBody} runs`)
  t.ok(bodyMatched > 50, `a body rule matched in ${bodyMatched} runs`)
})
