// The forwarder over real sockets: a `net` server of client connections (src/proxy/connection.ts)
// calling forward() in front of loopback apps. Bodies of every size around 1 MiB in both directions (sha256 at the app and the client),
// prefix + rest, streaming timing, aborts both ways, refusals inside and after the ready window,
// header timeouts, resets, invalid responses, and the exact bytes of headers on both sides.
import t, { type Test } from 'tap'
import http, { type IncomingMessage } from 'node:http'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { createForwarder, type ForwarderOptions, type Forwarder } from '../../src/proxy/forward.ts'
import { ClientConnection, type Exchange } from '../../src/proxy/connection.ts'
import { closeServer, deadPort, listen } from '../helpers/net.ts'
import { abortMidStreamApp, echoApp, listenOn, patternBytes, rawApp, sha256, slowHeadersApp, stallApp, streamApp } from '../helpers/apps.ts'

const MiB = 1024 * 1024
const SIZES = [0, 1024, MiB - 1, MiB, MiB + 1, 20 * MiB]

interface Proxy {
  readonly port: number
  readonly forwarder: Forwarder
  readonly logs: Record<string, unknown>[]
  readonly upstreamErrors: string[]
  streams: number
}

/**
 * A server of client connections whose every request goes through forward(). With `prefixMax`,
 * the server first reads up to that many body bytes with readPrefix (as body inspection does)
 * before forwarding. `route` picks a per-request origin.
 */
async function startProxy (t: Test, options: Partial<ForwarderOptions> & { origin: string }, prefixMax?: number, route?: (ex: Exchange) => string | undefined): Promise<Proxy> {
  const logs: Record<string, unknown>[] = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => { logs.push(JSON.parse(line) as Record<string, unknown>) } })
  const proxy: Proxy = {
    port: 0,
    logs,
    upstreamErrors: [],
    streams: 0,
    forwarder: undefined as unknown as Forwarder,
  }
  const forwarder = createForwarder({
    readyTimeoutMs: 0,
    logger,
    onUpstreamError: (code) => { proxy.upstreamErrors.push(code) },
    onStream: (d) => { proxy.streams += d },
    ...options,
  })
  const sockets = new Set<net.Socket>()
  const hooks = {
    request: (ex: Exchange) => {
      const origin = route?.(ex)
      const opts = origin === undefined ? {} : { origin }
      if (prefixMax === undefined) { forwarder.forward(ex, opts); return }
      ex.readPrefix(prefixMax, 60_000).then(() => { forwarder.forward(ex, opts) }, () => { ex.destroy() })
    },
    upgrade: (_head: unknown, socket: net.Socket) => { socket.destroy() },
    closing: () => false,
  }
  const limits = { maxHeadBytes: http.maxHeaderSize, headersTimeoutMs: 60_000, keepAliveTimeoutMs: 75_000 }
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    const c = new ClientConnection(socket, hooks, limits, performance.now(), () => {})
    void c
  })
  const port = await listen(server)
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await forwarder.close()
  })
  return Object.assign(proxy, { port, forwarder })
}

interface Reply {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly rawHeaders: string[]
  readonly body: Buffer
}

/** One request on a fresh connection; the body goes in 3 uneven writes, chunked or with content-length. */
async function request (port: number, opts: { method?: string, path?: string, body?: Buffer, chunked?: boolean, headers?: Record<string, string> } = {}): Promise<Reply> {
  const body = opts.body
  const headers: Record<string, string> = { ...opts.headers }
  if (body !== undefined) {
    if (opts.chunked === true) headers['transfer-encoding'] = 'chunked'
    else headers['content-length'] = String(body.length)
  }
  return await new Promise<Reply>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers, agent: false }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('error', reject)
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts) }) })
    })
    req.on('error', reject)
    if (body !== undefined && body.length > 0) {
      const a = Math.floor(body.length / 3)
      req.write(body.subarray(0, a))
      req.write(body.subarray(a, a * 2 + 1))
      req.write(body.subarray(a * 2 + 1))
    }
    req.end()
  })
}

