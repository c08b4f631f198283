// The upstream app every target proxies to: a small GET, a body echo, a 16 MiB GET, Livewire-style
// event streams stamped with the send time, and held-open streams. Run as a child: APP_PORT=n.
import http from 'node:http'
import { PATHS, SMALL_BODY, bigBody } from '../_config.ts'

const port = Number(process.env.APP_PORT)
if (!Number.isInteger(port) || port <= 0) throw new Error('APP_PORT must name a port')

const BIG = bigBody()
const SMALL_HEADERS = { 'content-type': 'application/json', 'content-length': String(SMALL_BODY.length) }
const BIG_HEADERS = { 'content-type': 'application/octet-stream', 'content-length': String(BIG.length) }
const STREAM_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-livewire-stream': 'true' }
/** Requests seen per path: the runner reads them to prove a replayed request never reached the app. */
const counts: Record<string, number> = {}

function echo (req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => { chunks.push(c) })
  req.on('end', () => {
    const body = chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks)
    res.writeHead(200, {
      'content-type': req.headers['content-type'] ?? 'application/octet-stream',
      'content-length': String(body.length),
    })
    res.end(body)
  })
}

/**
 * A Livewire `wire:stream`-like response: `chunks` JSON lines `interval` ms apart, each carrying
 * its sequence number and the monotonic clock (ns) at the moment it was written. CLOCK_MONOTONIC
 * is shared by all processes of the machine, so the client's clock minus `t` is the chunk's delay.
 */
function stream (req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const chunks = Number(url.searchParams.get('chunks') ?? 60)
  const interval = Number(url.searchParams.get('interval') ?? 50)
  req.resume()
  res.writeHead(200, STREAM_HEADERS)
  let seq = 0
  const timer = setInterval(() => {
    const line = JSON.stringify({
      stream: true,
      body: { name: 'rows', content: `<tr><td>job ${seq}</td><td>done</td></tr>`, replace: false },
      endStream: true,
      seq,
      t: String(process.hrtime.bigint()),
    }) + '\n'
    seq++
    if (seq >= chunks) { clearInterval(timer); res.end(line) } else res.write(line)
  }, interval)
  res.on('close', () => { clearInterval(timer) })
}

/** Headers and one comment line, then nothing until the client leaves: an idle open stream. */
function hold (req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume()
  res.writeHead(200, STREAM_HEADERS)
  res.write(': open\n\n')
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app')
  const path = url.pathname
  counts[path] = (counts[path] ?? 0) + 1
  if (path === PATHS.small) { req.resume(); res.writeHead(200, SMALL_HEADERS); res.end(SMALL_BODY); return }
  if (path === PATHS.echo || path === PATHS.livewire) { echo(req, res); return }
  if (path === PATHS.big) { req.resume(); res.writeHead(200, BIG_HEADERS); res.end(BIG); return }
  if (path === PATHS.stream) { stream(req, res, url); return }
  if (path === PATHS.hold) { hold(req, res); return }
  if (path === PATHS.counts) {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(counts))
    return
  }
  req.resume()
  res.writeHead(404, { 'content-type': 'text/plain' })
  res.end('not found\n')
})
// Longer than any proxy's upstream keep-alive, so no proxy races a closing idle socket.
server.keepAliveTimeout = 120_000
server.headersTimeout = 130_000
server.requestTimeout = 0
server.listen(port, '127.0.0.1')

process.on('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
})
