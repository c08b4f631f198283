// Body pre-filter: byte strings, chosen when rules are compiled, of which one must occur in the
// raw body for a body rule to match. A body holding none of them is never decoded or parsed for
// that rule. Sound, not exact: a needle found only means "parse and see"; a needle missing must
// mean the rule cannot match, so a condition yields needles only when holding implies the bytes.
import type { Condition, Scalar } from '../config/types.ts'

/**
 * Every set must have a hit for the rule to possibly match (each set comes from one of its
 * conditions, which all must hold); within a set, any one needle will do.
 */
export interface BodyNeedles {
  /** json: the needles are JSON text; form: `name=value` as sent. */
  readonly kind: 'json' | 'form'
  readonly sets: readonly (readonly Needle[])[]
  /** Some JSON needle contains `/`, which a `\/` escape could also stand for. */
  readonly slash: boolean
}

/**
 * A byte string searched for by its `core` (the value without the quotes or `name=` around it):
 * native search is slow when the first byte of the pattern is frequent, and `"` and field names
 * are; each hit of the core is then checked for the whole needle around it.
 */
export interface Needle {
  readonly full: Buffer
  readonly core: Buffer
  /** Where core starts in full. */
  readonly coreAt: number
}

/**
 * What one request body allows, worked out lazily and at most once per request (several
 * candidate rules share it). undefined: not yet looked at.
 */
export interface BodyScan {
  /** A real `\u` escape: any character of a JSON string may be written other than as needled. */
  uEscape: boolean | undefined
  /** A real `\/` escape. */
  slashEscape: boolean | undefined
  /** A `%` or `+` byte: form names and values may differ from their raw bytes. */
  formEncoded: boolean | undefined
}

export function newBodyScan (): BodyScan {
  return { uEscape: undefined, slashEscape: undefined, formEncoded: undefined }
}

const BACKSLASH_U = Buffer.from('\\u')
const BACKSLASH_SLASH = Buffer.from('\\/')
const PERCENT = 0x25
const PLUS = 0x2b

/**
 * false only when the body cannot satisfy the rule's body conditions, whatever parseBody makes of
 * it: with no real `\u` (nor, for a needle with `/`, `\/`) escape, a JSON string whose value is s
 * is written exactly as JSON.stringify(s) writes it (the only other escapes, `\"` `\\` `\b` `\f`
 * `\n` `\r` `\t`, are the ones it uses too); with no `%` or `+`, form names and values are their
 * raw bytes. A body that is not JSON (or not a form) fails such a rule anyway.
 */
export function mayMatch (needles: BodyNeedles, bytes: Buffer, scan: BodyScan): boolean {
  for (const set of needles.sets) if (!anyIn(bytes, set)) return mayBeSpelledOtherwise(needles, bytes, scan)
  return true
}

/** Checked only once a needle is missing: a body a rule may match needs no such scan. */
function mayBeSpelledOtherwise (needles: BodyNeedles, bytes: Buffer, scan: BodyScan): boolean {
  if (needles.kind === 'form') {
    scan.formEncoded ??= bytes.includes(PERCENT) || bytes.includes(PLUS)
    return scan.formEncoded
  }
  scan.uEscape ??= hasEscape(bytes, BACKSLASH_U)
  if (scan.uEscape || !needles.slash) return scan.uEscape
  scan.slashEscape ??= hasEscape(bytes, BACKSLASH_SLASH)
  return scan.slashEscape
}

function anyIn (bytes: Buffer, set: readonly Needle[]): boolean {
  for (const needle of set) if (holds(bytes, needle)) return true
  return false
}

/** A core found this often without the rest around it is common: search the whole needle. */
const MAX_CORE_MISSES = 8

function holds (bytes: Buffer, { full, core, coreAt }: Needle): boolean {
  let misses = 0
  for (let i = bytes.indexOf(core); i !== -1; i = bytes.indexOf(core, i + 1)) {
    const start = i - coreAt
    const end = start + full.length
    if (start >= 0 && end <= bytes.length && bytes.compare(full, 0, full.length, start, end) === 0) return true
    if (++misses > MAX_CORE_MISSES) return bytes.includes(full, Math.max(0, i + 1 - coreAt))
  }
  return false
}

/**
 * `pair` (a backslash and a letter) occurs as an escape, not as the end of an escaped backslash:
 * inside a JSON string escapes are read left to right from the first backslash of a run, so the
 * letter is escaped when the run before it is odd. (Outside strings a backslash is invalid JSON,
 * which fails every JSON rule anyway.) Each run is counted once: O(length).
 */
