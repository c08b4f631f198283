// The app as a child process in its own process group (contract §2): signals go to the whole
// group so a server's workers and grandchildren stop with it (`php artisan serve` runs `php -S`
// as its child); SIGKILL after the stop timeout, and nothing of the group is left behind; the
// exit code is the child's, or 128+n when signal n killed it. No process-wide signal handlers
// and no process.exit here: src/sidecar.ts owns those.
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { constants } from 'node:os'
import type { Logger } from 'pino'
import { SidecarError } from './errors.ts'

/** How often a stop looks whether the group still has live members (a /proc scan on Linux). */
const GROUP_POLL_MS = 50
/** How long a SIGKILL is given to take effect before a stop gives up waiting. */
const KILL_WAIT_MS = 2000
/**
 * When the app exits on its own, processes it left in its group (workers, a shell's background
 * jobs) get SIGTERM and this long before SIGKILL: the sidecar is about to stop anyway.
 */
const ORPHAN_GRACE_MS = 2000

export interface AppExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** `code`, or 128 + the signal's number when the app died of a signal (137 after SIGKILL). */
  readonly exitCode: number
}

export interface SupervisorOptions {
  readonly command: string
  readonly args: readonly string[]
  /** Added over the sidecar's own environment. */
  readonly env?: NodeJS.ProcessEnv
  readonly logger: Logger
}

export interface Supervisor {
  /** The child's pid, which is also its process group id; undefined when it could not be spawned. */
  readonly pid: number | undefined
  /** Resolves once, when the child exits (on its own or after stop). Never rejects. */
  readonly exited: Promise<AppExit>
  /** The child was spawned and has not exited yet. */
  readonly running: boolean
  /** Sends `sig` to the child's whole process group (SIGHUP, SIGQUIT forwarding). No-op once it exited. */
  signal (sig: NodeJS.Signals): void
  /**
   * Sends `sig` to the group, SIGKILLs the group if the child or any other member is still alive
   * after `stopTimeoutMs`, and resolves with the child's exit. Idempotent: later calls get the
   * first call's promise.
   */
  stop (sig: NodeJS.Signals, stopTimeoutMs: number): Promise<AppExit>
}

/** The shell convention: the exit code, or 128 + n for death by signal n. */
function exitCodeOf (code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  if (signal !== null) return 128 + (constants.signals[signal] ?? 0)
  return 1
}

function delay (ms: number): { promise: Promise<void>, cancel (): void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<void>((resolve) => { timer = setTimeout(resolve, ms) })
  return { promise, cancel: () => { clearTimeout(timer) } }
}

/** `promise`'s value, or undefined when `ms` pass first. */
async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  const d = delay(ms)
  try {
    return await Promise.race([promise, d.promise.then(() => undefined)])
  } finally {
    d.cancel()
  }
}

/**
 * Linux: whether the group has a member that is not a zombie. kill(-pgid, 0) also counts
 * zombies nobody has reaped yet (an orphaned grandchild whose new parent, the container's PID 1,
 * may never reap it), and such a group would otherwise look alive until the SIGKILL.
 */
function hasLiveMember (pgid: number): boolean {
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return true
  }
  for (const name of entries) {
    const first = name.charCodeAt(0)
    if (first < 48 || first > 57) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1')
    } catch {
      continue // exited between readdir and read
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true
  }
  return false
}

/** Whether any process of group `pgid` can still run. */
function groupAlive (pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
  } catch (err) {
    // EPERM: members exist that we may not signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  return process.platform === 'linux' ? hasLiveMember(pgid) : true
}

/**
 * Starts `command args` as the leader of a new process group (detached), with stdio inherited so
 * the app's output reaches `fly logs` unchanged, and the sidecar's env plus `options.env`.
 * A command that cannot be started resolves `exited` with 127 (126 when not executable) and logs
 * SIDECAR_ERR_CHILD_SPAWN with the OS error as cause.
 */
