// The app as a child process in its own process group (contract §2): signals go to the whole
// group so a server's workers and grandchildren stop with it (`php artisan serve` runs `php -S`
// as its child), and on Linux also to every process that left the group but carries the app's
// mark (src/app-processes.ts: `php-fpm -D` calls setsid()); SIGKILL after the stop timeout, and
// nothing of the app is left behind; the exit code is the child's, or 128+n when signal n killed
// it. No process-wide signal handlers and no process.exit here: src/sidecar.ts owns those.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, unlinkSync } from 'node:fs'
import { constants, tmpdir } from 'node:os'
import path from 'node:path'
import type { Logger } from 'pino'
import { SidecarError } from './errors.ts'
import { APP_MARK_VARIABLE, appMembers, readProcessTable, startTimeOf, type AppMark, type Member } from './app-processes.ts'
import { randomHex } from './random-hex.ts'

/** How often a stop looks whether the group still has live members (a /proc scan on Linux). */
const GROUP_POLL_MS = 50
/**
 * While the app runs, its members are looked up this often and remembered, so that a process
 * that loses every mark (see readProcessTable) is still stopped with the app.
 */
const TRACK_MS = 2000
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
  /** The app's whole environment (default: the sidecar's); the supervisor adds only its mark. */
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
  /** Sends `sig` to the app's processes: its group and those that left it (SIGQUIT forwarding). No-op once it exited. */
  signal (sig: NodeJS.Signals): void
  /**
   * Sends `sig` to the app's processes, SIGKILLs them if the child or any other of them is still
   * alive after `stopTimeoutMs`, and resolves with the child's exit. Idempotent: later calls get the
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

/** Whether any process of group `pgid` can still run (where there is no /proc to look in). */
function groupAlive (pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
  } catch (err) {
    // EPERM: members exist that we may not signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  return true
}

const useProc = process.platform === 'linux'

/**
 * The marker file the app inherits on fd 3: created only to be held open, unlinked at once (a
 * process holding it shows `<path> (deleted)` in /proc). Undefined when it cannot be created (a
 * read-only tmp): the environment mark and the group remain.
 */
function openMarkFile (): { fd: number, targets: string[] } | undefined {
  const file = path.join(tmpdir(), `fly-replay-sidecar-app-${process.pid}-${randomHex(6)}`)
  try {
    const fd = openSync(file, 'wx', 0o600)
    try { unlinkSync(file) } catch {}
    return { fd, targets: [`${file} (deleted)`, file] }
  } catch {
    return undefined
  }
}

