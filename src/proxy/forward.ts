// Forwards an exchange to the app (or a pool Machine) over a kept-alive socket: the request head
// edited as text and written with the body bytes as they came, the response framed from the app's
// bytes and passed to the client chunk by chunk, with backpressure both ways.
import type net from 'node:net'
import { STATUS_CODES } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { SidecarError } from '../errors.ts'
import { ChunkedDecoder } from '../http/chunked.ts'
import { parseResponseHead, type ResponseHead } from '../http/response-head.ts'
import { upstreamRequestHead, requestTarget, responseHeadText } from './headers.ts'
import { isConnectionRefused, upstreamError, upstreamFault } from './errors-map.ts'
import type { AbortListener, BodySink, Exchange } from './connection.ts'
import { UpstreamPool, idleTimeoutFor, type UpstreamUser } from './upstream.ts'

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
  /** A different upstream (a pool Machine's private URL); connections are pooled per origin. */
  readonly origin?: string
}

export interface Forwarder {
  /**
   * Proxies the exchange to the upstream and streams the answer back. Never throws: every
   * failure ends as a JSON error response or, once the response has started, a cut connection.
   */
  forward (ex: Exchange, options?: ForwardOptions): void
  /** Destroys the upstream connections (after the drain) and answers 502 to requests waiting for the app. */
  close (): Promise<void>
}

/**
 * Idempotent methods (RFC 9110 §9.2.2): without a body, sending one again after the app closed a
 * kept-alive connection under it cannot do anything twice that the client did not ask for.
 */
const RESENDABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** How often a refused connection is tried again inside the ready window. */
const RETRY_INTERVAL_MS = 100
const DEFAULT_HEADERS_TIMEOUT_MS = 300_000
/** A bounded connect: an unroutable pool Machine address must not hold a request for minutes. */
const CONNECT_TIMEOUT_MS = 10_000
/** As Node's and undici's own default limit for a response head. */
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1')
const END_LAST_CHUNK = Buffer.from('\r\n0\r\n\r\n', 'latin1')
const CRLF = Buffer.from('\r\n', 'latin1')
/** Bodies up to this size that arrive whole with their head are written with it as one text. */
const SMALL_BODY_BYTES = 4096

/** State every request of one forwarder shares. */
interface Shared {
  readonly logger: Logger
  readonly readyUntil: number
  readonly headersTimeoutMs: number
  readonly onUpstreamError: ((code: string) => void) | undefined
  readonly onStream: ((delta: 1 | -1) => void) | undefined
  /** Requests waiting out a refused connection, so close() can answer them. */
  readonly waiting: Set<Proxied>
  closed: boolean
}

const enum_ = { CONNECTING: 0, HEAD: 1, BODY: 2, DONE: 3 } as const

function closedError (): Error {
  return Object.assign(new Error('other side closed'), { code: 'ECONNRESET' })
}

