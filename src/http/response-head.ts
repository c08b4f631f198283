// A parser for an HTTP/1.x response head from the app (RFC 9112 §4-§6), and the framing of the
// body that follows it given the request's method (RFC 9112 §6.3). The app is trusted more than a
// client, so the status line is read as leniently as Node's llhttp reads it where the meaning is
// plain (a missing reason phrase); field lines follow the same rules as requests, and any framing
// the sidecar and the client could read differently is refused.
import { CR, FIELD_CHAR, LF, SP } from './fields.ts'
import { INCOMPLETE, TOO_LARGE, scanFieldSection } from './field-section.ts'

export interface ResponseHead {
  readonly status: number
  readonly reason: string
  readonly versionMinor: 0 | 1
  readonly rawHeaders: string[]
  /** 'none' for HEAD, 1xx, 204, 304, a 2xx to CONNECT, and a Content-Length of 0. */
  readonly body: 'none' | 'length' | 'chunked' | 'close'
  readonly contentLength: number
  /** The connection may carry another request after this response's body. */
  readonly keepAlive: boolean
  /** Where the status line starts: after empty lines (CRLF) the app sent before it, usually 0. */
  readonly headStart: number
  /** Bytes of the head from the start of `buf`, skipped empty lines and the final CRLF CRLF included. */
  readonly headLength: number
}

export type ResponseHeadResult =
  | { kind: 'head', head: ResponseHead }
  | { kind: 'incomplete' }
  | { kind: 'error', reason: string }

const INCOMPLETE_RESULT: ResponseHeadResult = Object.freeze({ kind: 'incomplete' })

function fail (reason: string): ResponseHeadResult {
  return { kind: 'error', reason }
}

/**
 * Parses the response head at the start of `buf`; `requestMethod` is the method of the request it
 * answers (HEAD and CONNECT change the framing).
 */
export function parseResponseHead (buf: Buffer, maxHeadBytes: number, requestMethod: string): ResponseHeadResult {
  const len = buf.length
  // Empty lines before the status line are skipped as llhttp skips them (an app that ends a body
  // with one CRLF too many); a lone CR or LF there is refused.
  let p = 0
  while (p + 1 < len && buf[p] === CR && buf[p + 1] === LF) p += 2
  if (buf[p] === LF || (buf[p] === CR && p + 1 < len)) return fail('bare CR or LF before the status line')
  const lf = buf.indexOf(LF, p)
  if (lf === -1) return len >= maxHeadBytes ? fail('response head too large') : INCOMPLETE_RESULT
  if (lf >= maxHeadBytes) return fail('response head too large')
  if (lf === p || buf[lf - 1] !== CR) return fail('bare LF in the head')
  const lineEnd = lf - 1

  // HTTP-version SP 3DIGIT SP reason-phrase; the SP before an empty reason may be missing.
  if (lineEnd - p < 12 || buf[p] !== 0x48 || buf[p + 1] !== 0x54 || buf[p + 2] !== 0x54 || buf[p + 3] !== 0x50 ||
    buf[p + 4] !== 0x2f || buf[p + 6] !== 0x2e || buf[p + 8] !== SP) return fail('invalid status line')
  const major = (buf[p + 5] as number) - 0x30
  const minor = (buf[p + 7] as number) - 0x30
  if (major !== 1 || (minor !== 0 && minor !== 1)) return fail('unsupported HTTP version')
  let status = 0
  for (let i = p + 9; i < p + 12; i++) {
    const d = (buf[i] as number) - 0x30
    if (d < 0 || d > 9) return fail('invalid status code')
    status = status * 10 + d
  }
  // RFC 9110 §15: status codes run from 100; llhttp takes 000-099, which no client could be sent.
  if (status < 100) return fail('invalid status code')
  if (lineEnd > p + 12) {
    if (buf[p + 12] !== SP) return fail('invalid status line')
    for (let i = p + 13; i < lineEnd; i++) if (FIELD_CHAR[buf[i] as number] !== 1) return fail('invalid character in the reason phrase')
  }
  const versionMinor = minor as 0 | 1

  const s = scanFieldSection(buf, lf + 1, maxHeadBytes, p)
  if (s === INCOMPLETE) return INCOMPLETE_RESULT
  if (s === TOO_LARGE) return fail('response head too large')
  if (typeof s === 'string') return fail(s)
  if (typeof s === 'number') return fail('invalid head')
  const reason = lineEnd > p + 13 ? s.text.slice(13, lineEnd - p) : ''

  if (s.contentLengthError !== undefined) return fail(s.contentLengthError)
  const te = s.transferEncodingCount > 0
  // RFC 9112 §6.3: both framings at once might be response splitting: an error, never a choice.
  if (te && s.contentLengthCount > 0) return fail('both Content-Length and Transfer-Encoding')
  if (te && s.transferEncodingError !== undefined) return fail(s.transferEncodingError)
  // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
  if (te && versionMinor === 0) return fail('Transfer-Encoding in an HTTP/1.0 response')

  let body: ResponseHead['body']
  if (requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304 ||
    (requestMethod === 'CONNECT' && status < 300)) body = 'none'
  else if (te) body = s.chunkedLast ? 'chunked' : 'close'
  else if (s.contentLengthCount > 0) body = s.contentLength > 0 ? 'length' : 'none'
  else body = 'close'

  // A 101 or an accepted CONNECT turns the connection into a tunnel: never reusable.
  const tunnel = status === 101 || (requestMethod === 'CONNECT' && status >= 200 && status < 300)
  const keepAlive = body !== 'close' && !tunnel && !s.connectionClose && (versionMinor === 1 || s.connectionKeepAlive)
  return {
    kind: 'head',
    head: { status, reason, versionMinor, rawHeaders: s.rawHeaders, body, contentLength: s.contentLength, headStart: p, headLength: s.end, keepAlive },
  }
}
