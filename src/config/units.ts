// The small value syntaxes of config/routes.yaml: durations, sizes, host:port and JSON selectors.
// Each is a pattern (published in the JSON Schema) plus a parser shared by the loader and the rules.
import { SidecarError } from '../errors.ts'
import type { HostPort } from './types.ts'

/** `500ms`, `30s`, `1.5m`, `1h`: a number and one unit. */
export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$'
/** `512B`, `64KiB`, `1MiB`, `1MB` (IEC binary and SI decimal units). */
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?(B|kB|KB|MB|GB|KiB|MiB|GiB)$'
/** `host:port`, `[::1]:port` or `:port` (all interfaces). */
export const HOST_PORT_PATTERN = '^(\\[[0-9A-Fa-f:.]+\\]|[^\\s:\\[\\]/]*):[0-9]{1,5}$'

/** Node timers cannot wait longer than 2^31-1 ms; a longer duration would fire at once. */
export const MAX_DURATION_MS = 2 ** 31 - 1

const DURATION_RE = new RegExp(DURATION_PATTERN)
const SIZE_RE = new RegExp(SIZE_PATTERN)
const HOST_PORT_RE = new RegExp(HOST_PORT_PATTERN)

const MS_PER_UNIT: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const BYTES_PER_UNIT: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
}

/** `30s` → 30000 (milliseconds, rounded); undefined when `text` is not a duration. */
export function parseDuration (text: string): number | undefined {
  const m = DURATION_RE.exec(text)
  if (m === null) return undefined
  const unit = MS_PER_UNIT[m[2] ?? ''] ?? 1
  return Math.round(Number.parseFloat(text) * unit)
}

/** `1MiB` → 1048576 (bytes, rounded); undefined when `text` is not a size. */
export function parseSize (text: string): number | undefined {
  const m = SIZE_RE.exec(text)
  if (m === null) return undefined
  const unit = BYTES_PER_UNIT[m[2] ?? ''] ?? 1
  return Math.round(Number.parseFloat(text) * unit)
}

/** 30000 → `30s`, 1500 → `1500ms`: the shortest exact spelling, for defaults in docs and schema. */
export function formatDuration (ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

/** 1048576 → `1MiB`, 1000 → `1000B`: the shortest exact binary spelling. */
export function formatSize (bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes !== 0 && bytes % size === 0) return `${bytes / size}${unit}`
  }
  return `${bytes}B`
}

/**
 * `0.0.0.0:8080` → { host: '0.0.0.0', port: 8080 }; `[::]:80` → { host: '::', port: 80 };
 * `:8080` → all IPv4 interfaces. undefined when not host:port or the port is over 65535.
 */
export function parseHostPort (text: string, defaultHost = '0.0.0.0'): HostPort | undefined {
  if (!HOST_PORT_RE.test(text)) return undefined
  const colon = text.lastIndexOf(':')
  let host = text.slice(0, colon)
  const port = Number(text.slice(colon + 1))
  if (port > 65_535) return undefined
  if (host.startsWith('[')) host = host.slice(1, -1)
  return { host: host === '' ? defaultHost : host, port }
}

/** One step of a selector: an object key, an array index, or any element / any value. */
export type SelectorStep =
  | { readonly kind: 'key', readonly key: string }
  | { readonly kind: 'index', readonly index: number }
  | { readonly kind: 'any' }

// A bare key runs up to the next `.` or `[`; quotes, `]` and whitespace need the ["..."] form.
const BARE_KEY_RE = /[^.[\]"'\s]+/y
const INDEX_RE = /\[(0|[1-9][0-9]*)\]/y

/**
 * Parses a JSON selector: dot-separated keys, `[n]` index, `[*]` any element, `["odd key"]`
 * (a JSON string). `components[*].calls[*].method` → key, any, key, any, key.
 * Throws SidecarError SIDECAR_ERR_CONFIG_SELECTOR; details: { selector, offset, reason }.
 */
export function parseSelector (selector: string): SelectorStep[] {
  const steps: SelectorStep[] = []
  const fail = (offset: number, why: string): never => {
    throw new SidecarError('SIDECAR_ERR_CONFIG_SELECTOR', [JSON.stringify(selector), `${why} at offset ${offset}`], {
      details: { selector, offset, reason: why },
    })
  }
  if (selector === '') fail(0, 'empty selector')
  let i = 0
  let needKey = true // at the start or after a `.`: a key (or a bracket at the start) must follow
  while (i < selector.length) {
    const c = selector[i]
    if (c === '[') {
      if (needKey && i > 0) fail(i, 'expected a key after "."')
      if (selector.startsWith('[*]', i)) {
        steps.push({ kind: 'any' })
        i += 3
      } else if (selector[i + 1] === '"') {
        const end = closingQuote(selector, i + 2)
        if (end === -1 || selector[end + 1] !== ']') fail(i, 'unterminated ["..."]')
        let key: unknown
        try {
          key = JSON.parse(selector.slice(i + 1, end + 1))
        } catch {
          fail(i + 1, 'invalid JSON string')
        }
        steps.push({ kind: 'key', key: key as string })
        i = end + 2
      } else {
        INDEX_RE.lastIndex = i
        const m = INDEX_RE.exec(selector)
        if (m === null) fail(i, 'expected [n], [*] or ["key"]')
        steps.push({ kind: 'index', index: Number(m?.[1]) })
        i = INDEX_RE.lastIndex
      }
      needKey = false
    } else if (c === '.') {
      if (needKey) fail(i, 'empty key')
      needKey = true
      i++
    } else {
      BARE_KEY_RE.lastIndex = i
      const m = BARE_KEY_RE.exec(selector)
      if (m === null) fail(i, `unexpected ${JSON.stringify(c)}: quote such keys as ["..."]`)
      if (!needKey) fail(i, 'expected "." or "[" before a key')
      steps.push({ kind: 'key', key: m?.[0] ?? '' })
      i = BARE_KEY_RE.lastIndex
      needKey = false
    }
  }
  if (needKey) fail(i, 'selector ends with "."')
  return steps
}

/** Index of the `"` closing a JSON string whose body starts at `from`, or -1. */
function closingQuote (s: string, from: number): number {
  for (let i = from; i < s.length; i++) {
    if (s[i] === '\\') i++
    else if (s[i] === '"') return i
  }
  return -1
}
