// The response-head parser and the body framing it derives from the head and the request's method
// (RFC 9112 §6.3): whole results per row, then every row split at every byte offset.
import t from 'tap'
import { parseResponseHead, type ResponseHead } from '../../src/http/response-head.ts'

const MAX = 8192

function head (bytes: string, want: Partial<ResponseHead>): unknown {
  return {
    kind: 'head',
    head: {
      status: 200,
      reason: 'OK',
      versionMinor: 1,
      rawHeaders: [],
      body: 'close',
      contentLength: 0,
      headStart: 0,
      headLength: Buffer.byteLength(bytes, 'latin1'),
      keepAlive: false,
      ...want,
    },
  }
}

const ACCEPTED: Array<[string, string, string, Partial<ResponseHead>]> = [
  ['Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'GET', { rawHeaders: ['Content-Length', '5'], body: 'length', contentLength: 5, keepAlive: true }],
  ['empty lines before the status line are skipped and counted', '\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'GET', { rawHeaders: ['Content-Length', '0'], body: 'none', keepAlive: true, headStart: 4 }],
  ['Content-Length 0', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'GET', { rawHeaders: ['Content-Length', '0'], body: 'none', keepAlive: true }],
  ['chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'POST', { rawHeaders: ['Transfer-Encoding', 'chunked'], body: 'chunked', keepAlive: true }],
  ['gzip, chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'GET', { rawHeaders: ['Transfer-Encoding', 'gzip, chunked'], body: 'chunked', keepAlive: true }],
  ['a coding other than chunked last: read until close', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'GET', { rawHeaders: ['Transfer-Encoding', 'gzip'], body: 'close' }],
  ['no framing: read until close', 'HTTP/1.1 200 OK\r\n\r\n', 'GET', {}],
  ['Connection: close', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n', 'GET', { rawHeaders: ['Content-Length', '1', 'Connection', 'close'], body: 'length', contentLength: 1 }],
  ['HTTP/1.0 without keep-alive', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n', 'GET', { versionMinor: 0, rawHeaders: ['Content-Length', '1'], body: 'length', contentLength: 1 }],
  ['HTTP/1.0 with keep-alive', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n', 'GET', { versionMinor: 0, rawHeaders: ['Content-Length', '1', 'Connection', 'keep-alive'], body: 'length', contentLength: 1, keepAlive: true }],
  ['HEAD: no body whatever the fields say', 'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n', 'HEAD', { rawHeaders: ['Content-Length', '50'], body: 'none', contentLength: 50, keepAlive: true }],
  ['HEAD with chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'HEAD', { rawHeaders: ['Transfer-Encoding', 'chunked'], body: 'none', keepAlive: true }],
  ['204', 'HTTP/1.1 204 No Content\r\n\r\n', 'DELETE', { status: 204, reason: 'No Content', body: 'none', keepAlive: true }],
  ['304', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', 'GET', { status: 304, reason: 'Not Modified', rawHeaders: ['Content-Length', '9'], contentLength: 9, body: 'none', keepAlive: true }],
  ['103 Early Hints', 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n', 'GET', { status: 103, reason: 'Early Hints', rawHeaders: ['Link', '</a.css>; rel=preload'], body: 'none', keepAlive: true }],
  ['100 Continue', 'HTTP/1.1 100 Continue\r\n\r\n', 'POST', { status: 100, reason: 'Continue', body: 'none', keepAlive: true }],
  ['101 is a tunnel', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 'GET', { status: 101, reason: 'Switching Protocols', rawHeaders: ['Upgrade', 'websocket', 'Connection', 'Upgrade'], body: 'none' }],
  ['2xx to CONNECT is a tunnel', 'HTTP/1.1 200 Connection Established\r\n\r\n', 'CONNECT', { reason: 'Connection Established', body: 'none' }],
  ['4xx to CONNECT has a body', 'HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n', 'CONNECT', { status: 407, reason: 'Auth', rawHeaders: ['Content-Length', '2'], body: 'length', contentLength: 2, keepAlive: true }],
  ['no reason phrase, no space', 'HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n', 'GET', { reason: '', rawHeaders: ['Content-Length', '0'], body: 'none', keepAlive: true }],
  ['empty reason phrase', 'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n', 'GET', { reason: '', rawHeaders: ['Content-Length', '0'], body: 'none', keepAlive: true }],
  ['a reason phrase kept as sent', 'HTTP/1.1 201 Created Here \xe9\r\nContent-Length: 0\r\n\r\n', 'POST', { status: 201, reason: 'Created Here \xe9', rawHeaders: ['Content-Length', '0'], body: 'none', keepAlive: true }],
  ['an unregistered status', 'HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n', 'GET', { status: 599, reason: 'Odd', rawHeaders: ['Content-Length', '0'], body: 'none', keepAlive: true }],
  ['Set-Cookie kept one by one', 'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n', 'GET', { rawHeaders: ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Length', '0'], body: 'none', keepAlive: true }],
]

const REFUSED: Array<[string, string, string, string]> = [
  ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 'GET', 'both Content-Length and Transfer-Encoding'],
  ['two Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n', 'GET', 'several Content-Length fields'],
  ['an invalid Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n', 'GET', 'invalid Content-Length'],
  ['an invalid Content-Length on a 304', 'HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n', 'GET', 'invalid Content-Length'],
  ['chunked twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', 'GET', 'chunked is not the last transfer coding'],
  ['chunked before another coding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 'GET', 'chunked is not the last transfer coding'],
  ['Transfer-Encoding in HTTP/1.0', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'GET', 'Transfer-Encoding in an HTTP/1.0 response'],
  ['HTTP/2.0', 'HTTP/2.0 200 OK\r\n\r\n', 'GET', 'unsupported HTTP version'],
  ['not HTTP', 'HTTX/1.1 200 OK\r\n\r\n', 'GET', 'invalid status line'],
  ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 'GET', 'invalid status code'],
  ['a four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', 'GET', 'invalid status line'],
  ['a status below 100', 'HTTP/1.1 099 Low\r\n\r\n', 'GET', 'invalid status code'],
  ['a letter in the status', 'HTTP/1.1 2x0 OK\r\n\r\n', 'GET', 'invalid status code'],
  ['two spaces before the status', 'HTTP/1.1  200 OK\r\n\r\n', 'GET', 'invalid status code'],
  ['a control character in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', 'GET', 'invalid character in the reason phrase'],
  ['bare LF', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n', 'GET', 'bare LF in the head'],
  ['a lone LF before the status line', '\nHTTP/1.1 200 OK\r\n\r\n', 'GET', 'bare CR or LF before the status line'],
  ['a lone CR before the status line', '\r\n\rHTTP/1.1 200 OK\r\n\r\n', 'GET', 'bare CR or LF before the status line'],
  ['bare LF in the fields', 'HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n', 'GET', 'bare LF in the head'],
  ['bare CR', 'HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 0\r\n\r\n', 'GET', 'bare CR in a field value'],
  ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n', 'GET', 'obsolete line folding'],
  ['whitespace before a colon', 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n', 'GET', 'whitespace before the colon of a field'],
  ['NUL in a value', 'HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n', 'GET', 'invalid character in field value'],
]

t.test('accepted response heads: every field of the result', async (t) => {
  for (const [name, bytes, method, want] of ACCEPTED) {
    t.strictSame(parseResponseHead(Buffer.from(bytes, 'latin1'), MAX, method), head(bytes, want), name)
  }
})

t.test('refused response heads', async (t) => {
  for (const [name, bytes, method, reason] of REFUSED) {
    t.strictSame(parseResponseHead(Buffer.from(bytes, 'latin1'), MAX, method), { kind: 'error', reason }, name)
  }
})

t.test('size limit and incomplete heads', async (t) => {
  const bytes = `HTTP/1.1 200 OK\r\nX-A: ${'a'.repeat(100)}\r\n\r\n`
  t.equal(parseResponseHead(Buffer.from(bytes), bytes.length, 'GET').kind, 'head', 'exactly at the limit')
  t.strictSame(parseResponseHead(Buffer.from(bytes), bytes.length - 1, 'GET'), { kind: 'error', reason: 'response head too large' })
  t.strictSame(parseResponseHead(Buffer.from(bytes.slice(0, 40)), 41, 'GET'), { kind: 'incomplete' })
  t.strictSame(parseResponseHead(Buffer.from(bytes.slice(0, 41)), 41, 'GET'), { kind: 'error', reason: 'response head too large' })
  t.strictSame(parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r'), MAX, 'GET'), { kind: 'incomplete' })
})

t.test('split at every offset: each prefix is incomplete or already the same answer', async (t) => {
  for (const [name, bytes, method] of [...ACCEPTED, ...REFUSED]) {
    const buf = Buffer.from(bytes, 'latin1')
    const whole = JSON.stringify(parseResponseHead(buf, MAX, method))
    const bad: number[] = []
    for (let k = 0; k < buf.length; k++) {
      const part = parseResponseHead(buf.subarray(0, k), MAX, method)
      if (part.kind === 'head' || (part.kind === 'error' && JSON.stringify(part) !== whole)) bad.push(k)
    }
    t.strictSame(bad, [], name)
  }
})
