// Differential property test of the request parser against Node's own llhttp: generated request
// bytes (well-formed, then mutated the ways smuggling attempts are: duplicate and conflicting
// framing, casing, whitespace, obs-fold, bare CR/LF, NUL, long lines, odd chunk sizes and
// extensions, pipelined messages) go to a node:http server on loopback and through
// parseRequestHead + ChunkedDecoder. Whatever llhttp refuses, ours refuses; where both accept they
// agree on method, target, raw header list, Node's headers object, body bytes, trailers,
// keep-alive and 100-continue. Where ours is stricter, the reason must be one of STRICTER below, each refused on
// purpose.
import t from 'tap'
import fc from 'fast-check'
import { parseRequestHead } from '../../src/http/request-head.ts'
import { ChunkedDecoder } from '../../src/http/chunked.ts'
import { RequestOracle, type NodeRequest, type NodeRequestOutcome } from './llhttp-oracle.ts'
import { requestBytes } from './generators.ts'

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

interface OurRequest { method: string, url: string, rawHeaders: string[], headers: Record<string, string | string[]>, body: string, trailers: string[], upgrade: boolean, keepAlive: boolean, expectContinue: boolean }
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
    const req: OurRequest = { method: h.method, url: h.target, rawHeaders: h.rawHeaders, headers: { ...h.headers }, body: '', trailers: [], upgrade: h.upgrade, keepAlive: h.keepAlive && !h.upgrade, expectContinue: h.expectContinue }
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
    const a = { method: mine.method, url: mine.url, rawHeaders: mine.rawHeaders, headers: mine.headers, body: mine.body, trailers: mine.trailers, upgrade: mine.upgrade, keepAlive: mine.keepAlive, expectContinue: mine.expectContinue }
    const b = { method: theirs.method, url: theirs.url, rawHeaders: theirs.rawHeaders, headers: theirs.headers, body: theirs.body, trailers: theirs.trailers, upgrade: theirs.upgrade, keepAlive: theirs.keepAlive, expectContinue: theirs.expectContinue }
    if (!same(a, b)) return `request ${i} differs: ours ${JSON.stringify(a)}, llhttp ${JSON.stringify(b)}`
  }
}

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

t.test('every byte value in each part of a request: refused by ours whenever llhttp refuses it', async (t) => {
  const oracle = await RequestOracle.start()
  t.teardown(() => oracle.close())
  const chunked = 'POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n'
  const templates = [
    'GET /a%cb HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET http://a%c/b HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: a%c\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: a\r\nX-A%c: b\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: a\r\nX-A: a%cb\r\n\r\n',
    `${chunked}1;a%c\r\nx\r\n0\r\n\r\n`,
    `${chunked}1;a=b%c\r\nx\r\n0\r\n\r\n`,
    `${chunked}1;a="%c"\r\nx\r\n0\r\n\r\n`,
    `${chunked}1;a="\\%c"\r\nx\r\n0\r\n\r\n`,
    `${chunked}1\r\nx\r\n0\r\nX-T: a%c\r\n\r\n`,
  ]
  const wrong: string[] = []
  for (const template of templates) {
    for (let c = 0; c < 256; c++) {
      const bytes = Buffer.from(template.replace('%c', String.fromCharCode(c)), 'latin1')
      const l = await oracle.send(bytes)
      const llhttpAccepts = l.error === undefined && l.requests.length === 1 && l.requests[0]?.complete === true
      const o = ours(bytes)
      const oursAccepts = o.end !== 'error' && o.end !== 'incomplete'
      if (llhttpAccepts === oursAccepts) continue
      if (!llhttpAccepts || STRICTER[o.reason] === undefined) wrong.push(`${JSON.stringify(bytes.toString('latin1'))}: llhttp ${l.error ?? 'accepts'}, ours ${oursAccepts ? 'accepts' : o.reason}`)
    }
  }
  t.strictSame(wrong, [], `${templates.length} places × 256 byte values`)
})
