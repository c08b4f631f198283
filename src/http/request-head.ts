// A strict parser for an HTTP/1.x request head (RFC 9112 §2-§3, §5-§6, §9.3; RFC 9110). Pure: it
// reads a Buffer and says what the head is, or that more bytes are needed, or why the request is
// refused. Everything ambiguous is refused, since the app behind the sidecar parses the same bytes
// again and must never see a different message than the sidecar's rules did (request smuggling).
import { CR, LF, SP, TCHAR, bytes } from './fields.ts'
import { FieldSection, INCOMPLETE, TOO_LARGE, scanFieldSection } from './field-section.ts'
import { nodeHeaders } from './node-headers.ts'

export interface RequestHead {
  readonly method: string
  /** The request-target exactly as received. */
  readonly target: string
  /** Path of an origin-form or absolute-form target, without the query ('/' when an absolute-form
   *  target has none); '*' for asterisk-form; the authority for CONNECT. */
  readonly path: string
  /** After the first '?', without it; '' when none. */
  readonly query: string
  /** The target was absolute-form: forward `path[?query]` (origin-form) to the app. */
  readonly absolute: boolean
  readonly versionMinor: 0 | 1
  /** [name, value, name, value, ...] as received, values without surrounding whitespace. */
  readonly rawHeaders: string[]
  /** Built on first use, by Node's IncomingMessage.headers rules. */
  readonly headers: Record<string, string | string[]>
  /** 'none' also when Content-Length is 0. */
  readonly body: 'none' | 'length' | 'chunked'
  readonly contentLength: number
  readonly keepAlive: boolean
  readonly upgrade: boolean
  readonly expectContinue: boolean
  /** Where the request-line starts: after the empty lines (CRLF) allowed before it, usually 0. */
  readonly headStart: number
  /** Bytes of the head from the start of `buf`, leading empty lines and the final CRLF CRLF included. */
  readonly headLength: number
}

export type RequestHeadResult =
  | { readonly kind: 'head', readonly head: RequestHead }
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'error', readonly status: 400 | 431 | 501 | 505, readonly reason: string }

/** The methods Node's own parser accepts (http.METHODS); others get 501, as llhttp refuses them. */
const METHODS = [
  'ACL', 'BIND', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH',
  'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST',
  'PROPFIND', 'PROPPATCH', 'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE',
  'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK', 'UNSUBSCRIBE',
]
/** By length, most common first: the method string is found by comparing bytes, never built. */
const METHODS_BY_LENGTH: Array<Array<[Uint8Array, string]>> = []
for (const m of ['GET', 'POST', 'PUT', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS', ...METHODS]) {
  const list = (METHODS_BY_LENGTH[m.length] ??= [])
  if (!list.some(([, s]) => s === m)) list.push([bytes(m), m])
}

/** Bytes of a request-target: visible ASCII except '#' (RFC 9112 §3.2 has no fragment). */
const TARGET_CHAR = (() => {
  const t = new Uint8Array(256)
  for (let c = 0x21; c < 0x7f; c++) t[c] = c === 0x23 ? 0 : 1
  return t
})()

/** Bytes of an authority (host and port, no userinfo: RFC 9110 §4.2.4 makes '@' an error). */
const AUTHORITY_CHAR = (() => {
  const t = new Uint8Array(256)
  for (const ch of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&\'()*+,;=:[]%') t[ch.charCodeAt(0)] = 1
  return t
})()

const INCOMPLETE_RESULT: RequestHeadResult = Object.freeze({ kind: 'incomplete' })

function fail (status: 400 | 431 | 501 | 505, reason: string): RequestHeadResult {
  return { kind: 'error', status, reason }
}

class Head implements RequestHead {
  readonly method: string
  readonly target: string
  readonly path: string
  readonly query: string
  readonly absolute: boolean
  readonly versionMinor: 0 | 1
  readonly rawHeaders: string[]
  readonly body: 'none' | 'length' | 'chunked'
  readonly contentLength: number
  readonly keepAlive: boolean
  readonly upgrade: boolean
  readonly expectContinue: boolean
  readonly headStart: number
  readonly headLength: number
  #headers: Record<string, string | string[]> | undefined = undefined

  constructor (method: string, target: string, path: string, query: string, absolute: boolean, versionMinor: 0 | 1, headStart: number, s: FieldSection) {
    this.method = method
    this.target = target
    this.path = path
    this.query = query
    this.absolute = absolute
    this.versionMinor = versionMinor
    this.rawHeaders = s.rawHeaders
    this.body = s.transferEncodingCount > 0 ? 'chunked' : s.contentLength > 0 ? 'length' : 'none'
    this.contentLength = s.contentLength
    this.keepAlive = versionMinor === 1 ? !s.connectionClose : s.connectionKeepAlive && !s.connectionClose
    this.upgrade = method === 'CONNECT' || (s.connectionUpgrade && s.upgradePresent)
    // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
    this.expectContinue = versionMinor === 1 && s.expectContinue
    this.headStart = headStart
    this.headLength = s.end
  }

  get headers (): Record<string, string | string[]> {
    this.#headers ??= nodeHeaders(this.rawHeaders)
    return this.#headers
  }
}

/** The known method at buf[start..end), or undefined. */
function knownMethod (buf: Buffer, start: number, end: number): string | undefined {
  const list = METHODS_BY_LENGTH[end - start]
  if (list === undefined) return undefined
  for (const [b, name] of list) {
    let k = 0
    while (k < b.length && buf[start + k] === b[k]) k++
    if (k === b.length) return name
  }
  return undefined
}

/** Index of the end of `scheme "://"` at `start`, or -1 when the target does not begin so. */
function schemeEnd (buf: Buffer, start: number, end: number): number {
  let i = start
  const c0 = buf[i] as number
  if (!((c0 >= 0x41 && c0 <= 0x5a) || (c0 >= 0x61 && c0 <= 0x7a))) return -1
  for (i++; i < end; i++) {
    const c = buf[i] as number
    if (c === 0x3a) break
    if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e)) return -1
  }
  if (i + 2 >= end || buf[i + 1] !== 0x2f || buf[i + 2] !== 0x2f) return -1
  return i + 3
}

