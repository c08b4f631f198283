// Runs emulated Machines as local processes: one Machine = one main process (the sidecar, which
// starts the app) on free loopback ports. Start, stop, destroy, and autostop after idle time.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import net from 'node:net'
import { readdirSync, readFileSync } from 'node:fs'
import { SidecarError } from '../errors.ts'

/** How long a started Machine may take to accept connections on its port. */
export const DEFAULT_READY_TIMEOUT_MS = 20_000
/** After SIGTERM, how long before the Machine's processes are SIGKILLed (Fly's kill_timeout). */
export const DEFAULT_KILL_TIMEOUT_MS = 10_000
const READY_POLL_MS = 50
const OUTPUT_LINES_KEPT = 40

/** What the runtime needs to run one Machine. */
export interface MachineSpec {
  readonly id: string
  /** The Machine's env (its config env plus the FLY_* variables); PORT/APP_PORT/METRICS_PORT are added. */
  readonly env: Readonly<Record<string, string>>
  /** Stop the Machine after `idleMs` without connections (its services have autostop on). */
  readonly autostop: boolean
  /** A label for logs, e.g. the pool. */
  readonly label?: string
}

export type RuntimeState = 'starting' | 'started' | 'stopping' | 'stopped'

export interface RuntimeOptions {
  /** argv of each Machine's main process, e.g. `[node, 'src/cli.ts', '--config', f, '--', node, 'app.ts']`. */
  readonly command: readonly string[]
  readonly cwd?: string
  /** Env every Machine inherits (PATH and the like); default `process.env`. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>
  /** Idle time before an autostop Machine is stopped. */
  readonly idleMs: number
  readonly readyTimeoutMs?: number
  readonly killTimeoutMs?: number
  readonly host?: string
  /** An autostop Machine went idle. Default: stop it here; `dev` routes it through the Machines API. */
  readonly onIdle?: (id: string) => void
  /** A Machine's process ended without being asked to (crash, or the app exited). */
  readonly onExit?: (id: string, code: number | null, signal: string | null, lastOutput: readonly string[]) => void
  /** One line of a Machine's stdout/stderr. */
  readonly onOutput?: (id: string, line: string, stream: 'stdout' | 'stderr') => void
}

export interface Runtime {
  /** Starts the Machine (no-op if running) and resolves with its URL once its port accepts connections. */
  start (spec: MachineSpec): Promise<string>
  /** SIGTERM, then SIGKILL after the kill timeout; resolves when every process of the Machine ended. */
  stop (id: string): Promise<void>
  /** Stops the Machine and forgets it. */
  destroy (id: string): Promise<void>
  state (id: string): RuntimeState
  url (id: string): string | undefined
  pid (id: string): number | undefined
  /** The edge's count of open exchanges with this Machine (arms or clears the idle timer). */
  activity (id: string, active: number): void
  /** Stops every Machine. */
  close (): Promise<void>
}

interface Running {
  spec: MachineSpec
  state: RuntimeState
  child: ChildProcess | undefined
  url: string | undefined
  starting: Promise<string> | undefined
  stopping: Promise<void> | undefined
  exited: Promise<void> | undefined
  idleTimer: NodeJS.Timeout | undefined
  active: number
  output: string[]
}

/** Reserves a free loopback port (bind :0, read it, close). Another process could take it in between; at worst a start fails and is retried by the caller. */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(0, host, () => resolve()) })
  const addr = s.address()
  const port = addr !== null && typeof addr === 'object' ? addr.port : 0
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** PIDs of every live descendant of `pid` (Linux /proc); empty elsewhere. */
export function descendants (pid: number): number[] {
  let entries: string[]
  try { entries = readdirSync('/proc') } catch { return [] }
  const children = new Map<number, number[]>()
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8')
      // The command name may contain spaces and parentheses: fields start after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(e))
      children.set(ppid, list)
    } catch { /* the process ended while we read */ }
  }
  const out: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    const p = queue.shift() as number
    for (const c of children.get(p) ?? []) { out.push(c); queue.push(c) }
  }
  return out
}

/** Whether `pid` still runs; a zombie (ended, not yet reaped by init) counts as ended. */
export function alive (pid: number): boolean {
  try { process.kill(pid, 0) } catch { return false }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}

function kill (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal) } catch { /* already gone */ }
}

async function waitForPort (host: string, port: number, deadline: number, exited: () => boolean): Promise<boolean> {
  while (Date.now() < deadline) {
    if (exited()) return false
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => { s.destroy(); resolve(false) })
    })
    if (ok) return true
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS))
  }
  return false
}

