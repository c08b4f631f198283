// Differential property test of the response parser and body framing against Node's http client
// (llhttp in response mode): a raw net server on loopback answers with generated response bytes,
// well-formed or damaged (conflicting framing, 1xx before the final answer, HEAD/204/304 with
// framing fields, close-delimited bodies, chunk extensions and trailers, bare CR/LF, obs-fold). When
// Node takes a whole response, ours takes the same status, reason, raw header list, body bytes and
// trailers, or refuses for one of the reasons in STRICTER; when Node refuses, ours refuses or still
// waits for bytes the closed connection will never bring (the proxy treats that as a failure too).
import t from 'tap'
import fc from 'fast-check'
import { parseResponseHead } from '../../src/http/response-head.ts'
import { ChunkedDecoder } from '../../src/http/chunked.ts'
import { ResponseOracle, type NodeResponseOutcome } from './llhttp-oracle.ts'

const MAX_HEAD = 16 * 1024

/** Refusals of ours where Node accepts, with the reason each is refused. */
const STRICTER: Record<string, string> = {
  'Transfer-Encoding in an HTTP/1.0 response': 'RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing',
  'chunked is not the last transfer coding': 'RFC 9112 §6.1: chunked applied twice, or a coding after it, leaves the end of the body open to two readings',
  'tab in Transfer-Encoding': 'the same one-reading rule as for requests (llhttp reads "chunked<HTAB>" as another coding)',
  'empty Transfer-Encoding element': 'an empty coding in the framing field is refused rather than skipped',
  'invalid chunk extension': 'RFC 9112 §7.1.1 chunk-ext grammar; llhttp accepts an empty name and more',
  'invalid character in the reason phrase': 'RFC 9112 §4: reason-phrase is HTAB, SP, VCHAR and obs-text; llhttp takes NUL and other CTLs, which would reach the client',
  'bare CR or LF before the status line': 'empty lines (CRLF) before a status line are skipped; llhttp also skips a lone CR or LF, which has no reading in RFC 9112',
  'invalid status code': 'RFC 9110 §15: status codes run from 100; llhttp takes 000-099, which no client can be sent',
  'unsupported HTTP version': 'RFC 9112 §2.3: an HTTP/1.1 connection answers in HTTP/1.x; llhttp takes any digit.digit',
  'Content-Length too large': 'Content-Length above 2^53 - 1 cannot be counted exactly in JavaScript',
  'chunk size too large': 'chunk sizes above 2^53 - 1 cannot be counted exactly in JavaScript',
}

interface OurResponse {
  status: number | undefined
  reason: string
  rawHeaders: string[]
  body: string
  trailers: string[]
  informational: number[]
  end: 'done' | 'incomplete' | 'error'
  why: string
}

/** What the sidecar's parsers make of an app's answer to a `method` request. */
function ours (bytes: Buffer, method: string): OurResponse {
  const out: OurResponse = { status: undefined, reason: '', rawHeaders: [], body: '', trailers: [], informational: [], end: 'incomplete', why: '' }
  let pos = 0
  for (;;) {
    const r = parseResponseHead(bytes.subarray(pos), MAX_HEAD, method)
    if (r.kind === 'incomplete') return out
    if (r.kind === 'error') return { ...out, end: 'error', why: r.reason }
    const h = r.head
    pos += h.headLength
    // Interim answers come before the final one (101 would end HTTP on the connection).
    if (h.status < 200 && h.status !== 101) {
      out.informational.push(h.status)
      continue
    }
    out.status = h.status
    out.reason = h.reason
    out.rawHeaders = h.rawHeaders
    if (h.body === 'length') {
      out.body = bytes.toString('latin1', pos, Math.min(bytes.length, pos + h.contentLength))
      if (pos + h.contentLength > bytes.length) return out
    } else if (h.body === 'chunked') {
      const d = new ChunkedDecoder()
      const stop = d.feed(bytes, pos, (b, from, to) => { out.body += b.toString('latin1', from, to) })
      if (stop === -1) return { ...out, end: 'error', why: d.error ?? '' }
      if (!d.done) return out
      out.trailers = d.trailers
    } else if (h.body === 'close') {
      out.body = bytes.toString('latin1', pos)
    }
    return { ...out, end: 'done' }
  }
}

