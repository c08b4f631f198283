// selectJson against parseBody (JSON.parse of the whole body, the oracle): 'none' for exactly the
// same bodies, and every selector reaches the same values. Bodies are generated as text, so that
// they hold what a JSON value cannot: duplicate keys, escapes of every kind, odd number
// spellings, whitespace everywhere, forbidden keys (also escaped, also inside overwritten
// members), deep nesting, and then random byte mutations of all that.
import t from 'tap'
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import { compileSelection, selectBody, selectJson, type Selection } from '../../src/body/json-select.ts'
import { parseBody, type ParsedBody } from '../../src/body/parse.ts'
import type { SelectorStep } from '../../src/config/load.ts'
import { livewireBody } from '../../bench/_config.ts'

const JSON_CT = 'application/json'
const BOM = Buffer.from([0xef, 0xbb, 0xbf])

/** Every value `steps` reaches from `value`, as reach() in src/rules/match.ts visits them. */
function reachAll (value: unknown, steps: readonly SelectorStep[], i = 0, out: unknown[] = []): unknown[] {
  const step = steps[i]
  if (step === undefined) { out.push(value); return out }
  if (typeof value !== 'object' || value === null) return out
  if (step.kind === 'key') {
    if (!Array.isArray(value) && Object.hasOwn(value, step.key)) reachAll((value as Record<string, unknown>)[step.key], steps, i + 1, out)
  } else if (step.kind === 'index') {
    if (Array.isArray(value) && step.index < value.length) reachAll(value[step.index], steps, i + 1, out)
  } else if (Array.isArray(value)) {
    for (const item of value) reachAll(item, steps, i + 1, out)
  } else {
    for (const k of Object.keys(value)) reachAll((value as Record<string, unknown>)[k], steps, i + 1, out)
  }
  return out
}

/** What a rule's test can tell of a reached value: primitives exactly (-0 too), containers by kind. */
function seen (values: readonly unknown[]): unknown[] {
  return values.map((v) => {
    if (Array.isArray(v)) return '[array]'
    if (typeof v === 'object' && v !== null) return '[object]'
    if (typeof v === 'number') return Object.is(v, -0) ? '[-0]' : v
    return v
  })
}

/** selectJson agrees with parseBody on `bytes` for every selector; a message when not. */
function disagreement (bytes: Buffer, selectors: readonly (readonly SelectorStep[])[], selection: Selection): string | undefined {
  const want = parseBody(JSON_CT, { bytes, complete: true })
  const got = selectJson(bytes, selection)
  const show = (): string => `${JSON.stringify(bytes.toString('latin1'))} with ${JSON.stringify(selectors)}`
  if (want.kind === 'none' || got.kind === 'none') {
    return want.kind === got.kind ? undefined : `parseBody ${want.kind}, selectJson ${got.kind}: ${show()}`
  }
  if (want.kind !== 'json' || got.kind !== 'json') return `kinds ${want.kind} ${got.kind}`
  for (const steps of selectors) {
    const w = seen(reachAll(want.value, steps))
    const g = seen(reachAll(got.value, steps))
    if (!isDeepStrictEqual(w, g)) return `${JSON.stringify(steps)} reaches ${JSON.stringify(w)} in JSON.parse, ${JSON.stringify(g)} selected: ${show()}`
  }
  return undefined
}

// ── generators ────────────────────────────────────────────────────────────────────────────

const KEYS = ['a', 'b', 'c', '0', '1', 'é', '', '__proto__', 'constructor', 'prototype', 'a"b', '\ud800'] as const
const key = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('a', 'b', 'c') }, fc.constantFrom<string>(...KEYS))
const step: fc.Arbitrary<SelectorStep> = fc.oneof(
  { weight: 4, arbitrary: key.map((k): SelectorStep => ({ kind: 'key', key: k })) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 2 }).map((index): SelectorStep => ({ kind: 'index', index })) },
  { weight: 2, arbitrary: fc.constant<SelectorStep>({ kind: 'any' }) }
)
const selectors = fc.array(fc.array(step, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 })

