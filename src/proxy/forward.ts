// Streams a request to the app (or a pool Machine) with undici's dispatch() and the response
// back onto the raw Node response, chunk by chunk, with backpressure and no intermediate streams.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { performance } from 'node:perf_hooks'
import { Agent, Pool, errors as undiciErrors } from 'undici'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import { SidecarError } from '../errors.ts'
import { forwardRequestHeaders, requestTarget, responseHeaders } from './headers.ts'
import { isConnectionRefused, upstreamError } from './errors-map.ts'

export interface ForwarderOptions {
  /** app.url, e.g. http://127.0.0.1:8081 (no path). */
  readonly origin: string
  /**
   * A refused connection is retried (every ~100 ms) until this long after the forwarder was
   * created, while the app may still be booting; after that a refusal answers 502 at once.
   */
  readonly readyTimeoutMs: number
  /** The app sends no response headers in this long → 504. Default 300_000. */
  readonly headersTimeoutMs?: number
  readonly logger: Logger
  /** Metrics hook: one call per failed upstream request, with the SidecarError code. */
  readonly onUpstreamError?: (code: string) => void
  /** Metrics hook: a proxied response started (+1) or ended, cleanly or not (-1). */
  readonly onStream?: (delta: 1 | -1) => void
}

export interface ForwardOptions {
  /** Body bytes already read from `req` (body inspection): sent first, then the rest of `req`. */
  readonly prefix?: Buffer
  /** A different upstream (a pool Machine's private URL); connections are pooled per origin. */
  readonly origin?: string
}

export interface Forwarder {
  /**
   * Proxies `req` to the upstream and streams the answer into `res`. Never throws and never
   * rejects: every failure ends as a JSON error response or, once the response has started,
   * a destroyed `res`.
   */
  forward (req: IncomingMessage, res: ServerResponse, options?: ForwardOptions): void
  /** Destroys the connection pools (call after the server has drained) and answers 502 to requests waiting for the app. */
  close (): Promise<void>
}

/**
 * Idempotent methods (RFC 9110 §9.2.2): without a body, sending one again after the app closed a
 * kept-alive connection under it cannot do anything twice that the client did not ask for.
 */
const RESENDABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/**
 * The app closed the connection before any byte of an answer: the usual race when the app drops
 * an idle kept-alive socket just as the sidecar reuses it.
 */
function closedBeforeAnswer (err: Error): boolean {
  const code = (err as { code?: unknown }).code
  return code === 'ECONNRESET' || code === 'EPIPE' || (code === 'UND_ERR_SOCKET' && (err.message === 'other side closed' || err.message === 'closed'))
}

/** How often a refused connection is tried again inside the ready window. */
const RETRY_INTERVAL_MS = 100
const DEFAULT_HEADERS_TIMEOUT_MS = 300_000
/** A bounded connect: an unroutable pool Machine address must not hold a request for minutes. */
const CONNECT_TIMEOUT_MS = 10_000

/** State every request of one forwarder shares. */
interface Shared {
  readonly logger: Logger
  readonly readyUntil: number
  readonly onUpstreamError: ((code: string) => void) | undefined
  readonly onStream: ((delta: 1 | -1) => void) | undefined
  /** Requests waiting out a refused connection, so close() can answer them. */
  readonly waiting: Set<Proxied>
  closed: boolean
}

/** Body prefix, then every remaining chunk of the same stream, untouched. */
async function * prefixThenRest (prefix: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  if (prefix.length > 0) yield prefix
  for await (const chunk of rest) yield chunk as Buffer
}

/**
 * The chunks of `body` as an iterable: undici turns a stream that has already ended (a small
 * chunked body that arrived whole) into a content-length body; an iterable stays chunked.
 */
async function * chunksOf (body: Readable): AsyncGenerator<Buffer> {
  for await (const chunk of body) yield chunk as Buffer
}

/** Answers `err` as the JSON error body of contract §6; never a stack trace. */
function answerError (res: ServerResponse, err: SidecarError): void {
  const body = JSON.stringify(err.toJSON())
  res.writeHead(err.status ?? 502, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  })
  res.end(body)
}

