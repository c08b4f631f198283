// Pure matching of compiled rules, first match wins: the request head decides alone, or names
// the candidate rules whose body conditions decide once the body has been read.
import type { IncomingHttpHeaders } from 'node:http'
import type { SelectorStep } from '../config/load.ts'
import type { CompiledRule, CompiledRules, JsonCheck, RequestHead, TextCheck } from './compile.ts'
import type { BufferedBody } from '../body/inspect.ts'
import { mediaKind, parseBody, type ParsedBody } from '../body/parse.ts'
import { mayMatch, newBodyScan, type BodyScan } from './prefilter.ts'
import { selectBody } from '../body/json-select.ts'
import { parseUrlEncoded } from './urlencoded.ts'

export type HeadMatch =
  /** Decided on the head alone: this rule, or no rule (the `app` pool). */
  | { readonly kind: 'done', readonly rule: CompiledRule | undefined }
  /**
   * The head-matching rules, in order, up to and including the first one without body conditions
   * (or all remaining): the body decides among them (matchBody).
   */
  | { readonly kind: 'body', readonly candidates: readonly CompiledRule[] }

type Fields = ReadonlyMap<string, readonly string[]>

const NO_MATCH: HeadMatch = Object.freeze({ kind: 'done', rule: undefined })
const DIGITS_RE = /^[0-9]+$/

/**
 * Matches the request head. A body rule takes part only when the request's content type is the
 * one it needs (and its declared content-length fits the max body compileRules was given): a body
 * of another type could never satisfy it, so such a request is never buffered for it.
 * Allocates nothing for a request decided on the head, except parsing the query once, and only
 * when a rule with query conditions is reached.
 */
export function matchHead (rules: CompiledRules, head: RequestHead): HeadMatch {
  const bodyKind = rules.anyBodyRule ? requestBodyKind(head.headers, rules.maxBodyBytes) : null
  let query: Fields | undefined
  let candidates: CompiledRule[] | undefined
  for (const rule of rules.rules) {
    if (rule.bodyKind !== null && rule.bodyKind !== bodyKind) continue
    if (rule.methods !== undefined && !rule.methods.has(head.method)) continue
    if (rule.path !== undefined && !pathHolds(rule, head.path)) continue
    if (!headersHold(rule.headers, head.headers)) continue
    if (rule.query.length > 0) {
      query ??= parseQuery(head.query)
      if (!fieldsHold(rule.query, query)) continue
    }
    if (rule.bodyKind === null) {
      if (candidates === undefined) return rule.done
      candidates.push(rule)
      return { kind: 'body', candidates }
    }
    (candidates ??= []).push(rule)
  }
  return candidates === undefined ? NO_MATCH : { kind: 'body', candidates }
}

/** The first candidate whose body conditions hold (a rule without body conditions always holds). */
export function matchBody (candidates: readonly CompiledRule[], body: ParsedBody): CompiledRule | undefined {
  for (const rule of candidates) if (bodyHolds(rule, body)) return rule
  return undefined
}

/**
 * matchBody(candidates, parseBody(contentType, body)), the same answer for every input, but a
 * body is read only when a candidate's needles (src/rules/prefilter.ts) say it may match: a
 * body no body rule can match is only searched, never decoded. A rule with json conditions only
 * reads the body through its selection (src/body/json-select.ts), which builds no more of the
 * document than the rules' selectors reach.
 */
export function matchBodyRules (candidates: readonly CompiledRule[], contentType: string | undefined, body: BufferedBody): CompiledRule | undefined {
  let parsed: ParsedBody | undefined
  let selected: ParsedBody | undefined
  let scan: BodyScan | undefined
  for (const rule of candidates) {
    if (rule.bodyKind === null) return rule
    if (rule.needles !== undefined && !mayMatch(rule.needles, body.bytes, scan ??= newBodyScan())) continue
    // Every rule of a set shares one selection, so what was selected for one serves them all.
    const view = rule.selection !== undefined
      ? (selected ??= selectBody(contentType, body, rule.selection))
      : (parsed ??= parseBody(contentType, body))
    if (bodyHolds(rule, view)) return rule
  }
  return undefined
}

