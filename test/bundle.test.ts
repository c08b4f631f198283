// The single executable (scripts/bundle.ts) runs from a directory outside the repository with no
// node_modules anywhere above it and no Node on PATH, as it does after `COPY --from=` into an app
// image: it proxies a request to a loopback app, answers its health path and metrics, and runs
// `check`, and passes its environment to the app as it was given.
import t from 'tap'
import http from 'node:http'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { isBuiltin } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { bundle, BUNDLE_EXECUTABLE, BUNDLE_LICENSES } from '../scripts/bundle.ts'
import { echoApp, sha256 } from './helpers/apps.ts'
import { startMachinesApi } from '../src/emulator/machines-api.ts'
import { APP, TOKEN, seedSelf } from './fixtures/machines/setup.ts'

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

t.test('the executable runs without the repository, node_modules or Node on PATH', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fly-replay-sidecar-bundle-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (let d = dir; ; d = path.dirname(d)) {
    t.notOk(existsSync(path.join(d, 'node_modules')), `no node_modules in ${d}`)
    if (path.dirname(d) === d) break
  }
  t.notOk(dir.startsWith(repo), 'built outside the repository')

  const out = path.join(dir, 'fly-replay-sidecar')
  const built = await bundle({ outDir: out, workDir: path.join(dir, 'build') })
  t.strictSame((await readdir(out)).sort(), [BUNDLE_EXECUTABLE, BUNDLE_LICENSES].sort(), 'one executable and its licences')
  t.equal(built.executable, path.join(out, BUNDLE_EXECUTABLE))
  t.equal(built.executableBytes, (await readFile(built.executable)).length)
  t.ok(built.executableBytes > built.nodeBytes + built.blobBytes, 'the binary and the blob are in it')
  t.ok(built.blobBytes > built.entryBytes, 'the blob holds the code cache beside the JavaScript')

  t.ok(built.externals.length > 0, 'esbuild reported what the JavaScript loads at run time')
  t.strictSame(built.externals.filter((s) => !isBuiltin(s)), [], 'the JavaScript loads nothing but Node built-ins')
  // The Dockerfile's build stage has only what it copies: every source file must be among it.
  const copied = [...readFileSync(path.join(repo, 'Dockerfile'), 'utf8').matchAll(/^COPY (?!--from|<<)(.+) \S+$/gm)].flatMap((m) => (m[1] as string).split(' ')).map((p) => p.replace(/\/$/, ''))
  t.ok(built.sources.includes('src/executable.ts'), 'the sources are listed')
  t.strictSame(built.sources.filter((f) => !copied.some((c) => f === c || f.startsWith(`${c}/`))), [], `the Dockerfile copies every source (${copied.join(', ')})`)
  const licenses = await readFile(path.join(out, BUNDLE_LICENSES), 'utf8')
  for (const pkg of ['Node.js v24', 'undici@', 'pino@', 'prom-client@', 'yaml@']) t.match(licenses, pkg, `${pkg} licence shipped`)
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
  // Only what an app image without Node would have: a PATH with no node on it, no NODE_PATH, no
  // FLY_* (so every request is served here).
  const bin = path.join(dir, 'bin')
  await mkdir(bin)
  const env: NodeJS.ProcessEnv = { PATH: bin, HOME: dir, LOG_LEVEL: 'info' }
  t.throws(() => execFileSync('/bin/sh', ['-c', 'command -v node'], { env, stdio: 'pipe' }), 'no node on PATH')

  const check = await runToEnd(built.executable, ['check', '--config', config], { cwd: dir, env })
  t.equal(check.code, 0, `check: ${check.stderr}`)
  t.match(check.stdout, /^routes.yaml: ok\n/, 'the path as given, relative to the working directory')
  t.match(check.stdout, '    1. reports (line 9) -> tasker\n')

  // The executable checks configs with the schema's JSON made at build time, not TypeBox
  // (scripts/bundle.ts): every problem of a file full of them is worded and placed the same.
  const invalid = path.join(dir, 'invalid-many.yaml')
  await writeFile(invalid, await readFile(path.join(repo, 'test', 'fixtures', 'config', 'invalid-many.yaml')))
  const fromExecutable = await runToEnd(built.executable, ['check', '--config', 'invalid-many.yaml'], { cwd: dir, env })
  const fromSource = await runToEnd(process.execPath, [path.join(repo, 'src', 'cli.ts'), 'check', '--config', 'invalid-many.yaml'], { cwd: dir, env })
  t.equal(fromExecutable.code, 1, 'an invalid config fails the check')
  t.ok(fromExecutable.stdout.split('\n').length > 10, 'with its many problems')
  t.strictSame({ code: fromExecutable.code, stdout: fromExecutable.stdout, stderr: fromExecutable.stderr }, { code: fromSource.code, stdout: fromSource.stdout, stderr: fromSource.stderr }, 'the same problems as the source reports')

  const child: ChildProcess = spawn(built.executable, ['--config', config], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
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

  // No re-exec: the process runs as started, with the environment it was given (glibc's
  // allocator variables are the user's to set: src/executable.ts).
  const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '')
  t.strictSame(cmdline, [built.executable, '--config', config])
  const environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0')
  t.strictSame(environ.filter((v) => /^(MALLOC_|FLY_REPLAY_SIDECAR_)/.test(v)), [], 'no variables of its own added')

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

  // The app gets the environment the user gave the sidecar, allocator variables included.
  const envFile = path.join(dir, 'app-env')
  const withApp = await runToEnd(built.executable, ['--config', config, '--', '/bin/sh', '-c', `export -p > ${envFile}`], { cwd: dir, env: { ...env, LOG_LEVEL: 'warn', MALLOC_ARENA_MAX: '2' } })
  t.equal(withApp.code, 0, withApp.stderr)
  const appEnv = (await readFile(envFile, 'utf8')).split('\n').map((l) => /^export (\w+)/.exec(l)?.[1]).filter((n) => n !== undefined)
  t.ok(appEnv.includes('MALLOC_ARENA_MAX'), 'the user\'s allocator variable reaches it')
  t.notOk(appEnv.includes('MALLOC_MMAP_THRESHOLD_'), 'and nothing the user did not set')
  t.ok(appEnv.includes('FLY_REPLAY_SIDECAR_APP'), 'the supervisor\'s mark of the app\'s processes is there (docs/supervision.md)')
  t.ok(appEnv.includes('HOME') && appEnv.includes('LOG_LEVEL'), 'the user\'s variables reach it')

  // NODE_OPTIONS extends the baked-in V8 flags; a flag Node refuses proves it was read.
  const bad = await runToEnd(built.executable, ['--version'], { cwd: dir, env: { ...env, NODE_OPTIONS: '--no-such-v8-flag' } })
  t.not(bad.code, 0)
  t.match(bad.stderr, '--no-such-v8-flag', 'node was given the flag and refused it')
  const version = await runToEnd(built.executable, ['--version'], { cwd: dir, env })
  t.equal(version.code, 0, version.stderr)
  t.equal(version.stdout, `${JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version as string}\n`)
  t.equal(version.stderr, '', 'no warning on stderr')

  // On Fly, a rule's pool is served by the Machines API client, whose undici the executable
  // carries as a SEA asset, compiled on the first call (scripts/bundle.ts): a request for the
  // pool makes the calls and is answered with a replay to the Machine they created.
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const onFly = path.join(dir, 'on-fly.yaml')
  await writeFile(onFly, (await readFile(config, 'utf8')).replace('metrics:\n  listen: 127.0.0.1:0\n', `metrics: false\nfly:\n  api-url: ${api.url}\n`))
  const flyChild = spawn(built.executable, ['--config', onFly], { cwd: dir, env: { ...env, FLY_APP_NAME: APP, FLY_MACHINE_ID: 'self0000000001', FLY_REGION: 'ams', FLY_API_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (flyChild.exitCode === null) flyChild.kill('SIGKILL') })
  const flyPort = await new Promise<number>((resolve, reject) => {
    flyChild.once('exit', (c) => { reject(new Error(`exited with ${String(c)}`)) })
    createInterface({ input: flyChild.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as Record<string, unknown>
      if (msg.msg === 'listening') resolve(Number(String(msg.address).split(':').pop()))
    })
  })
  const replayed = await request(flyPort, 'GET', '/reports/q4')
  const created = [...api.machines.values()].find((m) => m.id !== 'self0000000001')
  t.ok(created !== undefined, 'a pool Machine was created through the API')
  t.equal(replayed.status, 307)
  t.match(replayed.headers['fly-replay'], `instance=${created?.id ?? '?'}`, 'the request is replayed to it')
  flyChild.kill('SIGTERM')

  const dev = await runToEnd(built.executable, ['dev'], { cwd: dir, env })
  t.equal(dev.code, 1)
  t.equal(dev.stderr, 'fly-replay-sidecar: SIDECAR_ERR_EMULATOR_SETUP: the emulator cannot start: dev runs from a checkout of fly-replay-sidecar (npm start), not from the executable\n')
})
