// Is the app accepting connections? One bounded TCP connect to app.url's host and port, for the
// health endpoint (contract §7: 200 once the app accepts connections) and for waiting on start-up.
import net from 'node:net'

interface Target { readonly host: string, readonly port: number }

/** The last URL parsed: the health path probes the same app.url every time. */
let cached: { url: string, target: Target } | undefined

function targetOf (url: string): Target {
  if (cached?.url === url) return cached.target
  const u = new URL(url)
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
  // URL keeps IPv6 literals in brackets; net.connect wants them bare.
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
  const target = { host, port }
  cached = { url, target }
  return target
}

/**
 * One TCP connect to the host:port of `url` (an http(s) URL; port 80/443 when absent). True when
 * the connection is accepted within `timeoutMs`; false on refusal, any socket error or timeout.
 * The connection is closed at once, before any byte is sent.
 */
export function canConnect (url: string, timeoutMs: number): Promise<boolean> {
  const { host, port } = targetOf(url)
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => { done(false) }, timeoutMs)
    socket.once('connect', () => { done(true) })
    socket.once('error', () => { done(false) })
  })
}

/** Resolves after `ms`, or early when `signal` aborts. */
function pause (ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = (): void => { clearTimeout(timer); resolve() }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Polls `url` with canConnect every `intervalMs` (default 100) until it accepts (true), or
 * `timeoutMs` passes or `signal` aborts (false). No single attempt runs past the deadline.
 */
export async function waitForApp (url: string, options: { timeoutMs: number, intervalMs?: number, signal?: AbortSignal }): Promise<boolean> {
  const { signal } = options
  const deadline = Date.now() + options.timeoutMs
  const interval = options.intervalMs ?? 100
  while (signal?.aborted !== true) {
    const left = deadline - Date.now()
    if (left <= 0) return false
    // A connect that hangs (a SYN dropped by a firewall) must not eat the whole budget alone.
    if (await canConnect(url, Math.min(left, 1000))) return true
    const rest = deadline - Date.now()
    if (rest <= 0) return false
    await pause(Math.min(interval, rest), signal)
  }
  return false
}
