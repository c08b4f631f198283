// The chunked-body decoder: whole results per row (end index, payload, trailers, error), the same
// answer when the bytes arrive in pieces cut at every offset (and byte by byte), and the limits.
import t from 'tap'
import { ChunkedDecoder, type ChunkedDecoderOptions } from '../../src/http/chunked.ts'

interface Outcome { end: number, payload: string, trailers: string[], done: boolean, error: string | undefined }

/** Feeds `parts` (one buffer per read, as a socket hands them) and reports what the decoder said. */
function run (parts: Buffer[], options?: ChunkedDecoderOptions): Outcome {
  const d = new ChunkedDecoder(options)
  let payload = ''
  let offset = 0
  let end = -2
  for (const part of parts) {
    const r = d.feed(part, 0, (buf, from, to) => { payload += buf.toString('latin1', from, to) })
    if (r === -1) { end = -1; break }
    if (d.done) { end = offset + r; break }
    offset += part.length
  }
  return { end, payload, trailers: d.trailers, done: d.done, error: d.error }
}

const whole = (s: string): Buffer[] => [Buffer.from(s, 'latin1')]
// `end` is filled in by `expected`: the whole input, less the next message when one follows.
const ok = (payload: string, trailers: string[] = []): Outcome => ({ end: 0, payload, trailers, done: true, error: undefined })
const bad = (error: string): Outcome => ({ end: -1, payload: '', trailers: [], done: false, error })

const NEXT = 'GET /next HTTP/1.1\r\n\r\n'