/** Writes raw bytes on a new connection and resolves with everything read until the server closes. */
async function rawRequest (port: number, text: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', reject)
    s.on('close', () => { resolve(Buffer.concat(parts).toString('latin1')) })
    // Not end(): a half-closed client counts as gone for Node's server. `Connection: close` in
    // `text` makes the server close once it has answered.
    s.write(text)
  })
}

/** Header names and values an app saw, with the request's own connection management left out. */
function pairs (raw: readonly string[]): string[][] {
  const out: string[][] = []
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string])
  return out
}

const UNAVAILABLE = '{"error":{"code":"SIDECAR_ERR_UPSTREAM_UNAVAILABLE","message":"the app is not accepting connections"}}'

function assertJsonError (t: Test, reply: Reply, status: number, body: string): void {
  t.equal(reply.status, status, 'status')
  t.equal(reply.headers['content-type'], 'application/json; charset=utf-8', 'content-type')
  t.equal(reply.headers['cache-control'], 'no-store', 'cache-control')
  t.equal(reply.body.toString(), body, 'whole JSON body')
}

t.test('request bodies reach the app byte for byte and come back (echo), content-length and chunked', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  for (const chunked of [false, true]) {
    for (const size of SIZES) {
      const body = patternBytes(size)
      const reply = await request(proxy.port, { method: 'POST', path: `/echo/${size}`, body, chunked })
      const seen = app.requests.at(-1)
      const label = `${size} bytes ${chunked ? 'chunked' : 'content-length'}`
      t.equal(seen?.url, `/echo/${size}`, `${label}: path`)
      t.equal(seen?.bytes, size, `${label}: app byte count`)
      t.equal(seen?.sha256, sha256(body), `${label}: app sha256`)
      if (chunked) {
        t.equal(seen?.headers['transfer-encoding'], 'chunked', `${label}: stays chunked at the app`)
        t.equal(seen?.headers['content-length'], undefined, `${label}: no content-length at the app`)
        t.equal(reply.headers['transfer-encoding'], 'chunked', `${label}: chunked response`)
      } else {
        t.equal(seen?.headers['content-length'], String(size), `${label}: content-length kept at the app`)
        t.equal(seen?.headers['transfer-encoding'], undefined, `${label}: not chunked at the app`)
        t.equal(reply.headers['content-length'], String(size), `${label}: response content-length kept`)
      }
      t.equal(reply.status, 200, `${label}: status`)
      t.equal(reply.body.length, size, `${label}: client byte count`)
      t.equal(sha256(reply.body), sha256(body), `${label}: client sha256`)
    }
  }
  t.same(proxy.upstreamErrors, [])
  t.equal(proxy.streams, 0, 'every stream counted back down')
})

t.test('response bodies reach the client byte for byte, content-length and chunked', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  for (const chunked of [false, true]) {
    for (const size of SIZES) {
      const label = `${size} bytes ${chunked ? 'chunked' : 'content-length'}`
      const reply = await request(proxy.port, { path: `/bytes/${size}${chunked ? '?chunked=1' : ''}` })
      t.equal(reply.status, 200, `${label}: status`)
      t.equal(reply.body.length, size, `${label}: length`)
      t.equal(sha256(reply.body), sha256(patternBytes(size)), `${label}: sha256`)
      if (chunked) {
        t.equal(reply.headers['transfer-encoding'], 'chunked', `${label}: chunked`)
        t.equal(reply.headers['content-length'], undefined, `${label}: no content-length`)
      } else {
        t.equal(reply.headers['content-length'], String(size), `${label}: content-length`)
        t.equal(reply.headers['transfer-encoding'], undefined, `${label}: not chunked`)
      }
    }
  }
  t.equal(proxy.streams, 0)
})

