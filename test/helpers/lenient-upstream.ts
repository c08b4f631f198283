// A deliberately lenient HTTP/1.1 upstream on a raw net.Server, for smuggling and fault tests.
// It parses whatever bytes arrive as a stream of pipelined requests — the way a sloppy app
// server would — and reports every request it parsed, so a second request hidden in the bytes
// the sidecar sends (a smuggled request) shows up as an extra entry instead of a parse error.
// Leniency: `transfer-encoding` containing "chunked" wins over `content-length`; the first
// `content-length` counts when there are several; header names and values are not checked.
import net from 'node:net'
import { createHash } from 'node:crypto'
import { listen } from './net.ts'

/** One request as the upstream parsed it. */
export interface ParsedRequest {
  /** 0-based index over every request this upstream parsed, on any connection. */
  readonly n: number
  /** Which connection (0-based, in accept order) carried it. */
  readonly connection: number
  readonly method: string
  readonly target: string
  readonly version: string
  /** Header lines as received: [name, value], names in their original case. */
  readonly rawHeaders: readonly (readonly [string, string])[]
  /** Lower-case name -> values, in order. */
  readonly headers: ReadonlyMap<string, readonly string[]>
  /** The body bytes, decoded from chunked when it was chunked. */
  body: Buffer
  sha256: string
  /** false: the connection ended before the whole body arrived. */
  complete: boolean
}

/** What to do with a parsed (complete) request. */
export type UpstreamAction =
  /** Answer 200 with a JSON echo ({ n, method, target, bytes, sha256 }), keep-alive. */
  | { readonly kind: 'echo', readonly headers?: Readonly<Record<string, string>> }
  /** Answer with exactly these bytes (a whole raw HTTP response, or a broken one); then maybe close (FIN) after `closeAfterMs`. */
  | { readonly kind: 'raw', readonly bytes: string | Buffer, readonly closeAfterMs?: number }
  /** Destroy the socket without answering (RST when `reset`, else FIN). */
  | { readonly kind: 'drop', readonly reset?: boolean }
  /** Never answer. */
  | { readonly kind: 'stall' }
  /** Answer the status line and headers of a chunked 200, `chunks` chunks `everyMs` apart, then reset. */
  | { readonly kind: 'abort-mid-stream', readonly chunks: number, readonly everyMs: number }

export interface LenientUpstreamOptions {
  /** Decides per request; default echo. Called once the request (with its body) is complete. */
  readonly respond?: (req: ParsedRequest) => UpstreamAction
  /** Act as soon as the headers are parsed, before the body (e.g. reset mid-request). */
  readonly onHeaders?: (req: ParsedRequest) => UpstreamAction | undefined
}

export interface LenientUpstream {
  readonly port: number
  readonly requests: ParsedRequest[]
  /** Connections accepted so far. */
  readonly connections: () => number
  /** Connections currently open. */
  readonly open: () => number
  close (): Promise<void>
}

const CRLF_CRLF = Buffer.from('\r\n\r\n')

