// The whole sidecar in-process, on Fly (FLY_* set) with a stub pool client and a real app on
// loopback: every decision of contract §4 observed on the wire, and the app's view of it.
import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import pino from 'pino'
import { parseConfig } from '../src/config/load.ts'
import { startSidecar, type Sidecar } from '../src/sidecar.ts'
import type { PoolMachines, PoolPick } from '../src/machines/types.ts'
import { SidecarError } from '../src/errors.ts'
import { closeServer, listen } from './helpers/net.ts'

const LIVEWIRE_PROCESS = JSON.stringify({ components: [{ snapshot: '{}', calls: [{ path: '', method: 'process', params: [] }] }] })
const LIVEWIRE_OTHER = JSON.stringify({ components: [{ snapshot: '{}', calls: [{ path: '', method: 'refresh', params: [] }] }] })

function sha (b: Buffer | string): string { return createHash('sha256').update(b).digest('hex') }

interface Seen { method: string, url: string, sha256: string, bytes: number, headers: http.IncomingHttpHeaders }

async function startApp (t: Test, name = 'app'): Promise<{ port: number, seen: Seen[] }> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256')
    let bytes = 0
    req.on('data', (c: Buffer) => { hash.update(c); bytes += c.length })
    req.on('end', () => {
      const s = { method: req.method ?? '', url: req.url ?? '', sha256: hash.digest('hex'), bytes, headers: req.headers }
      seen.push(s)
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name })
      res.end(JSON.stringify({ url: s.url, sha256: s.sha256, bytes }))
    })
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  return { port, seen }
}

function stubPools (pick: (pool: string) => PoolPick): PoolMachines & { picks: string[], failed: string[] } {
  const picks: string[] = []
  const failed: string[] = []
  return {
    picks,
    failed,
    pick: async (pool) => { picks.push(pool); return pick(pool) },
    reportFailed: (pool, id) => { failed.push(`${pool}/${id}`) },
    snapshot: () => [],
    close: async () => {},
  }
}

const ok = (): PoolPick => ({ ok: true, machineId: 'tasker-1' })

async function start (t: Test, opts: { appPort: number, pool?: string, taskerExtra?: string, pools?: PoolMachines, privatePort?: number }): Promise<Sidecar> {
  const yaml = `listen: 127.0.0.1:0
app:
  url: http://127.0.0.1:${opts.appPort}
  ready-timeout: 1s
metrics: false
fly:
  replay-timeout: 45s
  private-url: http://127.0.0.1:${opts.privatePort ?? 1}
pools:
  tasker:
    size: 1
${opts.taskerExtra ?? ''}
rules:
  - name: health-shadow
    match:
      path: /_sidecar/health
    to: tasker
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      headers: { x-livewire: true }
      json:
        components[*].calls[*].method: process
    to: tasker
  - name: reports
    match:
      path: /reports/**
    to: tasker
`
  const env: NodeJS.ProcessEnv = { FLY_APP_NAME: 'demo', FLY_MACHINE_ID: 'web-1', FLY_REGION: 'ams', FLY_IMAGE_REF: 'registry.fly.io/demo:1', FLY_API_TOKEN: 'secret-token' }
  if (opts.pool !== undefined) env.SIDECAR_POOL = opts.pool
  const config = parseConfig(yaml, '/tmp/routes.yaml', env)
  const sidecar = await startSidecar({ config, logger: pino({ level: 'silent' }), pools: opts.pools ?? stubPools(ok) })
  t.teardown(() => sidecar.shutdown())
  return sidecar
}

function url (s: Sidecar, p: string): string { return `http://127.0.0.1:${s.address.port}${p}` }

