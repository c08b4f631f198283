// The one place where network and undici errors of a request to the app (or a pool Machine)
// become SidecarErrors: which code, which status, and whether a refusal may be retried.
import { SidecarError } from '../errors.ts'

/** Connection-level failures: nothing reached the app, so nothing was processed. */
const UNREACHABLE: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN',
  'EADDRNOTAVAIL', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED',
])

/**
 * The app's bytes were not a response we may pass on: undici's own checks, and Node's
 * res.writeHead refusing the app's status or a header value.
 */
const MALFORMED: ReadonlySet<string> = new Set([
  'UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_HTTP_INVALID_STATUS_CODE', 'ERR_INVALID_CHAR', 'ERR_INVALID_HTTP_TOKEN', 'ERR_HTTP_INVALID_HEADER_VALUE',
])

/** Failures the forwarder itself finds in the app's answer (codes of its own, never Node's). */
export type UpstreamFault = 'headers-timeout' | 'bad-response'
const FAULT_CODES: Readonly<Record<UpstreamFault, string>> = {
  'headers-timeout': 'SIDECAR_UPSTREAM_HEADERS_TIMEOUT',
  'bad-response': 'SIDECAR_UPSTREAM_BAD_RESPONSE',
}

/** An Error for a fault the forwarder found, with a code upstreamError() maps. */
export function upstreamFault (kind: UpstreamFault, message: string): Error {
  return Object.assign(new Error(message), { code: FAULT_CODES[kind] })
}

/** The error's own code, or, for an AggregateError (one per address tried), its first one. */
function codeOf (err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  const inner = (err as { errors?: unknown }).errors
  if (Array.isArray(inner) && inner.length > 0) return codeOf(inner[0])
  return undefined
}

function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * True when the connection was refused (nothing listens on the port yet): the only failure the
 * forwarder retries while the app may still be starting.
 */
export function isConnectionRefused (err: unknown): boolean {
  // Every address tried must have refused (Node's AggregateError carries the first one's code).
  const inner = (err as { errors?: unknown } | null)?.errors
  if (Array.isArray(inner) && inner.length > 0) return inner.every(isConnectionRefused)
  return codeOf(err) === 'ECONNREFUSED'
}

/**
 * The SidecarError for a failed upstream request, with `err` as its cause.
 * `responseStarted`: the response headers were already passed to the client, so the error can
 * only cut the response (SIDECAR_ERR_UPSTREAM_ABORTED, no status). Before that: unreachable →
 * UNAVAILABLE 502, no headers in time → TIMEOUT 504, an invalid response → BAD_RESPONSE 502,
 * a request undici refuses to send → SERVER_BAD_REQUEST 400, anything else (the app closed or
 * reset the connection) → RESET 502.
 */
export function upstreamError (err: unknown, responseStarted: boolean): SidecarError {
  const code = codeOf(err)
  const cause = { cause: err, details: { cause: code ?? messageOf(err) } }
  if (responseStarted) return new SidecarError('SIDECAR_ERR_UPSTREAM_ABORTED', [code ?? messageOf(err)], cause)
  // llhttp's errors carry a code only for some failures; the class name is always there.
  if ((err as { name?: unknown } | null)?.name === 'HTTPParserError') return new SidecarError('SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', [], cause)
  if (code !== undefined) {
    if (UNREACHABLE.has(code)) return new SidecarError('SIDECAR_ERR_UPSTREAM_UNAVAILABLE', [], cause)
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === FAULT_CODES['headers-timeout']) return new SidecarError('SIDECAR_ERR_UPSTREAM_TIMEOUT', [], cause)
    if (code.startsWith('HPE_') || MALFORMED.has(code) || code === FAULT_CODES['bad-response']) return new SidecarError('SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', [], cause)
    if (code === 'UND_ERR_SOCKET' && /^bad (response|upgrade)$/.test(messageOf(err))) {
      return new SidecarError('SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', [], cause)
    }
    if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
      return new SidecarError('SIDECAR_ERR_SERVER_BAD_REQUEST', [messageOf(err)], cause)
    }
  }
  return new SidecarError('SIDECAR_ERR_UPSTREAM_RESET', [], cause)
}
