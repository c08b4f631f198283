// Django behind the sidecar: gunicorn and Django from Debian, started with the CMD of
// examples/django/Dockerfile as it is written (its 127.0.0.1:8081, like the config's, given a
// free port), and examples/django/config/routes.yaml. The project is apps/django/mysite.
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { deadPort } from '../helpers/net.ts'
import {
  APPS, EXAMPLES, TOKEN, checkBodies, checkKeepAlive, checkStream, childrenOf, fetchAll, gone, startStack, until, waitHealthy,
} from './harness.ts'

/** The Dockerfile's CMD, as the JSON array it is written as. */
function dockerCmd (file: string): string[] {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('CMD ['))
  if (line === undefined) throw new Error(`no CMD in ${file}`)
  return JSON.parse(line.slice(4)) as string[]
}

t.test('gunicorn (gthread, 2 workers) with the Dockerfile\'s CMD behind the sidecar', async (t) => {
  const cmd = dockerCmd(path.join(EXAMPLES, 'django/Dockerfile'))
  t.equal(cmd.filter((a) => a === '127.0.0.1:8081').length, 1, 'the CMD binds 127.0.0.1:8081, the config\'s app.url')
  const appPort = await deadPort()
  const stack = await startStack(t, {
    config: 'django/config/routes.yaml',
    command: cmd.map((a) => a === '127.0.0.1:8081' ? `127.0.0.1:${appPort}` : a),
    cwd: path.join(APPS, 'django'),
    appPort,
    env: { FLY_API_TOKEN: TOKEN },
  })
  const seen = await waitHealthy(stack)
  t.equal(seen.at(-1), '200 ok', `health: ${seen.join(' → ')}`)
  t.ok(seen.includes('503 starting'), '503 while gunicorn imports Django')
  t.match((await fetchAll(stack.url('/'))).body.toString(), /^hello from django 3\./)

  const master = childrenOf(stack.pid)
  t.equal(master.length, 1, 'gunicorn\'s master is the sidecar\'s only child')
  const masterPid = master[0]?.pid as number
  await until('2 workers', () => childrenOf(masterPid).length === 2, 10_000)
  const procs = [...master, ...childrenOf(masterPid)]
  t.teardown(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } })

  await checkBodies(t, stack)
  await checkStream(t, stack, 'StreamingHttpResponse')
  // gunicorn closes an idle keep-alive connection after 2 s (--keep-alive 2, its default), just
  // after the sidecar's pool would drop it (1.5 s).
  await checkKeepAlive(t, stack, [1400, 1900, 2000, 2100, 2500], 'around gunicorn\'s 2 s keep-alive')

  await t.test('SIGTERM: master and workers are gone; gunicorn exits 0', async (t) => {
    const began = Date.now()
    stack.child.kill('SIGTERM')
    t.strictSame(await stack.exit, { code: 0, signal: null }, 'gunicorn stops gracefully on SIGTERM and exits 0')
    t.strictSame(procs.filter((p) => !gone(p.pid)).map((p) => p.cmd), [], 'nothing of the app is left')
    t.ok(Date.now() - began < 7000, `stopped in ${Date.now() - began} ms`)
  })
})

t.test('gunicorn\'s master killed: the sidecar exits 137 and stops the orphaned workers', async (t) => {
  const cmd = dockerCmd(path.join(EXAMPLES, 'django/Dockerfile'))
  const appPort = await deadPort()
  const stack = await startStack(t, {
    config: 'django/config/routes.yaml',
    command: cmd.map((a) => a === '127.0.0.1:8081' ? `127.0.0.1:${appPort}` : a),
    cwd: path.join(APPS, 'django'),
    appPort,
  })
  await waitHealthy(stack)
  const masterPid = childrenOf(stack.pid)[0]?.pid as number
  const procs = [{ pid: masterPid }, ...childrenOf(masterPid)]
  process.kill(masterPid, 'SIGKILL')
  t.strictSame(await stack.exit, { code: 137, signal: null }, 'the app died of SIGKILL: 128 + 9')
  await until('the orphaned workers gone', () => procs.every((p) => gone(p.pid)), 5000)
  t.pass('gunicorn\'s workers, orphaned by the SIGKILL, are stopped too')
})
