// Loopback upstreams ("apps") for proxy tests: echo with sha256, timed event streams, stalls,
// mid-stream aborts, slow headers, exact raw responses and a WebSocket echo. Each listens on
// 127.0.0.1:0 and records what it saw.
import http from 'node:http'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { WebSocketServer } from 'ws'
import { closeServer, listen } from './net.ts'

/** What an app saw of one request. */
export interface SeenRequest {
  readonly method: string
  readonly url: string
  readonly rawHeaders: readonly string[]
  readonly headers: http.IncomingHttpHeaders
  /** The client port of the connection it came on: equal ports, one kept-alive connection. */
  readonly remotePort?: number | undefined
  /** Body length and sha256, once the body ended (`complete`). */
  bytes: number
  sha256: string
  complete: boolean
  /** Resolves when the request's connection closed before the response finished (an abort). */
  readonly aborted: Promise<void>
  /** Resolves when the request body ended or was aborted. */
  readonly done: Promise<void>
}

export interface App {
  readonly url: string
  readonly port: number
  readonly requests: SeenRequest[]
  close (): Promise<void>
}

export function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

const patterns = new Map<number, Buffer>()
/** `n` deterministic, non-repeating-looking bytes (an xorshift stream), cached per size. */
export function patternBytes (n: number): Buffer {
  let buf = patterns.get(n)
  if (buf !== undefined) return buf
  buf = Buffer.allocUnsafe(n)
  let x = 0x9e3779b9 ^ n
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    buf[i] = x & 0xff
  }
  patterns.set(n, buf)
  return buf
}

/** Listens on 127.0.0.1:`port` exactly (an app that starts late on the port a proxy targets). */
export async function listenOn (server: net.Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  return port
}

function record (req: http.IncomingMessage, res: http.ServerResponse, requests: SeenRequest[]): SeenRequest {
  const hash = createHash('sha256')
  let resolveAborted!: () => void
  let resolveDone!: () => void
  const seen: SeenRequest = {
    method: req.method ?? '',
    url: req.url ?? '',
    rawHeaders: [...req.rawHeaders],
    headers: req.headers,
    remotePort: req.socket.remotePort,
    bytes: 0,
    sha256: '',
    complete: false,
    aborted: new Promise<void>((resolve) => { resolveAborted = resolve }),
    done: new Promise<void>((resolve) => { resolveDone = resolve }),
  }
  req.on('data', (chunk: Buffer) => { seen.bytes += chunk.length; hash.update(chunk) })
  req.on('end', () => { seen.complete = true; seen.sha256 = hash.digest('hex'); resolveDone() })
  req.on('error', () => {})
  req.on('close', () => { if (!seen.complete) resolveDone() })
  res.on('close', () => { if (!res.writableFinished) resolveAborted() })
  requests.push(seen)
  return seen
}

async function serve (server: http.Server, requests: SeenRequest[]): Promise<App> {
  const port = await listen(server)
  return { url: `http://127.0.0.1:${port}`, port, requests, close: () => closeServer(server) }
}

/**
 * Echo app. `GET /bytes/<n>` answers patternBytes(n) (with content-length, or chunked in 64 KiB
 * writes with `?chunked=1`). Anything else streams the request body back as it arrives, with the
 * request's content-length when it had one (else chunked); the app records the body's sha256.
 * `/status/<code>` answers that status with no body.
 */
export async function echoApp (): Promise<App> {
  const requests: SeenRequest[] = []
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
    const bytes = /^\/bytes\/(\d+)(\?chunked=1)?$/.exec(url)
    const status = /^\/status\/(\d+)$/.exec(url)
    if (bytes !== null || status !== null) {
      record(req, res, requests)
      req.resume()
      if (status !== null) {
        res.writeHead(Number(status[1]), { 'x-app': 'echo' })
        res.end()
        return
      }
      const body = patternBytes(Number(bytes?.[1]))
      if (bytes?.[2] === undefined) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
        res.end(body)
      } else {
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        let at = 0
        const more = (): void => {
          while (at < body.length) {
            const chunk = body.subarray(at, at + 65536)
            at += chunk.length
            if (!res.write(chunk)) { res.once('drain', more); return }
          }
          res.end()
        }
        more()
      }
      return
    }
    record(req, res, requests)
    const head: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' }
    if (req.headers['content-length'] !== undefined) head['content-length'] = req.headers['content-length']
    res.writeHead(200, head)
    req.pipe(res)
  })
  return serve(server, requests)
}

/**
 * A Livewire-like event stream: `GET /stream?count=N&interval=MS` answers `text/event-stream`
 * with `X-Livewire-Stream: true`, one line `{"i":i,"t":<ms timestamp>}` every `interval` ms.
 */