const ws = fc.constantFrom('', '', '', ' ', '\n', '\t', '\r\n  ')
const STRINGS = ['', 'x', 'process', 'a/b', 'say "hi"', 'é', '😀', 'tab\there', 'u\\v', '\ud800', 'x'.repeat(40), 'q"'.repeat(20), 'r'.repeat(300)] as const

/** A JSON string literal for `s`, spelled one of several ways (all valid). */
function spell (s: string, how: number): string {
  const canonical = JSON.stringify(s)
  switch (how % 5) {
    case 1: return `"${[...s].map((ch) => ch.length === 1 ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : ch).join('')}"`
    case 2: return canonical.replaceAll('/', '\\/')
    case 3: {
      // The first character as an upper-case \u escape, the rest as JSON.stringify writes it.
      const [first, ...rest] = [...s]
      if (first === undefined || first.length !== 1) return canonical
      return `"\\u${first.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}${JSON.stringify(rest.join('')).slice(1)}`
    }
    default: return canonical
  }
}

const stringLit = fc.tuple(fc.oneof(fc.constantFrom<string>(...STRINGS), fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 })), fc.nat(9)).map(([s, how]) => spell(s, how))
const numberLit = fc.oneof(
  fc.constantFrom('0', '-0', '1', '1.0', '1e0', '1E+2', '-1.5e-3', '10', '9007199254740993', '1e400', '-1e-400', '0.1', '123456789012345678901234567890'),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.integer().map(String)
)
const scalarLit = fc.oneof({ weight: 3, arbitrary: stringLit }, { weight: 2, arbitrary: numberLit }, fc.constantFrom('true', 'false', 'null'))

const keyLit = fc.tuple(key, fc.nat(9)).map(([k, how]) => spell(k, how))

const { value: valueLit } = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalarLit,
    fc.tuple(fc.array(fc.tuple(ws, tie('value'), ws), { maxLength: 4 })).map(([items]) => `[${items.map(([a, v, b]) => a + v + b).join(',')}]`),
    fc.array(fc.tuple(ws, keyLit, ws, ws, tie('value'), ws), { maxLength: 4 }).map((members) => `{${members.map(([a, k, b, c, v, d]) => `${a}${k}${b}:${c}${v}${d}`).join(',')}}`)
  ),
}))

/** Deeply nested around a value: near the limit of 64 from both sides. */
const deep = fc.tuple(fc.integer({ min: 60, max: 68 }), fc.boolean(), valueLit).map(([n, obj, v]) =>
  obj ? `${'{"a":'.repeat(n)}${v}${'}'.repeat(n)}` : `${'['.repeat(n)}${v}${']'.repeat(n)}`)

const document = fc.oneof({ weight: 6, arbitrary: fc.tuple(ws, valueLit, ws).map(([a, v, b]) => a + v + b) }, deep, fc.json())

/** Bytes that break JSON (or not) in interesting ways. */
const NASTY = [0x00, 0x01, 0x09, 0x0a, 0x1f, 0x20, 0x22, 0x2c, 0x2f, 0x30, 0x3a, 0x5b, 0x5c, 0x5d, 0x65, 0x75, 0x7b, 0x7d, 0x7f, 0x80, 0xc3, 0xef, 0xff]
const mutation = fc.tuple(fc.nat(), fc.constantFrom('set', 'insert', 'delete', 'truncate'), fc.constantFrom(...NASTY))

function mutate (bytes: Buffer, muts: ReadonlyArray<readonly [number, string, number]>): Buffer {
  let b = bytes
  for (const [at, kind, byte] of muts) {
    if (b.length === 0) break
    const i = at % b.length
    if (kind === 'set') { b = Buffer.from(b); b[i] = byte } else if (kind === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)])
    else if (kind === 'delete') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)])
    else b = b.subarray(0, i)
  }
  return b
}

const body = fc.tuple(document, fc.boolean(), fc.array(mutation, { maxLength: 3 }), fc.nat(4)).map(([text, bom, muts, mutateOften]) => {
  const bytes = Buffer.concat([bom ? BOM : Buffer.alloc(0), Buffer.from(text)])
  // Half of them unmutated, so that valid documents are common.
  return mutateOften < 2 ? bytes : mutate(bytes, muts)
})

// ── tests ─────────────────────────────────────────────────────────────────────────────────

