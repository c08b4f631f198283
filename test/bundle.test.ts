// The self-contained bundle (scripts/bundle.ts) runs from a directory outside the repository with
// no node_modules anywhere above it, as it does after `COPY --from=` into an app image: it proxies
// a request to a loopback app, answers its health path and metrics, and runs `check`.
import t from 'tap'
import http from 'node:http'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { bundle, BUNDLE_ENTRY, BUNDLE_LAUNCHER, BUNDLE_LICENSES, BUNDLE_NODE, NODE_FLAGS } from '../scripts/bundle.ts'
import { echoApp, sha256 } from './helpers/apps.ts'

const repo = path.resolve(import.meta.dirname, '..')

interface Response { status: number, headers: http.IncomingHttpHeaders, body: string }

function request (port: number, method: string, urlPath: string, body?: string, headers: Record<string, string> = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${urlPath} timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** Runs a command to its end; bounded. */
function runToEnd (cmd: string, args: string[], opts: { cwd: string, env: NodeJS.ProcessEnv }): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} ${args.join(' ')} timed out`)) }, 30_000)
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** Waits for the JSON log line whose msg is `msg`; bounded. */
function waitForLog (lines: Record<string, unknown>[], onLine: Set<() => void>, msg: string, ms = 15_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const found = lines.find((l) => l.msg === msg)
      if (found === undefined) return false
      clearTimeout(timer)
      onLine.delete(listener)
      resolve(found)
      return true
    }
    const listener = (): void => { check() }
    const timer = setTimeout(() => { onLine.delete(listener); reject(new Error(`no "${msg}" log line within ${ms} ms; got ${JSON.stringify(lines)}`)) }, ms)
    onLine.add(listener)
    check()
  })
}

t.test('the bundle runs without the repository or node_modules', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fly-replay-sidecar-bundle-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (let d = dir; ; d = path.dirname(d)) {
    t.notOk(existsSync(path.join(d, 'node_modules')), `no node_modules in ${d}`)
    if (path.dirname(d) === d) break
  }
  t.notOk(dir.startsWith(repo), 'built outside the repository')

  const out = path.join(dir, 'fly-replay-sidecar')
  const built = await bundle({ outDir: out })
  t.strictSame((await readdir(out)).sort(), [BUNDLE_LAUNCHER, BUNDLE_ENTRY, BUNDLE_LICENSES, BUNDLE_NODE].sort())
  t.equal(built.dir, out)

  const entry = await readFile(built.entry, 'utf8')
  t.ok(entry.startsWith('#!/usr/bin/env node\n'), 'the entry keeps its shebang')
  const imports = [...entry.matchAll(/^import .* from ["']([^"']+)["'];?$/gm)].map((m) => m[1])
  t.strictSame(imports.filter((s) => !s!.startsWith('node:')), [], 'the entry imports nothing but Node built-ins')
  const licenses = await readFile(path.join(out, BUNDLE_LICENSES), 'utf8')
  for (const pkg of ['undici@', 'pino@', 'prom-client@', 'yaml@']) t.match(licenses, pkg, `${pkg} license shipped`)
  t.ok(built.packages.length > 10, 'the dependencies are inlined')

  const app = await echoApp()
  t.teardown(() => app.close())
  const appPort = app.port

  const config = path.join(dir, 'routes.yaml')
  await writeFile(config, [
    'listen: 127.0.0.1:0',
    'app:',
    `  url: http://127.0.0.1:${appPort}`,
    'metrics:',
    '  listen: 127.0.0.1:0',
    'pools:',
    '  tasker: {}',
    'rules:',
    '  - name: reports',
    '    match: { path: "/reports/**" }',
    '    to: tasker',
    '',
  ].join('\n'))
  // Only what an app image would have: no NODE_PATH, no FLY_* (so every request is served here).
  const env: NodeJS.ProcessEnv = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: dir, LOG_LEVEL: 'info' }

  const check = await runToEnd(built.launcher, ['check', '--config', config], { cwd: dir, env })
  t.equal(check.code, 0, `check: ${check.stderr}`)
  t.match(check.stdout, /^routes.yaml: ok\n/, 'the path as given, relative to the working directory')
  t.match(check.stdout, '    1. reports (line 9) -> tasker\n')

  const child: ChildProcess = spawn(built.launcher, ['--config', config], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let exited: Promise<number | null> = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const lines: Record<string, unknown>[] = []
  const onLine = new Set<() => void>()
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try { lines.push(JSON.parse(line) as Record<string, unknown>) } catch { lines.push({ raw: line }) }
    for (const f of onLine) f()
  })

  const listening = await waitForLog(lines, onLine, 'listening')
  const port = Number(String(listening.address).split(':').pop())
  const metricsLine = await waitForLog(lines, onLine, 'metrics listening')
  const metricsPort = Number(String(metricsLine.address).split(':').pop())
  t.ok(port > 0 && metricsPort > 0, 'both ports bound')

  const proxied = await request(port, 'POST', '/reports/q3?x=1', 'hello bundle', { 'content-type': 'text/plain' })
  t.equal(proxied.status, 200)
  t.equal(proxied.headers['content-type'], 'application/octet-stream')
  t.equal(proxied.headers['content-length'], '12')
  t.equal(proxied.body, 'hello bundle', 'the body went to the app and back')
  const seen = app.requests[0]
  t.strictSame([app.requests.length, seen?.method, seen?.url, seen?.headers['x-forwarded-for'], seen?.sha256], [1, 'POST', '/reports/q3?x=1', '127.0.0.1', sha256(Buffer.from('hello bundle'))])

  // The launcher execs node with its V8 flags: the process is node itself, flags before the entry.
  const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '')
  t.strictSame(cmdline.slice(0, 2 + NODE_FLAGS.length), [built.node, ...NODE_FLAGS, built.entry])

  const health = await request(port, 'GET', '/_sidecar/health')
  t.equal(health.status, 200)
  t.equal((JSON.parse(health.body) as { status: string }).status, 'ok')

  const metrics = await request(metricsPort, 'GET', '/metrics')
  t.equal(metrics.status, 200)
  t.match(metrics.body, 'fly_replay_sidecar_requests_total{decision="local",rule=""} 1\n')
  t.match(metrics.body, /\nprocess_cpu_user_seconds_total \d/)

  child.kill('SIGTERM')
  const code = await exited
  exited = Promise.resolve(code)
  t.equal(code, 0, `exits cleanly on SIGTERM; stderr: ${stderr}`)
  t.equal(stderr, '')

  // SIDECAR_NODE_FLAGS replaces the launcher's V8 flags; empty means V8's defaults.
  const bad = await runToEnd(built.launcher, ['--version'], { cwd: dir, env: { ...env, SIDECAR_NODE_FLAGS: '--no-such-v8-flag' } })
  t.not(bad.code, 0)
  t.match(bad.stderr, '--no-such-v8-flag', 'node was given the flag and refused it')
  const none = await runToEnd(built.launcher, ['--version'], { cwd: dir, env: { ...env, SIDECAR_NODE_FLAGS: '' } })
  t.equal(none.code, 0, none.stderr)
  t.match(none.stdout, /^\d+\.\d+\.\d+/)
})
