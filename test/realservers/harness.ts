// The real-servers suite's harness: a real sidecar process (src/cli.ts) supervising a real app
// server from Debian's packages, with the config from examples/<framework>/ (its app port
// substituted, and the sidecar bound to loopback with metrics off), started exactly as the
// example's Dockerfile starts it. It also finds the app's processes on its own (by the marks the
// supervisor gives them, read from /proc), so a test can say which ones ran and that none is left.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { Agent, request, type Dispatcher } from 'undici'
import { deadPort } from '../helpers/net.ts'
import { patternBytes } from '../helpers/apps.ts'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const EXAMPLES = path.join(ROOT, 'examples')
export const APPS = fileURLToPath(new URL('apps', import.meta.url))
const CLI = path.join(ROOT, 'src/cli.ts')

/** Debian's binaries first: `python3` on a developer's PATH may be a pyenv shim without Django. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin'
export const TOKEN = 'FlyV1 fm2_realservers-token'

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `fn` every 50 ms until it holds; throws (fails the test) after `ms`. */
export async function until (what: string, fn: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      if (await fn()) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(50)
  }
}

/** No such process, or a zombie (dead, waiting to be reaped by whoever adopted it). */
export function gone (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z'
  } catch {
    return true
  }
}

export interface Proc { readonly pid: number, readonly ppid: number, readonly cmd: string }

/**
 * The live processes the sidecar `sidecarPid` started for its app: those holding its marker file
 * or its environment mark, and their descendants. Independent of src/app-processes.ts: it knows
 * the marks' fixed parts only (both embed the sidecar's pid).
 */
export function appProcesses (sidecarPid: number): Proc[] {
  const filePrefix = path.join(tmpdir(), `fly-replay-sidecar-app-${sidecarPid}-`)
  const envMark = Buffer.from(`FLY_REPLAY_SIDECAR_APP=${sidecarPid}.`)
  const all: Array<Proc & { marked: boolean }> = []
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (fields[0] === 'Z') continue
      let marked = false
      try { marked = readlinkSync(`/proc/${name}/fd/3`).startsWith(filePrefix) } catch {}
      try { marked ||= readFileSync(`/proc/${name}/environ`).includes(envMark) } catch {}
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0+$/, '').replaceAll('\0', ' ')
      all.push({ pid: Number(name), ppid: Number(fields[1]), cmd, marked })
    } catch {}
  }
  const members = new Set(all.filter((p) => p.marked && p.pid !== sidecarPid).map((p) => p.pid))
  for (let grew = true; grew;) {
    grew = false
    for (const p of all) if (!members.has(p.pid) && members.has(p.ppid)) { members.add(p.pid); grew = true }
  }
  return all.filter((p) => members.has(p.pid)).map(({ pid, ppid, cmd }) => ({ pid, ppid, cmd }))
}

/** The live children of `pid`, from /proc. */
export function childrenOf (pid: number): Proc[] {
  const out: Proc[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (fields[0] === 'Z' || Number(fields[1]) !== pid) continue
      out.push({ pid: Number(name), ppid: pid, cmd: readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0+$/, '').replaceAll('\0', ' ') })
    } catch {}
  }
  return out
}

/** A server's master (from its pid file) and its children: found without the sidecar's marks. */
export function serverTree (pidFile: string): Proc[] {
  const pid = Number(readFileSync(pidFile, 'utf8').trim())
  let cmd = ''
  let ppid = 0
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0+$/, '').replaceAll('\0', ' ')
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch {}
  return [{ pid, ppid, cmd }, ...childrenOf(pid)]
}

export interface StackOptions {
  /** The example's config file, relative to examples/. */
  readonly config: string
  /** The app command after `--` (none: the app is started elsewhere). */
  readonly command?: readonly string[]
  readonly cwd?: string
  /** The port that replaces the example's 8081 (default: a free one). */
  readonly appPort?: number
  /** Extra env for the sidecar (and so for the app). */
  readonly env?: NodeJS.ProcessEnv
  /** More top-level YAML, e.g. a `fly:` section. */
  readonly extraConfig?: string
  /** PATH for the sidecar and the app; default SYSTEM_PATH. */
  readonly path?: string
}

export interface Stack {
  readonly port: number
  readonly appPort: number
  readonly child: ChildProcess
  readonly pid: number
  readonly dir: string
  readonly exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  url (p: string): string
  out (): string
  /** The sidecar's own JSON log lines. */
  logs (): Array<Record<string, unknown>>
  /** GET the health path: status and body status. */
  health (): Promise<{ status: number, state: string }>
}

