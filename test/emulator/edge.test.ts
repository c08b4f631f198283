// The edge against tiny fake Machines (plain http servers that answer fly-replay): routing,
// replay in both forms, elsewhere, the hop and body limits, fallbacks, wake, streaming, WebSockets.
import t, { type Test } from 'tap'
import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { WebSocketServer, WebSocket } from 'ws'
import { startEdge, parseReplayHeader, parseFields, parseDuration } from '../../src/emulator/edge.ts'
import type { EdgeEvent, EdgeFleet, EdgeMachine } from '../../src/emulator/edge.ts'
import { listen, closeServer, deadPort } from '../helpers/net.ts'

interface Fake {
  id: string
  state: string
  url: string | undefined
  /** Where it listens, also while it pretends to be stopped. */
  realUrl: string
  server: http.Server
  hits: { method: string, url: string, headers: http.IncomingHttpHeaders, body: Buffer }[]
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer, self: Fake) => void

async function fakeMachine (t: Test, id: string, handler: Handler, started = true): Promise<Fake> {
  const fake: Fake = { id, state: started ? 'started' : 'stopped', url: undefined, realUrl: '', server: http.createServer(), hits: [] }
  fake.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      fake.hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      handler(req, res, body, fake)
    })
  })
  const port = await listen(fake.server)
  fake.realUrl = `http://127.0.0.1:${port}`
  if (started) fake.url = fake.realUrl
  t.teardown(() => closeServer(fake.server))
  return fake
}

function fleetOf (fakes: Fake[], extra: EdgeMachine[] = []): EdgeFleet & { woken: string[] } {
  const woken: string[] = []
  return {
    woken,
    list: () => [...fakes.map((f) => ({ id: f.id, state: f.state, url: f.url })), ...extra],
    wake: async (id) => {
      woken.push(id)
      const f = fakes.find((x) => x.id === id)
      if (f === undefined) throw new Error('no such machine')
      await new Promise((resolve) => setTimeout(resolve, 50))
      f.state = 'started'
      f.url = f.realUrl
      return f.url
    },
  }
}

async function edgeFor (t: Test, fleet: EdgeFleet, opts: { defaultReplayTimeoutMs?: number } = {}): Promise<{ url: string, events: EdgeEvent[] }> {
  const events: EdgeEvent[] = []
  const edge = await startEdge({ app: 'demo', fleet, onEvent: (e) => events.push(e), ...opts })
  t.teardown(() => edge.close())
  return { url: edge.url, events }
}

const text = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
  res.writeHead(status, { 'content-type': 'text/plain', ...headers })
  res.end(body)
}

t.test('parsers', async (t) => {
  t.strictSame([...parseFields('instance=abc;state="a;b",timeout=2s')], [['instance', 'abc'], ['state', 'a;b'], ['timeout', '2s']])
  t.strictSame(parseReplayHeader('instance=m2;timeout=30s;fallback=prefer_self;state=livewire-process'),
    { elsewhere: false, instance: 'm2', state: 'livewire-process', timeoutMs: 30_000, fallback: 'prefer_self' })
  t.strictSame(parseReplayHeader('elsewhere=true;state=default'), { elsewhere: true, state: 'default' })
  t.equal(parseDuration('800ms'), 800)
  t.equal(parseDuration('2m'), 120_000)
  t.equal(parseDuration('soon'), undefined)
})

t.test('a plain request is served by a Machine with Fly request headers', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 200, 'hello from m1'))
  const { url, events } = await edgeFor(t, fleetOf([m1]))
  const res = await fetch(`${url}/x?y=1`, { headers: { 'x-forwarded-for': '10.0.0.9' } })
  t.equal(res.status, 200)
  t.equal(await res.text(), 'hello from m1')
  const id = res.headers.get('fly-request-id')
  t.match(id, /^[0-9a-f]{20}-dev$/)
  const hit = m1.hits[0]
  t.equal(hit?.url, '/x?y=1')
  t.equal(hit?.headers['fly-request-id'], id)
  t.equal(hit?.headers['fly-region'], 'dev')
  t.equal(hit?.headers['fly-client-ip'], '127.0.0.1')
  t.equal(hit?.headers['x-forwarded-for'], '10.0.0.9, 127.0.0.1')
  t.strictSame(events.map((e) => e.type), ['route', 'served', 'chunk', 'done'])
})

