// Laravel's production shape behind the sidecar: nginx + php-fpm from Debian, started by
// examples/laravel/docker/start-app (`php-fpm -D`, then `exec nginx -g 'daemon off;'`) with the
// example's nginx site and php-fpm pool, and examples/laravel/config/routes.yaml. php-fpm and
// nginx are reached through two wrappers named as in the php image, which `exec` Debian's
// binaries with this sandbox's main config files (the image's own /etc files stand in for them
// in production), so the process tree is the one a Machine runs.
import t, { type Test } from 'tap'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { deadPort } from '../helpers/net.ts'
import { APP, IMAGE, live, seedSelf } from '../fixtures/machines/setup.ts'
import {
  APPS, EXAMPLES, SYSTEM_PATH, TOKEN, appProcesses, checkBodies, checkKeepAlive, fetchAll, gone, lineArrivals, progressive, serverTree, sleep, startStack, streamed, until, waitHealthy,
  type Proc, type Stack,
} from './harness.ts'

const EX = path.join(EXAMPLES, 'laravel')
const START_APP = path.join(EX, 'docker/start-app')
/** Debian's php-fpm binary is versioned (php-fpm8.2 on bookworm); the php image's is `php-fpm`. */
const PHP_FPM = `/usr/sbin/${readdirSync('/usr/sbin').find((n) => /^php-fpm[0-9.]+$/.test(n)) ?? 'php-fpm'}`

interface Sandbox { readonly dir: string, readonly bin: string, readonly nginxPort: number, readonly seenLog: string }