t.test('selectJson agrees with JSON.parse (parseBody) on generated and mutated bodies', async (t) => {
  let json = 0
  let none = 0
  let reachedSome = 0
  let duplicateKeys = 0
  fc.assert(fc.property(selectors, body, (sels, bytes) => {
    const selection = compileSelection(sels)
    const why = disagreement(bytes, sels, selection)
    if (why !== undefined) throw new Error(why)
    const p = parseBody(JSON_CT, { bytes, complete: true })
    if (p.kind === 'json') {
      json++
      if (sels.some((s) => reachAll(p.value, s).length > 0)) reachedSome++
      if (/\{[^{}]*"(a|b|c)"\s*:[^{}]*"\1"\s*:/.test(bytes.toString('latin1'))) duplicateKeys++
    } else {
      none++
    }
  }), { numRuns: 20_000 })
  // Agreement means little unless both kinds of answer, and real reaches, are common.
  t.ok(json > 5000, `${json} bodies were JSON`)
  t.ok(none > 5000, `${none} were not (or too deep, or with a forbidden key)`)
  t.ok(reachedSome > 1000, `in ${reachedSome} of them some selector reached something`)
  t.ok(duplicateKeys > 100, `${duplicateKeys} had a duplicate key`)
})

t.test('selectJson agrees with JSON.parse on random bytes and JSON-like pieces', async (t) => {
  const piece = fc.constantFrom('[', ']', '{', '}', '"', '\\', '\\"', '\\\\', '\\u00', '\\u0061', ',', ':', '1', '-', '.', 'e', 'null', 'tru', '"a"', '"b"', '"__proto__"', ' ', '\n', '\u0001', 'é')
  const bytes = fc.oneof(
    fc.array(piece, { maxLength: 30 }).map((ps) => Buffer.from(ps.join(''))),
    fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a))
  )
  const sels: SelectorStep[][] = [[{ kind: 'key', key: 'a' }], [{ kind: 'any' }], [{ kind: 'any' }, { kind: 'key', key: 'b' }], [{ kind: 'index', index: 0 }]]
  const selection = compileSelection(sels)
  fc.assert(fc.property(bytes, (b) => {
    const why = disagreement(b, sels, selection)
    if (why !== undefined) throw new Error(why)
  }), { numRuns: 20_000 })
  t.pass('20000 bodies')
})

