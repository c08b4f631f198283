// The body pre-filter: which conditions yield needles (only those whose holding implies the
// bytes), and matchBodyRules, which must answer exactly as matchBody(candidates, parseBody(...))
// for every body, however its JSON strings or form fields are spelled: \u and \/ escapes, the
// text "\u" that is no escape, %-escapes, `+`, BOMs, invalid UTF-8, deep nesting, forbidden keys.
import t from 'tap'
import fc from 'fast-check'
import type { Condition, RuleConfig, RuleMatch, Scalar } from '../../src/config/types.ts'
import { compileRules, type CompiledRule } from '../../src/rules/compile.ts'
import { matchBody, matchBodyRules } from '../../src/rules/match.ts'
import { mayMatch, newBodyScan } from '../../src/rules/prefilter.ts'
import { parseBody } from '../../src/body/parse.ts'

const JSON_CT = 'application/json'
const FORM_CT = 'application/x-www-form-urlencoded'
const BOM = Buffer.from([0xef, 0xbb, 0xbf])

const eq = (value: Scalar): Condition => ({ kind: 'equals', value })
const oneOf = (...values: Scalar[]): Condition => ({ kind: 'in', values })
const prefix = (value: string): Condition => ({ kind: 'prefix', value })
const matches = (pattern: string): Condition => ({ kind: 'matches', pattern, flags: '' })
const exists = (value: boolean): Condition => ({ kind: 'exists', value })

function compileOne (match: RuleMatch): CompiledRule {
  const [rule] = compileRules([{ name: 'r', match, to: 'tasker', line: 1 }]).rules
  if (rule === undefined) throw new Error('no rule')
  return rule
}

t.test('needles: only conditions whose holding implies the bytes yield them', async (t) => {
  const cases: Array<{ name: string, match: RuleMatch, want: { kind: string, sets: string[][], slash: boolean } | undefined }> = [
    { name: 'json equals a string', match: { json: { 'a.b': eq('process') } }, want: { kind: 'json', sets: [['"process"']], slash: false } },
    { name: 'json in strings', match: { json: { a: oneOf('x', 'y') } }, want: { kind: 'json', sets: [['"x"', '"y"']], slash: false } },
    { name: 'json prefix', match: { json: { a: prefix('pro') } }, want: { kind: 'json', sets: [['"pro']], slash: false } },
    { name: 'json string as JSON writes it', match: { json: { a: eq('say "hi"\n') } }, want: { kind: 'json', sets: [['"say \\"hi\\"\\n"']], slash: false } },
    { name: 'json string with / (\\/ could spell it)', match: { json: { a: eq('a/b') } }, want: { kind: 'json', sets: [['"a/b"']], slash: true } },
    { name: 'json empty string', match: { json: { a: eq('') } }, want: { kind: 'json', sets: [['""']], slash: false } },
    { name: 'json every condition with needles is a set', match: { json: { a: eq('x'), b: oneOf('y', 'z') } }, want: { kind: 'json', sets: [['"x"'], ['"y"', '"z"']], slash: false } },
    { name: 'json conditions without needles are left out', match: { json: { a: eq('x'), b: exists(true) } }, want: { kind: 'json', sets: [['"x"']], slash: false } },
    { name: 'json equals a number (1, 1.0, 1e0)', match: { json: { a: eq(1) } }, want: undefined },
    { name: 'json equals true', match: { json: { a: eq(true) } }, want: undefined },
    { name: 'json equals null', match: { json: { a: eq(null) } }, want: undefined },
    { name: 'json in with a number', match: { json: { a: oneOf('x', 1) } }, want: undefined },
    { name: 'json empty prefix', match: { json: { a: prefix('') } }, want: undefined },
    { name: 'json matches', match: { json: { a: matches('^process$') } }, want: undefined },
    { name: 'json exists', match: { json: { a: exists(true) } }, want: undefined },
    { name: 'json not exists', match: { json: { a: exists(false) } }, want: undefined },
    { name: 'json lone surrogate', match: { json: { a: eq('\ud83d') } }, want: undefined },
    { name: 'json prefix ending in half a pair', match: { json: { a: prefix('x\ud83d') } }, want: undefined },
    { name: 'json with form conditions: JSON decides', match: { json: { a: eq('x') }, form: { k: eq('v') } }, want: { kind: 'json', sets: [['"x"']], slash: false } },
    { name: 'form equals', match: { form: { action: eq('process') } }, want: { kind: 'form', sets: [['action=process']], slash: false } },
    { name: 'form equals a number compares as text', match: { form: { n: eq(1) } }, want: { kind: 'form', sets: [['n=1']], slash: false } },
    { name: 'form in, null left out', match: { form: { k: oneOf('a', null, true) } }, want: { kind: 'form', sets: [['k=a', 'k=true']], slash: false } },
    { name: 'form prefix', match: { form: { k: prefix('p') } }, want: { kind: 'form', sets: [['k=p']], slash: false } },
    { name: 'form equals empty (a bare `k` holds)', match: { form: { k: eq('') } }, want: undefined },
    { name: 'form in with empty', match: { form: { k: oneOf('a', '') } }, want: undefined },
    { name: 'form equals null', match: { form: { k: eq(null) } }, want: undefined },
    { name: 'form empty prefix', match: { form: { k: prefix('') } }, want: undefined },
    { name: 'form matches', match: { form: { k: matches('x') } }, want: undefined },
    { name: 'form exists', match: { form: { k: exists(true) } }, want: undefined },
    { name: 'no body conditions', match: { path: '/a' }, want: undefined },
  ]
  for (const c of cases) {
    const n = compileOne(c.match).needles
    const got = n === undefined ? undefined : { kind: n.kind, sets: n.sets.map((s) => s.map((x) => x.full.toString())), slash: n.slash }
    t.strictSame(got, c.want, c.name)
  }
})

