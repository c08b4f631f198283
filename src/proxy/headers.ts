// Header rewriting between the client and the app: hop-by-hop stripping (RFC 9110 §7.6.1) and
// x-forwarded-*, on the raw header lists so names keep their case, order and duplicates.

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy `proxy-connection`. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
])

/**
 * Request-only drops. `expect`: Node's server has already answered `100-continue` to the client,
 * and an app that answered it again would send a second interim response undici rejects.
 */
const REQUEST_DROPS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'expect'])

/**
 * Never removed because `connection` names them: they carry the message's framing, the name the
 * app builds URLs from, and what the sidecar itself adds.
 */
const PROTECTED: ReadonlySet<string> = new Set([
  'content-length', 'host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
])

/**
 * Names worth lower-casing are at most this many characters long; longer names can be none of
 * ours, so the common long `accept-*`/`sec-*` headers skip the allocation.
 */
const LONGEST_INTERESTING = 'x-forwarded-proto'.length

/** The outcome of rewriting a request's raw headers for undici. */
export interface ForwardHeaders {
  /** Flat `[name, value, name, value, ...]`, names as the client spelled them. */
  readonly headers: string[]
  /** The client sent `content-length` or `transfer-encoding`: there is a body to stream. */
  readonly hasBody: boolean
  /** The client sent `transfer-encoding` (chunked): the app gets a chunked body too. */
  readonly chunked: boolean
}

/**
 * The path + query to send: origin-form as received, byte for byte. An absolute-form target
 * (`GET http://other/x`) keeps only its path: the connection target is always the configured
 * origin, never something the client names. undefined for the asterisk form or garbage.
 */
export function requestTarget (url: string | undefined): string | undefined {
  if (url === undefined || url.length === 0) return undefined
  if (url.charCodeAt(0) === 47 /* / */) return url
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(url)
  if (m === null) return undefined
  const rest = url.slice(m[0].length)
  return rest.length === 0 ? '/' : rest.charCodeAt(0) === 47 ? rest : '/' + rest
}

/** `::ffff:1.2.3.4` (IPv4 on a dual-stack socket) → `1.2.3.4`, as apps expect in x-forwarded-for. */
export function clientAddress (remoteAddress: string | undefined): string | undefined {
  if (remoteAddress !== undefined && remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.')) {
    return remoteAddress.slice(7)
  }
  return remoteAddress
}

/** Lower-cased tokens of every `connection` value that are not themselves hop-by-hop. */
function connectionNamed (values: readonly string[]): Set<string> | undefined {
  let named: Set<string> | undefined
  for (const value of values) {
    // The usual values name nothing else: skip the split on the hot path.
    if (value.length <= 10 && /^(?:keep-alive|close|upgrade)$/i.test(value)) continue
    for (const token of value.split(',')) {
      const name = token.trim().toLowerCase()
      if (name === '' || name === 'close' || HOP_BY_HOP.has(name) || PROTECTED.has(name)) continue
      named ??= new Set()
      named.add(name)
    }
  }
  return named
}

/** Drops every pair whose lower-cased name is in `names`. */
function without (flat: string[], names: ReadonlySet<string>): string[] {
  const out: string[] = []
  for (let i = 0; i < flat.length; i += 2) {
    if (!names.has((flat[i] as string).toLowerCase())) out.push(flat[i] as string, flat[i + 1] as string)
  }
  return out
}

/**
 * The headers to send to the app for a plain (non-upgrade) request: `raw` (IncomingMessage
 * rawHeaders) minus hop-by-hop fields, the fields `connection` names and `expect`; `host` and
 * everything else as received; `x-forwarded-for` gets the client address appended (to the last
 * such field, or a new one), `x-forwarded-proto` is set to `http` and `x-forwarded-host` to the
 * Host when the client did not send them.
 */
export function forwardRequestHeaders (raw: readonly string[], remoteAddress: string | undefined): ForwardHeaders {
  return rewrite(raw, remoteAddress, true)
}

/**
 * The headers for a WebSocket (or other upgrade) handshake: exactly `raw`, with only the
 * x-forwarded-* additions of forwardRequestHeaders: `connection`/`upgrade` must reach the app.
 */
export function upgradeRequestHeaders (raw: readonly string[], remoteAddress: string | undefined): string[] {
  return rewrite(raw, remoteAddress, false).headers
}

function rewrite (raw: readonly string[], remoteAddress: string | undefined, strip: boolean): ForwardHeaders {
  const out: string[] = []
  let connection: string[] | undefined
  let host: string | undefined
  let xffAt = -1
  let hasProto = false
  let hasXHost = false
  let hasBody = false
  let chunked = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    if (name.length <= LONGEST_INTERESTING) {
      const lower = name.toLowerCase()
      if (lower === 'content-length') {
        hasBody = true
      } else if (lower === 'host') {
        host = value
      } else if (lower === 'x-forwarded-for') {
        xffAt = out.length + 1
      } else if (lower === 'x-forwarded-proto') {
        hasProto = true
      } else if (lower === 'x-forwarded-host') {
        hasXHost = true
      } else if (lower === 'transfer-encoding') {
        hasBody = true
        chunked = true
        if (strip) continue
      } else if (strip && REQUEST_DROPS.has(lower)) {
        if (lower === 'connection') (connection ??= []).push(value)
        continue
      }
    }
    out.push(name, value)
  }
  const address = clientAddress(remoteAddress)
  if (address !== undefined) {
    if (xffAt === -1) out.push('x-forwarded-for', address)
    else out[xffAt] = `${out[xffAt] as string}, ${address}`
  }
  if (!hasProto) out.push('x-forwarded-proto', 'http')
  if (!hasXHost && host !== undefined) out.push('x-forwarded-host', host)
  const named = connection === undefined ? undefined : connectionNamed(connection)
  return { headers: named === undefined ? out : without(out, named), hasBody, chunked }
}

