// Safe body parsing: content types, JSON and form decoding, and hostile bodies (deep nesting,
// invalid UTF-8, BOM, prototype keys, huge numbers) that must end as 'none' or parse safely.
import t from 'tap'
import { mediaKind, parseBody, type ParsedBody } from '../../src/body/parse.ts'

const complete = (text: string | Buffer): { bytes: Buffer, complete: boolean } => ({ bytes: Buffer.isBuffer(text) ? text : Buffer.from(text), complete: true })
const JSON_CT = 'application/json'
const FORM_CT = 'application/x-www-form-urlencoded'

t.test('mediaKind', async (t) => {
  const cases: Array<{ name: string, input: string | undefined, want: 'json' | 'form' | null }> = [
    { name: 'json', input: 'application/json', want: 'json' },
    { name: 'json, utf-8', input: 'application/json; charset=utf-8', want: 'json' },
    { name: 'json, quoted UTF-8', input: 'application/json;charset="UTF-8"', want: 'json' },
    { name: 'json, utf8 alias', input: 'application/json; charset=utf8', want: 'json' },
    { name: 'json, other parameter', input: 'application/json; version=2', want: 'json' },
    { name: 'upper case type', input: 'Application/JSON', want: 'json' },
    { name: '+json', input: 'application/vnd.api+json', want: 'json' },
    { name: 'any +json', input: 'text/x-thing+json', want: 'json' },
    { name: 'json, latin1', input: 'application/json; charset=iso-8859-1', want: null },
    { name: 'json, utf-16', input: 'application/json; charset=utf-16', want: null },
    { name: 'jsonp is not json', input: 'application/jsonp', want: null },
    { name: 'text/json is not json', input: 'text/json', want: null },
    { name: 'form', input: 'application/x-www-form-urlencoded', want: 'form' },
    { name: 'form, utf-8', input: 'application/x-www-form-urlencoded; charset=UTF-8', want: 'form' },
    { name: 'form, shift_jis', input: 'application/x-www-form-urlencoded; charset=shift_jis', want: null },
    { name: 'multipart', input: 'multipart/form-data; boundary=abc', want: null },
    { name: 'text', input: 'text/plain', want: null },
    { name: 'no subtype', input: 'application', want: null },
    { name: 'empty', input: '', want: null },
    { name: 'missing', input: undefined, want: null },
    { name: 'garbage', input: '/;;==', want: null },
  ]
  for (const c of cases) t.equal(mediaKind(c.input), c.want, c.name)
})