interface Case {
  readonly name: string
  readonly match: RuleMatch
  readonly ct: string
  readonly body: string | Buffer
  readonly complete?: boolean
  /** The rule matches. */
  readonly want: boolean
  /** The pre-filter lets the body through to parsing. */
  readonly parsed: boolean
}

const PROCESS: RuleMatch = { json: { 'components[*].calls[*].method': eq('process') } }
const livewire = (method: string): string => JSON.stringify({ components: [{ snapshot: '{"a":"\\u00e9"}', calls: [{ method }] }] })

t.test('matchBodyRules: the answer of matchBody on parseBody, parsing only when needed', async (t) => {
  const cases: Case[] = [
    { name: 'needle present, matches', match: PROCESS, ct: JSON_CT, body: livewire('process'), want: true, parsed: true },
    { name: 'needle absent: not parsed', match: PROCESS, ct: JSON_CT, body: livewire('refresh'), want: false, parsed: false },
    { name: 'needle elsewhere: parsed, no match', match: PROCESS, ct: JSON_CT, body: '{"components":[{"calls":[{"method":"x","y":"process"}]}]}', want: false, parsed: true },
    { name: 'a key is no value: parsed, no match', match: PROCESS, ct: JSON_CT, body: '{"process":1}', want: false, parsed: true },
    { name: '\\u escape in the value', match: PROCESS, ct: JSON_CT, body: '{"components":[{"calls":[{"method":"pro\\u0063ess"}]}]}', want: true, parsed: true },
    { name: 'upper-case \\u escapes only', match: PROCESS, ct: JSON_CT, body: '{"components":[{"calls":[{"method":"\\u0050ROCESS"}]}]}', want: false, parsed: true },
    { name: '\\u escape elsewhere still means parse', match: PROCESS, ct: JSON_CT, body: '{"x":"\\u00e9","components":[]}', want: false, parsed: true },
    { name: 'escaped backslash then u is no escape', match: PROCESS, ct: JSON_CT, body: '{"x":"\\\\u0063","components":[]}', want: false, parsed: false },
    { name: 'three backslashes then u is an escape', match: PROCESS, ct: JSON_CT, body: '{"x":"\\\\\\u0063","components":[]}', want: false, parsed: true },
    { name: '\\/ escape for a needle with /', match: { json: { a: eq('a/b') } }, ct: JSON_CT, body: '{"a":"a\\/b"}', want: true, parsed: true },
    { name: '\\/ escape, needle without /: not parsed', match: { json: { a: eq('ab') } }, ct: JSON_CT, body: '{"a":"a\\/b"}', want: false, parsed: false },
    { name: 'escaped quote in the value', match: { json: { a: eq('say "hi"') } }, ct: JSON_CT, body: '{"a":"say \\"hi\\""}', want: true, parsed: true },
    { name: 'quoted JSON inside a string is no value', match: PROCESS, ct: JSON_CT, body: '{"s":"{\\"method\\":\\"process\\"}","components":[]}', want: false, parsed: false },
    { name: 'prefix', match: { json: { a: prefix('pro') } }, ct: JSON_CT, body: '{"a":"process"}', want: true, parsed: true },
    { name: 'prefix absent', match: { json: { a: prefix('pro') } }, ct: JSON_CT, body: '{"a":"reprocess"}', want: false, parsed: false },
    { name: 'in: second value', match: { json: { a: oneOf('x', 'y') } }, ct: JSON_CT, body: '{"a":"y"}', want: true, parsed: true },
    { name: 'in: neither', match: { json: { a: oneOf('x', 'y') } }, ct: JSON_CT, body: '{"a":"z"}', want: false, parsed: false },
    { name: 'astral character', match: { json: { a: eq('😀') } }, ct: JSON_CT, body: '{"a":"😀"}', want: true, parsed: true },
    { name: 'astral character as an escaped pair', match: { json: { a: eq('😀') } }, ct: JSON_CT, body: '{"a":"\\ud83d\\ude00"}', want: true, parsed: true },
    { name: 'number condition is never filtered', match: { json: { a: eq(1) } }, ct: JSON_CT, body: '{"a":1.0}', want: true, parsed: true },
    { name: 'BOM', match: PROCESS, ct: JSON_CT, body: Buffer.concat([BOM, Buffer.from(livewire('process'))]), want: true, parsed: true },
    { name: 'invalid UTF-8 with the needle', match: PROCESS, ct: JSON_CT, body: Buffer.concat([Buffer.from(livewire('process')).subarray(0, -2), Buffer.from([0xff, 0x5d, 0x7d])]), want: false, parsed: true },
    { name: 'deeper than 64 with the needle', match: { json: { '[0]': eq('process') } }, ct: JSON_CT, body: `["process",${'['.repeat(65)}${']'.repeat(65)}]`, want: false, parsed: true },
    { name: 'forbidden key with the needle', match: PROCESS, ct: JSON_CT, body: `{"__proto__":1,${livewire('process').slice(1)}`, want: false, parsed: true },
    { name: 'incomplete body with the needle', match: PROCESS, ct: JSON_CT, body: livewire('process'), complete: false, want: false, parsed: true },
    { name: 'form content type, JSON rule', match: PROCESS, ct: FORM_CT, body: livewire('process'), want: false, parsed: true },
    { name: 'form: field present', match: { form: { action: eq('process') } }, ct: FORM_CT, body: 'a=1&action=process&b=2', want: true, parsed: true },
    { name: 'form: field absent, not parsed', match: { form: { action: eq('process') } }, ct: FORM_CT, body: 'a=1&action=refresh', want: false, parsed: false },
    { name: 'form: value longer: parsed, no match', match: { form: { action: eq('process') } }, ct: FORM_CT, body: 'action=processing', want: false, parsed: true },
    { name: 'form: %-escaped value', match: { form: { action: eq('process') } }, ct: FORM_CT, body: 'action=pro%63ess', want: true, parsed: true },
    { name: 'form: %-escaped name', match: { form: { action: eq('process') } }, ct: FORM_CT, body: '%61ction=process', want: true, parsed: true },
    { name: 'form: + is a space', match: { form: { q: eq('a b') } }, ct: FORM_CT, body: 'q=a+b', want: true, parsed: true },
    { name: 'form: raw space', match: { form: { q: eq('a b') } }, ct: FORM_CT, body: 'q=a b', want: true, parsed: true },
    { name: 'form: a number compares as text', match: { form: { n: eq(1) } }, ct: FORM_CT, body: 'n=1', want: true, parsed: true },
    { name: 'form: prefix', match: { form: { k: prefix('pro') } }, ct: FORM_CT, body: 'k=process', want: true, parsed: true },
    { name: 'form: BOM', match: { form: { k: eq('v') } }, ct: FORM_CT, body: Buffer.concat([BOM, Buffer.from('k=v')]), want: true, parsed: true },
    { name: 'form: malformed escape elsewhere', match: { form: { k: eq('v') } }, ct: FORM_CT, body: 'k=v&x=%zz', want: false, parsed: true },
    { name: 'form: forbidden name', match: { form: { k: eq('v') } }, ct: FORM_CT, body: 'k=v&__proto__=1', want: false, parsed: true },
    { name: 'form: invalid UTF-8', match: { form: { k: eq('v') } }, ct: FORM_CT, body: Buffer.from([0x6b, 0x3d, 0x76, 0x26, 0xff]), want: false, parsed: true },
    { name: 'form: empty value is not filtered', match: { form: { k: eq('') } }, ct: FORM_CT, body: 'k', want: true, parsed: true },
  ]
  for (const c of cases) {
    const rule = compileOne(c.match)
    const body = { bytes: Buffer.from(c.body), complete: c.complete ?? true }
    const got = matchBodyRules([rule], c.ct, body)
    t.equal(got, matchBody([rule], parseBody(c.ct, body)), `${c.name}: as matchBody`)
    t.equal(got !== undefined, c.want, `${c.name}: matches`)
    t.equal(rule.needles === undefined || mayMatch(rule.needles, body.bytes, newBodyScan()), c.parsed, `${c.name}: parsed`)
  }
})

