// Differential property test of the request parser against Node's own llhttp: generated request
// bytes (well-formed, then mutated the ways smuggling attempts are: duplicate and conflicting
// framing, casing, whitespace, obs-fold, bare CR/LF, NUL, long lines, odd chunk sizes and
// extensions, pipelined messages) go to a node:http server on loopback and through
// parseRequestHead + ChunkedDecoder. Whatever llhttp refuses, ours refuses; where both accept they
// agree on method, target, raw header list, Node's headers object, body bytes and trailers. Where
// ours is stricter, the reason must be one of STRICTER below, each refused on purpose.
import t from 'tap'
import fc from 'fast-check'
import { parseRequestHead } from '../../src/http/request-head.ts'
import { ChunkedDecoder } from '../../src/http/chunked.ts'
import { RequestOracle, type NodeRequest, type NodeRequestOutcome } from './llhttp-oracle.ts'

const MAX_HEAD = 16 * 1024

/** Refusals of ours where llhttp accepts, with the reason each is refused. */
const STRICTER: Record<string, string> = {
  'missing Host': 'RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400 (Node checks it outside llhttp)',
  'invalid Host': 'RFC 9112 §3.2: 400 for an invalid Host value (empty, or not uri-host[:port]); Node accepts any',
  'several Host fields': 'RFC 9112 §3.2: 400 for more than one Host line; llhttp accepts them',
  'invalid request line': 'RFC 9112 §3: one SP between the parts; llhttp skips extra SP before the target and takes HTTP/0.9',
  'HTTP version not supported': 'RFC 9110 §6.2: only HTTP/1.0 and 1.1 can be proxied here; llhttp accepts 0.9 and 2.0 spellings',
  'invalid character in the request target': 'RFC 9112 §3.2: a request-target has no fragment; "#" would make the sidecar and the app see different paths',
  'invalid request target': 'RFC 9112 §3.2.2: a reverse proxy takes absolute-form only for http and https',
  'invalid authority in the request target': 'RFC 9110 §4.2.4: userinfo in an http(s) URI is an error',
  'asterisk-form target with a method other than OPTIONS': 'RFC 9112 §3.2.4: "*" is for OPTIONS only',
  'invalid CONNECT target': 'RFC 9112 §3.2.3: CONNECT takes host:port only',
  'Transfer-Encoding in an HTTP/1.0 request': 'RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing',
  'transfer coding not implemented': 'RFC 9112 §6.1: 501 for a transfer coding other than chunked (the app would get a coded body without knowing)',
  'tab in Transfer-Encoding': 'llhttp reads "chunked<HTAB>" as another coding, OWS rules as chunked: any tab after the first coding is refused',
  'empty Transfer-Encoding element': 'RFC 9112 §6.1: an empty coding in the framing field is refused rather than skipped',
  'Content-Length too large': 'Content-Length above 2^53 - 1 cannot be counted exactly in JavaScript',
  'chunk size too large': 'chunk sizes above 2^53 - 1 cannot be counted exactly in JavaScript',
  'bare LF in the head': 'RFC 9112 §2.2 lets a recipient take a bare LF as a line end (llhttp does, and then reads "GET /" as HTTP/0.9); refused so the app cannot split lines differently',
  'invalid chunk extension': 'RFC 9112 §7.1.1: chunk-ext is ";" token [ "=" ( token / quoted-string ) ]; llhttp accepts an empty name and more',
  'bare CR or LF before the request line': 'RFC 9112 §2.2: only empty lines (CRLF) may precede a request-line; llhttp also skips a lone CR or LF there',
}

interface OurRequest { method: string, url: string, rawHeaders: string[], headers: Record<string, string | string[]>, body: string, trailers: string[], upgrade: boolean }
interface OurOutcome { requests: OurRequest[], end: 'done' | 'incomplete' | 'error' | 'closed', reason: string }