/**
 * For the `explain` command: each rule in order, whether it matched and why (the first condition
 * that failed, or every condition that held), stopping after the first match. Evaluates every
 * rule from scratch, without matchHead's shortcuts. `body` undefined: the request has none.
 */
export function explainRules (rules: CompiledRules, head: RequestHead, body: ParsedBody | undefined): { name: string, matched: boolean, reason: string }[] {
  const out: { name: string, matched: boolean, reason: string }[] = []
  const query = parseQuery(head.query)
  for (const rule of rules.rules) {
    const failure = headFailure(rule, head, query) ?? bodyFailure(rule, body)
    if (failure !== undefined) {
      out.push({ name: rule.name, matched: false, reason: failure })
      continue
    }
    out.push({ name: rule.name, matched: true, reason: heldReason(rule) })
    break
  }
  return out
}

function requestBodyKind (headers: IncomingHttpHeaders, maxBodyBytes: number | undefined): 'json' | 'form' | null {
  const kind = mediaKind(headers['content-type'])
  if (kind === null || maxBodyBytes === undefined || headers['transfer-encoding'] !== undefined) return kind
  const length = headers['content-length']
  return length !== undefined && DIGITS_RE.test(length) && Number(length) > maxBodyBytes ? null : kind
}

function parseQuery (raw: string): Fields {
  // Lenient parsing never fails; the fallback only satisfies the type.
  return parseUrlEncoded(raw, false) ?? new Map()
}

function pathHolds (rule: CompiledRule, path: string): boolean {
  const p = rule.path
  if (p === undefined) return true
  return p.exact !== undefined ? p.exact === path : p.re?.test(path) === true
}

function headersHold (checks: readonly TextCheck[], headers: IncomingHttpHeaders): boolean {
  for (const check of checks) if (!headerHolds(check, headers[check.key])) return false
  return true
}

/**
 * A header holds when its value, or any of its values (an array, or the parts of a value Node
 * joined with ", " from repeated header lines), satisfies the condition.
 */
function headerHolds (check: TextCheck, raw: string | string[] | undefined): boolean {
  if (raw === undefined || (Array.isArray(raw) && raw.length === 0)) return check.exists === false
  if (check.exists !== undefined) return check.exists
  if (typeof raw === 'string') return headerValueHolds(check.test, raw)
  for (const v of raw) if (headerValueHolds(check.test, v)) return true
  return false
}

function headerValueHolds (test: (v: string) => boolean, value: string): boolean {
  if (test(value)) return true
  if (!value.includes(',')) return false
  for (const part of value.split(',')) if (test(part.trim())) return true
  return false
}

function fieldsHold (checks: readonly TextCheck[], fields: Fields): boolean {
  for (const check of checks) if (!fieldHolds(check, fields.get(check.key))) return false
  return true
}

/** A query parameter or form field given several times holds when any of its values does. */
function fieldHolds (check: TextCheck, values: readonly string[] | undefined): boolean {
  if (values === undefined) return check.exists === false
  if (check.exists !== undefined) return check.exists
  for (const v of values) if (check.test(v)) return true
  return false
}

const anything = (): boolean => true

function jsonHolds (check: JsonCheck, root: unknown): boolean {
  if (check.exists !== undefined) return reach(root, check.steps, 0, anything) === check.exists
  return reach(root, check.steps, 0, check.test)
}

/**
 * Visits every value the selector reaches from `value`, stopping at the first one `visit` accepts.
 * Only own properties are followed; a key step never reads an array, an index step only arrays;
 * `[*]` reads every element of an array or every own value of an object.
 */
function reach (value: unknown, steps: readonly SelectorStep[], i: number, visit: (v: unknown) => boolean): boolean {
  const step = steps[i]
  if (step === undefined) return visit(value)
  if (typeof value !== 'object' || value === null) return false
  if (step.kind === 'key') {
    if (Array.isArray(value) || !Object.hasOwn(value, step.key)) return false
    return reach((value as Record<string, unknown>)[step.key], steps, i + 1, visit)
  }
  if (step.kind === 'index') {
    return Array.isArray(value) && step.index < value.length && reach(value[step.index], steps, i + 1, visit)
  }
  if (Array.isArray(value)) {
    for (const item of value) if (reach(item, steps, i + 1, visit)) return true
    return false
  }
  for (const key of Object.keys(value)) {
    if (reach((value as Record<string, unknown>)[key], steps, i + 1, visit)) return true
  }
  return false
}

