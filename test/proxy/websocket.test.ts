// WebSocket tunnelling over real sockets: a `ws` client through tunnelUpgrade() to a `ws` echo
// app: subprotocols, extensions, close codes both ways, handshake headers as received, bytes
// that arrive with the handshake (`head`), refusals by the app, and an unreachable app.
import t, { type Test } from 'tap'
import http, { type IncomingMessage } from 'node:http'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { WebSocket } from 'ws'
import { tunnelUpgrade } from '../../src/proxy/websocket.ts'
import { closeServer, deadPort, listen } from '../helpers/net.ts'
import { patternBytes, rawApp, sha256, websocketEchoApp } from '../helpers/apps.ts'

interface Proxy {
  readonly port: number
  readonly logs: Record<string, unknown>[]
  /** rawHeaders of every upgrade request the proxy received. */
  readonly received: string[][]
  open: number
}

async function startProxy (t: Test, origin: string, readyTimeoutMs?: number): Promise<Proxy> {
  const logs: Record<string, unknown>[] = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => { logs.push(JSON.parse(line) as Record<string, unknown>) } })
  const proxy: Proxy = { port: 0, logs, received: [], open: 0 }
  const server = http.createServer((_req, res) => { res.writeHead(404); res.end() })
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    proxy.received.push([...req.rawHeaders])
    const request = { method: req.method ?? 'GET', target: req.url ?? '/', versionMinor: req.httpVersionMinor === 0 ? 0 as const : 1 as const, rawHeaders: req.rawHeaders, remoteAddress: req.socket.remoteAddress }
    tunnelUpgrade(request, socket, head, origin, {
      logger,
      ...(readyTimeoutMs === undefined ? {} : { readyTimeoutMs }),
      onOpen: (d) => { proxy.open += d },
    })
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  return Object.assign(proxy, { port })
}

async function opened (ws: WebSocket): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => { reject(new Error(`unexpected response ${String(res.statusCode)}`)) })
  })
}

async function nextMessage (ws: WebSocket): Promise<{ data: Buffer, isBinary: boolean }> {
  return await new Promise((resolve) => { ws.once('message', (data: Buffer, isBinary: boolean) => { resolve({ data, isBinary }) }) })
}

async function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
  return await new Promise((resolve) => { ws.once('close', (code: number, reason: Buffer) => { resolve({ code, reason: reason.toString() }) }) })
}

async function until (cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await sleep(10)
  return cond()
}

t.test('echo through the tunnel with a subprotocol, compression and a close code 4001 from the app', async (t) => {
  const app = await websocketEchoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, app.url)
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws?room=1`, ['chat.v1', 'chat.v2'], { headers: { 'X-Custom': 'Kept As Is' } })
  await opened(ws)
  t.equal(ws.protocol, 'chat.v2', 'the subprotocol the app chose')
  t.match(ws.extensions, /permessage-deflate/, 'the negotiated extension passed through')
  t.equal(proxy.open, 1, 'one tunnel open')

  ws.send('hello')
  t.same(await nextMessage(ws), { data: Buffer.from('hello'), isBinary: false }, 'text echoed')
  const big = patternBytes(1024 * 1024 + 7)
  ws.send(big)
  const back = await nextMessage(ws)
  t.equal(back.isBinary, true, 'binary stays binary')
  t.equal(sha256(back.data), sha256(big), '1 MiB + 7 binary message intact')

  const seen = app.requests[0]
  t.equal(seen?.url, '/ws?room=1')
  const sent = proxy.received[0] ?? []
  t.strictSame(seen?.rawHeaders, [...sent, 'x-forwarded-for', '127.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', `127.0.0.1:${proxy.port}`],
    'the handshake headers exactly as the client sent them (Sec-WebSocket-*, subprotocols), plus x-forwarded-*')
  t.equal(seen?.headers['sec-websocket-protocol'], 'chat.v1,chat.v2', 'subprotocol list as the client wrote it')

  const done = closed(ws)
  ws.send('close-4001')
  t.same(await done, { code: 4001, reason: 'bye' }, 'the app\'s close code and reason reach the client')
  t.ok(await until(() => proxy.open === 0), 'tunnel closed')
  t.ok(await until(() => app.open() === 0), 'the app\'s side is closed too')
})

t.test('a close code from the client reaches the app', async (t) => {
  const app = await websocketEchoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, app.url)
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/c`)
  await opened(ws)
  const done = closed(ws)
  ws.close(4002, 'client leaving')
  t.equal((await done).code, 4002)
  t.ok(await until(() => app.closeCodes.includes(4002)), 'the app saw 4002')
  t.ok(await until(() => proxy.open === 0), 'tunnel closed')
})