t.test('prefix + rest of the stream (body inspection) is forwarded untouched', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url }, MiB)
  for (const chunked of [false, true]) {
    for (const size of SIZES) {
      const body = patternBytes(size)
      const label = `${size} bytes ${chunked ? 'chunked' : 'content-length'} via prefix`
      const reply = await request(proxy.port, { method: 'POST', path: '/p', body, chunked })
      const seen = app.requests.at(-1)
      t.equal(seen?.bytes, size, `${label}: app byte count`)
      t.equal(seen?.sha256, sha256(body), `${label}: app sha256`)
      const asChunked = chunked
      t.equal(seen?.headers['transfer-encoding'], asChunked ? 'chunked' : undefined, `${label}: transfer-encoding`)
      t.equal(seen?.headers['content-length'], asChunked ? undefined : String(size), `${label}: content-length`)
      t.equal(sha256(reply.body), sha256(body), `${label}: client sha256`)
    }
  }
})

t.test('HEAD, 204 and 304 answer without a body and the connection stays usable', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = (method: string, path: string): Promise<Reply> => new Promise<Reply>((resolve, reject) => {
    http.request({ host: '127.0.0.1', port: proxy.port, method, path, agent }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts) }) })
    }).on('error', reject).end()
  })
  const head = await get('HEAD', '/bytes/1024')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], '1024', 'HEAD keeps the content-length of the GET')
  t.equal(head.body.length, 0)
  for (const status of [204, 304]) {
    const r = await get('GET', `/status/${status}`)
    t.equal(r.status, status)
    t.equal(r.body.length, 0)
    t.equal(r.headers['x-app'], 'echo')
  }
  const after = await get('GET', '/bytes/10')
  t.equal(after.body.length, 10, 'the same client connection still works')
})

t.test('stream chunks reach the client as the app writes them (event stream)', async (t) => {
  const app = await streamApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const arrivals: { i: number, t: number, at: number }[] = []
  let headersAt = 0
  let streamsDuring = -1
  const sent = Date.now()
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: proxy.port, path: '/stream?count=10&interval=50', agent: false }, resolve).on('error', reject)
  })
  headersAt = Date.now()
  let buffered = ''
  await new Promise<void>((resolve, reject) => {
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      if (streamsDuring === -1) streamsDuring = proxy.streams
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = JSON.parse(buffered.slice(0, nl)) as { i: number, t: number }
        arrivals.push({ ...line, at: Date.now() })
        buffered = buffered.slice(nl + 1)
      }
    })
    res.on('end', resolve)
    res.on('error', reject)
  })
  t.equal(res.headers['content-type'], 'text/event-stream')
  t.equal(res.headers['x-livewire-stream'], 'true')
  t.same(arrivals.map((a) => a.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'every chunk, in order')
  // An order, not a duration: the app stamps each chunk as it writes it, on the same clock.
  t.ok(headersAt <= (arrivals[0] as { t: number }).t, `headers arrived before the app wrote the first chunk (${headersAt - sent} ms after the request)`)
  const gaps = arrivals.slice(1).map((a, i) => a.at - (arrivals[i] as { at: number }).at)
  t.ok(gaps.filter((g) => g >= 25).length >= 7, `chunks arrive spread out, not together: gaps ${gaps.join(',')} ms`)
  const delays = arrivals.map((a) => a.at - a.t).sort((a, b) => a - b)
  t.ok((delays[4] as number) < 25, `median delay added per chunk is small: ${delays.join(',')} ms`)
  t.equal(streamsDuring, 1, 'one stream in flight while streaming')
  t.equal(proxy.streams, 0, 'and none after')
})

