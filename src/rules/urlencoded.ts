// application/x-www-form-urlencoded decoding, shared by query conditions and form bodies.

/** Field name → every value it was given, in order (repeated keys keep all their values). */
export type UrlEncodedFields = Map<string, string[]>

const PLUS_RE = /\+/g

/**
 * Decodes `a=1&b=x+y&a=%C3%A9` (WHATWG urlencoded parsing: `+` is a space, `%XX` escapes are UTF-8
 * bytes, a pair without `=` has the value ""). `strict`: a malformed escape or an escape that is not
 * UTF-8 makes the whole text undefined (a form body we cannot read is not inspected). Lenient (the
 * query string, which browsers and apps treat loosely): such a piece is kept as written.
 */
export function parseUrlEncoded (text: string, strict: boolean): UrlEncodedFields | undefined {
  const fields: UrlEncodedFields = new Map()
  if (text === '') return fields
  let start = 0
  while (start <= text.length) {
    let end = text.indexOf('&', start)
    if (end === -1) end = text.length
    if (end > start) {
      const eq = text.indexOf('=', start)
      const split = eq !== -1 && eq < end
      const name = decode(text.slice(start, split ? eq : end), strict)
      const value = split ? decode(text.slice(eq + 1, end), strict) : ''
      if (name === undefined || value === undefined) return undefined
      const values = fields.get(name)
      if (values === undefined) fields.set(name, [value])
      else values.push(value)
    }
    start = end + 1
  }
  return fields
}

function decode (piece: string, strict: boolean): string | undefined {
  const spaced = piece.includes('+') ? piece.replace(PLUS_RE, ' ') : piece
  if (!spaced.includes('%')) return spaced
  try {
    return decodeURIComponent(spaced)
  } catch {
    return strict ? undefined : spaced
  }
}
