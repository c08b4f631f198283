// The request-head parser, rule by rule: each row is a whole head and the whole result expected
// (every field of the parsed head, or the refusal with its status); then every row again split at
// every byte offset, as a socket may deliver it.
import t from 'tap'
import { parseRequestHead, type RequestHead, type RequestHeadResult } from '../../src/http/request-head.ts'

const MAX = 8192

/** Every field of a head as plain data (the parser's object builds `headers` lazily). */
function plain (r: RequestHeadResult): unknown {
  if (r.kind !== 'head') return r
  const h: RequestHead = r.head
  return {
    kind: 'head',
    head: {
      method: h.method,
      target: h.target,
      path: h.path,
      query: h.query,
      absolute: h.absolute,
      versionMinor: h.versionMinor,
      rawHeaders: h.rawHeaders,
      headers: { ...h.headers },
      body: h.body,
      contentLength: h.contentLength,
      keepAlive: h.keepAlive,
      upgrade: h.upgrade,
      expectContinue: h.expectContinue,
      headStart: h.headStart,
      headLength: h.headLength,
    },
  }
}

type Want = Partial<Omit<RequestHead, 'headers'>> & { headers?: Record<string, string | string[]> }

/** The expected head: a GET / HTTP/1.1 with Host: x unless `want` says otherwise. */
function head (bytes: string, want: Want): unknown {
  const rawHeaders = want.rawHeaders ?? ['Host', 'x']
  return {
    kind: 'head',
    head: {
      method: 'GET',
      target: '/',
      path: '/',
      query: '',
      absolute: false,
      versionMinor: 1,
      headers: Object.fromEntries(rawHeaders.flatMap((v, i, a) => i % 2 === 0 ? [[v.toLowerCase(), a[i + 1]]] : [])),
      body: 'none',
      contentLength: 0,
      keepAlive: true,
      upgrade: false,
      expectContinue: false,
      headStart: 0,
      headLength: Buffer.byteLength(bytes, 'latin1'),
      ...want,
      rawHeaders,
    },
  }
}

const err = (status: number, reason: string): unknown => ({ kind: 'error', status, reason })

const H = 'Host: x\r\n'