t.test('header fly-replay: instance= replays method, path, body and adds fly-replay-src', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=m2;timeout=5s;fallback=prefer_self;state=livewire-process' }))
  const m2 = await fakeMachine(t, 'm2', (req, res, body) => text(res, 201, `m2 got ${req.method} ${req.url} ${body.toString()}`))
  const { url, events } = await edgeFor(t, fleetOf([m1, m2]))
  const res = await fetch(`${url}/livewire/update`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json', 'fly-force-instance-id': 'm1' } })
  t.equal(res.status, 201)
  t.equal(await res.text(), 'm2 got POST /livewire/update {"a":1}')
  t.equal(m1.hits.length, 1)
  t.equal(m2.hits.length, 1)
  const src = String(m2.hits[0]?.headers['fly-replay-src'])
  t.match(src, /^instance=m1;region=dev;t=\d{16};state=livewire-process$/)
  const tUs = Number(/t=(\d+)/.exec(src)?.[1])
  t.ok(Math.abs(tUs / 1000 - Date.now()) < 5_000, 't is microseconds since the epoch')
  t.equal(m2.hits[0]?.headers['content-length'], '7')
  t.strictSame(events.filter((e) => e.type === 'replay').map((e) => [e.machine, e.target, e.state, e.hop]), [['m1', 'm2', 'livewire-process', 1]])
})

t.test('JSON form replays with transform (path, set and delete headers)', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.fly.replay+json' })
    res.end(JSON.stringify({ instance: 'm2', state: 'json', transform: { path: '/moved?q=2', set_headers: [{ name: 'X-Set', value: 'yes' }], delete_headers: ['x-secret'] } }))
  })
  const m2 = await fakeMachine(t, 'm2', (req, res) => text(res, 200, 'ok'))
  const { url } = await edgeFor(t, fleetOf([m1, m2]))
  const res = await fetch(`${url}/orig`, { headers: { 'fly-force-instance-id': 'm1', 'x-secret': 's', 'x-keep': 'k' } })
  t.equal(await res.text(), 'ok')
  const h = m2.hits[0]
  t.equal(h?.url, '/moved?q=2')
  t.equal(h?.headers['x-set'], 'yes')
  t.equal(h?.headers['x-secret'], undefined)
  t.equal(h?.headers['x-keep'], 'k')
  t.match(String(h?.headers['fly-replay-src']), /^instance=m1;region=dev;t=\d+;state=json$/)
})

