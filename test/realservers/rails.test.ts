// Rails' server behind the sidecar: Puma from Debian in cluster mode (WEB_CONCURRENCY=2) with
// examples/rails/config/puma.rb and examples/rails/config/sidecar.yaml, as `./bin/rails server`
// runs it. Rails itself cannot be installed offline from Debian with an app's gems, so a Rack app
// (test/realservers/apps/rails/config.ru) stands in for it: the server, its config, its process
// tree and its signal handling are Puma's own.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  APPS, EXAMPLES, TOKEN, appProcesses, checkBodies, checkKeepAlive, checkStream, fetchAll, gone, serverTree, sleep, startStack, until, waitHealthy,
} from './harness.ts'

t.test('Puma (cluster mode, config/puma.rb) behind the sidecar', async (t) => {
  const run = mkdtempSync(path.join(tmpdir(), 'realservers-puma-'))
  t.teardown(() => { rmSync(run, { recursive: true, force: true }) })
  const pidFile = path.join(run, 'puma.pid')
  const stack = await startStack(t, {
    config: 'rails/config/sidecar.yaml',
    command: ['puma', '-C', path.join(EXAMPLES, 'rails/config/puma.rb')],
    cwd: path.join(APPS, 'rails'),
    env: { WEB_CONCURRENCY: '2', PIDFILE: pidFile, FLY_API_TOKEN: TOKEN },
  })
  const seen = await waitHealthy(stack)
  t.equal(seen.at(-1), '200 ok', `health: ${seen.join(' → ')}`)
  t.ok(seen.includes('503 starting'), '503 while Puma boots')

  await until('both workers', () => serverTree(pidFile).length === 3, 10_000)
  const procs = serverTree(pidFile)
  t.teardown(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } })
  t.equal(procs[0]?.pid, stack.child.pid === undefined ? -1 : appProcesses(stack.pid).find((p) => p.ppid === stack.pid)?.pid, 'Puma\'s master is the sidecar\'s child')
  t.equal(procs.length, 3, 'master and 2 workers')

  await t.test('PORT is app.url\'s port, so Puma bound it; the API token is not passed on', async (t) => {
    const env = await fetchAll(stack.url('/env'))
    const body = JSON.parse(env.body.toString()) as { port: string, token: string | null }
    t.strictSame({ port: body.port, token: body.token }, { port: String(stack.appPort), token: null })
  })

  await checkBodies(t, stack)
  await checkStream(t, stack, 'a Rack body written as ActionController::Live does')
  // Puma keeps an idle connection 20 s; the sidecar's pool drops its own after 1.5 s.
  await checkKeepAlive(t, stack, [1400, 1500, 1600], 'around the sidecar\'s own 1.5 s idle timeout')

  await t.test('SIGHUP reloads the sidecar\'s rules and does not reach Puma', async (t) => {
    stack.child.kill('SIGHUP')
    await until('config reloaded', () => stack.logs().some((l) => l.msg === 'config reloaded'), 5000)
    await sleep(500)
    t.ok(procs.every((p) => !gone(p.pid)), 'Puma\'s master and workers all still run')
    t.equal((await fetchAll(stack.url('/'))).status, 200)
    t.equal(stack.child.exitCode, null, 'the sidecar still runs')
  })

  await t.test('SIGTERM: master and workers are gone, the exit code is Puma\'s', async (t) => {
    const began = Date.now()
    stack.child.kill('SIGTERM')
    const exit = await stack.exit
    // Puma stops gracefully, then re-raises SIGTERM (raise_exception_on_sigterm, on by default):
    // it dies of the signal, 128 + 15.
    t.strictSame(exit, { code: 143, signal: null }, 'Puma died of SIGTERM after its graceful stop: 143')
    t.strictSame(procs.filter((p) => !gone(p.pid)).map((p) => p.cmd), [], 'nothing of the app is left')
    t.ok(Date.now() - began < 7000, `stopped in ${Date.now() - began} ms`)
  })
})