/** Methods whose requests carry a body by definition: sent with `content-length: 0` when bodiless. */
const PAYLOAD_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'QUERY'])

/** What the request head builder needs of a parsed request. */
export interface HeadToForward {
  readonly method: string
  readonly rawHeaders: readonly string[]
  readonly body: 'none' | 'length' | 'chunked'
  readonly contentLength: number
}

/**
 * The request head for the app, as latin1 text: the request line with `path` (origin-form),
 * `host` first (the client's, else the upstream's authority) and `connection: keep-alive` (the
 * connection to the app is the sidecar's own), the client's fields as forwardRequestHeaders
 * edits them, then the body's framing: `content-length` or `transfer-encoding: chunked`. One pass
 * to learn the fields that change others, one to write.
 */
export function upstreamRequestHead (head: HeadToForward, path: string, remoteAddress: string | undefined, authority: string): string {
  const raw = head.rawHeaders
  let host: string | undefined
  let lastXff = -1
  let hasProto = false
  let hasXHost = false
  let connection: string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const n = name.length
    if (n === 4 || n === 10 || n === 15 || n === 16 || n === 17) {
      const lower = name.toLowerCase()
      if (lower === 'host') host = raw[i + 1] as string
      else if (lower === 'connection') (connection ??= []).push(raw[i + 1] as string)
      else if (lower === 'x-forwarded-for') lastXff = i
      else if (lower === 'x-forwarded-proto') hasProto = true
      else if (lower === 'x-forwarded-host') hasXHost = true
    }
  }
  const named = connection === undefined ? undefined : connectionNamed(connection)
  const address = clientAddress(remoteAddress)
  let text = `${head.method} ${path} HTTP/1.1\r\nhost: ${host ?? authority}\r\nconnection: keep-alive\r\n`
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length <= LONGEST_INTERESTING) {
      const lower = name.toLowerCase()
      if (lower === 'host' || lower === 'content-length' || lower === 'transfer-encoding' || REQUEST_DROPS.has(lower)) continue
      if (named !== undefined && named.has(lower)) continue
    } else if (named !== undefined && named.has(name.toLowerCase())) {
      continue
    }
    text += i === lastXff && address !== undefined ? `${name}: ${raw[i + 1] as string}, ${address}\r\n` : `${name}: ${raw[i + 1] as string}\r\n`
  }
  if (lastXff === -1 && address !== undefined) text += `x-forwarded-for: ${address}\r\n`
  if (!hasProto) text += 'x-forwarded-proto: http\r\n'
  if (!hasXHost && host !== undefined) text += `x-forwarded-host: ${host}\r\n`
  if (head.body === 'length') text += `content-length: ${head.contentLength}\r\n`
  else if (head.body === 'chunked') text += 'transfer-encoding: chunked\r\n'
  else if (PAYLOAD_METHODS.has(head.method)) text += 'content-length: 0\r\n'
  return text + '\r\n'
}

/** What the client's response head is built from. */
export interface ResponseToPass {
  readonly status: number
  readonly reason: string
  readonly rawHeaders: readonly string[]
}

/**
 * The response head for the client as latin1 text: the app's status and reason (`fallbackReason`
 * when it sent none), its fields as responseHeaders edits them, then the sidecar's own
 * `connection` field and framing. Also the app's `Keep-Alive` value, for the idle pool.
 */
export function responseHeadText (res: ResponseToPass, fallbackReason: string, connection: string, framing: string): { head: string, keepAlive: string | undefined } {
  const raw = res.rawHeaders
  let conn: string[] | undefined
  let keepAlive: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const n = (raw[i] as string).length
    if (n === 10 || n === 16) {
      const lower = (raw[i] as string).toLowerCase()
      if (lower === 'connection') (conn ??= []).push(raw[i + 1] as string)
      else if (lower === 'keep-alive') keepAlive = raw[i + 1] as string
    }
  }
  const named = conn === undefined ? undefined : connectionNamed(conn)
  let text = `HTTP/1.1 ${res.status} ${res.reason === '' ? fallbackReason : res.reason}\r\n`
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length <= LONGEST_INTERESTING) {
      const lower = name.toLowerCase()
      if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue
    } else if (named !== undefined && named.has(name.toLowerCase())) {
      continue
    }
    text += `${name}: ${raw[i + 1] as string}\r\n`
  }
  return { head: text + connection + framing + '\r\n', keepAlive }
}
