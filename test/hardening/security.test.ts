// Security properties of a real sidecar: the API token never leaves the Authorization header;
// nothing a client sends changes where the sidecar connects or which Machine a replay names;
// client-sent fly-replay headers are not echoed; health and metrics hold no secrets.
import t, { type Test } from 'tap'
import net from 'node:net'
import { request } from 'undici'
import { startMachinesApi, type MachinesApi } from '../../src/emulator/machines-api.ts'
import { createPoolMachines } from '../../src/machines/pool.ts'
import { METADATA_POOL } from '../../src/machines/api-types.ts'
import { listen } from '../helpers/net.ts'
import { startLenientUpstream, type LenientUpstream } from '../helpers/lenient-upstream.ts'
import { FLY_ENV, TOKEN, rawExchange, startHardened, statusOf, stubPools, type Started } from './harness.ts'

const SECRET_PART = TOKEN.slice('FlyV1 '.length)
const FAST = { callTimeoutMs: 300, attempts: 2, backoffBaseMs: 5, backoffCapMs: 20, maxRetryAfterMs: 100, errorRetryMs: 0, cacheTtlMs: 60_000 }

async function fakeApi (t: Test, token = TOKEN): Promise<MachinesApi> {
  const api = await startMachinesApi({ app: 'demo', token })
  t.teardown(() => api.close())
  api.addMachine({ id: 'web-1', region: 'ams', config: { image: FLY_ENV.FLY_IMAGE_REF as string, metadata: {} } })
  api.addMachine({ id: 'tasker-7', region: 'ams', state: 'started', config: { image: FLY_ENV.FLY_IMAGE_REF as string, metadata: { [METADATA_POOL]: 'tasker' } } })
  return api
}

/** A listener nothing should ever connect to. */
async function trap (t: Test): Promise<{ port: number, connections: () => number }> {
  let n = 0
  const server = net.createServer((s) => { n++; s.destroy() })
  const port = await listen(server)
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { port, connections: () => n }
}

async function app (t: Test): Promise<LenientUpstream> {
  const up = await startLenientUpstream()
  t.teardown(() => up.close())
  return up
}

function assertNoSecret (t: Test, where: string, text: string, secrets: readonly string[]): void {
  for (const s of secrets) t.notOk(text.includes(s), `${where} does not contain ${s.slice(0, 12)}…`)
}

t.test('the API token never appears in logs, error bodies, health or metrics', async (t) => {
  const original = { ...process.env }
  // Secrets the app has in its environment: health and metrics must not show them either.
  process.env.DATABASE_URL = 'postgres://shop:hunter2-db-password@db.internal/shop'
  process.env.APP_KEY = 'base64:c2VjcmV0LWFwcC1rZXktZm9yLXRlc3Rz'
  t.teardown(() => { process.env = original })
  const secrets = [TOKEN, SECRET_PART, 'hunter2-db-password', 'c2VjcmV0LWFwcC1rZXktZm9yLXRlc3Rz']

  const up = await app(t)
  const seen: string[] = []
  const record = async (res: Awaited<ReturnType<typeof request>>): Promise<string> => {
    const text = await res.body.text()
    seen.push(JSON.stringify(res.headers), text)
    return text
  }
  const runs: Started[] = []
  const scenarios: readonly [string, (api: MachinesApi) => void, string][] = [
    ['a replay', () => {}, ''],
    ['the API answering 500', (api) => { api.fault({ method: 'GET' }, { status: 500, body: { error: 'internal' } }, Infinity) }, '    unavailable: reject\n'],
    ['the API answering 429', (api) => { api.fault({ method: 'GET' }, { status: 429, headers: { 'retry-after': '0' }, body: { error: 'slow down' } }, Infinity) }, ''],
    ['the API answering garbage', (api) => { api.fault({ method: 'GET' }, { status: 200, garbage: true }, Infinity) }, ''],
  ]
  for (const [name, fault, extra] of scenarios) {
    const api = await fakeApi(t)
    fault(api)
    const s = await startHardened(t, {
      appUrl: `http://127.0.0.1:${up.port}`,
      apiUrl: api.url,
      metrics: true,
      extra,
      env: { DATABASE_URL: process.env.DATABASE_URL, APP_KEY: process.env.APP_KEY },
      pools: (config, logger) => createPoolMachines({ config, logger, timing: FAST }),
    })
    runs.push(s)
    await record(await request(`http://127.0.0.1:${s.port}/reports/a`, { headers: { authorization: `Bearer ${SECRET_PART}` } }))
    await record(await request(`http://127.0.0.1:${s.port}/plain`))
    const health = await record(await request(`http://127.0.0.1:${s.port}/_sidecar/health`))
    t.ok(health.length > 0, `${name}: health answered`)
    const metrics = await record(await request(`http://127.0.0.1:${s.sidecar.metricsPort as number}/metrics`))
    t.match(metrics, /fly_replay_sidecar_/, `${name}: metrics answered`)
    await s.sidecar.shutdown()
    if (name === 'a replay') t.ok(api.calls.some((c) => c.headers.authorization === TOKEN), 'the token was used, in the Authorization header')
  }
  // An API that does not accept the token: its 401 is logged and shown in health.
  const strict = await fakeApi(t, 'FlyV1 some-other-token')
  const s401 = await startHardened(t, {
    appUrl: `http://127.0.0.1:${up.port}`,
    apiUrl: strict.url,
    metrics: true,
    pools: (config, logger) => createPoolMachines({ config, logger, timing: FAST }),
  })
  runs.push(s401)
  await record(await request(`http://127.0.0.1:${s401.port}/reports/a`))
  const health401 = await record(await request(`http://127.0.0.1:${s401.port}/_sidecar/health`))
  t.match(health401, /401/, 'the 401 shows in health')
  await s401.sidecar.shutdown()

  const logText = runs.map((r) => r.logText()).join('')
  t.match(logText, /401/, 'the API failure was logged')
  t.match(logText, /"level":50|"level":40/, 'warnings or errors were logged')
  assertNoSecret(t, 'the logs', logText, secrets)
  assertNoSecret(t, 'responses, health and metrics', seen.join('\n'), secrets)
  t.notMatch(seen.join('\n'), /DATABASE_URL|APP_KEY|FLY_API_TOKEN/, 'no env variable names either')
})

