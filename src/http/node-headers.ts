// Builds the `headers` object Node's IncomingMessage would build from the same raw field list, so
// code written against `req.headers` reads the same values: lower-cased names, Set-Cookie as an
// array, Cookie joined with '; ', the fields Node keeps only once (first wins), others joined
// with ', '. The lists mirror matchKnownFields in Node's lib/_http_incoming.js.

const FIRST_WINS = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
])

export function nodeHeaders (rawHeaders: readonly string[]): Record<string, string | string[]> {
  // No prototype: a field named __proto__ must be an ordinary key.
  const dest: Record<string, string | string[]> = Object.create(null)
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase()
    const value = rawHeaders[i + 1] as string
    const prev = dest[name]
    if (name === 'set-cookie') {
      if (prev === undefined) dest[name] = [value]
      else (prev as string[]).push(value)
    } else if (prev === undefined) {
      dest[name] = value
    } else if (!FIRST_WINS.has(name)) {
      dest[name] = prev + (name === 'cookie' ? '; ' : ', ') + value
    }
  }
  return dest
}
