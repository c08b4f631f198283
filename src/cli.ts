#!/usr/bin/env node
// Command line: argv → a command. The only module that calls process.exit.
//   fly-replay-sidecar [--config FILE] [-- app command...]
//   fly-replay-sidecar check [--config FILE]
//   fly-replay-sidecar explain [--config FILE] [-X METHOD] [-H 'Name: value']... [-d @body|-d text] PATH
//   fly-replay-sidecar dev [options]
import { readFileSync } from 'node:fs'
import { isSea } from 'node:sea'
import { isSidecarError } from './errors.ts'
import { configOption } from './commands/_config.ts'
import { suggest } from './suggest.ts'
import type { Config } from './config/types.ts'
import { MACHINE_ARG } from './emulator/machine.ts'

const USAGE = `usage:
  fly-replay-sidecar [--config FILE] [-- <app command> [args...]]
  fly-replay-sidecar check [--config FILE]
  fly-replay-sidecar explain [--config FILE] [-X METHOD] [-H 'Name: value']... [-d @body.json|-d 'text'] PATH
  fly-replay-sidecar dev [--help]          run the local Fly emulator with the demo app
  fly-replay-sidecar --version

The config file defaults to $SIDECAR_CONFIG, else config/routes.yaml. The app command runs
as given, without a shell: $VARS in it are not expanded (use sh -c '...' for that).`

const COMMANDS = ['check', 'explain', 'dev', 'help'] as const

interface Io { stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream }

/** Splits `[opts] -- cmd args` and reads --config; anything else is a usage error. */
export function parseRunArgs (argv: readonly string[]): { config: string | undefined, command: string[] } | { error: string } {
  const sep = argv.indexOf('--')
  const own = sep === -1 ? argv : argv.slice(0, sep)
  const command = sep === -1 ? [] : argv.slice(sep + 1)
  let config: string | undefined
  for (let i = 0; i < own.length;) {
    const opt = configOption(own, i)
    if (opt === undefined) {
      const arg = own[i] as string
      // A first word that is no option was meant as a command: `chek` → check.
      return { error: i === 0 && !arg.startsWith('-') ? `unknown command: ${arg}${suggest(arg, COMMANDS)}` : `unknown argument: ${arg}` }
    }
    if ('error' in opt) return opt
    config = opt.value
    i = opt.next
  }
  if (sep !== -1 && command.length === 0) return { error: 'nothing after --: give the app command' }
  return { config, command }
}

function version (): string {
  // Set by scripts/bundle.ts: the bundle has no package.json beside it.
  const bundled = (globalThis as { __SIDECAR_VERSION__?: string }).__SIDECAR_VERSION__
  if (bundled !== undefined) return bundled
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** Runs the sidecar; `adjust` changes the loaded config (and every reload) for an emulated Machine. */
async function run (argv: readonly string[], io: Io, adjust?: (config: Config, runsApp: boolean) => Config): Promise<number> {
  const parsed = parseRunArgs(argv)
  if ('error' in parsed) {
    io.stderr.write(`fly-replay-sidecar: ${parsed.error}\n${USAGE}\n`)
    return 2
  }
  // Loaded here, not at the top: --help, --version and the other commands never pay for the
  // config parser, the logger or the server.
  const { loadConfig, resolveConfigPath } = await import('./config/load.ts')
  const file = resolveConfigPath(parsed.config, process.env)
  let config
  try {
    config = await loadConfig(file, process.env)
    if (adjust !== undefined) config = adjust(config, parsed.command.length > 0)
  } catch (err) {
    if (isSidecarError(err)) {
      // The message lists every problem as file:line:column: path: message.
      io.stderr.write(`fly-replay-sidecar: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const [{ createLogger }, { startSidecar }] = await Promise.all([import('./log.ts'), import('./sidecar.ts')])
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'info' })
  const sidecar = await startSidecar({
    config,
    logger,
    ...(parsed.command.length > 0 ? { command: parsed.command } : {}),
    watchConfig: true,
    ...(adjust === undefined ? {} : { adjust: (c: Config) => adjust(c, parsed.command.length > 0) }),
  })
  const onStop = (signal: NodeJS.Signals): void => { void sidecar.shutdown(signal) }
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  process.on('SIGQUIT', () => { sidecar.forward('SIGQUIT') })
  // SIGHUP reloads the sidecar's rules and is not passed on: to the servers it would reach it
  // means "reload" (nginx, gunicorn), "stop" (Puma without stdout_redirect, php-fpm, Node) or
  // nothing, and an app that stops on it stops the sidecar (docs/supervision.md#signals).
  process.on('SIGHUP', () => { void sidecar.reload() })
  return sidecar.done
}

export async function main (argv: readonly string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [first, ...rest] = argv
  switch (first) {
    case 'check': {
      const { runCheck } = await import('./commands/check.ts')
      return runCheck(rest, io)
    }
    case 'explain': {
      const { runExplain } = await import('./commands/explain.ts')
      return runExplain(rest, io)
    }
    case 'dev': {
      if (rest[0] === MACHINE_ARG) {
        // How `dev` starts each emulated Machine's sidecar: the file's config with that Machine's ports.
        const { emulatedConfig } = await import('./emulator/machine.ts')
        return run(rest.slice(1), io, (config, runsApp) => emulatedConfig(config, process.env, runsApp))
      }
      const { main: dev } = await import('./emulator/dev.ts')
      return dev(rest)
    }
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(`${USAGE}\n`)
      return 0
    case '--version':
    case '-v':
      io.stdout.write(`${version()}\n`)
      return 0
    default:
      return run(argv, io)
  }
}

/** Runs the CLI and exits with its code: the only caller of process.exit. */
export function runCli (argv: readonly string[]): void {
  main(argv).then((code) => { process.exit(code) }, (err: unknown) => {
    const msg = isSidecarError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)
    process.stderr.write(`fly-replay-sidecar: ${msg}\n`)
    process.exit(1)
  })
}

// Run when executed (node src/cli.ts, the npm bin bin/fly-replay-sidecar.js), not when imported by
// tests; the single executable runs it from src/executable.ts, whatever the file is named.
const entry = process.argv[1]
if (!isSea() && entry !== undefined && /(?:^|[/\\])(?:cli\.[jt]s|fly-replay-sidecar(?:\.m?js)?)$/.test(entry)) runCli(process.argv.slice(2))
