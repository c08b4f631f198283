// fast-check generators of HTTP/1.x bytes for the parser tests: requests and responses that are
// well-formed most of the time, then damaged the ways smuggling and splitting attempts are
// (duplicate and conflicting framing, casing, whitespace, obs-fold, bare CR/LF, NUL, long lines,
// odd chunk sizes and extensions, trailers, pipelined messages), then a few bytes mutated.
import fc from 'fast-check'

export const pick = <T>(...xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs)
export const weighted = <T>(...xs: Array<[number, fc.Arbitrary<T>]>): fc.Arbitrary<T> => fc.oneof(...xs.map(([weight, arbitrary]) => ({ weight, arbitrary })))
const str = (chars: string, min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...chars), minLength: min, maxLength: max })

const HOSTILE = ['\x00', '\r', '\n', '\t', ' ', '\x7f', '\x80', '\xff', '\x01', '\x0b', ':', ';', ',', '"', '#']

// ── fields ──────────────────────────────────────────────────────────────────────────────────────

const valueChar = weighted<string>([200, fc.constantFrom(...'abcXYZ012 =/;,.-"\'()<>@[]{}?!~')], [3, pick('\t', ' ')], [2, pick('\x80', '\xe9', '\xff')], [1, fc.constantFrom(...HOSTILE)])
const valueArb = weighted<string>([30, fc.string({ unit: valueChar, maxLength: 24 })], [1, pick(' \t padded \t ', '', '  ', `${'v'.repeat(4000)}`, 'a\r\n b', 'a\r\n\tb', 'keep-alive, Upgrade', 'close', 'Keep-Alive', 'keep-alive', '100-continue', '100-Continue, x', 'websocket')])
const colon = weighted<string>([60, pick(': ', ':')], [1, pick(' : ', '\t:', ':\t', ':  ')])
const fieldName = (common: fc.Arbitrary<string>): fc.Arbitrary<string> => weighted<string>(
  [30, common],
  [10, str('abcXYZ019-_.!#$%&\'*+^`|~', 1, 12)],
  [1, pick('X A', 'X-A ', ' X-A', 'X(A)', '', 'X\x00', 'Content-Length\t', 'Transfer-Encoding ')]
)
const field = (common: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.tuple(fieldName(common), colon, valueArb).map(([n, c, v]) => `${n}${c}${v}`)
const requestField = field(pick('Accept', 'X-A', 'x-b', 'Cookie', 'Set-Cookie', 'User-Agent', 'Content-Type', 'Referer', 'Expect', 'Upgrade', 'Connection', 'Trailer', 'Authorization'))
const responseField = field(pick('Content-Type', 'X-A', 'x-b', 'Set-Cookie', 'Cache-Control', 'Location', 'Vary', 'Connection', 'Keep-Alive', 'Trailer', 'Date'))

/** The framing fields' names, in the casings clients and apps use. */
const CL = weighted<string>([20, pick('Content-Length')], [1, pick('content-length', 'CONTENT-LENGTH', 'Content-length')])
const TE = weighted<string>([20, pick('Transfer-Encoding')], [1, pick('transfer-encoding', 'TRANSFER-ENCODING', 'Transfer-encoding')])
const teValue = weighted<string>([30, pick('chunked')], [1, pick('Chunked', 'CHUNKED', 'chunked, chunked', 'gzip, chunked', 'chunked, gzip', 'gzip', 'identity', 'chunked;x', ', chunked', 'chunked,', ' chunked ', 'chunked\t')])
const clSpell = weighted<string>([30, pick('%d')], [1, pick('0%d', '+%d', '%d, %d', ' %d ', '%d.0', '-%d')])

// ── bodies ──────────────────────────────────────────────────────────────────────────────────────

const bodyArb = weighted<string>([3, pick('')], [6, fc.string({ unit: fc.constantFrom(...'abc{}":=&\r\n\x00\xff0 '), maxLength: 60 })])
const hexSize = (n: number): fc.Arbitrary<string> => pick(n.toString(16), n.toString(16).toUpperCase(), `00${n.toString(16)}`)
const ext = weighted<string>([30, pick('')], [3, pick(';a', ';a=b', ';a="q d"', ';a="x\\"y";b', ';a=b;c')], [1, pick(' ;a', ';a =b', ';a= b', ';', ';"x"', ';a=\x00', '; a', ' ', '\t')])
const trailers = weighted<string>([12, pick('')], [3, pick('X-T: 1\r\n', 'X-T: 1\r\nX-U:  2 \r\n')], [1, pick('X-T : 1\r\n', 'X-T: 1\r\n 2\r\n', 'X-T\r\n', 'X-T: \x00\r\n', 'X-T: 1\n', 'Content-Length: 5\r\n')])

/** `body` in chunks: sizes from random cut points, each spelt one way, extensions, trailers. */
export const chunkedBody = (body: string): fc.Arbitrary<string> => fc.tuple(
  fc.uniqueArray(fc.nat({ max: Math.max(0, body.length) }), { maxLength: 3 }),
  fc.array(ext, { minLength: 4, maxLength: 4 }),
  ext,
  trailers,
  weighted<string>([40, pick('\r\n')], [1, pick('\n', '\r', '', 'x\r\n')])
).chain(([cuts, exts, lastExt, trailerLines, afterData]) => {
  const points = [...new Set([0, ...cuts, body.length])].sort((x, y) => x - y)
  const pieces = points.slice(1).map((p, k) => body.slice(points[k], p)).filter((p) => p.length > 0)
  return fc.tuple(...pieces.map((p) => hexSize(p.length)), fc.constant('')).map((sizes) => {
    let s = ''
    pieces.forEach((p, k) => { s += `${sizes[k] as string}${exts[k % exts.length] ?? ''}\r\n${p}${k === pieces.length - 1 ? afterData : '\r\n'}` })
    return `${s}0${lastExt}\r\n${trailerLines}\r\n`
  })
})

/** A chunked body on its own, for the decoder. */
export const chunkedBytes = bodyArb.chain(chunkedBody).map((s) => Buffer.from(s, 'latin1'))

/** Framing fields and body for `body`, honest or hostile. */
const framing = (body: string, closeAllowed: boolean): fc.Arbitrary<{ fields: string[], body: string }> => fc.record({
  kind: weighted<string>([6, pick('length')], [6, pick('chunked')], [3, pick(closeAllowed ? 'close' : 'none')], [4, pick('hostile')]),
  hostile: pick('cl+te', 'te+cl', 'cl cl', 'cl cl2', 'te te', 'cl short', 'cl long', 'cl huge', 'te split'),
  cl: CL,
  te: TE,
  teValue,
  clSpell,
  chunked: chunkedBody(body),
}).map(({ kind, hostile, cl, te, teValue, clSpell, chunked }) => {
  const n = body.length
  switch (kind) {
    case 'length': return { fields: [`${cl}: ${clSpell.replaceAll('%d', String(n))}`], body }
    case 'chunked': return { fields: [`${te}: ${teValue}`], body: chunked }
    case 'hostile':
      switch (hostile) {
        case 'cl+te': return { fields: [`${cl}: ${n}`, `${te}: chunked`], body: chunked }
        case 'te+cl': return { fields: [`${te}: chunked`, `${cl}: ${chunked.length}`], body: chunked }
        case 'cl cl': return { fields: [`${cl}: ${n}`, `Content-Length: ${n}`], body }
        case 'cl cl2': return { fields: [`${cl}: ${n}`, `Content-Length: ${n + 1}`], body }
        case 'te te': return { fields: [`${te}: chunked`, 'Transfer-Encoding: chunked'], body: chunked }
        case 'cl short': return { fields: [`${cl}: ${Math.max(0, n - 1)}`], body }
        case 'cl long': return { fields: [`${cl}: ${n + 3}`], body }
        case 'cl huge': return { fields: [`${cl}: 18446744073709551616`], body }
        default: return { fields: [`${te}: gzip`, `${te}: chunked`], body: chunked }
      }
    default: return { fields: [], body: closeAllowed ? body : '' }
  }
})

const eol = weighted<string>([100, pick('\r\n')], [1, pick('\n', '\r', '\r\r\n')])

// ── messages ────────────────────────────────────────────────────────────────────────────────────

const method = weighted<string>([30, pick('GET', 'POST', 'PUT', 'DELETE', 'PATCH')], [2, pick('HEAD', 'OPTIONS', 'QUERY', 'M-SEARCH', 'PROPFIND')], [1, pick('get', 'FOO', 'CONNECT', 'G ET', 'GE\x00T', '')])
const target = weighted<string>(
  [40, str('abz019/-._~%!$&\'()*+,;=:@?', 0, 20).map((s) => '/' + s)],
  [1, pick('*', 'http://a.example/x?y', 'HTTPS://a.example', 'http://u@a/x', 'ftp://a/b', 'a/b', 'a.example:443', '/a#b', '/a{|}', '/\xe9', '/a\tb', '/a b', `/${'x'.repeat(3000)}`)]
)
const version = weighted<string>([40, pick('HTTP/1.1')], [4, pick('HTTP/1.0')], [1, pick('HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1', 'HTTP/0.9', '')])
const sep = weighted<string>([60, pick(' ')], [1, pick('  ', '\t', '')])
const host = weighted<string>([40, pick('Host: a.example')], [1, pick('', 'Host: ', 'Host: a\r\nHost: a', 'Host: a/b', 'host:  x:8080 ')])

/** One request: a request line, fields and a body with its framing. */
const request = fc.record({
  leading: weighted<string>([30, pick('')], [1, pick('\r\n', '\n', '\r\n\r\n')]),
  method,
  sp1: sep,
  target,
  sp2: sep,
  version,
  host,
  fields: fc.array(requestField, { maxLength: 4 }),
  body: bodyArb,
  eol,
}).chain((m) => framing(m.body, false).map((f) => {
  const lines = [`${m.method}${m.sp1}${m.target}${m.sp2}${m.version}`, ...(m.host === '' ? [] : [m.host]), ...m.fields, ...f.fields]
  return `${m.leading}${lines.join(m.eol)}${m.eol}\r\n${f.body}`
}))

const statusLine = fc.tuple(
  weighted<string>([40, pick('HTTP/1.1')], [4, pick('HTTP/1.0')], [1, pick('HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1', 'ICY')]),
  weighted<string>([40, pick('200', '201', '204', '206', '301', '304', '404', '500')], [2, pick('199', '299', '599', '999')], [1, pick('099', '20', '2000', '2x0', ' 200')]),
  weighted<string>([30, pick(' OK', ' Not Found', '')], [4, pick(' ', ' Created Here', ' \xe9t\xe9', ' a\tb')], [1, pick(' \x01', '\x00', ' a\rb')])
).map(([v, s, r]) => `${v} ${s}${r}`)

/** One final response, perhaps after interim ones, and perhaps with bytes after it. */
const response = fc.record({
  interim: weighted<string>([20, pick('')], [2, pick('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n', 'HTTP/1.1 100 Continue\r\n\r\n')], [1, pick('HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n', '\r\n')]),
  statusLine,
  fields: fc.array(responseField, { maxLength: 4 }),
  body: bodyArb,
  eol,
  extra: weighted<string>([10, pick('')], [1, pick('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'garbage')]),
}).chain((m) => framing(m.body, true).map((f) => `${m.interim}${[m.statusLine, ...m.fields, ...f.fields].join(m.eol)}${m.eol}\r\n${f.body}${m.extra}`))

/** A few bytes inserted, replaced or removed, from the hostile set. */
const damaged = (text: fc.Arbitrary<string>): fc.Arbitrary<Buffer> => fc.tuple(
  text,
  weighted<Array<[string, number, string]>>([2, fc.constant([])], [1, fc.array(fc.tuple(pick('insert', 'replace', 'delete'), fc.nat(), fc.constantFrom(...HOSTILE)), { minLength: 1, maxLength: 2 })])
).map(([s, mutations]) => {
  for (const [op, at, ch] of mutations) {
    const k = at % (s.length + 1)
    s = op === 'insert' ? s.slice(0, k) + ch + s.slice(k) : op === 'replace' ? s.slice(0, k) + ch + s.slice(k + 1) : s.slice(0, k) + s.slice(k + 1)
  }
  return Buffer.from(s, 'latin1')
})

/** One to three pipelined requests, perhaps damaged. */
export const requestBytes = damaged(fc.array(request, { minLength: 1, maxLength: 3 }).map((ms) => ms.join('')))

/** An app's answer, perhaps damaged. */
export const responseBytes = damaged(response)
