// The field section of a request or response head: every field line up to the empty line, checked
// by the shared grammar, with the few fields that decide framing and connection handling read on
// the way (Content-Length, Transfer-Encoding, Host, Connection, Upgrade, Expect). One pass over the
// bytes, then one latin1 decode of the whole head: names and values are slices of that string.
import { COLON, CR, FIELD_CHAR, HTAB, LF, SP, TCHAR, bytes, equalsLower } from './fields.ts'

const CONTENT_LENGTH = bytes('content-length')
const TRANSFER_ENCODING = bytes('transfer-encoding')
const HOST = bytes('host')
const CONNECTION = bytes('connection')
const UPGRADE = bytes('upgrade')
const EXPECT = bytes('expect')
const CHUNKED = bytes('chunked')
const CLOSE = bytes('close')
const KEEP_ALIVE = bytes('keep-alive')
const CONTINUE = bytes('100-continue')

/** Bytes allowed in a Host value: uri-host [ ":" port ] (RFC 3986 reg-name, IP-literal, IPv4). */
const HOST_CHAR = (() => {
  const t = new Uint8Array(256)
  for (const ch of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&\'()*+,;=:[]%') t[ch.charCodeAt(0)] = 1
  return t
})()

export const INCOMPLETE = -1
export const TOO_LARGE = -2

/** What one pass over a field section found; a fresh instance per head. */
export class FieldSection {
  rawHeaders: string[] = []
  /** [nameStart, nameEnd, valueStart, valueEnd] per field line, while scanning. */
  spans: number[] = []
  /** The head decoded as latin1 from the caller's `textStart` to `end`. */
  text = ''
  /** Index just past the CRLF of the empty line that ends the section. */
  end = 0
  contentLengthCount = 0
  contentLength = 0
  /** Reason the Content-Length is refused, if it is. */
  contentLengthError: string | undefined = undefined
  transferEncodingCount = 0
  /** The last transfer coding is chunked. */
  chunkedLast = false
  /** Reason the Transfer-Encoding is refused (chunked twice or not last, empty element). */
  transferEncodingError: string | undefined = undefined
  /** A coding other than chunked appears. */
  otherCoding = false
  hostCount = 0
  hostEmpty = false
  hostInvalid = false
  connectionClose = false
  connectionKeepAlive = false
  connectionUpgrade = false
  upgradePresent = false
  expectContinue = false
}

function readContentLength (buf: Buffer, start: number, end: number, s: FieldSection): void {
  s.contentLengthCount++
  // RFC 9112 §6.3: several Content-Length lines (even equal ones, as llhttp also refuses) or a
  // list are refused: a proxy must not pick one.
  if (s.contentLengthCount > 1) { s.contentLengthError = 'several Content-Length fields'; return }
  if (start === end) { s.contentLengthError = 'empty Content-Length'; return }
  let n = 0
  for (let i = start; i < end; i++) {
    const d = (buf[i] as number) - 0x30
    if (d < 0 || d > 9) { s.contentLengthError = 'invalid Content-Length'; return }
    n = n * 10 + d
    if (n > Number.MAX_SAFE_INTEGER) { s.contentLengthError = 'Content-Length too large'; return }
  }
  s.contentLength = n
}

/** Calls `each(a, b)` for every OWS-trimmed element of the comma-separated list in buf[start..end). */
function forEachElement (buf: Buffer, start: number, end: number, s: FieldSection, each: (buf: Buffer, a: number, b: number, s: FieldSection) => void): void {
  let a = start
  for (let i = start; i <= end; i++) {
    if (i === end || buf[i] === 0x2c) {
      let x = a
      let y = i
      while (x < y && (buf[x] === SP || buf[x] === HTAB)) x++
      while (y > x && (buf[y - 1] === SP || buf[y - 1] === HTAB)) y--
      each(buf, x, y, s)
      a = i + 1
    }
  }
}

function transferCoding (buf: Buffer, a: number, b: number, s: FieldSection): void {
  if (a === b) { s.transferEncodingError ??= 'empty Transfer-Encoding element'; return }
  // RFC 9112 §6.1: chunked must be applied once, and last; a coding after it is refused.
  if (s.chunkedLast) s.transferEncodingError ??= 'chunked is not the last transfer coding'
  if (equalsLower(buf, a, b, CHUNKED)) s.chunkedLast = true
  else { s.chunkedLast = false; s.otherCoding = true }
}

function readTransferEncoding (buf: Buffer, start: number, end: number, lineEnd: number, s: FieldSection): void {
  s.transferEncodingCount++
  // llhttp reads `chunked<HTAB>` as some other coding while OWS rules make it chunked: a tab
  // after the first coding gets one reading here, a refusal.
  for (let i = start; i < lineEnd; i++) if (buf[i] === HTAB) { s.transferEncodingError ??= 'tab in Transfer-Encoding'; break }
  forEachElement(buf, start, end, s, transferCoding)
}