/** php-fpm and nginx wrappers, their main configs, and the example's site and pool, ports substituted. */
async function sandbox (dir: string): Promise<Sandbox> {
  const nginxPort = await deadPort()
  const fpmPort = await deadPort()
  const bin = path.join(dir, 'bin')
  const ngx = path.join(dir, 'nginx')
  mkdirSync(bin)
  mkdirSync(ngx)
  const root = process.getuid?.() === 0
  const seenLog = path.join(dir, 'seen.log')
  const sub = (text: string): string => text
    .replaceAll('127.0.0.1:8081', `127.0.0.1:${nginxPort}`)
    .replaceAll('127.0.0.1:9000', `127.0.0.1:${fpmPort}`)
    .replaceAll('/var/www/html', path.join(APPS, 'laravel'))
  writeFileSync(path.join(ngx, 'laravel.conf'), sub(readFileSync(path.join(EX, 'docker/nginx-site.conf'), 'utf8')))
  copyFileSync('/etc/nginx/fastcgi_params', path.join(ngx, 'fastcgi_params'))
  // Stands in for the image's /etc/nginx/nginx.conf, which includes conf.d/*.conf.
  writeFileSync(path.join(ngx, 'nginx.conf'), [
    root ? 'user root root;' : '',
    `pid ${ngx}/nginx.pid;`,
    'error_log stderr;',
    'worker_processes 2;',
    'events { worker_connections 256; }',
    'http {',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `  ${k}_temp_path ${ngx}/${k}_temp;`),
    '  include laravel.conf;',
    '}',
    '',
  ].join('\n'))
  writeFileSync(path.join(dir, 'zz-sidecar.conf'), sub(readFileSync(path.join(EX, 'docker/php-fpm-pool.conf'), 'utf8')))
  // Stands in for the php image's php-fpm.conf, which includes php-fpm.d/*.conf (zz-sidecar.conf last).
  writeFileSync(path.join(dir, 'php-fpm.conf'), [
    '[global]',
    `pid = ${dir}/php-fpm.pid`,
    'error_log = /proc/self/fd/2',
    `include = ${dir}/zz-sidecar.conf`,
    '[www]',
    `env[SEEN_LOG] = ${seenLog}`,
    '',
  ].join('\n'))
  const wrapper = (name: string, body: string): void => {
    writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`)
    chmodSync(path.join(bin, name), 0o755)
  }
  wrapper('php-fpm', `${root ? 'set -- -R "$@"\n' : ''}exec ${PHP_FPM} -y "${dir}/php-fpm.conf" "$@"`)
  wrapper('nginx', `exec /usr/sbin/nginx -p "${ngx}/" -c "${ngx}/nginx.conf" "$@"`)
  return { dir, bin, nginxPort, seenLog }
}

async function laravel (t: Test, env: NodeJS.ProcessEnv = {}, extraConfig = ''): Promise<{ stack: Stack, box: Sandbox }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'realservers-laravel-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const box = await sandbox(dir)
  const stack = await startStack(t, {
    config: 'laravel/config/routes.yaml',
    command: [START_APP],
    cwd: path.join(APPS, 'laravel'),
    appPort: box.nginxPort,
    path: `${box.bin}:${SYSTEM_PATH}`,
    env: { FLY_API_TOKEN: TOKEN, ...env },
    extraConfig,
  })
  return { stack, box }
}

const KINDS: Array<[string, string]> = [
  ['nginx: master', 'nginx master'], ['nginx: worker', 'nginx worker'],
  ['php-fpm: master', 'php-fpm master'], ['php-fpm: pool', 'php-fpm worker'],
]

/** nginx master + workers, php-fpm master + children: what the app runs, by their titles. */
function tree (procs: readonly Proc[]): Record<string, number> {
  const count: Record<string, number> = {}
  for (const p of procs) {
    const kind = KINDS.find(([prefix]) => p.cmd.startsWith(prefix))?.[1] ?? p.cmd
    count[kind] = (count[kind] ?? 0) + 1
  }
  return count
}

t.test('nginx + php-fpm (start-app) behind the sidecar', async (t) => {
  const { stack, box } = await laravel(t)
  const seen = await waitHealthy(stack)
  t.equal(seen.at(-1), '200 ok', `health: ${seen.join(' → ')}`)
  t.notOk(seen.includes('503 app-down'), 'never app-down while starting')

  // By the servers' own pid files, not the sidecar's marks: what runs, whatever the sidecar knows.
  const read = (): Proc[] => [...serverTree(path.join(box.dir, 'nginx/nginx.pid')), ...serverTree(path.join(box.dir, 'php-fpm.pid'))]
  // A worker nginx has just forked shows its master's title until it sets its own (seen under
  // load: three "masters"), so the titles are read once the expected tree has shown up, or after
  // 10 s, when the assertions below say what differs.
  const expected = { 'nginx master': 1, 'nginx worker': 2, 'php-fpm master': 1, 'php-fpm worker': 2 }
  await until('the servers\' processes to carry their titles', () => Object.entries(expected).every(([k, n]) => tree(read())[k] === n), 10_000).catch(() => {})
  const procs = read()
  t.teardown(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } })
  const kinds = tree(procs)
  t.equal(kinds['nginx master'], 1, 'nginx master')
  t.equal(kinds['nginx worker'], 2, 'nginx workers')
  t.equal(kinds['php-fpm master'], 1, 'php-fpm master')
  t.equal(kinds['php-fpm worker'], 2, 'php-fpm workers (pm.start_servers)')
  const fpmMaster = procs.find((p) => p.cmd.startsWith('php-fpm: master')) as Proc
  t.equal(fpmMaster.ppid === stack.pid, false, 'php-fpm\'s master is not the sidecar\'s child')
  const nginxMaster = procs.find((p) => p.cmd.startsWith('nginx: master')) as Proc
  t.equal(nginxMaster.ppid, stack.pid, 'nginx is the sidecar\'s child (the script exec\'d it)')

  await checkBodies(t, stack)

  await t.test('a streamed response arrives chunk by chunk (fastcgi_buffering off)', async (t) => {
    const r = await streamed(stack.url('/stream?n=5&ms=200'))
    const lines = lineArrivals(r.chunks)
    t.equal(lines.length, 5)
    const p = progressive(lines)
    t.ok(p.ok, p.why)
    t.comment(`arrivals (ms after the request): ${lines.map((l) => l.at).join(', ')}`)
  })

  // nginx keeps an idle connection 75 s (keepalive_timeout in the example); the sidecar's pool
  // drops its own after 1.5 s, so the gaps that matter are around 1.5 s.
  await checkKeepAlive(t, stack, [1400, 1500, 1600], 'around the sidecar\'s own 1.5 s idle timeout')

  await t.test('SIGTERM: the whole tree is gone, php-fpm included, and the sidecar exits 0 as nginx does', async (t) => {
    t.strictSame(appProcesses(stack.pid).map((p) => p.pid).sort(), procs.map((p) => p.pid).sort(), 'the sidecar\'s marks find exactly these')
    const before = procs
    const began = Date.now()
    stack.child.kill('SIGTERM')
    const exit = await stack.exit
    const took = Date.now() - began
    t.strictSame(exit, { code: 0, signal: null }, 'nginx exits 0 on SIGTERM, and so does the sidecar')
    t.strictSame(before.filter((p) => !gone(p.pid)).map((p) => p.cmd), [], 'nothing of the app is left')
    t.ok(took < 3000 + 4000, `stopped in ${took} ms, within drain + stop timeouts`)
    t.ok(existsSync(box.dir), 'sandbox still there')
  })
})

t.test('Livewire: process() replayed to the tasker and never seen by PHP; save() served by PHP; the tasker streams process()', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, region: 'ams' })
  t.teardown(() => api.close())
  seedSelf(api)
  const fly = `fly:\n  api-url: ${api.url}\n`
  const flyEnv = { FLY_APP_NAME: APP, FLY_MACHINE_ID: 'self0000000001', FLY_REGION: 'ams', FLY_IMAGE_REF: IMAGE }
  const { stack, box } = await laravel(t, flyEnv, fly)
  await waitHealthy(stack)
  const livewire = (method: string): string => JSON.stringify({ components: [{ snapshot: '{"data":{}}', updates: {}, calls: [{ path: '', method, params: [] }] }] })
  const headers = { 'content-type': 'application/json', 'x-livewire': 'true' }

  const processed = await fetchAll(stack.url('/livewire/update'), { method: 'POST', headers, body: livewire('process') })
  const tasker = live(api)
  t.equal(tasker.length, 1, 'a tasker Machine was created')
  const id = tasker[0]?.id as string
  t.equal(processed.status, 307)
  t.equal(processed.headers['fly-replay'], `instance=${id};timeout=30s;fallback=prefer_self;state=livewire-process`)

  const saved = await fetchAll(stack.url('/livewire/update'), { method: 'POST', headers, body: livewire('save') })
  t.strictSame([saved.status, JSON.parse(saved.body.toString())], [200, { saved: true, calls: ['save'] }], 'save() is served by PHP')
  t.equal(readFileSync(box.seenLog, 'utf8'), 'save -\n', 'PHP saw save() and never process()')

  // The tasker Machine: its own sidecar (SIDECAR_POOL=tasker) in front of the same PHP, as the
  // replayed request reaches it from Fly's edge (with fly-replay-src).
  const onTasker = await startStack(t, {
    config: 'laravel/config/routes.yaml',
    appPort: box.nginxPort,
    env: { ...flyEnv, FLY_MACHINE_ID: id, SIDECAR_POOL: 'tasker', FLY_API_TOKEN: TOKEN },
    extraConfig: fly,
  })
  await waitHealthy(onTasker)
  const r = await streamed(onTasker.url('/livewire/update'), {
    method: 'POST',
    headers: { ...headers, 'fly-replay-src': `instance=self0000000001;region=ams;t=${Date.now() * 1000};state=livewire-process` },
    body: livewire('process'),
  })
  t.equal(r.status, 200)
  t.equal(r.headers['x-livewire-stream'], 'true')
  const rows = lineArrivals(r.chunks)
  t.strictSame(rows.map((l) => l.line.split(' ').slice(0, 2).join(' ')), ['row 0', 'row 1', 'row 2', 'row 3', 'row 4'])
  // PHP flushes a row every 150 ms; the spacing on arrival moves with the machine's load, so it
  // is reported, and what is asserted is the order: rows reach the client while PHP still writes.
  const p = progressive(rows)
  t.ok(p.ok, p.why)
  t.comment(`gaps between rows: ${rows.slice(1).map((l, i) => l.at - (rows[i]?.at ?? 0)).join(', ')} ms`)
  t.comment(`tasker stream through the sidecar: rows at ${rows.map((l) => l.at).join(', ')} ms after the request`)
  t.match(readFileSync(box.seenLog, 'utf8'), /^save -\nprocess instance=self0000000001;region=ams;t=[0-9]+;state=livewire-process\n$/, 'PHP on the tasker saw the replayed process()')

  // The app Machine's sidecar stops nginx + php-fpm; the tasker's sidecar, which fronts the same
  // servers without supervising them, now finds nothing there.
  t.strictSame(await onTasker.health(), { status: 200, state: 'ok' })
  stack.child.kill('SIGTERM')
  await stack.exit
  t.strictSame(await onTasker.health(), { status: 503, state: 'app-down' }, 'health is 503 app-down once the server is gone')
})

t.test('the app exits on its own: php-fpm left behind is stopped, the exit code is nginx\'s', async (t) => {
  const { stack, box } = await laravel(t)
  await waitHealthy(stack)
  const procs = [...serverTree(path.join(box.dir, 'nginx/nginx.pid')), ...serverTree(path.join(box.dir, 'php-fpm.pid'))]
  t.teardown(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } })
  const nginxMaster = procs.find((p) => p.cmd.startsWith('nginx: master')) as Proc
  process.kill(nginxMaster.pid, 'SIGKILL')
  const exit = await stack.exit
  t.strictSame(exit, { code: 137, signal: null }, 'nginx died of SIGKILL: 128 + 9')
  await until('php-fpm gone', () => procs.every((p) => gone(p.pid)), 5000)
  t.pass('php-fpm\'s master and workers are gone too')
  t.ok(stack.logs().some((l) => l.msg === 'app exited leaving processes behind: stopping them'), 'said so')
})

t.test('php-fpm cannot start: start-app stops there (set -e), and the sidecar exits with php-fpm\'s code', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'realservers-laravel-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const box = await sandbox(dir)
  writeFileSync(path.join(dir, 'php-fpm.conf'), '[global]\nno-such-directive = 1\n')
  const stack = await startStack(t, {
    config: 'laravel/config/routes.yaml',
    command: [START_APP],
    cwd: path.join(APPS, 'laravel'),
    appPort: box.nginxPort,
    path: `${box.bin}:${SYSTEM_PATH}`,
  })
  // php-fpm exits 78 (EX_CONFIG) on a config it cannot read, and nginx is never started.
  t.strictSame(await stack.exit, { code: 78, signal: null })
  t.match(stack.out(), /no-such-directive/, 'php-fpm said why, through the sidecar\'s output')
  t.notOk(existsSync(path.join(dir, 'nginx/nginx.pid')), 'nginx never started')
})

// The layout of the image `fly launch` builds for Laravel (fideloper/fly-laravel): its /entrypoint
// execs supervisord, which runs php-fpm and nginx in the foreground. That image is not in Debian;
// this is the nearest real thing: Debian's supervisord with the same two programs, started the way
// docs/deploying.md says (the sidecar, `--`, then the entrypoint). supervisord puts each program
// in a process group of its own and closes their inherited descriptors, and both servers write
// their titles over their environment: only "a descendant of the app" still finds them.
async function supervised (t: Test): Promise<{ stack: Stack, procs: Proc[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'realservers-laravel-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const box = await sandbox(dir)
  const conf = path.join(dir, 'supervisord.conf')
  const program = (name: string, command: string): string => [
    `[program:${name}]`, `command=${command}`, 'autostart=true', 'autorestart=true',
    'stdout_logfile=/dev/stdout', 'stdout_logfile_maxbytes=0', 'stderr_logfile=/dev/stderr', 'stderr_logfile_maxbytes=0', '',
  ].join('\n')
  writeFileSync(conf, [
    '[supervisord]', 'nodaemon=true', 'logfile=/dev/null', 'logfile_maxbytes=0', `pidfile=${dir}/supervisord.pid`, 'user=root', '',
    program('php', `${box.bin}/php-fpm -F`),
    program('nginx', `${box.bin}/nginx -g "daemon off;"`),
  ].join('\n'))
  const stack = await startStack(t, {
    config: 'laravel/config/routes.yaml',
    command: ['/usr/bin/supervisord', '-c', conf],
    cwd: path.join(APPS, 'laravel'),
    appPort: box.nginxPort,
    path: `${box.bin}:${SYSTEM_PATH}`,
  })
  await waitHealthy(stack)
  // supervisord starts both at once: nginx can accept (health 200) before php-fpm does, and
  // answers 502 meanwhile. The base image's start-nginx sleeps 0.25 s first for that reason.
  await until('PHP answers through nginx', async () => (await fetchAll(stack.url('/'))).status === 200, 10_000)
  t.match((await fetchAll(stack.url('/'))).body.toString(), /^hello from php-fpm 8\./, 'PHP answers through nginx')
  await until('both servers up', () => existsSync(path.join(dir, 'php-fpm.pid')) && existsSync(path.join(box.dir, 'nginx/nginx.pid')), 10_000)
  const procs = [...serverTree(path.join(box.dir, 'nginx/nginx.pid')), ...serverTree(path.join(box.dir, 'php-fpm.pid'))]
  t.teardown(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } })
  const supervisord = procs[0]?.ppid as number
  t.equal(procs.filter((p) => p.ppid === supervisord).length, 2, 'nginx and php-fpm are supervisord\'s children')
  t.ok(procs.every((p) => readFileSync(`/proc/${p.pid}/stat`, 'latin1').split(') ')[1]?.split(' ')[2] !== String(supervisord)), 'none of them is in the app\'s process group')
  return { stack, procs }
}

t.test('supervisord running php-fpm and nginx (the fly launch layout): SIGTERM stops everything', async (t) => {
  const { stack, procs } = await supervised(t)
  stack.child.kill('SIGTERM')
  t.strictSame(await stack.exit, { code: 0, signal: null }, 'supervisord stops its programs and exits 0 on SIGTERM')
  t.strictSame(procs.filter((p) => !gone(p.pid)).map((p) => p.cmd), [], 'nothing of the app is left')
})

t.test('supervisord killed: its orphaned nginx and php-fpm, which carry no mark, are stopped too', async (t) => {
  const { stack, procs } = await supervised(t)
  // The sidecar looks its app's processes up every 2 s while it runs; let it see them once.
  await sleep(2500)
  process.kill(procs[0]?.ppid as number, 'SIGKILL')
  t.strictSame(await stack.exit, { code: 137, signal: null }, 'the app died of SIGKILL: 137')
  await until('the orphans gone', () => procs.every((p) => gone(p.pid)), 5000)
  t.pass('nginx and php-fpm, master and workers, are gone')
})
