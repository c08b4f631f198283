// The validator of config/routes.yaml: checks a positioned YAML value against the config's schema
// (its JSON: src/config/schema.ts builds it with TypeBox) and reports every violation with the
// YAML position it came from, in words a user reads.
import type { TSchema } from 'typebox'
import { suggest } from '../suggest.ts'
import { ABSOLUTE_PATH_PATTERN, ConfigFileSchema, ENV_NAME_PATTERN, FLY_APP_PATTERN, POOL_NAME_PATTERN, POOL_REF_PATTERN, RULE_NAME_PATTERN, RULE_PATH_PATTERN, TOKEN_PATTERN, URL_PATTERN } from './schema.ts'
import { DURATION_PATTERN, HOST_PORT_PATTERN, SIZE_PATTERN } from './units.ts'

/** Human wording of each pattern, used in error messages (a regex is no help to a user). */
const PATTERN_NOUNS: Readonly<Record<string, { noun: string, ifNumber?: string }>> = {
  [DURATION_PATTERN]: { noun: 'a duration like "30s" (a number with ms, s, m or h)', ifNumber: 'a bare number has no unit, write e.g. "30s"' },
  [SIZE_PATTERN]: { noun: 'a size like "64KiB" (a number with B, KiB, MiB, GiB, kB, MB or GB)', ifNumber: 'a bare number has no unit, write e.g. "1MiB"' },
  [HOST_PORT_PATTERN]: { noun: 'host:port like "0.0.0.0:8080"', ifNumber: 'write the host too, e.g. "0.0.0.0:8080"' },
  [POOL_NAME_PATTERN]: { noun: 'a pool name: a lower-case letter, then lower-case letters, digits or "-" ("app" is reserved)' },
  [POOL_REF_PATTERN]: { noun: 'a pool name or "app"' },
  [RULE_NAME_PATTERN]: { noun: 'a rule name of letters, digits, ".", "_" and "-" (it is sent in a header)' },
  [ENV_NAME_PATTERN]: { noun: 'an environment variable name (letters, digits and "_", not starting with a digit)' },
  [TOKEN_PATTERN]: { noun: 'an HTTP token (letters, digits and !#$%&\'*+-.^_`|~)' },
  [URL_PATTERN]: { noun: 'an http:// or https:// URL' },
  [FLY_APP_PATTERN]: { noun: 'a Fly app name (lower-case letters, digits and "-")' },
  [ABSOLUTE_PATH_PATTERN]: { noun: 'a path starting with "/"' },
  [RULE_PATH_PATTERN]: { noun: 'a path starting with "/" (a glob) or "~" (a regular expression)' },
}

/** Wording of the named unions. */
const TITLE_NOUNS: Readonly<Record<string, string>> = {
  Scalar: 'a string, number, true/false or null',
  Condition: 'a value, a list of values, or a map with exactly one of equals, in, prefix, matches, exists',
  Methods: 'an HTTP method or a list of methods',
  Metrics: 'false (off), true (defaults) or a map',
}

// ── positioned YAML values and the validator over them ─────────────────────────

/** 1-based line and column in the config file. */
export interface Position { readonly line: number, readonly column: number }
export type PathSegment = string | number

export type YamlNode = YamlMap | YamlSeq | YamlScalar
export interface YamlMap { readonly kind: 'map', readonly pos: Position, readonly entries: readonly YamlEntry[] }
export interface YamlEntry { readonly key: string, readonly keyPos: Position, readonly value: YamlNode }
export interface YamlSeq { readonly kind: 'seq', readonly pos: Position, readonly items: readonly YamlNode[] }
export interface YamlScalar {
  readonly kind: 'scalar'
  readonly pos: Position
  readonly value: string | number | boolean | null
  /** The expanded text, when `${VAR}` expansion of a plain scalar re-read it as a non-string. */
  readonly text?: string
}

export interface SchemaProblem { readonly pos: Position, readonly path: PathSegment[], readonly message: string }

// TypeBox types are plain JSON Schema objects; this is the subset the config schema uses.
export interface JsonSchema {
  type?: string
  anyOf?: JsonSchema[]
  const?: unknown
  enum?: unknown[]
  title?: string
  pattern?: string
  minLength?: number
  minimum?: number
  maximum?: number
  multipleOf?: number
  items?: JsonSchema
  minItems?: number
  properties?: Record<string, JsonSchema>
  required?: string[]
  patternProperties?: Record<string, JsonSchema>
  additionalProperties?: boolean | JsonSchema
}

/**
 * Checks a positioned YAML value against a schema (the whole file by default) and returns every
 * violation, each with the position to blame: the value, or the key for unknown keys, or the
 * parent's key for missing ones.
 */
export function checkNode (node: YamlNode, schema: TSchema = ConfigFileSchema): SchemaProblem[] {
  const out: SchemaProblem[] = []
  walk(node, schema as JsonSchema, [], node.pos, out)
  return out
}