t.test('a client that disconnects aborts the upstream request', async (t) => {
  const app = await stallApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  await new Promise<void>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/stall', agent: false }, (res) => {
      res.once('data', () => { req.destroy(); resolve() })
    })
    req.on('error', () => {})
    setTimeout(() => reject(new Error('no first chunk')), 5000).unref()
  })
  const seen = app.requests[0]
  await Promise.race([seen?.aborted, sleep(3000).then(() => { throw new Error('the app never saw the abort') })])
  t.pass('the app saw its request aborted')
  await sleep(50)
  t.equal(proxy.streams, 0, 'stream gauge back to 0')
  t.same(proxy.upstreamErrors, [], 'a client abort is not an upstream error')
})

t.test('a client that disconnects mid-upload aborts the upstream request', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const req = http.request({ host: '127.0.0.1', port: proxy.port, method: 'POST', path: '/upload', headers: { 'content-length': String(4 * MiB) }, agent: false })
  req.on('error', () => {})
  req.write(patternBytes(256 * 1024))
  for (let i = 0; i < 100 && app.requests.length === 0; i++) await sleep(20)
  const seen = app.requests[0]
  t.ok(seen, 'the app got the request')
  req.destroy()
  await Promise.race([seen?.done, sleep(3000).then(() => { throw new Error('the app never saw the end') })])
  t.equal(seen?.complete, false, 'the app saw an incomplete body, not a clean end')
  t.ok((seen?.bytes ?? 0) <= 256 * 1024, 'no more bytes than the client sent')
  await sleep(50)
  t.same(proxy.upstreamErrors, [])
})

t.test('an app that aborts mid-stream ends the client response with an error', async (t) => {
  const app = await abortMidStreamApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  for (const framing of ['chunked', 'length']) {
    const outcome = await new Promise<{ status: number, bytes: number, ended: boolean, error: boolean }>((resolve) => {
      http.get({ host: '127.0.0.1', port: proxy.port, path: `/abort?framing=${framing}`, agent: false }, (res) => {
        let bytes = 0
        let ended = false
        res.on('data', (c: Buffer) => { bytes += c.length })
        res.on('end', () => { ended = true })
        res.on('error', () => {})
        res.on('close', () => { resolve({ status: res.statusCode ?? 0, bytes, ended, error: !res.complete }) })
      }).on('error', () => { resolve({ status: 0, bytes: 0, ended: false, error: true }) })
    })
    t.equal(outcome.status, 200, `${framing}: headers had been passed on`)
    t.equal(outcome.bytes, 100, `${framing}: the bytes the app sent`)
    t.equal(outcome.ended, false, `${framing}: no clean end`)
    t.equal(outcome.error, true, `${framing}: the client sees an incomplete response`)
  }
  t.same(proxy.upstreamErrors, ['SIDECAR_ERR_UPSTREAM_ABORTED', 'SIDECAR_ERR_UPSTREAM_ABORTED'])
  const warns = proxy.logs.filter((l) => l.level === 40)
  t.equal(warns.length, 2, 'one warn line per upstream error')
  t.match(warns[0], { code: 'SIDECAR_ERR_UPSTREAM_ABORTED', msg: 'upstream error', url: '/abort?framing=chunked', cause: String })
  t.equal(proxy.streams, 0)
})

t.test('a refused connection is retried while the app starts late', async (t) => {
  const port = await deadPort()
  const proxy = await startProxy(t, { origin: `http://127.0.0.1:${port}`, readyTimeoutMs: 5000 })
  const started = Date.now()
  const pending = request(proxy.port, { method: 'POST', path: '/late', body: Buffer.from('hello') })
  await sleep(400)
  const app = http.createServer((req, res) => { req.pipe(res) })
  await new Promise<void>((resolve, reject) => { app.once('error', reject); app.listen(port, '127.0.0.1', resolve) })
  t.teardown(() => closeServer(app))
  const reply = await pending
  t.equal(reply.status, 200)
  t.equal(reply.body.toString(), 'hello', 'the body, untouched by the retries')
  t.ok(Date.now() - started >= 400, 'answered only once the app was up')
  t.same(proxy.upstreamErrors, [])
})