/** One proxied request. */
class Proxied implements BodySink, UpstreamUser, AbortListener {
  readonly shared: Shared
  readonly ex: Exchange
  readonly pool: UpstreamPool
  readonly headText: string
  socket: net.Socket | undefined = undefined
  phase: number = enum_.CONNECTING
  reused = false
  resent = false
  bodyAttached = false
  /** The whole request body went to the app. */
  bodySent = false
  responded = false
  gotBytes = false
  timer: NodeJS.Timeout | undefined = undefined
  /** When the request was sent (performance clock): the headers timeout counts from here. */
  sentAt = 0
  resBuf: Buffer | undefined = undefined
  res: ResponseHead | undefined = undefined
  remaining = 0
  decoder: ChunkedDecoder | undefined = undefined
  /** Chunked pass-through: framing bytes after the last data, not yet written. */
  framing: Buffer[] | undefined = undefined
  wroteData = false
  /** Chunk ends in the current app chunk (pass-through) or data ranges (HTTP/1.0 client). */
  dataTo = -1
  /** Re-frame a close-delimited body as chunked for an HTTP/1.1 client. */
  wrapChunks = false
  /** Decode chunked for an HTTP/1.0 client. */
  unchunk = false
  idleMs = 0
  /** Reading from the app is paused until the client has taken every byte written (see out()). */
  waitingDrain = false
  /** Writes of read-buffer bytes whose callback has not run yet. */
  pendingWrites = 0
  /** The upstream socket, once the response is complete, to be released after the last write. */
  toRelease: net.Socket | undefined = undefined
  // UpstreamUser: the events of the socket carrying this request.
  upConnect (): void { this.connected() }
  upData (chunk: Buffer): void { this.onUpData(chunk) }
  upEnd (): void { this.onUpEnd() }
  upError (err: Error): void { this.onUpError(err) }
  upClose (): void { this.onUpError(closedError()) }
  upDrain (): void { this.ex.resumeBody() }
  upTimeout (): void { this.onUpError(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })) }

  /** The write callback of out(), made once. */
  onWritten: (() => void) | undefined = undefined

  /** The decoder's data callback, made for chunked responses only. */
  onTap: ((buf: Buffer, from: number, to: number) => void) | undefined = undefined

  constructor (shared: Shared, ex: Exchange, pool: UpstreamPool, path: string) {
    this.shared = shared
    this.ex = ex
    this.pool = pool
    this.headText = upstreamRequestHead(ex.head, path, ex.remoteAddress, pool.authority)
  }

  start (): void {
    this.ex.onAbort(this)
    if (!this.ex.aborted) this.attempt(false)
  }

  attempt (fresh: boolean): void {
    const s = fresh ? undefined : this.pool.take(this)
    this.reused = s !== undefined
    if (s !== undefined) {
      this.socket = s
      this.send()
    } else {
      this.phase = enum_.CONNECTING
      const socket = this.pool.connect(this)
      this.socket = socket
      socket.setTimeout(CONNECT_TIMEOUT_MS)
    }
  }

  connected (): void {
    this.socket?.setTimeout(0)
    this.send()
  }

  send (): void {
    const socket = this.socket as net.Socket
    this.phase = enum_.HEAD
    this.gotBytes = false
    // The headers timeout's sweep finds this request through its socket (phase HEAD).
    this.sentAt = performance.now()
    if (this.ex.head.body === 'none') {
      this.bodySent = true
      socket.write(this.headText, 'latin1')
    } else if (!this.bodyAttached) {
      // The head and the body bytes read so far in one write.
      socket.cork()
      socket.write(this.headText, 'latin1')
      this.bodyAttached = true
      this.ex.attachBody(this)
      socket.uncork()
    }
  }

  // BodySink: the client's body bytes, as they came.
  data (buf: Buffer): boolean {
    const s = this.socket
    if (s === undefined || this.phase === enum_.DONE) return true
    return s.write(buf)
  }

  end (): void { this.bodySent = true }

  /** Drops the upstream socket (never reused): its events no longer reach this request. */
  dropSocket (): void {
    const s = this.socket
    if (s === undefined) return
    this.socket = undefined
    this.pool.drop(s)
  }

  clearTimer (): void {
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined }
  }

  onUpData (chunk: Buffer): void {
    // One write to the client per read from the app (head and body, framing and data together):
    // corked by the paths that write more than once (corkClient()).
    const client = this.ex.socket
    this.readChunk(chunk)
    if (this.corked) { this.corked = false; client.uncork() }
    // `chunk` is the upstream socket's own read buffer: while the client has not taken all of
    // it, no further read may overwrite it (and the socket may not carry another request).
    // (Only out() writes views of it; the text writes are copies.)
    const pending = this.pendingWrites > 0 && client.writableLength > 0
    const s = this.toRelease
    if (s !== undefined) {
      this.toRelease = undefined
      if (pending) this.pool.drop(s)
      else this.pool.release(s, this.idleMs)
    } else if (pending && this.phase === enum_.BODY && !this.waitingDrain && this.pendingWrites > 0) {
      this.waitingDrain = true
      this.socket?.pause()
    }
  }

  /** The client socket is corked until the end of this read from the app. */
  corked = false

  corkClient (): void {
    if (this.corked) return
    this.corked = true
    this.ex.socket.cork()
  }

  /** Writes bytes of the read buffer to the client, counting them until they are flushed. */
  out (buf: Buffer): void {
    this.pendingWrites++
    this.ex.write(buf, this.onWritten ??= () => {
      if (--this.pendingWrites === 0 && this.waitingDrain) {
        this.waitingDrain = false
        this.socket?.resume()
      }
    })
  }

  readChunk (chunk: Buffer): void {
    this.gotBytes = true
    if (this.phase === enum_.BODY) {
      if (this.res?.body !== 'length') this.corkClient()
      this.body(chunk, 0)
      return
    }
    if (this.phase !== enum_.HEAD) return
    let buf = this.resBuf === undefined ? chunk : Buffer.concat([this.resBuf, chunk])
    this.resBuf = undefined
    for (;;) {
      const r = parseResponseHead(buf, MAX_RESPONSE_HEAD_BYTES, this.ex.head.method)
      // Kept past this read: a copy (chunk is the socket's read buffer).
      if (r.kind === 'incomplete') { this.resBuf = buf === chunk ? Buffer.from(buf) : buf; return }
      if (r.kind === 'error') { this.fail(upstreamError(upstreamFault('bad-response', r.reason), false), r.reason); return }
      const head = r.head
      if (head.status < 200) {
        // Interim answers (100, 103) are not passed on; 101 was not asked for.
        if (head.status === 101) { this.fail(upstreamError(upstreamFault('bad-response', 'unrequested 101'), false), 'unrequested 101'); return }
        if (buf.length === head.headLength) return
        buf = buf.subarray(head.headLength)
        continue
      }
      if (head.body === 'length' && head.contentLength <= SMALL_BODY_BYTES && buf.length - head.headLength >= head.contentLength) {
        // A small body that came whole with its head: one text write of both (a copy, so the
        // read buffer is free at once), not a writev of the head and a view of the read buffer.
        const end = head.headLength + head.contentLength
        this.respond(head, buf.toString('latin1', head.headLength, end))
        this.complete(buf.length > end)
        return
      }
      this.corkClient()
      this.respond(head, '')
      if (head.body === 'none' || (head.body === 'length' && head.contentLength === 0)) this.complete(buf.length > head.headLength)
      else if (buf.length > head.headLength) this.body(buf, head.headLength)
      return
    }
  }

  /** Writes the client's response head, followed by `bodyText` (latin1: the body's bytes). */
  respond (head: ResponseHead, bodyText: string): void {
    this.clearTimer()
    this.res = head
    const ex = this.ex
    const http10 = ex.head.versionMinor === 0
    let framing = ''
    if (head.body === 'chunked') {
      if (http10) { this.unchunk = true; ex.keepAlive = false } else framing = 'Transfer-Encoding: chunked\r\n'
      this.decoder = new ChunkedDecoder()
      this.onTap = (buf, from, to) => {
        if (this.unchunk) { if (to > from) this.out(buf.subarray(from, to)) } else this.dataTo = to
      }
    } else if (head.body === 'close') {
      if (http10) ex.keepAlive = false
      else { this.wrapChunks = true; framing = 'Transfer-Encoding: chunked\r\n' }
    } else if (head.body === 'length') {
      this.remaining = head.contentLength
    }
    const text = responseHeadText(head, STATUS_CODES[head.status] ?? 'unknown', ex.connectionField(), framing)
    this.idleMs = idleTimeoutFor(text.keepAlive)
    this.responded = true
    this.shared.onStream?.(1)
    this.phase = enum_.BODY
    ex.writeText(bodyText === '' ? text.head : text.head + bodyText)
  }

  body (chunk: Buffer, start: number): void {
    const res = this.res as ResponseHead
    const ex = this.ex
    if (res.body === 'length') {
      const n = Math.min(this.remaining, chunk.length - start)
      this.out(start === 0 && n === chunk.length ? chunk : chunk.subarray(start, start + n))
      this.remaining -= n
      if (this.remaining === 0) this.complete(start + n < chunk.length)
    } else if (res.body === 'chunked') {
      const decoder = this.decoder as ChunkedDecoder
      this.dataTo = -1
      const end = decoder.feed(chunk, start, this.onTap)
      if (end === -1) {
        this.fail(upstreamError(upstreamFault('bad-response', decoder.error ?? 'invalid chunked body'), true), decoder.error)
        return
      }
      if (!this.unchunk) this.passChunked(chunk, start, decoder.done ? end : chunk.length)
      if (decoder.done) {
        if (!this.unchunk) ex.write(this.wroteData ? END_LAST_CHUNK : LAST_CHUNK)
        this.complete(end < chunk.length)
      }
    } else {
      const part = start === 0 ? chunk : chunk.subarray(start)
      if (this.wrapChunks) {
        ex.write(`${part.length.toString(16)}\r\n`)
        this.out(part)
        ex.write(CRLF)
      } else {
        this.out(part)
      }
    }
  }

  /**
   * Chunked bytes pass as they came, except the last chunk and its trailers: framing after the
   * last data is held back until more data follows, and replaced by a bare last chunk at the end.
   */
  passChunked (chunk: Buffer, start: number, end: number): void {
    if (this.dataTo !== -1) {
      const framing = this.framing
      if (framing !== undefined) { for (const f of framing) this.ex.write(f); this.framing = undefined }
      this.out(start === 0 && this.dataTo === chunk.length ? chunk : chunk.subarray(start, this.dataTo))
      this.wroteData = true
      // Held past this read: copies (chunk is the socket's read buffer).
      if (this.dataTo < end) this.framing = [Buffer.from(chunk.subarray(this.dataTo, end))]
    } else if (end > start) {
      (this.framing ??= []).push(Buffer.from(chunk.subarray(start, end)))
    }
  }

  /** The whole response reached the client; `extra`: the app sent more (never reuse that socket). */
  complete (extra = false): void {
    if (this.phase === enum_.DONE) return
    this.phase = enum_.DONE
    this.clearTimer()
    const res = this.res as ResponseHead
    const s = this.socket
    this.socket = undefined
    this.framing = undefined
    this.waitingDrain = false
    if (s !== undefined) {
      // Released by onUpData once the client has taken the last bytes of the read buffer.
      if (res.keepAlive && this.bodySent && !extra && !this.shared.closed) this.toRelease = s
      else this.pool.drop(s)
    }
    this.ex.end()
    this.shared.onStream?.(-1)
  }

  onUpEnd (): void {
    if (this.phase === enum_.BODY && this.res?.body === 'close') {
      if (this.wrapChunks) this.ex.write(LAST_CHUNK)
      this.complete()
      return
    }
    this.onUpError(closedError())
  }

  onUpError (err: Error): void {
    if (this.phase === enum_.DONE) return
    const { shared, ex } = this
    if (ex.aborted) { this.clientGone(); return }
    const connecting = this.phase === enum_.CONNECTING
    if (connecting && !shared.closed && isConnectionRefused(err) && performance.now() < shared.readyUntil) {
      this.dropSocket()
      this.timer = setTimeout(retry, RETRY_INTERVAL_MS, this)
      shared.waiting.add(this)
      return
    }
    if (this.phase === enum_.HEAD && this.reused && !this.gotBytes && !this.resent && ex.head.body === 'none' &&
      !shared.closed && RESENDABLE_METHODS.has(ex.head.method)) {
      this.resent = true
      this.clearTimer()
      this.dropSocket()
      shared.logger.debug({ method: ex.head.method, url: ex.head.target, origin: this.pool.origin, cause: err.message }, 'the app closed the connection before answering: sending the request again')
      this.attempt(true)
      return
    }
    this.fail(upstreamError(err, this.responded), err)
  }

  /** Logs and answers (or cuts) the response for an upstream failure. */
  fail (error: SidecarError, cause: unknown): void {
    if (this.phase === enum_.DONE) return
    const { shared, ex } = this
    const responded = this.responded
    this.finish()
    const c = cause as { code?: unknown, message?: unknown } | undefined
    shared.logger.warn({
      code: error.code,
      cause: typeof c?.message === 'string' ? c.message : String(cause),
      causeCode: c?.code,
      method: ex.head.method,
      url: ex.head.target,
      origin: this.pool.origin,
    }, 'upstream error')
    shared.onUpstreamError?.(error.code)
    if (responded || ex.started) ex.destroy()
    else ex.answer(error.status ?? 502, 'application/json; charset=utf-8', JSON.stringify(error.toJSON()))
  }

  /** Stops everything of this request: timers, the upstream socket (never reused), the gauge. */
  finish (): void {
    this.phase = enum_.DONE
    this.clearTimer()
    this.shared.waiting.delete(this)
    this.dropSocket()
    this.waitingDrain = false
    if (this.responded) this.shared.onStream?.(-1)
  }

  clientGone (): void {
    if (this.phase === enum_.DONE) return
    const wasWaiting = this.shared.waiting.has(this)
    this.finish()
    if (!wasWaiting) this.shared.logger.debug({ method: this.ex.head.method, url: this.ex.head.target, origin: this.pool.origin }, 'client closed before the upstream response ended')
  }
}

