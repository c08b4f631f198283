// Turns the rounds' samples into the Markdown report: one table (rows = cases and metrics,
// columns = targets with their ratio to direct, then the sidecar against nginx, the plain proxy
// and the node:http + undici floor) and the goals, each met or not.

/** How a metric reads: which way is better, how to print it. */
export interface MetricSpec {
  readonly key: string
  readonly label: string
  readonly better: 'high' | 'low'
  readonly digits: number
  /** Compare the sidecar to peers by difference (ms) instead of ratio. */
  readonly diff?: boolean
}

/** The targets the sidecar is compared to in the last columns, in order. */
export const SIDECAR_PEERS = ['nginx', 'http-proxy', 'node-floor'] as const

/** A row group of the table: one case and the metrics it reports. */
export interface CaseSpec {
  readonly id: string
  readonly label: string
  readonly metrics: readonly MetricSpec[]
  /** The direct column shows this case's direct figures (for cases only the sidecar runs). */
  readonly directFrom?: string
}

/** samples[case][target][metric] = one value per round. */
export type Samples = Record<string, Record<string, Record<string, number[]>>>

export interface Summary { best: number, median: number, spread: number, n: number }

/** Best, median and spread ((max - min) / median) of one metric's rounds. */
export function summarize (values: readonly number[], better: 'high' | 'low'): Summary | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = v.length >> 1
  const median = v.length % 2 === 1 ? v[mid] as number : ((v[mid - 1] as number) + (v[mid] as number)) / 2
  const min = v[0] as number
  const max = v[v.length - 1] as number
  return { best: better === 'high' ? max : min, median, spread: median === 0 ? 0 : (max - min) / median, n: v.length }
}

function num (x: number, digits: number): string {
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function cell (s: Summary | null, m: MetricSpec): string {
  if (s === null) return '—'
  if (s.n === 1) return num(s.best, m.digits)
  return `${num(s.best, m.digits)} / ${num(s.median, m.digits)} ±${Math.round(s.spread * 100)}%`
}

function ratio (a: Summary | null, b: Summary | null): string {
  if (a === null || b === null || b.best === 0) return '—'
  return `${(a.best / b.best).toFixed(2)}×`
}

function diff (a: Summary | null, b: Summary | null, digits: number): string {
  if (a === null || b === null) return '—'
  const d = a.best - b.best
  return `${d >= 0 ? '+' : '−'}${num(Math.abs(d), digits)} ms`
}

/** Looks up one metric's summary. */
export function get (samples: Samples, caseId: string, target: string, m: MetricSpec): Summary | null {
  return summarize(samples[caseId]?.[target]?.[m.key] ?? [], m.better)
}

/**
 * The results table. `peers` are the non-sidecar targets in column order; `status` holds a
 * target's failure (shown instead of figures).
 */
export function renderTable (opts: {
  cases: readonly CaseSpec[]
  samples: Samples
  peers: readonly string[]
  sidecar: string
  status: Readonly<Record<string, string>>
  extraRows?: readonly string[][]
}): string {
  const targets = [...opts.peers, opts.sidecar]
  const head = ['case', 'metric (best / median ±spread)']
  for (const t of targets) head.push(...(t === 'direct' ? [t] : [t, '×direct']))
  for (const peer of SIDECAR_PEERS) head.push(`sidecar ÷ ${peer}`)
  const rows: string[][] = []
  for (const c of opts.cases) {
    for (const m of c.metrics) {
      const row = [c.label, `${m.label}${m.better === 'high' ? ' ↑' : ' ↓'}`]
      const directCase = c.directFrom ?? c.id
      const direct = get(opts.samples, directCase, 'direct', m)
      const vals: Record<string, Summary | null> = {}
      for (const t of targets) {
        const s = get(opts.samples, t === 'direct' ? directCase : c.id, t, m)
        vals[t] = s
        const failed = opts.status[t]
        row.push(failed !== undefined && s === null ? `failed` : cell(s, m))
        if (t !== 'direct') row.push(m.diff === true ? diff(s, direct, m.digits) : ratio(s, direct))
      }
      const sc = vals[opts.sidecar] ?? null
      for (const peer of SIDECAR_PEERS) {
        const p = vals[peer] ?? null
        row.push(m.diff === true ? diff(sc, p, m.digits) : ratio(sc, p))
      }
      rows.push(row)
    }
  }
  for (const r of opts.extraRows ?? []) rows.push(r)
  const lines = [head, head.map(() => '---'), ...rows]
  return lines.map((l) => `| ${l.join(' | ')} |`).join('\n')
}

/** One of the goals and how this run measured up. */
export interface Goal {
  readonly goal: string
  readonly measured: string
  /** null when it could not be measured in this run. */
  readonly met: boolean | null
}

/** The goals list as Markdown. */
export function renderGoals (goals: readonly Goal[]): string {
  const lines = ['| goal | measured (best rounds) | met |', '|---|---|---|']
  for (const g of goals) lines.push(`| ${g.goal} | ${g.measured} | ${g.met === null ? 'not measured' : g.met ? 'yes' : '**no**'} |`)
  return lines.join('\n')
}