/** What the sidecar's parsers make of the bytes, message after message, as a connection would. */
function ours (bytes: Buffer): OurOutcome {
  const requests: OurRequest[] = []
  let pos = 0
  while (pos < bytes.length) {
    const r = parseRequestHead(bytes.subarray(pos), MAX_HEAD)
    if (r.kind === 'incomplete') return { requests, end: 'incomplete', reason: '' }
    if (r.kind === 'error') return { requests, end: 'error', reason: r.reason }
    const h = r.head
    const req: OurRequest = { method: h.method, url: h.target, rawHeaders: h.rawHeaders, headers: { ...h.headers }, body: '', trailers: [], upgrade: h.upgrade }
    let end = pos + h.headLength
    if (h.upgrade) {
      requests.push(req)
      return { requests, end: 'closed', reason: 'upgrade' }
    }
    if (h.body === 'length') {
      if (end + h.contentLength > bytes.length) return { requests, end: 'incomplete', reason: 'body' }
      req.body = bytes.toString('latin1', end, end + h.contentLength)
      end += h.contentLength
    } else if (h.body === 'chunked') {
      const d = new ChunkedDecoder()
      const stop = d.feed(bytes, end, (b, from, to) => { req.body += b.toString('latin1', from, to) })
      if (stop === -1) return { requests, end: 'error', reason: d.error ?? '' }
      if (!d.done) return { requests, end: 'incomplete', reason: 'body' }
      req.trailers = d.trailers
      end = stop
    }
    requests.push(req)
    if (!h.keepAlive) return { requests, end: 'closed', reason: 'not keep-alive' }
    pos = end
  }
  return { requests, end: 'done', reason: '' }
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/** Undefined when the outcomes agree by the property; else what is wrong. */
function disagreement (o: OurOutcome, l: NodeRequestOutcome): string | undefined {
  for (let i = 0; ; i++) {
    const mine = o.requests[i]
    const theirs: NodeRequest | undefined = l.requests[i]
    if (mine === undefined) {
      if (o.end === 'closed') return undefined
      const llhttpAccepted = theirs !== undefined && theirs.complete
      if (o.end === 'error') {
        if (llhttpAccepted && STRICTER[o.reason] === undefined) return `request ${i}: ours refused (${o.reason}), llhttp accepted it`
        return undefined
      }
      if (o.end === 'incomplete') return llhttpAccepted ? `request ${i}: ours waits for more bytes, llhttp saw a whole request` : undefined
      if (theirs !== undefined) return `llhttp saw a request ${i} after the last one ours found`
      if (l.error !== undefined) return `ours accepted every byte, llhttp refused (${l.error})`
      return undefined
    }
    if (theirs === undefined) return `request ${i}: ours accepted it, llhttp ${l.error === undefined ? 'did not see it' : `refused (${l.error})`}`
    if (!theirs.complete) return `request ${i}: ours accepted it whole, llhttp did not finish it (${l.error ?? 'no error'})`
    const a = { method: mine.method, url: mine.url, rawHeaders: mine.rawHeaders, headers: mine.headers, body: mine.body, trailers: mine.trailers, upgrade: mine.upgrade }
    const b = { method: theirs.method, url: theirs.url, rawHeaders: theirs.rawHeaders, headers: theirs.headers, body: theirs.body, trailers: theirs.trailers, upgrade: theirs.upgrade }
    if (!same(a, b)) return `request ${i} differs: ours ${JSON.stringify(a)}, llhttp ${JSON.stringify(b)}`
  }
}

// ── generators ────────────────────────────────────────────────────────────────────────────────

const pick = <T>(...xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs)
const weighted = <T>(...xs: Array<[number, fc.Arbitrary<T>]>): fc.Arbitrary<T> => fc.oneof(...xs.map(([weight, arbitrary]) => ({ weight, arbitrary })))
const str = (chars: string, min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...chars), minLength: min, maxLength: max })

const HOSTILE = ['\x00', '\r', '\n', '\t', ' ', '\x7f', '\x80', '\xff', '\x01', '\x0b', ':', ';', ',', '"', '#']