t.test('after the ready window a refusal answers 502 at once', async (t) => {
  const port = await deadPort()
  const proxy = await startProxy(t, { origin: `http://127.0.0.1:${port}`, readyTimeoutMs: 0 })
  const started = Date.now()
  const reply = await request(proxy.port, { path: '/x' })
  assertJsonError(t, reply, 502, UNAVAILABLE)
  t.ok(Date.now() - started < 1000, 'no waiting')
  t.same(proxy.upstreamErrors, ['SIDECAR_ERR_UPSTREAM_UNAVAILABLE'])
  const warn = proxy.logs.find((l) => l.level === 40)
  t.match(warn, { code: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', causeCode: 'ECONNREFUSED', msg: 'upstream error', method: 'GET', url: '/x' })
})

t.test('inside a short window the refusal is retried, then answers 502', async (t) => {
  const port = await deadPort()
  const proxy = await startProxy(t, { origin: `http://127.0.0.1:${port}`, readyTimeoutMs: 400 })
  const started = Date.now()
  const reply = await request(proxy.port, { method: 'POST', path: '/y', body: Buffer.from('{}') })
  const took = Date.now() - started
  assertJsonError(t, reply, 502, UNAVAILABLE)
  t.ok(took >= 250 && took < 3000, `retried until the window closed (${took} ms)`)
  t.same(proxy.upstreamErrors, ['SIDECAR_ERR_UPSTREAM_UNAVAILABLE'], 'one error, not one per retry')
})

t.test('close() answers requests still waiting for the app', async (t) => {
  const port = await deadPort()
  const proxy = await startProxy(t, { origin: `http://127.0.0.1:${port}`, readyTimeoutMs: 60_000 })
  const pending = request(proxy.port, { path: '/waiting' })
  await sleep(250)
  await proxy.forwarder.close()
  assertJsonError(t, await pending, 502, UNAVAILABLE)
})

t.test('no response headers in time → 504', async (t) => {
  const app = await slowHeadersApp(Infinity)
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url, headersTimeoutMs: 300 })
  const started = Date.now()
  const reply = await request(proxy.port, { path: '/slow' })
  assertJsonError(t, reply, 504, '{"error":{"code":"SIDECAR_ERR_UPSTREAM_TIMEOUT","message":"the app did not answer in time"}}')
  t.ok(Date.now() - started >= 250, 'after the headers timeout')
  t.same(proxy.upstreamErrors, ['SIDECAR_ERR_UPSTREAM_TIMEOUT'])
})

t.test('an app that closes the connection before answering → 502 reset', async (t) => {
  const app = await rawApp('')
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await request(proxy.port, { path: '/reset' })
  assertJsonError(t, reply, 502, '{"error":{"code":"SIDECAR_ERR_UPSTREAM_RESET","message":"the app closed the connection before answering"}}')
  t.same(proxy.upstreamErrors, ['SIDECAR_ERR_UPSTREAM_RESET'])
})

t.test('an invalid HTTP response → 502 bad response', async (t) => {
  const app = await rawApp('this is not http\r\n\r\n')
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await request(proxy.port, { path: '/garbage' })
  assertJsonError(t, reply, 502, '{"error":{"code":"SIDECAR_ERR_UPSTREAM_BAD_RESPONSE","message":"the app sent an invalid HTTP response"}}')
  t.same(proxy.upstreamErrors, ['SIDECAR_ERR_UPSTREAM_BAD_RESPONSE'])
})