function flushIfIdle (p: Proxied): void {
  // Headers go out with the first chunk when both arrived together; a stream that sends its
  // headers first (event streams, long polls) must not keep them back until the first chunk.
  if (!p.wrote && !p.finished && !p.res.destroyed) p.res.flushHeaders()
}

function retry (p: Proxied): void {
  p.shared.waiting.delete(p)
  p.timer = undefined
  if (!p.finished) p.dispatch()
}

/** One proxied request: the undici dispatch handler (undici 7 controller API). */
class Proxied implements Dispatcher.DispatchHandler {
  readonly shared: Shared
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly dispatcher: Dispatcher
  readonly opts: Dispatcher.DispatchOptions
  readonly prefix: Buffer | undefined
  readonly hasBody: boolean
  readonly chunked: boolean
  controller: Dispatcher.DispatchController | undefined = undefined
  timer: NodeJS.Timeout | undefined = undefined
  /** Connected and sending: from here on request bytes may have been consumed. */
  started = false
  /** Response headers passed to the client. */
  responded = false
  wrote = false
  finished = false
  clientGone = false
  /** Sent again once already, after the app closed the connection before answering. */
  resent = false

  constructor (shared: Shared, req: IncomingMessage, res: ServerResponse, dispatcher: Dispatcher, origin: string, path: string, prefix: Buffer | undefined) {
    this.shared = shared
    this.req = req
    this.res = res
    this.dispatcher = dispatcher
    this.prefix = prefix
    const h = forwardRequestHeaders(req.rawHeaders, req.socket.remoteAddress)
    this.hasBody = h.hasBody
    this.chunked = h.chunked
    this.opts = { origin, path, method: req.method as Dispatcher.HttpMethod, headers: h.headers, body: null }
    res.on('close', () => { this.onClientClose() })
  }

  /** A fresh body for each attempt: retries only happen before any of it was read. */
  body (): Buffer | Readable | Buffer[] | AsyncIterable<Buffer> | null {
    const { prefix, req } = this
    if (!this.hasBody) return null
    if (prefix === undefined) return this.chunked ? chunksOf(req) : req
    // The whole body was read: a Buffer keeps content-length, a one-chunk iterable stays chunked.
    if (req.readableEnded) return this.chunked ? [prefix] : prefix
    return prefixThenRest(prefix, req)
  }