/** Undefined when the outcomes agree by the property; else what is wrong. */
function disagreement (o: OurResponse, n: NodeResponseOutcome): string | undefined {
  const nodeWhole = n.complete && n.status !== undefined
  if (!nodeWhole) {
    return o.end === 'done' ? `ours took a whole response, Node did not (${n.error ?? 'no error'})` : undefined
  }
  if (o.end === 'error') return STRICTER[o.why] === undefined ? `ours refused (${o.why}), Node took the response` : undefined
  if (o.end === 'incomplete') return 'ours waits for more bytes, Node took a whole response'
  const a = { status: o.status, reason: o.reason, rawHeaders: o.rawHeaders, body: o.body, trailers: o.trailers, informational: o.informational }
  const b = { status: n.status, reason: n.reason, rawHeaders: n.rawHeaders, body: n.body, trailers: n.trailers, informational: n.informational }
  return JSON.stringify(a) === JSON.stringify(b) ? undefined : `responses differ: ours ${JSON.stringify(a)}, Node ${JSON.stringify(b)}`
}

// ── generators ────────────────────────────────────────────────────────────────────────────────

const pick = <T>(...xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs)
const weighted = <T>(...xs: Array<[number, fc.Arbitrary<T>]>): fc.Arbitrary<T> => fc.oneof(...xs.map(([weight, arbitrary]) => ({ weight, arbitrary })))
const str = (chars: string, min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...chars), minLength: min, maxLength: max })

const HOSTILE = ['\x00', '\r', '\n', '\t', ' ', '\x7f', '\x80', '\xff', '\x01', ':', ';', ',', '"']

const statusLine = fc.tuple(
  weighted<string>([40, pick('HTTP/1.1')], [4, pick('HTTP/1.0')], [1, pick('HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1', 'ICY')]),
  weighted<string>([40, pick('200', '201', '204', '206', '301', '304', '404', '500')], [2, pick('199', '299', '599', '999')], [1, pick('099', '20', '2000', '2x0', ' 200')]),
  weighted<string>([30, pick(' OK', ' Not Found', '')], [4, pick(' ', ' Created Here', ' \xe9t\xe9', ' a\tb')], [1, pick(' \x01', '\x00', ' a\rb')])
).map(([v, s, r]) => `${v} ${s}${r}`)

const nameArb = weighted<string>(
  [30, pick('Content-Type', 'X-A', 'x-b', 'Set-Cookie', 'Cache-Control', 'Location', 'Vary', 'Connection', 'Keep-Alive', 'Trailer', 'Date')],
  [10, str('abcXYZ019-_.!#$%&\'*+^`|~', 1, 12)],
  [1, pick('X A', 'X-A ', ' X-A', 'X(A)', '', 'X\x00', 'Content-Length\t', 'Transfer-Encoding ')]
)
const valueChar = weighted<string>([200, fc.constantFrom(...'abcXYZ012 =/;,.-"\'()<>@[]{}?!~')], [3, pick('\t', ' ')], [2, pick('\x80', '\xe9', '\xff')], [1, fc.constantFrom(...HOSTILE)])
const valueArb = weighted<string>([30, fc.string({ unit: valueChar, maxLength: 24 })], [1, pick(' \t padded \t ', '', 'a\r\n b', 'close', 'keep-alive', `${'v'.repeat(3000)}`)])
const colon = weighted<string>([60, pick(': ', ':')], [1, pick(' : ', '\t:', ':\t')])
const header = fc.tuple(nameArb, colon, valueArb).map(([n, c, v]) => `${n}${c}${v}`)