t.test('selectJson: the cases that decide', async (t) => {
  const a: SelectorStep[][] = [[{ kind: 'key', key: 'a' }]]
  const deepA: SelectorStep[][] = [[{ kind: 'key', key: 'a' }, { kind: 'any' }, { kind: 'key', key: 'm' }]]
  const cases: Array<{ name: string, body: string | Buffer, sels: SelectorStep[][], want: ParsedBody }> = [
    { name: 'a string member', body: '{"a":"x","b":"y"}', sels: a, want: { kind: 'json', value: { a: 'x' } } },
    { name: 'escapes decoded', body: '{"a":"\\u0070ro\\/\\"\\\\"}', sels: a, want: { kind: 'json', value: { a: 'pro/"\\' } } },
    { name: 'escaped key found', body: '{"\\u0061":1}', sels: a, want: { kind: 'json', value: { a: 1 } } },
    { name: 'duplicate key: the last wins', body: '{"a":"process","a":"refresh"}', sels: a, want: { kind: 'json', value: { a: 'refresh' } } },
    { name: 'numbers as JSON.parse reads them', body: '{"a":[1e400,-0,9007199254740993]}', sels: [[{ kind: 'key', key: 'a' }, { kind: 'any' }]], want: { kind: 'json', value: { a: [Infinity, -0, 9007199254740992] } } },
    { name: 'wildcard over an object', body: '{"a":{"x":{"m":1},"y":{"m":2,"n":3}}}', sels: deepA, want: { kind: 'json', value: { a: { x: { m: 1 }, y: { m: 2 } } } } },
    { name: 'a forbidden key', body: '{"b":{"__proto__":1}}', sels: a, want: { kind: 'none' } },
    { name: 'a forbidden key, escaped', body: '{"b":{"\\u005f_proto__":1}}', sels: a, want: { kind: 'none' } },
    { name: 'a forbidden key in a member a duplicate replaced', body: '{"b":{"constructor":1},"b":2,"a":3}', sels: a, want: { kind: 'json', value: { a: 3 } } },
    { name: 'a forbidden key in the member that replaced', body: '{"b":2,"b":{"prototype":1},"a":3}', sels: a, want: { kind: 'none' } },
    { name: 'raw control character in a long string', body: `{"a":"${'r'.repeat(100)}\u0001${'r'.repeat(100)}"}`, sels: a, want: { kind: 'none' } },
    { name: 'raw tab in a skipped string', body: `{"b":"${'r'.repeat(100)}\t"}`, sels: a, want: { kind: 'none' } },
    { name: 'whitespace around everything', body: ' \t\r\n{ "a" :\n"x" , "b" : [ ] }\n', sels: a, want: { kind: 'json', value: { a: 'x' } } },
    { name: 'bad escape', body: '{"b":"\\x"}', sels: a, want: { kind: 'none' } },
    { name: 'short \\u escape', body: '{"b":"\\u12"}', sels: a, want: { kind: 'none' } },
    { name: 'leading zero', body: '{"a":01}', sels: a, want: { kind: 'none' } },
    { name: 'trailing comma', body: '{"a":1,}', sels: a, want: { kind: 'none' } },
    { name: 'two documents', body: '{"a":1} {}', sels: a, want: { kind: 'none' } },
    { name: 'empty', body: '', sels: a, want: { kind: 'none' } },
    { name: 'a BOM is skipped', body: Buffer.concat([BOM, Buffer.from('{"a":true}')]), sels: a, want: { kind: 'json', value: { a: true } } },
    { name: 'two BOMs are not', body: Buffer.concat([BOM, BOM, Buffer.from('{"a":true}')]), sels: a, want: { kind: 'none' } },
    { name: 'invalid UTF-8 in a skipped string', body: Buffer.concat([Buffer.from('{"a":1,"b":"'), Buffer.from([0xff]), Buffer.from('"}')]), sels: a, want: { kind: 'none' } },
    { name: '64 levels', body: `${'['.repeat(63)}{"a":1}${']'.repeat(63)}`, sels: a, want: { kind: 'json', value: [] } },
    { name: '65 levels', body: `${'['.repeat(64)}{"a":1}${']'.repeat(64)}`, sels: a, want: { kind: 'none' } },
  ]
  for (const c of cases) {
    const bytes = Buffer.isBuffer(c.body) ? c.body : Buffer.from(c.body)
    const got = selectJson(bytes, compileSelection(c.sels))
    t.strictSame(JSON.parse(JSON.stringify(got)), JSON.parse(JSON.stringify(c.want)), c.name)
    t.equal(disagreement(bytes, c.sels, compileSelection(c.sels)), undefined, `${c.name}: as JSON.parse`)
  }
})

t.test('selectJson: the benchmark Livewire body, its snapshot skipped', async (t) => {
  const sels: SelectorStep[][] = [[{ kind: 'key', key: 'components' }, { kind: 'any' }, { kind: 'key', key: 'calls' }, { kind: 'any' }, { kind: 'key', key: 'method' }]]
  const selection = compileSelection(sels)
  t.strictSame(JSON.parse(JSON.stringify(selectJson(livewireBody('process'), selection))), { kind: 'json', value: { components: [{ calls: [{ method: 'process' }] }] } })
  for (const method of ['process', 'refresh']) t.equal(disagreement(livewireBody(method), sels, selection), undefined, method)
})

t.test('selectBody: incomplete bodies and other content types are not read', async (t) => {
  const selection = compileSelection([[{ kind: 'key', key: 'a' }]])
  const bytes = Buffer.from('{"a":1}')
  t.strictSame(selectBody(JSON_CT, { bytes, complete: false }, selection), { kind: 'none' })
  t.strictSame(selectBody('text/plain', { bytes, complete: true }, selection), { kind: 'none' })
  t.strictSame(selectBody('application/x-www-form-urlencoded', { bytes, complete: true }, selection), { kind: 'none' })
  t.strictSame(selectBody('application/vnd.api+json; charset=utf-8', { bytes, complete: true }, selection).kind, 'json')
})