  dispatch (): void {
    this.started = false
    this.controller = undefined
    ;(this.opts as { body: unknown }).body = this.body()
    this.dispatcher.dispatch(this.opts, this)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    this.started = true
    if (this.clientGone) controller.abort(new undiciErrors.RequestAbortedError('the client closed the connection'))
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, statusMessage?: string): void {
    // 1xx interim responses (102, 103) are not passed on; the final one follows.
    if (statusCode < 200 || this.clientGone) return
    const res = this.res
    const head = responseHeaders((controller.rawHeaders ?? []) as Buffer[])
    try {
      res.sendDate = false
      res.writeHead(statusCode, statusMessage, head.headers)
    } catch (err) {
      // Node refused the app's status or a header (invalid characters): nothing was sent yet.
      controller.abort(err as Error)
      return
    }
    this.responded = true
    this.shared.onStream?.(1)
    // A body of known size follows its headers at once; an open-ended one (event stream, long
    // poll, chunked) gets its headers flushed if no chunk came with them.
    if (!head.hasLength) process.nextTick(flushIfIdle, this)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.clientGone) return
    this.wrote = true
    if (!this.res.write(chunk)) {
      controller.pause()
      this.res.once('drain', () => { controller.resume() })
    }
  }

  onResponseEnd (): void {
    if (this.finished) return
    this.finished = true
    this.res.end()
    if (this.responded) this.shared.onStream?.(-1)
  }

  onResponseError (_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.finished) return
    const { shared, req, res } = this
    if (this.clientGone || res.destroyed || (req.destroyed && !req.complete)) {
      this.clientGone = true
      this.end()
      shared.logger.debug({ method: req.method, url: req.url, origin: this.opts.origin, cause: err.message }, 'client closed before the upstream response ended')
      return
    }
    if (!this.started && !shared.closed && isConnectionRefused(err) && performance.now() < shared.readyUntil) {
      this.timer = setTimeout(retry, RETRY_INTERVAL_MS, this)
      shared.waiting.add(this)
      return
    }
    if (!this.responded && !this.resent && !this.hasBody && !shared.closed && RESENDABLE_METHODS.has(this.opts.method) && closedBeforeAnswer(err)) {
      this.resent = true
      shared.logger.debug({ method: req.method, url: req.url, origin: this.opts.origin, cause: err.message }, 'the app closed the connection before answering: sending the request again')
      this.dispatch()
      return
    }
    this.fail(upstreamError(err, this.responded), err)
  }

  /** Logs and answers (or cuts) the response for an upstream failure. */
  fail (error: SidecarError, cause: unknown): void {
    const { shared, req, res } = this
    const responded = this.responded
    this.end()
    const c = cause as { code?: unknown, message?: unknown }
    shared.logger.warn({
      code: error.code,
      cause: typeof c?.message === 'string' ? c.message : String(cause),
      causeCode: c?.code,
      method: req.method,
      url: req.url,
      origin: this.opts.origin,
    }, 'upstream error')
    shared.onUpstreamError?.(error.code)
    // Once the headers are out, only a destroyed connection tells the client the body is short.
    // No error argument: it would resurface as the server's 'clientError', and it is logged here.
    if (responded || res.headersSent) res.destroy()
    else answerError(res, error)
  }

  end (): void {
    this.finished = true
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
      this.shared.waiting.delete(this)
    }
    if (this.responded) this.shared.onStream?.(-1)
  }

  onClientClose (): void {
    if (this.res.writableFinished || this.finished) return
    this.clientGone = true
    if (this.timer !== undefined) {
      this.end()
      return
    }
    // Aborting destroys the upstream socket: a half-sent request must not be reused. Without a
    // controller yet, onRequestStart aborts as soon as undici starts the request.
    this.controller?.abort(new undiciErrors.RequestAbortedError('the client closed the connection'))
  }
}

/** Builds the per-origin connection pools once; forward() only dispatches. */
export function createForwarder (options: ForwarderOptions): Forwarder {
  const origin = new URL(options.origin).origin
  const poolOptions: Pool.Options = {
    // One request per connection at a time: a slow response never holds up another.
    pipelining: 1,
    // Idle connections are dropped before the app server drops them (gunicorn 2 s, Node 5 s,
    // puma 20 s), so a request is never written onto a socket the app is closing. A
    // `Keep-Alive: timeout=n` from the app is honoured minus the threshold.
    keepAliveTimeout: 1_500,
    keepAliveTimeoutThreshold: 1_000,
    keepAliveMaxTimeout: 60_000,
    headersTimeout: options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
    // Event streams may be quiet for minutes: no body timeout.
    bodyTimeout: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    strictContentLength: true,
  }
  const appPool = new Pool(origin, poolOptions)
  let others: Agent | undefined
  const shared: Shared = {
    logger: options.logger,
    readyUntil: performance.now() + options.readyTimeoutMs,
    onUpstreamError: options.onUpstreamError,
    onStream: options.onStream,
    waiting: new Set(),
    closed: false,
  }

  return {
    forward (req, res, forwardOptions) {
      if (res.destroyed || res.writableEnded) return
      const target = forwardOptions?.origin
      let dispatcher: Dispatcher = appPool
      let to = origin
      if (target !== undefined && target !== origin) {
        dispatcher = others ??= new Agent(poolOptions)
        to = target
      }
      const path = requestTarget(req.url)
      if (path === undefined) {
        answerError(res, new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [`request target ${String(req.url)} cannot be proxied`]))
        return
      }
      new Proxied(shared, req, res, dispatcher, to, path, forwardOptions?.prefix).dispatch()
    },

    async close () {
      shared.closed = true
      for (const p of [...shared.waiting]) {
        p.fail(new SidecarError('SIDECAR_ERR_UPSTREAM_UNAVAILABLE'), new Error('the sidecar is stopping'))
      }
      await Promise.all([appPool.destroy(), others?.destroy()])
    },
  }
}
