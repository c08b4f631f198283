// readBodyPrefix on real sockets: for every size around the limit, with content-length and chunked,
// the buffered prefix plus the rest of the same stream is exactly the body sent (sha256); aborts
// reject with a BODY code; a paused remainder survives a delay and a late abort.
import t, { type Test } from 'tap'
import http, { type IncomingMessage } from 'node:http'
import net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { readBodyPrefix } from '../../src/body/inspect.ts'
import { isSidecarError } from '../../src/errors.ts'
import { closeServer, listen } from '../helpers/net.ts'

const MAX = 1024 * 1024

interface Seen { complete: boolean, prefix: number, rest: number, sha: string }

/** Server: readBodyPrefix(req, x-max), optionally wait x-delay ms, then read the rest and hash both. */
async function startServer (t: Test): Promise<{ port: number, errors: unknown[] }> {
  const errors: unknown[] = []
  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        const body = await readBodyPrefix(req, Number(req.headers['x-max']))
        const delay = Number(req.headers['x-delay'] ?? 0)
        if (delay > 0) await sleep(delay)
        const hash = createHash('sha256').update(body.bytes)
        let rest = 0
        for await (const chunk of req as AsyncIterable<Buffer>) {
          hash.update(chunk)
          rest += chunk.length
        }
        const seen: Seen = { complete: body.complete, prefix: body.bytes.length, rest, sha: hash.digest('hex') }
        res.end(JSON.stringify(seen))
      } catch (err) {
        errors.push(err)
        res.destroy()
      }
    })()
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  return { port, errors }
}

/** Sends `body` with content-length or chunked (in uneven pieces) and resolves with the server's JSON. */
async function send (port: number, body: Buffer, chunked: boolean, headers: Record<string, string>): Promise<Seen> {
  return await new Promise<Seen>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/',
      headers: chunked ? { ...headers, 'transfer-encoding': 'chunked' } : { ...headers, 'content-length': String(body.length) },
    }, (res: IncomingMessage) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString()) as Seen)
        } catch (err) {
          reject(err)
        }
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (chunked) {
      // Uneven pieces, so chunk boundaries never line up with the limit.
      for (let at = 0, n = 1; at < body.length; n++) {
        const size = Math.min(body.length - at, (n * 7919) % 100_003 + 1)
        req.write(body.subarray(at, at + size))
        at += size
      }
    } else if (body.length > 0) {
      req.write(body)
    }
    req.end()
  })
}

t.test('prefix + rest is the exact body, for every size around the limit', async (t) => {
  const { port, errors } = await startServer(t)
  const sizes = [0, 1024, MAX - 1, MAX, MAX + 1, 20 * 1024 * 1024]
  for (const chunked of [false, true]) {
    for (const size of sizes) {
      const body = randomBytes(size)
      const name = `${size} B, ${chunked ? 'chunked' : 'content-length'}`
      const seen = await send(port, body, chunked, { 'x-max': String(MAX) })
      t.equal(seen.sha, createHash('sha256').update(body).digest('hex'), `${name}: sha256 of prefix + rest`)
      t.equal(seen.prefix + seen.rest, size, `${name}: byte count`)
      t.equal(seen.complete, size <= MAX, `${name}: complete`)
      t.ok(seen.prefix <= MAX, `${name}: never holds more than the max (${seen.prefix})`)
      if (size <= MAX) t.equal(seen.prefix, size, `${name}: a complete body is all in the prefix`)
      else t.ok(seen.prefix > 0, `${name}: something was buffered before stopping`)
    }
  }
  t.strictSame(errors, [])
})

t.test('a first chunk larger than the max: nothing held, all of it in the rest', async (t) => {
  const { port } = await startServer(t)
  const body = randomBytes(5000)
  const seen = await send(port, body, false, { 'x-max': '10' })
  t.strictSame(seen, { complete: false, prefix: 0, rest: 5000, sha: createHash('sha256').update(body).digest('hex') })
  const zero = await send(port, Buffer.alloc(0), false, { 'x-max': '0' })
  t.equal(zero.complete, true, 'an empty body fits a max of 0')
})

t.test('the paused rest survives a wait (a pool pick) under backpressure', async (t) => {
  const { port } = await startServer(t)
  const body = randomBytes(8 * 1024 * 1024)
  for (const chunked of [false, true]) {
    const seen = await send(port, body, chunked, { 'x-max': String(MAX), 'x-delay': '150' })
    t.equal(seen.sha, createHash('sha256').update(body).digest('hex'), `${chunked ? 'chunked' : 'content-length'}: exact bytes after a 150 ms pause`)
    t.equal(seen.complete, false)
  }
})

/** Raw client: headers declaring `declared` bytes, `sent` bytes of body, then a reset. */
async function abortAfter (port: number, declared: string, sent: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.write(`POST / HTTP/1.1\r\nhost: x\r\nx-max: 64\r\n${declared}\r\n\r\n`)
  socket.write(Buffer.alloc(sent, 'a'))
  await sleep(50)
  socket.resetAndDestroy()
}

t.test('a client abort before the limit rejects with SIDECAR_ERR_BODY_ABORTED and a cause', async (t) => {
  const captured: unknown[] = []
  const server = http.createServer((req) => {
    readBodyPrefix(req, 1_000_000).then(
      (b) => captured.push({ resolved: b.bytes.length }),
      (err: unknown) => captured.push(err)
    )
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  for (const declared of ['content-length: 1000', 'transfer-encoding: chunked']) {
    captured.length = 0
    await abortAfter(port, declared, declared.startsWith('content') ? 100 : 0)
    for (let i = 0; i < 100 && captured.length === 0; i++) await sleep(10)
    const err = captured[0]
    t.ok(isSidecarError(err) && err.code === 'SIDECAR_ERR_BODY_ABORTED', `${declared}: BODY code`)
    t.match((err as Error).message, /^the request body ended early after \d+ bytes: /)
    t.ok((err as Error).cause instanceof Error, `${declared}: the stream error is the cause`)
  }
})

t.test('an abort after the prefix was taken (listeners removed) does not crash the process', async (t) => {
  let resolvedReq: IncomingMessage | undefined
  let result: { complete: boolean, length: number } | undefined
  const server = http.createServer((req) => {
    void readBodyPrefix(req, 64).then((b) => {
      resolvedReq = req
      result = { complete: b.complete, length: b.bytes.length }
    })
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.off('uncaughtException', onUncaught) })
  await abortAfter(port, 'content-length: 10000', 1000)
  for (let i = 0; i < 100 && resolvedReq?.destroyed !== true; i++) await sleep(10)
  t.strictSame(result, { complete: false, length: 0 }, 'resolved incomplete (the first chunk was over 64 bytes)')
  t.equal(resolvedReq?.destroyed, true, 'the request was torn down')
  t.strictSame(uncaught, [], 'no uncaught error')
})

t.test('a stream that already ended resolves empty and complete; a destroyed one rejects', async (t) => {
  const { PassThrough } = await import('node:stream')
  const ended = new PassThrough()
  ended.end()
  ended.resume()
  await new Promise((resolve) => ended.once('end', resolve))
  t.strictSame(await readBodyPrefix(ended, 10), { bytes: Buffer.alloc(0), complete: true })
  const destroyed = new PassThrough()
  destroyed.destroy()
  await t.rejects(readBodyPrefix(destroyed, 10), { code: 'SIDECAR_ERR_BODY_ABORTED' })
})
