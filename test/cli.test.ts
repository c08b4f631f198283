// The CLI as users run it: a real sidecar process with a real app child. Signals, exit codes,
// drain, readiness, config errors, and no process left behind.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { deadPort } from './helpers/net.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const cli = path.join(root, 'src/cli.ts')
const app = path.join(root, 'test/fixtures/cli/app.mjs')

const CONFIG = `listen: 127.0.0.1:\${PORT}
app:
  url: http://127.0.0.1:\${APP_PORT}
  ready-timeout: 10s
  drain-timeout: 2s
  stop-timeout: 500ms
metrics: false
`

interface Run {
  child: ChildProcess
  port: number
  appPort: number
  out: () => string
  err: () => string
  exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  dir: string
}

async function startCli (t: Test, opts: { env?: Record<string, string>, config?: string, app?: boolean } = {}): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sidecar-cli-'))
  const configFile = path.join(dir, 'routes.yaml')
  writeFileSync(configFile, opts.config ?? CONFIG)
  const port = await deadPort()
  const appPort = await deadPort()
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, PORT: String(port), APP_PORT: String(appPort), ...opts.env }
  const args = [cli, '--config', configFile]
  if (opts.app !== false) args.push('--', process.execPath, app)
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { err += c.toString() })
  const exit = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => { resolve({ code, signal }) })
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, port, appPort, out: () => out, err: () => err, exit, dir }
}

