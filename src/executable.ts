// Entry of the single executable that scripts/bundle.ts builds: fixes the allocator's settings,
// which glibc reads only when the process starts, then runs the CLI.
import { isSea } from 'node:sea'

/**
 * glibc settings the sidecar runs with (docs/performance.md, "Memory and start-up"). A proxy's
 * buffers are allocated on one thread and freed by V8's background threads; with glibc's default
 * of 8 arenas per core, memory freed after a burst of large responses stays in per-thread arenas:
 * MALLOC_ARENA_MAX=2 cut one post-load RSS from 208 to 151 MiB. What still stayed was the main
 * arena, holed by 64 KiB stream buffers that glibc cannot give back while anything lives above
 * them: with MALLOC_MMAP_THRESHOLD_=65536 each such buffer is its own mapping, returned when freed
 * (anonymous memory 20 s after a load: 50 instead of 64 MiB).
 */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536' }

/** Set in the re-executed process only; names the variables it set so it can drop them again. */
export const REEXEC_MARK = 'FLY_REPLAY_SIDECAR_SET_ENV'

/** Commands that end in a moment: a re-exec would cost them a second Node start for nothing. */
const SHORT_COMMANDS: ReadonlySet<string> = new Set(['check', 'explain', 'dev', 'help', '--help', '-h', '--version', '-v'])

/**
 * The environment to re-execute with, or undefined when this process needs no re-exec: it is the
 * re-executed one, the user set every variable (their choice wins), or `argv` (the arguments
 * after the executable) names a short-lived command rather than the proxy.
 */
export function reexecEnv (env: NodeJS.ProcessEnv, argv: readonly string[] = []): NodeJS.ProcessEnv | undefined {
  if (env[REEXEC_MARK] !== undefined) return undefined
  if (argv[0] !== undefined && SHORT_COMMANDS.has(argv[0])) return undefined
  const missing = Object.keys(ALLOCATOR_ENV).filter((name) => env[name] === undefined)
  if (missing.length === 0) return undefined
  const next: NodeJS.ProcessEnv = { ...env, [REEXEC_MARK]: missing.join(',') }
  for (const name of missing) next[name] = ALLOCATOR_ENV[name]
  return next
}

/**
 * The variables the re-exec set, to remove from this process's environment: they are for the
 * sidecar alone, and the app it starts (a Ruby or Python runtime) must get the user's environment
 * unchanged.
 */
export function ownVariables (env: NodeJS.ProcessEnv): string[] {
  const mark = env[REEXEC_MARK]
  if (mark === undefined) return []
  return [REEXEC_MARK, ...mark.split(',').filter((name) => Object.hasOwn(ALLOCATOR_ENV, name))]
}

// The executable; or its JavaScript run by a plain `node` (bench/run.ts), where the user's
// command line decides the environment and flags.
const asBundle = /(?:^|[/\\])fly-replay-sidecar\.cjs$/.test(process.argv[1] ?? '')
if (isSea() || asBundle) {
  const next = isSea() ? reexecEnv(process.env, process.argv.slice(2)) : undefined
  if (next !== undefined && process.execve !== undefined) {
    // execve(2): the same pid (the sidecar is often PID 1), stdio and arguments, a fresh glibc.
    process.execve(process.execPath, [process.execPath, ...process.argv.slice(2)], next)
  }
  for (const name of ownVariables(process.env)) delete process.env[name]
  // Loaded only now: nothing of the sidecar runs twice when the process re-executes.
  void import('./cli.ts').then(({ runCli }) => { runCli(process.argv.slice(2)) })
}