function hasEscape (bytes: Buffer, pair: Buffer): boolean {
  for (let i = bytes.indexOf(pair); i !== -1; i = bytes.indexOf(pair, i + 2)) {
    let j = i - 1
    while (j >= 0 && bytes[j] === 0x5c) j--
    if ((i - j) % 2 === 1) return true
  }
  return false
}

/**
 * The needles of a rule, from its json conditions when it has any (a rule with both json and
 * form conditions needs a JSON body), else from its form conditions; undefined when none of its
 * conditions yields needles (the rule is then always parsed for).
 */
export function compileNeedles (json: ReadonlyArray<readonly [string, Condition]>, form: ReadonlyArray<readonly [string, Condition]>): BodyNeedles | undefined {
  const kind = json.length > 0 ? 'json' : 'form'
  const sets: Needle[][] = []
  let slash = false
  for (const [key, c] of kind === 'json' ? json : form) {
    const texts = kind === 'json' ? jsonNeedles(c) : formNeedles(key, c)
    if (texts === undefined) continue
    if (kind === 'json' && texts.some(([, core]) => core.includes('/'))) slash = true
    sets.push(texts.map(([before, core, after]) => needle(before, core, after)))
  }
  if (sets.length === 0) return undefined
  return Object.freeze({ kind, sets: Object.freeze(sets.map((s) => Object.freeze(s))), slash })
}

/** The needle before + core + after, searched by its core unless that is empty. */
function needle (before: string, core: string, after: string): Needle {
  const full = Buffer.from(before + core + after, 'utf8')
  if (core === '') return Object.freeze({ full, core: full, coreAt: 0 })
  return Object.freeze({ full, core: Buffer.from(core, 'utf8'), coreAt: Buffer.byteLength(before, 'utf8') })
}

/** Needles as [before, core, after]. */
type Parts = [string, string, string]

/** A JSON string literal as JSON.stringify writes it, its quotes apart. */
function literal (s: string): Parts {
  return ['"', JSON.stringify(s).slice(1, -1), '"']
}

/**
 * equals/in on strings only (a number has many spellings: 1, 1.0, 1e0; a literal is not worth
 * it), prefix; not exists or matches. A string that is not well-formed UTF-16 yields none (a
 * prefix ending in half a surrogate pair is found in the body only with its other half).
 */
function jsonNeedles (c: Condition): Parts[] | undefined {
  switch (c.kind) {
    case 'equals':
      return typeof c.value === 'string' && wellFormed(c.value) ? [literal(c.value)] : undefined
    case 'in':
      return c.values.length > 0 && allStrings(c.values) ? c.values.map(literal) : undefined
    case 'prefix': {
      // The empty prefix holds for every string: its needle `"` would find nearly every body.
      if (c.value === '' || !wellFormed(c.value)) return undefined
      const [before, core] = literal(c.value)
      return [[before, core, '']]
    }
    case 'matches':
    case 'exists':
      return undefined
  }
}

function allStrings (values: readonly Scalar[]): values is readonly string[] {
  return values.every((v) => typeof v === 'string' && wellFormed(v))
}

// In a `u` RegExp a surrogate pair is one code point: only a lone surrogate is \p{Cs}.
const LONE_SURROGATE_RE = /\p{Cs}/u

function wellFormed (s: string): boolean {
  return !LONE_SURROGATE_RE.test(s)
}

/**
 * A form field `key` whose value is v (v not empty) was sent as `key=v`: its name runs to the
 * first `=`. The empty value needs no `=` (a bare `key`), so it yields no needle; nor does null,
 * which no text equals. Other scalars compare as their text, as compileText does.
 */
function formNeedles (key: string, c: Condition): Parts[] | undefined {
  const field = (value: string): Parts | undefined =>
    value !== '' && wellFormed(key) && wellFormed(value) ? [`${key}=`, value, ''] : undefined
  switch (c.kind) {
    case 'equals': {
      const p = c.value === null ? undefined : field(String(c.value))
      return p === undefined ? undefined : [p]
    }
    case 'in': {
      // null is left out of the set compileText tests: it adds no needle.
      const out: Parts[] = []
      for (const v of c.values) {
        if (v === null) continue
        const p = field(String(v))
        if (p === undefined) return undefined
        out.push(p)
      }
      return out.length === 0 ? undefined : out
    }
    case 'prefix': {
      const p = field(c.value)
      return p === undefined ? undefined : [p]
    }
    case 'matches':
    case 'exists':
      return undefined
  }
}