export function superviseApp (options: SupervisorOptions): Supervisor {
  const { logger, command } = options
  let exit: AppExit | undefined
  let resolveExited: (exit: AppExit) => void = () => {}
  const exited = new Promise<AppExit>((resolve) => { resolveExited = resolve })
  let stopping: Promise<AppExit> | undefined
  let child: ChildProcess | undefined
  let pid: number | undefined

  function settle (value: AppExit): void {
    if (exit !== undefined) return
    exit = value
    resolveExited(value)
  }

  function spawnFailed (err: unknown): void {
    const errno = (err as NodeJS.ErrnoException).code
    const exitCode = errno === 'EACCES' ? 126 : 127
    const error = new SidecarError('SIDECAR_ERR_CHILD_SPAWN', [command, errno ?? (err as Error).message], { cause: err })
    logger.error({ err: error, exitCode }, 'app command could not be started')
    settle({ code: exitCode, signal: null, exitCode })
  }

  /** Signals the whole group; false when it is already gone or the OS refused. */
  function signalGroup (sig: NodeJS.Signals): boolean {
    if (pid === undefined) return false
    try {
      process.kill(-pid, sig)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
      const error = new SidecarError('SIDECAR_ERR_CHILD_SIGNAL', [sig, pid, (err as Error).message], { cause: err })
      logger.error({ err: error }, 'cannot signal the app process group')
      return false
    }
  }

  /**
   * After the leader exited: waits for the rest of its group until `deadline`, then SIGKILLs
   * what is left, so no worker or background job outlives the app.
   */
  async function reapGroup (pgid: number, deadline: number): Promise<void> {
    while (groupAlive(pgid)) {
      const left = deadline - Date.now()
      if (left <= 0) {
        logger.warn({ pgid }, 'processes of the app group still running: SIGKILL')
        signalGroup('SIGKILL')
        const until = Date.now() + KILL_WAIT_MS
        while (groupAlive(pgid) && Date.now() < until) await delay(GROUP_POLL_MS).promise
        return
      }
      await delay(Math.min(GROUP_POLL_MS, left)).promise
    }
  }

  async function stopGroup (pgid: number, sig: NodeJS.Signals, stopTimeoutMs: number): Promise<AppExit> {
    const deadline = Date.now() + stopTimeoutMs
    if (exit !== undefined && !groupAlive(pgid)) return exit
    logger.info({ pid: pgid, signal: sig, stopTimeoutMs }, 'stopping the app')
    signalGroup(sig)
    let result = await within(exited, stopTimeoutMs)
    if (result === undefined) {
      logger.warn({ pid: pgid, stopTimeoutMs }, 'app still running after the stop timeout: SIGKILL to its group')
      signalGroup('SIGKILL')
      result = await within(exited, KILL_WAIT_MS)
      if (result === undefined) {
        // Only when SIGKILL could not be delivered (EPERM) or the process is stuck in the kernel.
        logger.error({ pid: pgid }, 'app did not exit after SIGKILL: giving up on it')
        return { code: null, signal: 'SIGKILL', exitCode: 137 }
      }
    }
    await reapGroup(pgid, deadline)
    return result
  }

  try {
    child = spawn(command, [...options.args], {
      detached: true,
      stdio: 'inherit',
      env: { ...process.env, ...options.env },
    })
  } catch (err) {
    // Synchronous failures: arguments Node rejects (a NUL byte) or an exhausted system.
    spawnFailed(err)
  }

  if (child !== undefined) {
    pid = child.pid
    const spawned = child
    spawned.on('error', (err) => {
      // Without a pid the spawn itself failed (ENOENT, EACCES); otherwise it is informational.
      if (spawned.pid === undefined) spawnFailed(err)
      else logger.warn({ err }, 'app process error')
    })
    spawned.once('exit', (code, signal) => {
      const value = { code, signal, exitCode: exitCodeOf(code, signal) }
      logger.info({ pid, ...value }, 'app exited')
      settle(value)
      if (stopping === undefined && pid !== undefined) {
        const pgid = pid
        if (groupAlive(pgid)) {
          logger.warn({ pgid }, 'app exited leaving processes in its group: stopping them')
          stopping = stopGroup(pgid, 'SIGTERM', ORPHAN_GRACE_MS)
        }
      }
    })
    if (pid !== undefined) logger.info({ pid, command, args: options.args }, 'app started')
  }

  return {
    get pid () { return pid },
    exited,
    get running () { return pid !== undefined && exit === undefined },
    signal (sig) {
      if (pid === undefined || exit !== undefined) return
      signalGroup(sig)
    },
    stop (sig, stopTimeoutMs) {
      if (stopping === undefined) stopping = pid === undefined ? exited : stopGroup(pid, sig, stopTimeoutMs)
      return stopping
    },
  }
}
