// The app supervisor with real child processes (test/fixtures/apps): exit codes, death by signal,
// stop with and without SIGKILL escalation, grandchildren gone after stop, signal forwarding,
// env, and commands that cannot be started. Every wait is bounded.
import t, { type Test } from 'tap'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger } from '../src/log.ts'
import { superviseApp, type Supervisor, type SupervisorOptions } from '../src/supervisor.ts'

const node = process.execPath
const fixture = (name: string): string => fileURLToPath(new URL(`fixtures/apps/${name}`, import.meta.url))

/** Polls `check` every 20 ms until it holds; fails the test (not hangs) after `ms`. */
async function waitFor (check: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A process that no longer runs: no such pid, or a zombie nobody has reaped yet (it is dead). */
function gone (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z'
  } catch {
    return true
  }
}

interface Harness {
  readonly dir: string
  readonly logs: Array<Record<string, unknown>>
  start (command: string, args: string[], env?: NodeJS.ProcessEnv): Supervisor
  /** The pid a fixture wrote to `<name>.pid`, once it is there (the fixture's handlers are set). */
  pidOf (name: string): Promise<number>
}

function harness (t: Test): Harness {
  const dir = mkdtempSync(path.join(tmpdir(), 'supervisor-'))
  const logs: Array<Record<string, unknown>> = []
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => { logs.push(JSON.parse(line)) } } })
  const started: Supervisor[] = []
  const pids: number[] = []
  t.teardown(async () => {
    for (const s of started) if (s.running) await s.stop('SIGKILL', 0)
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    dir,
    logs,
    start (command, args, env) {
      const options: SupervisorOptions = { command, args, logger, env: { FIXTURE_DIR: dir, ...env } }
      const s = superviseApp(options)
      started.push(s)
      return s
    },
    async pidOf (name) {
      const file = path.join(dir, `${name}.pid`)
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8') !== '', 5000, `${name}.pid`)
      const pid = Number(readFileSync(file, 'utf8'))
      pids.push(pid)
      return pid
    },
  }
}

t.test('the exit code passes through', async (t) => {
  const h = harness(t)
  for (const code of [0, 3]) {
    const s = h.start(node, [fixture('exit.mjs'), String(code)])
    t.type(s.pid, 'number', 'spawned')
    t.equal(s.running, true)
    t.strictSame(await s.exited, { code, signal: null, exitCode: code }, `exit ${code}`)
    t.equal(s.running, false)
  }
  t.match(h.logs.find((l) => l.msg === 'app exited' && l.code === 3), { level: 'info', exitCode: 3, signal: null })
})

t.test('death by signal n is 128 + n', async (t) => {
  const h = harness(t)
  const term = h.start(node, [fixture('exit.mjs'), 'SIGTERM'])
  t.strictSame(await term.exited, { code: null, signal: 'SIGTERM', exitCode: 143 })
  const kill = h.start(node, [fixture('exit.mjs'), 'SIGKILL'])
  t.strictSame(await kill.exited, { code: null, signal: 'SIGKILL', exitCode: 137 })
})

t.test('stop() sends the signal to the group: the app dies of it (143), or exits with its own code when it traps it', async (t) => {
  const h = harness(t)
  const plain = h.start(node, [fixture('idle.mjs'), 'plain'])
  await h.pidOf('plain')
  const began = Date.now()
  const exit = await plain.stop('SIGTERM', 5000)
  t.strictSame(exit, { code: null, signal: 'SIGTERM', exitCode: 143 })
  t.ok(Date.now() - began < 2000, 'without waiting for the stop timeout')
  t.equal(plain.running, false)
  t.equal(await plain.exited, exit, 'exited resolves with the same exit')

  const trapping = h.start(node, [fixture('traps.mjs'), '7'])
  await h.pidOf('app')
  t.strictSame(await trapping.stop('SIGTERM', 5000), { code: 7, signal: null, exitCode: 7 })
})

t.test('stop() is idempotent and also answers after the app exited', async (t) => {
  const h = harness(t)
  const s = h.start(node, [fixture('idle.mjs'), 'app'])
  await h.pidOf('app')
  const first = s.stop('SIGTERM', 5000)
  const second = s.stop('SIGKILL', 0)
  t.equal(first, second, 'the same promise')
  t.strictSame(await first, { code: null, signal: 'SIGTERM', exitCode: 143 }, 'the first call decides the signal')

  const done = h.start(node, [fixture('exit.mjs'), '4'])
  await done.exited
  t.strictSame(await done.stop('SIGTERM', 1000), { code: 4, signal: null, exitCode: 4 })
})

t.test('stop() SIGKILLs the group after stopTimeoutMs when the app ignores SIGTERM', async (t) => {
  const h = harness(t)
  const s = h.start(node, [fixture('idle.mjs'), 'app', 'ignore-term', 'spawn-child'])
  await h.pidOf('app')
  const grandchild = await h.pidOf('grandchild')
  const began = Date.now()
  const exit = await s.stop('SIGTERM', 600)
  const took = Date.now() - began
  t.strictSame(exit, { code: null, signal: 'SIGKILL', exitCode: 137 })
  t.ok(took >= 580 && took < 2500, `took ${took} ms for a 600 ms stop timeout`)
  await waitFor(() => gone(grandchild), 2000, 'the grandchild that ignored SIGTERM too')
  t.pass('grandchild gone')
  t.match(h.logs.find((l) => l.msg === 'app still running after the stop timeout: SIGKILL to its group'), { level: 'warn', stopTimeoutMs: 600 })
})

