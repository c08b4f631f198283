// Running the docs' shell commands as a user would: the commands of a page's ```sh blocks, a
// scratch copy of this checkout as `npm ci` leaves it (no dist/, nothing built), a user's PATH,
// and a spawned command's output, exit and process group.
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** The commands of every ```sh block of a page: continuation lines joined, comments dropped. */
export function shellCommands (markdown: string): string[] {
  const out: string[] = []
  for (const m of markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    const joined = (m[1] as string).replace(/\\\n\s*/g, '')
    for (const line of joined.split('\n')) {
      const command = withoutComment(line).trim()
      if (command !== '') out.push(command)
    }
  }
  return out
}

/** A line without its `# comment` (a `#` that starts a word outside quotes). */
function withoutComment (line: string): string {
  let quote = ''
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string
    if (quote !== '') { if (c === quote) quote = ''; continue }
    if (c === "'" || c === '"') quote = c
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1] as string))) return line.slice(0, i)
  }
  return line
}

/**
 * A copy of what a clone holds that the commands use, with this checkout's node_modules linked
 * in as `npm ci` made it. Nothing is built: there is no dist/.
 */
export function scratchCheckout (into: string): string {
  for (const entry of ['bin', 'src', 'config', 'examples', 'schema', 'package.json', 'package-lock.json', 'tsconfig.json']) {
    cpSync(path.join(ROOT, entry), path.join(into, entry), { recursive: true })
  }
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(into, 'node_modules'))
  return into
}

export function scratchDir (prefix: string): { dir: string, remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * A user's environment: their PATH without this checkout's node_modules/.bin (which `npm test`
 * puts first), so `node` is whatever Node the machine has; npm offline with its own cache, so
 * nothing reaches the network and npx's cache lives in the scratch directory.
 */
export function userEnv (scratch: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const PATH = (process.env.PATH ?? '').split(path.delimiter).filter((p) => !p.includes(`${path.sep}node_modules${path.sep}`)).join(path.delimiter)
  const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, PATH, npm_config_cache: path.join(scratch, '.npm'), npm_config_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false' }
  return { ...env, ...extra }
}

export interface Spawned {
  readonly child: ChildProcess
  out: () => string
  readonly exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Resolves with the first match of `pattern` in the output (stdout and stderr), or rejects after `ms`. */
  waitFor: (pattern: RegExp, ms: number) => Promise<RegExpExecArray>
}

/**
 * Runs a command line with sh in its own process group, as a terminal's shell runs a job. A
 * simple command (not a builtin) is exec'd, so the group's leader is the command itself, as in a terminal,
 * where a Ctrl-C does not end the interactive shell.
 */
export function runShell (command: string, cwd: string, env: NodeJS.ProcessEnv): Spawned {
  const simple = !/&&|\|\||;|\||^\(|^cd /.test(command)
  const child = spawn('sh', ['-c', simple ? `exec ${command}` : command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  const waiters = new Set<() => void>()
  const onData = (s: string): void => { out += s; for (const w of waiters) w() }
  child.stdout.setEncoding('utf8').on('data', onData)
  child.stderr.setEncoding('utf8').on('data', onData)
  const exit = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { for (const w of waiters) w(); resolve({ code, signal }) })
  })
  const waitFor = (pattern: RegExp, ms: number): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const check = (): void => {
      const m = pattern.exec(out)
      if (m !== null) { done(); resolve(m); return }
      if (child.exitCode !== null || child.signalCode !== null) { done(); reject(new Error(`exited before ${String(pattern)}:\n${out}`)) }
    }
    const timer = setTimeout(() => { done(); reject(new Error(`no ${String(pattern)} within ${ms} ms:\n${out}`)) }, ms)
    const done = (): void => { clearTimeout(timer); waiters.delete(check) }
    waiters.add(check)
    check()
  })
  return { child, out: () => out, exit, waitFor }
}

/** Signals a spawned command's whole process group, as Ctrl-C in its terminal would. */
export function signalGroup (s: Spawned, signal: NodeJS.Signals): void {
  try { process.kill(-(s.child.pid as number), signal) } catch { /* already gone */ }
}

export const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8')
