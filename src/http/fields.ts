// The byte classes and the field-line grammar shared by request heads, response heads and chunked
// trailers (RFC 9110 §5, RFC 9112 §5). Tables are built once at start-up so the parsers test a
// byte with one array load instead of a chain of comparisons.

export const CR = 13
export const LF = 10
export const SP = 32
export const HTAB = 9
export const COLON = 58

function table (pred: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256)
  for (let c = 0; c < 256; c++) t[c] = pred(c) ? 1 : 0
  return t
}

const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

/** tchar (RFC 9110 §5.6.2): the bytes of a token such as a method or a field name. */
export const TCHAR = table((c) => isAlpha(c) || isDigit(c) || '!#$%&\'*+-.^_`|~'.includes(String.fromCharCode(c)))

/** field-vchar, SP and HTAB (RFC 9110 §5.5): obs-text is allowed, every other CTL and DEL is not. */
export const FIELD_CHAR = table((c) => c === HTAB || (c >= 0x20 && c !== 0x7f))

/** Hex digit value plus one (0 = not a hex digit). */
export const HEX = (() => {
  const t = new Uint8Array(256)
  for (let c = 0; c < 256; c++) {
    if (isDigit(c)) t[c] = c - 0x30 + 1
    else if (c >= 0x41 && c <= 0x46) t[c] = c - 0x41 + 11
    else if (c >= 0x61 && c <= 0x66) t[c] = c - 0x61 + 11
  }
  return t
})()

/** Where the last successful `scanFieldLine` found the name's end and the OWS-trimmed value. */
export const fieldPos = { nameEnd: 0, valueStart: 0, valueEnd: 0 }

/**
 * Checks one field line `buf[start..end)` (without its CRLF): `token ":" OWS field-value OWS`.
 * Returns the reason it is refused, or undefined (then `fieldPos` holds the positions).
 */
export function scanFieldLine (buf: Buffer, start: number, end: number): string | undefined {
  const first = buf[start] as number
  // RFC 9112 §5.2: obs-fold is refused rather than unfolded; a proxy must not guess.
  if (first === SP || first === HTAB) return 'obsolete line folding'
  let i = start
  while (i < end && TCHAR[buf[i] as number] === 1) i++
  if (i === start) return 'invalid character in field name'
  if (i === end) return 'field line without a colon'
  // RFC 9112 §5.1: no whitespace between the name and the colon (a classic smuggling vector).
  if (buf[i] !== COLON) return buf[i] === SP || buf[i] === HTAB ? 'whitespace before the colon of a field' : 'invalid character in field name'
  fieldPos.nameEnd = i
  i++
  while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++
  const valueStart = i
  let valueEnd = i
  for (; i < end; i++) {
    const c = buf[i] as number
    if (FIELD_CHAR[c] !== 1) return c === CR ? 'bare CR in a field value' : 'invalid character in field value'
    if (c !== SP && c !== HTAB) valueEnd = i + 1
  }
  fieldPos.valueStart = valueStart
  fieldPos.valueEnd = valueEnd
  return undefined
}

/** Whether `buf[start..end)` equals `lower` (lower-case ASCII letters and '-') ignoring case. */
export function equalsLower (buf: Buffer, start: number, end: number, lower: Uint8Array): boolean {
  if (end - start !== lower.length) return false
  for (let k = 0; k < lower.length; k++) {
    // Only letters and '-' occur in `lower`; `| 0x20` folds A-Z and leaves '-' alone, and no
    // other byte that could fold onto them survives the grammar checks before this is called.
    if (((buf[start + k] as number) | 0x20) !== lower[k]) return false
  }
  return true
}

export const bytes = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0))
