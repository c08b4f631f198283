// What the JSON selectors of body rules can reach in a body, read straight from its bytes: the
// same answers as JSON.parse of the whole body (src/body/parse.ts), without building the values
// no selector reaches. A 16 KiB Livewire body is mostly one long string (the snapshot) that no
// rule looks into: it is checked and skipped, never decoded or copied.
import { isUtf8 } from 'node:buffer'
import type { SelectorStep } from '../config/load.ts'
import { MAX_JSON_DEPTH, mediaKind, type ParsedBody } from './parse.ts'
import type { BufferedBody } from './inspect.ts'

/**
 * The union of some selectors, as a trie: which members of a value any of them may step into.
 * Built once per set of rules (compileSelection). Each child already holds what `[*]` reaches
 * there too, so one lookup per member gives everything a selector may test below it.
 */
export interface Selection {
  /** Some selector ends here: the value itself is tested, so a string or number is decoded. */
  readonly terminal: boolean
  /** Members by key, each merged with `any`. */
  readonly keys: ReadonlyMap<string, Selection>
  /** The same keys as UTF-8 bytes, to find a member whose key has no escape without decoding it. */
  readonly keyBytes: readonly KeyBytes[]
  /** Array elements by index, each merged with `any`. */
  readonly indexes: ReadonlyMap<number, Selection>
  /** `[*]`: every element of an array, every member of an object. */
  readonly any: Selection | undefined
}

interface KeyBytes { readonly bytes: Buffer, readonly child: Selection }

interface RawNode {
  terminal: boolean
  keys: Map<string, RawNode>
  indexes: Map<number, RawNode>
  any: RawNode | undefined
}

const rawNode = (): RawNode => ({ terminal: false, keys: new Map(), indexes: new Map(), any: undefined })

/** The trie of `selectors` (each a parsed, non-empty selector). */
export function compileSelection (selectors: readonly (readonly SelectorStep[])[]): Selection {
  const root = rawNode()
  for (const steps of selectors) {
    let n = root
    for (const step of steps) {
      if (step.kind === 'key') n = getOrAdd(n.keys, step.key)
      else if (step.kind === 'index') n = getOrAdd(n.indexes, step.index)
      else n = n.any ??= rawNode()
    }
    n.terminal = true
  }
  return freeze(root)
}

function getOrAdd<K> (m: Map<K, RawNode>, k: K): RawNode {
  let n = m.get(k)
  if (n === undefined) m.set(k, n = rawNode())
  return n
}

/** A fresh node holding what either holds. */
function merge (a: RawNode | undefined, b: RawNode | undefined): RawNode {
  const out = rawNode()
  for (const n of [a, b]) {
    if (n === undefined) continue
    out.terminal ||= n.terminal
    for (const [k, c] of n.keys) out.keys.set(k, merge(out.keys.get(k), c))
    for (const [i, c] of n.indexes) out.indexes.set(i, merge(out.indexes.get(i), c))
    if (n.any !== undefined) out.any = merge(out.any, n.any)
  }
  return out
}

function freeze (n: RawNode): Selection {
  const keys = new Map<string, Selection>()
  for (const [k, c] of n.keys) keys.set(k, freeze(n.any === undefined ? c : merge(c, n.any)))
  const indexes = new Map<number, Selection>()
  for (const [i, c] of n.indexes) indexes.set(i, freeze(n.any === undefined ? c : merge(c, n.any)))
  return Object.freeze({
    terminal: n.terminal,
    keys,
    // A key with a lone surrogate has no UTF-8 bytes (Buffer.from would write U+FFFD): only an
    // escaped key in a body can name it, and escaped keys are decoded.
    keyBytes: Object.freeze([...keys].filter(([k]) => !LONE_SURROGATE_RE.test(k)).map(([k, child]) => Object.freeze({ bytes: Buffer.from(k, 'utf8'), child }))),
    indexes,
    any: n.any === undefined ? undefined : freeze(n.any),
  })
}

// In a `u` RegExp a surrogate pair is one code point: only a lone surrogate is \p{Cs}.
const LONE_SURROGATE_RE = /\p{Cs}/u

const NONE: ParsedBody = Object.freeze({ kind: 'none' })