/**
 * Starts `command args` as the leader of a new process group (detached), with stdio inherited so
 * the app's output reaches `fly logs` unchanged, with `options.env` (default: the sidecar's env)
 * plus the app's mark (APP_MARK_VARIABLE, and the marker file on fd 3 on Linux).
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
  const markFile = useProc ? openMarkFile() : undefined
  let mark: AppMark = {
    value: `${process.pid}.${randomHex(8)}`,
    fdTargets: markFile?.targets ?? [],
  }

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

  /** pid → start time of every member seen so far (Linux). */
  const seen = new Map<number, number>()

  /** The app's live processes (Linux); elsewhere its group, as one member, while it has any. */
  function members (pgid: number): Member[] {
    if (!useProc) return groupAlive(pgid) ? [{ pid: pgid, start: 0, inGroup: true }] : []
    const found = appMembers(readProcessTable(mark, seen), pgid, process.pid)
    seen.clear()
    for (const m of found) seen.set(m.pid, m.start)
    return found
  }

  function signalFailed (sig: NodeJS.Signals, target: number, err: unknown): void {
    const error = new SidecarError('SIDECAR_ERR_CHILD_SIGNAL', [sig, target, (err as Error).message], { cause: err })
    logger.error({ err: error }, 'cannot signal the app process group')
  }

  /** Signals the whole group; false when it is already gone or the OS refused. */
  function signalGroup (sig: NodeJS.Signals): boolean {
    if (pid === undefined) return false
    try {
      process.kill(-pid, sig)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') signalFailed(sig, pid, err)
      return false
    }
  }

  /** Signals the group and, one by one, the app's processes that left it (daemons). */
  function signalApp (pgid: number, sig: NodeJS.Signals, known?: readonly Member[]): void {
    signalGroup(sig)
    for (const m of known ?? members(pgid)) {
      if (m.inGroup) continue
      try {
        process.kill(m.pid, sig)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') signalFailed(sig, m.pid, err)
      }
    }
  }

  /**
   * After the leader exited: waits for the rest of the app until `deadline`, then SIGKILLs
   * what is left, so no worker, background job or daemon outlives the app.
   */
  async function reapRest (pgid: number, deadline: number): Promise<void> {
    for (let left = members(pgid); left.length > 0; left = members(pgid)) {
      const remaining = deadline - Date.now()
      if (remaining <= 0) {
        logger.warn({ pgid, pids: left.map((m) => m.pid) }, 'processes of the app still running: SIGKILL')
        signalApp(pgid, 'SIGKILL', left)
        const until = Date.now() + KILL_WAIT_MS
        for (let rest = members(pgid); rest.length > 0 && Date.now() < until; rest = members(pgid)) {
          signalApp(pgid, 'SIGKILL', rest) // children forked since the last look
          await delay(GROUP_POLL_MS).promise
        }
        return
      }
      await delay(Math.min(GROUP_POLL_MS, remaining)).promise
    }
  }

  async function stopApp (pgid: number, sig: NodeJS.Signals, stopTimeoutMs: number): Promise<AppExit> {
    const deadline = Date.now() + stopTimeoutMs
    const found = members(pgid)
    if (exit !== undefined && found.length === 0) return exit
    logger.info({ pid: pgid, signal: sig, stopTimeoutMs, processes: found.length }, 'stopping the app')
    signalApp(pgid, sig, found)
    let result = await within(exited, stopTimeoutMs)
    if (result === undefined) {
      logger.warn({ pid: pgid, stopTimeoutMs }, 'app still running after the stop timeout: SIGKILL to its group')
      signalApp(pgid, 'SIGKILL')
      result = await within(exited, KILL_WAIT_MS)
      if (result === undefined) {
        // Only when SIGKILL could not be delivered (EPERM) or the process is stuck in the kernel.
        logger.error({ pid: pgid }, 'app did not exit after SIGKILL: giving up on it')
        return { code: null, signal: 'SIGKILL', exitCode: 137 }
      }
    }
    await reapRest(pgid, deadline)
    return result
  }

  try {
    // The mark goes last: a process that writes its title over its environment block (php-fpm,
    // nginx) overwrites it from the front.
    const env = { ...(options.env ?? process.env) }
    delete env[APP_MARK_VARIABLE]
    env[APP_MARK_VARIABLE] = mark.value
    child = spawn(command, [...options.args], {
      detached: true,
      stdio: markFile === undefined ? 'inherit' : ['inherit', 'inherit', 'inherit', markFile.fd],
      env,
    })
  } catch (err) {
    // Synchronous failures: arguments Node rejects (a NUL byte) or an exhausted system.
    spawnFailed(err)
  } finally {
    // The app holds its own copy; the sidecar's would make the sidecar look like a member.
    if (markFile !== undefined) closeSync(markFile.fd)
  }

  if (child !== undefined) {
    pid = child.pid
    // Read at once: the app's first process is younger than every process that can carry its mark.
    const since = useProc && pid !== undefined ? startTimeOf(pid) : undefined
    if (since !== undefined) mark = { ...mark, since }
    const spawned = child
    spawned.on('error', (err) => {
      // Without a pid the spawn itself failed (ENOENT, EACCES); otherwise it is informational.
      if (spawned.pid === undefined) spawnFailed(err)
      else logger.warn({ err }, 'app process error')
    })
    const tracker = useProc && pid !== undefined
      ? setInterval((pgid: number) => { members(pgid) }, TRACK_MS, pid).unref()
      : undefined
    spawned.once('exit', (code, signal) => {
      clearInterval(tracker)
      const value = { code, signal, exitCode: exitCodeOf(code, signal) }
      logger.info({ pid, ...value }, 'app exited')
      settle(value)
      if (stopping === undefined && pid !== undefined) {
        const pgid = pid
        const left = members(pgid)
        if (left.length > 0) {
          logger.warn({ pgid, pids: left.map((m) => m.pid) }, 'app exited leaving processes behind: stopping them')
          stopping = stopApp(pgid, 'SIGTERM', ORPHAN_GRACE_MS)
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
      signalApp(pid, sig)
    },
    stop (sig, stopTimeoutMs) {
      if (stopping === undefined) stopping = pid === undefined ? exited : stopApp(pid, sig, stopTimeoutMs)
      return stopping
    },
  }
}
