// parseBody as it was before the fast path (a fatal TextDecoder, a character-by-character depth
// scan before JSON.parse, a walk for forbidden keys), for application/json and
// application/x-www-form-urlencoded bodies only. Kept as the oracle the new parseBody is checked
// against (test/body/parse-property.test.ts) and as the "before" of bench/micro-body.ts.
import type { ParsedBody } from '../../src/body/parse.ts'
import { parseUrlEncoded } from '../../src/rules/urlencoded.ts'

export const JSON_CT = 'application/json'
export const FORM_CT = 'application/x-www-form-urlencoded'

const UTF8 = new TextDecoder('utf-8', { fatal: true })
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])
const NONE: ParsedBody = { kind: 'none' }

export function legacyParseBody (contentType: string, body: { bytes: Buffer, complete: boolean }): ParsedBody {
  if (!body.complete) return NONE
  const kind = contentType === JSON_CT ? 'json' : contentType === FORM_CT ? 'form' : null
  if (kind === null) return NONE
  let text: string
  try {
    text = UTF8.decode(body.bytes)
  } catch {
    return NONE
  }
  if (kind === 'form') {
    const fields = parseUrlEncoded(text, true)
    if (fields === undefined) return NONE
    for (const name of fields.keys()) if (FORBIDDEN_KEYS.has(name)) return NONE
    return { kind: 'form', value: fields }
  }
  if (!legacyDepthWithin(text, 64)) return NONE
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return NONE
  }
  return hasForbiddenKey(value) ? NONE : { kind: 'json', value }
}

/** Nesting of `[`/`{` outside strings never exceeds `max`. */
export function legacyDepthWithin (text: string, max: number): boolean {
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