const method = weighted<string>([30, pick('GET', 'POST', 'PUT', 'DELETE', 'PATCH')], [2, pick('HEAD', 'OPTIONS', 'QUERY', 'M-SEARCH', 'PROPFIND')], [1, pick('get', 'FOO', 'CONNECT', 'G ET', 'GE\x00T', '')])
const pathChars = 'abz019/-._~%!$&\'()*+,;=:@?'
const target = weighted<string>(
  [40, str(pathChars, 0, 20).map((s) => '/' + s)],
  [1, pick('*', 'http://a.example/x?y', 'HTTPS://a.example', 'http://u@a/x', 'ftp://a/b', 'a/b', 'a.example:443', '/a#b', '/a{|}', '/\xe9', '/a\tb', '/a b', `/${'x'.repeat(3000)}`)]
)
const version = weighted<string>([40, pick('HTTP/1.1')], [4, pick('HTTP/1.0')], [1, pick('HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1', 'HTTP/0.9', '')])
const sep = weighted<string>([60, pick(' ')], [1, pick('  ', '\t', '')])
const nameArb = weighted<string>(
  [30, pick('Accept', 'X-A', 'x-b', 'Cookie', 'Set-Cookie', 'User-Agent', 'Content-Type', 'Referer', 'Expect', 'Upgrade', 'Connection', 'Host', 'Trailer')],
  [10, str('abcXYZ019-_.!#$%&\'*+^`|~', 1, 12)],
  [1, pick('X A', 'X-A ', ' X-A', 'X(A)', '', 'X\x00', 'Content-Length\t', 'Transfer-Encoding ')]
)
const valueChar = weighted<string>([200, fc.constantFrom(...'abcXYZ012 =/;,.-"\'()<>@[]{}?!~')], [3, pick('\t', ' ')], [2, pick('\x80', '\xe9', '\xff')], [1, fc.constantFrom(...HOSTILE)])
const valueArb = weighted<string>([30, fc.string({ unit: valueChar, maxLength: 24 })], [1, pick(' \t padded \t ', '', '  ', `${'v'.repeat(4000)}`, 'a\r\n b', 'a\r\n\tb', 'keep-alive, Upgrade', 'close', 'Keep-Alive', '100-continue', 'websocket')])
const colon = weighted<string>([60, pick(': ', ':')], [1, pick(' : ', '\t:', ':\t', ':  ')])
const header = fc.tuple(nameArb, colon, valueArb).map(([n, c, v]) => `${n}${c}${v}`)

const bodyArb = weighted<string>([3, pick('')], [6, fc.string({ unit: fc.constantFrom(...'abc{}":=&\r\n\x00\xff0 '), maxLength: 60 })])
const hexSize = (n: number): fc.Arbitrary<string> => pick(n.toString(16), n.toString(16).toUpperCase(), `00${n.toString(16)}`, n.toString(16))
const ext = weighted<string>([30, pick('')], [3, pick(';a', ';a=b', ';a="q d"', ';a="x\\"y";b', ';a=b;c')], [1, pick(' ;a', ';a =b', ';a= b', ';', ';"x"', ';a=\x00', '; a', ' ', '\t')])
const trailerArb = weighted<string>([12, pick('')], [3, pick('X-T: 1\r\n', 'X-T: 1\r\nX-U:  2 \r\n')], [1, pick('X-T : 1\r\n', 'X-T: 1\r\n 2\r\n', 'X-T\r\n', 'X-T: \x00\r\n', 'X-T: 1\n', 'Content-Length: 5\r\n')])

/** A body in chunks: sizes from the cut points, each size spelt one way, extensions, trailers. */
const chunkedBody = (body: string): fc.Arbitrary<string> => fc.tuple(
  fc.uniqueArray(fc.nat({ max: Math.max(0, body.length) }), { maxLength: 3 }),
  fc.array(fc.tuple(hexSize(0), ext), { minLength: 4, maxLength: 4 }),
  ext, trailerArb,
  weighted<string>([40, pick('\r\n')], [1, pick('\n', '\r', '', 'x\r\n')])
).chain(([cuts, spell, lastExt, trailers, afterData]) => {
  const points = [...new Set([0, ...cuts, body.length])].sort((x, y) => x - y)
  const pieces = points.slice(1).map((p, k) => body.slice(points[k], p)).filter((p) => p.length > 0)
  return fc.tuple(...pieces.map((p) => hexSize(p.length)), fc.constant(0)).map((sizes) => {
    let s = ''
    pieces.forEach((p, k) => { s += `${sizes[k] as string}${spell[k % spell.length]?.[1] ?? ''}\r\n${p}${k === pieces.length - 1 ? afterData : '\r\n'}` })
    return `${s}0${lastExt}\r\n${trailers}\r\n`
  })
})

