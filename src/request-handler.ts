// The per-request orchestration: match rules (buffering a body only when a body rule could
// still match), decide, then act — proxy to the app, answer fly-replay, forward to a pool
// Machine, or reject. Everything configurable is precomputed in buildRouting() at start-up
// (and on reload); handle() only reads it.
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Config, PoolConfig } from './config/types.ts'
import { compileRules, type CompiledRule, type CompiledRules } from './rules/compile.ts'
import { matchBodyRules, matchHead } from './rules/match.ts'
import type { BufferedBody } from './body/inspect.ts'
import type { RequestHead } from './http/request-head.ts'
import type { Exchange } from './proxy/connection.ts'
import { decidePool, formatDuration, isReplayable, needsPick, route } from './decision/decide.ts'
import type { PoolMachines } from './machines/types.ts'
import type { Forwarder } from './proxy/forward.ts'
import { tunnelUpgrade } from './proxy/websocket.ts'
import type { SidecarMetrics } from './metrics.ts'
import { SidecarError } from './errors.ts'
import { requestLogger } from './log.ts'

export type DecisionKind = 'local' | 'replay' | 'elsewhere' | 'forward' | 'reject'

/** Everything the hot path reads, derived once from a Config. Swapped whole on reload. */
export interface Routing {
  readonly config: Config
  readonly rules: CompiledRules
  readonly onFly: boolean
  readonly replayTimeout: string
  /** fly.private-url with {app} and {port} filled at start-up; {id} filled per Machine. */
  readonly privateOrigin: (machineId: string) => string
  readonly maxInspectBytes: number
}

export function buildRouting (config: Config): Routing {
  const template = config.fly.privateUrl
    .replaceAll('{app}', config.fly.app ?? '')
    .replaceAll('{port}', String(config.listen.port))
  const [before, ...after] = template.split('{id}')
  const rest = after.join('{id}')
  const privateOrigin = after.length === 0 ? () => template : (id: string) => `${before ?? ''}${id}${rest.replaceAll('{id}', id)}`
  return {
    config,
    rules: compileRules(config.rules, { maxBodyBytes: config.inspect.maxBodyBytes }),
    onFly: config.fly.app !== undefined && config.fly.machineId !== undefined,
    replayTimeout: formatDuration(config.fly.replayTimeoutMs),
    privateOrigin,
    maxInspectBytes: config.inspect.maxBodyBytes,
  }
}

export interface HandlerDeps {
  readonly logger: Logger
  readonly forwarder: Forwarder
  readonly pools: PoolMachines
  readonly metrics: SidecarMetrics | undefined
  readonly routing: () => Routing
  /** A body read for body rules must arrive within this (slow-body protection). Default 60 s. */
  readonly inspectBodyTimeoutMs?: number
}

/** As long as Node gives a client for its headers: a body rule's body is part of the decision too. */
export const DEFAULT_INSPECT_BODY_TIMEOUT_MS = 60_000

const REPLAY_BODY = '{"replay":true}\n'
const JSON_TYPE = 'application/json; charset=utf-8'

/** Answers a request with a fly-replay header and a tiny body; Fly's edge never shows it. */
function answerReplay (ex: Exchange, header: string): void {
  ex.answer(307, 'application/json', REPLAY_BODY, `fly-replay: ${header}\r\n`)
}

function answerError (ex: Exchange, err: SidecarError): void {
  ex.answer(err.status ?? 500, JSON_TYPE, JSON.stringify(err.toJSON()))
}

/** `instance=<id>` from a fly-replay-failed header (`;` or `,` separated, values maybe quoted). */
export function failedInstance (header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined) return undefined
  const m = /(?:^|[;,]\s*)instance="?([^";,]+)"?/.exec(value)
  return m?.[1]
}

