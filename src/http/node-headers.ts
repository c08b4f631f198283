// Builds the `headers` object Node's IncomingMessage would build from the same raw field list, so
// code written against `req.headers` reads the same values: lower-cased names, Set-Cookie as an
// array, Cookie joined with '; ', the fields Node keeps only once (first wins), others joined
// with ', '. The lists mirror matchKnownFields in Node's lib/_http_incoming.js.

const FIRST_WINS = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
])

/**
 * Lower-cased names by their spelling as received. A name fresh from toLowerCase() is a new,
 * non-internalized string, and V8 adds a property under such a key to the object below only in
 * its runtime (a keyed-store IC miss per field, about 2% of a proxied GET); the same string
 * object, used again, is a key V8 has internalized. Bounded: a client sending ever new names
 * fills it once, and the names past it take the slow way.
 */
const LOWER = new Map<string, string>()
const MAX_NAMES = 512

function lowerName (raw: string): string {
  let name = LOWER.get(raw)
  if (name === undefined) {
    name = raw.toLowerCase()
    // Kept as a copy: `raw` may be a slice of a whole request head, which it would keep alive.
    // (Field names are tokens, ASCII: the latin1 round trip is exact.)
    if (LOWER.size < MAX_NAMES) LOWER.set(Buffer.from(raw, 'latin1').toString('latin1'), name)
  }
  return name
}

export function nodeHeaders (rawHeaders: readonly string[]): Record<string, string | string[]> {
  // No prototype: a field named __proto__ must be an ordinary key.
  const dest: Record<string, string | string[]> = Object.create(null)
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = lowerName(rawHeaders[i] as string)
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
