// Header rewriting tables: hop-by-hop removal both ways, fields named by `connection`, the
// protected fields, x-forwarded-* (append, keep, add), upgrade handshakes, request targets.
import t from 'tap'
import { clientAddress, forwardRequestHeaders, requestTarget, responseHeaders, upgradeRequestHeaders } from '../../src/proxy/headers.ts'

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

t.test('response: hop-by-hop and connection-named fields removed, latin1 bytes kept', async (t) => {
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
  ].map((s) => Buffer.from(s, 'latin1'))
  t.strictSame(responseHeaders(raw), {
    headers: [
      'Content-Type', 'text/plain',
      'Set-Cookie', 'a=1',
      'Set-Cookie', 'b=2',
      'X-Latin1', 'caf\u00e9',
    ],
    hasLength: false,
    keepAlive: 'timeout=5',
  })
  t.strictSame(responseHeaders(['Content-Length', '2', 'Connection', 'Keep-Alive']), { headers: ['Content-Length', '2'], hasLength: true })
  t.strictSame(responseHeaders(['Connection', 'close, X-A', 'X-A', '1', 'x-b', '2']), { headers: ['x-b', '2'], hasLength: false })
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