t.test('request headers: hop-by-hop removed, the rest as received, x-forwarded-* added', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port, [
    'POST /a%2Fb/../c?q=%20x&y=%E2%82%AC&&z HTTP/1.1',
    'Host: shop.example.com',
    'Connection: close, X-Hop',
    'X-Hop: secret',
    'Keep-Alive: timeout=5',
    'TE: trailers',
    'Proxy-Connection: keep-alive',
    'Trailer: X-T',
    'Upgrade: h2c',
    'X-Forwarded-For: 203.0.113.9',
    'Fly-Client-IP: 203.0.113.9',
    'fly-region: ams',
    'X-Mixed-CASE: Value',
    'Cookie: a=1',
    'Cookie: b=2',
    'Content-Length: 5',
    '',
    'hello',
  ].join('\r\n'))
  t.match(reply, /^HTTP\/1\.1 200 OK\r\n/)
  t.ok(reply.endsWith('\r\n\r\nhello'), 'the echoed body')
  const seen = app.requests[0]
  t.equal(seen?.url, '/a%2Fb/../c?q=%20x&y=%E2%82%AC&&z', 'the path and query byte for byte')
  t.strictSame(pairs(seen?.rawHeaders ?? []), [
    ['host', 'shop.example.com'],
    ['connection', 'keep-alive'],
    ['X-Forwarded-For', '203.0.113.9, 127.0.0.1'],
    ['Fly-Client-IP', '203.0.113.9'],
    ['fly-region', 'ams'],
    ['X-Mixed-CASE', 'Value'],
    ['Cookie', 'a=1'],
    ['Cookie', 'b=2'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'shop.example.com'],
    ['content-length', '5'],
  ], 'exact header list at the app (host and connection are the sidecar\'s own connection)')
})

t.test('x-forwarded-proto and x-forwarded-host are kept when present; absolute-form never changes the target', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port, [
    'GET http://evil.example:1/abs?q=1 HTTP/1.1',
    'Host: evil.example:1',
    'X-Forwarded-Proto: https',
    'X-Forwarded-Host: shop.example.com',
    'Connection: close',
    '',
    '',
  ].join('\r\n'))
  t.match(reply, /^HTTP\/1\.1 200 OK\r\n/, 'answered by the configured app')
  const seen = app.requests[0]
  t.equal(seen?.url, '/abs?q=1', 'origin-form path sent to the configured origin')
  t.strictSame(pairs(seen?.rawHeaders ?? []), [
    ['host', 'evil.example:1'],
    ['connection', 'keep-alive'],
    ['X-Forwarded-Proto', 'https'],
    ['X-Forwarded-Host', 'shop.example.com'],
    ['x-forwarded-for', '127.0.0.1'],
  ])
})

t.test('response headers: status line, case, order and duplicates kept; hop-by-hop removed', async (t) => {
  const app = await rawApp([
    'HTTP/1.1 201 Created Here',
    'Content-Type: text/plain',
    'Set-Cookie: a=1; Path=/',
    'X-Custom-Case: Yes',
    'Set-Cookie: b=2; HttpOnly',
    'Connection: X-Drop',
    'X-Drop: gone',
    'Keep-Alive: timeout=5',
    'Trailer: X-T',
    'Proxy-Connection: keep-alive',
    'Upgrade: foo',
    'Date: Thu, 01 Jan 2026 00:00:00 GMT',
    'Content-Length: 2',
    '',
    'ok',
  ].join('\r\n'))
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port, 'GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(reply, [
    'HTTP/1.1 201 Created Here',
    'Content-Type: text/plain',
    'Set-Cookie: a=1; Path=/',
    'X-Custom-Case: Yes',
    'Set-Cookie: b=2; HttpOnly',
    'Date: Thu, 01 Jan 2026 00:00:00 GMT',
    'Content-Length: 2',
    'Connection: close',
    '',
    'ok',
  ].join('\r\n'), 'the whole response as the client reads it')
})

t.test('chunked response trailers and transfer-encoding are not passed on; the body is', async (t) => {
  const app = await rawApp('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n')
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port, 'GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(reply, 'HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 're-framed by the sidecar, trailers dropped')
})

