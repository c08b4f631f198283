// Malformed and smuggling-shaped requests, sent as raw bytes to a real sidecar whose app is a
// deliberately lenient upstream that reports every request it parses: each gets a 4xx (or a
// timeout), the upstream never sees a smuggled second request nor a cut-off body as a whole one,
// and the next ordinary request on a new connection is served.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startLenientUpstream, type LenientUpstream } from '../helpers/lenient-upstream.ts'
import { rawExchange, startHardened, statusOf, stubPools, type Started } from './harness.ts'

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'

async function setup (t: Test, sidecar: Parameters<typeof startHardened>[1]['sidecar'] = {}): Promise<{ up: LenientUpstream, s: Started }> {
  const up = await startLenientUpstream()
  t.teardown(() => up.close())
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, pools: stubPools(), sidecar })
  return { up, s }
}

/** The `error.code` of the JSON body of a raw answer ({ "error": { "code", "message" } }). */
function errorCode (raw: string): string | undefined {
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4)
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string, message?: string } }
    return typeof parsed.error?.message === 'string' ? parsed.error.code : undefined
  } catch {
    return undefined
  }
}

/** Nothing smuggled, nothing cut off passed as whole, and a normal request still works. */
async function afterwards (t: Test, up: LenientUpstream, s: Started, completeBefore: number): Promise<void> {
  t.notOk(up.requests.some((r) => r.target.includes('smuggled')), 'no smuggled request reached the app')
  t.equal(up.requests.filter((r) => r.complete).length, completeBefore, 'no request reached the app as a whole one')
  const res = await request(`http://127.0.0.1:${s.port}/next?ok=1`, { method: 'POST', body: 'next body' })
  t.equal(res.statusCode, 200, 'the next request is served')
  const echo = await res.body.json() as { target: string, sha256: string }
  t.equal(echo.target, '/next?ok=1')
  t.equal(echo.sha256, createHash('sha256').update('next body').digest('hex'))
}