t.test('parseBody: JSON', async (t) => {
  const cases: Array<{ name: string, input: { ct: string | undefined, bytes: Buffer | string, complete?: boolean }, want: ParsedBody }> = [
    { name: 'object', input: { ct: JSON_CT, bytes: '{"a":[1,"x",null,true]}' }, want: { kind: 'json', value: { a: [1, 'x', null, true] } } },
    { name: 'scalar document', input: { ct: JSON_CT, bytes: '"x"' }, want: { kind: 'json', value: 'x' } },
    { name: 'whitespace around', input: { ct: JSON_CT, bytes: ' \n{"a":1}\r\n ' }, want: { kind: 'json', value: { a: 1 } } },
    { name: 'BOM is skipped', input: { ct: JSON_CT, bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}')]) }, want: { kind: 'json', value: { a: 1 } } },
    { name: 'UTF-8 text', input: { ct: JSON_CT, bytes: '{"é":"日本"}' }, want: { kind: 'json', value: { é: '日本' } } },
    { name: 'incomplete body', input: { ct: JSON_CT, bytes: '{"a":1}', complete: false }, want: { kind: 'none' } },
    { name: 'empty body', input: { ct: JSON_CT, bytes: '' }, want: { kind: 'none' } },
    { name: 'invalid JSON', input: { ct: JSON_CT, bytes: '{"a":' }, want: { kind: 'none' } },
    { name: 'trailing garbage', input: { ct: JSON_CT, bytes: '{"a":1} x' }, want: { kind: 'none' } },
    { name: 'no content type', input: { ct: undefined, bytes: '{"a":1}' }, want: { kind: 'none' } },
    { name: 'text/plain', input: { ct: 'text/plain', bytes: '{"a":1}' }, want: { kind: 'none' } },
    { name: 'invalid UTF-8 (lone continuation byte)', input: { ct: JSON_CT, bytes: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0x80, 0x22, 0x7d]) }, want: { kind: 'none' } },
    { name: 'invalid UTF-8 (overlong /)', input: { ct: JSON_CT, bytes: Buffer.from([0x22, 0xc0, 0xaf, 0x22]) }, want: { kind: 'none' } },
    { name: 'invalid UTF-8 (surrogate)', input: { ct: JSON_CT, bytes: Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]) }, want: { kind: 'none' } },
    { name: 'UTF-16 BOM', input: { ct: JSON_CT, bytes: Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]) }, want: { kind: 'none' } },
    { name: '__proto__ key', input: { ct: JSON_CT, bytes: '{"__proto__":{"polluted":1}}' }, want: { kind: 'none' } },
    { name: 'escaped __proto__ key', input: { ct: JSON_CT, bytes: '{"__pro\\u0074o__":{"polluted":1}}' }, want: { kind: 'none' } },
    { name: 'deep __proto__ inside arrays', input: { ct: JSON_CT, bytes: '{"a":[1,[{"b":{"__proto__":1}}]]}' }, want: { kind: 'none' } },
    { name: 'constructor key', input: { ct: JSON_CT, bytes: '{"constructor":{"prototype":{"x":1}}}' }, want: { kind: 'none' } },
    { name: 'prototype key', input: { ct: JSON_CT, bytes: '[{"prototype":1}]' }, want: { kind: 'none' } },
    { name: 'the word as a value is fine', input: { ct: JSON_CT, bytes: '{"a":"__proto__"}' }, want: { kind: 'json', value: { a: '__proto__' } } },
    { name: 'depth 64', input: { ct: JSON_CT, bytes: '['.repeat(64) + ']'.repeat(64) }, want: { kind: 'json', value: nested(64) } },
    { name: 'depth 65', input: { ct: JSON_CT, bytes: '['.repeat(65) + ']'.repeat(65) }, want: { kind: 'none' } },
    { name: 'brackets inside strings do not count', input: { ct: JSON_CT, bytes: `{"a":"${'['.repeat(100)}\\"{{"}` }, want: { kind: 'json', value: { a: `${'['.repeat(100)}"{{` } } },
    { name: '+json', input: { ct: 'application/ld+json', bytes: '{"@id":"x"}' }, want: { kind: 'json', value: { '@id': 'x' } } },
    // Over 64 `[`/`{` bytes, so the depth scan runs: its string skipping (short strings read,
    // long ones searched, dense escaped quotes read again) must end each string where JSON does.
    { name: 'scan: long string of brackets, then depth 64', input: { ct: JSON_CT, bytes: `["${'{'.repeat(100)}",${'['.repeat(63)}${']'.repeat(63)}]` }, want: { kind: 'json', value: [`${'{'.repeat(100)}`, nested(63)] } },
    { name: 'scan: long string of brackets, then depth 65', input: { ct: JSON_CT, bytes: `["${'{'.repeat(100)}",${'['.repeat(64)}${']'.repeat(64)}]` }, want: { kind: 'none' } },
    { name: 'scan: dense escaped quotes, then depth 65', input: { ct: JSON_CT, bytes: `["${'\\"{'.repeat(50)}",${'['.repeat(64)}${']'.repeat(64)}]` }, want: { kind: 'none' } },
    { name: 'scan: dense escaped quotes, then depth 64', input: { ct: JSON_CT, bytes: `["${'\\"{'.repeat(50)}",${'['.repeat(63)}${']'.repeat(63)}]` }, want: { kind: 'json', value: ['"{'.repeat(50), nested(63)] } },
    { name: 'scan: escaped backslashes before the closing quote', input: { ct: JSON_CT, bytes: `["${'x'.repeat(40)}\\\\",${'['.repeat(64)}${']'.repeat(64)}]` }, want: { kind: 'none' } },
    { name: 'scan: an escaped quote after 40 bytes does not close', input: { ct: JSON_CT, bytes: `["${'x'.repeat(40)}\\"${'['.repeat(70)}"]` }, want: { kind: 'json', value: [`${'x'.repeat(40)}"${'['.repeat(70)}`] } },
    { name: 'scan: BOM, then depth 65', input: { ct: JSON_CT, bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('['.repeat(65) + ']'.repeat(65))]) }, want: { kind: 'none' } },
    { name: 'scan: multi-byte characters in and out of strings', input: { ct: JSON_CT, bytes: `{"é":"${'日['.repeat(40)}","k":${'['.repeat(63)}${']'.repeat(63)}}` }, want: { kind: 'json', value: { é: '日['.repeat(40), k: nested(63) } } },
  ]
  for (const c of cases) t.strictSame(parseBody(c.input.ct, { bytes: Buffer.from(c.input.bytes), complete: c.input.complete ?? true }), c.want, c.name)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
  t.equal(Object.hasOwn(Object.prototype, 'x'), false, 'no x on Object.prototype')
})

function nested (depth: number): unknown {
  let v: unknown[] = []
  for (let i = 1; i < depth; i++) v = [v]
  return v
}

