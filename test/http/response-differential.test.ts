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
import { pick, responseBytes } from './generators.ts'

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

t.test('every byte value in each part of a response: refused by ours whenever Node refuses it', async (t) => {
  const oracle = await ResponseOracle.start()
  t.teardown(() => oracle.close())
  const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
  const templates = [
    'HTTP/1.1 200 O%cK\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nX-A%c: b\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nX-A: a%cb\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nContent-Length: 1%c\r\n\r\nx',
    `${chunked}1;a%c\r\nx\r\n0\r\n\r\n`,
    `${chunked}1;a="%c"\r\nx\r\n0\r\n\r\n`,
    `${chunked}1\r\nx\r\n0\r\nX-T: a%c\r\n\r\n`,
  ]
  const wrong: string[] = []
  for (const template of templates) {
    for (let c = 0; c < 256; c++) {
      const bytes = Buffer.from(template.replace('%c', String.fromCharCode(c)), 'latin1')
      const n = await oracle.fetch(bytes, 'GET')
      const nodeAccepts = n.complete && n.status !== undefined
      const o = ours(bytes, 'GET')
      const oursAccepts = o.end === 'done'
      if (nodeAccepts === oursAccepts) continue
      if (!nodeAccepts || STRICTER[o.why] === undefined) wrong.push(`${JSON.stringify(bytes.toString('latin1'))}: Node ${n.error ?? (n.complete ? 'accepts' : 'incomplete')}, ours ${oursAccepts ? 'accepts' : o.why}`)
    }
  }
  t.strictSame(wrong, [], `${templates.length} places × 256 byte values`)
})
