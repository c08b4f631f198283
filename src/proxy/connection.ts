// The client side of the data path, on a `net` socket: request heads parsed from the bytes,
// one exchange at a time (pipelined requests wait in order), request bodies framed by their
// Content-Length or chunked framing and passed on as the bytes that came, keep-alive, the
// headers timeout and the answers the sidecar writes itself.
import { Socket } from 'node:net'
import { STATUS_CODES as STATUS_TEXT } from 'node:http'
import { ChunkedDecoder } from '../http/chunked.ts'
import { parseRequestHead, type RequestHead } from '../http/request-head.ts'
import { SidecarError } from '../errors.ts'
import type { BufferedBody } from '../body/inspect.ts'

/**
 * The most request bytes held for one stream before reading from the client pauses: body bytes
 * no one consumes yet, and pipelined requests waiting behind the current one.
 */
export const MAX_HELD_BYTES = 256 * 1024

/** Where a request body goes, as the bytes arrive. */
export interface BodySink {
  /** false: the receiver is full; reading pauses until `Exchange.resumeBody()`. */
  data (buf: Buffer): boolean
  end (): void
}

export interface ConnectionHooks {
  /** A parsed request; the exchange is answered through its methods. */
  request (ex: Exchange): void
  /** An `Upgrade` request: the socket and the bytes read after the head are handed over. */
  upgrade (head: RequestHead, socket: Socket, rest: Buffer): void
  /** Answered at once (the server is closing): true → 503 and close. */
  closing (): boolean
}

export interface ConnectionLimits {
  readonly maxHeadBytes: number
  readonly headersTimeoutMs: number
  readonly keepAliveTimeoutMs: number
}

/** What learns that an exchange ended without a complete response (the forwarder's request). */
export interface AbortListener {
  clientGone (): void
}

const EMPTY = Buffer.alloc(0)

/**
 * Every client socket reads into this one buffer (Node's `onread`), instead of Node allocating a
 * fresh Buffer per read and passing it through the stream machinery ('data' events): JavaScript
 * runs one read callback at a time, and whatever is kept past the callback (a partial head,
 * pipelined requests, body bytes, which may sit in a pending write) is copied out first (own()).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

/** `buf`, or a copy of it when it is a view of the shared read buffer. */
function own (buf: Buffer): Buffer {
  return buf.buffer === READ_BUFFER.buffer ? Buffer.from(buf) : buf
}

/**
 * The socket fields through which `net` delivers reads into a user buffer: `net.Server` takes no
 * `onread` option, so they are set on each accepted socket (found by name, once; without them,
 * this Node reads through 'data' events as before).
 */
const socketSymbols = Object.getOwnPropertySymbols(new Socket())
const kBuffer = socketSymbols.find((s) => s.description === 'kBuffer')
const kBufferCb = socketSymbols.find((s) => s.description === 'kBufferCb')

interface UserBufferHandle { useUserBuffer?: (buf: Uint8Array) => void }

/**
 * Starts reading a socket accepted paused (`pauseOnConnect`) into READ_BUFFER; `onBytes` gets a
 * view valid only during the call. False (and nothing changed) when this Node cannot.
 */
function readIntoSharedBuffer (socket: Socket, onBytes: (view: Buffer) => void): boolean {
  const handle = (socket as unknown as { _handle: UserBufferHandle | null })._handle
  if (kBuffer === undefined || kBufferCb === undefined || handle === null || typeof handle.useUserBuffer !== 'function') return false
  const fields = socket as unknown as Record<symbol, unknown>
  if (fields[kBuffer] !== null || fields[kBufferCb] !== null) return false
  handle.useUserBuffer(READ_BUFFER)
  fields[kBuffer] = READ_BUFFER
  fields[kBufferCb] = (n: number): boolean => { onBytes(READ_BUFFER.subarray(0, n)); return true }
  return true
}
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1')