/** The example's config with its app port and a loopback listen address for the test. */
export function configFrom (example: string, port: number, appPort: number, extra = ''): string {
  const text = readFileSync(path.join(EXAMPLES, example), 'utf8')
  if (!text.includes('127.0.0.1:8081')) throw new Error(`${example} no longer names 127.0.0.1:8081`)
  return `listen: 127.0.0.1:${port}\nmetrics: false\n${extra}${text.replaceAll('127.0.0.1:8081', `127.0.0.1:${appPort}`)}`
}

export async function startStack (t: Test, opts: StackOptions): Promise<Stack> {
  const dir = mkdtempSync(path.join(tmpdir(), 'realservers-'))
  const port = await deadPort()
  const appPort = opts.appPort ?? await deadPort()
  const configFile = path.join(dir, 'sidecar.yaml')
  writeFileSync(configFile, configFrom(opts.config, port, appPort, opts.extraConfig))
  const args = [CLI, '--config', configFile]
  if (opts.command !== undefined) args.push('--', ...opts.command)
  // Output to a file, not a pipe to this process: on Fly it is a pipe or a file too, and servers
  // open /proc/self/fd/2 by name (php-fpm's error_log), which fails on a socket.
  const outFile = path.join(dir, 'output.log')
  const outFd = openSync(outFile, 'a')
  const child = spawn(process.execPath, args, {
    cwd: opts.cwd ?? dir,
    env: { PATH: opts.path ?? SYSTEM_PATH, HOME: dir, LANG: 'C.UTF-8', LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', outFd, outFd],
  })
  closeSync(outFd)
  const pid = child.pid as number
  const out = (): string => { try { return readFileSync(outFile, 'utf8') } catch { return '' } }
  const exit = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => { resolve({ code, signal }) })
  })
  const agent = new Agent({ connections: 4 })
  t.teardown(async () => {
    // Whatever a failed test left: the sidecar, then every process that still carries its marks.
    const left = appProcesses(pid)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    for (const p of left) { try { process.kill(p.pid, 'SIGKILL') } catch {} }
    await agent.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const url = (p: string): string => `http://127.0.0.1:${port}${p}`
  return {
    port,
    appPort,
    child,
    pid,
    dir,
    exit,
    url,
    out,
    logs: () => out().split('\n').filter((l) => l.startsWith('{"level"')).map((l) => JSON.parse(l) as Record<string, unknown>),
    async health () {
      const res = await request(url('/_sidecar/health'), { dispatcher: agent })
      const body = await res.body.json() as { status: string }
      return { status: res.statusCode, state: body.status }
    },
  }
}

/** Polls health until 200, recording every answer ('refused' before the sidecar listens). */
export async function waitHealthy (stack: Stack, ms = 30_000): Promise<string[]> {
  const seen: string[] = []
  const deadline = Date.now() + ms
  for (;;) {
    let answer: string
    try {
      const h = await stack.health()
      answer = `${h.status} ${h.state}`
    } catch {
      answer = 'refused'
    }
    if (seen.at(-1) !== answer) seen.push(answer)
    if (answer === '200 ok') return seen
    // A start that fails says why: the sidecar's and the app's own output.
    const why = stack.child.exitCode !== null ? `the sidecar exited with ${stack.child.exitCode}` : Date.now() > deadline ? `not healthy after ${ms} ms` : undefined
    if (why !== undefined) throw new Error(`${why} (health: ${seen.join(' → ')}); output:\n${stack.out().slice(-4000)}`)
    await sleep(50)
  }
}

export interface Received { readonly status: number, readonly headers: Record<string, string | string[] | undefined>, readonly body: Buffer }

export async function fetchAll (url: string, options: { method?: Dispatcher.HttpMethod, headers?: Record<string, string>, body?: Buffer | string, dispatcher?: Dispatcher } = {}): Promise<Received> {
  const { method = 'GET', ...rest } = options
  const res = await request(url, { method, ...rest })
  const chunks: Buffer[] = []
  for await (const c of res.body) chunks.push(c as Buffer)
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }
}

/** A streamed request: each chunk as it arrived, with the ms since the request was sent. */
export async function streamed (url: string, options: { method?: Dispatcher.HttpMethod, headers?: Record<string, string>, body?: string } = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, chunks: Chunk[] }> {
  const { method = 'GET', ...rest } = options
  const started = performance.now()
  const res = await request(url, { method, ...rest })
  const chunks: Chunk[] = []
  for await (const c of res.body) chunks.push({ at: Math.round(performance.now() - started), wall: Date.now(), text: (c as Buffer).toString() })
  return { status: res.statusCode, headers: res.headers, chunks }
}

