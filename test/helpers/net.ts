// Loopback helpers shared by the tests: listen on 127.0.0.1:0 and know the port; a port that
// is guaranteed to refuse connections.
import net from 'node:net'
import type { Server } from 'node:http'

/** Listens on 127.0.0.1:0 and resolves with the port. */
export async function listen (server: Server | net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address')
  return addr.port
}

/** A port nothing listens on: bind one, then close it (a refusal is then guaranteed). */
export async function deadPort (): Promise<number> {
  const s = net.createServer()
  const port = await listen(s)
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** Closes a server and every socket it still holds. */
export async function closeServer (server: Server): Promise<void> {
  server.closeAllConnections?.()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
