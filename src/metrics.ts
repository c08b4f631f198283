// Prometheus metrics: the sidecar's own counters, gauges and histograms in a private prom-client
// Registry (plus Node's default process metrics), served on a separate port by node:http.
import http from 'node:http'
// Two files of prom-client, not its index: see src/prom-client-parts.d.ts.
import Registry from 'prom-client/lib/registry.js'
import collectDefaultMetrics from 'prom-client/lib/defaultMetrics.js'
import type { Metric } from 'prom-client'
import type { Logger } from 'pino'
import { SidecarError } from './errors.ts'
import type { PoolMachineSnapshot } from './machines/types.ts'

export type Decision = 'local' | 'replay' | 'elsewhere' | 'forward' | 'reject'
const DECISIONS: readonly Decision[] = ['local', 'replay', 'elsewhere', 'forward', 'reject']

const PREFIX = 'fly_replay_sidecar_'

/** Seconds: a local decision takes microseconds; a replay may wait for a Machine to be created. */
const DECISION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** Bytes: up to the 1 MiB replay limit and a little past it (`inspect.max-body` may be larger). */
const BODY_BUCKETS = [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216]
/** Seconds: Machines API calls, up to a 60 s `wait`. */
const MACHINES_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export interface SidecarMetrics {
  readonly registry: Registry
  /** One request decided; `rule` is the matched rule's name, `''` when none matched. */
  decision (decision: Decision, rule: string, seconds: number): void
  /** A request body was buffered for body rules. */
  bodyInspected (bytes: number): void
  /** A request to the app or a pool Machine failed; `code` is the SIDECAR_ERR_* or network code. */
  upstreamError (code: string): void
  /** A proxied response stream opened (+1) or ended (-1). */
  stream (delta: 1 | -1): void
  /** A WebSocket tunnel opened (+1) or closed (-1). */
  websocket (delta: 1 | -1): void
  /** One Machines API call: `op` (list, get, create, wait, destroy...) and its outcome. */
  machinesCall (op: string, outcome: string, seconds: number): void
  poolMachineCreated (pool: string): void
  poolMachineReplaced (pool: string): void
  /** An elastic pool at `max` with every Machine at `concurrency`: the request went to the least-loaded one anyway. */
  poolOverflow (pool: string): void
  /** An elastic pool destroyed a Machine beyond `min` after `destroy-after`. */
  poolMachineScaledDown (pool: string): void
  /**
   * Where the pool_machines gauge reads each pool's Machines and states, at scrape time only
   * (the pools keep them from their list and get calls anyway).
   */
  readPoolMachines (read: () => readonly PoolMachineSnapshot[]): void
}

type Labels = Readonly<Record<string, string>>

/** A value with its labels, read at scrape time. */
interface Cell { readonly labels: Labels, value: number }

/**
 * A counter or gauge whose series are plain cells. Callers keep the cell of each label set they
 * use, so an increment is a property write: prom-client's own `labels()` children hash their
 * labels into a string on every call, which the request path should not pay for.
 */
class CellFamily {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge'
  readonly aggregator = 'sum'
  readonly cells: Cell[] = []

  constructor (name: string, help: string, type: 'counter' | 'gauge') {
    this.name = name
    this.help = help
    this.type = type
  }

  add (labels: Labels): Cell {
    const cell = { labels, value: 0 }
    this.cells.push(cell)
    return cell
  }

  get (): { name: string, help: string, type: string, aggregator: string, values: { labels: Labels, value: number }[] } {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.cells.map((c) => ({ labels: c.labels, value: c.value })) }
  }

  reset (): void {
    for (const c of this.cells) c.value = 0
  }
}

/** One histogram series: per-bucket counts kept non-cumulative, summed at scrape time. */
class HistogramCell {
  readonly labels: Labels
  readonly counts: Float64Array
  sum = 0
  count = 0
  private readonly bounds: readonly number[]

  constructor (labels: Labels, bounds: readonly number[]) {
    this.labels = labels
    this.bounds = bounds
    this.counts = new Float64Array(bounds.length)
  }

  observe (value: number): void {
    this.sum += value
    this.count++
    const bounds = this.bounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) { this.counts[i]!++; return }
    }
  }
}

class HistogramFamily {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly cells: HistogramCell[] = []
  private readonly bounds: readonly number[]

  constructor (name: string, help: string, bounds: readonly number[]) {
    this.name = name
    this.help = help
    this.bounds = bounds
  }