/**
 * Where the schema wants a string, puts back the text of a plain scalar that `${VAR}` expansion
 * re-read as a number, boolean or null: `machine-id: ${FLY_MACHINE_ID}` stays a string even when
 * the id is all digits, while `size: ${N}` is still a number.
 */
export function restoreStrings (node: YamlNode, schema: TSchema = ConfigFileSchema): YamlNode {
  const s = schema as JsonSchema
  if (node.kind === 'scalar') return node.text !== undefined && s.type === 'string' ? { kind: 'scalar', pos: node.pos, value: node.text } : node
  if (node.kind === 'seq') return s.items === undefined ? node : { ...node, items: node.items.map((i) => restoreStrings(i, s.items as TSchema)) }
  const patterns = Object.entries(s.patternProperties ?? {})
  return {
    ...node,
    entries: node.entries.map((e) => {
      const sub = (s.properties !== undefined && Object.hasOwn(s.properties, e.key) ? s.properties[e.key] : undefined) ??
        patterns.find(([p]) => regex(p).test(e.key))?.[1]
      return sub === undefined ? e : { ...e, value: restoreStrings(e.value, sub as TSchema) }
    }),
  }
}

const regexCache = new Map<string, RegExp>()
function regex (pattern: string): RegExp {
  let re = regexCache.get(pattern)
  if (re === undefined) regexCache.set(pattern, re = new RegExp(pattern))
  return re
}

function walk (node: YamlNode, s: JsonSchema, path: PathSegment[], anchor: Position, out: SchemaProblem[]): void {
  const fail = (message: string, pos = node.pos): void => { out.push({ pos, path, message }) }
  if (s.anyOf !== undefined) { walkUnion(node, s, path, anchor, out); return }
  if ('const' in s || s.enum !== undefined) {
    const allowed = s.enum ?? [s.const]
    if (node.kind !== 'scalar' || !allowed.includes(node.value)) fail(`must be ${describe(s)}${got(node)}`)
    return
  }
  if (!fits(node, s)) { fail(`must be ${describe(s)}${got(node)}${wrongTypeHint(node, s)}`); return }
  if (node.kind === 'scalar') {
    const v = node.value
    if (typeof v === 'string') {
      if (s.pattern !== undefined && !regex(s.pattern).test(v)) fail(`must be ${describe(s)}${got(node)}`)
      else if (s.minLength !== undefined && v.length < s.minLength) fail('must not be empty')
    } else if (typeof v === 'number') {
      if (s.minimum !== undefined && v < s.minimum) fail(`must be at least ${s.minimum}${got(node)}`)
      else if (s.maximum !== undefined && v > s.maximum) fail(`must be at most ${s.maximum}${got(node)}`)
      else if (s.multipleOf !== undefined && v % s.multipleOf !== 0) fail(`must be a multiple of ${s.multipleOf}${got(node)}`)
    }
  } else if (node.kind === 'seq') {
    if (s.minItems !== undefined && node.items.length < s.minItems) fail(`must have at least ${s.minItems} item${s.minItems === 1 ? '' : 's'}`)
    if (s.items !== undefined) {
      for (const [i, item] of node.items.entries()) walk(item, s.items, [...path, i], item.pos, out)
    }
  } else {
    walkMap(node, s, path, anchor, out)
  }
}

function walkMap (node: YamlMap, s: JsonSchema, path: PathSegment[], anchor: Position, out: SchemaProblem[]): void {
  const props = s.properties ?? {}
  const patterns = Object.entries(s.patternProperties ?? {})
  for (const [i, entry] of node.entries.entries()) {
    const at = [...path, entry.key]
    const prop = Object.hasOwn(props, entry.key) ? props[entry.key] : undefined
    const pat = prop === undefined ? patterns.find(([p]) => regex(p).test(entry.key)) : undefined
    const sub = prop ?? pat?.[1] ?? (typeof s.additionalProperties === 'object' ? s.additionalProperties : undefined)
    if (sub !== undefined && pat !== undefined && isDedented(entry, sub)) {
      // `size:` under `pools:` rather than under `tasker:`: the key of an entry, dedented.
      // The entry they belong to is the nearest one above that is not itself a dedented key.
      const above = node.entries.slice(0, i).findLast((e) => !isDedented(e, sub))?.key
      const under = above === undefined ? 'the entry it belongs to' : JSON.stringify(above)
      out.push({ pos: entry.keyPos, path: at, message: `must be a map${got(entry.value)}: ${JSON.stringify(entry.key)} is a key inside an entry, not an entry's name; indent it under ${under}` })
    } else if (sub !== undefined && pat !== undefined && entry.value.kind === 'scalar' && entry.value.value === null && node.entries[i + 1] !== undefined && isDedented(node.entries[i + 1] as YamlEntry, sub)) {
      out.push({ pos: entry.value.pos, path: at, message: 'must be a map, got an empty value: the keys below it are not indented under it' })
    } else if (sub !== undefined) {
      walk(entry.value, sub, at, entry.keyPos, out)
    } else if (s.additionalProperties === false) {
      const [pattern] = patterns[0] ?? []
      const message = pattern !== undefined && s.properties === undefined
        ? `${JSON.stringify(entry.key)} is not ${PATTERN_NOUNS[pattern]?.noun ?? `a key matching /${pattern}/`}`
        : `unknown key${suggest(entry.key, Object.keys(props))}`
      out.push({ pos: entry.keyPos, path: at, message })
    }
  }
  for (const key of s.required ?? []) {
    if (!node.entries.some((e) => e.key === key)) out.push({ pos: anchor, path: [...path, key], message: 'is required' })
  }
}