t.test('no open proxy: nothing a client sends changes where the sidecar connects', async (t) => {
  const up = await app(t)
  const evil = await trap(t)
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, pools: stubPools() })
  const target = `127.0.0.1:${evil.port}`
  const tricks: readonly [string, string, number][] = [
    ['absolute-form target', `GET http://${target}/x HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`, 200],
    ['absolute-form https target', `GET https://${target}/x HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`, 200],
    ['Host header', `GET /x HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`, 200],
    ['x-forwarded-host and proto', `GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: ${target}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 127.0.0.1\r\nForwarded: host=${target}\r\nConnection: close\r\n\r\n`, 200],
    ['x-original-url and x-rewrite-url', `GET /x HTTP/1.1\r\nHost: a\r\nX-Original-URL: http://${target}/y\r\nX-Rewrite-URL: http://${target}/y\r\nConnection: close\r\n\r\n`, 200],
    // RFC 9110 §4.2.4: userinfo in a received URI is an error; the strict parser refuses it (400).
    ['an absolute target with userinfo', `GET http://user@${target}/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, 0],
    ['CONNECT', `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`, 0],
    ['a WebSocket upgrade to another host', `GET http://${target}/socket HTTP/1.1\r\nHost: ${target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, -1],
    // A ws: target is no HTTP/1.1 request-target (RFC 9112 §3.2): refused with 400.
    ['a ws: absolute target', `GET ws://${target}/socket HTTP/1.1\r\nHost: ${target}\r\n\r\n`, 0],
  ]
  for (const [name, bytes, status] of tricks) {
    const before = up.requests.length
    const r = await rawExchange(s.port, [bytes], { waitMs: 1000 })
    if (status > 0) {
      t.equal(statusOf(r.data), status, `${name}: answered by the app`)
      t.equal(up.requests.length, before + 1, `${name}: the app got it`)
      t.equal(up.requests.at(-1)?.target, '/x', `${name}: with the path only`)
    } else if (status === 0) {
      t.equal(up.requests.length, before, `${name}: nothing forwarded`)
      if (!name.startsWith('CONNECT')) t.equal(statusOf(r.data), 400, `${name}: refused with 400`)
    } else {
      t.equal(up.requests.at(-1)?.target, '/socket', `${name}: tunnelled to the app only`)
    }
  }
  t.equal(evil.connections(), 0, 'nothing ever connected to the named host')
})