t.test('elsewhere=true sends the request to another Machine, never back', async (t) => {
  const elsewhere: Handler = (req, res, body, self) => req.headers['fly-replay-src'] === undefined
    ? text(res, 307, '', { 'fly-replay': 'elsewhere=true;state=default' })
    : text(res, 500, `${self.id} must not serve a replay`)
  const tasker = await fakeMachine(t, 'tasker', elsewhere)
  const app = await fakeMachine(t, 'app1', (req, res, body, self) => text(res, 200, `served by ${self.id}`))
  const { url, events } = await edgeFor(t, fleetOf([tasker, app]))
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${url}/page`, { headers: { 'fly-force-instance-id': 'tasker' } })
    t.equal(await res.text(), 'served by app1')
  }
  t.equal(tasker.hits.length, 3)
  t.equal(app.hits.length, 3)
  t.match(String(app.hits[0]?.headers['fly-replay-src']), /^instance=tasker;region=dev;t=\d+;state=default$/)
  t.equal(events.filter((e) => e.type === 'served').length, 3)
  t.strictSame(events.filter((e) => e.type === 'replay').map((e) => [e.machine, e.target, e.reason, e.state]), Array(3).fill(['tasker', 'app1', 'elsewhere', 'default']))
})

t.test('prefer_instance: a missing Machine is replaced by another, and the request says so', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res, body, self) => req.headers['fly-replay-src'] === undefined
    ? text(res, 307, '', { 'fly-replay': 'prefer_instance=ghost;state=p' })
    : text(res, 200, `${self.id} ${String(req.headers['fly-preferred-instance-unavailable'])}`))
  const { url } = await edgeFor(t, fleetOf([m1]))
  t.equal(await (await fetch(url)).text(), 'm1 ghost')
})

t.test('fallback=force_self: no other Machine is tried when the origin is gone too', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => {
    text(res, 307, '', { 'fly-replay': 'instance=ghost;fallback=force_self' })
    // Gone right after answering: the fallback has nowhere to go.
    m1.state = 'destroyed'
  })
  const m2 = await fakeMachine(t, 'm2', (req, res) => text(res, 200, 'm2 must not serve this'))
  const { url } = await edgeFor(t, fleetOf([m1, m2]))
  const res = await fetch(url, { headers: { 'fly-force-instance-id': 'm1' } })
  t.equal(res.status, 502)
  t.strictSame(await res.json(), { error: { code: 'PR04', message: 'replay fallback to m1 failed: no_candidate' } })
  t.equal(m2.hits.length, 0)
})

t.test('fallback=prefer_self: another Machine serves when the origin is gone too', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => {
    text(res, 307, '', { 'fly-replay': 'instance=ghost;fallback=prefer_self' })
    m1.state = 'destroyed'
  })
  const m2 = await fakeMachine(t, 'm2', (req, res) => text(res, 200, `m2: ${String(req.headers['fly-replay-failed'])}`))
  const { url } = await edgeFor(t, fleetOf([m1, m2]))
  const res = await fetch(url, { headers: { 'fly-force-instance-id': 'm1' } })
  t.match(await res.text(), /^m2: instance=ghost;app=demo;region=dev;replay_source=m1;reason=no_candidate;elapsed_ms=\d+$/)
})

t.test('the 11th replay of a request is refused with PA02', async (t) => {
  const ping: Handler = (req, res, body, self) => text(res, 307, '', { 'fly-replay': `instance=${self.id === 'a' ? 'b' : 'a'}` })
  const a = await fakeMachine(t, 'a', ping)
  const b = await fakeMachine(t, 'b', ping)
  const { url } = await edgeFor(t, fleetOf([a, b]))
  const res = await fetch(`${url}/loop`, { method: 'POST', body: 'x' })
  t.equal(res.status, 502)
  t.strictSame(await res.json(), { error: { code: 'PA02', message: 'too many fly-replay hops (more than 10)' } })
  t.equal(a.hits.length + b.hits.length, 11)
})

t.test('bodies: exactly 1 MiB replays; 1 MiB + 1 is refused like Fly (PA01)', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=m2' }))
  const m2 = await fakeMachine(t, 'm2', (req, res, body) => text(res, 200, `m2 got ${body.length}`))
  const { url } = await edgeFor(t, fleetOf([m1, m2]))
  const exact = await fetch(url, { method: 'POST', body: Buffer.alloc(1024 * 1024, 97), headers: { 'fly-force-instance-id': 'm1' } })
  t.equal(await exact.text(), 'm2 got 1048576')
  const over = await fetch(url, { method: 'POST', body: Buffer.alloc(1024 * 1024 + 1, 97), headers: { 'fly-force-instance-id': 'm1' } })
  t.equal(over.status, 502)
  t.strictSame(await over.json(), { error: { code: 'PA01', message: 'request body over 1048576 bytes cannot be replayed' } })
  t.equal(m1.hits[1]?.body.length, 1024 * 1024 + 1, 'the large body still reached the first Machine whole')
  t.equal(m2.hits.length, 1)
})

t.test('a chunked body keeps its unknown length on the way to the Machine', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res, body) => text(res, 200, `${String(req.headers['transfer-encoding'])} ${String(req.headers['content-length'])} ${body.length}`))
  const { url } = await edgeFor(t, fleetOf([m1]))
  const port = new URL(url).port
  const answer = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/' }, (res) => {
      let s = ''; res.setEncoding('utf8'); res.on('data', (c: string) => { s += c }); res.on('end', () => resolve(s))
    })
    req.on('error', reject)
    req.write('abc'); req.end('def')
  })
  t.equal(answer, 'chunked undefined 6')
})

t.test('fallback=prefer_self: an unreachable target sends the request back with fly-replay-failed', async (t) => {
  const dead = await deadPort()
  const m1 = await fakeMachine(t, 'm1', (req, res) => req.headers['fly-replay-failed'] === undefined
    ? text(res, 307, '', { 'fly-replay': 'instance=m2;timeout=400ms;fallback=prefer_self;state=s' })
    : text(res, 200, `m1 served the fallback: ${String(req.headers['fly-replay-failed'])}`))
  const { url, events } = await edgeFor(t, fleetOf([m1], [{ id: 'm2', state: 'started', url: `http://127.0.0.1:${dead}` }]))
  const t0 = Date.now()
  const res = await fetch(url, { method: 'POST', body: 'b', headers: { 'fly-force-instance-id': 'm1' } })
  const body = await res.text()
  t.match(body, /^m1 served the fallback: instance=m2;app=demo;region=dev;replay_source=m1;reason=timeout;elapsed_ms=(\d+)$/)
  const elapsed = Number(/elapsed_ms=(\d+)/.exec(body)?.[1])
  t.ok(elapsed >= 300 && elapsed < 2_000, `elapsed_ms ${elapsed} is about the 400 ms timeout`)
  t.ok(Date.now() - t0 >= 300)
  t.equal(m1.hits.length, 2)
  t.equal(m1.hits[1]?.headers['fly-replay-src'], undefined, 'a fallback is not a replay')
  t.equal(m1.hits[1]?.body.toString(), 'b')
  t.strictSame(events.filter((e) => e.type === 'fallback').map((e) => [e.machine, e.target, e.reason]), [['m1', 'm2', 'timeout']])
})

