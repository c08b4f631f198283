// Safe JSON / form parsing of the buffered copy of a request body, for body rules. Anything
// doubtful is 'none' (the rule does not match, the request goes on untouched), never an error.
import { isUtf8 } from 'node:buffer'
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
  // A request's type is asked twice (the head's rules, then the body's), and an app's requests
  // mostly carry one or two types: the last answer is kept (the function is pure).
  if (contentType === lastType) return lastKind
  const kind = mediaKindOf(contentType)
  lastType = contentType
  lastKind = kind
  return kind
}

let lastType: string | undefined
let lastKind: 'json' | 'form' | null = null

function mediaKindOf (contentType: string): 'json' | 'form' | null {
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
  const text = utf8Text(body.bytes)
  if (text === undefined) return NONE
  if (kind === 'form') {
    const fields = parseUrlEncoded(text, true)
    if (fields === undefined) return NONE
    for (const name of fields.keys()) if (FORBIDDEN_KEYS.has(name)) return NONE
    return { kind: 'form', value: fields }
  }
  // Checked before JSON.parse so a hostile `[[[[…` never becomes a million nested arrays.
  if (countOpeners(body.bytes, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH && !depthWithin(body.bytes, MAX_JSON_DEPTH)) return NONE
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return NONE
  }
  return hasForbiddenKey(value) ? NONE : { kind: 'json', value }
}

/**
 * The text of strict UTF-8 bytes (what a fatal TextDecoder gives: a leading byte order mark
 * dropped), or undefined when they are not UTF-8. isUtf8 and toString are native and, together,
 * no slower than the decoder, which also costs an exception on invalid input.
 */
function utf8Text (bytes: Buffer): string | undefined {
  if (!isUtf8(bytes)) return undefined
  const bom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
  return bytes.toString('utf8', bom ? 3 : 0)
}

const OPEN_BRACKET = 0x5b
const OPEN_BRACE = 0x7b

/**
 * `[` and `{` bytes anywhere (in strings too), counting stops at `stop`. Nesting never exceeds
 * it, so a body with at most MAX_JSON_DEPTH of them needs no depth scan; native searches make
 * this far cheaper than the scan for the usual body, whose few brackets sit among long strings.
 */
function countOpeners (bytes: Buffer, stop: number): number {
  let n = 0
  for (let i = bytes.indexOf(OPEN_BRACKET); i !== -1 && n < stop; i = bytes.indexOf(OPEN_BRACKET, i + 1)) n++
  for (let i = bytes.indexOf(OPEN_BRACE); i !== -1 && n < stop; i = bytes.indexOf(OPEN_BRACE, i + 1)) n++
  return n
}

const QUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * Nesting of `[`/`{` outside strings never exceeds `max` (the JSON itself may still be invalid).
 * Reads the UTF-8 bytes: every byte of a multi-byte character is >= 0x80, never one of `"\\[]{}`,
 * so the bytes give the answer the characters would (a BOM is three such bytes). Strings are
 * skipped by stringEnd; the rest, punctuation, numbers and literals, is read a byte at a time.
 */
function depthWithin (bytes: Buffer, max: number): boolean {
  let depth = 0
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]
    if (c === QUOTE) {
      i = stringEnd(bytes, i + 1)
      if (i === -1) return true // unterminated: invalid JSON, JSON.parse says so
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > max) return false
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return true
}

/** Bytes of a string read one at a time before a native search takes over (keys are short). */
const SHORT_STRING = 32
/** Escaped quotes the native search may stop at before the string is read a byte at a time. */
const MAX_ESCAPED_QUOTES = 8

/**
 * Where the string whose text starts at `from` ends (its closing quote), or -1. A long string is
 * skipped with a native search for `"`: the quote found closes it unless an odd run of
 * backslashes precedes it (escapes are read from the first backslash of a run). A string dense
 * with `\"` (JSON inside JSON) would stop that search at every one: after a few, the rest is read
 * a byte at a time again. Every switch happens at an escape boundary.
 */
function stringEnd (bytes: Buffer, from: number): number {
  let i = from
  for (const near = Math.min(bytes.length, from + SHORT_STRING); i < near; i++) {
    const c = bytes[i]
    if (c === BACKSLASH) i++
    else if (c === QUOTE) return i
  }
  let misses = 0
  for (let q = bytes.indexOf(QUOTE, i); q !== -1; q = bytes.indexOf(QUOTE, q + 1)) {
    let b = q - 1
    while (b >= i && bytes[b] === BACKSLASH) b--
    if ((q - 1 - b) % 2 === 0) return q
    i = q + 1
    if (++misses > MAX_ESCAPED_QUOTES) break
  }
  if (misses <= MAX_ESCAPED_QUOTES) return -1
  for (; i < bytes.length; i++) {
    const c = bytes[i]
    if (c === BACKSLASH) i++
    else if (c === QUOTE) return i
  }
  return -1
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
