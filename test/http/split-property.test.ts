// However a socket splits the bytes, the parsers answer the same: for generated (and damaged)
// requests and responses, every prefix of a head is either "incomplete" or already the answer the
// whole head gets (also when the request parser is told how much it saw before); a chunked body
// fed in random pieces gives the same payload, trailers, end and error as fed at once.
import t from 'tap'
import fc from 'fast-check'
import { parseRequestHead } from '../../src/http/request-head.ts'
import { parseResponseHead } from '../../src/http/response-head.ts'
import { ChunkedDecoder } from '../../src/http/chunked.ts'
import { chunkedBytes, pick, requestBytes, responseBytes } from './generators.ts'

const MAX_HEAD = 16 * 1024

/** The answer as comparable text (the request head's lazily built headers included). */
function show (r: { kind: string, head?: object }): string {
  if (r.kind !== 'head' || r.head === undefined) return JSON.stringify(r)
  const h = r.head as Record<string, unknown>
  return JSON.stringify({ ...h, headers: h.headers })
}

/** The first prefix length whose answer is not "incomplete", or a message saying what broke. */
function checkPrefixes (bytes: Buffer, parse: (b: Buffer) => { kind: string, head?: object }): string | undefined {
  const whole = show(parse(bytes))
  for (let k = 0; k <= bytes.length; k++) {
    const part = parse(bytes.subarray(0, k))
    if (part.kind === 'incomplete') continue
    const shown = show(part)
    if (shown !== whole) return `prefix of ${k} bytes: ${shown}\nwhole: ${whole}\nbytes: ${JSON.stringify(bytes.toString('latin1'))}`
    // Once answered, every longer prefix gives the same answer; the head ends here or before.
    for (const longer of [k + 1, Math.floor((k + bytes.length) / 2), bytes.length]) {
      if (longer > bytes.length) continue
      const again = show(parse(bytes.subarray(0, longer)))
      if (again !== whole) return `prefix of ${longer} bytes: ${again}\nwhole: ${whole}\nbytes: ${JSON.stringify(bytes.toString('latin1'))}`
    }
    return undefined
  }
  return whole.includes('"incomplete"') ? undefined : `no prefix answered, the whole did: ${whole}`
}

t.test('request heads: every prefix is incomplete or the whole answer', async () => {
  fc.assert(fc.property(requestBytes, (bytes) => {
    const problem = checkPrefixes(bytes, (b) => parseRequestHead(b, MAX_HEAD))
    if (problem !== undefined) throw new Error(problem)
  }), { numRuns: 300 })
})

t.test('request heads parsed again with `seen`: the same answer, or a refusal (not the 431) deferred as incomplete', async () => {
  fc.assert(fc.property(requestBytes, fc.nat(), fc.nat(), (bytes, a, b) => {
    const whole = parseRequestHead(bytes, MAX_HEAD)
    // An earlier call saw `seen` bytes and answered incomplete; now the buffer has grown to `now`.
    const [seen, now] = [a % (bytes.length + 1), b % (bytes.length + 1)].sort((x, y) => x - y) as [number, number]
    if (parseRequestHead(bytes.subarray(0, seen), MAX_HEAD).kind !== 'incomplete') return
    const plain = show(parseRequestHead(bytes.subarray(0, now), MAX_HEAD))
    const hinted = show(parseRequestHead(bytes.subarray(0, now), MAX_HEAD, seen))
    const deferred = hinted === '{"kind":"incomplete"}' && plain.startsWith('{"kind":"error"') && !plain.includes('"status":431')
    if (hinted !== plain && !deferred) throw new Error(`seen ${seen}, now ${now}: ${hinted}\nwithout seen: ${plain}\nbytes: ${JSON.stringify(bytes.toString('latin1'))}`)
    if (now === bytes.length && whole.kind === 'head' && hinted !== show(whole)) throw new Error('a whole head must be found')
  }), { numRuns: 2000 })
})

t.test('response heads: every prefix is incomplete or the whole answer', async () => {
  fc.assert(fc.property(responseBytes, pick('GET', 'HEAD', 'POST', 'CONNECT'), (bytes, method) => {
    const problem = checkPrefixes(bytes, (b) => parseResponseHead(b, MAX_HEAD, method))
    if (problem !== undefined) throw new Error(problem)
  }), { numRuns: 300 })
})

/** Feeds `parts` in turn and reports what the decoder said, the end as an index in the whole. */
function decode (parts: Buffer[]): string {
  const d = new ChunkedDecoder()
  let payload = ''
  let offset = 0
  let end: number | undefined
  for (const part of parts) {
    const r = d.feed(part, 0, (b, from, to) => { payload += b.toString('latin1', from, to) })
    if (r === -1 || d.done) {
      end = r === -1 ? -1 : offset + r
      break
    }
    offset += part.length
  }
  return JSON.stringify({ end, payload, trailers: d.trailers, done: d.done, error: d.error })
}

t.test('chunked bodies: the same outcome however the bytes are cut', async () => {
  fc.assert(fc.property(chunkedBytes, fc.uniqueArray(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
    const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
    const parts = [0, ...points].map((p, k, all) => bytes.subarray(p, all[k + 1] ?? bytes.length))
    const whole = decode([bytes])
    const cut = decode(parts)
    if (cut !== whole) throw new Error(`cut at ${JSON.stringify(points)}: ${cut}\nwhole: ${whole}\nbytes: ${JSON.stringify(bytes.toString('latin1'))}`)
  }), { numRuns: 2000 })
})