/** A chunk of a streamed body: ms since the request was sent, and the wall clock, when it arrived. */
export interface Chunk { readonly at: number, readonly wall: number, readonly text: string }

/**
 * Lines of a streamed body, each with the time its chunk arrived and, for lines written as
 * `<name> <n> <unix seconds>`, when the app wrote it (same machine, same clock).
 */
export function lineArrivals (chunks: readonly Chunk[]): Array<{ at: number, wall: number, written: number, line: string }> {
  const out: Array<{ at: number, wall: number, written: number, line: string }> = []
  for (const c of chunks) {
    for (const line of c.text.split('\n')) {
      if (line !== '') out.push({ at: c.at, wall: c.wall, written: Math.round(Number(line.split(' ')[2]) * 1000), line })
    }
  }
  return out
}

/**
 * Whether the stream was progressive: the first line reached the client before the app wrote
 * the last one (a body buffered anywhere on the way arrives only after that), in 3 or more reads.
 * Scheduling on a busy machine moves the gaps, never this order.
 */
export function progressive (lines: ReturnType<typeof lineArrivals>): { ok: boolean, why: string } {
  const first = lines[0]
  const last = lines.at(-1)
  const reads = new Set(lines.map((l) => l.at)).size
  const lead = first === undefined || last === undefined ? NaN : last.written - first.wall
  return {
    ok: reads >= 3 && lead > 0,
    why: `${reads} reads; the first line arrived ${lead} ms before the app wrote the last; arrivals at ${lines.map((l) => l.at).join(', ')} ms`,
  }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Request and response bodies of 0 B, 1 KiB and 5 MiB through the sidecar, hashed by the app. */
export async function checkBodies (t: Test, stack: Stack): Promise<void> {
  await t.test('bodies of 0 B, 1 KiB and 5 MiB, both ways, byte for byte', async (t) => {
    for (const size of [0, 1024, 5 * 1024 * 1024]) {
      const body = patternBytes(size)
      const up = await fetchAll(stack.url('/echo'), { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } })
      t.strictSame([up.status, JSON.parse(up.body.toString())], [200, { bytes: size, sha256: sha256(body) }], `request body of ${size} B`)
      const down = await fetchAll(stack.url(`/bytes?n=${size}`))
      t.strictSame([down.status, down.body.length, sha256(down.body)], [200, size, down.headers['x-sha256']], `response body of ${size} B`)
    }
  })
}

/**
 * The app's /stream: 5 chunks written 200 ms apart must arrive progressively (see progressive()),
 * not in one piece at the end. (Some servers send two chunks in one write: Puma 5 does, without
 * the sidecar too.)
 */
export async function checkStream (t: Test, stack: Stack, what: string): Promise<void> {
  await t.test(`a streamed response (${what}) arrives progressively`, async (t) => {
    const r = await streamed(stack.url('/stream?n=5&ms=200'))
    const lines = lineArrivals(r.chunks)
    t.strictSame(lines.map((l) => l.line.split(' ').slice(0, 2).join(' ')), ['chunk 0', 'chunk 1', 'chunk 2', 'chunk 3', 'chunk 4'])
    const p = progressive(lines)
    t.ok(p.ok, p.why)
  })
}

/**
 * Keep-alive across idle gaps: 4 clients, each with its own connection to the sidecar, send
 * requests separated by `gaps` (ms) at once; every one must succeed.
 */
export async function checkKeepAlive (t: Test, stack: Stack, gaps: readonly number[], why: string): Promise<void> {
  await t.test(`keep-alive across idle gaps of ${gaps.join(', ')} ms, 4 clients at once: none fails (${why})`, async (t) => {
    const agent = new Agent({ connections: 4 })
    t.teardown(() => agent.close())
    const results = await Promise.all([0, 1, 2, 3].map(async (client) => {
      const statuses: number[] = []
      for (const gap of [0, ...gaps]) {
        await sleep(gap + client * 15)
        try {
          statuses.push((await fetchAll(stack.url('/'), { dispatcher: agent })).status)
        } catch (err) {
          statuses.push(-1)
          t.comment(`client ${client}: ${(err as Error).message}`)
        }
      }
      return statuses
    }))
    t.strictSame(results, [0, 1, 2, 3].map(() => [0, ...gaps].map(() => 200)))
    const failures = stack.logs().filter((l) => typeof l.err === 'object' && l.level as number >= 40)
    t.strictSame(failures, [], 'the sidecar logged no upstream error')
  })
}