const CASES: Array<[string, string, Outcome]> = [
  ['empty body', '0\r\n\r\n', ok('')],
  ['one chunk, the next message after it', `5\r\nhello\r\n0\r\n\r\n${NEXT}`, ok('hello')],
  ['hex sizes in both cases, leading zeros', 'a\r\n0123456789\r\nA\r\nabcdefghij\r\n000\r\n\r\n', ok('0123456789abcdefghij')],
  ['payload bytes are any bytes', '7\r\n\r\n\x00\xff0\r\n\r\n0\r\n\r\n', ok('\r\n\x00\xff0\r\n')],
  ['extensions: token, quoted with escapes, several', '3;a=b;c="d \\" ;e\\\\";f\r\nabc\r\n0;last\r\n\r\n', ok('abc')],
  ['trailers', '1\r\nx\r\n0\r\nX-T: 1\r\nx-u:  two  words \r\n\r\n', ok('x', ['X-T', '1', 'x-u', 'two  words'])],
  ['invalid hex', 'zz\r\nhello\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['negative size', '-1\r\n=process\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['empty size', '\r\nhello\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['a space after the size', '5 \r\nhello\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['a space before the extension', '5 ;a=b\r\nhello\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['0x prefix', '0x5\r\nhello\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['a size above 2^53 - 1', '20000000000000\r\n', bad('chunk size too large')],
  ['a size beyond 2^64', `1${'0'.repeat(20)}\r\n{}\r\n0\r\n\r\n`, bad('chunk size too large')],
  ['a bare LF after the size', '5\nhello\r\n0\r\n\r\n', bad('invalid chunk size')],
  ['a bare CR after the size', '5\rhello\r\n0\r\n\r\n', bad('bare CR in a chunk-size line')],
  ['data longer than its size', '2\r\nhello\r\n0\r\n\r\n', bad('chunk data longer than its size')],
  ['a bare CR after the data', '5\r\nhello\rX0\r\n\r\n', bad('bare CR after chunk data')],
  ['a bare LF after the data', '5\r\nhello\n0\r\n\r\n', bad('chunk data longer than its size')],
  ['an empty extension name', '5;\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['an extension without a value after =', '5;a=\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['a space in an extension', '5;a b\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['a control character in a quoted extension', '5;a="\x01"\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['an unterminated quoted extension', '5;a="b\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['bytes after a quoted extension', '5;a="b"c\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['a NUL in a token extension', '5;a=b\x00\r\nhello\r\n0\r\n\r\n', bad('invalid chunk extension')],
  ['a trailer with obs-fold', '0\r\nX-T: 1\r\n 2\r\n\r\n', { ...bad('obsolete line folding'), trailers: ['X-T', '1'] }],
  ['a trailer with whitespace before the colon', '0\r\nX-T : 1\r\n\r\n', bad('whitespace before the colon of a field')],
  ['a trailer without a colon', '0\r\nX-T\r\n\r\n', bad('field line without a colon')],
  ['a trailer with a NUL', '0\r\nX-T: \x00\r\n\r\n', bad('invalid character in field value')],
  ['a bare LF in the trailers', '0\r\nX-T: 1\n\r\n', bad('bare LF in the trailer section')],
  ['a bare LF ending the trailers', '0\r\n\n', bad('bare LF in the trailer section')],
  ['Content-Length in the trailers', '0\r\ncontent-length: 5\r\n\r\n', bad('framing field in the trailer section')],
  ['Transfer-Encoding in the trailers', '0\r\nTransfer-Encoding: chunked\r\n\r\n', bad('framing field in the trailer section')],
  ['a bare CR in a trailer', '0\r\nX-T: 1\rX-U: 2\r\n\r\n', bad('bare CR in a field value')],
]

/** The end index of an accepted body; for a refused one, the payload decoded before the error. */
function expected (bytes: string, want: Outcome): Outcome {
  if (want.error === undefined) return { ...want, end: bytes.length - (bytes.endsWith(NEXT) ? NEXT.length : 0) }
  const prefix = run(whole(bytes)).payload
  return { ...want, payload: prefix }
}

t.test('whole bodies', async (t) => {
  for (const [name, bytes, want] of CASES) t.strictSame(run(whole(bytes)), expected(bytes, want), name)
})

t.test('the payload before an error is what was decoded', async (t) => {
  t.strictSame(run(whole('2\r\nhello\r\n')), { end: -1, payload: 'he', trailers: [], done: false, error: 'chunk data longer than its size' })
  t.strictSame(run(whole('6\r\naction\r\n-1\r\n')), { end: -1, payload: 'action', trailers: [], done: false, error: 'invalid chunk size' })
})

t.test('split into two reads at every offset, and byte by byte', async (t) => {
  for (const [name, bytes] of CASES) {
    const buf = Buffer.from(bytes, 'latin1')
    const want = run([buf])
    const bad: number[] = []
    for (let k = 0; k <= buf.length; k++) {
      const got = run([buf.subarray(0, k), buf.subarray(k)])
      if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(k)
    }
    t.strictSame(bad, [], `${name}: every two-way split`)
    const bytewise = run(Array.from(buf, (b) => Buffer.from([b])))
    t.strictSame(bytewise, want, `${name}: one byte per read`)
  }
})

t.test('feed from an offset inside a buffer, as after a head', async (t) => {
  const buf = Buffer.from(`POST / HTTP/1.1\r\n\r\n4\r\nbody\r\n0\r\n\r\n${NEXT}`)
  const start = buf.indexOf('4\r\n')
  const d = new ChunkedDecoder()
  const spans: Array<[number, number]> = []
  const end = d.feed(buf, start, (_b, from, to) => { spans.push([from, to]) })
  t.strictSame({ end, spans, done: d.done }, { end: buf.indexOf(NEXT), spans: [[start + 3, start + 7]], done: true })
  t.equal(d.feed(buf, end), end, 'a finished decoder consumes nothing more')
})

t.test('a failed decoder stays failed', async (t) => {
  const d = new ChunkedDecoder()
  t.equal(d.feed(Buffer.from('x'), 0), -1)
  t.equal(d.feed(Buffer.from('0\r\n\r\n'), 0), -1)
  t.equal(d.error, 'invalid chunk size')
})

t.test('limits: chunk-size line and trailer section', async (t) => {
  const ext = `5;a=${'b'.repeat(100)}\r\nhello\r\n0\r\n\r\n`
  t.equal(run(whole(ext), { maxLineBytes: 106 }).done, true, 'a line exactly at the limit')
  t.strictSame(run(whole(ext), { maxLineBytes: 105 }), { ...bad('chunk-size line too long') }, 'one byte over')
  t.strictSame(run(Array.from(Buffer.from(ext), (b) => Buffer.from([b])), { maxLineBytes: 105 }), bad('chunk-size line too long'), 'one byte over, dripped')
  t.strictSame(run(whole(`${'0'.repeat(20000)}1\r\n`)), bad('chunk-size line too long'), 'endless leading zeros meet the default limit')
  const trailers = `0\r\nX-T: ${'v'.repeat(100)}\r\n\r\n`
  t.equal(run(whole(trailers), { maxTrailerBytes: 109 }).done, true, 'a trailer section exactly at the limit')
  t.strictSame(run(whole(trailers), { maxTrailerBytes: 108 }), { ...bad('trailer section too large'), trailers: ['X-T', 'v'.repeat(100)] }, 'one byte over')
})