t.test('fallback with no_candidate, and no fallback at all', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => {
    if (req.headers['fly-replay-failed'] !== undefined) return text(res, 200, String(req.headers['fly-replay-failed']))
    if (req.url === '/nofallback') return text(res, 307, '', { 'fly-replay': 'instance=ghost;timeout=1s' })
    if (req.url === '/again') return text(res, 307, '', { 'fly-replay': 'instance=ghost;fallback=prefer_self' })
    return text(res, 307, '', { 'fly-replay': 'instance=ghost;fallback=prefer_self' })
  })
  const { url } = await edgeFor(t, fleetOf([m1]))
  t.match(await (await fetch(url)).text(), /^instance=ghost;app=demo;region=dev;replay_source=m1;reason=no_candidate;elapsed_ms=\d+$/)
  const res = await fetch(`${url}/nofallback`)
  t.equal(res.status, 502)
  t.strictSame(await res.json(), { error: { code: 'PR04', message: 'fly-replay target ghost unavailable: no_candidate' } })
})

t.test('a fallback request cannot replay again', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=ghost;fallback=prefer_self' }))
  const { url } = await edgeFor(t, fleetOf([m1]))
  const res = await fetch(url)
  t.equal(res.status, 502)
  t.strictSame(await res.json(), { error: { code: 'PA03', message: 'Machine m1 answered fly-replay to a replay fallback, which cannot replay again' } })
  t.equal(m1.hits.length, 2)
})

t.test('a stopped target is woken by the replay', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=m2;timeout=5s' }))
  const m2 = await fakeMachine(t, 'm2', (req, res) => text(res, 200, 'awake'), false)
  const fleet = fleetOf([m1, m2])
  const { url, events } = await edgeFor(t, fleet)
  t.equal(await (await fetch(url)).text(), 'awake')
  t.strictSame(fleet.woken, ['m2'])
  t.strictSame(events.filter((e) => e.type === 'wake').map((e) => [e.machine, e.reason]), [['m2', 'stopped']])
  t.equal(await (await fetch(url)).text(), 'awake', 'the second call finds it started')
  t.strictSame(fleet.woken, ['m2'])
})

t.test('a client that goes away while the target wakes is not sent on', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=m2;timeout=5s' }))
  const m2 = await fakeMachine(t, 'm2', (req, res) => text(res, 200, 'awake'), false)
  const fleet = fleetOf([m1, m2])
  const slowWake = fleet.wake
  fleet.wake = async (id, signal) => { await new Promise((resolve) => setTimeout(resolve, 400)); return await slowWake(id, signal) }
  const { url, events } = await edgeFor(t, fleet)
  const gone = new AbortController()
  setTimeout(() => gone.abort(), 150)
  await t.rejects(fetch(url, { method: 'POST', body: 'x', headers: { 'fly-force-instance-id': 'm1' }, signal: gone.signal }))
  const deadline = Date.now() + 3_000
  while (!events.some((e) => e.type === 'error') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.strictSame(fleet.woken, ['m2'], 'the wake was under way')
  t.equal(m2.hits.length, 0, 'the woken Machine never got the request')
  t.strictSame(events.filter((e) => e.type === 'error').map((e) => [e.status, e.reason]), [[499, 'PC01: the client went away']])
})