const REJECTED_BY_PARSER: readonly [string, string, number][] = [
  ['content-length and transfer-encoding together', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
  ['transfer-encoding and content-length (TE first)', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
  ['duplicate identical content-length', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400],
  ['conflicting content-length', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc${SMUGGLED}`, 400],
  ['content-length as a list', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc', 400],
  ['a space in a header name', 'GET /a HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n', 400],
  ['a control character in a header name', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A\x01: y\r\n\r\n', 400],
  ['a NUL in a header value', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n', 400],
  ['a bare CR in a header value', `GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n`, 400],
  ['an obsolete folded header', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n', 400],
  ['bare LF line endings', `GET /a HTTP/1.1\nHost: x\n\n${SMUGGLED}`, 400],
  ['transfer-encoding chunked not last', 'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n', 400],
  ['no Host header', 'GET /a HTTP/1.1\r\n\r\n', 400],
  ['a content-length beyond 2^64', 'POST /livewire/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999999\r\n\r\n{}', 400],
  ['a signed content-length', 'POST /livewire/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: +2\r\n\r\n{}', 400],
  ['a chunk size beyond 2^64', `POST /livewire/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1${'0'.repeat(20)}\r\n{}\r\n0\r\n\r\n`, 400],

  ['a 100 KB URL', `GET /${'a'.repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
  ['a 40 KB header block', `GET /a HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 40 }, (_, i) => `X-H${i}: ${'v'.repeat(1000)}\r\n`).join('')}\r\n`, 431],
]

t.test('requests the HTTP parser refuses never reach the app', async (t) => {
  const { up, s } = await setup(t)
  for (const [name, bytes, status] of REJECTED_BY_PARSER) {
    await t.test(name, async (t) => {
      const before = up.requests.length
      const r = await rawExchange(s.port, [bytes])
      t.equal(statusOf(r.data), status, `answered ${status}`)
      // Node answers a missing Host itself (an empty 400), before any handler could.
      if (name !== 'no Host header') t.equal(errorCode(r.data), status === 431 ? 'SIDECAR_ERR_SERVER_HEADERS_TOO_LARGE' : 'SIDECAR_ERR_SERVER_BAD_REQUEST', 'with the sidecar\'s JSON error')
      t.ok(r.closed, 'the connection is closed after the error')
      t.equal(up.requests.length, before, 'the upstream saw nothing')
      t.notMatch(r.data, /HTTP\/1\.1 [^4]/, 'no second, non-error response on the same connection')
      await afterwards(t, up, s, up.requests.filter((x) => x.complete).length)
    })
  }
})

// The headers were fine, so the request was already on its way when the body broke: the
// upstream may have seen the start, but it must never see it end as if it were whole.
const BROKEN_BODIES: readonly [string, string[], boolean][] = [
  ['an invalid chunk size', ['POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', `zz\r\nhello\r\n0\r\n\r\n${SMUGGLED}`], false],
  ['a chunk longer than its size', ['POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', `2\r\nhello\r\n0\r\n\r\n${SMUGGLED}`], false],
  ['a truncated chunked body', ['POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', '5\r\nhello\r\n'], true],
  ['a body shorter than its content-length', ['POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n', 'hello'], true],
  ['a truncated chunked body on a body-rule path', ['POST /livewire/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', '5\r\n{"a":\r\n'], true],
  ['a short body on a body-rule path', ['POST /livewire/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n', '{"components":'], true],
  ['an invalid chunk size on a body-rule path', ['POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n', `6\r\naction\r\n-1\r\n=process\r\n0\r\n\r\n${SMUGGLED}`], false],
]

t.test('broken bodies: 400 or a closed connection, never a whole request upstream', async (t) => {
  const { up, s } = await setup(t)
  for (const [name, parts, end] of BROKEN_BODIES) {
    await t.test(name, async (t) => {
      const completeBefore = up.requests.filter((x) => x.complete).length
      const r = await rawExchange(s.port, parts, { gapMs: 50, end })
      const status = statusOf(r.data)
      t.ok(status === 0 || (status >= 400 && status < 500), `a 4xx or no answer (got ${status})`)
      if (status !== 0) t.equal(errorCode(r.data), 'SIDECAR_ERR_SERVER_BAD_REQUEST', 'with the sidecar\'s JSON error')
      t.ok(r.closed, 'the connection is closed')
      // Give the sidecar time to (wrongly) finish the upstream request.
      await sleep(100)
      await afterwards(t, up, s, completeBefore)
    })
  }
})

t.test('request lines HTTP/1.1 does not allow are refused, and nothing sent after them reaches the app', async (t) => {
  // Node's parser tolerated both; RFC 9112 §3 has one SP between the parts and no HTTP/0.9.
  const { up, s } = await setup(t)
  for (const [name, bytes] of [['HTTP/0.9 style', 'GET /a\r\n\r\n'], ['two spaces', `GET  /a HTTP/1.1\r\nHost: x\r\n\r\n${SMUGGLED}`]] as const) {
    const before = up.requests.length
    const r = await rawExchange(s.port, [bytes], { waitMs: 500 })
    t.equal(statusOf(r.data), 400, `${name}: refused`)
    t.equal(errorCode(r.data), 'SIDECAR_ERR_SERVER_BAD_REQUEST', `${name}: with the sidecar's JSON error`)
    t.ok(r.closed, `${name}: and the connection closed`)
    t.equal(up.requests.length, before, `${name}: the app saw nothing`)
  }
  t.equal(up.requests.filter((x) => x.target === '/smuggled').length, 0, 'the pipelined request after the refused one never arrived')
})

t.test('pipelined requests are forwarded one by one, each framed by the sidecar', async (t) => {
  const { up, s } = await setup(t)
  const r = await rawExchange(s.port, [
    'POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
    `POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${SMUGGLED.replace('/smuggled', '/three')}`,
  ], { waitMs: 1000 })
  t.equal(r.data.match(/HTTP\/1\.1 200 /g)?.length, 3, 'three answers')
  t.strictSame(up.requests.map((x) => [x.target, x.body.toString(), x.complete]), [['/one', 'hello', true], ['/two', 'abc', true], ['/three', '', true]])
})

t.test('slowloris: headers dripped a byte at a time get a 408 after the headers timeout', async (t) => {
  const { up, s } = await setup(t, { timeouts: { clientHeadersMs: 600 } })
  const head = 'GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n\r\n'
  const r = await rawExchange(s.port, head.split(''), { gapMs: 100, waitMs: 5000 })
  t.equal(statusOf(r.data), 408)
  t.equal(errorCode(r.data), 'SIDECAR_ERR_SERVER_HEADERS_TIMEOUT')
  t.ok(r.closed, 'closed')
  t.ok(r.ms < head.length * 100, 'cut off before the headers were complete')
  t.equal(up.requests.length, 0, 'the app saw nothing')
  await afterwards(t, up, s, 0)
})

t.test('a slow body on a body-rule path is cut with 408 after the inspection timeout', async (t) => {
  const { up, s } = await setup(t, { timeouts: { inspectBodyMs: 600 } })
  const body = JSON.stringify({ components: [{ calls: [{ method: 'process' }] }] })
  const r = await rawExchange(s.port, [
    `POST /livewire/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    ...body.split(''),
  ], { gapMs: 100, waitMs: 5000 })
  t.equal(statusOf(r.data), 408)
  t.match(r.data, /SIDECAR_ERR_BODY_TIMEOUT/)
  t.ok(r.closed, 'closed')
  t.equal(up.requests.length, 0, 'the app saw nothing')
  await afterwards(t, up, s, 0)
})

t.test('a slow body on a path without body rules streams to the app at its own pace', async (t) => {
  const { up, s } = await setup(t, { timeouts: { inspectBodyMs: 300 } })
  const r = await rawExchange(s.port, [
    'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n',
    ...'slowbody'.split(''),
  ], { gapMs: 100, waitMs: 5000 })
  t.equal(statusOf(r.data), 200)
  t.strictSame(up.requests.map((x) => [x.target, x.body.toString(), x.complete]), [['/upload', 'slowbody', true]])
})

t.test('an upgrade the app refuses does not become a raw tunnel to the app', async (t) => {
  // The app answers the upgrade with an ordinary response and keeps the connection open, as
  // most apps do for a path that is not a WebSocket endpoint.
  const up = await startLenientUpstream({ respond: (req) => (req.target === '/not-a-socket' ? { kind: 'raw', bytes: 'HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found' } : { kind: 'echo' }) })
  t.teardown(() => up.close())
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${up.port}`, pools: stubPools() })
  for (const upgrade of ['websocket', 'h2c', 'anything']) {
    const r = await rawExchange(s.port, [
      `GET /not-a-socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      // Sent after the refusal, on the same connection: must never reach the app unchecked.
      'GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n',
    ], { gapMs: 150, waitMs: 1000 })
    t.equal(statusOf(r.data), 404, `${upgrade}: the app's refusal reaches the client`)
    t.match(r.data, /not found$/, `${upgrade}: with its body`)
  }
  await sleep(100)
  t.notOk(up.requests.some((x) => x.target.includes('smuggled')), 'nothing sent after the refusal reached the app')
  t.equal(up.requests.filter((x) => x.target === '/not-a-socket').length, 3)
})
