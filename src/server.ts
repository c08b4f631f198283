// Fastify wiring: the health route (registered before the catch-all, so no rule can shadow it),
// one catch-all route that hands the raw request to the request handler, and upgrade handling.
// Bodies are never parsed by Fastify: a `*` content-type parser leaves the stream untouched.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Logger } from 'pino'
import { createRequestHandler, type Routing } from './request-handler.ts'
import type { PoolMachines } from './machines/types.ts'
import type { Forwarder } from './proxy/forward.ts'
import type { SidecarMetrics } from './metrics.ts'
import { healthResponse } from './health.ts'
import { canConnect } from './app-probe.ts'
import { SidecarError } from './errors.ts'

const HEALTH_PROBE_TIMEOUT_MS = 1000
// Fastify's own set; every other method Node's parser accepts (WebDAV, SEARCH, ...) is added so
// the app sees it: a proxy has no opinion on methods.
const FASTIFY_METHODS = new Set(['GET', 'HEAD', 'TRACE', 'DELETE', 'OPTIONS', 'PATCH', 'PUT', 'POST', 'QUERY'])

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

/** Node's own default, kept explicit: requestTimeout is 0 here, the headers still have a limit. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000

/**
 * Answers what Node's HTTP parser refused (and the headers timeout) in the sidecar's JSON error
 * shape, as docs/errors.md says, then closes the connection. Like Node's own handler, it writes
 * nothing into a response that has already started.
 */
function answerClientError (err: Error & { code?: string, reason?: string }, socket: Socket, headersTimeoutMs: number): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const error = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? new SidecarError('SIDECAR_ERR_SERVER_HEADERS_TIMEOUT', [headersTimeoutMs])
    : err.code === 'HPE_HEADER_OVERFLOW'
      ? new SidecarError('SIDECAR_ERR_SERVER_HEADERS_TOO_LARGE', [http.maxHeaderSize])
      : new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [err.reason ?? err.code ?? 'malformed request'])
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage?.headersSent === true
  if (socket.writable && !started) {
    const body = JSON.stringify(error.toJSON())
    const status = error.status ?? 400
    socket.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}

export interface SidecarServer {
  readonly fastify: FastifyInstance
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
  const handler = createRequestHandler(options)
  let closing = false
  const closeIdle = (): void => { fastify.server.closeIdleConnections() }
  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS

  const healthPath = options.routing().config.health.path
  const healthQuery = `${healthPath}?`

  /** A request for the app: straight to the request handler, counted for the drain. */
  const proxy = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    inFlight++
    res.once('close', () => {
      inFlight--
      // While draining, a kept-alive connection whose request just finished would hold the
      // drain open until the drain timeout: close it as soon as it is idle.
      if (closing) setImmediate(closeIdle)
    })
    handler.handle(req, res)
  }

  /**
   * Every request but the health check (and any request once closing, which Fastify answers 503)
   * goes to the handler without passing through Fastify: its router, request and reply objects
   * and hooks add nothing to a request that is only passed on (its routing alone was ~4% of a
   * proxied request's CPU in a profile). It also keeps paths exactly as received: Fastify would reject a malformed
   * percent-escape the app may well accept.
   */
  const serverFactory = (fastifyHandler: http.RequestListener): http.Server => {
    const server = http.createServer({
      headersTimeout,
      // Node checks the headers timeout on an interval (30 s by default): scale it with the timeout.
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(headersTimeout / 4))),
      // Long event streams and uploads must not be cut by the sidecar itself.
      requestTimeout: 0,
      keepAliveTimeout: 75_000,
    }, (req, res) => {
      const url = req.url
      if (closing || ((req.method === 'GET' || req.method === 'HEAD') && url !== undefined &&
        (url === healthPath || url.startsWith(healthQuery)))) {
        fastifyHandler(req, res)
        return
      }
      proxy(req, res)
    })
    server.setTimeout(0)
    return server
  }

  const fastify = Fastify({
    // Requests are logged once by the request handler, with their decision.
    logger: false,
    serverFactory,
    clientErrorHandler: (err, socket) => { answerClientError(err, socket, headersTimeout) },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: {
      // Paths reach the app as received; Fastify must not rewrite or reject them.
      ignoreTrailingSlash: false,
      ignoreDuplicateSlashes: false,
      maxParamLength: 100_000,
      // The health route reads no query: Fastify's parse of it would be wasted work.
      querystringParser: () => ({}),
    },
  })

  // Fastify parses no body: the content-type parser leaves the stream to the request handler.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', (_req, _payload, done) => { done(null) })

  fastify.route({
    method: ['GET', 'HEAD'],
    url: healthPath,
    handler: async (_request, reply) => {
      const routing = options.routing()
      const appUp = await canConnect(routing.config.app.url, HEALTH_PROBE_TIMEOUT_MS)
      if (appUp) everUp = true
      const h = healthResponse({ appUp, everUp, pool: routing.config.pool, onFly: routing.onFly, pools: options.pools.snapshot(), uptimeMs: Date.now() - started, inFlight })
      return reply.code(h.status).header('cache-control', 'no-store').send(h.body)
    },
  })

  // While closing, requests on kept-alive connections are routed by Fastify, whose
  // return503OnClosing answers them 503 before this handler runs; these routes only give it a
  // route to match for every path and method.
  const viaFastify = (request: { raw: http.IncomingMessage }, reply: { hijack: () => void, raw: http.ServerResponse }): void => {
    reply.hijack()
    proxy(request.raw, reply.raw)
  }
  for (const method of http.METHODS) {
    if (!FASTIFY_METHODS.has(method)) fastify.addHttpMethod(method, { hasBody: true })
  }
  fastify.all('/', viaFastify)
  fastify.all('/*', viaFastify)

  fastify.setErrorHandler((err: FastifyError, _request, reply) => {
    // Only Fastify's own errors reach here (bad URL, unsupported method): answer in our shape.
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500
    const body = { error: { code: status >= 500 ? 'SIDECAR_ERR_SERVER_INTERNAL' : 'SIDECAR_ERR_SERVER_BAD_REQUEST', message: status >= 500 ? 'the sidecar failed to handle the request' : err.message } }
    if (status >= 500) logger.error({ err }, 'server error')
    void reply.code(status).send(body)
  })

  fastify.server.on('upgrade', (req, socket, head) => {
    socket.on('error', (err) => { logger.debug({ err }, 'upgrade socket error') })
    try {
      handler.upgrade(req, socket, head)
    } catch (err) {
      logger.error({ err }, 'upgrade failed')
      socket.destroy()
    }
  })

  return {
    fastify,
    async listen (host, port) {
      try {
        await fastify.listen({ host, port })
      } catch (err) {
        throw new SidecarError('SIDECAR_ERR_SERVER_LISTEN', [`${host}:${port}`], { cause: err })
      }
      return fastify.server.address() as AddressInfo
    },
    close: () => {
      closing = true
      return fastify.close()
    },
    closeAllConnections: () => { fastify.server.closeAllConnections() },
    inFlight: () => inFlight,
  }
}
