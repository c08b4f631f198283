// Starting and stopping the benchmark targets: the app (also the "direct" target), nginx, plain
// Fastify + @fastify/http-proxy, the node:http + undici floor, and the sidecar (with 1 rule and
// with 100 rules).
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { PATHS } from './_config.ts'
import { BENCH_FLY } from './_machines-api.ts'
import { childPids, dropFromPageCache, freePort, spawnPinned, stopChild, waitReady, type Child } from './_procs.ts'

/** Waits for a child to answer 200 at `url`; kills it when it does not. */
async function readyOrKill (child: Child, url: string): Promise<void> {
  try {
    await waitReady(child, url)
  } catch (err) {
    if (!child.exited) child.proc.kill('SIGKILL')
    throw err
  }
}

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BENCH = join(ROOT, 'bench')

export type TargetName = 'direct' | 'nginx' | 'http-proxy' | 'node-floor' | 'sidecar'
/** Every target in table column order. */
export const TARGETS: readonly TargetName[] = ['direct', 'nginx', 'http-proxy', 'node-floor', 'sidecar']

/** A running target: where to send requests and which process to measure. */
export interface Target {
  readonly name: string
  readonly base: string
  /** The process whose CPU and memory are the target's cost (nginx: its one worker). */
  readonly pid: number
  /** Other processes of the target, for the record (nginx: the master). */
  readonly extraPids: readonly number[]
  readonly children: readonly Child[]
}

/** Starts the bench app on CPU `cpu`. */
export async function startApp (dir: string, cpu: string | null): Promise<{ child: Child, port: number }> {
  const port = await freePort()
  const child = spawnPinned('app', cpu, process.execPath, [join(BENCH, 'targets', 'app.ts')], {
    env: { ...process.env, APP_PORT: String(port) },
    log: join(dir, 'app.log'),
  })
  await readyOrKill(child, `http://127.0.0.1:${port}${PATHS.small}`)
  return { child, port }
}

/** The app itself as a target (the floor). */
export function directTarget (app: { child: Child, port: number }): Target {
  return { name: 'direct', base: `http://127.0.0.1:${app.port}`, pid: app.child.pid, extraPids: [], children: [] }
}

/** nginx.conf for a one-worker streaming reverse proxy with a keep-alive upstream. */
export function nginxConf (opts: { port: number, appPort: number, dir: string, root: boolean }): string {
  return `# Written by bench/_targets.ts: nginx as a plain streaming reverse proxy.
${opts.root ? 'user root;\n' : ''}worker_processes 1;
daemon off;
master_process on;
pid ${join(opts.dir, 'nginx.pid')};
error_log ${join(opts.dir, 'nginx-error.log')} warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${join(opts.dir, 'client_body')};
  proxy_temp_path ${join(opts.dir, 'proxy')};
  fastcgi_temp_path ${join(opts.dir, 'fastcgi')};
  uwsgi_temp_path ${join(opts.dir, 'uwsgi')};
  scgi_temp_path ${join(opts.dir, 'scgi')};
  keepalive_timeout 120s;
  keepalive_requests 1000000;
  client_max_body_size 64m;
  upstream app {
    server 127.0.0.1:${opts.appPort};
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${opts.port} backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      # Unbuffered proxying reads through proxy_buffer_size: 64 KiB, like Node's stream reads;
      # at the 4 KiB default nginx moves a 16 MiB body at about a third of this speed.
      proxy_buffer_size 64k;
      proxy_buffers 4 64k;
      proxy_busy_buffers_size 128k;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
`
}

/** Starts nginx (one worker) in front of the app; `bin` is the nginx executable. */
export async function startNginx (dir: string, cpu: string | null, appPort: number, bin: string): Promise<Target> {
  const port = await freePort()
  const ndir = join(dir, 'nginx')
  mkdirSync(ndir, { recursive: true })
  const conf = join(ndir, 'nginx.conf')
  writeFileSync(conf, nginxConf({ port, appPort, dir: ndir, root: process.getuid?.() === 0 }))
  const child = spawnPinned('nginx', cpu, bin, ['-p', ndir, '-c', conf, '-e', join(ndir, 'nginx-error.log')], { log: join(dir, 'nginx.log') })
  await readyOrKill(child, `http://127.0.0.1:${port}${PATHS.small}`)
  let workers = childPids(child.pid)
  for (let i = 0; i < 20 && workers.length !== 1; i++) { await sleep(50); workers = childPids(child.pid) }
  if (workers.length !== 1) throw new Error(`nginx has ${workers.length} workers, expected 1`)
  return { name: 'nginx', base: `http://127.0.0.1:${port}`, pid: workers[0] as number, extraPids: [child.pid], children: [child] }
}

/** Starts a peer proxy written in plain JavaScript (bench/targets/NAME.js), PORT and APP_PORT set. */
async function startScriptTarget (name: string, dir: string, cpu: string | null, appPort: number): Promise<Target> {
  const port = await freePort()
  const child = spawnPinned(name, cpu, process.execPath, [join(BENCH, 'targets', `${name}.js`)], {
    env: { ...process.env, PORT: String(port), APP_PORT: String(appPort) },
    log: join(dir, `${name}.log`),
  })
  await readyOrKill(child, `http://127.0.0.1:${port}${PATHS.small}`)
  return { name, base: `http://127.0.0.1:${port}`, pid: child.pid, extraPids: [], children: [child] }
}

/** Starts plain Fastify + @fastify/http-proxy with default options. */
export function startHttpProxy (dir: string, cpu: string | null, appPort: number): Promise<Target> {
  return startScriptTarget('http-proxy', dir, cpu, appPort)
}

/**
 * Starts the node-floor target: node:http handing each request to one undici Pool dispatch, the
 * least any Node proxy on that stack does per request.
 */