async function until (what: string, fn: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    try {
      if (await fn()) return
    } catch {
      // Not listening yet: try again.
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function get (port: number, p: string): Promise<{ status: number, body: string }> {
  const res = await request(`http://127.0.0.1:${port}${p}`)
  return { status: res.statusCode, body: await res.body.text() }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

t.test('health is 503 starting until the app listens, and an early request waits for it', async (t) => {
  const run = await startCli(t, { env: { APP_DELAY_MS: '1200' } })
  await until('listening', () => run.out().includes('"listening"'))
  const early = await get(run.port, '/_sidecar/health')
  t.equal(early.status, 503)
  t.equal(JSON.parse(early.body).status, 'starting')
  // Sent before the app listens: connection refused is retried inside app.ready-timeout.
  const res = await get(run.port, '/hello?x=1')
  t.equal(res.status, 200)
  t.equal(JSON.parse(res.body).url, '/hello?x=1')
  const ready = await get(run.port, '/_sidecar/health')
  t.equal(ready.status, 200)
  t.equal(JSON.parse(ready.body).status, 'ok')
  run.child.kill('SIGTERM')
  const exit = await run.exit
  t.equal(exit.code, 143, 'exits with 128+SIGTERM, as the app died of it')
})

t.test('SIGTERM lets an in-flight stream finish, then stops the app and its grandchild', async (t) => {
  const gcFile = path.join(mkdtempSync(path.join(tmpdir(), 'sidecar-gc-')), 'gc.pid')
  const run2 = await startCli(t, { env: { APP_STREAM_CHUNKS: '6', APP_STREAM_MS: '100', APP_GRANDCHILD_PID_FILE: gcFile } })
  await until('app ready', async () => (await get(run2.port, '/_sidecar/health')).status === 200)
  const grandchild = Number(readFileSync(gcFile, 'utf8'))
  t.ok(alive(grandchild), 'grandchild runs')
  const res = await request(`http://127.0.0.1:${run2.port}/stream`)
  const chunks: string[] = []
  let signalled = false
  for await (const chunk of res.body) {
    chunks.push(chunk.toString())
    if (!signalled) { signalled = true; run2.child.kill('SIGTERM') }
  }
  t.equal(chunks.join('').split('\n\n').filter(Boolean).length, 6, 'every chunk of the stream arrived')
  const exit = await run2.exit
  t.equal(exit.code, 143)
  await until('grandchild gone', () => !alive(grandchild), 3000)
  t.notOk(alive(grandchild), 'the whole process group was stopped')
})

t.test('an app that ignores SIGTERM is killed after stop-timeout: exit 137', async (t) => {
  const run = await startCli(t, { env: { APP_IGNORE_TERM: '1' } })
  await until('app ready', async () => (await get(run.port, '/_sidecar/health')).status === 200)
  const before = Date.now()
  run.child.kill('SIGTERM')
  const exit = await run.exit
  t.equal(exit.code, 137)
  t.ok(Date.now() - before >= 450, 'waited for stop-timeout before SIGKILL')
})

t.test('the sidecar stops with the app when it exits by itself', async (t) => {
  const run = await startCli(t, { env: { APP_EXIT_CODE: '3', APP_EXIT_AFTER_MS: '300' } })
  const exit = await run.exit
  t.equal(exit.code, 3)
})

t.test('SIGHUP reloads the sidecar\'s config and is not passed on to the app', async (t) => {
  const run = await startCli(t)
  await until('app ready', async () => (await get(run.port, '/_sidecar/health')).status === 200)
  run.child.kill('SIGHUP')
  await until('config reloaded', () => run.out().includes('"msg":"config reloaded"'))
  // Forwarding would come before the reload: give the app's line time to show if it were sent.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(run.out().includes('app got SIGHUP'), 'the app did not get SIGHUP')
  t.equal((await get(run.port, '/_sidecar/health')).status, 200, 'the app still runs')
  run.child.kill('SIGINT')
  const exit = await run.exit
  t.equal(exit.code, 130, 'SIGINT forwarded: 128+2')
})

t.test('a bad config stops start-up with every problem and exit code 2', async (t) => {
  const run = await startCli(t, { app: false, config: 'listen: 127.0.0.1:${PORT}\napp:\n  url: http://127.0.0.1:1\n  ready-timeout: soon\nbogus: 1\n' })
  const exit = await run.exit
  t.equal(exit.code, 2)
  t.match(run.err(), /routes\.yaml:4:\d+/)
  t.match(run.err(), /routes\.yaml:5:\d+/)
  t.notMatch(run.err(), /\n\s+at /, 'no stack trace')
})

t.test('usage errors exit 2', async (t) => {
  const child = spawn(process.execPath, [cli, '--nope'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  t.equal(code, 2)
  t.match(err, /unknown argument: --nope/)
})

t.test('a mistyped command gets the nearest one; an unknown word gets none', async (t) => {
  const { parseRunArgs } = await import('../src/cli.ts')
  t.strictSame(parseRunArgs(['chek']), { error: 'unknown command: chek (did you mean "check"?)' })
  t.strictSame(parseRunArgs(['explian']), { error: 'unknown command: explian (did you mean "explain"?)' })
  t.strictSame(parseRunArgs(['frobnicate']), { error: 'unknown command: frobnicate' })
  t.strictSame(parseRunArgs(['--config', 'x.yaml', 'chek']), { error: 'unknown argument: chek' })
})

t.test('help says the app command runs without a shell; so does dev --help', async (t) => {
  const { main } = await import('../src/cli.ts')
  let out = ''
  const io = { stdout: { write: (s: string) => { out += s; return true } }, stderr: { write: () => true } } as unknown as Parameters<typeof main>[1]
  t.equal(await main(['--help'], io), 0)
  t.match(out, 'The app command runs\nas given, without a shell: $VARS in it are not expanded (use sh -c \'...\' for that).')
  out = ''
  const { main: dev } = await import('../src/emulator/dev.ts')
  t.equal(await dev(['--help'], { stdout: { write: (s: string) => { out += s } }, stderr: { write: () => {} } }), 0)
  t.match(out, 'The app command runs without a shell, so $APP_PORT reaches it\nas those literal characters; to expand it, run a shell:\n  fly-replay-sidecar dev -- sh -c \'exec php artisan serve --host=127.0.0.1 --port=$APP_PORT\'')
})
