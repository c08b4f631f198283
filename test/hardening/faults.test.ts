// Faults of the app and of the Machines API, through a real sidecar: each ends in the clear error
// or fallback the contract names, with no unhandled rejection and no socket or timer left behind
// once everything is closed.
import t, { type Test } from 'tap'
import http from 'node:http'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { request, Agent } from 'undici'
import { startMachinesApi, type MachinesApi } from '../../src/emulator/machines-api.ts'
import { createPoolMachines } from '../../src/machines/pool.ts'
import { METADATA_POOL } from '../../src/machines/api-types.ts'
import { closeServer, deadPort, listen } from '../helpers/net.ts'
import { startLenientUpstream } from '../helpers/lenient-upstream.ts'
import { FLY_ENV, TOKEN, configYaml, rawExchange, startHardened, stubPools, watchLeaks } from './harness.ts'

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')

interface ErrorBody { error: { code: string, message: string } }

async function jsonError (t: Test, res: Awaited<ReturnType<typeof request>>, status: number, code: string): Promise<void> {
  t.equal(res.statusCode, status, `status ${status}`)
  const text = await res.body.text()
  const body = JSON.parse(text) as ErrorBody
  t.equal(body.error.code, code)
  t.strictSame(Object.keys(body.error).sort(), ['code', 'message'])
  t.notMatch(text, /\n\s+at |node:internal|\.ts:\d+/, 'no stack trace')
}

t.test('the app refusing connections: 502 with the JSON error, after the ready window', async (t) => {
  const leaks = watchLeaks(t)
  const port = await deadPort()
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${port}`, readyTimeout: '300ms' })
  const started = Date.now()
  await jsonError(t, await request(`http://127.0.0.1:${s.port}/x`), 502, 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE')
  t.ok(Date.now() - started < 2000, 'bounded by the ready window')
  await sleep(300)
  const again = Date.now()
  await jsonError(t, await request(`http://127.0.0.1:${s.port}/x`, { method: 'POST', body: 'x'.repeat(100_000) }), 502, 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE')
  t.ok(Date.now() - again < 500, 'at once after the ready window')
  await s.sidecar.shutdown()
  await leaks.check('refused')
})

t.test('the app resetting mid-request: 502 RESET, and the next request works', async (t) => {
  const leaks = watchLeaks(t)
  let n = 0
  const up = await startLenientUpstream({ onHeaders: (req) => (req.target === '/reset' && n++ === 0 ? { kind: 'drop', reset: true } : undefined) })
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}` })
  await jsonError(t, await request(`http://127.0.0.1:${s.port}/reset`, { method: 'POST', body: Buffer.alloc(256 * 1024, 1) }), 502, 'SIDECAR_ERR_UPSTREAM_RESET')
  const res = await request(`http://127.0.0.1:${s.port}/after`, { method: 'POST', body: 'ok' })
  t.equal(res.statusCode, 200)
  t.equal((await res.body.json() as { sha256: string }).sha256, sha('ok'))
  await s.sidecar.shutdown()
  await up.close()
  await leaks.check('reset')
})

t.test('the app closing keep-alive sockets right after answering: requests keep being served', async (t) => {
  const leaks = watchLeaks(t)
  // Answers as keep-alive (no `connection: close`), then hangs up a moment later: the sidecar may
  // pick that socket for the next request just as it closes.
  const up = await startLenientUpstream({
    respond: (req) => ({ kind: 'raw', bytes: `HTTP/1.1 200 OK\r\ncontent-length: ${req.target.length}\r\n\r\n${req.target}`, closeAfterMs: req.n % 4 }),
  })
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}` })
  const client = new Agent({ connections: 8 })
  const failures: string[] = []
  for (let round = 0; round < 40; round++) {
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const p = `/k/${round}/${i}`
      try {
        const res = await request(`http://127.0.0.1:${s.port}${p}`, { dispatcher: client })
        const body = await res.body.text()
        if (res.statusCode !== 200 || body !== p) failures.push(`${p}: ${res.statusCode} ${body}`)
      } catch (err) {
        failures.push(`${p}: ${(err as Error).message}`)
      }
    }))
    await sleep(round % 4)
  }
  t.strictSame(failures, [], 'every GET answered 200 with its own body')
  await client.close()
  await s.sidecar.shutdown()
  await up.close()
  await leaks.check('keep-alive close')
})