export async function streamApp (): Promise<App> {
  const requests: SeenRequest[] = []
  const server = http.createServer((req, res) => {
    record(req, res, requests)
    req.resume()
    const q = new URL(req.url ?? '/', 'http://x').searchParams
    const count = Number(q.get('count') ?? 10)
    const interval = Number(q.get('interval') ?? 50)
    res.writeHead(200, { 'content-type': 'text/event-stream', 'x-livewire-stream': 'true', 'cache-control': 'no-cache' })
    // Like PHP's flush() after the headers of a Livewire stream: the headers leave at once.
    res.flushHeaders()
    let i = 0
    const tick = (): void => {
      if (res.destroyed) return
      res.write(`${JSON.stringify({ i, t: Date.now() })}\n`)
      i++
      if (i < count) setTimeout(tick, interval)
      else res.end()
    }
    setTimeout(tick, interval)
  })
  return serve(server, requests)
}

/** Sends headers and one chunk (`first\n`, chunked), then nothing until the connection closes. */
export async function stallApp (): Promise<App> {
  const requests: SeenRequest[] = []
  const server = http.createServer((req, res) => {
    record(req, res, requests)
    req.resume()
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first\n')
  })
  return serve(server, requests)
}

/**
 * Sends headers and part of the body, then destroys the connection: `?framing=length` announces
 * a content-length of 1000 and sends 100 bytes; otherwise chunked, one chunk of 100 bytes.
 */
export async function abortMidStreamApp (): Promise<App> {
  const requests: SeenRequest[] = []
  const server = http.createServer((req, res) => {
    record(req, res, requests)
    req.resume()
    const length = (req.url ?? '').includes('framing=length')
    res.writeHead(200, length ? { 'content-type': 'text/plain', 'content-length': 1000 } : { 'content-type': 'text/plain' })
    res.write(Buffer.alloc(100, 'a'))
    setTimeout(() => { res.socket?.destroy() }, 50)
  })
  return serve(server, requests)
}

/** Reads the request, then answers 200 `late` only after `delayMs` (Infinity: never). */
export async function slowHeadersApp (delayMs: number): Promise<App> {
  const requests: SeenRequest[] = []
  const server = http.createServer((req, res) => {
    record(req, res, requests)
    req.resume()
    if (Number.isFinite(delayMs)) setTimeout(() => { if (!res.destroyed) res.end('late') }, delayMs)
  })
  return serve(server, requests)
}

/**
 * A raw TCP app: answers the first request head of each connection with exactly `response`
 * bytes, then closes it; records every head it receives (bodies are not expected).
 */
export async function rawApp (response: string | Buffer): Promise<App & { heads: string[] }> {
  const heads: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let got = ''
    let answered = false
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1')
      // Every head that arrives is recorded (also any sent after the first), one answer.
      let end: number
      while ((end = got.indexOf('\r\n\r\n')) !== -1) {
        heads.push(got.slice(0, end))
        got = got.slice(end + 4)
        if (!answered) socket.end(response)
        answered = true
      }
    })
  })
  const port = await listen(server)
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests: [],
    heads,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * WebSocket echo: echoes every message (text stays text, binary stays binary); picks the
 * subprotocol `chat.v2` when offered; negotiates permessage-deflate; the message `close-4001` makes it close with code 4001
 * and reason `bye`; a handshake to `/deny` is refused with 403. Handshake request headers and
 * the close codes the app receives are recorded.
 */
export async function websocketEchoApp (port = 0): Promise<App & { closeCodes: number[], open: () => number }> {
  const requests: SeenRequest[] = []
  const closeCodes: number[] = []
  const server = http.createServer((_req, res) => { res.writeHead(426); res.end() })
  const wss = new WebSocketServer({
    server,
    handleProtocols: (protocols) => (protocols.has('chat.v2') ? 'chat.v2' : false),
    perMessageDeflate: true,
    verifyClient: (info, done) => {
      if (info.req.url === '/deny') done(false, 403, 'Forbidden')
      else done(true)
    },
  })
  wss.on('connection', (ws, req) => {
    ws.on('close', (code) => { closeCodes.push(code) })
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      rawHeaders: [...req.rawHeaders],
      headers: req.headers,
      bytes: 0,
      sha256: '',
      complete: true,
      aborted: new Promise<void>(() => {}),
      done: Promise.resolve(),
    })
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'close-4001') { ws.close(4001, 'bye'); return }
      ws.send(data, { binary: isBinary })
    })
  })
  const bound = port === 0 ? await listen(server) : await listenOn(server, port)
  return {
    url: `http://127.0.0.1:${bound}`,
    port: bound,
    requests,
    closeCodes,
    open: () => wss.clients.size,
    close: async () => {
      for (const c of wss.clients) c.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await closeServer(server)
    },
  }
}