t.test('matchBodyRules: first match wins; a rule without body conditions holds unparsed', async (t) => {
  const rules = compileRules([
    { name: 'json', match: PROCESS, to: 'tasker', line: 1 },
    { name: 'form', match: { form: { k: eq('v') } }, to: 'tasker', line: 2 },
    { name: 'any', match: {}, to: 'app', line: 3 },
    { name: 'later', match: { json: { a: exists(true) } }, to: 'tasker', line: 4 },
  ]).rules
  const cases: Array<{ name: string, ct: string, body: string, want: string | undefined }> = [
    { name: 'the JSON rule', ct: JSON_CT, body: livewire('process'), want: 'json' },
    { name: 'the form rule', ct: FORM_CT, body: 'k=v', want: 'form' },
    { name: 'neither: the rule without body conditions', ct: JSON_CT, body: livewire('refresh'), want: 'any' },
    { name: 'unparsable: the rule without body conditions', ct: JSON_CT, body: '{', want: 'any' },
  ]
  for (const c of cases) {
    const body = { bytes: Buffer.from(c.body), complete: true }
    t.equal(matchBodyRules(rules, c.ct, body)?.name, c.want, c.name)
    t.equal(matchBodyRules(rules, c.ct, body), matchBody(rules, parseBody(c.ct, body)), `${c.name}: as matchBody`)
  }
  t.equal(matchBodyRules([], JSON_CT, { bytes: Buffer.from('{}'), complete: true }), undefined, 'no candidates')
})

