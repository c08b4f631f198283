// Bounded buffering of a request body for body rules. The buffered bytes are the original bytes,
// forwarded as they came; whatever was not read stays in the same stream, untouched.
import type { Readable } from 'node:stream'
import { SidecarError } from '../errors.ts'

/** The start of a request body, or all of it when `complete`. */
export interface BufferedBody {
  readonly bytes: Buffer
  /** true: `bytes` is the whole body (the stream has ended). */
  readonly complete: boolean
}

/**
 * Reads `req` until it ends (complete: true) or until the next chunk would make more than
 * `maxBytes` held. Then it stops reading: that chunk is put back (unshift) at the head of the
 * stream, which is left paused without our listeners, so the caller forwards `bytes` and then the
 * REST OF THE SAME STREAM, byte for byte. `bytes.length <= maxBytes` always. The stream was paused
 * explicitly: pipe it, iterate it or call resume() (undici does); a bare 'data' listener alone
 * does not restart a paused stream.
 * Rejects with SIDECAR_ERR_BODY_ABORTED (the stream's error as `cause`) when the client aborts or
 * the body breaks before that point, and with SIDECAR_ERR_BODY_TIMEOUT when `timeoutMs` (if given)
 * passes first; the stream is then left paused, its owner closes it.
 */
export function readBodyPrefix (req: Readable, maxBytes: number, timeoutMs?: number): Promise<BufferedBody> {
  return new Promise<BufferedBody>((resolve, reject) => {
    const chunks: Buffer[] = []
    let held = 0
    let timer: NodeJS.Timeout | undefined

    const cleanup = (): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
    }
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      if (held + buf.length > maxBytes) {
        // pause() first: the stream would otherwise go on emitting what it already buffered.
        req.pause()
        cleanup()
        req.unshift(buf)
        resolve({ bytes: Buffer.concat(chunks, held), complete: false })
        return
      }
      chunks.push(buf)
      held += buf.length
    }
    const onEnd = (): void => {
      cleanup()
      resolve({ bytes: Buffer.concat(chunks, held), complete: true })
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(new SidecarError('SIDECAR_ERR_BODY_ABORTED', [held, err.message], { cause: err }))
    }
    // An http.IncomingMessage whose client went away emits 'error' only if someone listens, and
    // then 'close': 'close' before 'end' is the abort either way.
    const onClose = (): void => {
      onError(Object.assign(new Error('the request closed before its body ended'), { code: 'ECONNRESET' }))
    }

    if (req.readableEnded) {
      resolve({ bytes: Buffer.alloc(0), complete: true })
      return
    }
    if (req.destroyed) {
      onClose()
      return
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        req.pause()
        cleanup()
        reject(new SidecarError('SIDECAR_ERR_BODY_TIMEOUT', [timeoutMs]))
      }, timeoutMs)
    }
  })
}
