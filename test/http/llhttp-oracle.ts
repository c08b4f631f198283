// Node's own HTTP parser (llhttp) as an oracle for the differential tests: raw bytes go over a
// loopback socket to a node:http server (requests) or come from a raw net server to
// http.request (responses), and what Node made of them is recorded.
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'

export interface NodeRequest {
  method: string
  url: string
  rawHeaders: string[]
  /** Node's IncomingMessage.headers, joined by its rules. */
  headers: Record<string, string | string[]>
  body: string
  trailers: string[]
  /** The body ended as its framing said (false: the connection ended or failed first). */
  complete: boolean
  /** Handed over as an upgrade or CONNECT: the bytes after the head are not HTTP. */
  upgrade: boolean
  /** llhttp's verdict on reusing the connection after this request (false for upgrades). */
  keepAlive: boolean
  /** Node saw `Expect: 100-continue` (its 'checkContinue' event). */
  expectContinue: boolean
}

export interface NodeRequestOutcome {
  requests: NodeRequest[]
  /** llhttp's error code (HPE_...) when Node refused the bytes. */
  error: string | undefined
}

const CASE_TIMEOUT_MS = 3000

/** One node:http server with default parser options, reused for every case. */
export class RequestOracle {
  readonly #server: http.Server
  readonly #byPort = new Map<number, NodeRequestOutcome>()

  private constructor (server: http.Server) {
    this.#server = server
  }

  static async start (): Promise<RequestOracle> {
    // Host is required by the sidecar's parser itself; the oracle is llhttp, not Node's Host check.
    const server = http.createServer({ requireHostHeader: false, keepAliveTimeout: 500 })
    const oracle = new RequestOracle(server)
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const rec = oracle.#record(req.socket)
      const r: NodeRequest = { method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, headers: { ...req.headers } as Record<string, string | string[]>, body: '', trailers: [], complete: false, upgrade: false, keepAlive: res.shouldKeepAlive, expectContinue: false }
      rec.requests.push(r)
      req.setEncoding('latin1')
      req.on('data', (d: string) => { r.body += d })
      req.on('end', () => {
        r.complete = true
        r.trailers = req.rawTrailers
        res.end()
      })
    }
    server.on('request', onRequest)
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      onRequest(req, res)
      const rec = oracle.#record(req.socket).requests
      const last = rec[rec.length - 1]
      if (last !== undefined) last.expectContinue = true
      res.writeContinue()
    })
    // Node answers an Expect other than 100-continue with 417 itself unless this is listened to.
    server.on('checkExpectation', onRequest)
    const tunnel = (req: http.IncomingMessage, socket: net.Socket): void => {
      oracle.#record(socket).requests.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, headers: { ...req.headers } as Record<string, string | string[]>, body: '', trailers: [], complete: true, upgrade: true, keepAlive: false, expectContinue: false })
      socket.destroy()
    }
    server.on('upgrade', tunnel)
    server.on('connect', tunnel)
    server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      const rec = oracle.#record(socket)
      rec.error ??= err.code ?? err.message
      socket.destroy()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return oracle
  }

  #record (socket: net.Socket): NodeRequestOutcome {
    const port = socket.remotePort ?? 0
    let rec = this.#byPort.get(port)
    if (rec === undefined) {
      rec = { requests: [], error: undefined }
      this.#byPort.set(port, rec)
    }
    return rec
  }

  /** Sends `bytes` on a new connection, half-closes it, and reports once the server closed it. */
  async send (bytes: Buffer): Promise<NodeRequestOutcome> {
    const { port } = this.#server.address() as AddressInfo
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    const local = socket.localPort ?? 0
    const rec: NodeRequestOutcome = { requests: [], error: undefined }
    this.#byPort.set(local, rec)
    socket.on('error', () => {})
    socket.resume()
    socket.end(bytes)
    const timer = setTimeout(() => socket.destroy(), CASE_TIMEOUT_MS)
    await once(socket, 'close')
    clearTimeout(timer)
    // Let the server side finish reporting what it parsed before this socket closed.
    await new Promise((resolve) => setImmediate(resolve))
    this.#byPort.delete(local)
    return rec
  }

  async close (): Promise<void> {
    this.#server.closeAllConnections()
    this.#server.close()
    await once(this.#server, 'close')
  }
}

export interface NodeResponseOutcome {
  /** The final response, when Node got its head. */
  status: number | undefined
  reason: string
  rawHeaders: string[]
  body: string
  trailers: string[]
  complete: boolean
  /** The 1xx heads before it (103, 100), as status codes. */
  informational: number[]
  error: string | undefined
}

/** A raw net server that answers every connection with the bytes of the case, then closes. */
export class ResponseOracle {
  readonly #server: net.Server
  readonly #answer: { bytes: Buffer }

  private constructor (server: net.Server, answer: { bytes: Buffer }) {
    this.#server = server
    this.#answer = answer
  }

  static async start (): Promise<ResponseOracle> {
    const answer = { bytes: Buffer.alloc(0) }
    const server = net.createServer((socket) => {
      socket.on('error', () => {})
      // Answer once the request head arrived, then close: a close-delimited body ends there.
      socket.once('data', () => { socket.end(answer.bytes) })
    })
    const oracle = new ResponseOracle(server, answer)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return oracle
  }

  /** What http.request made of `bytes` as the answer to a `method` request. */
  async fetch (bytes: Buffer, method: string): Promise<NodeResponseOutcome> {
    this.#answer.bytes = bytes
    const { port } = this.#server.address() as AddressInfo
    const out: NodeResponseOutcome = { status: undefined, reason: '', rawHeaders: [], body: '', trailers: [], complete: false, informational: [], error: undefined }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { req.destroy(); resolve() }, CASE_TIMEOUT_MS)
      const done = (): void => { clearTimeout(timer); resolve() }
      const req = http.request({ host: '127.0.0.1', port, method, path: '/', agent: false, headers: { connection: 'close' } })
      req.on('information', (info) => { out.informational.push(info.statusCode) })
      req.on('upgrade', (res, socket) => {
        out.status = res.statusCode
        out.reason = res.statusMessage ?? ''
        out.rawHeaders = res.rawHeaders
        out.complete = true
        socket.destroy()
        done()
      })
      req.on('response', (res) => {
        out.status = res.statusCode
        out.reason = res.statusMessage ?? ''
        out.rawHeaders = res.rawHeaders
        res.setEncoding('latin1')
        res.on('data', (d: string) => { out.body += d })
        res.on('end', () => {
          out.complete = true
          out.trailers = res.rawTrailers
        })
        res.on('error', (err: NodeJS.ErrnoException) => { out.error ??= err.code ?? err.message })
        res.on('close', done)
      })
      req.on('error', (err: NodeJS.ErrnoException) => {
        out.error ??= err.code ?? err.message
        done()
      })
      req.end()
    })
    return out
  }

  async close (): Promise<void> {
    this.#server.close()
    await once(this.#server, 'close')
  }
}
