// Child processes of the benchmark: pinned spawning, readiness polling, stopping, and the CPU time
// and memory figures read from /proc.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync, readdirSync } from 'node:fs'
import net from 'node:net'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ). */
export const CLK_TCK = readClockTicks()

function readClockTicks (): number {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
}

/** CPU numbers to pin to, or null when the machine has fewer than two. */
export interface Pinning { readonly load: string, readonly server: string }

/** Load generator on CPU 0, proxy and app on CPU 1, when taskset and two CPUs exist. */
export function detectPinning (cpus: number): Pinning | null {
  if (cpus < 2) return null
  try { execFileSync('taskset', ['-V'], { stdio: 'ignore' }) } catch { return null }
  return { load: '0', server: '1' }
}

/**
 * Pins this process (every thread) to a CPU. taskset -a walks the thread list and fails when a
 * thread ends meanwhile, so it is tried a few times; false when it never succeeded.
 */
export function pinSelf (cpu: string): boolean {
  for (let i = 0; i < 5; i++) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', cpu, String(process.pid)], { stdio: 'ignore' })
      return true
    } catch { /* a thread came or went: try again */ }
  }
  return false
}

/** A started child whose output the benchmark copies into a log file. */
export interface Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly pid: number
  readonly log: string
  exited: boolean
}

/**
 * Spawns `cmd args` pinned to `cpu` (taskset execs the command, so the pid is the command's own).
 * Its stdout and stderr are pipes that this process (on the load generator's CPU) copies into
 * the log file, as on a Fly Machine, where the init process reads the entrypoint's output from a
 * pipe: an append to a file on the proxy's own CPU would charge it for the file system's work
 * (an ext4 inode update per write), which production never pays.
 */
export function spawnPinned (name: string, cpu: string | null, cmd: string, args: readonly string[], opts: {
  env?: NodeJS.ProcessEnv
  cwd?: string
  log: string
}): Child {
  const [file, argv] = cpu === null ? [cmd, [...args]] : ['taskset', ['-c', cpu, cmd, ...args]]
  const proc = spawn(file, argv, {
    env: opts.env ?? process.env,
    cwd: opts.cwd ?? process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = createWriteStream(opts.log, { flags: 'a' })
  let open = 2
  const done = (): void => { if (--open === 0) out.end() }
  proc.stdout?.on('end', done).pipe(out, { end: false })
  proc.stderr?.on('end', done).pipe(out, { end: false })
  if (proc.pid === undefined) throw new Error(`${name}: could not spawn ${cmd}`)
  const child: Child = { name, proc, pid: proc.pid, log: opts.log, exited: false }
  proc.on('exit', () => { child.exited = true })
  return child
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export async function stopChild (child: Child, graceMs = 3000): Promise<void> {
  if (child.exited) return
  const gone = new Promise<void>((resolve) => { child.proc.once('exit', () => { resolve() }) })
  child.proc.kill('SIGTERM')
  const timer = setTimeout(() => { if (!child.exited) child.proc.kill('SIGKILL') }, graceMs)
  await gone
  clearTimeout(timer)
}

/** A free loopback port (bound, then released). */
export async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(0, '127.0.0.1', resolve) })
  const addr = s.address()
  await new Promise<void>((resolve) => { s.close(() => { resolve() }) })
  if (addr === null || typeof addr === 'string') throw new Error('no TCP address')
  return addr.port
}

/** One GET with a short timeout; resolves with the status, or 0 when it could not connect. */
export function probe (url: string, timeoutMs = 1000): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
      res.on('error', () => { resolve(0) })
    })
    req.on('timeout', () => { req.destroy() })
    req.on('error', () => { resolve(0) })
  })
}

/** Polls `url` until it answers 200, the child exits, or `timeoutMs` passes. */
export async function waitReady (child: Child, url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exited) throw new Error(`${child.name} exited before it was ready (log: ${child.log})`)
    if (await probe(url) === 200) return
    if (Date.now() > deadline) throw new Error(`${child.name} not ready at ${url} after ${timeoutMs} ms (log: ${child.log})`)
    await sleep(100)
  }
}

/** User+system CPU seconds a process has used so far (all its threads). */
export function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** A process's memory in bytes: current resident set and its high-water mark. */
export function memory (pid: number): { rss: number, hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)
    return m === null ? NaN : Number(m[1]) * 1024
  }
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') }
}

/** Pids whose parent is `ppid` (nginx workers of a master). */
export function childPids (ppid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) === ppid) out.push(Number(entry))
    } catch { /* the process ended while we looked */ }
  }
  return out
}

/**
 * Drops a binary from the page cache, so each process starts as on a Machine that has just booted:
 * its binary read from disk by the page faults of the start. With the file cached, the figure
 * measured how the cache held it, not what the process uses: the kernel maps every cached page of
 * a large folio (of up to 2 MiB) on a fault in any of them, and a file just written (the build's
 * copy of the executable) or read through is cached in large folios. The same executable measured
 * 57.6 MiB of its binary resident after a read-through, 39.5 MiB started cold (bare Node 34.8
 * against 33.8; bench/resident-pages.ts, 19:10 UTC). `dd iflag=nocache` is posix_fadvise
 * (DONTNEED), which Node does not offer; written pages are synced first, or they stay.
 */
export function dropFromPageCache (file: string): void {
  execFileSync('sync', [file])
  execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'])
}
