// Byte-for-byte tunnel of upgrade requests (WebSocket): the handshake is re-sent to the app as
// received (plus x-forwarded-*), then both sockets are piped; frames are never parsed.
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { SidecarError } from '../errors.ts'
import { requestTarget, upgradeRequestHeaders } from './headers.ts'
import { isConnectionRefused, upstreamError } from './errors-map.ts'
import { hostPort } from './upstream.ts'

export interface TunnelOptions {
  readonly logger: Logger
  /**
   * A refused connection is retried (every ~100 ms) while the process is younger than this
   * (the app may still be booting, as in the forwarder); after that it answers 502 at once.
   */
  readonly readyTimeoutMs?: number
  /** Metrics hook: a tunnel opened (+1) or closed (-1). */
  readonly onOpen?: (delta: 1 | -1) => void
}

const RETRY_INTERVAL_MS = 100
/** A status line longer than this is not a 101 worth waiting for. */
const STATUS_LINE_MAX = 256
const SWITCHING_RE = /^HTTP\/1\.[01] 101(?: |$)/
/** A side that was ended but never finishes (its peer stopped reading) is destroyed after this. */
const END_GRACE_MS = 10_000

/** What the tunnel needs of an upgrade request. */
export interface UpgradeRequest {
  readonly method: string
  /** The request-target as received. */
  readonly target: string
  readonly versionMinor: 0 | 1
  readonly rawHeaders: readonly string[]
  readonly remoteAddress: string | undefined
}

/** Ends `s` gracefully and destroys it once its pending bytes are flushed (or after a grace). */
function endSoon (s: Duplex): void {
  if (s.destroyed) return
  if (s.writableFinished) { s.destroy(); return }
  s.end()
  s.once('finish', () => { s.destroy() })
  setTimeout(() => { s.destroy() }, END_GRACE_MS).unref()
}

/** The raw HTTP answer written on the client socket when the app cannot be reached. */
function answerOnSocket (socket: Duplex, err: SidecarError): void {
  const body = JSON.stringify(err.toJSON())
  const status = err.status ?? 502
  const reason = status === 504 ? 'Gateway Timeout' : status === 400 ? 'Bad Request' : 'Bad Gateway'
  socket.write(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`)
  // The server's sockets allow half-open connections: close ours fully once the answer is out.
  endSoon(socket)
}

/**
 * Tunnels an upgrade request (from the server's 'upgrade' event) to `origin`: opens a TCP
 * connection, writes the request line and headers as received (x-forwarded-* added, every
 * Sec-WebSocket-* header and subprotocol untouched); once the app answers 101, writes `head`
 * and pipes both ways until either side closes; the other is then closed too. The app's answer (101 or a refusal) reaches
 * the client byte for byte. Unreachable app → an HTTP 502 JSON answer on the socket.
 */
export function tunnelUpgrade (req: UpgradeRequest, socket: Duplex, head: Buffer, origin: string, options: TunnelOptions): void {
  const { logger, onOpen } = options
  const path = requestTarget(req.target)
  if (path === undefined) {
    answerOnSocket(socket, new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [`request target ${req.target} cannot be proxied`]))
    return
  }
  const headers = upgradeRequestHeaders(req.rawHeaders, req.remoteAddress)
  let text = `${req.method} ${path} HTTP/1.${req.versionMinor}\r\n`
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i] as string}: ${headers[i + 1] as string}\r\n`
  text += '\r\n'
  // Header strings are latin1, as Node's parser read them.
  const handshake = Buffer.from(text, 'latin1')
  const to = hostPort(origin)
  const readyUntil = options.readyTimeoutMs ?? 0
  let clientClosed = false
  let upstream: net.Socket | undefined
  let retryTimer: NodeJS.Timeout | undefined

  const onClientEarlyClose = (): void => {
    clientClosed = true
    if (retryTimer !== undefined) clearTimeout(retryTimer)
    upstream?.destroy()
  }
  socket.once('close', onClientEarlyClose)
  socket.on('error', (err) => { logger.debug({ cause: err.message, url: req.target }, 'websocket client socket error') })
  if ('setTimeout' in socket && typeof socket.setTimeout === 'function') (socket as net.Socket).setTimeout(0)

  const connect = (): void => {
    retryTimer = undefined
    if (clientClosed) return
    const up = net.connect(to)
    upstream = up
    up.setNoDelay(true)

    const onConnectError = (err: Error): void => {
      if (clientClosed) return
      if (isConnectionRefused(err) && performance.now() < readyUntil) {
        retryTimer = setTimeout(connect, RETRY_INTERVAL_MS)
        return
      }
      const error = upstreamError(err, false)
      logger.warn({ code: error.code, cause: err.message, causeCode: (err as { code?: unknown }).code, url: req.target, origin }, 'upstream error')
      answerOnSocket(socket, error)
    }
    up.once('error', onConnectError)

    up.once('connect', () => {
      up.off('error', onConnectError)
      socket.off('close', onClientEarlyClose)
      if (clientClosed || socket.destroyed) { up.destroy(); return }
      onOpen?.(1)
      up.write(handshake)
      // The client's bytes reach the app only once it has switched protocols (101). After any
      // other answer the connection would be plain HTTP again, and what the client sent next
      // would reach the app as requests the sidecar never saw (smuggling through a refused
      // upgrade): the answer is passed on, and the app's side is closed after it.
      let status: Buffer = Buffer.alloc(0)
      const onFirst = (chunk: Buffer): void => {
        status = status.length === 0 ? chunk : Buffer.concat([status, chunk])
        const eol = status.indexOf('\r\n')
        if (eol === -1 && status.length < STATUS_LINE_MAX) return
        up.off('data', onFirst)
        up.pause()
        socket.write(status)
        up.pipe(socket)
        if (SWITCHING_RE.test(status.subarray(0, eol === -1 ? status.length : eol).toString('latin1'))) {
          // Bytes that came with the handshake (`head`) are the client's too: held until now.
          if (head.length > 0) up.write(head)
          socket.pipe(up)
        } else {
          up.end()
          socket.resume()
        }
      }
      up.on('data', onFirst)

      let closed = false
      const close = (): void => {
        if (closed) return
        closed = true
        onOpen?.(-1)
      }
      up.on('error', (err) => {
        logger.debug({ cause: err.message, url: req.target }, 'websocket upstream socket error')
        socket.destroy()
      })
      socket.on('error', () => { up.destroy() })
      // A close on one side closes the other: gracefully (pending bytes flushed) after a clean
      // end, at once after an error.
      up.once('close', (hadError) => {
        close()
        if (hadError) socket.destroy()
        else endSoon(socket)
      })
      socket.once('close', (hadError: boolean) => {
        close()
        if (hadError) up.destroy()
        else endSoon(up)
      })
    })
  }
  connect()
}
