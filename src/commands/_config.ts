// Shared by `check` and `explain`: load the config a command names and compile its rules exactly
// as the running sidecar does, turning every failure into `file:line:column: path: message` lines.
import path from 'node:path'
import { formatProblems, loadConfig, readFailure, resolveConfigPath, type ConfigProblem } from '../config/load.ts'
import { buildRouting, type Routing } from '../request-handler.ts'
import type { Config } from '../config/types.ts'
import { isSidecarError } from '../errors.ts'

/** The streams a command writes to (process.stdout/stderr, or a test's sinks). */
export interface CommandIo {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
}

export type LoadedConfig =
  | { readonly ok: true, readonly file: string, readonly routing: Routing }
  | { readonly ok: false, readonly file: string, readonly problems: readonly ConfigProblem[] }

/** The config path as the user would write it: relative to the working directory when inside it. */
function displayPath (absolute: string, cwd: string): string {
  const rel = path.relative(cwd, absolute)
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : absolute
}

/**
 * Loads `--config` (else SIDECAR_CONFIG, else config/routes.yaml) and compiles its rules. A file
 * that cannot be read, or a rule that cannot be compiled, comes back as a problem like any other.
 */
export async function loadForCommand (configArg: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): Promise<LoadedConfig> {
  const file = displayPath(resolveConfigPath(configArg, env), cwd)
  let config: Config
  try {
    config = await loadConfig(file, env)
  } catch (err) {
    if (!isSidecarError(err)) throw err
    const listed = err.details?.problems
    if (Array.isArray(listed)) return { ok: false, file, problems: listed as ConfigProblem[] }
    // No line or column: there is no text to point into.
    return { ok: false, file, problems: [{ file, line: 0, column: 0, path: '', message: `cannot read the file (${readFailure(err.cause)})` }] }
  }
  try {
    return { ok: true, file, routing: buildRouting(config) }
  } catch (err) {
    if (!isSidecarError(err) || err.code !== 'SIDECAR_ERR_RULE_COMPILE') throw err
    // The message names the rule and its line: "rule <name> (line <n>) cannot be compiled: ...".
    const index = config.rules.findIndex((r) => err.message.startsWith(`rule ${r.name} (line ${r.line})`))
    const rule = config.rules[index]
    return { ok: false, file, problems: [{ file, line: rule?.line ?? 1, column: 1, path: index === -1 ? 'rules' : `rules[${index}]`, message: err.message }] }
  }
}

/** Every problem, one per line, and a count. */
export function problemReport (problems: readonly ConfigProblem[]): string {
  const n = problems.length
  return `${formatProblems(problems)}\n${n} problem${n === 1 ? '' : 's'}\n`
}

/** Reads `--config FILE`, `-c FILE` or `--config=FILE` at argv[i]; returns the index consumed, or an error. */
export function configOption (argv: readonly string[], i: number): { value: string, next: number } | { error: string } | undefined {
  const a = argv[i] as string
  if (a.startsWith('--config=')) return { value: a.slice('--config='.length), next: i + 1 }
  if (a !== '--config' && a !== '-c') return undefined
  const v = argv[i + 1]
  if (v === undefined) return { error: `${a} needs a file` }
  return { value: v, next: i + 2 }
}