/** One request and its response on a client connection. */
export class Exchange {
  readonly head: RequestHead
  readonly conn: ClientConnection
  /** The client connection stays open after this response (decided when the head is written). */
  keepAlive: boolean
  /** Response bytes were written. */
  started = false
  /** The response is complete. */
  finished = false
  /** The exchange ended without a complete response (client gone, broken body). */
  aborted = false
  bodyDone: boolean
  /** Body bytes received so far, as they came (with their chunked framing). */
  private queue: Buffer[] = []
  private queued = 0
  private sink: BodySink | undefined = undefined
  private blocked = false
  private remaining: number
  private readonly decoder: ChunkedDecoder | undefined
  private continued = false
  /** Decoded body bytes for the body rules (readPrefix), while they are read. */
  private tap: ((buf: Buffer, from: number, to: number) => void) | undefined = undefined
  /** Body bytes are read only to be thrown away (the response is done, the body was not wanted). */
  private discarding = false

  constructor (conn: ClientConnection, head: RequestHead) {
    this.conn = conn
    this.head = head
    this.keepAlive = head.keepAlive
    this.bodyDone = head.body === 'none'
    this.remaining = head.body === 'length' ? head.contentLength : 0
    this.decoder = head.body === 'chunked' ? new ChunkedDecoder() : undefined
    if (head.body === 'length' && head.contentLength === 0) this.bodyDone = true
  }

  get remoteAddress (): string | undefined { return this.conn.socket.remoteAddress }

  get socket (): Socket { return this.conn.socket }

  private doneListener: (() => void) | undefined = undefined
  private abortListener: AbortListener | undefined = undefined
  private settled = false

  /** Calls `fn` once when the exchange is over: its response complete, or aborted. */
  onDone (fn: () => void): void {
    if (this.settled) { fn(); return }
    const before = this.doneListener
    this.doneListener = before === undefined ? fn : () => { before(); fn() }
  }

  private settle (): void {
    if (this.settled) return
    this.settled = true
    const fn = this.doneListener
    this.doneListener = undefined
    fn?.()
  }

  /** `l.clientGone()` runs once if the exchange ends without a complete response (one listener). */
  onAbort (l: AbortListener): void {
    if (this.aborted) { l.clientGone(); return }
    this.abortListener = l
  }

  /** `Expect: 100-continue`: the client waits for this before sending the body. */
  private continueOnce (): void {
    if (this.continued || this.bodyDone || !this.head.expectContinue || this.started) return
    this.continued = true
    this.conn.socket.write(CONTINUE)
  }