function isHttpScheme (buf: Buffer, start: number, colon: number): boolean {
  const n = colon - start
  if (n !== 4 && n !== 5) return false
  if (((buf[start] as number) | 0x20) !== 0x68 || ((buf[start + 1] as number) | 0x20) !== 0x74 ||
    ((buf[start + 2] as number) | 0x20) !== 0x74 || ((buf[start + 3] as number) | 0x20) !== 0x70) return false
  return n === 4 || ((buf[start + 4] as number) | 0x20) === 0x73
}

const END_OF_HEAD = Buffer.from('\r\n\r\n')

/** Whether buf[from..) holds a line end that is not CRLF (then the full scan says which). */
function bareLineEnd (buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) {
    const c = buf[i]
    if (c === LF && (i === 0 || buf[i - 1] !== CR)) return true
    if (c === CR && i + 1 < buf.length && buf[i + 1] !== LF) return true
  }
  return false
}

/**
 * Parses the request head at the start of `buf`. A head longer than `maxHeadBytes` (or a buffer
 * that reaches it without a complete head) is a 431.
 *
 * `seen` is for a caller that parses the same growing buffer again as bytes arrive: the length
 * of `buf` when an earlier call answered 'incomplete'. Then, as long as the new bytes end no head
 * and break no line ending, the answer is 'incomplete' again without scanning the head anew, so a
 * client dripping its head byte by byte costs linear, not quadratic, time. A refusal (400, 501,
 * 505) in the lines before `seen` then waits for the end of the head or the size limit.
 */