function retry (p: Proxied): void {
  p.shared.waiting.delete(p)
  p.timer = undefined
  if (p.phase !== enum_.DONE && !p.ex.aborted) p.attempt(true)
}

function onHeadersTimeout (p: Proxied): void {
  p.fail(upstreamError(upstreamFault('headers-timeout', 'no response headers in time'), false), upstreamFault('headers-timeout', 'no response headers in time'))
}

/** Builds the per-origin connection pools once; forward() only writes. */
export function createForwarder (options: ForwarderOptions): Forwarder {
  const origin = new URL(options.origin).origin
  const appPool = new UpstreamPool(origin)
  const others = new Map<string, UpstreamPool>()
  const shared: Shared = {
    logger: options.logger,
    readyUntil: performance.now() + options.readyTimeoutMs,
    headersTimeoutMs: options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
    onUpstreamError: options.onUpstreamError,
    onStream: options.onStream,
    waiting: new Set(),
    closed: false,
  }
  const timeoutMs = shared.headersTimeoutMs
  // Requests sent and waiting for their response head are found on the pools' sockets by one
  // sweep, not a timer each (nor a set that every request joins and leaves).
  const sweep = setInterval(() => {
    const now = performance.now()
    const due: Proxied[] = []
    const check = (u: UpstreamUser): void => {
      if (u instanceof Proxied && u.phase === enum_.HEAD && now - u.sentAt >= timeoutMs) due.push(u)
    }
    appPool.forEachUser(check)
    for (const pool of others.values()) pool.forEachUser(check)
    for (const p of due) onHeadersTimeout(p)
  }, Math.min(1000, Math.max(20, Math.floor(timeoutMs / 8))))
  sweep.unref()

  return {
    forward (ex, forwardOptions) {
      if (ex.aborted || ex.finished) return
      const target = forwardOptions?.origin
      let pool = appPool
      if (target !== undefined && target !== origin) {
        pool = others.get(target) ?? new UpstreamPool(target)
        others.set(target, pool)
      }
      const path = requestTarget(ex.head.target)
      if (path === undefined) {
        const err = new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [`request target ${ex.head.target} cannot be proxied`])
        ex.answer(400, 'application/json; charset=utf-8', JSON.stringify(err.toJSON()))
        return
      }
      new Proxied(shared, ex, pool, path).start()
    },

    async close () {
      shared.closed = true
      clearInterval(sweep)
      for (const p of [...shared.waiting]) {
        p.fail(new SidecarError('SIDECAR_ERR_UPSTREAM_UNAVAILABLE'), new Error('the sidecar is stopping'))
      }
      appPool.destroy()
      for (const pool of others.values()) pool.destroy()
    },
  }
}
