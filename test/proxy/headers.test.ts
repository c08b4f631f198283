// Header rewriting tables: hop-by-hop removal both ways, fields named by `connection`, the
// protected fields, x-forwarded-* (append, keep, add), upgrade handshakes, request targets.
import t from 'tap'
import { clientAddress, forwardRequestHeaders, requestTarget, responseHeadText, upgradeRequestHeaders, upstreamRequestHead } from '../../src/proxy/headers.ts'

t.test('request: hop-by-hop and expect removed, the rest kept in order and case, x-forwarded-* added', async (t) => {
  const got = forwardRequestHeaders([
    'Host', 'a.example',
    'Connection', 'keep-alive, X-Secret, Close',
    'X-Secret', '1',
    'x-secret', '2',
    'Keep-Alive', 'timeout=5',
    'Proxy-Connection', 'keep-alive',
    'TE', 'trailers',
    'Trailer', 'X-T',
    'Transfer-Encoding', 'chunked',
    'Upgrade', 'h2c',
    'Expect', '100-continue',
    'Fly-Forwarded-Port', '443',
    'Set-Cookie-Like', 'a',
    'Accept', 'text/html',
    'Accept', 'application/json',
  ], '10.0.0.7')
  t.strictSame(got, {
    headers: [
      'Host', 'a.example',
      'Fly-Forwarded-Port', '443',
      'Set-Cookie-Like', 'a',
      'Accept', 'text/html',
      'Accept', 'application/json',
      'x-forwarded-for', '10.0.0.7',
      'x-forwarded-proto', 'http',
      'x-forwarded-host', 'a.example',
    ],
    hasBody: true,
    chunked: true,
  })
})

t.test('request: x-forwarded-for appended to the last one; proto and host kept when present', async (t) => {
  t.strictSame(forwardRequestHeaders([
    'host', 'b.example',
    'X-Forwarded-For', '1.1.1.1',
    'x-forwarded-for', '2.2.2.2, 3.3.3.3',
    'X-Forwarded-Proto', 'https',
    'X-Forwarded-Host', 'shop.example',
    'Content-Length', '3',
  ], '::ffff:192.0.2.1'), {
    headers: [
      'host', 'b.example',
      'X-Forwarded-For', '1.1.1.1',
      'x-forwarded-for', '2.2.2.2, 3.3.3.3, 192.0.2.1',
      'X-Forwarded-Proto', 'https',
      'X-Forwarded-Host', 'shop.example',
      'Content-Length', '3',
    ],
    hasBody: true,
    chunked: false,
  })
})

t.test('request: no body, no host, no socket address', async (t) => {
  t.strictSame(forwardRequestHeaders(['Accept', '*/*'], undefined), {
    headers: ['Accept', '*/*', 'x-forwarded-proto', 'http'],
    hasBody: false,
    chunked: false,
  })
})

t.test('request: connection cannot strip framing, host or x-forwarded-*', async (t) => {
  t.strictSame(forwardRequestHeaders([
    'Host', 'c.example',
    'Connection', 'content-length, host, x-forwarded-for, x-forwarded-proto, x-forwarded-host, x-a-very-long-header-name-here',
    'X-A-Very-Long-Header-Name-Here', 'gone',
    'Content-Length', '0',
  ], '127.0.0.1').headers, [
    'Host', 'c.example',
    'Content-Length', '0',
    'x-forwarded-for', '127.0.0.1',
    'x-forwarded-proto', 'http',
    'x-forwarded-host', 'c.example',
  ])
})

t.test('upgrade handshake: everything kept (connection, upgrade, sec-websocket-*), x-forwarded-* added', async (t) => {
  t.strictSame(upgradeRequestHeaders([
    'Host', 'ws.example',
    'Connection', 'Upgrade',
    'Upgrade', 'websocket',
    'Sec-WebSocket-Key', 'k',
    'Sec-WebSocket-Protocol', 'a, b',
    'Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits',
  ], '127.0.0.1'), [
    'Host', 'ws.example',
    'Connection', 'Upgrade',
    'Upgrade', 'websocket',
    'Sec-WebSocket-Key', 'k',
    'Sec-WebSocket-Protocol', 'a, b',
    'Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits',
    'x-forwarded-for', '127.0.0.1',
    'x-forwarded-proto', 'http',
    'x-forwarded-host', 'ws.example',
  ])
})