const ACCEPTED: Array<[string, string, Want]> = [
  ['minimal GET', `GET / HTTP/1.1\r\n${H}\r\n`, {}],
  ['path and query', `GET /a/b?c=d&e=?f HTTP/1.1\r\n${H}\r\n`, { target: '/a/b?c=d&e=?f', path: '/a/b', query: 'c=d&e=?f' }],
  ['empty query', `GET /a? HTTP/1.1\r\n${H}\r\n`, { target: '/a?', path: '/a', query: '' }],
  ['unusual visible target bytes pass as they are', 'GET /a{|}^`\\%zz HTTP/1.1\r\nHost: x\r\n\r\n', { target: '/a{|}^`\\%zz', path: '/a{|}^`\\%zz' }],
  ['absolute-form', `GET http://other.example:8080/x/y?q=1 HTTP/1.1\r\n${H}\r\n`, { target: 'http://other.example:8080/x/y?q=1', path: '/x/y', query: 'q=1', absolute: true }],
  ['absolute-form without a path', `GET HTTPS://other.example?q HTTP/1.1\r\n${H}\r\n`, { target: 'HTTPS://other.example?q', path: '/', query: 'q', absolute: true }],
  ['asterisk-form for OPTIONS', `OPTIONS * HTTP/1.1\r\n${H}\r\n`, { method: 'OPTIONS', target: '*', path: '*' }],
  ['CONNECT authority-form', `CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n`, { method: 'CONNECT', target: 'a.example:443', path: 'a.example:443', upgrade: true, rawHeaders: ['Host', 'a.example:443'] }],
  ['leading empty lines are skipped and counted', `\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`, { headStart: 4 }],
  ['HTTP/1.0 without Host closes by default', 'GET / HTTP/1.0\r\n\r\n', { versionMinor: 0, keepAlive: false, rawHeaders: [] }],
  ['HTTP/1.0 keep-alive', 'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n', { versionMinor: 0, keepAlive: true, rawHeaders: ['Connection', 'Keep-Alive'] }],
  ['HTTP/1.1 Connection: close', `GET / HTTP/1.1\r\n${H}Connection: foo, CLOSE\r\n\r\n`, { keepAlive: false, rawHeaders: ['Host', 'x', 'Connection', 'foo, CLOSE'] }],
  ['close wins over keep-alive', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n', { versionMinor: 0, keepAlive: false, rawHeaders: ['Connection', 'keep-alive', 'Connection', 'close'], headers: { connection: 'keep-alive, close' } }],
  ['OWS around values is trimmed, inner kept', `GET / HTTP/1.1\r\nHost:x\r\nX-A: \t a  b \t\r\nX-B:\r\nX-C:   \r\n\r\n`, { rawHeaders: ['Host', 'x', 'X-A', 'a  b', 'X-B', '', 'X-C', ''] }],
  ['obs-text in a value is latin1', `GET / HTTP/1.1\r\n${H}X-A: \xe9\xff\x80\r\n\r\n`, { rawHeaders: ['Host', 'x', 'X-A', '\xe9\xff\x80'] }],
  ['Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 0012\r\n\r\n`, { method: 'POST', body: 'length', contentLength: 12, rawHeaders: ['Host', 'x', 'Content-Length', '0012'] }],
  ['Content-Length 0 has no body', `POST / HTTP/1.1\r\n${H}content-length: 0\r\n\r\n`, { method: 'POST', body: 'none', contentLength: 0, rawHeaders: ['Host', 'x', 'content-length', '0'] }],
  ['largest safe Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 9007199254740991\r\n\r\n`, { method: 'POST', body: 'length', contentLength: 9007199254740991, rawHeaders: ['Host', 'x', 'Content-Length', '9007199254740991'] }],
  ['chunked with spaces and a tab before it', `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\t chunked  \r\n\r\n`, { method: 'POST', body: 'chunked', rawHeaders: ['Host', 'x', 'Transfer-Encoding', 'chunked'] }],
  ['chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n\r\n`, { method: 'POST', body: 'chunked', rawHeaders: ['Host', 'x', 'Transfer-Encoding', 'Chunked'] }],
  ['Expect: 100-continue', `PUT / HTTP/1.1\r\n${H}Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n`, { method: 'PUT', expectContinue: true, body: 'length', contentLength: 3, rawHeaders: ['Host', 'x', 'Expect', '100-Continue', 'Content-Length', '3'] }],
  ['100-continue in an Expect list', `PUT / HTTP/1.1\r\n${H}Expect: foo\r\nExpect: bar, 100-CONTINUE\r\n\r\n`, { method: 'PUT', expectContinue: true, rawHeaders: ['Host', 'x', 'Expect', 'foo', 'Expect', 'bar, 100-CONTINUE'], headers: { host: 'x', expect: 'foo, bar, 100-CONTINUE' } }],
  ['another expectation only', `PUT / HTTP/1.1\r\n${H}Expect: 100-continued\r\n\r\n`, { method: 'PUT', rawHeaders: ['Host', 'x', 'Expect', '100-continued'] }],
  ['Expect in HTTP/1.0 is ignored', 'PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n', { method: 'PUT', versionMinor: 0, keepAlive: false, rawHeaders: ['Expect', '100-continue'] }],
  ['upgrade', `GET /ws HTTP/1.1\r\n${H}Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n`, { target: '/ws', path: '/ws', upgrade: true, rawHeaders: ['Host', 'x', 'Connection', 'keep-alive, Upgrade', 'Upgrade', 'websocket'] }],
  ['Upgrade without Connection: upgrade is no upgrade', `GET / HTTP/1.1\r\n${H}Upgrade: websocket\r\n\r\n`, { rawHeaders: ['Host', 'x', 'Upgrade', 'websocket'] }],
  ['Node joining rules for headers', `GET / HTTP/1.1\r\n${H}Set-Cookie: a\r\nset-cookie: b\r\nCookie: c=1\r\nCOOKIE: d=2\r\nAccept: x\r\naccept: y\r\nUser-Agent: u1\r\nUser-Agent: u2\r\n__proto__: p\r\n\r\n`, {
    rawHeaders: ['Host', 'x', 'Set-Cookie', 'a', 'set-cookie', 'b', 'Cookie', 'c=1', 'COOKIE', 'd=2', 'Accept', 'x', 'accept', 'y', 'User-Agent', 'u1', 'User-Agent', 'u2', '__proto__', 'p'],
    headers: { host: 'x', 'set-cookie': ['a', 'b'], cookie: 'c=1; d=2', accept: 'x, y', 'user-agent': 'u1', ['__proto__']: 'p' },
  }],
  ['every tchar in a name', `GET / HTTP/1.1\r\n${H}!#$%&'*+-.^_\`|~09azAZ: v\r\n\r\n`, { rawHeaders: ['Host', 'x', "!#$%&'*+-.^_`|~09azAZ", 'v'] }],
  ['IPv6 Host with a port', 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n', { rawHeaders: ['Host', '[::1]:8080'] }],
  ['a known extension method', `PROPFIND / HTTP/1.1\r\n${H}\r\n`, { method: 'PROPFIND' }],
]

const REFUSED: Array<[string, string, number, string]> = [
  ['bare LF line ends', 'GET / HTTP/1.1\nHost: x\n\n', 400, 'bare LF in the head'],
  ['bare LF after the request line', `GET / HTTP/1.1\r\nHost: x\n\r\n`, 400, 'bare LF in the head'],
  ['bare LF as a leading empty line', '\nGET / HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bare CR or LF before the request line'],
  ['bare CR as a leading empty line', '\r\n\rGET / HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bare CR or LF before the request line'],
  ['bare CR in a value', `GET / HTTP/1.1\r\nX-A: a\rTransfer-Encoding: chunked\r\n${H}\r\n`, 400, 'bare CR in a field value'],
  ['bare CR in the request line', `GET /a\r HTTP/1.1\r\n${H}\r\n`, 400, 'invalid character in the request target'],
  ['obs-fold', `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`, 400, 'obsolete line folding'],
  ['obs-fold with a tab', `GET / HTTP/1.1\r\n${H}X-A: a\r\n\tb\r\n\r\n`, 400, 'obsolete line folding'],
  ['whitespace before the colon', `GET / HTTP/1.1\r\n${H}X-A : a\r\n\r\n`, 400, 'whitespace before the colon of a field'],
  ['a tab before the colon', `GET / HTTP/1.1\r\n${H}Transfer-Encoding\t: chunked\r\n\r\n`, 400, 'whitespace before the colon of a field'],
  ['a space in a name', `GET / HTTP/1.1\r\n${H}Bad Name: y\r\n\r\n`, 400, 'whitespace before the colon of a field'],
  ['an empty name', `GET / HTTP/1.1\r\n${H}: y\r\n\r\n`, 400, 'invalid character in field name'],
  ['a control character in a name', `GET / HTTP/1.1\r\n${H}X-A\x01: y\r\n\r\n`, 400, 'invalid character in field name'],
  ['a non-tchar in a name', `GET / HTTP/1.1\r\n${H}X(A): y\r\n\r\n`, 400, 'invalid character in field name'],
  ['a field line without a colon', `GET / HTTP/1.1\r\n${H}X-A\r\n\r\n`, 400, 'field line without a colon'],
  ['NUL in a value', `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400, 'invalid character in field value'],
  ['DEL in a value', `GET / HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n`, 400, 'invalid character in field value'],
  ['a vertical tab in a value', `GET / HTTP/1.1\r\n${H}X-A: a\x0bb\r\n\r\n`, 400, 'invalid character in field value'],
  ['two spaces after the method', `GET  / HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request line'],
  ['two spaces before the version', `GET /  HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request line'],
  ['a space after the version', `GET / HTTP/1.1 \r\n${H}\r\n`, 400, 'invalid HTTP version'],
  ['a tab as separator', `GET\t/ HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request method'],
  ['HTTP/0.9 request line', 'GET /a\r\n\r\n', 400, 'invalid request line'],
  ['no method', ` / HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request method'],
  ['a non-token method', `GE(T / HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request method'],
  ['an unknown method', `FOO / HTTP/1.1\r\n${H}\r\n`, 501, 'method not implemented'],
  ['a lower-case method (methods are case-sensitive)', `get / HTTP/1.1\r\n${H}\r\n`, 501, 'method not implemented'],
  ['a fragment in the target', `GET /a#b HTTP/1.1\r\n${H}\r\n`, 400, 'invalid character in the request target'],
  ['a non-ASCII byte in the target', `GET /\xe9 HTTP/1.1\r\n${H}\r\n`, 400, 'invalid character in the request target'],
  ['a tab in the target', `GET /a\tb HTTP/1.1\r\n${H}\r\n`, 400, 'invalid character in the request target'],
  ['a relative target', `GET a/b HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request target'],
  ['an absolute-form target of another scheme', `GET ftp://a/b HTTP/1.1\r\n${H}\r\n`, 400, 'invalid request target'],
  ['an absolute-form target with userinfo', `GET http://u:p@a/b HTTP/1.1\r\n${H}\r\n`, 400, 'invalid authority in the request target'],
  ['an absolute-form target without authority', `GET http:///b HTTP/1.1\r\n${H}\r\n`, 400, 'empty authority in the request target'],
  ['asterisk-form with GET', `GET * HTTP/1.1\r\n${H}\r\n`, 400, 'asterisk-form target with a method other than OPTIONS'],
  ['CONNECT with origin-form', `CONNECT /a HTTP/1.1\r\n${H}\r\n`, 400, 'invalid CONNECT target'],
  ['CONNECT without a port', `CONNECT a.example HTTP/1.1\r\n${H}\r\n`, 400, 'invalid CONNECT target'],
  ['HTTP/2.0', `GET / HTTP/2.0\r\n${H}\r\n`, 505, 'HTTP version not supported'],
  ['HTTP/1.2', `GET / HTTP/1.2\r\n${H}\r\n`, 505, 'HTTP version not supported'],
  ['a lower-case version', `GET / http/1.1\r\n${H}\r\n`, 400, 'invalid HTTP version'],
  ['a version with two digits', `GET / HTTP/1.10\r\n${H}\r\n`, 400, 'invalid HTTP version'],
  ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n', 400, 'missing Host'],
  ['an empty Host', 'GET / HTTP/1.1\r\nHost: \r\n\r\n', 400, 'invalid Host'],
  ['an empty Host in HTTP/1.0', 'GET / HTTP/1.0\r\nHost:\r\n\r\n', 400, 'invalid Host'],
  ['a Host with a path', 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n', 400, 'invalid Host'],
  ['a Host with userinfo', 'GET / HTTP/1.1\r\nHost: u@a\r\n\r\n', 400, 'invalid Host'],
  ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 400, 'several Host fields'],
  ['two Host fields in HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'several Host fields'],
  ['Content-Length with Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n`, 400, 'both Content-Length and Transfer-Encoding'],
  ['Transfer-Encoding with Content-Length', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n`, 400, 'both Content-Length and Transfer-Encoding'],
  ['two equal Content-Lengths', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\n`, 400, 'several Content-Length fields'],
  ['two different Content-Lengths', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 40\r\n\r\n`, 400, 'several Content-Length fields'],
  ['a Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\n`, 400, 'invalid Content-Length'],
  ['a signed Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\n`, 400, 'invalid Content-Length'],
  ['a negative Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400, 'invalid Content-Length'],
  ['a hex Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 0x10\r\n\r\n`, 400, 'invalid Content-Length'],
  ['an empty Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length:\r\n\r\n`, 400, 'empty Content-Length'],
  ['a Content-Length above 2^53 - 1', `POST / HTTP/1.1\r\n${H}Content-Length: 9007199254740992\r\n\r\n`, 400, 'Content-Length too large'],
  ['a Content-Length beyond 2^64', `POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n`, 400, 'Content-Length too large'],
  ['chunked not last', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n`, 400, 'chunked is not the last transfer coding'],
  ['chunked twice', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n`, 400, 'chunked is not the last transfer coding'],
  ['chunked twice on two lines', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`, 400, 'chunked is not the last transfer coding'],
  ['only gzip', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n`, 400, 'the last transfer coding is not chunked'],
  ['chunked with a parameter', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked;q=1\r\n\r\n`, 400, 'the last transfer coding is not chunked'],
  ['a tab after chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\t\r\n\r\n`, 400, 'tab in Transfer-Encoding'],
  ['a tab between codings', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip,\tchunked\r\n\r\n`, 400, 'tab in Transfer-Encoding'],
  ['an empty Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n\r\n`, 400, 'empty Transfer-Encoding element'],
  ['an empty Transfer-Encoding element', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: , chunked\r\n\r\n`, 400, 'empty Transfer-Encoding element'],
  ['a misspelt chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunkd\r\n\r\n`, 400, 'the last transfer coding is not chunked'],
  ['gzip before chunked is not implemented', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n`, 501, 'transfer coding not implemented'],
  ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 400, 'Transfer-Encoding in an HTTP/1.0 request'],
]

t.test('accepted heads: every field of the result', async (t) => {
  for (const [name, bytes, want] of ACCEPTED) {
    t.strictSame(plain(parseRequestHead(Buffer.from(bytes, 'latin1'), MAX)), head(bytes, want), name)
  }
})

t.test('refused heads: status and reason', async (t) => {
  for (const [name, bytes, status, reason] of REFUSED) {
    t.strictSame(parseRequestHead(Buffer.from(bytes, 'latin1'), MAX), err(status, reason), name)
  }
})

t.test('headLength ends the head; the bytes after it are not looked at', async (t) => {
  const bytes = `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello\nGARBAGE\r\n`
  const r = parseRequestHead(Buffer.from(bytes), MAX)
  t.equal(r.kind === 'head' && r.head.headLength, bytes.indexOf('hello'))
})

t.test('the head size limit: 431 once the head is longer, incomplete until then', async (t) => {
  const bytes = `GET / HTTP/1.1\r\n${H}X-A: ${'a'.repeat(100)}\r\n\r\n`
  const n = bytes.length
  t.equal(parseRequestHead(Buffer.from(bytes), n).kind, 'head', 'exactly at the limit')
  t.strictSame(parseRequestHead(Buffer.from(bytes), n - 1), err(431, 'request head too large'), 'one byte over')
  t.strictSame(parseRequestHead(Buffer.from(bytes.slice(0, 50)), 50), err(431, 'request head too large'), 'a prefix as long as the limit')
  t.strictSame(parseRequestHead(Buffer.from(bytes.slice(0, 49)), 50), { kind: 'incomplete' }, 'a prefix shorter than the limit')
  t.strictSame(parseRequestHead(Buffer.from(`GET /${'a'.repeat(100)}`), 50), err(431, 'request head too large'), 'a request line over the limit')
  t.strictSame(parseRequestHead(Buffer.from('\r\n'.repeat(30)), 50), err(431, 'request head too large'), 'endless empty lines')
})

t.test('incomplete heads', async (t) => {
  for (const bytes of ['', '\r', '\r\n', 'GET', `GET / HTTP/1.1\r`, `GET / HTTP/1.1\r\n`, `GET / HTTP/1.1\r\n${H}`, `GET / HTTP/1.1\r\n${H}\r`]) {
    t.strictSame(parseRequestHead(Buffer.from(bytes), MAX), { kind: 'incomplete' }, JSON.stringify(bytes))
  }
})

t.test('split at every offset: each prefix is incomplete or already the same answer', async (t) => {
  for (const [name, bytes] of [...ACCEPTED.map(([n, b]) => [n, b] as const), ...REFUSED.map(([n, b]) => [n, b] as const)]) {
    const buf = Buffer.from(bytes, 'latin1')
    const whole = plain(parseRequestHead(buf, MAX))
    let ok = true
    for (let k = 0; k < buf.length; k++) {
      const part = plain(parseRequestHead(buf.subarray(0, k), MAX)) as { kind: string }
      // A prefix may already be refused (the error is in a line that is complete), never accepted.
      if (part.kind === 'incomplete') continue
      if (part.kind === 'head' || JSON.stringify(part) !== JSON.stringify(whole)) {
        ok = false
        t.fail(`${name}: prefix of ${k} bytes gave ${JSON.stringify(part)}, the whole ${JSON.stringify(whole)}`)
        break
      }
    }
    if (ok) t.pass(name)
  }
})

t.test('parsing a growing buffer again with `seen`', async (t) => {
  const head = `GET / HTTP/1.1\r\n${H}${Array.from({ length: 50 }, (_, i) => `X-Pad-${i}: ${'v'.repeat(60)}\r\n`).join('')}\r\n`
  const buf = Buffer.from(head)
  let r = parseRequestHead(buf.subarray(0, 1), MAX)
  let seen = 1
  for (let k = 2; k <= buf.length && r.kind === 'incomplete'; k++) {
    r = parseRequestHead(buf.subarray(0, k), MAX, seen)
    seen = k
  }
  t.strictSame(plain(r), plain(parseRequestHead(buf, MAX)), 'dripped byte by byte, the same head as parsed at once')
  t.equal(seen, buf.length, 'found with its last byte')

  const badName = Buffer.from(`GET / HTTP/1.1\r\n${H}X(A): 1\r\nX-B: 2`)
  t.strictSame(parseRequestHead(badName, MAX), err(400, 'invalid character in field name'), 'without seen: refused at once')
  t.strictSame(parseRequestHead(badName, MAX, badName.length - 3), { kind: 'incomplete' }, 'with seen: waits for the end of the head')
  const ended = Buffer.concat([badName, Buffer.from('\r\n\r\n')])
  t.strictSame(parseRequestHead(ended, MAX, badName.length), err(400, 'invalid character in field name'), 'and refuses it then')
  const bareLf = Buffer.from(`GET / HTTP/1.1\r\n${H}X-A: 1\n`)
  t.strictSame(parseRequestHead(bareLf, MAX, bareLf.length - 1), err(400, 'bare LF in the head'), 'a bare LF in the new bytes is refused at once')
  const bareCr = Buffer.from(`GET / HTTP/1.1\r\n${H}X-A: 1\rX`)
  t.strictSame(parseRequestHead(bareCr, MAX, bareCr.length - 1), err(400, 'bare CR in a field value'), 'so is a bare CR')
  const big = Buffer.from(`GET / HTTP/1.1\r\n${H}X-A: ${'a'.repeat(100)}`)
  t.strictSame(parseRequestHead(big, 50, 40), err(431, 'request head too large'), 'and the size limit applies')
})