  add (labels: Labels): HistogramCell {
    const cell = new HistogramCell(labels, this.bounds)
    this.cells.push(cell)
    return cell
  }

  get (): { name: string, help: string, type: string, aggregator: string, values: { metricName: string, labels: Record<string, string>, value: number }[] } {
    const values: { metricName: string, labels: Record<string, string>, value: number }[] = []
    for (const cell of this.cells) {
      let acc = 0
      for (let i = 0; i < this.bounds.length; i++) {
        acc += cell.counts[i] as number
        values.push({ metricName: `${this.name}_bucket`, labels: { ...cell.labels, le: String(this.bounds[i]) }, value: acc })
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { ...cell.labels, le: '+Inf' }, value: cell.count })
      values.push({ metricName: `${this.name}_sum`, labels: { ...cell.labels }, value: cell.sum })
      values.push({ metricName: `${this.name}_count`, labels: { ...cell.labels }, value: cell.count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const c of this.cells) { c.counts.fill(0); c.sum = 0; c.count = 0 }
  }
}

/**
 * `pool_machines{pool, state}`: counted from the pools' own view when scraped, so the request
 * path pays nothing and a state nobody is in any more has no series left behind.
 */
class PoolMachinesGauge {
  readonly name: string
  readonly help: string
  readonly type = 'gauge'
  readonly aggregator = 'sum'
  read: (() => readonly PoolMachineSnapshot[]) | undefined

  constructor (name: string, help: string) {
    this.name = name
    this.help = help
  }

