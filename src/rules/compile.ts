// Rules → compiled matchers, once at start-up (and on reload): RegExps, Sets, selector steps and
// per-condition tests are built here, so matching a request only compares.
import type { IncomingHttpHeaders } from 'node:http'
import type { Condition, RuleConfig, Scalar } from '../config/types.ts'
import { parseSelector, type SelectorStep } from '../config/load.ts'
import { SidecarError } from '../errors.ts'
import { compileNeedles, type BodyNeedles } from './prefilter.ts'
import { compileSelection, type Selection } from '../body/json-select.ts'

/** What rules see of a request before its body. */
export interface RequestHead {
  readonly method: string
  /** The path as sent, without the query (percent-escapes not decoded). */
  readonly path: string
  /** The raw query, without '?'; '' if none. */
  readonly query: string
  readonly headers: IncomingHttpHeaders
}

/** A compiled condition on a text value: a header, a query parameter or a form field. */
export interface TextCheck {
  /** Lower-case header name, query parameter or form field name. */
  readonly key: string
  /** Set for `exists: true/false` (and header `true`/`false`): presence decides, `test` is unused. */
  readonly exists: boolean | undefined
  readonly test: (value: string) => boolean
  /** The condition as written, for `explain`. */
  readonly text: string
}

/** A compiled condition on the values a JSON selector reaches. */
export interface JsonCheck {
  readonly selector: string
  readonly steps: readonly SelectorStep[]
  readonly exists: boolean | undefined
  readonly test: (value: unknown) => boolean
  readonly text: string
}

/** A compiled `path:`: exact string comparison, or a RegExp (globs and `~regex`). */
export interface PathMatcher {
  readonly text: string
  readonly exact: string | undefined
  readonly re: RegExp | undefined
}

/**
 * One rule, ready to match. The fields after `bodyKind` are the compiled matchers: read by
 * src/rules/match.ts only; other modules use name, to, line and bodyKind.
 */
export interface CompiledRule {
  readonly name: string
  readonly to: string
  readonly line: number
  /** The body this rule needs: 'json' when it has json conditions, 'form' for form, null for none. */
  readonly bodyKind: 'json' | 'form' | null
  readonly methods: ReadonlySet<string> | undefined
  readonly path: PathMatcher | undefined
  readonly headers: readonly TextCheck[]
  readonly query: readonly TextCheck[]
  readonly json: readonly JsonCheck[]
  readonly form: readonly TextCheck[]
  /** Byte strings the raw body must hold for the body conditions to hold; undefined: none known. */
  readonly needles: BodyNeedles | undefined
  /**
   * For a rule with json conditions and no form ones: what the json selectors of every rule of
   * its set reach (one Selection shared by them all, so a body is read once for all of them).
   */
  readonly selection: Selection | undefined
  /** The HeadMatch answering "this rule, decided on the head": built once, returned as is. */
  readonly done: { readonly kind: 'done', readonly rule: CompiledRule }
}

export interface CompiledRules {
  readonly rules: readonly CompiledRule[]
  /** Some rule has json or form conditions: only then can a request need its body read. */
  readonly anyBodyRule: boolean
  /**
   * inspect.max-body when given to compileRules: a request declaring a larger content-length is
   * not offered to body rules (it could not be parsed), so it is never buffered for them.
   */
  readonly maxBodyBytes: number | undefined
}

export interface CompileOptions {
  readonly maxBodyBytes?: number
}

/**
 * Compiles validated rules (src/config/load.ts has checked regexes, selectors and names).
 * Throws SIDECAR_ERR_RULE_COMPILE, naming the rule and its line, if one still cannot be compiled.
 */
export function compileRules (rules: readonly RuleConfig[], options: CompileOptions = {}): CompiledRules {
  const selection = jsonSelection(rules)
  const compiled = rules.map((rule) => compileRule(rule, selection))
  return Object.freeze({
    rules: Object.freeze(compiled),
    anyBodyRule: compiled.some((r) => r.bodyKind !== null),
    maxBodyBytes: options.maxBodyBytes,
  })
}

/** The selectors of every rule with json conditions, as one Selection; undefined when none has them. */
function jsonSelection (rules: readonly RuleConfig[]): Selection | undefined {
  const selectors: SelectorStep[][] = []
  for (const rule of rules) {
    for (const selector of Object.keys(rule.match.json ?? {})) {
      try {
        selectors.push(parseSelector(selector))
      } catch (err) {
        throw new SidecarError('SIDECAR_ERR_RULE_COMPILE', [rule.name, rule.line, (err as Error).message], { cause: err })
      }
    }
  }
  return selectors.length === 0 ? undefined : compileSelection(selectors)
}