t.test('options.origin sends a request to another upstream, pooled per origin', async (t) => {
  const app = await echoApp()
  const other = await echoApp()
  t.teardown(() => app.close())
  t.teardown(() => other.close())
  const proxy = await startProxy(t, { origin: app.url }, undefined, (ex) => (ex.head.target.startsWith('/other') ? other.url : undefined))
  const body = patternBytes(64 * 1024)
  const a = await request(proxy.port, { method: 'POST', path: '/other/1', body })
  const b = await request(proxy.port, { method: 'POST', path: '/other/2', body, chunked: true })
  const c = await request(proxy.port, { path: '/bytes/5' })
  t.equal(sha256(a.body), sha256(body))
  t.equal(sha256(b.body), sha256(body))
  t.equal(c.body.length, 5)
  t.same(other.requests.map((r) => r.url), ['/other/1', '/other/2'])
  t.same(app.requests.map((r) => r.url), ['/bytes/5'])
})

t.test('a slow reader gets every byte: backpressure pauses the app instead of buffering', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: proxy.port, path: `/bytes/${8 * MiB}?chunked=1`, agent: false }, resolve).on('error', reject)
  })
  res.pause()
  await sleep(300)
  const hash = createHash('sha256')
  let n = 0
  for await (const chunk of res as AsyncIterable<Buffer>) { hash.update(chunk); n += chunk.length }
  t.equal(n, 8 * MiB)
  t.equal(hash.digest('hex'), sha256(patternBytes(8 * MiB)))
})

t.test('Expect: 100-continue is answered by the sidecar\'s server and the body still reaches the app', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const body = patternBytes(300 * 1024)
  const reply = await new Promise<Reply>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxy.port, method: 'PUT', path: '/expect', headers: { expect: '100-continue', 'content-length': String(body.length) }, agent: false }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts) }) })
    })
    req.on('error', reject)
    req.on('continue', () => { req.end(body) })
  })
  t.equal(reply.status, 200)
  t.equal(sha256(reply.body), sha256(body))
  t.equal(app.requests[0]?.headers.expect, undefined, 'the app is not asked to continue again')
  t.equal(app.requests[0]?.sha256, sha256(body))
})