/** One request: its head lines and body with a framing, honest or not. */
const message = fc.record({
  leading: weighted<string>([30, pick('')], [1, pick('\r\n', '\n', '\r\n\r\n')]),
  method,
  sp1: sep,
  target,
  sp2: sep,
  version,
  host: weighted<string>([40, pick('Host: a.example\r\n')], [1, pick('', 'Host: \r\n', 'Host: a\r\nHost: a\r\n', 'Host: a/b\r\n', 'host:  x:8080 \r\n')]),
  headers: fc.array(header, { maxLength: 4 }),
  body: bodyArb,
  framing: weighted<string>([6, pick('length')], [6, pick('chunked')], [3, pick('none')], [3, pick('hostile')]),
  te: weighted<string>([30, pick('chunked')], [1, pick('Chunked', 'chunked, chunked', 'gzip, chunked', 'chunked, gzip', 'identity', 'chunked;x', ', chunked', 'chunked,', ' chunked ', 'CHUNKED')]),
  clSpell: weighted<string>([30, pick('%d')], [1, pick('0%d', '+%d', '%d, %d', ' %d ', '%d.0', '-%d')]),
  hostile: pick('cl+te', 'te+cl', 'cl cl', 'cl cl2', 'te te', 'cl short', 'cl long', 'cl huge', 'te 1.0', 'te split'),
  eol: weighted<string>([100, pick('\r\n')], [1, pick('\n', '\r', '\r\r\n')]),
}).chain((m) => (m.framing === 'chunked' || m.framing === 'hostile' ? chunkedBody(m.body) : fc.constant('')).map((chunked) => {
  const n = m.body.length
  const lines = [`${m.method}${m.sp1}${m.target}${m.sp2}${m.version}`]
  let body = ''
  const fields: string[] = []
  if (m.framing === 'length') {
    fields.push(`Content-Length: ${m.clSpell.replaceAll('%d', String(n))}`)
    body = m.body
  } else if (m.framing === 'chunked') {
    fields.push(`Transfer-Encoding: ${m.te}`)
    body = chunked
  } else if (m.framing === 'hostile') {
    switch (m.hostile) {
      case 'cl+te': fields.push(`Content-Length: ${n}`, 'Transfer-Encoding: chunked'); body = chunked; break
      case 'te+cl': fields.push('Transfer-Encoding: chunked', `Content-Length: ${chunked.length}`); body = chunked; break
      case 'cl cl': fields.push(`Content-Length: ${n}`, `Content-Length: ${n}`); body = m.body; break
      case 'cl cl2': fields.push(`Content-Length: ${n}`, `Content-Length: ${n + 1}`); body = m.body; break
      case 'te te': fields.push('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'); body = chunked; break
      case 'cl short': fields.push(`Content-Length: ${Math.max(0, n - 1)}`); body = m.body; break
      case 'cl long': fields.push(`Content-Length: ${n + 3}`); body = m.body; break
      case 'cl huge': fields.push('Content-Length: 18446744073709551616'); body = m.body; break
      case 'te 1.0': lines[0] = `${m.method} ${m.target} HTTP/1.0`; fields.push('Transfer-Encoding: chunked'); body = chunked; break
      case 'te split': fields.push('Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'); body = chunked; break
    }
  }
  const head = [...lines, ...(m.host === '' ? [] : [m.host.slice(0, -2)]), ...m.headers, ...fields]
  return `${m.leading}${head.join(m.eol)}${m.eol}\r\n${body}`
}))

/** Byte-level damage on top: a few inserted, replaced or removed bytes from the hostile set. */
const mutation = fc.tuple(pick('insert', 'replace', 'delete'), fc.nat(), fc.constantFrom(...HOSTILE))
const requestBytes = fc.tuple(fc.array(message, { minLength: 1, maxLength: 3 }), weighted<Array<[string, number, string]>>([2, fc.constant([])], [1, fc.array(mutation, { minLength: 1, maxLength: 2 })]))
  .map(([messages, mutations]) => {
    let s = messages.join('')
    for (const [op, at, ch] of mutations) {
      const k = at % (s.length + 1)
      s = op === 'insert' ? s.slice(0, k) + ch + s.slice(k) : op === 'replace' ? s.slice(0, k) + ch + s.slice(k + 1) : s.slice(0, k) + s.slice(k + 1)
    }
    return Buffer.from(s, 'latin1')
  })