export function parseRequestHead (buf: Buffer, maxHeadBytes: number, seen = 0): RequestHeadResult {
  const len = buf.length
  if (seen > 0 && len < maxHeadBytes && buf.indexOf(END_OF_HEAD, seen > 3 ? seen - 3 : 0) === -1 && !bareLineEnd(buf, seen > 1 ? seen - 1 : 0)) {
    return INCOMPLETE_RESULT
  }
  let pos = 0
  // RFC 9112 §2.2: empty lines before the request-line are ignored (they count in headLength).
  while (pos + 1 < len && buf[pos] === CR && buf[pos + 1] === LF) pos += 2
  // llhttp also skips a lone CR or LF there; this parser takes only whole CRLFs.
  if (buf[pos] === LF || (buf[pos] === CR && pos + 1 < len)) return fail(400, 'bare CR or LF before the request line')
  const lf = buf.indexOf(LF, pos)
  if (lf === -1) return len >= maxHeadBytes ? fail(431, 'request head too large') : INCOMPLETE_RESULT
  if (lf >= maxHeadBytes) return fail(431, 'request head too large')
  if (lf === pos || buf[lf - 1] !== CR) return fail(400, 'bare LF in the head')
  const lineEnd = lf - 1

  // method SP request-target SP HTTP-version, each separated by exactly one SP (RFC 9112 §3).
  let i = pos
  while (i < lineEnd && TCHAR[buf[i] as number] === 1) i++
  if (i === pos || i === lineEnd || buf[i] !== SP) return fail(400, 'invalid request method')
  const methodEnd = i
  const targetStart = ++i
  let q = -1
  for (; i < lineEnd; i++) {
    const c = buf[i] as number
    if (TARGET_CHAR[c] !== 1) break
    if (c === 0x3f && q === -1) q = i
  }
  if (i === targetStart) return fail(400, 'invalid request line')
  if (i === lineEnd) return fail(400, 'invalid request line')
  if (buf[i] !== SP) return fail(400, 'invalid character in the request target')
  const targetEnd = i
  const v = i + 1
  if (buf[v] === SP) return fail(400, 'invalid request line')
  if (lineEnd - v !== 8 || buf[v] !== 0x48 || buf[v + 1] !== 0x54 || buf[v + 2] !== 0x54 || buf[v + 3] !== 0x50 ||
    buf[v + 4] !== 0x2f || buf[v + 6] !== 0x2e) return fail(400, 'invalid HTTP version')
  const major = (buf[v + 5] as number) - 0x30
  const minor = (buf[v + 7] as number) - 0x30
  if (major < 0 || major > 9 || minor < 0 || minor > 9) return fail(400, 'invalid HTTP version')
  if (major !== 1 || minor > 1) return fail(505, 'HTTP version not supported')
  const versionMinor = minor as 0 | 1

  const method = knownMethod(buf, pos, methodEnd)
  if (method === undefined) return fail(501, 'method not implemented')

  // The target's form decides where its path starts (byte indices; the strings come later).
  let pathStart = targetStart
  let absolute = false
  const first = buf[targetStart]
  if (method === 'CONNECT') {
    // RFC 9112 §3.2.3: CONNECT takes authority-form (host:port) and nothing else.
    let colon = -1
    for (let k = targetStart; k < targetEnd; k++) {
      const c = buf[k] as number
      if (AUTHORITY_CHAR[c] !== 1) return fail(400, 'invalid CONNECT target')
      if (c === 0x3a) colon = k
    }
    if (colon <= targetStart || colon === targetEnd - 1) return fail(400, 'invalid CONNECT target')
    for (let k = colon + 1; k < targetEnd; k++) if ((buf[k] as number) < 0x30 || (buf[k] as number) > 0x39) return fail(400, 'invalid CONNECT target')
    q = -1
  } else if (first === 0x2a && targetEnd - targetStart === 1) {
    // RFC 9112 §3.2.4: asterisk-form is for OPTIONS only.
    if (method !== 'OPTIONS') return fail(400, 'asterisk-form target with a method other than OPTIONS')
  } else if (first !== 0x2f) {
    // RFC 9112 §3.2.2: absolute-form; only http(s) makes sense to a reverse proxy.
    const authStart = schemeEnd(buf, targetStart, targetEnd)
    if (authStart === -1 || !isHttpScheme(buf, targetStart, authStart - 3)) return fail(400, 'invalid request target')
    let k = authStart
    while (k < targetEnd && buf[k] !== 0x2f && buf[k] !== 0x3f) {
      if (AUTHORITY_CHAR[buf[k] as number] !== 1) return fail(400, 'invalid authority in the request target')
      k++
    }
    if (k === authStart) return fail(400, 'empty authority in the request target')
    pathStart = k
    absolute = true
  }

  const s = scanFieldSection(buf, lf + 1, maxHeadBytes, pos)
  if (s === INCOMPLETE) return INCOMPLETE_RESULT
  if (s === TOO_LARGE) return fail(431, 'request head too large')
  if (typeof s === 'string') return fail(400, s)
  if (typeof s === 'number') return fail(400, 'invalid head')

  // RFC 9112 §3.2: HTTP/1.1 needs exactly one Host, and the value must be valid.
  if (s.hostCount > 1) return fail(400, 'several Host fields')
  if (versionMinor === 1 && s.hostCount === 0) return fail(400, 'missing Host')
  if (s.hostCount === 1 && (s.hostEmpty || s.hostInvalid)) return fail(400, 'invalid Host')
  if (s.contentLengthError !== undefined) return fail(400, s.contentLengthError)
  if (s.transferEncodingCount > 0) {
    // RFC 9112 §6.3: both framings in one request is the smuggling shape; refuse, never choose.
    if (s.contentLengthCount > 0) return fail(400, 'both Content-Length and Transfer-Encoding')
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
    if (versionMinor === 0) return fail(400, 'Transfer-Encoding in an HTTP/1.0 request')
    if (s.transferEncodingError !== undefined) return fail(400, s.transferEncodingError)
    if (!s.chunkedLast) return fail(400, 'the last transfer coding is not chunked')
    // RFC 9112 §6.1: a server answers 501 to a transfer coding it does not understand.
    if (s.otherCoding) return fail(501, 'transfer coding not implemented')
  }
  const text = s.text
  const target = text.slice(targetStart - pos, targetEnd - pos)
  const pathEnd = q === -1 ? targetEnd : q
  // An absolute-form target without a path stands for "/" (RFC 9112 §3.2.1).
  const path = pathStart === pathEnd && absolute ? '/' : pathStart === targetStart && pathEnd === targetEnd ? target : text.slice(pathStart - pos, pathEnd - pos)
  const query = q === -1 ? '' : text.slice(q + 1 - pos, targetEnd - pos)
  return { kind: 'head', head: new Head(method, target, path, query, absolute, versionMinor, pos, s) }
}
