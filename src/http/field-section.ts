// The field section of a request or response head: every field line up to the empty line, checked
// by the shared grammar, with the few fields that decide framing and connection handling read on
// the way (Content-Length, Transfer-Encoding, Host, Connection, Upgrade, Expect). One pass over the
// bytes; the only strings made are the raw names and values the caller gets.
import { CR, LF, SP, HTAB, bytes, equalsLower, fieldPos, scanFieldLine } from './fields.ts'

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

/** Walks a comma-separated list value, calling `each(start, end)` for every OWS-trimmed element. */
function forEachElement (buf: Buffer, start: number, end: number, each: (a: number, b: number) => void): void {
  let a = start
  for (let i = start; i <= end; i++) {
    if (i === end || buf[i] === 0x2c) {
      let x = a
      let y = i
      while (x < y && (buf[x] === SP || buf[x] === HTAB)) x++
      while (y > x && (buf[y - 1] === SP || buf[y - 1] === HTAB)) y--
      each(x, y)
      a = i + 1
    }
  }
}

function readTransferEncoding (buf: Buffer, start: number, end: number, lineEnd: number, s: FieldSection): void {
  s.transferEncodingCount++
  // llhttp reads `chunked<HTAB>` as some other coding while OWS rules make it chunked: a tab
  // after the first coding gets one reading here, a refusal.
  for (let i = start; i < lineEnd; i++) if (buf[i] === HTAB) { s.transferEncodingError ??= 'tab in Transfer-Encoding'; break }
  forEachElement(buf, start, end, (a, b) => {
    if (a === b) { s.transferEncodingError ??= 'empty Transfer-Encoding element'; return }
    // RFC 9112 §6.1: chunked must be applied once, and last; a coding after it is refused.
    if (s.chunkedLast) s.transferEncodingError ??= 'chunked is not the last transfer coding'
    if (equalsLower(buf, a, b, CHUNKED)) s.chunkedLast = true
    else { s.chunkedLast = false; s.otherCoding = true }
  })
}

function readConnection (buf: Buffer, start: number, end: number, s: FieldSection): void {
  forEachElement(buf, start, end, (a, b) => {
    if (equalsLower(buf, a, b, CLOSE)) s.connectionClose = true
    else if (equalsLower(buf, a, b, KEEP_ALIVE)) s.connectionKeepAlive = true
    else if (equalsLower(buf, a, b, UPGRADE)) s.connectionUpgrade = true
  })
}

function readHost (buf: Buffer, start: number, end: number, s: FieldSection): void {
  s.hostCount++
  if (start === end) s.hostEmpty = true
  for (let i = start; i < end; i++) if (HOST_CHAR[buf[i] as number] !== 1) { s.hostInvalid = true; break }
}

/**
 * Scans field lines from `pos` to the empty line, which must end within the first `limit` bytes
 * of `buf` (the caller's maxHeadBytes). Returns the section, INCOMPLETE, TOO_LARGE, or the reason for a 400.
 */
export function scanFieldSection (buf: Buffer, pos: number, limit: number): FieldSection | number | string {
  const s = new FieldSection()
  const raw = s.rawHeaders
  for (;;) {
    const lf = buf.indexOf(LF, pos)
    if (lf === -1) return buf.length >= limit ? TOO_LARGE : INCOMPLETE
    if (lf >= limit) return TOO_LARGE
    // RFC 9112 §2.2 lets a recipient accept a bare LF; this proxy refuses it, since the app
    // behind it might split lines differently.
    if (lf === pos || buf[lf - 1] !== CR) return 'bare LF in the head'
    const lineEnd = lf - 1
    if (lineEnd === pos) { s.end = lf + 1; return s }
    const bad = scanFieldLine(buf, pos, lineEnd)
    if (bad !== undefined) return bad
    const { nameEnd, valueStart, valueEnd } = fieldPos
    raw.push(buf.toString('latin1', pos, nameEnd), buf.toString('latin1', valueStart, valueEnd))
    switch (nameEnd - pos) {
      case 4:
        if (equalsLower(buf, pos, nameEnd, HOST)) readHost(buf, valueStart, valueEnd, s)
        break
      case 6:
        if (equalsLower(buf, pos, nameEnd, EXPECT) && equalsLower(buf, valueStart, valueEnd, CONTINUE)) s.expectContinue = true
        break
      case 7:
        if (equalsLower(buf, pos, nameEnd, UPGRADE) && valueEnd > valueStart) s.upgradePresent = true
        break
      case 10:
        if (equalsLower(buf, pos, nameEnd, CONNECTION)) readConnection(buf, valueStart, valueEnd, s)
        break
      case 14:
        if (equalsLower(buf, pos, nameEnd, CONTENT_LENGTH)) readContentLength(buf, valueStart, valueEnd, s)
        break
      case 17:
        if (equalsLower(buf, pos, nameEnd, TRANSFER_ENCODING)) readTransferEncoding(buf, valueStart, valueEnd, lineEnd, s)
        break
    }
    pos = lf + 1
  }
}