t.test('against llhttp: whatever it refuses, ours refuses; where both accept, the same requests', async (t) => {
  const oracle = await RequestOracle.start()
  t.teardown(() => oracle.close())
  const stats = { agreedAccepted: 0, agreedRefused: 0, stricter: new Map<string, number>() }
  await fc.assert(fc.asyncProperty(requestBytes, async (bytes) => {
    const l = await oracle.send(bytes)
    const o = ours(bytes)
    const problem = disagreement(o, l)
    if (problem !== undefined) {
      throw new Error(`${problem}\nbytes: ${JSON.stringify(bytes.toString('latin1'))}\nours: ${JSON.stringify(o)}\nllhttp: ${JSON.stringify(l)}`)
    }
    if (o.end === 'error' && l.requests.length > o.requests.length && l.requests[o.requests.length]?.complete === true) {
      stats.stricter.set(o.reason, (stats.stricter.get(o.reason) ?? 0) + 1)
    } else if (o.end === 'error') stats.agreedRefused++
    else stats.agreedAccepted++
  }), { numRuns: 1000 })
  t.comment(`accepted by both: ${stats.agreedAccepted}, refused by both: ${stats.agreedRefused}, refused only by ours: ${JSON.stringify(Object.fromEntries(stats.stricter))}`)
  // A generator that stopped producing either side would make the property empty.
  t.ok(stats.agreedAccepted > 40, 'enough requests both accept')
  t.ok(stats.agreedRefused > 40, 'enough requests both refuse')
})

t.test('every intentional strictness still differs from llhttp, and is refused by ours', async (t) => {
  const oracle = await RequestOracle.start()
  t.teardown(() => oracle.close())
  const H = 'Host: a\r\n'
  const examples: Record<string, string> = {
    'missing Host': 'GET / HTTP/1.1\r\n\r\n',
    'invalid Host': 'GET / HTTP/1.1\r\nHost: \r\n\r\n',
    'several Host fields': 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    'invalid request line': `GET  / HTTP/1.1\r\n${H}\r\n`,
    'HTTP version not supported': `GET / HTTP/2.0\r\n${H}\r\n`,
    'invalid character in the request target': `GET /a#b HTTP/1.1\r\n${H}\r\n`,
    'invalid request target': `GET ftp://a/b HTTP/1.1\r\n${H}\r\n`,
    'invalid authority in the request target': `GET http://u@a/b HTTP/1.1\r\n${H}\r\n`,
    'asterisk-form target with a method other than OPTIONS': `GET * HTTP/1.1\r\n${H}\r\n`,
    'invalid CONNECT target': `CONNECT a.example HTTP/1.1\r\n${H}\r\n`,
    'Transfer-Encoding in an HTTP/1.0 request': 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'transfer coding not implemented': `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    'tab in Transfer-Encoding': `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip,\tchunked\r\n\r\n0\r\n\r\n`,
    'empty Transfer-Encoding element': `POST / HTTP/1.1\r\n${H}Transfer-Encoding: , chunked\r\n\r\n0\r\n\r\n`,
    'Content-Length too large': `POST / HTTP/1.1\r\n${H}Content-Length: 9007199254740992\r\n\r\n`,
    'chunk size too large': `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n20000000000000\r\n`,
    'bare LF in the head': 'GET /\nHost: a\r\n\r\n',
    'invalid chunk extension': `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1;="x"\r\na\r\n0\r\n\r\n`,
    'bare CR or LF before the request line': `\rGET / HTTP/1.1\r\n${H}\r\n`,
  }
  t.strictSame(Object.keys(examples).sort(), Object.keys(STRICTER).sort(), 'one example per intentional strictness')
  for (const [reason, text] of Object.entries(examples)) {
    const bytes = Buffer.from(text, 'latin1')
    const o = ours(bytes)
    const l = await oracle.send(bytes)
    t.strictSame({ end: o.end, reason: o.reason }, { end: 'error', reason }, `${reason}: ours refuses`)
    // The large sizes are accepted by llhttp and only wait for their body, so "not refused" is
    // what shows the difference: no llhttp error other than the end of the input.
    t.ok(l.error === undefined || l.error === 'HPE_INVALID_EOF_STATE', `${reason}: llhttp accepts (${l.error ?? 'no error'}, ${l.requests.length} request)`)
  }
})
