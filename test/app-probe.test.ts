// The TCP readiness probe against real sockets: an app that listens, a port that refuses, an app
// (a real child process) that starts listening late, the timeout and an abort.
import t from 'tap'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { canConnect, waitForApp } from '../src/app-probe.ts'
import { superviseApp } from '../src/supervisor.ts'
import { deadPort, listen } from './helpers/net.ts'

t.test('canConnect: true against a listening port, false against a refusing one', async (t) => {
  const server = net.createServer((socket) => { socket.destroy() })
  const port = await listen(server)
  t.teardown(() => { server.close() })
  t.equal(await canConnect(`http://127.0.0.1:${port}`, 1000), true)
  t.equal(await canConnect(`http://127.0.0.1:${port}/some/path?q=1`, 1000), true, 'only host and port count')
  const dead = await deadPort()
  t.equal(await canConnect(`http://127.0.0.1:${dead}`, 1000), false)
})

t.test('canConnect sends nothing: the app sees a connection that closes without a byte', async (t) => {
  let received = -1
  const closed = new Promise<void>((resolve) => {
    const server = net.createServer((socket) => {
      received = 0
      socket.on('data', (d) => { received += d.length })
      socket.on('close', () => { resolve() })
    })
    t.teardown(() => { server.close() })
    void listen(server).then((port) => canConnect(`http://127.0.0.1:${port}`, 1000))
  })
  await closed
  t.equal(received, 0)
})

t.test('waitForApp: true once an app started late by the supervisor listens', async (t) => {
  const port = await deadPort()
  const app = superviseApp({
    command: process.execPath,
    args: [fileURLToPath(new URL('fixtures/apps/listen-late.mjs', import.meta.url)), String(port), '400'],
    logger: pino({ level: 'silent' }),
  })
  t.teardown(async () => { await app.stop('SIGKILL', 0) })
  const began = Date.now()
  t.equal(await canConnect(`http://127.0.0.1:${port}`, 500), false, 'not yet')
  t.equal(await waitForApp(`http://127.0.0.1:${port}`, { timeoutMs: 10_000, intervalMs: 50 }), true)
  const took = Date.now() - began
  t.ok(took >= 380 && took < 5000, `became ready after ${took} ms (the app listens after 400 ms)`)
  t.equal(await canConnect(`http://127.0.0.1:${port}`, 1000), true)
  t.strictSame(await app.stop('SIGTERM', 2000), { code: null, signal: 'SIGTERM', exitCode: 143 })
})

t.test('waitForApp: false after timeoutMs against a dead port', async (t) => {
  const port = await deadPort()
  const began = Date.now()
  t.equal(await waitForApp(`http://127.0.0.1:${port}`, { timeoutMs: 300, intervalMs: 20 }), false)
  const took = Date.now() - began
  t.ok(took >= 290 && took < 1500, `gave up after ${took} ms for a 300 ms timeout`)
})

t.test('waitForApp: an abort ends the wait early with false', async (t) => {
  const port = await deadPort()
  const ac = new AbortController()
  setTimeout(() => { ac.abort() }, 100)
  const began = Date.now()
  t.equal(await waitForApp(`http://127.0.0.1:${port}`, { timeoutMs: 10_000, intervalMs: 5000, signal: ac.signal }), false)
  const took = Date.now() - began
  t.ok(took < 1000, `ended ${took} ms after the start, not after the 5 s interval`)
  t.equal(await waitForApp(`http://127.0.0.1:${port}`, { timeoutMs: 10_000, signal: ac.signal }), false, 'an aborted signal: no attempt')
})
