// The main port on `net`: every connection is a ClientConnection (src/proxy/connection.ts); a
// request for the health path is answered here, every other one goes to the request handler, and
// an `Upgrade` request to the WebSocket tunnel. While closing, requests get 503 and close.
import net, { type AddressInfo, type Socket } from 'node:net'
import { maxHeaderSize } from 'node:http'
import type { Logger } from 'pino'
import { createRequestHandler, type Routing } from './request-handler.ts'
import type { PoolMachines } from './machines/types.ts'
import type { Forwarder } from './proxy/forward.ts'
import { ClientConnection, type ConnectionHooks, type Exchange } from './proxy/connection.ts'
import type { RequestHead } from './http/request-head.ts'
import type { SidecarMetrics } from './metrics.ts'
import { healthResponse } from './health.ts'
import { canConnect } from './app-probe.ts'
import { SidecarError } from './errors.ts'

const HEALTH_PROBE_TIMEOUT_MS = 1000
/** An idle kept-alive client connection is closed after this long (Node's server used 75 s too). */
const KEEP_ALIVE_TIMEOUT_MS = 75_000

export interface ServerOptions {
  readonly logger: Logger
  readonly forwarder: Forwarder
  readonly pools: PoolMachines
  readonly metrics: SidecarMetrics | undefined
  /** Current routing; read per request so a reload swaps it atomically. */
  readonly routing: () => Routing
  /** A client whose request headers are not all in after this long gets 408 (slowloris). Default 60 s. */
  readonly headersTimeoutMs?: number
  /** A body read for body rules must arrive within this; else 408. Default 60 s. */
  readonly inspectBodyTimeoutMs?: number
}

/** As Node's own default: the headers of a request must all arrive within a minute. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000

export interface SidecarServer {
  listen (host: string, port: number): Promise<AddressInfo>
  /** Stop accepting; resolves when in-flight requests are done. */
  close (): Promise<void>
  /** Destroy every remaining connection (after the drain timeout). */
  closeAllConnections (): void
  /** Requests currently being served. */
  inFlight (): number
}

export function createServer (options: ServerOptions): SidecarServer {
  const { logger } = options
  const started = Date.now()
  let everUp = false
  let inFlight = 0
  let closing = false
  const handler = createRequestHandler(options)
  const headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS
  const connections = new Set<ClientConnection>()
  let onDrained: (() => void) | undefined

  const healthPath = options.routing().config.health.path
  const healthQuery = `${healthPath}?`

  async function answerHealth (ex: Exchange): Promise<void> {
    // The load report (`inFlight`) counts the requests being served, not this health check.
    const routing = options.routing()
    const appUp = await canConnect(routing.config.app.url, HEALTH_PROBE_TIMEOUT_MS)
    if (appUp) everUp = true
    const h = healthResponse({ appUp, everUp, pool: routing.config.pool, onFly: routing.onFly, pools: options.pools.snapshot(), uptimeMs: Date.now() - started, inFlight: inFlight - 1 })
    if (!ex.aborted) ex.answer(h.status, 'application/json; charset=utf-8', JSON.stringify(h.body))
  }

  const done = (): void => {
    inFlight--
    if (closing && inFlight === 0) onDrained?.()
  }

  const hooks: ConnectionHooks = {
    request (ex) {
      inFlight++
      ex.onDone(done)
      const head = ex.head
      const target = head.target
      if ((head.method === 'GET' || head.method === 'HEAD') && (target === healthPath || target.startsWith(healthQuery))) {
        answerHealth(ex).catch((err: unknown) => {
          logger.error({ err }, 'health check failed')
          if (!ex.started) ex.answer(500, 'application/json; charset=utf-8', JSON.stringify(new SidecarError('SIDECAR_ERR_SERVER_INTERNAL').toJSON()))
        })
        return
      }
      handler.handle(ex)
    },
    upgrade (head: RequestHead, socket: Socket, rest: Buffer) {
      socket.on('error', (err) => { logger.debug({ err }, 'upgrade socket error') })
      try {
        handler.upgrade(head, socket, rest)
      } catch (err) {
        logger.error({ err }, 'upgrade failed')
        socket.destroy()
      }
    },
    closing: () => closing,
  }
  const limits = { maxHeadBytes: maxHeaderSize, headersTimeoutMs, keepAliveTimeoutMs: KEEP_ALIVE_TIMEOUT_MS }
  const gone = (c: ClientConnection): void => {
    connections.delete(c)
    if (closing && connections.size === 0) onDrained?.()
  }

  // Half-open: a client that ends its side after a complete request still gets the answer.
  // Accepted paused: ClientConnection sets where reads land before the first one.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
    const c = new ClientConnection(socket, hooks, limits, performance.now(), gone)
    connections.add(c)
    if (closing) c.closeWhenIdle()
  })

  // Timeouts are checked on a sweep, as Node's server does, not with a timer per request.
  const sweepEvery = Math.min(30_000, Math.max(50, Math.floor(Math.min(headersTimeoutMs, KEEP_ALIVE_TIMEOUT_MS) / 4)))
  const sweeper = setInterval(() => {
    const now = performance.now()
    for (const c of connections) c.sweep(now)
  }, sweepEvery)
  sweeper.unref()

  return {
    async listen (host, port) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ host, port }, () => { server.off('error', reject); resolve() })
        })
      } catch (err) {
        throw new SidecarError('SIDECAR_ERR_SERVER_LISTEN', [`${host}:${port}`], { cause: err })
      }
      return server.address() as AddressInfo
    },
    close: () => {
      closing = true
      clearInterval(sweeper)
      return new Promise<void>((resolve) => {
        const check = (): void => {
          if (inFlight === 0) {
            // Every exchange is done: what remains is idle connections, closed now.
            for (const c of connections) c.closeWhenIdle()
          }
          if (connections.size === 0 || inFlight === 0) { onDrained = undefined; resolve() }
        }
        onDrained = check
        server.close()
        for (const c of connections) c.closeWhenIdle()
        check()
      })
    },
    closeAllConnections: () => {
      for (const c of [...connections]) c.socket.destroy()
    },
    inFlight: () => inFlight,
  }
}