t.test('no Machine running: the edge wakes one; none at all: 503', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 200, 'up'), false)
  const fleet = fleetOf([m1])
  const { url } = await edgeFor(t, fleet)
  t.equal(await (await fetch(url)).text(), 'up')
  t.strictSame(fleet.woken, ['m1'])
  const empty = await edgeFor(t, fleetOf([]))
  const res = await fetch(empty.url)
  t.equal(res.status, 503)
  t.strictSame(await res.json(), { error: { code: 'PR01', message: 'no Machine of app demo can take the request' } })
})

t.test('least connections: a Machine holding a stream gets no new requests', async (t) => {
  let release = (): void => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const handler: Handler = (req, res, body, self) => {
    if (req.url === '/hold') { res.writeHead(200); res.write('start '); void held.then(() => res.end(self.id)); return }
    text(res, 200, self.id)
  }
  const a = await fakeMachine(t, 'a', handler)
  const b = await fakeMachine(t, 'b', handler)
  const { url } = await edgeFor(t, fleetOf([a, b]))
  const hold = await fetch(`${url}/hold`)
  const holder = a.hits.length === 1 ? 'a' : 'b'
  const other = holder === 'a' ? 'b' : 'a'
  const served = []
  for (let i = 0; i < 4; i++) served.push(await (await fetch(`${url}/quick`)).text())
  t.strictSame(served, [other, other, other, other])
  release()
  t.equal(await hold.text(), `start ${holder}`)
})

t.test('a replayed streamed response reaches the client chunk by chunk', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=m2' }))
  const m2 = await fakeMachine(t, 'm2', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    let i = 0
    const tick = setInterval(() => {
      res.write(`{"chunk":${i}}`)
      if (++i === 5) { clearInterval(tick); res.end() }
    }, 150)
  })
  const { url } = await edgeFor(t, fleetOf([m1, m2]))
  const res = await fetch(url, { method: 'POST', body: 'x', headers: { 'fly-force-instance-id': 'm1' } })
  const arrivals: number[] = []
  const parts: string[] = []
  const decoder = new TextDecoder()
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    arrivals.push(Date.now())
    parts.push(decoder.decode(chunk))
  }
  t.equal(parts.join(''), '{"chunk":0}{"chunk":1}{"chunk":2}{"chunk":3}{"chunk":4}')
  t.equal(parts.length, 5, 'five separate reads')
  const gaps = arrivals.slice(1).map((v, i) => v - (arrivals[i] as number))
  t.ok(gaps.every((g) => g >= 80), `chunks spaced like the app wrote them: ${gaps.join(', ')} ms`)
})

t.test('a Machine that aborts mid-stream ends the client response with an error', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial')
    setTimeout(() => res.socket?.destroy(), 50)
  })
  const { url } = await edgeFor(t, fleetOf([m1]))
  const res = await fetch(url)
  await t.rejects(res.text())
})

t.test('WebSocket upgrades are replayed and tunnelled', async (t) => {
  const m1 = await fakeMachine(t, 'm1', (req, res) => text(res, 307, '', { 'fly-replay': 'instance=m2;state=ws' }))
  m1.server.on('upgrade', (req: IncomingMessage, socket) => {
    socket.end('HTTP/1.1 307 Temporary Redirect\r\nfly-replay: instance=m2;state=ws\r\ncontent-length: 0\r\n\r\n')
  })
  const m2 = await fakeMachine(t, 'm2', (req, res) => text(res, 404, 'no'))
  const wss = new WebSocketServer({ server: m2.server })
  let src = ''
  wss.on('connection', (ws, req) => {
    src = String(req.headers['fly-replay-src'])
    ws.on('message', (data) => ws.send(`echo ${String(data)}`))
  })
  t.teardown(() => wss.close())
  const { url } = await edgeFor(t, fleetOf([m1, m2]))
  const ws = new WebSocket(url.replace('http', 'ws') + '/socket', ['chat'], { headers: { 'fly-force-instance-id': 'm1' } })
  const reply = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('hi'))
    ws.on('message', (d) => resolve(String(d)))
    ws.on('error', reject)
  })
  t.equal(reply, 'echo hi')
  t.equal(ws.protocol, 'chat')
  t.match(src, /^instance=m1;region=dev;t=\d+;state=ws$/)
  const code = await new Promise<number>((resolve) => { ws.on('close', (c) => resolve(c)); ws.close(4001) })
  t.equal(code, 4001)
})
