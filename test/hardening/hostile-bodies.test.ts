// Hostile bodies on body-rule paths, end to end through a real sidecar: no crash, no prototype
// pollution, no match (the request is served by the app), and the app receives the original
// bytes (sha256). Plus fast-check properties: random bodies, content types and chunkings through
// the whole sidecar, and random chunkings through the body inspector alone.
import t, { type Test } from 'tap'
import http from 'node:http'
import { createHash } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import fc from 'fast-check'
import { request } from 'undici'
import { readBodyPrefix } from '../../src/body/inspect.ts'
import { closeServer, listen } from '../helpers/net.ts'
import { startHardened, stubPools, watchLeaks, type StubPools } from './harness.ts'

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
const JSON_CT = 'application/json'
const FORM_CT = 'application/x-www-form-urlencoded'
const PROCESS = '{"components":[{"snapshot":"{}","calls":[{"path":"","method":"process","params":[]}]}]}'
const MiB = 1024 * 1024

interface AppSeen { url: string, sha256: string, bytes: number }

async function startApp (t: Test): Promise<{ port: number, seen: AppSeen[], close: () => Promise<void> }> {
  const seen: AppSeen[] = []
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256')
    let bytes = 0
    req.on('data', (c: Buffer) => { hash.update(c); bytes += c.length })
    req.on('end', () => {
      const s = { url: req.url ?? '', sha256: hash.digest('hex'), bytes }
      seen.push(s)
      const body = JSON.stringify(s)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  return { port, seen, close: () => closeServer(server) }
}

const bom = (s: string): Buffer => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(s)])

/** [name, path, content-type, body]: every one must be proxied untouched, not replayed. */
const HOSTILE: readonly [string, string, string, Buffer][] = [
  ['10 MB of [ nesting', '/livewire/update', JSON_CT, Buffer.alloc(10 * MiB, '[')],
  ['1 MiB - 100 of [ nesting (inside the limit)', '/livewire/update', JSON_CT, Buffer.alloc(MiB - 100, '[')],
  ['nesting 65 deep around a matching call', '/livewire/update', JSON_CT, Buffer.from(`${'['.repeat(65)}${PROCESS}${']'.repeat(65)}`)],
  ['a 1 MiB string next to a matching call', '/livewire/update', JSON_CT, Buffer.from(`{"components":[{"calls":[{"method":"process"}]}],"s":"${'a'.repeat(MiB)}"}`)],
  ['invalid UTF-8 in the method', '/livewire/update', JSON_CT, Buffer.concat([Buffer.from('{"components":[{"calls":[{"method":"process'), Buffer.from([0xff]), Buffer.from('"}]}]}')])],
  ['an overlong UTF-8 encoding', '/livewire/update', JSON_CT, Buffer.concat([Buffer.from('{"components":[{"calls":[{"method":"process"}]}],"x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
  ['a lone surrogate escape (valid JSON) with a __proto__ key', '/livewire/update', JSON_CT, Buffer.from('{"x":"\\ud800","__proto__":{"polluted":"yes"},"components":[{"calls":[{"method":"process"}]}]}')],
  ['__proto__ at the top', '/livewire/update', JSON_CT, Buffer.from(`{"__proto__":{"polluted":"yes"},${PROCESS.slice(1)}`)],
  ['__proto__ deep inside', '/livewire/update', JSON_CT, Buffer.from('{"components":[{"calls":[{"method":"process","params":[{"__proto__":{"polluted":"yes"}}]}]}]}')],
  ['constructor.prototype', '/livewire/update', JSON_CT, Buffer.from('{"constructor":{"prototype":{"polluted":"yes"}},"components":[{"calls":[{"method":"process"}]}]}')],
  ['a UTF-16 BOM', '/livewire/update', JSON_CT, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(PROCESS, 'utf16le')])],
  ['two UTF-8 BOMs', '/livewire/update', JSON_CT, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bom(PROCESS)])],
  ['JSON declared as form', '/livewire/update', FORM_CT, Buffer.from(PROCESS)],
  ['JSON declared as form on the form path', '/form', FORM_CT, Buffer.from('{"action":"process"}')],
  ['form declared as JSON', '/form', JSON_CT, Buffer.from('action=process')],
  ['a form __proto__ field', '/form', FORM_CT, Buffer.from('__proto__=x&action=process')],
  ['a form constructor field', '/form', FORM_CT, Buffer.from('action=process&constructor=x')],
  ['a malformed form escape', '/form', FORM_CT, Buffer.from('action=process&x=%E0%A4%A')],
  ['a form with invalid UTF-8', '/form', FORM_CT, Buffer.concat([Buffer.from('action=process&x='), Buffer.from([0xfe])])],
  ['JSON with charset latin1', '/livewire/update', `${JSON_CT}; charset=iso-8859-1`, Buffer.from(PROCESS)],
  ['numbers beyond 2^53 in a non-matching call', '/livewire/update', JSON_CT, Buffer.from('{"id":9007199254740993,"n":1e400,"m":-0.0000000000000000000000001,"components":[{"calls":[{"method":"refresh","params":[123456789012345678901234567890]}]}]}')],
  ['a UTF-8 BOM on a non-matching call', '/livewire/update', JSON_CT, bom('{"components":[{"calls":[{"method":"refresh"}]}]}')],
]