const bodyArb = weighted<string>([3, pick('')], [6, fc.string({ unit: fc.constantFrom(...'abc{}":=&\r\n\x00\xff0 '), maxLength: 60 })])
const hexSize = (n: number): fc.Arbitrary<string> => pick(n.toString(16), n.toString(16).toUpperCase(), `00${n.toString(16)}`)
const ext = weighted<string>([30, pick('')], [3, pick(';a', ';a=b', ';a="q d"', ';a="x\\"y";b')], [1, pick(' ;a', ';a =b', ';', ';"x"', ';a=\x00', ' ', '\t')])
const trailerArb = weighted<string>([12, pick('')], [3, pick('X-T: 1\r\n', 'X-T: 1\r\nX-U:  2 \r\n')], [1, pick('X-T : 1\r\n', 'X-T: 1\r\n 2\r\n', 'X-T\r\n', 'X-T: \x00\r\n', 'X-T: 1\n', 'Content-Length: 5\r\n')])

const chunkedBody = (body: string): fc.Arbitrary<string> => fc.tuple(
  fc.uniqueArray(fc.nat({ max: Math.max(0, body.length) }), { maxLength: 3 }), ext, ext, trailerArb,
  weighted<string>([40, pick('\r\n')], [1, pick('\n', '\r', '', 'x\r\n')])
).chain(([cuts, firstExt, lastExt, trailers, afterData]) => {
  const points = [...new Set([0, ...cuts, body.length])].sort((x, y) => x - y)
  const pieces = points.slice(1).map((p, k) => body.slice(points[k], p)).filter((p) => p.length > 0)
  return fc.tuple(...pieces.map((p) => hexSize(p.length)), fc.constant('')).map((sizes) => {
    let s = ''
    pieces.forEach((p, k) => { s += `${sizes[k] as string}${k === 0 ? firstExt : ''}\r\n${p}${k === pieces.length - 1 ? afterData : '\r\n'}` })
    return `${s}0${lastExt}\r\n${trailers}\r\n`
  })
})