t.test('a spoofed fly-replay-src is served here: no replay, no target chosen', async (t) => {
  const up = await app(t)
  const pools = stubPools()
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, pools })
  for (const value of ['instance=evil-1;region=ams;t=1;state=x', 'instance=web-1', 'app=other-app;instance=x', '']) {
    const res = await request(`http://127.0.0.1:${s.port}/reports/q`, { headers: { 'fly-replay-src': value } })
    t.equal(res.statusCode, 200, `"${value}": served here`)
    t.equal(res.headers['fly-replay'], undefined)
    t.equal((await res.body.json() as { target: string }).target, '/reports/q')
  }
  t.strictSame(pools.picks, [], 'no pool Machine was looked up')
})

t.test('a spoofed fly-replay-failed only drops a cached id; it never adds or chooses one', async (t) => {
  const up = await app(t)
  const api = await fakeApi(t)
  const s = await startHardened(t, {
    appUrl: `http://127.0.0.1:${up.port}`,
    apiUrl: api.url,
    pools: (config, logger) => createPoolMachines({ config, logger, timing: FAST }),
  })
  const replay = async (): Promise<string | string[] | undefined> => {
    const res = await request(`http://127.0.0.1:${s.port}/reports/q`)
    await res.body.dump()
    return res.headers['fly-replay']
  }
  t.match(await replay(), /^instance=tasker-7;/)
  for (const value of ['instance=evil-1;app=demo;region=ams;replay_source=web-1;reason=timeout', 'instance="tasker-7"', 'instance=tasker-7,instance=evil-2']) {
    const res = await request(`http://127.0.0.1:${s.port}/reports/q`, { headers: { 'fly-replay-failed': value } })
    t.equal(res.statusCode, 200, 'served here')
    t.equal(res.headers['fly-replay'], undefined)
    await res.body.dump()
    t.match(await replay(), /^instance=tasker-7;/, `after "${value}" the replay still names the pool's own Machine`)
  }
  t.notOk(api.calls.some((c) => c.method === 'POST'), 'no Machine was created')
})

t.test('the instance always comes from the pool client, and client fly-replay headers are not echoed', async (t) => {
  const up = await app(t)
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, pools: stubPools() })
  const spoofs: Record<string, string> = {
    'fly-replay': 'instance=evil-1',
    'fly-force-instance-id': 'evil-1',
    'fly-prefer-instance-id': 'evil-1',
    'fly-replay-cache': 'invalidate',
    'x-fly-instance': 'evil-1',
  }
  const res = await request(`http://127.0.0.1:${s.port}/reports/q?instance=evil-1&state=evil`, { headers: spoofs })
  t.equal(res.statusCode, 307)
  t.equal(res.headers['fly-replay'], 'instance=tasker-1;timeout=30s;fallback=prefer_self;state=reports')
  t.notOk(Object.keys(res.headers).some((h) => h.startsWith('fly-') && h !== 'fly-replay'), 'no other fly-* header came back')
  await res.body.dump()

  const local = await request(`http://127.0.0.1:${s.port}/plain`, { headers: { ...spoofs, 'fly-replay-src': 'instance=x' } })
  t.equal(local.statusCode, 200)
  t.notOk(Object.keys(local.headers).some((h) => h.startsWith('fly-')), 'a proxied response carries no client fly-* header')
  await local.body.dump()
  t.equal(up.requests.at(-1)?.headers.get('fly-replay')?.[0], 'instance=evil-1', 'the app still sees what the client sent')

  // A WebSocket upgrade with spoofed headers on a pool path: the answer names the pool's Machine.
  const ws = await rawExchange(s.port, ['GET /reports/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nFly-Replay: instance=evil-1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'])
  t.match(ws.data, /^HTTP\/1\.1 307 /)
  t.match(ws.data, /\r\nfly-replay: instance=tasker-1;timeout=30s;fallback=prefer_self;state=reports\r\n/i)
  t.notMatch(ws.data, /evil/)
})

t.test('error bodies carry a code and a message, never a stack, a path or a secret', async (t) => {
  const up = await app(t)
  // A pool client that fails unexpectedly (a bug): the error's message and stack stay in the log.
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, pools: stubPools(() => { throw new Error('boom at /srv/app/internal.ts:12') }) })
  const res = await request(`http://127.0.0.1:${s.port}/reports/q`)
  const text = await res.body.text()
  t.equal(res.statusCode, 500)
  t.strictSame(JSON.parse(text), { error: { code: 'SIDECAR_ERR_SERVER_INTERNAL', message: 'the sidecar failed to handle the request' } })
  t.notMatch(text, /boom|internal\.ts|\n\s+at /)
  t.ok(s.logs().some((l) => l.msg === 'request failed'), 'the failure is logged')
})
