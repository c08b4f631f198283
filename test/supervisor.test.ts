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
import { APP_MARK_VARIABLE } from '../src/app-processes.ts'

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
      const options: SupervisorOptions = { command, args, logger, env: { ...process.env, FIXTURE_DIR: dir, ...env } }
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
  t.ok(h.logs.some((l) => l.msg === 'app exited leaving processes behind: stopping them'), 'said so')
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

t.test('the app gets options.env as it is, plus only the mark', async (t) => {
  const h = harness(t)
  const s = h.start(node, [fixture('traps.mjs')], { SUPERVISOR_TEST_VALUE: 'from options', [APP_MARK_VARIABLE]: 'forged' })
  await h.pidOf('app')
  t.strictSame(JSON.parse(readFileSync(path.join(h.dir, 'env.json'), 'utf8')), { hasPath: true, value: 'from options' })
  const environ = readFileSync(`/proc/${String(s.pid)}/environ`, 'latin1').split('\0').filter((v) => v !== '')
  const marks = environ.filter((v) => v.startsWith(`${APP_MARK_VARIABLE}=`))
  t.equal(marks.length, 1, 'one mark')
  t.match(marks[0], new RegExp(`^${APP_MARK_VARIABLE}=${process.pid}\\.[0-9a-f]{16}$`), 'the supervisor\'s own value, not the forged one')
  t.equal(environ.at(-1), marks[0], 'the mark is the last variable')
  t.equal(environ.length, Object.keys({ ...process.env, FIXTURE_DIR: h.dir, SUPERVISOR_TEST_VALUE: '' }).length + 1, 'nothing else added')
  await s.stop('SIGTERM', 5000)
})

t.test('without options.env the app gets the sidecar\'s environment', async (t) => {
  const h = harness(t)
  process.env.SUPERVISOR_TEST_VALUE = 'inherited'
  process.env.FIXTURE_DIR = h.dir
  t.teardown(() => { delete process.env.SUPERVISOR_TEST_VALUE; delete process.env.FIXTURE_DIR })
  const s = superviseApp({ command: node, args: [fixture('traps.mjs')], logger: createLogger({ level: 'silent' }) })
  t.teardown(() => s.stop('SIGKILL', 0))
  await h.pidOf('app')
  t.strictSame(JSON.parse(readFileSync(path.join(h.dir, 'env.json'), 'utf8')), { hasPath: true, value: 'inherited' })
})

// php-fpm -D: the daemon calls setsid() and its launcher exits, so it is neither in the app's
// group nor its descendant when the stop comes; the start script then execs the server.
for (const flags of [[], ['no-fd'], ['no-env']]) {
  const how = flags.length === 0 ? 'both marks' : flags[0] === 'no-fd' ? 'the environment mark only' : 'the fd mark only'
  t.test(`a daemon that left the app's session (setsid) is stopped with it (${how})`, async (t) => {
    const h = harness(t)
    const s = h.start('sh', ['-c', `"${node}" "${fixture('daemonize.mjs')}" daemon ${flags.join(' ')}; exec "${node}" "${fixture('idle.mjs')}" app`])
    const daemon = await h.pidOf('daemon')
    await h.pidOf('app')
    const stat = readFileSync(`/proc/${daemon}/stat`, 'latin1')
    const [, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    t.not(Number(pgrp), s.pid, 'the daemon is outside the app\'s process group')
    const began = Date.now()
    t.strictSame(await s.stop('SIGTERM', 3000), { code: null, signal: 'SIGTERM', exitCode: 143 })
    t.ok(gone(daemon), 'the daemon is gone when stop() resolves')
    t.ok(Date.now() - began < 2000, 'it stopped on SIGTERM, without waiting for the timeout')
  })
}

t.test('a daemon that ignores SIGTERM is SIGKILLed at the stop deadline', async (t) => {
  const h = harness(t)
  const s = h.start('sh', ['-c', `"${node}" "${fixture('daemonize.mjs')}" daemon ignore-term; exec "${node}" "${fixture('idle.mjs')}" app`])
  const daemon = await h.pidOf('daemon')
  await h.pidOf('app')
  const began = Date.now()
  t.equal((await s.stop('SIGTERM', 700)).exitCode, 143)
  const took = Date.now() - began
  t.ok(gone(daemon), 'gone when stop() resolves')
  t.ok(took >= 680 && took < 3000, `at the deadline (${took} ms)`)
  t.match(h.logs.find((l) => l.msg === 'processes of the app still running: SIGKILL'), { level: 'warn', pids: [daemon] })
})

t.test('a daemon the app leaves behind when it exits on its own is stopped', async (t) => {
  const h = harness(t)
  // The script exits once the daemon is up (bounded: 100 looks), as a start script whose server crashed.
  const s = h.start('sh', ['-c', `"${node}" "${fixture('daemonize.mjs')}" daemon; i=0; while [ ! -s "$FIXTURE_DIR/daemon.pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; exit 3`])
  const daemon = await h.pidOf('daemon')
  t.strictSame(await s.exited, { code: 3, signal: null, exitCode: 3 })
  t.strictSame(await s.stop('SIGTERM', 1000), { code: 3, signal: null, exitCode: 3 }, 'the exit stays the app\'s')
  t.ok(gone(daemon), 'the daemon is gone when stop() resolves')
})

t.test('an unrelated process with the same kind of mark but another value is left alone', async (t) => {
  const h = harness(t)
  const other = superviseApp({ command: node, args: [fixture('idle.mjs'), 'other'], env: { ...process.env, FIXTURE_DIR: h.dir }, logger: createLogger({ level: 'silent' }) })
  t.teardown(() => other.stop('SIGKILL', 0))
  await h.pidOf('other')
  const s = h.start(node, [fixture('idle.mjs'), 'app'])
  await h.pidOf('app')
  await s.stop('SIGTERM', 2000)
  t.equal(other.running, true, 'the other app still runs')
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