t.test('parseBody: numbers beyond 2^53 parse, imprecisely, and compare as nothing (see match tests)', async (t) => {
  const p = parseBody(JSON_CT, complete('{"id":9007199254740993,"big":1e400,"neg":-0}'))
  t.equal(p.kind, 'json')
  const v = (p as { value: { id: number, big: number } }).value
  t.equal(v.id, 9007199254740992, 'JSON.parse rounds: why such numbers never equal anything')
  t.equal(v.big, Infinity)
})

t.test('parseBody: hostile sizes stay cheap', async (t) => {
  const tenMB = 10 * 1024 * 1024
  const cases: Array<{ name: string, input: Buffer }> = [
    { name: '10 MB of [', input: Buffer.alloc(tenMB, '[') },
    { name: '10 MB of {"a":', input: Buffer.from('{"a":'.repeat(tenMB / 5)) },
    { name: '10 MB nested and closed', input: Buffer.from('['.repeat(tenMB / 2) + ']'.repeat(tenMB / 2)) },
    { name: '10 MB of unterminated string', input: Buffer.from('"' + 'a'.repeat(tenMB)) },
  ]
  for (const c of cases) {
    const started = process.hrtime.bigint()
    t.strictSame(parseBody(JSON_CT, { bytes: c.input, complete: true }), { kind: 'none' }, c.name)
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    t.ok(ms < 2000, `${c.name}: ${ms.toFixed(0)} ms`)
  }
  // A wide (not deep) valid document of 1 MiB parses: width is not refused, only depth.
  const wide = JSON.stringify({ components: Array.from({ length: 10_000 }, (_, i) => ({ calls: [{ method: i === 9_999 ? 'process' : 'render' }] })) })
  const p = parseBody(JSON_CT, complete(wide))
  t.equal(p.kind, 'json', `a ${Math.round(wide.length / 1024)} KiB wide document parses`)
})

t.test('parseBody: form', async (t) => {
  const form = (entries: Array<[string, string[]]>): ParsedBody => ({ kind: 'form', value: new Map(entries) })
  const cases: Array<{ name: string, input: { ct: string, bytes: Buffer | string, complete?: boolean }, want: ParsedBody }> = [
    { name: 'fields', input: { ct: FORM_CT, bytes: 'a=1&b=two' }, want: form([['a', ['1']], ['b', ['two']]]) },
    { name: 'repeated field keeps all values', input: { ct: FORM_CT, bytes: 'a=1&a=2&a=' }, want: form([['a', ['1', '2', '']]]) },
    { name: '+ and percent escapes', input: { ct: FORM_CT, bytes: 'q=a+b%2Bc%20%C3%A9&k%5B0%5D=x' }, want: form([['q', ['a b+c é']], ['k[0]', ['x']]]) },
    { name: 'no = and empty pairs', input: { ct: FORM_CT, bytes: '&flag&&x=1&' }, want: form([['flag', ['']], ['x', ['1']]]) },
    { name: 'value with =', input: { ct: FORM_CT, bytes: 'a=b=c' }, want: form([['a', ['b=c']]]) },
    { name: 'empty body', input: { ct: FORM_CT, bytes: '' }, want: form([]) },
    { name: 'charset utf-8', input: { ct: `${FORM_CT}; charset=utf-8`, bytes: 'a=1' }, want: form([['a', ['1']]]) },
    { name: 'malformed escape', input: { ct: FORM_CT, bytes: 'a=%zz' }, want: { kind: 'none' } },
    { name: 'truncated escape', input: { ct: FORM_CT, bytes: 'a=%4' }, want: { kind: 'none' } },
    { name: 'escape that is not UTF-8', input: { ct: FORM_CT, bytes: 'a=%FF' }, want: { kind: 'none' } },
    { name: 'raw bytes that are not UTF-8', input: { ct: FORM_CT, bytes: Buffer.from([0x61, 0x3d, 0xff]) }, want: { kind: 'none' } },
    { name: '__proto__ field', input: { ct: FORM_CT, bytes: '__proto__=1' }, want: { kind: 'none' } },
    { name: 'encoded constructor field', input: { ct: FORM_CT, bytes: 'c%6Fnstructor=1' }, want: { kind: 'none' } },
    { name: 'incomplete', input: { ct: FORM_CT, bytes: 'a=1', complete: false }, want: { kind: 'none' } },
    { name: 'a form is not JSON', input: { ct: JSON_CT, bytes: 'a=1' }, want: { kind: 'none' } },
    { name: 'BOM is skipped', input: { ct: FORM_CT, bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('a=1')]) }, want: form([['a', ['1']]]) },
    { name: 'only one BOM is skipped', input: { ct: FORM_CT, bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf]), Buffer.from('a=1')]) }, want: form([['\ufeffa', ['1']]]) },
  ]
  for (const c of cases) t.strictSame(parseBody(c.input.ct, { bytes: Buffer.from(c.input.bytes), complete: c.input.complete ?? true }), c.want, c.name)
})