function echo (req: ParsedRequest, headers: Readonly<Record<string, string>> = {}): string {
  const body = JSON.stringify({ n: req.n, method: req.method, target: req.target, bytes: req.body.length, sha256: req.sha256 })
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`
}

/** Starts the lenient upstream on 127.0.0.1:0. */
export async function startLenientUpstream (options: LenientUpstreamOptions = {}): Promise<LenientUpstream> {
  const requests: ParsedRequest[] = []
  const sockets = new Set<net.Socket>()
  const timers = new Set<NodeJS.Timeout>()
  let accepted = 0

  const server = net.createServer((socket) => {
    const connection = accepted++
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
    socket.on('error', () => {})
    let buf: Buffer = Buffer.alloc(0)
    let current: ParsedRequest | undefined
    // Body state of `current`.
    let mode: 'length' | 'chunked' | 'none' = 'none'
    let remaining = 0
    let chunk: 'size' | 'data' | 'crlf' | 'trailers' = 'size'
    let chunkLeft = 0
    let hash = createHash('sha256')
    const parts: Buffer[] = []
    let dead = false

    const act = (req: ParsedRequest, action: UpstreamAction): void => {
      switch (action.kind) {
        case 'echo':
          socket.write(echo(req, action.headers))
          return
        case 'raw':
          socket.write(action.bytes)
          if (action.closeAfterMs !== undefined) {
            const timer = setTimeout(() => { timers.delete(timer); socket.end() }, action.closeAfterMs)
            timers.add(timer)
          }
          return
        case 'drop':
          dead = true
          if (action.reset === true) socket.resetAndDestroy()
          else socket.destroy()
          return
        case 'stall':
          return
        case 'abort-mid-stream': {
          socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n')
          let sent = 0
          const timer = setInterval(() => {
            if (sent === action.chunks) {
              clearInterval(timer)
              timers.delete(timer)
              dead = true
              socket.resetAndDestroy()
              return
            }
            const data = `data: ${sent++}\n\n`
            socket.write(`${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`)
          }, action.everyMs)
          timers.add(timer)
        }
      }
    }

    const finish = (): void => {
      const req = current as ParsedRequest
      req.body = Buffer.concat(parts)
      req.sha256 = hash.digest('hex')
      req.complete = true
      parts.length = 0
      hash = createHash('sha256')
      current = undefined
      act(req, options.respond?.(req) ?? { kind: 'echo' })
    }

    const take = (n: number): Buffer => {
      const b = buf.subarray(0, n)
      buf = buf.subarray(n)
      return b
    }
    const addBody = (b: Buffer): void => { parts.push(b); hash.update(b) }

    const pump = (): void => {
      for (;;) {
        if (dead) return
        if (current === undefined) {
          // Skip the empty lines some clients put between requests.
          while (buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a) buf = buf.subarray(2)
          const end = buf.indexOf(CRLF_CRLF)
          if (end === -1) return
          const head = take(end + 4).subarray(0, end).toString('latin1')
          const [line = '', ...lines] = head.split('\r\n')
          const [method = '', target = '', version = ''] = line.split(' ')
          const rawHeaders: [string, string][] = []
          const headers = new Map<string, string[]>()
          for (const l of lines) {
            const colon = l.indexOf(':')
            if (colon === -1) continue
            const name = l.slice(0, colon)
            const value = l.slice(colon + 1).trim()
            rawHeaders.push([name, value])
            const key = name.trim().toLowerCase()
            headers.set(key, [...(headers.get(key) ?? []), value])
          }
          const req: ParsedRequest = { n: requests.length, connection, method, target, version, rawHeaders, headers, body: Buffer.alloc(0), sha256: '', complete: false }
          requests.push(req)
          current = req
          const te = (headers.get('transfer-encoding') ?? []).join(',').toLowerCase()
          const cl = headers.get('content-length')?.[0]
          if (te.includes('chunked')) { mode = 'chunked'; chunk = 'size' } else if (cl !== undefined && Number(cl) > 0) { mode = 'length'; remaining = Number(cl) } else mode = 'none'
          const early = options.onHeaders?.(req)
          if (early !== undefined) { act(req, early); if (dead) return }
          if (mode === 'none') { finish(); continue }
        }
        if (mode === 'length') {
          if (buf.length === 0) return
          const b = take(Math.min(remaining, buf.length))
          addBody(b)
          remaining -= b.length
          if (remaining === 0) finish()
          continue
        }
        // chunked: size line, data, CRLF, ... a zero size line, trailers, an empty line.
        if (chunk === 'size') {
          const eol = buf.indexOf('\r\n')
          if (eol === -1) return
          const size = parseInt(take(eol + 2).toString('latin1'), 16)
          // A garbage size is taken as the last chunk: lenient, as promised.
          if (Number.isNaN(size) || size === 0) chunk = 'trailers'
          else { chunk = 'data'; chunkLeft = size }
          continue
        }
        if (chunk === 'data') {
          if (buf.length === 0) return
          const b = take(Math.min(chunkLeft, buf.length))
          addBody(b)
          chunkLeft -= b.length
          if (chunkLeft === 0) chunk = 'crlf'
          continue
        }
        if (chunk === 'crlf') {
          if (buf.length < 2) return
          take(2)
          chunk = 'size'
          continue
        }
        const eol = buf.indexOf('\r\n')
        if (eol === -1) return
        const trailer = take(eol + 2)
        if (trailer.length === 2) finish()
      }
    }

    socket.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      pump()
    })
    socket.on('close', () => {
      // A request cut off by the connection stays in `requests` with complete: false.
      if (current !== undefined) {
        current.body = Buffer.concat(parts)
        current.sha256 = hash.digest('hex')
      }
    })
  })
  const port = await listen(server)
  return {
    port,
    requests,
    connections: () => accepted,
    open: () => sockets.size,
    close: async () => {
      for (const timer of timers) clearTimeout(timer)
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