const response = fc.record({
  interim: weighted<string>([20, pick('')], [2, pick('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n', 'HTTP/1.1 100 Continue\r\n\r\n')], [1, pick('HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n')]),
  statusLine,
  headers: fc.array(header, { maxLength: 4 }),
  body: bodyArb,
  framing: weighted<string>([6, pick('length')], [6, pick('chunked')], [3, pick('close')], [4, pick('hostile')]),
  te: weighted<string>([30, pick('chunked')], [1, pick('Chunked', 'chunked, chunked', 'gzip, chunked', 'chunked, gzip', 'gzip', 'chunked;x', ', chunked', ' chunked ', 'chunked\t')]),
  hostile: pick('cl+te', 'te+cl', 'cl cl', 'cl cl2', 'te te', 'cl short', 'cl long', 'cl huge', 'cl list', 'cl sign'),
  eol: weighted<string>([100, pick('\r\n')], [1, pick('\n', '\r', '\r\r\n')]),
  extra: weighted<string>([10, pick('')], [1, pick('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'garbage')]),
}).chain((m) => (m.framing === 'chunked' || m.framing === 'hostile' ? chunkedBody(m.body) : fc.constant('')).map((chunked) => {
  const n = m.body.length
  const fields: string[] = []
  let body = m.body
  switch (m.framing) {
    case 'length': fields.push(`Content-Length: ${n}`); break
    case 'chunked': fields.push(`Transfer-Encoding: ${m.te}`); body = chunked; break
    case 'hostile':
      switch (m.hostile) {
        case 'cl+te': fields.push(`Content-Length: ${n}`, 'Transfer-Encoding: chunked'); body = chunked; break
        case 'te+cl': fields.push('Transfer-Encoding: chunked', `Content-Length: ${chunked.length}`); body = chunked; break
        case 'cl cl': fields.push(`Content-Length: ${n}`, `Content-Length: ${n}`); break
        case 'cl cl2': fields.push(`Content-Length: ${n}`, `Content-Length: ${n + 1}`); break
        case 'te te': fields.push('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'); body = chunked; break
        case 'cl short': fields.push(`Content-Length: ${Math.max(0, n - 1)}`); break
        case 'cl long': fields.push(`Content-Length: ${n + 3}`); break
        case 'cl huge': fields.push('Content-Length: 18446744073709551616'); break
        case 'cl list': fields.push(`Content-Length: ${n}, ${n}`); break
        case 'cl sign': fields.push(`Content-Length: +${n}`); break
      }
  }
  return `${m.interim}${[m.statusLine, ...m.headers, ...fields].join(m.eol)}${m.eol}\r\n${body}${m.extra}`
}))

const mutation = fc.tuple(pick('insert', 'replace', 'delete'), fc.nat(), fc.constantFrom(...HOSTILE))
const responseBytes = fc.tuple(response, weighted<Array<[string, number, string]>>([2, fc.constant([])], [1, fc.array(mutation, { minLength: 1, maxLength: 2 })]))
  .map(([text, mutations]) => {
    let s = text
    for (const [op, at, ch] of mutations) {
      const k = at % (s.length + 1)
      s = op === 'insert' ? s.slice(0, k) + ch + s.slice(k) : op === 'replace' ? s.slice(0, k) + ch + s.slice(k + 1) : s.slice(0, k) + s.slice(k + 1)
    }
    return Buffer.from(s, 'latin1')
  })

t.test('against Node\'s http client: the same responses, or refused where Node refuses', async (t) => {
  const oracle = await ResponseOracle.start()
  t.teardown(() => oracle.close())
  const stats = { agreedAccepted: 0, agreedRefused: 0, stricter: new Map<string, number>() }
  await fc.assert(fc.asyncProperty(responseBytes, pick('GET', 'GET', 'POST', 'HEAD'), async (bytes, method) => {
    const n = await oracle.fetch(bytes, method)
    const o = ours(bytes, method)
    const problem = disagreement(o, n)
    if (problem !== undefined) {
      throw new Error(`${problem}\nmethod: ${method}\nbytes: ${JSON.stringify(bytes.toString('latin1'))}\nours: ${JSON.stringify(o)}\nNode: ${JSON.stringify(n)}`)
    }
    if (o.end === 'done') stats.agreedAccepted++
    else if (n.complete) stats.stricter.set(o.why, (stats.stricter.get(o.why) ?? 0) + 1)
    else stats.agreedRefused++
  }), { numRuns: 600 })
  t.comment(`accepted by both: ${stats.agreedAccepted}, refused by both: ${stats.agreedRefused}, refused only by ours: ${JSON.stringify(Object.fromEntries(stats.stricter))}`)
  t.ok(stats.agreedAccepted > 100, 'enough responses both accept')
  t.ok(stats.agreedRefused > 50, 'enough responses both refuse')
})

t.test('every intentional strictness still differs from Node, and is refused by ours', async (t) => {
  const oracle = await ResponseOracle.start()
  t.teardown(() => oracle.close())
  const examples: Record<string, string> = {
    'Transfer-Encoding in an HTTP/1.0 response': 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n',
    'chunked is not the last transfer coding': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc',
    'tab in Transfer-Encoding': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,\tchunked\r\n\r\n1\r\na\r\n0\r\n\r\n',
    'empty Transfer-Encoding element': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked\r\n\r\n1\r\na\r\n0\r\n\r\n',
    'invalid chunk extension': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;="x"\r\na\r\n0\r\n\r\n',
    'invalid character in the reason phrase': 'HTTP/1.1 200 \x00OK\r\nContent-Length: 0\r\n\r\n',
    'bare CR or LF before the status line': '\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    'invalid status code': 'HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n',
    'unsupported HTTP version': 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n',
    'Content-Length too large': 'HTTP/1.1 200 OK\r\nContent-Length: 9007199254740992\r\n\r\nabc',
    'chunk size too large': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20000000000000\r\nabc',
  }
  t.strictSame(Object.keys(examples).sort(), Object.keys(STRICTER).sort(), 'one example per intentional strictness')
  for (const [reason, text] of Object.entries(examples)) {
    const bytes = Buffer.from(text, 'latin1')
    t.strictSame({ end: ours(bytes, 'GET').end, why: ours(bytes, 'GET').why }, { end: 'error', why: reason }, `${reason}: ours refuses`)
    const n = await oracle.fetch(bytes, 'GET')
    // The large sizes make Node wait for a body that never comes: it took the head, and failed
    // only when the connection closed, not on the framing.
    t.ok(n.status !== undefined && (n.complete || n.error === 'ECONNRESET'), `${reason}: Node takes it (${n.error ?? 'whole'})`)
  }
})