// ── property: random rules and bodies spelled every way ──────────────────────────────────────

const KEYS = ['a', 'b', 'k'] as const
const VALUES = ['process', 'pro', 'a/b', 'say "hi"', 'é', '😀', '', 'x y', 'a+b', 'k=v', '1', 'a&b', 'u\\v', 'PROCESS'] as const
// A few values often, so that random rules and bodies meet.
const value = fc.oneof({ weight: 2, arbitrary: fc.constantFrom<string>('process', 'a/b', 'x y') }, fc.constantFrom<string>(...VALUES))
const scalar: fc.Arbitrary<Scalar> = fc.oneof({ weight: 4, arbitrary: value }, fc.constantFrom<Scalar>(1, true, null))

const condition: fc.Arbitrary<Condition> = fc.oneof(
  { weight: 6, arbitrary: scalar.map(eq) },
  { weight: 2, arbitrary: fc.array(scalar, { minLength: 1, maxLength: 3 }).map((vs) => oneOf(...vs)) },
  { weight: 2, arbitrary: fc.constantFrom('pro', 'p', '', 'a/', 'é', 'say').map(prefix) },
  fc.constantFrom('^pro', 'x').map(matches),
  fc.boolean().map(exists)
)
const selector = fc.constantFrom('a', 'a[*]', 'b.c', 'b[*].c', 'a[0]', '[*].a')
const match: fc.Arbitrary<RuleMatch> = fc.oneof(
  { weight: 3, arbitrary: fc.dictionary(selector, condition, { minKeys: 1, maxKeys: 2 }).map((json): RuleMatch => ({ json })) },
  { weight: 3, arbitrary: fc.dictionary(fc.constantFrom(...KEYS), condition, { minKeys: 1, maxKeys: 2 }).map((form): RuleMatch => ({ form })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('a', 'a[*]', 'b[*].c'), condition).map(([sel, c]): RuleMatch => ({ json: { [sel]: c } })) },
  fc.constant<RuleMatch>({})
)
const rules: fc.Arbitrary<RuleConfig[]> = fc.array(match, { minLength: 1, maxLength: 4 }).map((ms) => ms.map((m, i) => ({ name: `r${i}`, match: m, to: 'tasker', line: i + 1 })))