  get (): { name: string, help: string, type: string, aggregator: string, values: { labels: Labels, value: number }[] } {
    const values: { labels: Labels, value: number }[] = []
    for (const { pool, machines } of this.read?.() ?? []) {
      const byState = new Map<string, number>()
      for (const m of machines) byState.set(m.state, (byState.get(m.state) ?? 0) + 1)
      for (const [state, value] of byState) values.push({ labels: { pool, state }, value })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {} // nothing kept: every scrape counts afresh
}

/**
 * A fresh set of the sidecar's metrics in its own Registry (never prom-client's global one, so
 * an embedding app and tests can make several), with Node's default process metrics.
 */
export function createMetrics (): SidecarMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const requests = new CellFamily(`${PREFIX}requests_total`, 'Requests by decision (local, replay, elsewhere, forward, reject) and matched rule ("" = no rule matched).', 'counter')
  const decisionSeconds = new HistogramFamily(`${PREFIX}decision_duration_seconds`, 'Time from a request\'s arrival to its decision, including body buffering and the pool Machine lookup.', DECISION_BUCKETS)
  const bodyBytes = new HistogramFamily(`${PREFIX}body_inspected_bytes`, 'Sizes of request bodies buffered for body rules (_sum is the total bytes inspected).', BODY_BUCKETS)
  const upstreamErrors = new CellFamily(`${PREFIX}upstream_errors_total`, 'Failed requests to the app or a pool Machine, by error code.', 'counter')
  const streams = new CellFamily(`${PREFIX}streams_in_flight`, 'Proxied requests whose response is still streaming.', 'gauge')
  const websockets = new CellFamily(`${PREFIX}websockets_open`, 'Open WebSocket tunnels.', 'gauge')
  const machinesCalls = new CellFamily(`${PREFIX}machines_api_requests_total`, 'Fly Machines API calls by operation and outcome.', 'counter')
  const machinesSeconds = new HistogramFamily(`${PREFIX}machines_api_duration_seconds`, 'Fly Machines API call latency by operation.', MACHINES_BUCKETS)
  const created = new CellFamily(`${PREFIX}pool_machines_created_total`, 'Pool Machines created, by pool.', 'counter')
  const replaced = new CellFamily(`${PREFIX}pool_machines_replaced_total`, 'Pool Machines replaced because their image was stale, by pool.', 'counter')
  const overflow = new CellFamily(`${PREFIX}pool_overflow_total`, 'Requests of an elastic pool placed over `concurrency` because the pool was at `max`, by pool.', 'counter')
  const scaledDown = new CellFamily(`${PREFIX}pool_machines_scaled_down_total`, 'Machines beyond `min` an elastic pool destroyed after `destroy-after`, by pool.', 'counter')
  const poolMachines = new PoolMachinesGauge(`${PREFIX}pool_machines`, 'Machines each pool hands requests to, by pool and by state as this sidecar last listed them.')

  for (const family of [requests, decisionSeconds, bodyBytes, upstreamErrors, streams, websockets, machinesCalls, machinesSeconds, created, replaced, overflow, scaledDown, poolMachines]) {
    // Our families produce the same get() shape as prom-client's own metric classes.
    registry.registerMetric(family as unknown as Metric)
  }

  // Every decision has its latency series from the start, so rate() works before the first replay.
  const requestCells = new Map<string, Map<string, Cell>>()
  const latencyCells = new Map<string, HistogramCell>()
  for (const d of DECISIONS) {
    requestCells.set(d, new Map())
    latencyCells.set(d, decisionSeconds.add({ decision: d }))
  }
  const bodyCell = bodyBytes.add({})
  const streamCell = streams.add({})
  const websocketCell = websockets.add({})
  const upstreamCells = new Map<string, Cell>()
  const callCells = new Map<string, Map<string, Cell>>()
  const callSecondsCells = new Map<string, HistogramCell>()
  const createdCells = new Map<string, Cell>()
  const replacedCells = new Map<string, Cell>()
  const overflowCells = new Map<string, Cell>()
  const scaledDownCells = new Map<string, Cell>()

  // Each method looks its cell up and makes it only on first sight (label sets are few: rules,
  // pools, codes, operations); no closure or string is made per call.
  return {
    registry,
    decision (decision, rule, seconds) {
      const byRule = requestCells.get(decision)
      if (byRule === undefined) return // not a Decision: only reachable from untyped callers
      let cell = byRule.get(rule)
      if (cell === undefined) byRule.set(rule, cell = requests.add({ decision, rule }))
      cell.value++
      latencyCells.get(decision)!.observe(seconds)
    },
    bodyInspected (bytes) {
      bodyCell.observe(bytes)
    },
    upstreamError (code) {
      let cell = upstreamCells.get(code)
      if (cell === undefined) upstreamCells.set(code, cell = upstreamErrors.add({ code }))
      cell.value++
    },
    stream (delta) {
      streamCell.value += delta
    },
    websocket (delta) {
      websocketCell.value += delta
    },
    machinesCall (op, outcome, seconds) {
      let byOutcome = callCells.get(op)
      if (byOutcome === undefined) callCells.set(op, byOutcome = new Map())
      let cell = byOutcome.get(outcome)
      if (cell === undefined) byOutcome.set(outcome, cell = machinesCalls.add({ op, outcome }))
      cell.value++
      let latency = callSecondsCells.get(op)
      if (latency === undefined) callSecondsCells.set(op, latency = machinesSeconds.add({ op }))
      latency.observe(seconds)
    },
    poolMachineCreated (pool) {
      let cell = createdCells.get(pool)
      if (cell === undefined) createdCells.set(pool, cell = created.add({ pool }))
      cell.value++
    },
    poolMachineReplaced (pool) {
      let cell = replacedCells.get(pool)
      if (cell === undefined) replacedCells.set(pool, cell = replaced.add({ pool }))
      cell.value++
    },
    poolOverflow (pool) {
      let cell = overflowCells.get(pool)
      if (cell === undefined) overflowCells.set(pool, cell = overflow.add({ pool }))
      cell.value++
    },
    poolMachineScaledDown (pool) {
      let cell = scaledDownCells.get(pool)
      if (cell === undefined) scaledDownCells.set(pool, cell = scaledDown.add({ pool }))
      cell.value++
    },
    readPoolMachines (read) {
      poolMachines.read = read
    },
  }
}

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  readonly port: number
  close (): Promise<void>
}

/**
 * Serves `metrics.registry` in the Prometheus text format at `cfg.path` on its own port, the
 * `[metrics]` convention of fly.toml: scrapes never queue behind proxied traffic and the metrics
 * never show on the app's public port.
 */
export async function startMetricsServer (
  cfg: { readonly host: string, readonly port: number, readonly path: string },
  metrics: SidecarMetrics,
  logger: Logger
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (path !== cfg.path) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
      return
    }
    metrics.registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text) })
      res.end(req.method === 'HEAD' ? undefined : text)
    }, (err: unknown) => {
      logger.error({ err }, 'metrics collection failed')
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics collection failed\n')
    })
  })
  // A scrape is one short request: no reason to hold idle sockets open at shutdown.
  server.keepAliveTimeout = 5_000

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      reject(new SidecarError('SIDECAR_ERR_SERVER_LISTEN', [`${cfg.host}:${cfg.port} (metrics)`], { cause: err }))
    })
    server.listen(cfg.port, cfg.host, () => resolve())
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : cfg.port
  logger.info({ address: `${cfg.host}:${port}`, path: cfg.path }, 'metrics listening')

  return {
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}