/**
 * parseBody(contentType, body) as far as `selection` can tell: 'none' exactly when parseBody
 * gives 'none' (incomplete, not JSON by its content type, not UTF-8, invalid JSON, nested deeper
 * than 64, a `__proto__`, `constructor` or `prototype` key in the value JSON.parse would build),
 * else a JSON value in which every selector of `selection` reaches the same values as in the whole
 * document: the same strings, numbers, booleans and nulls, and objects and arrays where it has
 * them (holding only what the selectors step into). Never throws.
 */
export function selectBody (contentType: string | undefined, body: BufferedBody, selection: Selection): ParsedBody {
  if (!body.complete || mediaKind(contentType) !== 'json') return NONE
  return selectJson(body.bytes, selection)
}

/** selectBody for a complete body of a JSON content type. */
export function selectJson (bytes: Buffer, selection: Selection): ParsedBody {
  if (!isUtf8(bytes)) return NONE
  const bom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
  const r = new Reader(bytes, bom ? 3 : 0)
  try {
    r.ws()
    const forbidden = r.value(selection)
    const value = r.got
    r.ws()
    if (r.pos !== bytes.length || forbidden) return NONE
    return { kind: 'json', value }
  } catch (err) {
    if (err === INVALID) return NONE
    throw err
  }
}

/** Thrown through the reader when the text is not JSON that JSON.parse would take (or too deep). */
const INVALID: unique symbol = Symbol('invalid JSON')

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const MINUS = 0x2d

/** Bytes of a string read one at a time before a native search for its end takes over. */
const SHORT_RUN = 32

/** A member an object was read for stands for an object or array nobody looks into. */
const AN_OBJECT: unknown = Object.freeze({})
const AN_ARRAY: unknown = Object.freeze([])

const FORBIDDEN_KEYS: readonly Buffer[] = ['__proto__', 'constructor', 'prototype'].map((k) => Buffer.from(k))

/**
 * A recursive-descent reader of the JSON grammar JSON.parse accepts (RFC 8259: whitespace is
 * space, tab, LF, CR; no raw control characters in strings; the escapes `\" \\ \/ \b \f \n \r \t
 * \uXXXX`), on bytes already known to be UTF-8. Every value reports whether a forbidden key
 * survives in it; a duplicate key replaces the earlier member, and whatever was in it, as
 * JSON.parse does.
 */
class Reader {
  readonly b: Buffer
  pos: number
  /** The value read last, when it was read at a selection node (else undefined). */
  got: unknown = undefined
  private depth = 0
  /** Where the next backslash at or after the current string's start is (b.length: none). */
  private nextBackslash = -1
  /** The body's bytes as 32-bit words from the first aligned byte, for the control-byte check. */
  private words: Int32Array | undefined = undefined
  private wordsFrom = 0
  /** Set by str(): the string just read had an escape. */
  private escaped = false

  constructor (b: Buffer, pos: number) {
    this.b = b
    this.pos = pos
  }

  ws (): void {
    const b = this.b
    let i = this.pos
    for (;;) {
      const c = b[i]
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break
      i++
    }
    this.pos = i
  }

  /**
   * Reads one value at `pos` (whitespace already skipped). `sel` undefined: nobody reaches it,
   * it is only checked. Returns whether a forbidden key survives in it; the value is in `got`.
   */
  value (sel: Selection | undefined): boolean {
    const b = this.b
    const c = b[this.pos]
    if (c === QUOTE) {
      const start = this.pos + 1
      const end = this.str(start)
      this.got = sel?.terminal === true ? this.decode(start, end, this.escaped) : undefined
      return false
    }
    if (c === OPEN_BRACE) return this.object(sel)
    if (c === OPEN_BRACKET) return this.array(sel)
    if (c === 0x74) { this.literal('true'); this.got = true; return false }
    if (c === 0x66) { this.literal('false'); this.got = false; return false }
    if (c === 0x6e) { this.literal('null'); this.got = null; return false }
    if (c === MINUS || (c !== undefined && c >= 0x30 && c <= 0x39)) {
      const start = this.pos
      this.number()
      this.got = sel?.terminal === true ? Number(b.toString('latin1', start, this.pos)) : undefined
      return false
    }
    throw INVALID
  }

  private literal (word: 'true' | 'false' | 'null'): void {
    const b = this.b
    const at = this.pos
    for (let k = 0; k < word.length; k++) if (b[at + k] !== word.charCodeAt(k)) throw INVALID
    this.pos = at + word.length
  }