t.test('response: hop-by-hop and connection-named fields removed, latin1 kept, the sidecar\'s connection and framing last', async (t) => {
  const raw = [
    'Content-Type', 'text/plain',
    'Set-Cookie', 'a=1',
    'Connection', 'keep-alive, X-Internal',
    'X-Internal', 'x',
    'Keep-Alive', 'timeout=5',
    'Transfer-Encoding', 'chunked',
    'Trailer', 'X-Sum',
    'TE', 'x',
    'Upgrade', 'x',
    'Proxy-Connection', 'x',
    'Set-Cookie', 'b=2',
    'X-Latin1', 'caf\u00e9',
  ]
  t.strictSame(responseHeadText({ status: 201, reason: 'Created Here', rawHeaders: raw }, 'Created', '', 'Transfer-Encoding: chunked\r\n'), {
    head: 'HTTP/1.1 201 Created Here\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Latin1: caf\u00e9\r\nTransfer-Encoding: chunked\r\n\r\n',
    keepAlive: 'timeout=5',
  })
  t.strictSame(responseHeadText({ status: 200, reason: '', rawHeaders: ['Content-Length', '2', 'Connection', 'Keep-Alive'] }, 'OK', 'Connection: close\r\n', ''),
    { head: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n', keepAlive: undefined }, 'no reason: the standard one')
  t.strictSame(responseHeadText({ status: 200, reason: 'OK', rawHeaders: ['Connection', 'close, X-A, x-a-very-long-header-name-here', 'X-A', '1', 'X-A-Very-Long-Header-Name-Here', 'v', 'x-b', '2'] }, 'OK', '', '').head,
    'HTTP/1.1 200 OK\r\nx-b: 2\r\n\r\n')
})

t.test('request head for the app: host and connection first, fields as forwardRequestHeaders edits them, framing last', async (t) => {
  /** The fields of a head as pairs, without the request line. */
  const pairsOf = (text: string): string[] => text.split('\r\n').slice(1, -2).flatMap((l) => { const c = l.indexOf(': '); return [l.slice(0, c), l.slice(c + 2)] })
  const cases: [string[], 'none' | 'length' | 'chunked', string | undefined][] = [
    [['Host', 'a.example', 'Connection', 'keep-alive, X-Secret, Close', 'X-Secret', '1', 'x-secret', '2', 'Keep-Alive', 'timeout=5', 'Proxy-Connection', 'keep-alive', 'TE', 'trailers', 'Trailer', 'X-T', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'Expect', '100-continue', 'Fly-Forwarded-Port', '443', 'Accept', 'text/html', 'Accept', 'application/json'], 'chunked', '10.0.0.7'],
    [['host', 'b.example', 'X-Forwarded-For', '1.1.1.1', 'x-forwarded-for', '2.2.2.2, 3.3.3.3', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'shop.example', 'Content-Length', '3'], 'length', '::ffff:192.0.2.1'],
    [['Accept', '*/*'], 'none', undefined],
    [['Host', 'c.example', 'Connection', 'content-length, host, x-forwarded-for, x-a-very-long-header-name-here', 'X-A-Very-Long-Header-Name-Here', 'gone', 'Content-Length', '0'], 'none', '127.0.0.1'],
  ]
  for (const [raw, body, address] of cases) {
    const text = upstreamRequestHead({ method: 'POST', rawHeaders: raw, body, contentLength: body === 'length' ? 3 : 0 }, '/p?q', address, 'app:8080')
    t.ok(text.startsWith('POST /p?q HTTP/1.1\r\n') && text.endsWith('\r\n\r\n'), 'request line and end')
    const edited = forwardRequestHeaders(raw, address).headers
    const want: string[] = []
    let host: string | undefined
    for (let i = 0; i < edited.length; i += 2) {
      const name = (edited[i] as string).toLowerCase()
      if (name === 'host') host = edited[i + 1]
      else if (name !== 'content-length') want.push(edited[i] as string, edited[i + 1] as string)
    }
    const framing = body === 'length' ? ['content-length', '3'] : body === 'chunked' ? ['transfer-encoding', 'chunked'] : ['content-length', '0']
    t.strictSame(pairsOf(text), ['host', host ?? 'app:8080', 'connection', 'keep-alive', ...want, ...framing], raw.join(' '))
  }
  t.equal(upstreamRequestHead({ method: 'GET', rawHeaders: ['Host', 'x'], body: 'none', contentLength: 0 }, '/', undefined, 'a').endsWith('x-forwarded-host: x\r\n\r\n'), true, 'GET without a body: no framing field')
})

t.test('request targets: origin-form as is, absolute-form reduced to its path, others refused', async (t) => {
  const table: [string | undefined, string | undefined][] = [
    ['/', '/'],
    ['/a%2Fb/../c?q=%20&&x', '/a%2Fb/../c?q=%20&&x'],
    ['//double/slash', '//double/slash'],
    ['http://evil.example:1/abs?q=1', '/abs?q=1'],
    ['HTTPS://evil.example', '/'],
    ['http://evil.example?q', '/?q'],
    ['*', undefined],
    ['evil.example:443', undefined],
    ['', undefined],
    [undefined, undefined],
  ]
  for (const [input, want] of table) t.equal(requestTarget(input), want, String(input))
})

t.test('client addresses: IPv4-mapped IPv6 unwrapped, others as they are', async (t) => {
  t.equal(clientAddress('::ffff:10.1.2.3'), '10.1.2.3')
  t.equal(clientAddress('fdaa:0:1::3'), 'fdaa:0:1::3')
  t.equal(clientAddress('127.0.0.1'), '127.0.0.1')
  t.equal(clientAddress(undefined), undefined)
})
