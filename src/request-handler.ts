// The per-request orchestration: match rules (buffering a body only when a body rule could
// still match), decide, then act — proxy to the app, answer fly-replay, forward to a pool
// Machine, or reject. Everything configurable is precomputed in buildRouting() at start-up
// (and on reload); handle() only reads it.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Config, PoolConfig } from './config/types.ts'
import { compileRules, type CompiledRule, type CompiledRules, type RequestHead } from './rules/compile.ts'
import { matchBodyRules, matchHead } from './rules/match.ts'
import { readBodyPrefix, type BufferedBody } from './body/inspect.ts'
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
const REPLAY_BODY_LENGTH = String(Buffer.byteLength(REPLAY_BODY))

/** Answers a request with a fly-replay header and a tiny body; Fly's edge never shows it. */
function answerReplay (res: ServerResponse, header: string): void {
  res.writeHead(307, {
    'fly-replay': header,
    'content-type': 'application/json',
    'content-length': REPLAY_BODY_LENGTH,
    'cache-control': 'no-store',
  })
  res.end(REPLAY_BODY)
}

function answerError (res: ServerResponse, err: SidecarError): void {
  const body = JSON.stringify(err.toJSON())
  res.writeHead(err.status ?? 500, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  })
  res.end(body)
}

function headOf (req: IncomingMessage): RequestHead {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  return {
    method: req.method ?? 'GET',
    path: q === -1 ? url : url.slice(0, q),
    query: q === -1 ? '' : url.slice(q + 1),
    headers: req.headers,
  }
}

/** `instance=<id>` from a fly-replay-failed header (`;` or `,` separated, values maybe quoted). */
export function failedInstance (header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined) return undefined
  const m = /(?:^|[;,]\s*)instance="?([^";,]+)"?/.exec(value)
  return m?.[1]
}