  /** `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` */
  private number (): void {
    const b = this.b
    let i = this.pos
    if (b[i] === MINUS) i++
    if (b[i] === 0x30) i++
    else if (isDigit(b[i])) { i++; while (isDigit(b[i])) i++ } else throw INVALID
    if (b[i] === 0x2e) {
      i++
      if (!isDigit(b[i])) throw INVALID
      while (isDigit(b[i])) i++
    }
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++
      if (b[i] === 0x2b || b[i] === MINUS) i++
      if (!isDigit(b[i])) throw INVALID
      while (isDigit(b[i])) i++
    }
    this.pos = i
  }

  private enter (): void {
    if (++this.depth > MAX_JSON_DEPTH) throw INVALID
    this.pos++
    this.ws()
  }

  private array (sel: Selection | undefined): boolean {
    this.enter()
    const b = this.b
    // Elements are kept only when a selector may step into them; the others hold their place.
    const keep = sel !== undefined && (sel.any !== undefined || sel.indexes.size > 0)
    const items: unknown[] | undefined = keep ? [] : undefined
    let forbidden = false
    if (b[this.pos] === CLOSE_BRACKET) {
      this.pos++
    } else {
      for (let index = 0; ; index++) {
        const child = keep ? (sel.indexes.get(index) ?? sel.any) : undefined
        if (this.value(child)) forbidden = true
        items?.push(child === undefined ? null : this.got)
        this.ws()
        const c = b[this.pos]
        if (c === COMMA) { this.pos++; this.ws(); continue }
        if (c === CLOSE_BRACKET) { this.pos++; break }
        throw INVALID
      }
    }
    this.depth--
    this.got = items ?? (sel === undefined ? undefined : AN_ARRAY)
    return forbidden
  }

  private object (sel: Selection | undefined): boolean {
    this.enter()
    const b = this.b
    const keep = sel !== undefined && (sel.any !== undefined || sel.keys.size > 0)
    // Null prototype: a member named like an Object.prototype property is an own one, as JSON.parse makes it.
    const members: Record<string, unknown> | undefined = keep ? Object.create(null) as Record<string, unknown> : undefined
    let keyForbidden = false
    /** Keys whose current member holds a surviving forbidden key. */
    let flagged: Set<string> | undefined
    if (b[this.pos] === CLOSE_BRACE) {
      this.pos++
    } else {
      for (;;) {
        if (b[this.pos] !== QUOTE) throw INVALID
        const ks = this.pos + 1
        const ke = this.str(ks)
        const kEscaped = this.escaped
        if (!kEscaped ? isForbiddenKey(b, ks, ke) : FORBIDDEN_NAMES.has(this.decode(ks, ke, true))) keyForbidden = true
        this.ws()
        if (b[this.pos] !== COLON) throw INVALID
        this.pos++
        this.ws()
        let name: string | undefined
        let child: Selection | undefined
        if (keep) {
          if (sel.any !== undefined) {
            name = this.decode(ks, ke, kEscaped)
            child = sel.keys.get(name) ?? sel.any
          } else if (!kEscaped) {
            child = findKey(sel.keyBytes, b, ks, ke)
            if (child !== undefined) name = b.toString('utf8', ks, ke)
          } else {
            name = this.decode(ks, ke, kEscaped)
            child = sel.keys.get(name)
          }
        }
        const f = this.value(child)
        if (child !== undefined && name !== undefined && members !== undefined) members[name] = this.got
        if (f) (flagged ??= new Set()).add(name ?? this.decode(ks, ke, kEscaped))
        else if (flagged !== undefined && flagged.size > 0) flagged.delete(name ?? this.decode(ks, ke, kEscaped))
        this.ws()
        const c = b[this.pos]
        if (c === COMMA) { this.pos++; this.ws(); continue }
        if (c === CLOSE_BRACE) { this.pos++; break }
        throw INVALID
      }
    }
    this.depth--
    this.got = members ?? (sel === undefined ? undefined : AN_OBJECT)
    return keyForbidden || (flagged !== undefined && flagged.size > 0)
  }

  /** The value of the string whose text is [start, end), which str() has checked. */
  private decode (start: number, end: number, escaped: boolean): string {
    if (!escaped) return this.b.toString('utf8', start, end)
    return JSON.parse(this.b.toString('utf8', start - 1, end + 1)) as string
  }

  /**
   * Checks the string whose text starts at `start` and returns where its closing quote is;
   * `pos` moves past it. Short stretches are read a byte at a time; a long one is skipped with
   * native searches for `"` and `\`, its bytes then checked for control characters a word at a
   * time.
   */
  private str (start: number): number {
    const b = this.b
    const len = b.length
    let i = start
    let escaped = false
    for (;;) {
      const near = Math.min(len, i + SHORT_RUN)
      for (; i < near; i++) {
        const c = b[i] as number
        if (c === QUOTE) {
          this.escaped = escaped
          this.pos = i + 1
          return i
        }
        if (c === BACKSLASH) { escaped = true; i = escapeEnd(b, i) - 1 } else if (c < 0x20) throw INVALID
      }
      if (i >= len) throw INVALID
      const q = b.indexOf(QUOTE, i)
      if (q === -1) throw INVALID
      if (this.nextBackslash < i) {
        const s = b.indexOf(BACKSLASH, i)
        this.nextBackslash = s === -1 ? len : s
      }
      const stop = Math.min(q, this.nextBackslash)
      if (this.hasControl(i, stop)) throw INVALID
      i = stop
      if (stop === q) {
        this.escaped = escaped
        this.pos = q + 1
        return q
      }
      escaped = true
      i = escapeEnd(b, i)
    }
  }

  /** Some byte in [from, to) is below 0x20. */
  private hasControl (from: number, to: number): boolean {
    const b = this.b
    let i = from
    const words = this.words ?? this.alignWords()
    const base = this.wordsFrom
    // Leading bytes up to a word boundary, whole words, then the tail.
    for (; i < to && ((i - base) & 3) !== 0; i++) if ((b[i] as number) < 0x20) return true
    let w = (i - base) >> 2
    const wEnd = (to - base) >> 2
    if (i >= base) {
      for (; w + 4 <= wEnd; w += 4) {
        const x0 = words[w] as number
        const x1 = words[w + 1] as number
        const x2 = words[w + 2] as number
        const x3 = words[w + 3] as number
        // Per byte, (x - 0x20) & ~x has its top bit set when the byte is below 0x20 (and only
        // then for some byte of the word: a borrow runs on only from such a byte).
        // `| 0` keeps the subtraction in 32-bit integers (V8 then needs no float for it).
        if (((((x0 - 0x20202020) | 0) & ~x0) | (((x1 - 0x20202020) | 0) & ~x1) | (((x2 - 0x20202020) | 0) & ~x2) | (((x3 - 0x20202020) | 0) & ~x3)) & 0x80808080) return true
      }
      for (; w < wEnd; w++) {
        const x = words[w] as number
        if ((((x - 0x20202020) | 0) & ~x & 0x80808080) !== 0) return true
      }
      i = Math.max(i, base + 4 * w)
    }
    for (; i < to; i++) if ((b[i] as number) < 0x20) return true
    return false
  }

  private alignWords (): Int32Array {
    const b = this.b
    const from = (4 - (b.byteOffset & 3)) & 3
    const count = Math.max(0, (b.length - from) >> 2)
    this.wordsFrom = from
    this.words = new Int32Array(b.buffer, b.byteOffset + from, count)
    return this.words
  }
}

