// Safe JSON / form parsing of the buffered copy of a request body, for body rules. Anything
// doubtful is 'none' (the rule does not match, the request goes on untouched), never an error.
import type { BufferedBody } from './inspect.ts'
import { parseUrlEncoded } from '../rules/urlencoded.ts'

/** A body as body rules see it. Form fields keep every value of a repeated name. */
export type ParsedBody =
  | { readonly kind: 'json', readonly value: unknown }
  | { readonly kind: 'form', readonly value: ReadonlyMap<string, readonly string[]> }
  | { readonly kind: 'none' }

/** Deeper JSON is not inspected: no real request needs it, and walking it costs. */
export const MAX_JSON_DEPTH = 64

/** Keys that mean an attempt at prototype pollution (of the app, if not of us): never inspected. */
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

// Fatal: invalid UTF-8 throws instead of becoming U+FFFD. Each decode() call without
// { stream: true } starts from a fresh state, so one decoder serves every request.
const UTF8 = new TextDecoder('utf-8', { fatal: true })

const NONE: ParsedBody = Object.freeze({ kind: 'none' })

// `type/subtype` then parameters; RFC 9110 §8.3.1 (case-insensitive type and parameter names).
const MEDIA_TYPE_RE = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\/([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:;(.*))?$/s
const CHARSET_RE = /(?:^|;)\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i

/**
 * Which body rules a request's content type can feed: 'json' for application/json and any
 * `…/…+json`, 'form' for application/x-www-form-urlencoded, with no charset or charset utf-8;
 * null otherwise. Shared by parseBody and the rule matcher, so a request whose body could not be
 * parsed for a rule is not even buffered for it.
 */
export function mediaKind (contentType: string | undefined): 'json' | 'form' | null {
  if (contentType === undefined) return null
  const m = MEDIA_TYPE_RE.exec(contentType)
  if (m === null) return null
  const type = (m[1] ?? '').toLowerCase()
  const subtype = (m[2] ?? '').toLowerCase()
  let kind: 'json' | 'form' | null = null
  if (type === 'application' && subtype === 'x-www-form-urlencoded') kind = 'form'
  else if ((type === 'application' && subtype === 'json') || subtype.endsWith('+json')) kind = 'json'
  if (kind === null || m[3] === undefined) return kind
  const charset = CHARSET_RE.exec(m[3])
  if (charset === null) return kind
  const name = (charset[1] ?? charset[2] ?? '').toLowerCase()
  return name === 'utf-8' || name === 'utf8' ? kind : null
}

/**
 * Parses the buffered copy of a body for body rules. 'none' when the body is incomplete (larger
 * than inspect.max-body), of another or no content type, not valid UTF-8, not valid JSON or form
 * encoding (a malformed `%` escape), nested deeper than 64, or has a `__proto__`, `constructor`
 * or `prototype` key anywhere. A UTF-8 byte order mark is skipped. Never throws.
 */
export function parseBody (contentType: string | undefined, body: BufferedBody): ParsedBody {
  if (!body.complete) return NONE
  const kind = mediaKind(contentType)
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
  // Checked before JSON.parse so a hostile `[[[[…` never becomes a million nested arrays.
  if (!depthWithin(text, MAX_JSON_DEPTH)) return NONE
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return NONE
  }
  return hasForbiddenKey(value) ? NONE : { kind: 'json', value }
}

/** Nesting of `[`/`{` outside strings never exceeds `max` (the JSON itself may still be invalid). */
function depthWithin (text: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
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

/** Walks the parsed value without recursion (its depth is already bounded). */
function hasForbiddenKey (root: unknown): boolean {
  const stack: unknown[] = [root]
  while (stack.length > 0) {
    const v = stack.pop()
    if (typeof v !== 'object' || v === null) continue
    if (Array.isArray(v)) {
      for (const item of v) if (typeof item === 'object' && item !== null) stack.push(item)
      continue
    }
    // JSON.parse defines `__proto__` as an own data property, so Object.keys sees it.
    for (const key of Object.keys(v)) {
      if (FORBIDDEN_KEYS.has(key)) return true
      const child = (v as Record<string, unknown>)[key]
      if (typeof child === 'object' && child !== null) stack.push(child)
    }
  }
  return false
}