function compileRule (rule: RuleConfig, selection: Selection | undefined): CompiledRule {
  try {
    const m = rule.match
    const jsonEntries = entries(m.json)
    const formEntries = entries(m.form)
    const json = jsonEntries.map(([selector, c]) => compileJson(selector, c))
    const form = formEntries.map(([key, c]) => compileText(key, c))
    const compiled: { -readonly [K in keyof CompiledRule]: CompiledRule[K] } = {
      name: rule.name,
      to: rule.to,
      line: rule.line,
      bodyKind: json.length > 0 ? 'json' : form.length > 0 ? 'form' : null,
      methods: m.methods === undefined ? undefined : new Set(m.methods.map((x) => x.toUpperCase())),
      path: m.path === undefined ? undefined : compilePath(m.path),
      headers: entries(m.headers).map(([key, c]) => compileText(key.toLowerCase(), c)),
      query: entries(m.query).map(([key, c]) => compileText(key, c)),
      json,
      form,
      needles: json.length + form.length > 0 ? compileNeedles(jsonEntries, formEntries) : undefined,
      selection: json.length > 0 && form.length === 0 ? selection : undefined,
      done: undefined as never,
    }
    compiled.done = Object.freeze({ kind: 'done', rule: compiled })
    return Object.freeze(compiled)
  } catch (err) {
    throw new SidecarError('SIDECAR_ERR_RULE_COMPILE', [rule.name, rule.line, (err as Error).message], { cause: err })
  }
}

function entries (record: Readonly<Record<string, Condition>> | undefined): Array<[string, Condition]> {
  return record === undefined ? [] : Object.entries(record)
}

const REGEX_SPECIALS_RE = /[.*+?^${}()|[\]\\]/g

/**
 * `~regex` → that RegExp on the whole path as sent. Otherwise a path without `*` is compared
 * exactly; a glob becomes a RegExp: `*` is one or more characters other than `/` (so `/api/*`
 * matches `/api/users` but not `/api/` or `/api/a/b`), and a last segment `**` is any rest,
 * including none (`/api/**` matches `/api`, `/api/` and `/api/a/b`).
 */
export function compilePath (text: string): PathMatcher {
  if (text.startsWith('~')) return { text, exact: undefined, re: new RegExp(text.slice(1)) }
  if (!text.includes('*')) return { text, exact: text, re: undefined }
  const deep = text === '/**' || text.endsWith('/**')
  const fixed = deep ? text.slice(0, -3) : text
  const body = fixed.split('*').map((part) => part.replace(REGEX_SPECIALS_RE, '\\$&')).join('[^/]+')
  return { text, exact: undefined, re: new RegExp(`^${body}${deep ? '(?:/.*)?' : ''}$`, 's') }
}

/** Text sources (headers, query, form) compare as strings; null never equals any text. */
function textOf (value: Scalar): string | undefined {
  return value === null ? undefined : String(value)
}

const never = (): boolean => false

/** A RegExp for `.test()` on many values: without g or y it keeps no lastIndex between calls. */
function testRegExp (pattern: string, flags: string): RegExp {
  return new RegExp(pattern, flags.replace(/[gy]/g, ''))
}

export function compileText (key: string, c: Condition): TextCheck {
  const text = describe(c)
  switch (c.kind) {
    case 'exists':
      return { key, exists: c.value, test: never, text }
    case 'equals': {
      const want = textOf(c.value)
      return { key, exists: undefined, test: want === undefined ? never : (v) => v === want, text }
    }
    case 'in': {
      const set = new Set(c.values.flatMap((v) => textOf(v) ?? []))
      return { key, exists: undefined, test: (v) => set.has(v), text }
    }
    case 'prefix': {
      const prefix = c.value
      return { key, exists: undefined, test: (v) => v.startsWith(prefix), text }
    }
    case 'matches': {
      const re = testRegExp(c.pattern, c.flags)
      return { key, exists: undefined, test: (v) => re.test(v), text }
    }
  }
}

/**
 * Integers beyond ±2^53 lose precision in JSON.parse (9007199254740993 reads as ...992), so
 * comparing them could match a different number: such a number equals nothing.
 */
function isExactNumber (n: number): boolean {
  return Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n))
}

/**
 * Type-aware JSON equality with a YAML scalar: a string equals the same string, a number the
 * same number (1 and 1.0 alike), a boolean the same boolean, null null. "1" never equals 1.
 */
function jsonEquals (want: Scalar): (v: unknown) => boolean {
  if (typeof want === 'number') return isExactNumber(want) ? (v) => v === want : never
  return (v) => v === want
}

/**
 * A JSON condition: equals/in compare with the JSON type (jsonEquals); prefix and matches hold
 * only for strings (a number is not its text: `matches: "^4"` never matches 42).
 */
export function compileJson (selector: string, c: Condition): JsonCheck {
  const steps = Object.freeze(parseSelector(selector))
  const text = describe(c)
  const base = { selector, steps, text }
  switch (c.kind) {
    case 'exists':
      return { ...base, exists: c.value, test: never }
    case 'equals':
      return { ...base, exists: undefined, test: jsonEquals(c.value) }
    case 'in': {
      const tests = c.values.map(jsonEquals)
      return { ...base, exists: undefined, test: (v) => tests.some((t) => t(v)) }
    }
    case 'prefix': {
      const prefix = c.value
      return { ...base, exists: undefined, test: (v) => typeof v === 'string' && v.startsWith(prefix) }
    }
    case 'matches': {
      const re = testRegExp(c.pattern, c.flags)
      return { ...base, exists: undefined, test: (v) => typeof v === 'string' && re.test(v) }
    }
  }
}

/** The condition as a user would read it in `explain`. */
function describe (c: Condition): string {
  switch (c.kind) {
    case 'exists': return c.value ? 'present' : 'absent'
    case 'equals': return `equals ${JSON.stringify(c.value)}`
    case 'in': return `in ${JSON.stringify(c.values)}`
    case 'prefix': return `prefix ${JSON.stringify(c.value)}`
    case 'matches': return `matches /${c.pattern}/${c.flags}`
  }
}
