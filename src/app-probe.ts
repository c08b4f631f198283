// Is the app accepting connections? One bounded TCP connect to app.url's host and port; used
// by the health endpoint (contract §7: 200 once the app accepts connections).
import net from 'node:net'

function hostPort (url: string): { host: string, port: number } {
  const u = new URL(url)
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
  // URL keeps IPv6 literals in brackets; net.connect wants them bare.
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
  return { host, port }
}

/** One TCP connect to the app URL's host:port; true when it is accepted within timeoutMs. */
export function canConnect (url: string, timeoutMs: number): Promise<boolean> {
  const { host, port } = hostPort(url)
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

/** Polls until the app accepts a connection (true) or timeoutMs passes (false). */
export async function waitForApp (url: string, options: { timeoutMs: number, intervalMs?: number, signal?: AbortSignal }): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs
  const interval = options.intervalMs ?? 100
  while (options.signal?.aborted !== true) {
    const left = deadline - Date.now()
    if (left <= 0) return false
    if (await canConnect(url, Math.min(left, 1000))) return true
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))))
  }
  return false
}
