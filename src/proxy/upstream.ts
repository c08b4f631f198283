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

function onIdleTimeout (this: net.Socket): void { this.destroy() }
function onIdleData (this: net.Socket): void { this.destroy() }

export class UpstreamPool {
  readonly origin: string
  readonly host: string
  readonly port: number
  /** `host[:port]` of the origin: the Host of a request that came without one. */
  readonly authority: string
  private readonly idle: net.Socket[] = []
  private readonly all = new Set<net.Socket>()
  private closed = false

  constructor (origin: string) {
    this.origin = origin
    const { host, port } = hostPort(origin)
    this.host = host
    this.port = port
    this.authority = new URL(origin).host
  }

  /** An idle kept-alive socket, or undefined. */
  take (): net.Socket | undefined {
    while (this.idle.length > 0) {
      const s = this.idle.pop() as net.Socket
      s.setTimeout(0)
      s.off('timeout', onIdleTimeout)
      s.off('end', onIdleTimeout)
      s.off('data', onIdleData)
      if (!s.destroyed && s.readable && s.writable) return s
      s.destroy()
    }
    return undefined
  }

  /** A new connection (not yet connected). */
  connect (): net.Socket {
    const s = net.connect({ host: this.host, port: this.port, noDelay: true })
    this.all.add(s)
    s.once('close', () => { this.forget(s) })
    return s
  }

  /** `s` finished a response cleanly and may carry another request within `idleMs`. */
  release (s: net.Socket, idleMs: number): void {
    if (this.closed || idleMs <= 0 || s.destroyed || !s.readable || !s.writable) { s.destroy(); return }
    s.removeAllListeners('data')
    s.removeAllListeners('end')
    s.removeAllListeners('error')
    s.removeAllListeners('drain')
    s.on('error', () => {})
    // The app closing an idle socket ends it here; data on an idle socket is a broken app.
    s.once('end', onIdleTimeout)
    s.on('data', onIdleData)
    s.on('timeout', onIdleTimeout)
    s.setTimeout(idleMs)
    this.idle.push(s)
  }

  private forget (s: net.Socket): void {
    this.all.delete(s)
    const i = this.idle.indexOf(s)
    if (i !== -1) this.idle.splice(i, 1)
  }

  /** Destroys every connection. */
  destroy (): void {
    this.closed = true
    for (const s of this.all) s.destroy()
    this.all.clear()
    this.idle.length = 0
  }
}