/** A key of the entries' own schema standing where an entry's name belongs. */
function isDedented (entry: YamlEntry, entrySchema: JsonSchema): boolean {
  return entry.value.kind !== 'map' && entrySchema.type === 'object' && entrySchema.properties !== undefined && Object.hasOwn(entrySchema.properties, entry.key)
}

function walkUnion (node: YamlNode, s: JsonSchema, path: PathSegment[], anchor: Position, out: SchemaProblem[]): void {
  const branches = s.anyOf ?? []
  const trials = branches.map((b) => { const o: SchemaProblem[] = []; walk(node, b, path, anchor, o); return o })
  if (trials.some((t) => t.length === 0)) return
  // Blame the one branch the value was evidently meant for; otherwise say what would be accepted.
  let pick = branches.flatMap((b, i) => fits(node, b) ? [i] : [])
  if (pick.length > 1 && node.kind === 'map') {
    pick = pick.filter((i) => branches[i]?.required?.some((k) => node.entries.some((e) => e.key === k)) === true)
  }
  const only = pick.length === 1 ? trials[pick[0] ?? 0] : undefined
  if (only !== undefined) out.push(...only)
  else out.push({ pos: node.pos, path, message: `must be ${describe(s)}${got(node)}` })
}

/** Whether the node is of the JSON type the schema (or any branch of it) asks for. */
function fits (node: YamlNode, s: JsonSchema): boolean {
  if (s.anyOf !== undefined) return s.anyOf.some((b) => fits(node, b))
  if ('const' in s || s.enum !== undefined) {
    return node.kind === 'scalar' && (s.enum ?? [s.const]).some((v) => typeof v === typeof node.value)
  }
  switch (s.type) {
    case 'object': return node.kind === 'map'
    case 'array': return node.kind === 'seq'
    case 'integer': return node.kind === 'scalar' && Number.isInteger(node.value)
    case 'number': return node.kind === 'scalar' && typeof node.value === 'number'
    case 'null': return node.kind === 'scalar' && node.value === null
    case 'string': case 'boolean': return node.kind === 'scalar' && typeof node.value === s.type
    default: return true
  }
}

/** What the schema accepts, in words. */
export function describe (s: TSchema | JsonSchema): string {
  const j = s as JsonSchema
  if (j.title !== undefined && TITLE_NOUNS[j.title] !== undefined) return TITLE_NOUNS[j.title] ?? ''
  if (j.anyOf !== undefined) return j.anyOf.map(describe).join(' or ')
  if ('const' in j) return JSON.stringify(j.const)
  if (j.enum !== undefined) return `one of ${j.enum.map((v) => JSON.stringify(v)).join(', ')}`
  if (j.pattern !== undefined) return PATTERN_NOUNS[j.pattern]?.noun ?? `a string matching /${j.pattern}/`
  switch (j.type) {
    case 'string': return 'a string'
    case 'integer': return j.minimum === undefined ? 'an integer' : `an integer of at least ${j.minimum}`
    case 'number': return 'a number'
    case 'boolean': return 'true or false'
    case 'null': return 'null'
    case 'array': return 'a list'
    case 'object': return 'a map'
    default: return 'a value'
  }
}

function got (node: YamlNode): string {
  if (node.kind === 'map') return ', got a map'
  if (node.kind === 'seq') return ', got a list'
  if (node.value === null) return ', got an empty value'
  if (typeof node.value === 'string') {
    const v = node.value.length > 60 ? node.value.slice(0, 57) + '...' : node.value
    return `, got ${JSON.stringify(v)}`
  }
  return `, got ${String(node.value)}`
}

function wrongTypeHint (node: YamlNode, s: JsonSchema): string {
  if (node.kind !== 'scalar' || s.type !== 'string' || node.value === null) return ''
  if (s.pattern !== undefined) {
    const hint = PATTERN_NOUNS[s.pattern]?.ifNumber
    return hint !== undefined && typeof node.value === 'number' ? `: ${hint}` : ''
  }
  return `: quote it, e.g. "${String(node.value)}"`
}