t.test('the app stalling its headers: 504 after the upstream headers timeout', async (t) => {
  const leaks = watchLeaks(t)
  const up = await startLenientUpstream({ respond: (req) => (req.target === '/stall' ? { kind: 'stall' } : { kind: 'echo' }) })
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, sidecar: { timeouts: { appHeadersMs: 400 } } })
  const started = Date.now()
  await jsonError(t, await request(`http://127.0.0.1:${s.port}/stall`), 504, 'SIDECAR_ERR_UPSTREAM_TIMEOUT')
  t.ok(Date.now() - started >= 350, 'waited for the timeout')
  const res = await request(`http://127.0.0.1:${s.port}/fine`)
  t.equal(res.statusCode, 200)
  await res.body.dump()
  await s.sidecar.shutdown()
  await up.close()
  await leaks.check('stall')
})

t.test('the app aborting mid-stream: the client sees an error, never a clean end', async (t) => {
  const leaks = watchLeaks(t)
  const up = await startLenientUpstream({ respond: () => ({ kind: 'abort-mid-stream', chunks: 3, everyMs: 30 }) })
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}` })
  const res = await request(`http://127.0.0.1:${s.port}/events`)
  t.equal(res.statusCode, 200)
  let got = ''
  let error: Error | undefined
  try {
    for await (const c of res.body) got += (c as Buffer).toString()
  } catch (err) {
    error = err as Error
  }
  t.ok(error !== undefined, `the body errored (${error?.message ?? 'it ended cleanly'})`)
  t.equal(got, 'data: 0\n\ndata: 1\n\ndata: 2\n\n', 'what the app sent before aborting arrived')
  const logged = s.logs().find((l) => l.msg === 'upstream error')
  t.equal(logged?.code, 'SIDECAR_ERR_UPSTREAM_ABORTED', 'logged as an aborted response')
  await s.sidecar.shutdown()
  await up.close()
  await leaks.check('abort mid-stream')
})