const FORBIDDEN_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

function isDigit (c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39
}

function isHex (c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66))
}

/** Where the escape whose backslash is at `i` ends (the index after it); INVALID if it is not one. */
function escapeEnd (b: Buffer, i: number): number {
  const c = b[i + 1]
  if (c === 0x75) {
    if (!isHex(b[i + 2]) || !isHex(b[i + 3]) || !isHex(b[i + 4]) || !isHex(b[i + 5])) throw INVALID
    return i + 6
  }
  if (c === QUOTE || c === BACKSLASH || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74) return i + 2
  throw INVALID
}

/** The unescaped key at [start, end) is one of FORBIDDEN_KEYS. */
function isForbiddenKey (b: Buffer, start: number, end: number): boolean {
  const n = end - start
  if (n !== 9 && n !== 11) return false
  for (const k of FORBIDDEN_KEYS) if (k.length === n && b.compare(k, 0, n, start, end) === 0) return true
  return false
}

/** The child for the unescaped key at [start, end), if the selection names it. */
function findKey (keys: readonly KeyBytes[], b: Buffer, start: number, end: number): Selection | undefined {
  const n = end - start
  for (const { bytes, child } of keys) if (bytes.length === n && sameBytes(bytes, b, start)) return child
  return undefined
}

function sameBytes (key: Buffer, b: Buffer, start: number): boolean {
  for (let k = 0; k < key.length; k++) if (key[k] !== b[start + k]) return false
  return true
}
