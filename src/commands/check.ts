// `fly-replay-sidecar check [--config FILE]`: validate a config as the sidecar would load it and
// print every problem with file:line:column (exit 1), or a short summary of what it will do (exit 0).
import { formatDuration, formatSize } from '../config/units.ts'
import type { Config, PoolConfig } from '../config/types.ts'
import type { Routing } from '../request-handler.ts'
import { configOption, loadForCommand, problemReport, type CommandIo } from './_config.ts'

export const CHECK_USAGE = `usage: fly-replay-sidecar check [--config FILE]

Validates the config (default $SIDECAR_CONFIG, else config/routes.yaml) with the environment's
\${VAR} values, prints every problem as file:line:column: key: message, and exits 1 if there is
any (2 for a usage error). A valid file gets a summary of its pools and rules.`

function describePool (p: PoolConfig): string {
  if (p.app !== undefined) return `${p.name} (Fly app ${p.app}: fly-replay app=${p.app}, no token needed; oversize ${p.oversize})`
  const rest = `autostop ${p.autostop}, oversize ${p.oversize}, unavailable ${p.unavailable}`
  if (p.elastic === undefined) return `${p.name} (size ${p.size}, ${rest})`
  const e = p.elastic
  const concurrency = e.concurrency === undefined ? 'no concurrency limit' : `concurrency ${e.concurrency}`
  return `${p.name} (elastic: min ${e.min}, max ${e.max}, ${concurrency}, destroy-after ${formatDuration(e.destroyAfterMs)}; ${rest})`
}

function summary (file: string, routing: Routing): string {
  const c: Config = routing.config
  const lines = [`${file}: ok`]
  const metrics = c.metrics === null ? 'off' : `${c.metrics.host}:${c.metrics.port}${c.metrics.path}`
  lines.push(`  listen ${c.listen.host}:${c.listen.port} -> app ${c.app.url}; health ${c.health.path}; metrics ${metrics}`)
  const pools = Object.values(c.pools)
  lines.push(pools.length === 0
    ? '  pools: none (every request is served by the Machine that receives it)'
    : `  pools: ${pools.map(describePool).join(', ')}`)
  if (routing.rules.rules.length === 0) {
    lines.push('  rules: none (every request goes to the app pool)')
  } else {
    lines.push('  rules, first match wins:')
    routing.rules.rules.forEach((r, i) => {
      const body = r.bodyKind === null ? '' : `; buffers ${r.bodyKind === 'json' ? 'JSON' : 'form'} bodies up to ${formatSize(c.inspect.maxBodyBytes)}`
      lines.push(`    ${i + 1}. ${r.name} (line ${r.line}) -> ${r.to}${body}`)
    })
  }
  return `${lines.join('\n')}\n`
}

/** Runs `check`; resolves with the exit code (0 valid, 1 problems, 2 usage). */
export async function runCheck (argv: readonly string[], io: CommandIo): Promise<number> {
  let config: string | undefined
  for (let i = 0; i < argv.length;) {
    const a = argv[i] as string
    if (a === '--help' || a === '-h') {
      io.stdout.write(`${CHECK_USAGE}\n`)
      return 0
    }
    const opt = configOption(argv, i)
    if (opt !== undefined && 'error' in opt) {
      io.stderr.write(`fly-replay-sidecar check: ${opt.error}\n${CHECK_USAGE}\n`)
      return 2
    }
    if (opt !== undefined) {
      config = opt.value
      i = opt.next
    } else if (!a.startsWith('-') && config === undefined) {
      // `check path/to/routes.yaml` reads as naturally as `--config`.
      config = a
      i++
    } else {
      io.stderr.write(`fly-replay-sidecar check: unknown argument: ${a}\n${CHECK_USAGE}\n`)
      return 2
    }
  }

  const loaded = await loadForCommand(config)
  if (!loaded.ok) {
    io.stdout.write(problemReport(loaded.problems))
    return 1
  }
  io.stdout.write(summary(loaded.file, loaded.routing))
  return 0
}