  /**
   * Takes `chunk[start..]` as body bytes; returns the index past this body's bytes (the rest is
   * the next request), or -1 when the body is broken (the exchange is then aborted).
   */
  feed (chunk: Buffer, start: number): number {
    let end: number
    if (this.decoder !== undefined) {
      end = this.decoder.feed(chunk, start, this.tap)
      if (end === -1) {
        this.broken(this.decoder.error ?? 'invalid chunked body')
        return -1
      }
      if (this.decoder.done) this.bodyDone = true
      else end = chunk.length
    } else {
      const n = Math.min(this.remaining, chunk.length - start)
      end = start + n
      this.remaining -= n
      if (this.tap !== undefined && n > 0) this.tap(chunk, start, end)
      if (this.remaining === 0) this.bodyDone = true
    }
    if (end > start) this.pass(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end))
    if (this.bodyDone) this.bodyEnded()
    return end
  }

  private pass (buf: Buffer): void {
    if (this.discarding) return
    if (this.sink !== undefined) {
      if (!this.sink.data(buf)) this.block()
      return
    }
    this.queue.push(buf)
    this.queued += buf.length
    if (this.tap === undefined && this.queued >= MAX_HELD_BYTES) this.block()
  }

  private bodyEnded (): void {
    this.waitEnd?.()
    if (this.sink !== undefined) this.sink.end()
    if (this.finished) this.conn.exchangeDone(this)
  }

  private block (): void {
    if (this.blocked) return
    this.blocked = true
    this.conn.flow()
  }

  /** Reading is paused for this body. */
  get isBlocked (): boolean { return this.blocked }

  /** The sink can take more. */
  resumeBody (): void {
    if (!this.blocked) return
    this.blocked = false
    this.conn.flow()
  }

  /** From now on the body goes to `sink`: what was read already first, then the rest. */
  attachBody (sink: BodySink): void {
    this.sink = sink
    const queue = this.queue
    this.queue = []
    this.queued = 0
    this.blocked = false
    let full = false
    for (const buf of queue) if (!sink.data(buf)) full = true
    if (this.bodyDone) sink.end()
    else this.continueOnce()
    if (full) this.block()
    else this.conn.flow()
  }

  /**
   * Reads the body for the body rules: resolves with its decoded bytes when it ends within
   * `maxBytes` (complete), or with the first `maxBytes` of them once more arrived (not complete);
   * reading then pauses and every byte read stays queued for attachBody(). Rejects with
   * SIDECAR_ERR_BODY_TIMEOUT after `timeoutMs`, SIDECAR_ERR_BODY_ABORTED when the client goes.
   */
  readPrefix (maxBytes: number, timeoutMs: number): Promise<BufferedBody> {
    if (this.bodyDone && this.queued === 0) return Promise.resolve({ bytes: EMPTY, complete: true })
    return new Promise<BufferedBody>((resolve, reject) => {
      const parts: Buffer[] = []
      let held = 0
      let settled = false
      let timer: NodeJS.Timeout | undefined
      const settle = (): void => {
        settled = true
        this.tap = undefined
        clearTimeout(timer)
        this.bodyWaiter = undefined
      }
      this.bodyWaiter = (reason) => {
        if (settled) return
        settle()
        reject(new SidecarError('SIDECAR_ERR_BODY_ABORTED', [held, reason]))
      }
      this.tap = (buf, from, to) => {
        if (settled) return
        const n = to - from
        if (held + n > maxBytes) {
          if (held < maxBytes) parts.push(buf.subarray(from, from + maxBytes - held))
          settle()
          this.block()
          resolve({ bytes: Buffer.concat(parts), complete: false })
          return
        }
        parts.push(buf.subarray(from, to))
        held += n
      }
      this.waitEnd = () => {
        if (settled) return
        settle()
        // One part (a body that came in one read) is passed on as it is: no copy.
        resolve({ bytes: parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts, held), complete: true })
      }
      this.continueOnce()
      // The bytes already read are decoded again through the tap, once.
      const queue = this.queue
      const wasDone = this.bodyDone
      if (queue.length > 0) {
        this.queue = []
        this.queued = 0
        this.replay(queue)
      }
      if (wasDone || this.bodyDone) this.waitEnd?.()
      // A body that was all here already needs no timer (most small bodies come with the head).
      if (!settled) {
        timer = setTimeout(() => {
          if (settled) return
          settle()
          this.block()
          reject(new SidecarError('SIDECAR_ERR_BODY_TIMEOUT', [timeoutMs]))
        }, timeoutMs)
      }
      this.conn.flow()
    })
  }

  /** Set while readPrefix waits: called when the body is aborted. */
  private bodyWaiter: ((reason: string) => void) | undefined = undefined
  private waitEnd: (() => void) | undefined = undefined

  /** Re-reads queued raw bytes through the decoder-free tap (content-length) or a fresh decoder. */
  private replay (queue: Buffer[]): void {
    const tap = this.tap
    if (this.decoder === undefined) {
      for (const buf of queue) {
        if (tap !== undefined) tap(buf, 0, buf.length)
        this.queue.push(buf)
        this.queued += buf.length
      }
      return
    }
    const d = new ChunkedDecoder()
    for (const buf of queue) {
      d.feed(buf, 0, tap)
      this.queue.push(buf)
      this.queued += buf.length
    }
  }

  private broken (reason: string): void {
    const err = new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [reason])
    this.keepAlive = false
    if (!this.started) this.answer(err.status ?? 400, 'application/json; charset=utf-8', JSON.stringify(err.toJSON()))
    this.abort(reason)
  }

  /** Ends the exchange without a complete response: listeners run, the connection closes. */
  abort (reason: string): void {
    if (this.aborted || (this.finished && this.bodyDone)) return
    this.aborted = true
    this.bodyWaiter?.(reason)
    const l = this.abortListener
    this.abortListener = undefined
    l?.clientGone()
    this.settle()
    this.conn.close(this.started && !this.finished)
  }

  /** The `Connection` field of a response head: decided here, once. */
  connectionField (): string {
    if (!this.bodyDone && this.head.expectContinue && !this.continued) this.keepAlive = false
    if (this.conn.closingSoon()) this.keepAlive = false
    if (!this.keepAlive) return 'Connection: close\r\n'
    return this.head.versionMinor === 0 ? 'Connection: keep-alive\r\n' : ''
  }

  /** Writes response bytes; false when the client's buffer is over its mark (wait for 'drain'). */
  write (buf: Buffer | string, done?: () => void): boolean {
    this.started = true
    return this.conn.socket.write(buf, done)
  }

  /** Writes response text (a head) as latin1 bytes. */
  writeText (text: string): boolean {
    this.started = true
    return this.conn.socket.write(text, 'latin1')
  }

  /** The response is complete. */
  end (last?: Buffer | string): void {
    if (this.finished || this.aborted) return
    this.started = true
    if (last !== undefined) this.conn.socket.write(last)
    this.finished = true
    if (!this.bodyDone && this.sink === undefined) {
      // The body was not wanted (a replay by path, an error): what is left of it is read and
      // dropped, as Node's server does, so that the connection can carry the next request.
      this.discarding = true
      this.queue = []
      this.queued = 0
      this.blocked = false
    }
    this.settle()
    this.conn.responseDone(this)
  }

  /** A whole answer written by the sidecar itself. */
  answer (status: number, contentType: string, body: string, extra = ''): void {
    const conn = this.connectionField()
    const text = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\n${extra}content-type: ${contentType}\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n${conn}\r\n`
    this.end(this.head.method === 'HEAD' ? text : text + body)
  }

  /** Cuts the response: the client sees a short body (the connection closes). */
  destroy (): void {
    this.keepAlive = false
    this.abort('destroyed')
    this.conn.socket.destroy()
  }
}

function parseNext (c: ClientConnection): void { c.next() }

/** One client connection. */
export class ClientConnection {
  readonly socket: Socket
  private readonly hooks: ConnectionHooks
  private readonly limits: ConnectionLimits
  /** Bytes read but not yet parsed (the next request head, pipelined requests). */
  private pending: Buffer | undefined = undefined
  /** The growing buffer `pending` may be a view of (append()); bytes past `pending` are free. */
  private acc: Buffer | undefined = undefined
  /** `pending.length` when the parser last said 'incomplete' (it then rescans only the new bytes). */
  private seen = 0
  current: Exchange | undefined = undefined
  /** When the head now awaited started (ms, performance clock), 0 when none is awaited. */
  headSince: number
  /** When the connection became idle (ms), 0 while an exchange runs. */
  idleSince = 0
  private paused = false
  private gone = false
  private ending = false
  private readonly onGone: (c: ClientConnection) => void

  constructor (socket: Socket, hooks: ConnectionHooks, limits: ConnectionLimits, now: number, onGone: (c: ClientConnection) => void) {
    this.socket = socket
    this.hooks = hooks
    this.limits = limits
    this.headSince = now
    this.onGone = onGone
    socket.setNoDelay(true)
    if (!readIntoSharedBuffer(socket, (view) => { this.onRead(view) })) {
      socket.on('data', (chunk: Buffer) => { this.onData(chunk) })
    }
    socket.on('end', () => { this.onEnd() })
    socket.on('error', () => { /* 'close' follows */ })
    socket.on('close', () => { this.onClose() })
    // Accepted paused (`pauseOnConnect`), so that no byte is read before the buffer is set.
    socket.resume()
  }

  /** Upgraded: the socket's reads go to its new owner as stream data. */
  private handedOver = false

  private onRead (view: Buffer): void {
    if (this.handedOver) {
      // The tunnel reads the socket as a stream: it gets copies, with the stream's backpressure.
      if (!this.socket.push(Buffer.from(view))) this.socket.pause()
      return
    }
    const ex = this.current
    // Body bytes may be queued, held for the body rules or sit in a pending write: copies.
    this.onData(ex !== undefined && !ex.bodyDone ? Buffer.from(view) : view)
    const p = this.pending
    if (p !== undefined && p.buffer === READ_BUFFER.buffer) {
      this.pending = p.length === 0 ? undefined : Buffer.from(p)
    }
  }

  /** Whether the connection is waiting for a request (closable at once while draining). */
  get idle (): boolean { return this.current === undefined && (this.pending === undefined || this.pending.length === 0) }

  closingSoon (): boolean { return this.ending || this.hooks.closing() }

  private onData (chunk: Buffer): void {
    const ex = this.current
    if (ex !== undefined && !ex.bodyDone) {
      const at = ex.feed(chunk, 0)
      if (at === -1 || at === chunk.length) return
      chunk = chunk.subarray(at)
    }
    this.append(chunk)
    if (this.current === undefined) {
      if (this.idleSince !== 0) { this.idleSince = 0; this.headSince = performance.now() }
      this.next()
    } else {
      this.flow()
    }
  }

  /**
   * Adds bytes to `pending`. A head that arrives in many small reads (a slow or hostile client)
   * is gathered in a buffer that grows by doubling, not copied whole on every read.
   */
  private append (chunk: Buffer): void {
    const p = this.pending
    if (p === undefined || p.length === 0) { this.pending = chunk; this.seen = 0; return }
    const len = p.length + chunk.length
    const acc = this.acc
    if (acc !== undefined && acc.length >= len && p.buffer === acc.buffer && p.byteOffset === acc.byteOffset) {
      chunk.copy(acc, p.length)
      this.pending = acc.subarray(0, len)
      return
    }
    const next = Buffer.allocUnsafe(Math.max(2 * len, 4096))
    p.copy(next, 0)
    chunk.copy(next, p.length)
    this.acc = next
    this.pending = next.subarray(0, len)
  }

  /** Parses and starts requests while there are bytes and no exchange runs. */
  next (): void {
    while (this.current === undefined && !this.gone) {
      // Closing: what the client sent after the last answer is not read (it was told to close).
      if (this.ending && !this.hooks.closing()) { this.pending = undefined; this.close(false); return }
      const buf = this.pending
      if (buf === undefined || buf.length === 0) {
        this.pending = undefined
        if (this.headSince === 0) this.idleSince = performance.now()
        this.flow()
        return
      }
      const r = parseRequestHead(buf, this.limits.maxHeadBytes, this.seen)
      if (r.kind === 'incomplete') {
        this.seen = buf.length
        if (this.headSince === 0) this.headSince = performance.now()
        this.flow()
        return
      }
      if (r.kind === 'error') {
        const err = r.status === 431
          ? new SidecarError('SIDECAR_ERR_SERVER_HEADERS_TOO_LARGE', [this.limits.maxHeadBytes])
          : new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [r.reason])
        this.answerAndClose(r.status, err)
        return
      }
      const head = r.head
      this.seen = 0
      this.headSince = 0
      this.idleSince = 0
      const rest = buf.length > head.headLength ? buf.subarray(head.headLength) : undefined
      this.pending = undefined
      if (head.upgrade && !this.hooks.closing()) {
        this.detach()
        this.hooks.upgrade(head, this.socket, rest === undefined ? EMPTY : own(rest))
        return
      }
      const ex = new Exchange(this, head)
      this.current = ex
      if (this.hooks.closing()) {
        ex.keepAlive = false
        const err = new SidecarError('SIDECAR_ERR_SERVER_CLOSING')
        ex.answer(503, 'application/json; charset=utf-8', JSON.stringify(err.toJSON()))
        return
      }
      // Body bytes that came with the head are taken before the handler runs, so that a
      // synchronous answer sees them; the rest of `rest` is the next request.
      if (rest !== undefined) {
        if (ex.bodyDone) {
          this.pending = rest
        } else {
          const body = own(rest)
          const at = ex.feed(body, 0)
          if (at === -1) return
          if (at < body.length) this.pending = body.subarray(at)
        }
      }
      this.hooks.request(ex)
    }
  }

  /** The response of `ex` is complete. */
  responseDone (ex: Exchange): void {
    if (ex.bodyDone) this.exchangeDone(ex)
    else if (!ex.keepAlive) this.close(false)
    else this.flow()
  }

  /** Both the body and the response of `ex` are complete: on to the next request, or close. */
  exchangeDone (ex: Exchange): void {
    if (this.current !== ex) return
    this.current = undefined
    // Requests pipelined behind the last one before a shutdown still get an answer (503).
    const drained = this.hooks.closing() && ex.head.keepAlive && this.pending !== undefined && this.pending.length > 0
    if (this.gone || (!ex.keepAlive && !drained)) { this.close(false); return }
    this.headSince = 0
    if (this.pending !== undefined && this.pending.length > 0) {
      this.headSince = performance.now()
      // A pipelined request starts outside the caller's stack: it may still be writing.
      process.nextTick(parseNext, this)
    } else {
      // Nothing to parse: only the idle bookkeeping, at once (no tick per request).
      this.next()
    }
  }

  /** Pauses or resumes reading from the client for the current needs. */
  flow (): void {
    if (this.gone) return
    const ex = this.current
    const hold = (ex !== undefined && (ex.bodyDone ? (this.pending?.length ?? 0) >= MAX_HELD_BYTES : ex.isBlocked))
    if (hold && !this.paused) { this.paused = true; this.socket.pause() } else if (!hold && this.paused) { this.paused = false; this.socket.resume() }
  }

  private answerAndClose (status: number, err: SidecarError): void {
    const body = JSON.stringify(err.toJSON())
    if (this.socket.writable) {
      this.socket.write(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`)
    }
    this.close(false)
  }

  /** The headers timeout or the idle keep-alive timeout passed (checked by the server's sweep). */
  sweep (now: number): void {
    if (this.gone || this.current !== undefined) return
    if (this.headSince !== 0 && this.pending !== undefined && this.pending.length > 0) {
      if (now - this.headSince >= this.limits.headersTimeoutMs) {
        this.answerAndClose(408, new SidecarError('SIDECAR_ERR_SERVER_HEADERS_TIMEOUT', [this.limits.headersTimeoutMs]))
      }
      return
    }
    const since = this.idleSince !== 0 ? this.idleSince : this.headSince
    const limit = this.idleSince !== 0 ? this.limits.keepAliveTimeoutMs : this.limits.headersTimeoutMs
    if (since !== 0 && now - since >= limit) {
      if (this.idleSince === 0) this.answerAndClose(408, new SidecarError('SIDECAR_ERR_SERVER_HEADERS_TIMEOUT', [this.limits.headersTimeoutMs]))
      else this.close(false)
    }
  }

  /** Closes after what was written is flushed; `cut` destroys at once (a response cut short). */
  close (cut: boolean): void {
    if (this.gone) return
    this.ending = true
    const s = this.socket
    if (cut || s.destroyed) { s.destroy(); return }
    if (s.writableEnded) return
    s.end()
    // A client that never reads its answer must not hold the socket.
    s.once('finish', () => { s.destroy() })
    setTimeout(() => { s.destroy() }, 10_000).unref()
  }

  /** Closes now if idle (draining); otherwise after the current response. */
  closeWhenIdle (): void {
    this.ending = true
    if (this.current === undefined) this.close(false)
  }

  private onEnd (): void {
    // A client that ends its side is gone, as for Node's server: an exchange still running is
    // aborted (its upstream request too), an answer already complete is flushed, then we close.
    const ex = this.current
    this.ending = true
    if (ex === undefined || (ex.finished && ex.bodyDone)) { this.close(false); return }
    ex.abort('the client closed the connection')
  }

  private onClose (): void {
    if (this.gone) return
    this.gone = true
    const ex = this.current
    if (ex !== undefined && !(ex.finished && ex.bodyDone)) ex.abort('the client closed the connection')
    this.current = undefined
    this.pending = undefined
    this.onGone(this)
  }

  /** The socket now belongs to someone else (an upgrade tunnel). */
  private detach (): void {
    this.gone = true
    this.handedOver = true
    this.socket.removeAllListeners('data')
    this.socket.removeAllListeners('end')
    this.socket.removeAllListeners('close')
    this.socket.removeAllListeners('error')
    if (this.paused) { this.paused = false; this.socket.resume() }
    this.onGone(this)
  }
}
