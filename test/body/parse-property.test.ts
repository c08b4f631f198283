// parseBody against the implementation it replaced (kept here as the oracle: a fatal TextDecoder
// and a character-by-character depth scan): same result on random bodies built to reach every
// path of the faster one (BOMs, invalid UTF-8, more than 64 brackets, long strings, dense
// escaped quotes, backslash runs, deep nesting, forbidden keys).
import t from 'tap'
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import { parseBody, type ParsedBody } from '../../src/body/parse.ts'
import { parseUrlEncoded } from '../../src/rules/urlencoded.ts'

// Used by the oracle below, which the tests call before the module body would reach it.
const UTF8 = new TextDecoder('utf-8', { fatal: true })
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

const JSON_CT = 'application/json'
const FORM_CT = 'application/x-www-form-urlencoded'

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
    const want = oldParseBody(ct, input)
    if (!isDeepStrictEqual(got, want)) throw new Error(`${bytes.toString('latin1')}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
    if (got.kind === 'json') json++
    if (got.kind === 'json' && bytes.filter((b) => b === 0x5b || b === 0x7b).length > 64) scannedJson++
    if (got.kind === 'none' && ct === JSON_CT && complete && !oldDepthWithin(new TextDecoder().decode(bytes), 64)) deepRefused++
  }), { numRuns: 5000 })
  // Each path must be reached often enough for agreement to mean something.
  t.ok(json > 500, `${json} bodies parsed as JSON`)
  t.ok(scannedJson > 100, `${scannedJson} of them with over 64 brackets, so depth-scanned`)
  t.ok(deepRefused > 100, `${deepRefused} refused as too deep`)
})

// ── the old parseBody, for the content types above ──────────────────────────────────────────

function oldParseBody (ct: string, body: { bytes: Buffer, complete: boolean }): ParsedBody {
  if (!body.complete) return { kind: 'none' }
  let text: string
  try {
    text = UTF8.decode(body.bytes)
  } catch {
    return { kind: 'none' }
  }
  if (ct === FORM_CT) {
    const fields = parseUrlEncoded(text, true)
    if (fields === undefined) return { kind: 'none' }
    for (const name of fields.keys()) if (FORBIDDEN_KEYS.has(name)) return { kind: 'none' }
    return { kind: 'form', value: fields }
  }
  if (!oldDepthWithin(text, 64)) return { kind: 'none' }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { kind: 'none' }
  }
  return hasForbiddenKey(value) ? { kind: 'none' } : { kind: 'json', value }
}

function oldDepthWithin (text: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return false
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return true
}

function hasForbiddenKey (root: unknown): boolean {
  const stack: unknown[] = [root]
  while (stack.length > 0) {
    const v = stack.pop()
    if (typeof v !== 'object' || v === null) continue
    for (const key of Object.keys(v)) {
      if (!Array.isArray(v) && FORBIDDEN_KEYS.has(key)) return true
      stack.push((v as Record<string, unknown>)[key])
    }
  }
  return false
}