t.test('a client that vanishes closes the app side of the tunnel', async (t) => {
  const app = await websocketEchoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, app.url)
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/v`)
  await opened(ws)
  t.ok(await until(() => app.open() === 1), 'app side open')
  ws.terminate()
  t.ok(await until(() => app.open() === 0), 'app side closed after the client socket died')
  t.ok(await until(() => proxy.open === 0))
})

t.test('bytes sent together with the handshake (head) are tunnelled, byte for byte both ways', async (t) => {
  const app = await websocketEchoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, app.url)
  const mask = Buffer.from([1, 2, 3, 4])
  const payload = Buffer.from('hi')
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)))])
  const handshake = Buffer.from([
    'GET /raw HTTP/1.1',
    'Host: example.test',
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    '',
    '',
  ].join('\r\n'), 'latin1')
  const s = net.connect(proxy.port, '127.0.0.1')
  t.teardown(() => { s.destroy() })
  let got = Buffer.alloc(0)
  s.on('data', (c: Buffer) => { got = Buffer.concat([got, c]) })
  s.write(Buffer.concat([handshake, frame]))
  const expectedHead = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n'
  const expected = Buffer.concat([Buffer.from(expectedHead, 'latin1'), Buffer.from([0x81, 0x02]), payload])
  t.ok(await until(() => got.length >= expected.length), 'answer and echo frame arrived')
  t.equal(got.toString('latin1'), expected.toString('latin1'), 'the app\'s 101 and its unmasked echo frame, byte for byte')
})

t.test('an app that refuses the upgrade: its answer reaches the client as is', async (t) => {
  const app = await websocketEchoApp()
  t.teardown(() => app.close())
  const proxy = await startProxy(t, app.url)
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/deny`)
  const status = await new Promise<number>((resolve) => {
    ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume() })
    ws.once('error', () => {})
  })
  t.equal(status, 403)
  t.ok(await until(() => proxy.open === 0))
})

t.test('an unreachable app answers an HTTP 502 on the socket and closes it', async (t) => {
  const port = await deadPort()
  const proxy = await startProxy(t, `http://127.0.0.1:${port}`, 0)
  const answer = await new Promise<string>((resolve, reject) => {
    const s = net.connect(proxy.port, '127.0.0.1')
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', reject)
    s.on('close', () => { resolve(Buffer.concat(parts).toString('latin1')) })
    s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  })
  const body = '{"error":{"code":"SIDECAR_ERR_UPSTREAM_UNAVAILABLE","message":"the app is not accepting connections"}}'
  t.equal(answer, `HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${body.length}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`)
  t.match(proxy.logs.find((l) => l.level === 40), { code: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', causeCode: 'ECONNREFUSED', msg: 'upstream error', url: '/ws' })
  t.equal(proxy.open, 0, 'no tunnel counted')
})

t.test('a refused connection is retried while the process is inside the ready window', async (t) => {
  const port = await deadPort()
  // The window is measured from process start; give this test 5 s from now.
  const proxy = await startProxy(t, `http://127.0.0.1:${port}`, performance.now() + 5000)
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/late`)
  const open = opened(ws)
  await sleep(300)
  const app = await websocketEchoApp(port)
  t.teardown(() => app.close())
  await open
  ws.send('late but fine')
  t.same((await nextMessage(ws)).data.toString(), 'late but fine')
  ws.terminate()
})

t.test('bytes sent with a handshake the app refuses never reach the app (no request smuggled in head)', async (t) => {
  const app = await rawApp('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno')
  t.teardown(() => app.close())
  const proxy = await startProxy(t, app.url)
  const answer = await new Promise<string>((resolve, reject) => {
    const s = net.connect(proxy.port, '127.0.0.1')
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', reject)
    s.on('close', () => { resolve(Buffer.concat(parts).toString('latin1')) })
    // One write: the second request arrives as the upgrade's `head`.
    s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' +
      'GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n')
    setTimeout(() => { s.destroy() }, 1500).unref()
  })
  t.equal(answer, 'HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno', 'the refusal, byte for byte')
  await sleep(100)
  t.equal(app.heads.length, 1, 'the app saw only the handshake')
  t.match(app.heads[0], /^GET \/ws HTTP\/1\.1\r\n/)
})