t.test('the app crashing and coming back: 502 while it is down, served again after', async (t) => {
  const leaks = watchLeaks(t)
  const port = await deadPort()
  const start = async (): Promise<http.Server> => {
    const server = http.createServer((req, res) => {
      if (req.url === '/slow') { res.writeHead(200); res.write('partial'); return }
      res.end(`up ${req.url}`)
    })
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    return server
  }
  let app = await start()
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${port}`, readyTimeout: '100ms' })
  await sleep(150)
  const ok = await request(`http://127.0.0.1:${s.port}/a`)
  t.equal(await ok.body.text(), 'up /a')
  const slow = await request(`http://127.0.0.1:${s.port}/slow`)
  const slowBody = slow.body.text()
  // The crash: every socket torn down, the port closed.
  await closeServer(app)
  await t.rejects(slowBody, 'the response cut by the crash is an error at the client')
  await jsonError(t, await request(`http://127.0.0.1:${s.port}/b`), 502, 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE')
  app = await start()
  const back = await request(`http://127.0.0.1:${s.port}/c`)
  t.equal(await back.body.text(), 'up /c')
  await s.sidecar.shutdown()
  await closeServer(app)
  await leaks.check('crash and restart')
})

t.test('the supervised app crashing mid-stream: the stream errors, the sidecar stops with its exit code', async (t) => {
  const leaks = watchLeaks(t)
  const appPort = await deadPort()
  const fixture = fileURLToPath(new URL('../fixtures/cli/app.mjs', import.meta.url))
  const s = await startHardened(t, {
    appUrl: `http://127.0.0.1:${appPort}`,
    readyTimeout: '5s',
    env: { APP_PORT: String(appPort), APP_EXIT_CODE: '3', APP_EXIT_AFTER_MS: '1000', APP_STREAM_CHUNKS: '1000', APP_STREAM_MS: '20' },
    sidecar: { command: [process.execPath, fixture] },
  })
  const res = await request(`http://127.0.0.1:${s.port}/stream`)
  t.equal(res.statusCode, 200)
  let events = 0
  let error: Error | undefined
  try {
    for await (const c of res.body) events += (c as Buffer).toString().split('\n\n').length - 1
  } catch (err) {
    error = err as Error
  }
  t.ok(error !== undefined, `the cut stream is an error at the client after ${events} events (${error?.message ?? 'ended cleanly'})`)
  t.ok(events > 0 && events < 1000)
  t.equal(await s.sidecar.done, 3, 'the sidecar stops with the app\'s exit code (Fly restarts the Machine)')
  t.ok(s.logs().some((l) => l.msg === 'app exited: stopping'), 'and says why')
  await leaks.check('supervised crash')
})

t.test('a client that stops reading: the app is slowed down, nothing piles up in the sidecar', async (t) => {
  const leaks = watchLeaks(t)
  const TOTAL = 96 * 1024 * 1024
  let written = 0
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': TOTAL })
    const chunk = Buffer.alloc(64 * 1024, 7)
    const pump = (): void => {
      while (written < TOTAL) {
        written += chunk.length
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${port}` })
  const res = await request(`http://127.0.0.1:${s.port}/big`)
  t.equal(res.statusCode, 200)
  await sleep(1_000)
  // Kernel socket buffers on two loopback hops (each up to the tcp_rmem/tcp_wmem maximum) and the
  // streams' own high-water marks: tens of MiB at worst, never the whole response.
  t.ok(written < 40 * 1024 * 1024, `while the client did not read, the app could write only ${(written / 1048576).toFixed(1)} MiB of 96`)
  const hash = createHash('sha256')
  let got = 0
  for await (const c of res.body) { hash.update(c as Buffer); got += (c as Buffer).length }
  t.equal(got, TOTAL, 'then every byte arrived')
  t.equal(hash.digest('hex'), sha(Buffer.alloc(TOTAL, 7)))
  await s.sidecar.shutdown()
  await closeServer(server)
  await leaks.check('slow reader')
})

t.test('a replay fallback (fly-replay-failed) drops the failed pool Machine, body rules included', async (t) => {
  const app = await startLenientUpstream()
  t.teardown(() => app.close())
  const pools = stubPools()
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${app.port}`, pools })
  const body = '{"components":[{"calls":[{"method":"process"}]}]}'
  // The Livewire process() call of the motivating case: its rule needs the body. Fly sends the
  // fallback back to this Machine with the same body; the tasker that failed must be forgotten.
  for (const [p, init] of [
    ['/livewire/update', { method: 'POST', headers: { 'content-type': 'application/json', 'fly-replay-failed': 'instance=tasker-1;app=demo;region=ams;replay_source=web-1;reason=timeout;elapsed_ms=30001' }, body }],
    ['/reports/q', { headers: { 'fly-replay-failed': 'instance=tasker-2;app=demo;region=ams;replay_source=web-1;reason=no_candidate;elapsed_ms=3' } }],
  ] as const) {
    const res = await request(`http://127.0.0.1:${s.port}${p}`, init)
    t.equal(res.statusCode, 200, `${p}: the fallback is served here`)
    t.equal(res.headers['fly-replay'], undefined)
    await res.body.dump()
  }
  // A WebSocket replay that fell back.
  const ws = await rawExchange(s.port, ['GET /reports/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nFly-Replay-Failed: instance=tasker-3;reason=timeout\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'], { waitMs: 300 })
  t.notMatch(ws.data, /fly-replay:/i, 'the upgrade fallback is tunnelled here')
  t.strictSame(pools.failed, ['tasker/tasker-1', 'tasker/tasker-2', 'tasker/tasker-3'], 'every failed Machine was reported to the pool')
  t.equal(app.requests.find((r) => r.target === '/livewire/update')?.sha256, sha(body), 'the fallback body reached the app untouched')
})

async function appServer (t: Test): Promise<{ port: number, close: () => Promise<void> }> {
  const server = http.createServer((req, res) => { req.resume(); req.on('end', () => res.end('app')) })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  return { port, close: () => closeServer(server) }
}

async function machinesApi (t: Test): Promise<MachinesApi> {
  const api = await startMachinesApi({ app: 'demo', token: TOKEN })
  t.teardown(() => api.close())
  api.addMachine({ id: 'web-1', region: 'ams', config: { image: FLY_ENV.FLY_IMAGE_REF as string, metadata: {} } })
  api.addMachine({ id: 'tasker-7', region: 'ams', state: 'started', config: { image: FLY_ENV.FLY_IMAGE_REF as string, metadata: { [METADATA_POOL]: 'tasker' } } })
  return api
}

const FAST = { callTimeoutMs: 300, attempts: 2, backoffBaseMs: 5, backoffCapMs: 20, maxRetryAfterMs: 1_000, errorRetryMs: 0, cacheTtlMs: 60_000 }

t.test('the Machines API misbehaving: the pool policy applies, bounded in time', async (t) => {
  const cases: readonly [string, (api: MachinesApi) => void, 'replay' | 'local'][] = [
    ['healthy (the control)', () => {}, 'replay'],
    ['slow (longer than the call timeout)', (api) => { api.fault({ method: 'GET' }, { delayMs: 2_000 }, Infinity) }, 'local'],
    ['answering garbage', (api) => { api.fault({ method: 'GET' }, { status: 200, garbage: true }, Infinity) }, 'local'],
    ['answering 500', (api) => { api.fault({ method: 'GET' }, { status: 500, body: { error: 'boom' } }, Infinity) }, 'local'],
    ['hanging up', (api) => { api.fault({ method: 'GET' }, { hangUp: true }, Infinity) }, 'local'],
    ['answering 429 once, then fine', (api) => { api.fault({ method: 'GET' }, { status: 429, headers: { 'retry-after': '0' }, body: { error: 'rate limited' } }, 1) }, 'replay'],
    ['answering 429 always', (api) => { api.fault({ method: 'GET' }, { status: 429, headers: { 'retry-after': '0' }, body: { error: 'rate limited' } }, Infinity) }, 'local'],
  ]
  for (const [name, fault, want] of cases) {
    await t.test(name, async (t) => {
      const leaks = watchLeaks(t)
      const app = await appServer(t)
      const api = await machinesApi(t)
      fault(api)
      const s = await startHardened(t, {
        appUrl: `http://127.0.0.1:${app.port}`,
        apiUrl: api.url,
        pools: (config, logger) => createPoolMachines({ config, logger, timing: FAST }),
      })
      const started = Date.now()
      const res = await request(`http://127.0.0.1:${s.port}/reports/q3`)
      const ms = Date.now() - started
      if (want === 'replay') {
        t.equal(res.statusCode, 307)
        t.match(res.headers['fly-replay'], /^instance=tasker-7;/)
      } else {
        t.equal(res.statusCode, 200, 'unavailable: local serves it here')
        t.equal(res.headers['fly-replay'], undefined)
      }
      await res.body.dump()
      t.ok(ms < 3_000, `answered in ${ms} ms`)
      await s.sidecar.shutdown()
      await api.close()
      await app.close()
      await leaks.check(name)
    })
  }

  await t.test('down (nothing listens), with unavailable: reject', async (t) => {
    const leaks = watchLeaks(t)
    const app = await appServer(t)
    const dead = await deadPort()
    const s = await startHardened(t, {
      appUrl: `http://127.0.0.1:${app.port}`,
      apiUrl: `http://127.0.0.1:${dead}`,
      extra: '    unavailable: reject\n',
      pools: (config, logger) => createPoolMachines({ config, logger, timing: FAST }),
    })
    await jsonError(t, await request(`http://127.0.0.1:${s.port}/reports/q3`), 503, 'SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE')
    await s.sidecar.shutdown()
    await app.close()
    await leaks.check('api down')
  })
})

t.test('a config file that becomes invalid while running: the last good one stays', async (t) => {
  const leaks = watchLeaks(t)
  const app = await appServer(t)
  const dir = mkdtempSync(path.join(tmpdir(), 'sidecar-reload-'))
  const file = path.join(dir, 'routes.yaml')
  const good = configYaml({ appUrl: `http://127.0.0.1:${app.port}` })
  writeFileSync(file, good)
  const s = await startHardened(t, { appUrl: '', yaml: good, file, sidecar: { watchConfig: true } })
  const decision = async (p: string): Promise<number> => {
    const res = await request(`http://127.0.0.1:${s.port}${p}`)
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await decision('/reports/a'), 307)

  const reloads = (): Record<string, unknown>[] => s.logs().filter((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('config reload'))
  for (const [name, text] of [
    ['broken YAML', 'listen: [\n'],
    ['an unknown key', `${good}\nbogus: 1\n`],
    ['a rule naming no pool', good.replace('to: tasker\n  - name: reports', 'to: nowhere\n  - name: reports')],
    ['an empty file', ''],
  ] as const) {
    const before = reloads().length
    writeFileSync(file, text)
    const deadline = Date.now() + 3000
    while (reloads().length === before && Date.now() < deadline) await sleep(20)
    t.equal(reloads().at(-1)?.msg, 'config reload failed: keeping the previous rules', `${name}: the reload failed`)
    t.equal(await decision('/reports/a'), 307, `${name}: the old rules still route`)
  }
  t.equal(await s.sidecar.reload(), false, 'reload() says it kept the old config')

  writeFileSync(file, good.replace('path: /reports/**', 'path: /exports/**'))
  const deadline = Date.now() + 3000
  while (reloads().at(-1)?.msg !== 'config reloaded' && Date.now() < deadline) await sleep(20)
  t.equal(await decision('/exports/a'), 307, 'a valid file takes effect')
  t.equal(await decision('/reports/a'), 200)
  await s.sidecar.shutdown()
  await app.close()
  await leaks.check('reload')
})