t.test('hostile bodies: no crash, no pollution, no match, original bytes at the app', async (t) => {
  const leaks = watchLeaks(t)
  const app = await startApp(t)
  const pools = stubPools()
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${app.port}`, pools })
  const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort()

  for (const [name, path, ct, body] of HOSTILE) {
    await t.test(name, async (t) => {
      const res = await request(`http://127.0.0.1:${s.port}${path}`, { method: 'POST', headers: { 'content-type': ct }, body })
      t.equal(res.statusCode, 200, 'proxied to the app')
      t.equal(res.headers['fly-replay'], undefined, 'not replayed')
      const seen = await res.body.json() as AppSeen
      t.equal(seen.bytes, body.length, 'every byte')
      t.equal(seen.sha256, sha(body), 'the original bytes')
    })
  }
  // The same kinds of bodies under chunked transfer-encoding (unknown length).
  for (const [name, path, ct, body] of HOSTILE.filter((h) => h[3].length < 2 * MiB)) {
    await t.test(`${name} (chunked)`, async (t) => {
      const stream = new PassThrough()
      const half = Math.floor(body.length / 2)
      setImmediate(() => { stream.write(body.subarray(0, half)); setTimeout(() => stream.end(body.subarray(half)), 5) })
      const res = await request(`http://127.0.0.1:${s.port}${path}`, { method: 'POST', headers: { 'content-type': ct }, body: stream })
      t.equal(res.statusCode, 200)
      t.equal((await res.body.json() as AppSeen).sha256, sha(body))
    })
  }

  t.strictSame(pools.picks, [], 'no pool Machine was even asked for')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype not polluted')
  t.strictSame(Object.getOwnPropertyNames(Object.prototype).sort(), protoKeys, 'Object.prototype has no new keys')

  await t.test('the control: the same rules do match well-formed bodies', async (t) => {
    for (const [path, ct, body] of [['/livewire/update', JSON_CT, PROCESS], ['/form', FORM_CT, 'x=1&action=process'], ['/livewire/update', JSON_CT, bom(PROCESS)]] as const) {
      const res = await request(`http://127.0.0.1:${s.port}${path}`, { method: 'POST', headers: { 'content-type': ct }, body })
      t.equal(res.statusCode, 307, `${path} ${ct} replays`)
      t.match(res.headers['fly-replay'], /^instance=tasker-1;/)
      await res.body.dump()
    }
  })

  await s.sidecar.shutdown()
  await app.close()
  await leaks.check('hostile bodies')
})

t.test('property: any body, content type and chunking reaches the app byte for byte, or replays', async (t) => {
  const app = await startApp(t)
  const pools: StubPools = stubPools()
  // The "pool Machine" of `oversize: forward` is the same app: forwarded bodies are checked too.
  const s = await startHardened(t, { appUrl: `http://127.0.0.1:${app.port}`, privateUrl: `http://127.0.0.1:${app.port}`, pools })
  const base = Buffer.from(PROCESS)
  const bodyArb = fc.oneof(
    fc.constant(base),
    fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
    // Mutations of a matching body: flipped, dropped and inserted bytes.
    fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'insert')), { minLength: 1, maxLength: 4 })
      .map((edits) => {
        let b = Buffer.from(base)
        for (const [at, byte, op] of edits) {
          const i = Math.min(at, b.length - 1)
          if (op === 'set') b[i] = byte
          else if (op === 'drop') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)])
          else b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)])
        }
        return b
      }),
    fc.json().map((j) => Buffer.from(j))
  )
  const ctArb = fc.constantFrom(JSON_CT, FORM_CT, 'text/plain', 'application/vnd.x+json; charset=UTF-8', 'application/json; charset=latin1')
  const splitsArb = fc.array(fc.nat(4096), { maxLength: 3 })
  let replays = 0
  await fc.assert(fc.asyncProperty(bodyArb, ctArb, splitsArb, fc.boolean(), async (body, ct, splits, chunked) => {
    let payload: Buffer | Readable = body
    if (chunked) {
      const cuts = [...new Set(splits.map((n) => n % (body.length + 1))), body.length].sort((a, b) => a - b)
      // A stream that has not ended when the request starts: undici sends it chunked (an
      // already-ended one would get a content-length).
      payload = Readable.from((async function * () {
        let from = 0
        for (const cut of cuts) {
          await new Promise((resolve) => setImmediate(resolve))
          yield body.subarray(from, cut)
          from = cut
        }
      })())
    }
    const res = await request(`http://127.0.0.1:${s.port}/livewire/update`, { method: 'POST', headers: { 'content-type': ct }, body: payload })
    if (res.statusCode === 307) {
      await res.body.dump()
      replays++
      // Only a complete, parseable JSON body whose calls include process() may replay.
      const value = JSON.parse(body.toString('utf8').replace(/^\uFEFF/, '')) as { components: { calls: { method: string }[] }[] }
      return !chunked && value.components.some((c) => c.calls.some((x) => x.method === 'process'))
    }
    const seen = await res.body.json() as AppSeen
    return res.statusCode === 200 && seen.sha256 === sha(body)
  }), { numRuns: 150 })
  t.ok(replays > 0, `150 requests, ${replays} replayed`)
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})

t.test('property: the body inspector hands back prefix + rest = the exact body, for any chunking and limit', async (t) => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
    fc.nat(1200),
    async (chunks, max) => {
      const stream = new PassThrough()
      const whole = Buffer.concat(chunks.map((c) => Buffer.from(c)))
      const p = readBodyPrefix(stream, max)
      for (const c of chunks) stream.write(Buffer.from(c))
      stream.end()
      const got = await p
      if (got.bytes.length > max) return false
      const rest: Buffer[] = []
      if (!got.complete) {
        for await (const c of stream) rest.push(c as Buffer)
      }
      const all = Buffer.concat([got.bytes, ...rest])
      return all.equals(whole) && (got.complete ? got.bytes.length === whole.length : true)
    }
  ), { numRuns: 300 })
  t.pass('prefix + rest is the body')
})