// JSON documents the selectors above can reach, written with one of several spellings.
const leaf: fc.Arbitrary<unknown> = fc.oneof({ weight: 4, arbitrary: value }, fc.constantFrom(1, 1.0, true, null))
const doc: fc.Arbitrary<unknown> = fc.oneof(
  fc.record({ a: fc.oneof(leaf, fc.array(leaf, { maxLength: 3 })), b: fc.oneof(fc.record({ c: leaf }), fc.array(fc.record({ c: leaf }), { maxLength: 2 })) }, { requiredKeys: ['a'] }),
  fc.array(fc.record({ a: leaf }), { maxLength: 2 })
)
type Spelling = 'canonical' | 'u-first' | 'u-all-upper' | 'slash' | 'backslash-u-text'
const hex = (code: number, upper: boolean): string => `\\u${code.toString(16).padStart(4, '0')[upper ? 'toUpperCase' : 'toLowerCase']()}`

function spellString (s: string, how: Spelling): string {
  const canonical = JSON.stringify(s)
  if (how === 'u-first' && s !== '') return `"${hex(s.charCodeAt(0), false)}${JSON.stringify(s.slice(1)).slice(1)}`
  if (how === 'u-all-upper') return `"${[...Array(s.length).keys()].map((i) => hex(s.charCodeAt(i), true)).join('')}"`
  if (how === 'slash') return canonical.replaceAll('/', '\\/')
  return canonical
}

function spellJson (v: unknown, how: Spelling): string {
  if (typeof v === 'string') return spellString(v, how)
  if (Array.isArray(v)) return `[${v.map((x) => spellJson(x, how)).join(',')}]`
  if (typeof v === 'object' && v !== null) return `{${Object.entries(v).map(([k, x]) => `${spellString(k, how)}:${spellJson(x, how)}`).join(',')}}`
  return JSON.stringify(v)
}

