// parseBody against the implementation it replaced (test/helpers/legacy-parse-body.ts, the oracle: a fatal TextDecoder
// and a character-by-character depth scan): same result on random bodies built to reach every
// path of the faster one (BOMs, invalid UTF-8, more than 64 brackets, long strings, dense
// escaped quotes, backslash runs, deep nesting, forbidden keys).
import t from 'tap'
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import { parseBody } from '../../src/body/parse.ts'
import { FORM_CT, JSON_CT, legacyDepthWithin, legacyParseBody } from '../helpers/legacy-parse-body.ts'

// Pieces of JSON-like text; random sequences of them are mostly invalid JSON, which must end as
// 'none' both ways, and sometimes valid and deep.
const piece = fc.oneof(
  fc.constantFrom('[', ']', '{', '}', '"', '\\', '\\"', '\\\\', ',', ':', '1', 'null', '"a"', '"__proto__"', '"constructor"', ' ', 'é', '\\u0061'),
  fc.constantFrom('['.repeat(30), ']'.repeat(30), '{"a":'.repeat(20), '}'.repeat(20), `"${'x'.repeat(40)}"`, `"${'\\"{'.repeat(12)}"`, `"${'['.repeat(70)}"`, `"${'x'.repeat(35)}\\\\"`)
)
const jsonish = fc.array(piece, { maxLength: 40 }).map((ps) => Buffer.from(ps.join('')))

// Valid JSON, sometimes deeper than 64, sometimes with a string full of brackets or escapes.
const deepJson = fc.tuple(fc.integer({ min: 0, max: 80 }), fc.constantFrom('x', '['.repeat(70), '\\"{'.repeat(30), 'é'.repeat(20)), fc.boolean())
  .map(([depth, inner, obj]) => {
    const open = obj ? '{"k":'.repeat(depth) : '['.repeat(depth)
    const close = obj ? '}'.repeat(depth) : ']'.repeat(depth)
    return Buffer.from(`${open}"${inner}"${close}`)
  })

const BOM = Buffer.from([0xef, 0xbb, 0xbf])
const body = fc.tuple(
  fc.oneof(jsonish, { weight: 2, arbitrary: deepJson }, fc.json().map((s) => Buffer.from(s)), fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a))),
  fc.constantFrom('none', 'bom', 'bom2', 'invalid')
).map(([bytes, extra]) => {
  if (extra === 'bom') return Buffer.concat([BOM, bytes])
  if (extra === 'bom2') return Buffer.concat([BOM, BOM, bytes])
  if (extra === 'invalid') return Buffer.concat([bytes, Buffer.from([0xc0, 0xaf])])
  return bytes
})

t.test('parseBody gives what the old parseBody gave', async (t) => {
  let json = 0
  let scannedJson = 0
  let deepRefused = 0
  fc.assert(fc.property(body, fc.constantFrom(JSON_CT, JSON_CT, FORM_CT), fc.constantFrom(true, true, true, false), (bytes, ct, complete) => {
    const input = { bytes, complete }
    const got = parseBody(ct, input)
    const want = legacyParseBody(ct, input)
    if (!isDeepStrictEqual(got, want)) throw new Error(`${bytes.toString('latin1')}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
    if (got.kind === 'json') json++
    if (got.kind === 'json' && bytes.filter((b) => b === 0x5b || b === 0x7b).length > 64) scannedJson++
    if (got.kind === 'none' && ct === JSON_CT && complete && !legacyDepthWithin(new TextDecoder().decode(bytes), 64)) deepRefused++
  }), { numRuns: 5000 })
  // Each path must be reached often enough for agreement to mean something.
  t.ok(json > 500, `${json} bodies parsed as JSON`)
  t.ok(scannedJson > 100, `${scannedJson} of them with over 64 brackets, so depth-scanned`)
  t.ok(deepRefused > 100, `${deepRefused} refused as too deep`)
})
