// The app as a child process in its own process group (contract §2): signals go to the whole
// group so a server's workers and grandchildren stop with it (`php artisan serve` spawns
// `php -S`, laravel/framework#49941); SIGKILL after the stop timeout; the exit code is the
// child's, or 128+n when a signal killed it. No process-wide handlers and no process.exit here:
// the sidecar wiring owns those.
import { spawn, type ChildProcess } from 'node:child_process'
import { constants } from 'node:os'
import type { Logger } from 'pino'
import { SidecarError } from './errors.ts'

/** What `exec` failures exit with in a shell: command not found. */
const EXIT_NOT_FOUND = 127
const EXIT_NOT_EXECUTABLE = 126

export interface AppExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** `code`, or 128 + the signal's number (137 after SIGKILL). */
  readonly exitCode: number
}

export interface SupervisorOptions {
  readonly command: string
  readonly args: readonly string[]
  readonly env?: NodeJS.ProcessEnv
  readonly logger: Logger
}

export interface Supervisor {
  readonly pid: number | undefined
  /** Resolves once, when the child has exited (on its own or after stop). */
  readonly exited: Promise<AppExit>
  readonly running: boolean
  /** Sends a signal to the child's whole process group. */
  signal (sig: NodeJS.Signals): void
  /** Signals the group, SIGKILLs it after stopTimeoutMs, resolves with the exit. Idempotent. */
  stop (sig: NodeJS.Signals, stopTimeoutMs: number): Promise<AppExit>
}

export function exitCodeOf (code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  if (signal !== null) return 128 + (constants.signals[signal] ?? 0)
  return 1
}

function killGroup (pid: number, sig: NodeJS.Signals, logger: Logger): void {
  try {
    process.kill(-pid, sig)
  } catch (err) {
    // ESRCH: the group is already gone, which is what we wanted.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') logger.warn({ err, pid, signal: sig }, 'cannot signal the app group')
  }
}

export function superviseApp (options: SupervisorOptions): Supervisor {
  const { logger } = options
  let child: ChildProcess
  let running = true
  let stopping: Promise<AppExit> | undefined
  let resolveExit: (exit: AppExit) => void = () => {}
  const exited = new Promise<AppExit>((resolve) => { resolveExit = resolve })

  const finish = (exit: AppExit): void => {
    if (!running) return
    running = false
    resolveExit(exit)
  }

  try {
    child = spawn(options.command, [...options.args], {
      // Its own process group: the group id is the child's pid, so -pid reaches every process
      // it starts unless one of them makes its own group.
      detached: true,
      stdio: 'inherit',
      env: { ...process.env, ...options.env },
    })
  } catch (err) {
    logger.error({ err: new SidecarError('SIDECAR_ERR_CHILD_SPAWN', [options.command, (err as Error).message], { cause: err }) }, 'cannot start the app')
    finish({ code: EXIT_NOT_FOUND, signal: null, exitCode: EXIT_NOT_FOUND })
    return { pid: undefined, exited, get running () { return running }, signal: () => {}, stop: async () => exited }
  }

  child.on('error', (err: NodeJS.ErrnoException) => {
    // Only spawn failures land here once the child runs; ENOENT/EACCES mean it never started.
    const exitCode = err.code === 'EACCES' ? EXIT_NOT_EXECUTABLE : EXIT_NOT_FOUND
    logger.error({ err: new SidecarError('SIDECAR_ERR_CHILD_SPAWN', [options.command, (err as Error).message], { cause: err }) }, 'cannot start the app')
    finish({ code: exitCode, signal: null, exitCode })
  })
  child.on('exit', (code, signal) => {
    const exit = { code, signal, exitCode: exitCodeOf(code, signal) }
    logger.info({ pid: child.pid, ...exit }, 'app exited')
    finish(exit)
  })
  if (child.pid !== undefined) logger.info({ pid: child.pid, command: options.command, args: options.args }, 'app started')

  const pid = child.pid

  function signal (sig: NodeJS.Signals): void {
    if (pid === undefined || !running) return
    killGroup(pid, sig, logger)
  }

  function stop (sig: NodeJS.Signals, stopTimeoutMs: number): Promise<AppExit> {
    if (stopping !== undefined) return stopping
    stopping = (async () => {
      if (pid === undefined || !running) return exited
      killGroup(pid, sig, logger)
      const timer = setTimeout(() => {
        logger.warn({ pid, stopTimeoutMs }, 'app did not stop in time: SIGKILL to its group')
        killGroup(pid, 'SIGKILL', logger)
      }, stopTimeoutMs)
      const exit = await exited
      clearTimeout(timer)
      // The leader may exit on the signal while workers it started linger (or ignore it):
      // whatever is left of the group goes too.
      killGroup(pid, 'SIGKILL', logger)
      return exit
    })()
    return stopping
  }

  return { pid, exited, get running () { return running }, signal, stop }
}