export function createRequestHandler (deps: HandlerDeps): {
  handle: (req: IncomingMessage, res: ServerResponse) => void
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
} {
  const { logger, forwarder, pools, metrics } = deps
  const requests = requestLogger(logger)
  const inspectTimeoutMs = deps.inspectBodyTimeoutMs ?? DEFAULT_INSPECT_BODY_TIMEOUT_MS

  function record (started: bigint, kind: DecisionKind, rule: string | undefined): void {
    if (metrics !== undefined) metrics.decision(kind, rule ?? '', Number(process.hrtime.bigint() - started) / 1e9)
  }

  function serveLocal (req: IncomingMessage, res: ServerResponse, started: bigint, rule: string | undefined, prefix: Buffer | undefined, reason: string): void {
    record(started, 'local', rule)
    requests.info({ method: req.method, url: req.url, decision: 'local', reason, rule }, 'request')
    forwarder.forward(req, res, prefix === undefined ? undefined : { prefix })
  }

  async function toPool (req: IncomingMessage, res: ServerResponse, started: bigint, routing: Routing, pool: PoolConfig, rule: CompiledRule, prefix: Buffer | undefined): Promise<void> {
    const replayable = isReplayable(req.headers)
    const pick = needsPick(pool, replayable) ? await pools.pick(pool.name) : undefined
    const d = decidePool({ pool, replayable, pick, replayTimeout: routing.replayTimeout, ruleName: rule.name })
    switch (d.kind) {
      case 'replay':
        record(started, 'replay', rule.name)
        requests.info({ method: req.method, url: req.url, decision: 'replay', rule: rule.name, pool: pool.name, machine: d.machineId }, 'request')
        answerReplay(res, d.header)
        return
      case 'forward': {
        record(started, 'forward', rule.name)
        requests.info({ method: req.method, url: req.url, decision: 'forward', rule: rule.name, pool: pool.name, machine: d.machineId }, 'request')
        const origin = routing.privateOrigin(d.machineId)
        forwarder.forward(req, res, prefix === undefined ? { origin } : { origin, prefix })
        return
      }
      case 'local':
        serveLocal(req, res, started, rule.name, prefix, d.reason)
        return
      case 'reject':
        record(started, 'reject', rule.name)
        logger.warn({ method: req.method, url: req.url, decision: 'reject', rule: rule.name, pool: pool.name, code: d.error.code }, 'request rejected')
        answerError(res, d.error)
    }
  }

  function decided (req: IncomingMessage, res: ServerResponse, started: bigint, routing: Routing, rule: CompiledRule | undefined, prefix: Buffer | undefined): void | Promise<void> {
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
    if (r.kind === 'local') return serveLocal(req, res, started, rule?.name, prefix, r.reason)
    if (r.kind === 'elsewhere') {
      record(started, 'elsewhere', rule?.name)
      requests.info({ method: req.method, url: req.url, decision: 'elsewhere', rule: rule?.name }, 'request')
      return answerReplay(res, r.header)
    }
    const pool = routing.config.pools[r.pool]
    // route() only names configured pools; the guard keeps a bad reload from crashing a request.
    if (pool === undefined || rule === undefined) return serveLocal(req, res, started, rule?.name, prefix, 'no-pool')
    return toPool(req, res, started, routing, pool, rule, prefix)
  }

  async function withBody (req: IncomingMessage, res: ServerResponse, started: bigint, routing: Routing, candidates: readonly CompiledRule[]): Promise<void> {
    let body: BufferedBody
    try {
      body = await readBodyPrefix(req, routing.maxInspectBytes, inspectTimeoutMs)
    } catch (err) {
      if (err instanceof SidecarError && err.code === 'SIDECAR_ERR_BODY_TIMEOUT') {
        // A dripped body would otherwise hold the connection and its buffer for ever.
        logger.info({ method: req.method, url: req.url, code: err.code }, 'request body too slow')
        if (!res.headersSent && !res.destroyed) {
          res.shouldKeepAlive = false
          answerError(res, err)
          res.once('finish', () => { req.destroy() })
        }
        return
      }
      // The client went away or sent a broken body while we were reading it: nothing to serve.
      logger.info({ method: req.method, url: req.url, err }, 'request body aborted')
      if (!res.headersSent && !res.destroyed) res.destroy()
      return
    }
    metrics?.bodyInspected(body.bytes.length)
    const rule = matchBodyRules(candidates, req.headers['content-type'], body)
    await decided(req, res, started, routing, rule, body.bytes)
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

  function fail (req: IncomingMessage, res: ServerResponse, err: unknown): void {
    logger.error({ method: req.method, url: req.url, err }, 'request failed')
    if (!res.headersSent) answerError(res, new SidecarError('SIDECAR_ERR_SERVER_INTERNAL', [], { cause: err }))
    else res.destroy()
  }

  function handle (req: IncomingMessage, res: ServerResponse): void {
    const started = process.hrtime.bigint()
    const routing = deps.routing()
    const headers = req.headers
    // Contract §4.2 and §4.7: a replayed request or a fallback is served here, always; off Fly
    // there is nowhere else to send anything. Neither needs rules.
    if (!routing.onFly) return serveLocal(req, res, started, undefined, undefined, 'not-on-fly')
    if (headers['fly-replay-src'] !== undefined) return serveLocal(req, res, started, undefined, undefined, 'replayed')
    if (headers['fly-replay-failed'] !== undefined) {
      reportFallback(routing, headers['fly-replay-failed'])
      return serveLocal(req, res, started, undefined, undefined, 'fallback')
    }
    const m = matchHead(routing.rules, headOf(req))
    try {
      const p = m.kind === 'done'
        ? decided(req, res, started, routing, m.rule, undefined)
        : withBody(req, res, started, routing, m.candidates)
      if (p !== undefined) p.catch((err: unknown) => fail(req, res, err))
    } catch (err) {
      fail(req, res, err)
    }
  }

  function upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const routing = deps.routing()
    if (routing.onFly) reportFallback(routing, req.headers['fly-replay-failed'])
    const origin = routing.config.app.url
    const local = (): void => {
      metrics?.decision('local', '', 0)
      tunnelUpgrade(req, socket, head, origin, { logger, readyTimeoutMs: routing.config.app.readyTimeoutMs, ...(metrics === undefined ? {} : { onOpen: (d: 1 | -1) => metrics.websocket(d) }) })
    }
    const headers = req.headers
    if (!routing.onFly || headers['fly-replay-src'] !== undefined || headers['fly-replay-failed'] !== undefined) return local()
    const m = matchHead(routing.rules, headOf(req))
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