export function createRequestHandler (deps: HandlerDeps): {
  handle: (ex: Exchange) => void
  upgrade: (head: RequestHead, socket: Socket, rest: Buffer) => void
} {
  const { logger, forwarder, pools, metrics } = deps
  const requests = requestLogger(logger)
  const inspectTimeoutMs = deps.inspectBodyTimeoutMs ?? DEFAULT_INSPECT_BODY_TIMEOUT_MS

  function record (started: bigint, kind: DecisionKind, rule: string | undefined): void {
    if (metrics !== undefined) metrics.decision(kind, rule ?? '', Number(process.hrtime.bigint() - started) / 1e9)
  }

  function serveLocal (ex: Exchange, started: bigint, rule: string | undefined, reason: string): void {
    record(started, 'local', rule)
    requests.info({ method: ex.head.method, url: ex.head.target, decision: 'local', reason, rule }, 'request')
    forwarder.forward(ex)
  }

  async function toPool (ex: Exchange, started: bigint, routing: Routing, pool: PoolConfig, rule: CompiledRule): Promise<void> {
    const replayable = isReplayable(ex.head.headers)
    const pick = needsPick(pool, replayable) ? await pools.pick(pool.name) : undefined
    const d = decidePool({ pool, replayable, pick, replayTimeout: routing.replayTimeout, ruleName: rule.name })
    switch (d.kind) {
      case 'replay':
        record(started, 'replay', rule.name)
        requests.info({ method: ex.head.method, url: ex.head.target, decision: 'replay', rule: rule.name, pool: pool.name, machine: d.machineId }, 'request')
        answerReplay(ex, d.header)
        return
      case 'forward': {
        record(started, 'forward', rule.name)
        requests.info({ method: ex.head.method, url: ex.head.target, decision: 'forward', rule: rule.name, pool: pool.name, machine: d.machineId }, 'request')
        const origin = routing.privateOrigin(d.machineId)
        forwarder.forward(ex, { origin })
        return
      }
      case 'local':
        serveLocal(ex, started, rule.name, d.reason)
        return
      case 'reject':
        record(started, 'reject', rule.name)
        logger.warn({ method: ex.head.method, url: ex.head.target, decision: 'reject', rule: rule.name, pool: pool.name, code: d.error.code }, 'request rejected')
        answerError(ex, d.error)
    }
  }

  function decided (ex: Exchange, started: bigint, routing: Routing, rule: CompiledRule | undefined): void | Promise<void> {
    const target = rule === undefined ? 'app' : rule.to
    const r = route({
      pool: routing.config.pool,
      onFly: routing.onFly,
      replayed: false,
      fallback: false,
      target,
      ruleName: rule?.name,
      originApp: routing.config.originApp,
    })
    if (r.kind === 'local') return serveLocal(ex, started, rule?.name, r.reason)
    if (r.kind === 'elsewhere') {
      record(started, 'elsewhere', rule?.name)
      requests.info({ method: ex.head.method, url: ex.head.target, decision: 'elsewhere', rule: rule?.name }, 'request')
      return answerReplay(ex, r.header)
    }
    const pool = routing.config.pools[r.pool]
    // route() only names configured pools; the guard keeps a bad reload from crashing a request.
    if (pool === undefined || rule === undefined) return serveLocal(ex, started, rule?.name, 'no-pool')
    return toPool(ex, started, routing, pool, rule)
  }

  async function withBody (ex: Exchange, started: bigint, routing: Routing, candidates: readonly CompiledRule[]): Promise<void> {
    let body: BufferedBody
    try {
      body = await ex.readPrefix(routing.maxInspectBytes, inspectTimeoutMs)
    } catch (err) {
      if (err instanceof SidecarError && err.code === 'SIDECAR_ERR_BODY_TIMEOUT') {
        // A dripped body would otherwise hold the connection and its buffer for ever.
        logger.info({ method: ex.head.method, url: ex.head.target, code: err.code }, 'request body too slow')
        if (!ex.started && !ex.aborted) {
          ex.keepAlive = false
          answerError(ex, err)
        }
        return
      }
      // The client went away or sent a broken body while we were reading it: nothing to serve.
      logger.info({ method: ex.head.method, url: ex.head.target, err }, 'request body aborted')
      if (!ex.started && !ex.aborted) ex.destroy()
      return
    }
    metrics?.bodyInspected(body.bytes.length)
    const rule = matchBodyRules(candidates, ex.head.headers['content-type'] as string | undefined, body)
    await decided(ex, started, routing, rule)
  }

  /**
   * A replay fallback names the Machine that failed, not its pool, and the rule that sent the
   * request there may need the body, which a fallback is not read for: every pool is told, and
   * only the one holding that id drops it. (Fallbacks are rare: no need to precompute the names.)
   */
  function reportFallback (routing: Routing, header: string | string[] | undefined): void {
    const failed = failedInstance(header)
    if (failed !== undefined) for (const pool of Object.keys(routing.config.pools)) pools.reportFailed(pool, failed)
  }

  function fail (ex: Exchange, err: unknown): void {
    logger.error({ method: ex.head.method, url: ex.head.target, err }, 'request failed')
    if (!ex.started) answerError(ex, new SidecarError('SIDECAR_ERR_SERVER_INTERNAL', [], { cause: err }))
    else ex.destroy()
  }

  function handle (ex: Exchange): void {
    const started = process.hrtime.bigint()
    const routing = deps.routing()
    const head = ex.head
    const headers = head.headers
    // Contract §4.2 and §4.7: a replayed request or a fallback is served here, always; off Fly
    // there is nowhere else to send anything. Neither needs rules.
    if (!routing.onFly) return serveLocal(ex, started, undefined, 'not-on-fly')
    if (headers['fly-replay-src'] !== undefined) return serveLocal(ex, started, undefined, 'replayed')
    if (headers['fly-replay-failed'] !== undefined) {
      reportFallback(routing, headers['fly-replay-failed'])
      return serveLocal(ex, started, undefined, 'fallback')
    }
    const m = matchHead(routing.rules, head)
    try {
      const p = m.kind === 'done'
        ? decided(ex, started, routing, m.rule)
        : withBody(ex, started, routing, m.candidates)
      if (p !== undefined) p.catch((err: unknown) => fail(ex, err))
    } catch (err) {
      fail(ex, err)
    }
  }

  function upgrade (head: RequestHead, socket: Socket, rest: Buffer): void {
    const routing = deps.routing()
    if (routing.onFly) reportFallback(routing, head.headers['fly-replay-failed'])
    const origin = routing.config.app.url
    const local = (): void => {
      metrics?.decision('local', '', 0)
      tunnelUpgrade({ ...head, remoteAddress: socket.remoteAddress }, socket, rest, origin, { logger, readyTimeoutMs: routing.config.app.readyTimeoutMs, ...(metrics === undefined ? {} : { onOpen: (d: 1 | -1) => metrics.websocket(d) }) })
    }
    const headers = head.headers
    if (!routing.onFly || headers['fly-replay-src'] !== undefined || headers['fly-replay-failed'] !== undefined) return local()
    const m = matchHead(routing.rules, head)
    // An upgrade carries no body, so a body rule cannot match it.
    const rule = m.kind === 'done' ? m.rule : m.candidates.find((c) => c.bodyKind === null)
    const r = route({ pool: routing.config.pool, onFly: true, replayed: false, fallback: false, target: rule?.to ?? 'app', ruleName: rule?.name, originApp: routing.config.originApp })
    const replayOnSocket = (header: string): void => {
      socket.end(`HTTP/1.1 307 Temporary Redirect\r\nfly-replay: ${header}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`)
    }
    if (r.kind === 'local') return local()
    if (r.kind === 'elsewhere') { metrics?.decision('elsewhere', rule?.name ?? '', 0); return replayOnSocket(r.header) }
    const pool = routing.config.pools[r.pool]
    if (pool === undefined || rule === undefined) return local()
    pools.pick(pool.name).then((pick) => {
      const d = decidePool({ pool, replayable: true, pick, replayTimeout: routing.replayTimeout, ruleName: rule.name })
      if (d.kind === 'replay') { metrics?.decision('replay', rule.name, 0); replayOnSocket(d.header); return }
      if (d.kind === 'reject') {
        const body = JSON.stringify(d.error.toJSON())
        socket.end(`HTTP/1.1 ${d.error.status ?? 503} Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
        return
      }
      local()
    }).catch((err: unknown) => {
      logger.error({ err }, 'upgrade failed')
      socket.destroy()
    })
  }

  return { handle, upgrade }
}