t.test('interim 1xx responses from the app are not passed on; the final one is', async (t) => {
  const app = await rawApp('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port, 'GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(reply, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
})

t.test('a client that leaves while the app is still starting stops the retries quietly', async (t) => {
  const port = await deadPort()
  const proxy = await startProxy(t, { origin: `http://127.0.0.1:${port}`, readyTimeoutMs: 60_000 })
  const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/gone', agent: false })
  req.on('error', () => {})
  await sleep(250)
  req.destroy()
  await sleep(150)
  // Had the retries gone on, the request would now reach an app that starts on that port.
  let connections = 0
  const late = http.createServer((_req, res) => { res.end() })
  late.on('connection', () => { connections++ })
  await listenOn(late, port)
  t.teardown(() => closeServer(late))
  await sleep(400)
  t.equal(connections, 0, 'no retry after the client left: the app never saw a connection')
  t.same(proxy.upstreamErrors, [], 'no upstream error counted')
  t.equal(proxy.logs.filter((l) => (l.level as number) >= 40).length, 0, 'nothing logged above info')
})

/**
 * An app on a raw socket: for each request head it receives, writes `parts` (each after `gapMs`,
 * so each arrives as its own read), and closes after the last when `close` is set.
 */
async function splitApp (t: Test, parts: readonly (string | Buffer)[], opts: { gapMs?: number, close?: boolean } = {}): Promise<{ url: string, connections: () => number, heads: string[] }> {
  const heads: string[] = []
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let got = ''
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1')
      let end: number
      while ((end = got.indexOf('\r\n\r\n')) !== -1) {
        heads.push(got.slice(0, end))
        got = got.slice(end + 4)
        void (async () => {
          for (const [i, part] of parts.entries()) {
            if (i > 0) await sleep(opts.gapMs ?? 15)
            if (socket.destroyed) return
            socket.write(part)
          }
          if (opts.close === true) socket.end()
        })()
      }
    })
  })
  const port = await listen(server)
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${port}`, connections: () => connections, heads }
}

t.test('chunked framing passes as the app wrote it across reads; only the last chunk and its trailers are replaced', async (t) => {
  const app = await splitApp(t, [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
    '4;ext=1\r\nab', 'cd\r', '\n', '1\r\nx\r\n0\r', '\nX-Sum: 9\r\n', '\r\n',
  ])
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port, 'GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(reply, 'HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n1\r\nx\r\n0\r\n\r\n', 'chunk sizes and extensions as sent, trailers dropped')
})

t.test('a response ended by closing reaches an HTTP/1.1 client chunked and an HTTP/1.0 client as is', async (t) => {
  const app = await splitApp(t, ['HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n', 'one', 'two'], { close: true })
  const proxy = await startProxy(t, { origin: app.url })
  t.equal(await rawRequest(proxy.port, 'GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n')
  t.equal(await rawRequest(proxy.port, 'GET /c HTTP/1.0\r\nHost: x\r\n\r\n'),
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nonetwo')
})

t.test('a chunked response reaches an HTTP/1.0 client as its data alone, ended by closing', async (t) => {
  const app = await splitApp(t, ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', '3\r\nabc\r\n', '2\r\nde\r\n0\r\n\r\n'])
  const proxy = await startProxy(t, { origin: app.url })
  t.equal(await rawRequest(proxy.port, 'GET /c HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n'),
    'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcde')
})

t.test('pipelined and kept-alive requests reuse one connection to the app, answered in order', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const reply = await rawRequest(proxy.port,
    'GET /bytes/3 HTTP/1.1\r\nHost: x\r\n\r\n' +
    'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
    'GET /bytes/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const statuses = reply.match(/HTTP\/1\.1 200 OK/g) ?? []
  t.equal(statuses.length, 3, 'three answers')
  t.ok(reply.indexOf('hello') > reply.indexOf('\r\n\r\n'), 'the echo in the second answer')
  t.ok(reply.endsWith('\r\n\r\n' + patternBytes(2).toString('latin1')), 'the last answer last')
  t.same(app.requests.map((r) => r.url), ['/bytes/3', '/echo', '/bytes/2'], 'in order')
  const peers = new Set(app.requests.map((r) => r.remotePort))
  t.equal(peers.size, 1, 'over one kept-alive connection to the app')
})

t.test('a head that arrives a few bytes at a time, then its body and a second request, is served whole', async (t) => {
  const app = await echoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, { origin: app.url })
  const text = `POST /drip?x=${'y'.repeat(3000)} HTTP/1.1\r\nHost: x\r\nX-Long: ${'z'.repeat(5000)}\r\nContent-Length: 5\r\n\r\nhello` +
    'GET /bytes/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  const reply = await new Promise<string>((resolve, reject) => {
    const s = net.connect(proxy.port, '127.0.0.1')
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', reject)
    s.on('close', () => { resolve(Buffer.concat(parts).toString('latin1')) })
    s.setNoDelay(true)
    void (async () => {
      for (let i = 0; i < text.length; i += 97) {
        s.write(text.slice(i, i + 97))
        if (i % 970 === 0) await sleep(1)
      }
    })()
  })
  t.equal(reply.match(/HTTP\/1\.1 200 OK/g)?.length, 2, 'both answered')
  t.equal(app.requests[0]?.url, `/drip?x=${'y'.repeat(3000)}`, 'the long target whole')
  t.equal(app.requests[0]?.headers['x-long'], 'z'.repeat(5000), 'the long field whole')
  t.equal(app.requests[0]?.sha256, sha256(Buffer.from('hello')), 'the body')
  t.equal(app.requests[1]?.url, '/bytes/4')
})
