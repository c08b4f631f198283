// The cases as the report shows them: each case's metrics, which way is better, how to print it.
import type { BenchParams } from './_config.ts'
import type { CaseSpec, MetricSpec } from './_report.ts'

/** Every metric the benchmark records; keys are those of the samples. */
export const M = {
  rps: { key: 'rps', label: 'req/s', better: 'high', digits: 0 },
  p50: { key: 'p50', label: 'p50 ms', better: 'low', digits: 2 },
  p99: { key: 'p99', label: 'p99 ms', better: 'low', digits: 2 },
  cpu: { key: 'cpu', label: 'CPU µs/req', better: 'low', digits: 1 },
  mibps: { key: 'mibps', label: 'MiB/s', better: 'high', digits: 0 },
  cpuGiB: { key: 'cpuGiB', label: 'CPU ms/GiB', better: 'low', digits: 0 },
  d50: { key: 'd50', label: 'chunk delay p50 ms', better: 'low', digits: 2, diff: true },
  d99: { key: 'd99', label: 'chunk delay p99 ms', better: 'low', digits: 2, diff: true },
  dmax: { key: 'dmax', label: 'chunk delay max ms', better: 'low', digits: 2, diff: true },
} as const satisfies Record<string, MetricSpec>

/** The table's row groups, in order. */
export function tableCases (params: BenchParams): CaseSpec[] {
  const c = params.connections
  return [
    { id: 'get64', label: `GET 100 B, ${c} conn`, metrics: [M.rps, M.p50, M.p99, M.cpu] },
    { id: 'get1', label: 'GET 100 B, 1 conn', metrics: [M.rps, M.p50, M.p99, M.cpu] },
    { id: 'post64', label: `POST 16 KiB JSON echo, ${c} conn`, metrics: [M.rps, M.p50, M.p99, M.cpu] },
    { id: 'big', label: 'GET 16 MiB, 1 conn', metrics: [M.mibps, M.cpuGiB] },
    { id: 'streams', label: `${params.streams} streams × ${params.streamChunks} chunks / ${params.streamIntervalMs} ms`, metrics: [M.d50, M.d99, M.dmax] },
    { id: 'replay', label: `Livewire 16 KiB POST → replay, ${c} conn (direct: app echo)`, directFrom: 'post64', metrics: [M.rps, M.p99, M.cpu] },
    { id: 'inspect', label: `Livewire 16 KiB POST inspected, no match → proxied, ${c} conn (direct: app echo)`, directFrom: 'post64', metrics: [M.rps, M.p99, M.cpu] },
    { id: 'rules100', label: `GET 100 B, ${c} conn, 100 rules (direct: GET 100 B)`, directFrom: 'get64', metrics: [M.rps, M.p99, M.cpu] },
  ]
}
