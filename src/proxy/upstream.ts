// Kept-alive connections to one upstream (the app, or a pool Machine): idle sockets are reused
// newest first and closed before the app would close them, so a request is rarely written onto a
// socket the app is closing (the forwarder resends the rare one that is).
import net from 'node:net'

/**
 * Idle connections are dropped before the app server drops them (gunicorn 2 s, Node 5 s, puma
 * 20 s). A `Keep-Alive: timeout=n` from the app is honoured minus a second, at most a minute.
 */
export const DEFAULT_IDLE_MS = 1_500
const THRESHOLD_MS = 1_000
const MAX_IDLE_MS = 60_000

/** `host`/`port` to connect to for an `http://host:port` origin. */
export function hostPort (origin: string): { host: string, port: number } {
  const url = new URL(origin)
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  return { host, port: url.port === '' ? 80 : Number(url.port) }
}

/** The idle time allowed by an app's `Keep-Alive: timeout=n` value (undefined: the default). */
export function idleTimeoutFor (keepAlive: string | undefined): number {
  if (keepAlive === undefined) return DEFAULT_IDLE_MS
  const m = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(keepAlive)
  if (m === null) return DEFAULT_IDLE_MS
  const ms = Number(m[1]) * 1000 - THRESHOLD_MS
  if (ms <= 0) return 0
  return Math.min(ms, MAX_IDLE_MS)
}

/** Who a socket's events go to while it carries a request. */
export interface UpstreamUser {
  upConnect (): void
  upData (chunk: Buffer): void
  upEnd (): void
  upError (err: Error): void
  upClose (): void
  upDrain (): void
  upTimeout (): void
}

/**
 * A socket of the pool: its listeners are installed once, when it is created, and pass each event
 * to the request it carries (`user`), or treat it as the idle socket's end.
 */
interface PooledSocket extends net.Socket {
  user: UpstreamUser | undefined
  pool: UpstreamPool
  /** While idle: when it must no longer be used (performance clock, ms). */
  idleUntil: number
}

/**
 * Bytes read from an upstream socket land in one buffer of its own, reused for every read (Node's
 * `onread`), instead of a fresh allocation per read: the user must copy what it keeps past the
 * call, and must not let the next read start while a write of these bytes is still pending.
 */
export const READ_BUFFER_BYTES = 64 * 1024

function onRead (s: PooledSocket, n: number, buf: Buffer): void {
  // Bytes on an idle socket: the app is broken, the socket is not trusted again.
  if (s.user === undefined) s.destroy()
  else s.user.upData(buf.subarray(0, n))
}

function onConnect (this: PooledSocket): void { this.user?.upConnect() }
function onEnd (this: PooledSocket): void {
  if (this.user === undefined) this.destroy()
  else this.user.upEnd()
}
function onError (this: PooledSocket, err: Error): void { this.user?.upError(err) }
function onClose (this: PooledSocket): void {
  this.pool.forget(this)
  this.user?.upClose()
}
function onDrain (this: PooledSocket): void { this.user?.upDrain() }
function onTimeout (this: PooledSocket): void {
  if (this.user === undefined) this.destroy()
  else this.user.upTimeout()
}

function sweepPool (pool: UpstreamPool): void { pool.sweep() }

export class UpstreamPool {
  readonly origin: string
  readonly host: string
  readonly port: number
  /** `host[:port]` of the origin: the Host of a request that came without one. */
  readonly authority: string
  private readonly idle: PooledSocket[] = []
  private readonly all = new Set<PooledSocket>()
  private closed = false
  /**
   * Idle sockets expire on one timer per pool, armed for the earliest expiry, not a socket
   * timeout each: `socket.setTimeout()` on every release and take was two timer-list updates
   * per proxied request. take() never hands out an expired socket, whenever the timer runs.
   */
  private sweepTimer: NodeJS.Timeout | undefined = undefined
  private sweepAt = Infinity

  constructor (origin: string) {
    this.origin = origin
    const { host, port } = hostPort(origin)
    this.host = host
    this.port = port
    this.authority = new URL(origin).host
  }

  /** An idle kept-alive socket, now carrying `user`'s request, or undefined. */
  take (user: UpstreamUser): net.Socket | undefined {
    if (this.idle.length === 0) return undefined
    const now = performance.now()
    while (this.idle.length > 0) {
      const s = this.idle.pop() as PooledSocket
      if (!s.destroyed && s.readable && s.writable && s.idleUntil > now) {
        s.user = user
        return s
      }
      s.destroy()
    }
    return undefined
  }

  /**
   * A new connection for `user` (its upConnect() follows, or upError()). upData() gets views of
   * the socket's own read buffer (READ_BUFFER_BYTES).
   */
  connect (user: UpstreamUser): net.Socket {
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
    const s = net.connect({
      host: this.host,
      port: this.port,
      noDelay: true,
      onread: { buffer, callback: (n: number, buf: Uint8Array) => { onRead(s, n, buf as Buffer); return true } },
    }) as PooledSocket
    s.user = user
    s.pool = this
    s.idleUntil = 0
    s.on('connect', onConnect)
    s.on('end', onEnd)
    s.on('error', onError)
    s.on('close', onClose)
    s.on('drain', onDrain)
    s.on('timeout', onTimeout)
    this.all.add(s)
    return s
  }

  /** The request on `s` is over; `s` is destroyed, its events go nowhere. */
  drop (s: net.Socket): void {
    (s as PooledSocket).user = undefined
    s.destroy()
  }

  /** `s` finished a response cleanly and may carry another request within `idleMs`. */
  release (s: net.Socket, idleMs: number): void {
    const p = s as PooledSocket
    p.user = undefined
    if (this.closed || idleMs <= 0 || s.destroyed || !s.readable || !s.writable) { s.destroy(); return }
    if (s.isPaused()) s.resume()
    const until = performance.now() + idleMs
    p.idleUntil = until
    this.idle.push(p)
    if (until < this.sweepAt) this.armSweep(until)
  }

  private armSweep (at: number): void {
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer)
    this.sweepAt = at
    // Timers count whole milliseconds: one more, so that the sweep finds the socket expired.
    this.sweepTimer = setTimeout(sweepPool, Math.ceil(at - performance.now()) + 1, this)
    this.sweepTimer.unref()
  }

  /** Destroys the idle sockets whose time ran out; the timer follows the next expiry. */
  sweep (): void {
    this.sweepTimer = undefined
    this.sweepAt = Infinity
    const now = performance.now()
    let next = Infinity
    const idle = this.idle
    for (let i = idle.length - 1; i >= 0; i--) {
      const s = idle[i] as PooledSocket
      if (s.idleUntil <= now) {
        idle.splice(i, 1)
        s.destroy()
      } else if (s.idleUntil < next) {
        next = s.idleUntil
      }
    }
    if (next !== Infinity) this.armSweep(next)
  }

  /** Calls `fn` with the user of every socket that carries a request now. */
  forEachUser (fn: (user: UpstreamUser) => void): void {
    for (const s of this.all) if (s.user !== undefined) fn(s.user)
  }

  /** Forgets a closed socket. */
  forget (s: net.Socket): void {
    const p = s as PooledSocket
    this.all.delete(p)
    const i = this.idle.indexOf(p)
    if (i !== -1) this.idle.splice(i, 1)
  }

  /** Destroys every connection. */
  destroy (): void {
    this.closed = true
    if (this.sweepTimer !== undefined) { clearTimeout(this.sweepTimer); this.sweepTimer = undefined }
    this.sweepAt = Infinity
    for (const s of this.all) { s.user = undefined; s.destroy() }
    this.all.clear()
    this.idle.length = 0
  }
}