type Extra = 'none' | 'bom' | 'invalid-utf8' | 'deep' | 'forbidden-key' | 'text-backslash-u'
const jsonBody = fc.tuple(doc, fc.constantFrom<Spelling>('canonical', 'canonical', 'u-first', 'u-all-upper', 'slash'), fc.constantFrom<Extra>('none', 'none', 'bom', 'invalid-utf8', 'deep', 'forbidden-key', 'text-backslash-u'))
  .map(([d, how, extra]) => {
    const text = spellJson(d, how)
    if (extra === 'bom') return Buffer.concat([BOM, Buffer.from(text)])
    if (extra === 'invalid-utf8') return Buffer.concat([Buffer.from(`[${text},"`), Buffer.from([0xff]), Buffer.from('"]')])
    if (extra === 'deep') return Buffer.from(`${'['.repeat(65)}${text}${']'.repeat(65)}`)
    if (extra === 'forbidden-key') return Buffer.from(`{"__proto__":${text}}`)
    // The text \u0063 in a string (an escaped backslash, then u): no escape, still filtered.
    if (extra === 'text-backslash-u') return Buffer.from(`[${text},"\\\\u0063"]`)
    return Buffer.from(text)
  })

type FormSpelling = 'raw' | 'encoded' | 'plus' | 'percent-all'
function spellField (s: string, how: FormSpelling): string {
  if (how === 'raw') return s
  const encoded = encodeURIComponent(s)
  if (how === 'plus') return encoded.replaceAll('%20', '+')
  if (how === 'percent-all') return [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
  return encoded
}
const formBody = fc.tuple(
  fc.array(fc.tuple(fc.oneof({ weight: 9, arbitrary: fc.constantFrom<string>(...KEYS) }, fc.constant('__proto__')), value), { maxLength: 4 }),
  fc.constantFrom<FormSpelling>('raw', 'raw', 'encoded', 'plus', 'percent-all'),
  fc.constantFrom('none', 'none', 'bom', 'bad-escape', 'invalid-utf8')
).map(([pairs, how, extra]) => {
  const text = pairs.map(([k, v]) => `${spellField(k, how)}=${spellField(v, how)}`).join('&')
  if (extra === 'bom') return Buffer.concat([BOM, Buffer.from(text)])
  if (extra === 'bad-escape') return Buffer.from(`${text}&x=%zz`)
  if (extra === 'invalid-utf8') return Buffer.concat([Buffer.from(`${text}&x=`), Buffer.from([0xff])])
  return Buffer.from(text)
})

const request = fc.oneof(
  fc.record({ ct: fc.constantFrom(JSON_CT, JSON_CT, JSON_CT, FORM_CT, 'text/plain'), bytes: jsonBody }),
  fc.record({ ct: fc.constantFrom(FORM_CT, FORM_CT, FORM_CT, JSON_CT), bytes: formBody })
)

t.test('matchBodyRules agrees with matchBody(parseBody) on random rules and bodies', async (t) => {
  let filtered = 0
  let matchedBodyRule = 0
  let matchedEscaped = 0
  fc.assert(fc.property(rules, request, fc.constantFrom(true, true, true, false), (rs, req, complete) => {
    const candidates = compileRules(rs).rules
    const body = { bytes: req.bytes, complete }
    const got = matchBodyRules(candidates, req.ct, body)
    const want = matchBody(candidates, parseBody(req.ct, body))
    if (got !== want) throw new Error(`${String(got?.name)} != ${String(want?.name)} for ${req.ct} ${req.bytes.toString('latin1')} and ${JSON.stringify(rs)}`)
    for (const r of candidates) if (r.needles !== undefined && !mayMatch(r.needles, req.bytes, newBodyScan())) filtered++
    if (got?.bodyKind != null) {
      matchedBodyRule++
      if (/\\u|\\\/|%|\+/.test(req.bytes.toString('latin1'))) matchedEscaped++
    }
  }), { numRuns: 10_000 })
  // Agreement proves little unless bodies are filtered out, and matched, escapes and all.
  t.ok(filtered > 2000, `${filtered} rules ruled out by their needles`)
  t.ok(matchedBodyRule > 100, `a body rule matched in ${matchedBodyRule} runs`)
  t.ok(matchedEscaped > 40, `${matchedEscaped} of them through escapes, %, + or \\/`)
})