function connectionOption (buf: Buffer, a: number, b: number, s: FieldSection): void {
  if (equalsLower(buf, a, b, CLOSE)) s.connectionClose = true
  else if (equalsLower(buf, a, b, KEEP_ALIVE)) s.connectionKeepAlive = true
  else if (equalsLower(buf, a, b, UPGRADE)) s.connectionUpgrade = true
}

/** RFC 9110 §10.1.1: Expect is a list; 100-continue may come with others (Node also finds it so). */
function expectation (buf: Buffer, a: number, b: number, s: FieldSection): void {
  if (equalsLower(buf, a, b, CONTINUE)) s.expectContinue = true
}

function readHost (buf: Buffer, start: number, end: number, s: FieldSection): void {
  s.hostCount++
  if (start === end) s.hostEmpty = true
  for (let i = start; i < end; i++) if (HOST_CHAR[buf[i] as number] !== 1) { s.hostInvalid = true; break }
}

function readField (buf: Buffer, pos: number, nameEnd: number, valueStart: number, valueEnd: number, lineEnd: number, s: FieldSection): void {
  switch (nameEnd - pos) {
    case 4:
      if (equalsLower(buf, pos, nameEnd, HOST)) readHost(buf, valueStart, valueEnd, s)
      break
    case 6:
      if (equalsLower(buf, pos, nameEnd, EXPECT)) forEachElement(buf, valueStart, valueEnd, s, expectation)
      break
    case 7:
      if (equalsLower(buf, pos, nameEnd, UPGRADE) && valueEnd > valueStart) s.upgradePresent = true
      break
    case 10:
      if (equalsLower(buf, pos, nameEnd, CONNECTION)) forEachElement(buf, valueStart, valueEnd, s, connectionOption)
      break
    case 14:
      if (equalsLower(buf, pos, nameEnd, CONTENT_LENGTH)) readContentLength(buf, valueStart, valueEnd, s)
      break
    case 17:
      if (equalsLower(buf, pos, nameEnd, TRANSFER_ENCODING)) readTransferEncoding(buf, valueStart, valueEnd, lineEnd, s)
      break
  }
}

/**
 * Scans field lines from `pos` to the empty line, which must end within the first `limit` bytes
 * of `buf` (the caller's maxHeadBytes). Returns the section, INCOMPLETE, TOO_LARGE, or the reason
 * for a 400. One pass over the bytes: each line is checked as it is walked (RFC 9110 §5.1, §5.5,
 * RFC 9112 §5), and the head is decoded to a string once, at the end, for the caller to slice.
 * `textStart` is where that string starts (the start of the request or status line).
 */
export function scanFieldSection (buf: Buffer, pos: number, limit: number, textStart: number): FieldSection | number | string {
  const s = new FieldSection()
  const spans = s.spans
  const end = buf.length < limit ? buf.length : limit
  const more = buf.length < limit ? INCOMPLETE : TOO_LARGE
  for (;;) {
    if (pos >= end) return more
    const first = buf[pos] as number
    if (first === CR) {
      if (pos + 1 >= end) return more
      if (buf[pos + 1] !== LF) return 'bare CR in the head'
      s.end = pos + 2
      break
    }
    if (first === LF) return 'bare LF in the head'
    // RFC 9112 §5.2: obs-fold is refused rather than unfolded; a proxy must not guess.
    if (first === SP || first === HTAB) return 'obsolete line folding'
    let i = pos + 1
    while (i < end && TCHAR[buf[i] as number] === 1) i++
    if (i >= end) return TCHAR[first] === 1 ? more : 'invalid character in field name'
    const stop = buf[i] as number
    // RFC 9112 §5.1: no whitespace between the name and the colon (a classic smuggling vector).
    if (TCHAR[first] !== 1) return 'invalid character in field name'
    if (stop !== COLON) {
      if (stop === SP || stop === HTAB) return 'whitespace before the colon of a field'
      return stop === CR || stop === LF ? 'field line without a colon' : 'invalid character in field name'
    }
    const nameEnd = i
    i++
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++
    const valueStart = i
    let c = 0
    for (; i < end; i++) {
      c = buf[i] as number
      if (FIELD_CHAR[c] !== 1) break
    }
    if (i >= end) return more
    let valueEnd = i
    while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--
    if (c === CR) {
      if (i + 1 >= end) return more
      // RFC 9112 §2.2 lets a recipient take a bare LF as a line end; this proxy refuses both
      // bare CR and bare LF, since the app behind it might split lines differently.
      if (buf[i + 1] !== LF) return 'bare CR in a field value'
    } else {
      return c === LF ? 'bare LF in the head' : 'invalid character in field value'
    }
    spans.push(pos, nameEnd, valueStart, valueEnd)
    readField(buf, pos, nameEnd, valueStart, valueEnd, i, s)
    pos = i + 2
  }
  // One decode of the whole head; names and values are slices of it.
  const text = buf.toString('latin1', textStart, s.end)
  s.text = text
  const raw = s.rawHeaders
  for (let k = 0; k < spans.length; k += 4) {
    raw.push(text.slice((spans[k] as number) - textStart, (spans[k + 1] as number) - textStart), text.slice((spans[k + 2] as number) - textStart, (spans[k + 3] as number) - textStart))
  }
  return s
}
