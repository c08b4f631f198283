// Why a Machine served a request itself that a rule sends to a pool. The sidecar logs the
// decision (`request` line: decision local, reason, rule) and, before it, what went wrong with
// the Machines API (`machines` component warnings); `dev` hides the Machines' logs unless
// --verbose, so this reads them and says, in one line, what the user would otherwise not see:
// the request was not replayed, and why.

/** One JSON log line of a sidecar, as far as this module reads it. */
interface LogLine {
  readonly level?: unknown
  readonly msg?: unknown
  readonly component?: unknown
  readonly pool?: unknown
  readonly code?: unknown
  readonly err?: { readonly message?: unknown }
  readonly decision?: unknown
  readonly reason?: unknown
  readonly rule?: unknown
  readonly method?: unknown
  readonly url?: unknown
}

const PROBLEM_LEVELS = new Set(['warn', 'error', 'fatal', 40, 50, 60])
/** Served here although a rule names a pool (`same-pool`, `replayed`, `fallback` are expected, and the edge reports fallbacks). */
const NOT_REPLAYED = new Set(['unavailable', 'oversize', 'no-pool'])

function parse (line: string): LogLine | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const value: unknown = JSON.parse(line)
    return typeof value === 'object' && value !== null ? value as LogLine : undefined
  } catch {
    return undefined
  }
}

const text = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? v : undefined

/**
 * Returns a reader of Machines' log lines: for each line it returns the sentence `dev` prints,
 * or undefined. It remembers each Machine's last Machines API problem (per pool) to give as
 * the reason; a replay to that pool clears it. `poolOf` names the pool a rule sends to.
 */
export function localServeNotices (poolOf: (rule: string) => string | undefined): (machine: string, line: string) => string | undefined {
  const problems = new Map<string, Map<string, string>>()
  return (machine, line) => {
    const entry = parse(line)
    if (entry === undefined) return undefined
    let mine = problems.get(machine)
    if (entry.component === 'machines' && PROBLEM_LEVELS.has(entry.level as string)) {
      if (mine === undefined) { mine = new Map(); problems.set(machine, mine) }
      const why = text(entry.err?.message) ?? text(entry.code)
      mine.set(text(entry.pool) ?? '', `${String(entry.msg)}${why === undefined ? '' : `: ${why}`}`)
      return undefined
    }
    if (entry.msg !== 'request') return undefined
    const rule = text(entry.rule)
    const pool = rule === undefined ? undefined : poolOf(rule)
    if (entry.decision === 'replay' && pool !== undefined) { mine?.delete(pool); return undefined }
    const reason = text(entry.reason)
    if (entry.decision !== 'local' || rule === undefined || reason === undefined || !NOT_REPLAYED.has(reason)) return undefined
    const target = pool ?? '(a pool)'
    let why: string
    switch (reason) {
      case 'unavailable': {
        const problem = (pool === undefined ? undefined : mine?.get(pool)) ?? mine?.get('')
        why = `no ${target} Machine could be had, and the pool's unavailable is local: ${problem ?? 'run with --verbose to see the Machine\'s log'}`
        break
      }
      case 'oversize': why = `its body cannot be replayed (chunked, or over 1 MiB) and the pool's oversize is local`; break
      default: why = `pool ${target} is not in the config`
    }
    return `${String(entry.method)} ${String(entry.url)} served here, not replayed to pool ${target} (rule ${rule}): ${why}`
  }
}