/** Creates the runtime. Nothing runs until `start`. */
export function createRuntime (options: RuntimeOptions): Runtime {
  const host = options.host ?? '127.0.0.1'
  const readyTimeout = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  const killTimeout = options.killTimeoutMs ?? DEFAULT_KILL_TIMEOUT_MS
  const machines = new Map<string, Running>()
  const [command, ...args] = options.command
  if (command === undefined) throw new SidecarError('SIDECAR_ERR_EMULATOR_MACHINE_START', ['(none)', 'empty command'])

  function armIdle (r: Running): void {
    clearTimeout(r.idleTimer)
    r.idleTimer = undefined
    if (!r.spec.autostop || r.state !== 'started' || r.active > 0) return
    r.idleTimer = setTimeout(() => {
      r.idleTimer = undefined
      if (r.state !== 'started' || r.active > 0) return
      if (options.onIdle !== undefined) options.onIdle(r.spec.id)
      else void stop(r.spec.id)
    }, options.idleMs)
    r.idleTimer.unref()
  }

  async function launch (r: Running): Promise<string> {
    const port = await freePort(host)
    const appPort = await freePort(host)
    const metricsPort = await freePort(host)
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(options.baseEnv ?? process.env)) if (v !== undefined) env[k] = v
    Object.assign(env, r.spec.env, { PORT: String(port), APP_PORT: String(appPort), METRICS_PORT: String(metricsPort) })
    // Its own process group: a Ctrl-C in the terminal reaches the emulator, which stops Machines in order.
    const child = spawn(command as string, args, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    r.child = child
    r.output = []
    let exited = false
    r.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        exited = true
        // Only a running Machine "exits on its own": a failed start is reported by start().
        const unexpected = r.state === 'started'
        r.child = undefined
        r.url = undefined
        if (r.state !== 'stopping') r.state = 'stopped'
        clearTimeout(r.idleTimer)
        if (unexpected) options.onExit?.(r.spec.id, code, signal, [...r.output])
        resolve()
      })
      child.once('error', (err) => {
        if (child.pid === undefined) {
          exited = true
          r.child = undefined
          r.output.push(`spawn failed: ${err.message}`)
          resolve()
        }
      })
    })
    for (const [stream, name] of [[child.stdout, 'stdout'], [child.stderr, 'stderr']] as const) {
      let partial = ''
      stream?.setEncoding('utf8')
      stream?.on('data', (text: string) => {
        const lines = (partial + text).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) {
          r.output.push(line)
          if (r.output.length > OUTPUT_LINES_KEPT) r.output.shift()
          options.onOutput?.(r.spec.id, line, name)
        }
      })
    }
    const ok = await waitForPort(host, port, Date.now() + readyTimeout, () => exited)
    if (!ok) {
      const tail = r.output.slice(-5).join(' | ')
      await terminate(r)
      r.state = 'stopped'
      throw new SidecarError('SIDECAR_ERR_EMULATOR_MACHINE_START', [r.spec.id, exited ? `it exited: ${tail}` : `port ${port} not accepting after ${readyTimeout} ms`])
    }
    r.url = `http://${host}:${port}`
    r.state = 'started'
    armIdle(r)
    return r.url
  }

  /** SIGTERM to the main process; SIGKILL it and any descendant left after the kill timeout. */
  async function terminate (r: Running): Promise<void> {
    const child = r.child
    if (child === undefined || child.pid === undefined) { await r.exited; return }
    const pid = child.pid
    const family = descendants(pid)
    kill(pid, 'SIGTERM')
    const timer = setTimeout(() => {
      kill(-pid, 'SIGKILL')
      kill(pid, 'SIGKILL')
      for (const d of family) kill(d, 'SIGKILL')
    }, killTimeout)
    await r.exited
    clearTimeout(timer)
    // The sidecar stops its app group before it exits; anything it left behind is ended here.
    const left = family.filter(alive)
    if (left.length > 0) {
      for (const d of left) kill(d, 'SIGTERM')
      await new Promise((resolve) => setTimeout(resolve, 200))
      for (const d of left) if (alive(d)) kill(d, 'SIGKILL')
    }
  }

  function start (spec: MachineSpec): Promise<string> {
    let r = machines.get(spec.id)
    if (r === undefined) {
      r = { spec, state: 'stopped', child: undefined, url: undefined, starting: undefined, stopping: undefined, exited: undefined, idleTimer: undefined, active: 0, output: [] }
      machines.set(spec.id, r)
    }
    const run = r
    if (run.state === 'started' && run.url !== undefined) return Promise.resolve(run.url)
    if (run.state === 'starting' && run.starting !== undefined) return run.starting
    run.spec = spec
    const after = run.stopping ?? Promise.resolve()
    run.state = 'starting'
    run.starting = after.then(() => { run.state = 'starting'; return launch(run) }).finally(() => { run.starting = undefined })
    return run.starting
  }

  function stop (id: string): Promise<void> {
    const r = machines.get(id)
    if (r === undefined) return Promise.resolve()
    if (r.stopping !== undefined) return r.stopping
    const pending = r.starting ?? Promise.resolve('')
    r.stopping = pending.catch(() => '').then(async () => {
      if (r.child === undefined) { r.state = 'stopped'; return }
      r.state = 'stopping'
      clearTimeout(r.idleTimer)
      await terminate(r)
      r.state = 'stopped'
    }).finally(() => { r.stopping = undefined })
    return r.stopping
  }

  return {
    start,
    stop,
    destroy: async (id) => { await stop(id); machines.delete(id) },
    state: (id) => machines.get(id)?.state ?? 'stopped',
    url: (id) => { const r = machines.get(id); return r?.state === 'started' ? r.url : undefined },
    pid: (id) => machines.get(id)?.child?.pid,
    activity: (id, active) => {
      const r = machines.get(id)
      if (r === undefined) return
      r.active = active
      armIdle(r)
    },
    close: async () => { await Promise.all([...machines.keys()].map(stop)) },
  }
}
