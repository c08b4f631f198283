// SIGTERM to the real CLI while 50 event streams are open: new connections are refused at once,
// open streams finish within app.drain-timeout or end with an error (never a clean but short
// end), the app is stopped only after them, and the exit code is the app's.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { deadPort } from '../helpers/net.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const cli = path.join(root, 'src/cli.ts')
const appScript = path.join(root, 'test/fixtures/cli/app.mjs')
const STREAMS = 50

interface Run { child: ChildProcess, port: number, out: () => string, exit: Promise<number | null> }

async function startCli (t: Test, env: Record<string, string>, drain: string, stop: string): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sidecar-shutdown-'))
  const config = path.join(dir, 'routes.yaml')
  writeFileSync(config, `listen: 127.0.0.1:\${PORT}
app:
  url: http://127.0.0.1:\${APP_PORT}
  ready-timeout: 10s
  drain-timeout: ${drain}
  stop-timeout: ${stop}
metrics: false
`)
  const port = await deadPort()
  const appPort = await deadPort()
  const child = spawn(process.execPath, [cli, '--config', config, '--', process.execPath, appScript], {
    env: { PATH: process.env.PATH, PORT: String(port), APP_PORT: String(appPort), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString() })
  const exit = new Promise<number | null>((resolve) => { child.on('exit', (code) => resolve(code)) })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const deadline = Date.now() + 15_000
  for (;;) {
    try {
      const res = await request(`http://127.0.0.1:${port}/_sidecar/health`)
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch {}
    if (Date.now() > deadline) throw new Error(`the sidecar did not become healthy:\n${out}`)
    await sleep(50)
  }
  return { child, port, out: () => out, exit }
}

interface StreamResult { events: number, error: string | undefined, endedAt: number }

/** Opens `STREAMS` event streams; resolves once each has delivered its first event. */
async function openStreams (port: number, agent: Agent): Promise<{ results: Promise<StreamResult[]> }> {
  let firsts = 0
  let allFirst: () => void = () => {}
  const firstSeen = new Promise<void>((resolve) => { allFirst = resolve })
  const one = async (): Promise<StreamResult> => {
    let events = 0
    let text = ''
    let counted = false
    try {
      const res = await request(`http://127.0.0.1:${port}/stream`, { dispatcher: agent })
      for await (const c of res.body) {
        text += (c as Buffer).toString()
        events = text.split('\n\n').length - 1
        if (!counted && events > 0) { counted = true; if (++firsts === STREAMS) allFirst() }
      }
      return { events, error: undefined, endedAt: Date.now() }
    } catch (err) {
      if (!counted && ++firsts === STREAMS) allFirst()
      return { events, error: (err as Error).message, endedAt: Date.now() }
    }
  }
  const results = Promise.all(Array.from({ length: STREAMS }, one))
  await firstSeen
  return { results }
}

/** True when a fresh TCP connection is refused (or reset before any answer). */
async function refused (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('error', () => { resolve(true) })
    s.once('connect', () => {
      s.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
      s.once('data', (d) => { s.destroy(); resolve(!d.toString().startsWith('HTTP/1.1 200')) })
      s.once('close', () => resolve(true))
    })
  })
}

t.test('SIGTERM with 50 open streams that fit in the drain timeout: all finish, then the app stops', async (t) => {
  const run = await startCli(t, { APP_STREAM_CHUNKS: '15', APP_STREAM_MS: '100' }, '5s', '1s')
  const agent = new Agent({ connections: STREAMS + 5 })
  t.teardown(() => agent.close())
  const { results } = await openStreams(run.port, agent)
  const signalledAt = Date.now()
  run.child.kill('SIGTERM')
  await sleep(100)
  const refusals = await Promise.all(Array.from({ length: 5 }, () => refused(run.port)))
  t.strictSame(refusals, [true, true, true, true, true], 'no new connection is served while draining')
  const all = await results
  t.strictSame(all.map((r) => r.error), Array(STREAMS).fill(undefined), 'every stream ended cleanly')
  t.strictSame(all.map((r) => r.events), Array(STREAMS).fill(15), 'with every event')
  const code = await run.exit
  const exitedAt = Date.now()
  t.equal(code, 143, 'exit code 128+SIGTERM (the app died of the forwarded SIGTERM)')
  const lastEnd = Math.max(...all.map((r) => r.endedAt))
  t.ok(lastEnd <= exitedAt, 'the app was stopped after the streams ended')
  // Kept-alive client connections must not hold the drain open until drain-timeout (5 s).
  t.ok(exitedAt - lastEnd < 1_500, `stopped ${exitedAt - lastEnd} ms after the last stream ended (${exitedAt - signalledAt} ms after SIGTERM)`)
})

t.test('SIGTERM with 50 streams longer than the drain timeout: each ends with an error, none silently short', async (t) => {
  const run = await startCli(t, { APP_STREAM_CHUNKS: '200', APP_STREAM_MS: '50' }, '700ms', '500ms')
  const agent = new Agent({ connections: STREAMS + 5 })
  t.teardown(() => agent.close())
  const { results } = await openStreams(run.port, agent)
  const signalledAt = Date.now()
  run.child.kill('SIGTERM')
  const all = await results
  for (const [i, r] of all.entries()) {
    if (r.error === undefined) t.equal(r.events, 200, `stream ${i} ended cleanly, so it must be whole`)
    else t.ok(r.events < 200, `stream ${i} ended with an error after ${r.events} events: ${r.error}`)
  }
  t.ok(all.every((r) => r.error !== undefined), 'every stream was cut, and each cut was an error')
  t.ok(all.every((r) => r.endedAt - signalledAt >= 600), 'no stream was cut before the drain timeout')
  const code = await run.exit
  t.equal(code, 143)
  t.ok(Date.now() - signalledAt < 4_000, 'stopped within drain + stop timeouts (and some slack)')
})
