// The goals of issue #12 (and two kept from issue #5), each judged on ratios taken in this one run: best rounds against best
// rounds, with the medians' ratio beside it so a lucky round shows.
import { M } from './_cases.ts'
import { get, type Goal, type MetricSpec, type Samples } from './_report.ts'

const MiB = 2 ** 20

/** Memory figures of the run, in bytes. */
export interface MemoryFigures {
  readonly fresh: Readonly<Record<string, number>>
  readonly peak: Readonly<Record<string, number>>
  readonly idle: Readonly<Record<string, { rss: number, perStream: number }>>
  /** RSS growth per slow download (a client that stopped reading), by column. */
  readonly slow: Readonly<Record<string, number>>
}

function signed (x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(2)}`
}

function n (x: number, digits = 0): string {
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Every goal, met or not, or not measured when a side is missing. */
export function computeGoals (samples: Samples, mem: MemoryFigures): Goal[] {
  const pair = (m: MetricSpec, a: [string, string], b: [string, string]) => {
    const sa = get(samples, a[0], a[1], m)
    const sb = get(samples, b[0], b[1], m)
    return sa === null || sb === null ? null : { a: sa, b: sb }
  }
  /** a / b at least `min` (throughput). */
  const atLeast = (goal: string, min: number, m: MetricSpec, a: [string, string], b: [string, string], what: string, digits = 0, aside = ''): Goal => {
    const p = pair(m, a, b)
    if (p === null) return { goal, measured: 'not measured', met: null }
    const r = p.a.best / p.b.best
    return { goal, measured: `${r.toFixed(2)}× ${what} (${n(p.a.best, digits)} vs ${n(p.b.best, digits)}; medians ${(p.a.median / p.b.median).toFixed(2)}×)${aside}`, met: r >= min }
  }
  /** The same ratio for node-floor, the bare stack: how much of a gap the stack itself leaves. */
  const floorToo = (m: MetricSpec, caseId: string, peer: string): string => {
    const p = pair(m, [caseId, 'node-floor'], [caseId, peer])
    return p === null ? '' : `; node-floor: ${(p.a.best / p.b.best).toFixed(2)}× ${peer}`
  }
  /** a / b at most `max` (cost). */
  const atMost = (goal: string, max: number, m: MetricSpec, a: [string, string], b: [string, string], what: string, unit: string, aside = ''): Goal => {
    const p = pair(m, a, b)
    if (p === null) return { goal, measured: 'not measured', met: null }
    const r = p.a.best / p.b.best
    return { goal, measured: `${r.toFixed(2)}× ${what} (${n(p.a.best, 1)} vs ${n(p.b.best, 1)} ${unit}; medians ${(p.a.median / p.b.median).toFixed(2)}×)${aside}`, met: r <= max }
  }
  const streams = ((): Goal => {
    const goal = 'Streams: sidecar chunk delay p99 ≤ nginx p99 + 0.5 ms'
    const p = pair(M.d99, ['streams', 'sidecar'], ['streams', 'nginx'])
    if (p === null) return { goal, measured: 'not measured', met: null }
    const d = p.a.best - p.b.best
    const f = pair(M.d99, ['streams', 'node-floor'], ['streams', 'nginx'])
    const floor = f === null ? '' : `; node-floor: ${signed(f.a.best - f.b.best)} ms`
    return { goal, measured: `${p.a.best.toFixed(2)} ms vs ${p.b.best.toFixed(2)} ms (${signed(d)} ms; medians ${(p.a.median - p.b.median).toFixed(2)} ms)${floor}`, met: d <= 0.5 }
  })()
  const fresh = (col: string): string => mem.fresh[col] === undefined ? '?' : (mem.fresh[col] / MiB).toFixed(1)
  const peak = mem.peak.sidecar
  const perStream = mem.idle.sidecar?.perStream
  const perSlow = mem.slow.sidecar
  return [
    atMost('GET 100 B ×64: sidecar CPU/request ≤ 1.5× nginx', 1.5, M.cpu, ['get64', 'sidecar'], ['get64', 'nginx'], 'nginx', 'µs', floorToo(M.cpu, 'get64', 'nginx')),
    atLeast('GET 100 B ×64: sidecar req/s ≥ 0.75× nginx', 0.75, M.rps, ['get64', 'sidecar'], ['get64', 'nginx'], 'nginx', 0, floorToo(M.rps, 'get64', 'nginx')),
    atLeast('POST 16 KiB ×64: sidecar req/s ≥ 0.8× nginx', 0.8, M.rps, ['post64', 'sidecar'], ['post64', 'nginx'], 'nginx', 0, floorToo(M.rps, 'post64', 'nginx')),
    atLeast('GET 16 MiB: sidecar MiB/s ≥ 0.9× nginx', 0.9, M.mibps, ['big', 'sidecar'], ['big', 'nginx'], 'nginx', 0, floorToo(M.mibps, 'big', 'nginx')),
    streams,
    atLeast('Livewire replay answers: req/s ≥ the app echoing that body directly', 1, M.rps, ['replay', 'sidecar'], ['post64', 'direct'], 'direct echo'),
    atLeast('Inspected, not matching: ≥ 0.9× the sidecar\'s pass-through POST', 0.9, M.rps, ['inspect', 'sidecar'], ['post64', 'sidecar'], 'pass-through POST'),
    atLeast('100 rules: ≥ 0.95× 1 rule (GET 100 B ×64; issue #5)', 0.95, M.rps, ['rules100', 'sidecar'], ['get64', 'sidecar'], '1 rule'),
    peak === undefined
      ? { goal: 'Sidecar peak RSS under these loads ≤ 100 MiB', measured: 'not measured', met: null }
      : { goal: 'Sidecar peak RSS under these loads ≤ 100 MiB', measured: `${(peak / MiB).toFixed(1)} MiB; a fresh process: ${fresh('sidecar')} MiB (node-floor ${fresh('node-floor')}, http-proxy ${fresh('http-proxy')})`, met: peak <= 100 * MiB },
    perSlow === undefined
      ? { goal: 'Sidecar memory held per slow download ≤ 256 KiB', measured: 'not measured', met: null }
      : { goal: 'Sidecar memory held per slow download ≤ 256 KiB', measured: `${(perSlow / 1024).toFixed(1)} KiB of RSS growth per download${mem.slow.nginx === undefined ? '' : ` (nginx ${(mem.slow.nginx / 1024).toFixed(1)} KiB)`}`, met: perSlow <= 256 * 1024 },
    perStream === undefined
      ? { goal: 'Sidecar RSS per idle open stream < 60 KiB (issue #5)', measured: 'not measured', met: null }
      : { goal: 'Sidecar RSS per idle open stream < 60 KiB (issue #5)', measured: `${(perStream / 1024).toFixed(1)} KiB`, met: perStream < 60 * 1024 },
  ]
}