export function startNodeFloor (dir: string, cpu: string | null, appPort: number): Promise<Target> {
  return startScriptTarget('node-floor', dir, cpu, appPort)
}

/** The committed sidecar config of the benchmark. */
export const SIDECAR_CONFIG = join(BENCH, 'config', 'sidecar.yaml')

/**
 * The same config with 99 more rules in front of the Livewire rule: none matches the benchmark's
 * requests, and none needs a body for them, so every request walks all 100.
 */
export function writeHundredRulesConfig (dir: string): string {
  const base = readFileSync(SIDECAR_CONFIG, 'utf8')
  const marker = '\nrules:\n'
  const at = base.indexOf(marker)
  if (at === -1) throw new Error(`${SIDECAR_CONFIG} has no top-level rules: list`)
  const extra: string[] = []
  for (let i = 1; i <= 99; i++) {
    const kind = i % 4
    extra.push(`  - name: extra-${i}`, '    match:')
    if (kind === 0) extra.push('      method: POST', `      path: /api/v${i}/**`, `      json: { type: job-${i} }`)
    else if (kind === 1) extra.push(`      path: '~^/reports/${i}/[0-9]+$'`)
    else if (kind === 2) extra.push('      method: [PUT, PATCH]', `      path: /admin/*/jobs-${i}`)
    else extra.push(`      path: ${PATHS.livewire}`, `      headers: { x-bench-rule: r${i} }`)
    extra.push('    to: tasker')
  }
  const text = base.slice(0, at + marker.length) + extra.join('\n') + '\n' + base.slice(at + marker.length)
  const file = join(dir, 'sidecar-100-rules.yaml')
  writeFileSync(file, text)
  return file
}

/** The sidecar's CLI from source (Node strips the types at load). */
export const SIDECAR_SRC = join(ROOT, 'src', 'cli.ts')

/** Whether the sidecar's CLI exists in this checkout yet. */
export function sidecarAvailable (): boolean {
  return existsSync(SIDECAR_SRC)
}

/**
 * The sidecar as production runs it: the single executable of scripts/bundle.ts (Node with the
 * bundle, its code cache and its V8 flags inside), built into `dir`, with the bundled JavaScript
 * inside it and the flags baked in beside.
 */
export async function buildSidecarExecutable (dir: string): Promise<SidecarBuild> {
  const { bundle, NODE_FLAGS } = await import('../scripts/bundle.ts')
  const r = await bundle({ outDir: join(dir, 'bundle') })
  return { executable: r.executable, entry: r.entry, nodeFlags: NODE_FLAGS }
}

export interface SidecarBuild {
  readonly executable: string
  /** The JavaScript inside the executable. */
  readonly entry: string
  readonly nodeFlags: readonly string[]
}

/**
 * The environment of a sidecar on an ordinary app Machine of the bench's fake Fly app, listening
 * on `port` in front of the app on `appPort`, with the fake Machines API at `apiUrl`.
 */
export function sidecarEnv (port: number, appPort: number, apiUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    APP_PORT: String(appPort),
    BENCH_MACHINES_API_URL: apiUrl,
    FLY_APP_NAME: BENCH_FLY.app,
    FLY_MACHINE_ID: BENCH_FLY.machineId,
    FLY_IMAGE_REF: BENCH_FLY.image,
    FLY_REGION: BENCH_FLY.region,
    FLY_API_TOKEN: BENCH_FLY.token,
    NODE_ENV: 'production',
  }
  // The Livewire rule's pool is elsewhere, whatever the shell running the bench says.
  delete env.SIDECAR_POOL
  return env
}

/**
 * Starts the sidecar (the app started separately) as if on a Fly Machine, talking to the fake
 * Machines API at `apiUrl`. With a build and no `nodeArgs`: the executable itself. With
 * `nodeArgs` (tuning flags, --cpu-prof): the executable's JavaScript run by this Node with the
 * executable's flags, then `nodeArgs` (V8 takes the last value of a flag), because the executable
 * takes V8 flags only through NODE_OPTIONS, which refuses most of them. Without a build: `node nodeArgs src/cli.ts`.
 */
export async function startSidecar (opts: {
  name: string
  dir: string
  cpu: string | null
  appPort: number
  config: string
  apiUrl: string
  build: SidecarBuild | undefined
  nodeArgs?: readonly string[]
}): Promise<Target> {
  const port = await freePort()
  const env = sidecarEnv(port, opts.appPort, opts.apiUrl)
  const nodeArgs = opts.nodeArgs ?? []
  const config = ['--config', opts.config]
  let command: [string, string[]]
  if (opts.build === undefined) command = [process.execPath, [...nodeArgs, SIDECAR_SRC, ...config]]
  else if (nodeArgs.length === 0) {
    // Cold, as on a Machine just booted: a binary the build has just written is cached in large
    // folios, and its resident pages would measure the page cache (bench/lean.ts).
    dropFromPageCache(opts.build.executable)
    command = [opts.build.executable, config]
  } else command = [process.execPath, [...opts.build.nodeFlags, ...nodeArgs, opts.build.entry, ...config]]
  const child = spawnPinned(opts.name, opts.cpu, command[0], command[1], {
    cwd: ROOT,
    env,
    log: join(opts.dir, `${opts.name}.log`),
  })
  await readyOrKill(child, `http://127.0.0.1:${port}${PATHS.small}`)
  return { name: opts.name, base: `http://127.0.0.1:${port}`, pid: child.pid, extraPids: [], children: [child] }
}

/** Stops every process of a target. */
export async function stopTarget (t: Target): Promise<void> {
  // The sidecar drains for app.drain-timeout before it exits (and writes a --cpu-prof profile).
  for (const c of t.children) await stopChild(c, 15_000)
}