t.test('a grandchild started through a shell is gone after stop', async (t) => {
  const h = harness(t)
  const s = h.start('sh', ['-c', `"${node}" "${fixture('idle.mjs')}" server & wait`])
  const server = await h.pidOf('server')
  t.not(server, s.pid, 'the server is the shell\'s child, not the supervised process')
  const exit = await s.stop('SIGTERM', 5000)
  t.equal(exit.exitCode, 143, 'the shell died of SIGTERM')
  await waitFor(() => gone(server), 2000, 'the grandchild')
  t.pass('grandchild gone')
})

t.test('a grandchild that ignores SIGTERM after its parent exited is SIGKILLed at the stop deadline', async (t) => {
  const h = harness(t)
  const s = h.start('sh', ['-c', `"${node}" "${fixture('idle.mjs')}" worker ignore-term & wait`])
  const worker = await h.pidOf('worker')
  const began = Date.now()
  const exit = await s.stop('SIGTERM', 700)
  const took = Date.now() - began
  t.equal(exit.exitCode, 143, 'the exit is the shell\'s, which died of SIGTERM at once')
  t.ok(took >= 680 && took < 2500, `stop waited for the rest of the group until the deadline (${took} ms)`)
  t.ok(gone(worker), 'the worker is gone when stop() resolves')
})

t.test('processes the app leaves behind when it exits on its own are stopped', async (t) => {
  const h = harness(t)
  const pidFile = path.join(h.dir, 'orphan.pid')
  const s = h.start('sh', ['-c', `"${node}" "${fixture('idle.mjs')}" orphan-ready & echo $! > "${pidFile}"; exit 5`])
  t.strictSame(await s.exited, { code: 5, signal: null, exitCode: 5 })
  await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 2000, 'orphan pid')
  const orphan = Number(readFileSync(pidFile, 'utf8'))
  await waitFor(() => gone(orphan), 5000, 'the orphan')
  t.pass('orphan gone')
  t.ok(h.logs.some((l) => l.msg === 'app exited leaving processes in its group: stopping them'), 'said so')
})

t.test('signal() reaches the app; SIGHUP and SIGQUIT do not stop it', async (t) => {
  const h = harness(t)
  const s = h.start(node, [fixture('traps.mjs')])
  await h.pidOf('app')
  s.signal('SIGHUP')
  s.signal('SIGQUIT')
  const file = path.join(h.dir, 'signals')
  await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').split('\n').length >= 3, 2000, 'the signals marker')
  t.strictSame(readFileSync(file, 'utf8').split('\n').sort(), ['', 'SIGHUP', 'SIGQUIT'])
  t.equal(s.running, true)
  t.strictSame(await s.stop('SIGTERM', 5000), { code: 0, signal: null, exitCode: 0 })
  s.signal('SIGHUP') // after exit: a no-op, not an error
  t.equal(h.logs.filter((l) => l.level === 'error').length, 0, 'nothing logged as an error')
})

t.test('the app gets the sidecar\'s env plus options.env', async (t) => {
  const h = harness(t)
  const s = h.start(node, [fixture('traps.mjs')], { SUPERVISOR_TEST_VALUE: 'from options' })
  await h.pidOf('app')
  t.strictSame(JSON.parse(readFileSync(path.join(h.dir, 'env.json'), 'utf8')), { hasPath: true, value: 'from options' })
  await s.stop('SIGTERM', 5000)
})

t.test('a command that does not exist: exit 127 and a logged CHILD_SPAWN error with its cause', async (t) => {
  const h = harness(t)
  const s = h.start('/nonexistent/fly-replay-sidecar-test-app', ['--flag'])
  t.equal(s.pid, undefined)
  t.strictSame(await s.exited, { code: 127, signal: null, exitCode: 127 })
  t.equal(s.running, false)
  t.strictSame(await s.stop('SIGTERM', 1000), { code: 127, signal: null, exitCode: 127 }, 'stop() answers too')
  s.signal('SIGHUP')
  const line = h.logs.find((l) => l.msg === 'app command could not be started')
  t.match(line, {
    level: 'error',
    exitCode: 127,
    err: {
      code: 'SIDECAR_ERR_CHILD_SPAWN',
      message: 'cannot start the app command /nonexistent/fly-replay-sidecar-test-app: ENOENT',
      cause: { code: 'ENOENT' },
    },
  })
})

t.test('a command that is not executable: exit 126', async (t) => {
  const h = harness(t)
  const file = path.join(h.dir, 'not-executable')
  writeFileSync(file, '#!/bin/sh\nexit 0\n')
  chmodSync(file, 0o644)
  const s = h.start(file, [])
  t.strictSame(await s.exited, { code: 126, signal: null, exitCode: 126 })
  t.match(h.logs.find((l) => l.msg === 'app command could not be started'), { err: { code: 'SIDECAR_ERR_CHILD_SPAWN', cause: { code: 'EACCES' } } })
})