t.test('on an app Machine', async (t) => {
  const app = await startApp(t)
  const pools = stubPools(ok)
  const s = await start(t, { appPort: app.port, pools })

  t.test('a Livewire process() call is answered with fly-replay and never reaches the app', async (t) => {
    const before = app.seen.length
    const res = await request(url(s, '/livewire/update'), { method: 'POST', headers: { 'content-type': 'application/json', 'x-livewire': '' }, body: LIVEWIRE_PROCESS })
    t.equal(res.statusCode, 307)
    t.equal(res.headers['fly-replay'], 'instance=tasker-1;timeout=45s;fallback=prefer_self;state=livewire-process')
    await res.body.text()
    t.equal(app.seen.length, before, 'app untouched')
  })

  t.test('another Livewire call is inspected and proxied with its original bytes', async (t) => {
    // Odd spacing and key order: a re-serialised body would differ.
    const body = `{ "components" : [ {"calls":[{"method":"refresh"}], "snapshot":"{}"} ] }`
    const res = await request(url(s, '/livewire/update'), { method: 'POST', headers: { 'content-type': 'application/json', 'x-livewire': 'true' }, body })
    t.equal(res.statusCode, 200)
    const got = await res.body.json() as { sha256: string }
    t.equal(got.sha256, sha(body))
    t.equal(res.headers['x-served-by'], 'app')
  })

  t.test('a request matching no rule is proxied untouched', async (t) => {
    const res = await request(url(s, '/a/b?c=%2B+d'), { method: 'PUT', body: LIVEWIRE_OTHER })
    t.equal(res.statusCode, 200)
    t.strictSame(await res.body.json(), { url: '/a/b?c=%2B+d', sha256: sha(LIVEWIRE_OTHER), bytes: LIVEWIRE_OTHER.length })
  })

  t.test('a path rule replays without reading the body', async (t) => {
    const res = await request(url(s, '/reports/2026/q3.csv'))
    t.equal(res.statusCode, 307)
    t.equal(res.headers['fly-replay'], 'instance=tasker-1;timeout=45s;fallback=prefer_self;state=reports')
    await res.body.dump()
  })

  t.test('an already replayed request is served here', async (t) => {
    const res = await request(url(s, '/reports/x'), { headers: { 'fly-replay-src': 'instance=web-2;region=ams;t=1;state=reports' } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['fly-replay'], undefined)
    await res.body.dump()
  })

  t.test('a fallback is served here and the named Machine is reported', async (t) => {
    const res = await request(url(s, '/reports/x'), { headers: { 'fly-replay-failed': 'instance=tasker-9;app=demo;region=ams;replay_source=web-1;reason=timeout;elapsed_ms=30001' } })
    t.equal(res.statusCode, 200)
    await res.body.dump()
    t.strictSame(pools.failed, ['tasker/tasker-9'])
  })

  t.test('the health path cannot be shadowed by a rule', async (t) => {
    const res = await request(url(s, '/_sidecar/health'))
    t.equal(res.statusCode, 200)
    const body = await res.body.json() as { status: string }
    t.equal(body.status, 'ok')
    t.equal(res.headers['fly-replay'], undefined)
  })

  t.test('the health check answers with a query string too; other methods on its path follow the rules', async (t) => {
    const res = await request(url(s, '/_sidecar/health?from=fly'))
    t.equal(res.statusCode, 200)
    t.equal((await res.body.json() as { status: string }).status, 'ok')
    const post = await request(url(s, '/_sidecar/health'), { method: 'POST', body: 'x' })
    t.equal(post.statusCode, 307)
    t.equal(post.headers['fly-replay'], 'instance=tasker-1;timeout=45s;fallback=prefer_self;state=health-shadow')
    await post.body.dump()
  })

  t.test('paths reach the app exactly as received, even ones a router would reject', async (t) => {
    // A raw socket: an HTTP client library would resolve the dot segments itself.
    for (const path of ['/a/%zz/../b//c/?x=%', '/%E0%A4%A', '/a;b=c/%2F/', '//double//slashes//']) {
      const answer = await new Promise<string>((resolve, reject) => {
        const sock = net.connect(s.address.port, '127.0.0.1', () => { sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`) })
        let data = ''
        sock.on('data', (c) => { data += c.toString() })
        sock.on('end', () => { resolve(data) })
        sock.on('error', reject)
      })
      t.match(answer, /^HTTP\/1\.1 200 OK\r\n/, path)
      t.equal((JSON.parse(/\{"url".*\}/.exec(answer)?.[0] ?? '{}') as { url?: string }).url, path)
    }
  })

  t.test('a WebSocket upgrade for a pool path is answered with fly-replay on the socket', async (t) => {
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(s.address.port, '127.0.0.1', () => {
        sock.write('GET /reports/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
      })
      let data = ''
      sock.on('data', (c) => { data += c.toString() })
      sock.on('end', () => { resolve(data) })
      sock.on('error', reject)
    })
    t.match(answer, /^HTTP\/1\.1 307 /)
    t.match(answer, /fly-replay: instance=tasker-1;timeout=45s;fallback=prefer_self;state=reports\r\n/)
  })
})

t.test('on a tasker Machine', async (t) => {
  const app = await startApp(t)
  const s = await start(t, { appPort: app.port, pool: 'tasker' })

  t.test('an ordinary request goes elsewhere', async (t) => {
    const res = await request(url(s, '/dashboard'))
    t.equal(res.statusCode, 307)
    t.equal(res.headers['fly-replay'], 'elsewhere=true;state=default')
    await res.body.dump()
  })

  t.test('a pool request is served here', async (t) => {
    const res = await request(url(s, '/livewire/update'), { method: 'POST', headers: { 'content-type': 'application/json', 'x-livewire': '1' }, body: LIVEWIRE_PROCESS })
    t.equal(res.statusCode, 200)
    t.equal((await res.body.json() as { sha256: string }).sha256, sha(LIVEWIRE_PROCESS))
  })
})

t.test('no Machine can be had', async (t) => {
  const app = await startApp(t)
  const down = (): PoolPick => ({ ok: false, error: new SidecarError('SIDECAR_ERR_MACHINES_UNAVAILABLE', ['no token']) })

  t.test('unavailable: local serves the request here', async (t) => {
    const s = await start(t, { appPort: app.port, pools: stubPools(down) })
    const res = await request(url(s, '/reports/x'))
    t.equal(res.statusCode, 200)
    await res.body.dump()
  })

  t.test('unavailable: reject answers 503 with the JSON error', async (t) => {
    const s = await start(t, { appPort: app.port, pools: stubPools(down), taskerExtra: '    unavailable: reject\n' })
    const res = await request(url(s, '/reports/x'))
    t.equal(res.statusCode, 503)
    const body = await res.body.json() as { error: { code: string, message: string } }
    t.equal(body.error.code, 'SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE')
    t.strictSame(Object.keys(body), ['error'])
    t.strictSame(Object.keys(body.error).sort(), ['code', 'message'])
  })
})

t.test('a body too large to replay is forwarded to the pool Machine, streamed', async (t) => {
  const app = await startApp(t, 'app')
  const tasker = await startApp(t, 'tasker')
  const s = await start(t, { appPort: app.port, privatePort: tasker.port })
  const big = Buffer.alloc(2 * 1024 * 1024, 7)
  const res = await request(url(s, '/reports/upload'), { method: 'POST', body: big })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-served-by'], 'tasker')
  t.equal((await res.body.json() as { sha256: string }).sha256, sha(big))
  t.equal(app.seen.length, 0)
})

/** Sends raw bytes on a new connection and resolves with everything read until the server closes. */
async function raw (port: number, text: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', reject)
    s.on('close', () => { resolve(Buffer.concat(parts).toString('latin1')) })
    s.write(text)
  })
}

t.test('absolute-form targets match every kind of rule on their path and query (RFC 9112 §3.2.2)', async (t) => {
  const app = await startApp(t)
  const yaml = `listen: 127.0.0.1:0
app:
  url: http://127.0.0.1:${app.port}
  ready-timeout: 1s
metrics: false
fly:
  replay-timeout: 45s
pools:
  tasker:
    size: 1
rules:
  - name: by-json
    match:
      method: POST
      path: /livewire/update
      json:
        components[*].calls[*].method: process
    to: tasker
  - name: by-form
    match:
      method: POST
      path: /form
      form:
        action: process
    to: tasker
  - name: by-query
    match:
      path: /export
      query:
        format: csv
    to: tasker
  - name: by-header
    match:
      path: /api/**
      headers: { x-task: heavy }
    to: tasker
  - name: by-method
    match:
      method: DELETE
      path: /items/*
    to: tasker
  - name: by-path
    match:
      path: /reports/**
    to: tasker
`
  const env: NodeJS.ProcessEnv = { FLY_APP_NAME: 'demo', FLY_MACHINE_ID: 'web-1', FLY_REGION: 'ams', FLY_IMAGE_REF: 'registry.fly.io/demo:1', FLY_API_TOKEN: 'secret-token' }
  const s = await startSidecar({ config: parseConfig(yaml, '/tmp/routes.yaml', env), logger: pino({ level: 'silent' }), pools: stubPools(ok) })
  t.teardown(() => s.shutdown())
  const form = 'action=process&id=7'
  const cases: readonly [string, string, string | undefined][] = [
    ['json', `POST http://shop.example.test/livewire/update HTTP/1.1\r\nHost: shop.example.test\r\nContent-Type: application/json\r\nContent-Length: ${LIVEWIRE_PROCESS.length}\r\nConnection: close\r\n\r\n${LIVEWIRE_PROCESS}`, 'by-json'],
    ['form', `POST https://shop.example.test/form HTTP/1.1\r\nHost: shop.example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\nConnection: close\r\n\r\n${form}`, 'by-form'],
    ['query', 'GET http://shop.example.test:8080/export?format=csv HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n', 'by-query'],
    ['query not matching', 'GET http://shop.example.test/export?format=pdf HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n', undefined],
    ['header', 'GET http://shop.example.test/api/jobs HTTP/1.1\r\nHost: shop.example.test\r\nX-Task: heavy\r\nConnection: close\r\n\r\n', 'by-header'],
    ['method', 'DELETE HTTP://shop.example.test/items/9 HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n', 'by-method'],
    ['path, no path in the target', 'GET http://shop.example.test?x=1 HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n', undefined],
    ['path', 'GET http://shop.example.test/reports/2026/q3.csv HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n', 'by-path'],
  ]
  for (const [kind, bytes, rule] of cases) {
    const before = app.seen.length
    const answer = await raw(s.address.port, bytes)
    if (rule === undefined) {
      t.match(answer, /^HTTP\/1\.1 200 /, `${kind}: served by the app`)
      t.equal(app.seen.length, before + 1, `${kind}: the app got it`)
    } else {
      t.match(answer, /^HTTP\/1\.1 307 /, `${kind}: replayed`)
      t.match(answer, new RegExp(`\r\nfly-replay: instance=tasker-1;timeout=45s;fallback=prefer_self;state=${rule}\r\n`), `${kind}: by rule ${rule}`)
      t.equal(app.seen.length, before, `${kind}: the app never saw it`)
    }
  }
  t.strictSame(app.seen.map((x) => x.url), ['/export?format=pdf', '/?x=1'], 'the app gets the origin-form path and query')
})

t.test('client connections: unread bodies, 100-continue, HTTP/1.0 keep-alive', async (t) => {
  const app = await startApp(t)
  const s = await start(t, { appPort: app.port })
  const port = s.address.port

  await t.test('a body not read for the answer (a path rule replays) is skipped: the pipelined request behind it is served', async (t) => {
    const before = app.seen.length
    const answer = await raw(port,
      'POST /reports/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
      'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    t.match(answer, /^HTTP\/1\.1 307 Temporary Redirect\r\n/, 'the replay first')
    t.match(answer, /\r\n\r\n\{"replay":true\}\nHTTP\/1\.1 200 OK\r\n/, 'then the next answer')
    t.strictSame(app.seen.slice(before).map((x) => x.url), ['/after'], 'the body never reached the app as a request')
  })

  await t.test('Expect: 100-continue with a body the answer does not need: no 100, the connection closes', async (t) => {
    const started = Date.now()
    const answer = await raw(port, 'POST /reports/b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n')
    t.notMatch(answer, /100 Continue/, 'the client is not asked for the body')
    t.match(answer, /^HTTP\/1\.1 307 Temporary Redirect\r\n(?:[^\r]+\r\n)*Connection: close\r\n\r\n/, 'the answer says it closes')
    t.ok(Date.now() - started < 5000, 'and the connection is closed, not left waiting for the body')
  })

  await t.test('Expect: 100-continue for a proxied body: 100 Continue, then the app\'s answer', async (t) => {
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1')
      let got = ''
      sock.on('data', (c: Buffer) => {
        got += c.toString('latin1')
        if (got === 'HTTP/1.1 100 Continue\r\n\r\n') sock.write('hello')
      })
      sock.on('error', reject)
      sock.on('close', () => { resolve(got) })
      sock.write('PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n')
    })
    t.match(answer, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
    t.equal(app.seen.at(-1)?.sha256, sha('hello'), 'the body reached the app')
    t.equal(app.seen.at(-1)?.headers.expect, undefined, 'without the expectation')
  })

  await t.test('HTTP/1.0 with keep-alive: the connection is kept and says so; without it, closed', async (t) => {
    // Answers of known length (replays): an HTTP/1.0 client cannot read a chunked one, so an app's
    // chunked answer would close the connection anyway (test/proxy/forward.test.ts).
    const answer = await raw(port, 'GET /reports/one HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /reports/two HTTP/1.0\r\n\r\n')
    const heads = answer.split(/\r\n\r\n\{"replay":true\}\n/).filter((x) => x.startsWith('HTTP/1.1'))
    t.equal(heads.length, 2, 'both answered on one connection')
    t.match(heads[0], /\r\nConnection: keep-alive$/, 'the first one kept alive')
    t.match(heads[1], /\r\nConnection: close$/, 'the second one closed')
  })
})

t.test('shutdown: the response in flight ends with Connection: close, a request pipelined behind it gets 503', async (t) => {
  let release: (() => void) | undefined
  const slow = http.createServer((req, res) => {
    req.resume()
    const answer = (): void => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' }); res.end('slow') }
    if (req.url === '/slow') release = answer
    else answer()
  })
  const appPort = await listen(slow)
  t.teardown(() => closeServer(slow))
  const s = await start(t, { appPort })
  const sock = net.connect(s.address.port, '127.0.0.1')
  let got = ''
  sock.on('data', (c: Buffer) => { got += c.toString('latin1') })
  const closed = new Promise<void>((resolve) => { sock.on('close', () => { resolve() }) })
  sock.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n')
  for (let i = 0; i < 300 && release === undefined; i++) await sleep(10)
  t.ok(release !== undefined, 'the app has the first request')
  const stopping = s.shutdown()
  await sleep(50)
  release?.()
  await closed
  await stopping
  t.match(got, /^HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain\r\ncontent-length: 4\r\n(?:[^\r]+\r\n)*Connection: close\r\n\r\nslow/, 'the response in flight, told to close')
  t.match(got, /slowHTTP\/1\.1 503 Service Unavailable\r\n[^]*\r\nconnection: close\r\n\r\n\{"error":\{"code":"SIDECAR_ERR_SERVER_CLOSING","message":"the sidecar is shutting down"\}\}$/i, 'the request behind it: 503 and closed')
})

t.test('bodies of many clients at once reach an app that reads slowly intact (client reads share one buffer)', async (t) => {
  // The app lets each body wait before reading it, so writes to it stay pending while other
  // clients' reads arrive: a body byte kept as a view of the shared read buffer would change.
  const seen: Array<{ url: string, sha256: string }> = []
  const server = http.createServer((req, res) => {
    setTimeout(() => {
      const hash = createHash('sha256')
      req.on('data', (c: Buffer) => { hash.update(c) })
      req.on('end', () => {
        seen.push({ url: req.url ?? '', sha256: hash.digest('hex') })
        res.end('ok')
      })
    }, 100)
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const s = await start(t, { appPort: port })
  const clients = 8
  const size = 1024 * 1024
  const bodies = Array.from({ length: clients }, (_, i) => {
    const b = Buffer.alloc(size)
    for (let k = 0; k < size; k++) b[k] = (k * (i + 3) + i) & 0xff
    return b
  })
  const answers = await Promise.all(bodies.map(async (body, i) => {
    // Sent in 16 KiB pieces, so that reads from every client interleave.
    const pieces = Array.from({ length: size / 16384 }, (_, k) => body.subarray(k * 16384, (k + 1) * 16384))
    const res = await request(url(s, `/upload/${i}`), { method: 'POST', headers: { 'content-length': String(size) }, body: Readable.from(pieces) })
    return `${res.statusCode} ${await res.body.text()}`
  }))
  t.strictSame(answers, bodies.map(() => '200 ok'))
  t.strictSame(seen.map((x) => x.url).sort(), bodies.map((_, i) => `/upload/${i}`).sort())
  for (const x of seen) t.equal(x.sha256, sha(bodies[Number(x.url.split('/')[2])] as Buffer), `${x.url}: the app got the client's bytes`)
})

t.test('a head that arrives in pieces, with other clients read in between, reaches the app as sent', async (t) => {
  const app = await startApp(t)
  const s = await start(t, { appPort: app.port })
  const port = s.address.port
  const value = 'v'.repeat(3000)
  const slow = net.connect(port, '127.0.0.1')
  const got: Buffer[] = []
  slow.on('data', (c: Buffer) => got.push(c))
  const closed = new Promise((resolve) => slow.on('close', resolve))
  await new Promise((resolve) => slow.once('connect', resolve))
  // The first part of the head is kept between reads; another client's request is read into
  // the same buffer meanwhile, then the head completes.
  slow.write(`GET /pieces HTTP/1.1\r\nHost: x\r\nx-long: ${value.slice(0, 1500)}`)
  await sleep(50)
  const other = await raw(port, `GET /other HTTP/1.1\r\nHost: x\r\nx-other: ${'o'.repeat(3000)}\r\nConnection: close\r\n\r\n`)
  t.match(other, /^HTTP\/1\.1 200 /)
  slow.write(`${value.slice(1500)}\r\nConnection: close\r\n\r\n`)
  await closed
  t.match(Buffer.concat(got).toString('latin1'), /^HTTP\/1\.1 200 [^]*"url":"\/pieces"/)
  const seen = app.seen.find((x) => x.url === '/pieces')
  t.equal(seen?.headers['x-long'], value, 'the head as the client sent it')
})