// ── explain: the same tests, with reasons ──────────────────────────────────────────────────

function headFailure (rule: CompiledRule, head: RequestHead, query: Fields): string | undefined {
  if (rule.methods !== undefined && !rule.methods.has(head.method)) {
    return `method ${head.method}, wants ${[...rule.methods].join(' or ')}`
  }
  if (rule.path !== undefined && !pathHolds(rule, head.path)) return `path ${head.path} does not match ${rule.path.text}`
  for (const check of rule.headers) {
    const raw = head.headers[check.key]
    if (!headerHolds(check, raw)) return `header ${check.key} is ${found(raw === undefined ? [] : [raw].flat())}, wants ${check.text}`
  }
  for (const check of rule.query) {
    const values = query.get(check.key)
    if (!fieldHolds(check, values)) return `query ${check.key} is ${found(values ?? [])}, wants ${check.text}`
  }
  return undefined
}

/** bodyFailure(rule, body) === undefined, without building the reason. */
function bodyHolds (rule: CompiledRule, body: ParsedBody): boolean {
  if (rule.json.length > 0) {
    if (body.kind !== 'json') return false
    for (const check of rule.json) if (!jsonHolds(check, body.value)) return false
  }
  if (rule.form.length > 0) {
    if (body.kind !== 'form') return false
    for (const check of rule.form) if (!fieldHolds(check, body.value.get(check.key))) return false
  }
  return true
}

/** Why the body fails the rule's body conditions; undefined when they hold (or it has none). */
function bodyFailure (rule: CompiledRule, body: ParsedBody | undefined): string | undefined {
  if (rule.json.length > 0) {
    if (body?.kind !== 'json') return needsBody('JSON', body)
    for (const check of rule.json) {
      if (!jsonHolds(check, body.value)) return `json ${check.selector} reaches ${found(reached(body.value, check.steps), 'nothing')}, wants ${check.text}`
    }
  }
  if (rule.form.length > 0) {
    if (body?.kind !== 'form') return needsBody('form', body)
    for (const check of rule.form) {
      const values = body.value.get(check.key)
      if (!fieldHolds(check, values)) return `form ${check.key} is ${found(values ?? [])}, wants ${check.text}`
    }
  }
  return undefined
}

function needsBody (kind: string, body: ParsedBody | undefined): string {
  if (body === undefined) return `needs a ${kind} body; the request has none`
  if (body.kind === 'none') return `needs a ${kind} body; this one cannot be inspected (content type, size over inspect.max-body, invalid encoding or syntax, nesting over 64, or a __proto__/constructor/prototype key)`
  return `needs a ${kind} body; this one is ${body.kind === 'json' ? 'JSON' : 'a form'}`
}

function reached (root: unknown, steps: readonly SelectorStep[]): unknown[] {
  const values: unknown[] = []
  reach(root, steps, 0, (v) => { values.push(v); return values.length > 3 })
  return values
}

/** `absent` (or `none`), or up to three values as JSON, shortened. */
function found (values: readonly unknown[], none = 'absent'): string {
  if (values.length === 0) return none
  const shown = values.slice(0, 3).map((v) => {
    const s = JSON.stringify(v) ?? String(v)
    return s.length > 60 ? `${s.slice(0, 57)}...` : s
  })
  return values.length > 3 ? `${shown.join(', ')}, ...` : shown.join(', ')
}

function heldReason (rule: CompiledRule): string {
  const held: string[] = []
  if (rule.methods !== undefined) held.push(`method ${[...rule.methods].join(' or ')}`)
  if (rule.path !== undefined) held.push(`path ${rule.path.text}`)
  for (const c of rule.headers) held.push(`header ${c.key} ${c.text}`)
  for (const c of rule.query) held.push(`query ${c.key} ${c.text}`)
  for (const c of rule.json) held.push(`json ${c.selector} ${c.text}`)
  for (const c of rule.form) held.push(`form ${c.key} ${c.text}`)
  return held.length === 0 ? 'no conditions: matches every request' : `matched: ${held.join('; ')}`
}
