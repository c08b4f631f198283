// The kept-alive upstream pool: the idle time an app's Keep-Alive allows, as a table; idle sockets
// reused newest first, dropped after their idle time, when the app closes them, or when they
// receive bytes no request asked for.
import t from 'tap'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_IDLE_MS, UpstreamPool, hostPort, idleTimeoutFor, type UpstreamUser } from '../../src/proxy/upstream.ts'
import { listen } from '../helpers/net.ts'

t.test('idle time from the app\'s Keep-Alive: its timeout minus a second, at most a minute', async (t) => {
  const table: [string | undefined, number][] = [
    [undefined, DEFAULT_IDLE_MS],
    ['', DEFAULT_IDLE_MS],
    ['max=100', DEFAULT_IDLE_MS],
    ['timeout=5', 4_000],
    ['timeout=5, max=1000', 4_000],
    ['max=10, timeout=20', 19_000],
    ['Timeout = 3', 2_000],
    ['timeout=1', 0],
    ['timeout=0', 0],
    ['timeout=3600', 60_000],
  ]
  for (const [value, want] of table) t.equal(idleTimeoutFor(value), want, String(value))
})

t.test('host and port of an origin, IPv6 unbracketed, port 80 by default', async (t) => {
  t.strictSame(hostPort('http://127.0.0.1:8081'), { host: '127.0.0.1', port: 8081 })
  t.strictSame(hostPort('http://[fdaa::3]:8080'), { host: 'fdaa::3', port: 8080 })
  t.strictSame(hostPort('http://app.internal'), { host: 'app.internal', port: 80 })
})

t.test('idle sockets: reused newest first, dropped after their idle time, on close by the app, on stray bytes', async (t) => {
  const peers: net.Socket[] = []
  const server = net.createServer((s) => { s.on('error', () => {}); peers.push(s) })
  const port = await listen(server)
  t.teardown(() => { for (const s of peers) s.destroy(); server.close() })
  const pool = new UpstreamPool(`http://127.0.0.1:${port}`)
  t.teardown(() => pool.destroy())
  t.equal(pool.authority, `127.0.0.1:${port}`)
  const events: string[] = []
  const user: UpstreamUser = {
    upConnect: () => { events.push('connect') },
    upData: () => { events.push('data') },
    upEnd: () => { events.push('end') },
    upError: () => { events.push('error') },
    upClose: () => { events.push('close') },
    upDrain: () => { events.push('drain') },
    upTimeout: () => { events.push('timeout') },
  }
  t.equal(pool.take(user), undefined, 'nothing idle at first')
  const connect = async (): Promise<net.Socket> => {
    const s = pool.connect(user)
    await new Promise((resolve) => s.once('connect', resolve))
    return s
  }
  const a = await connect()
  const b = await connect()
  pool.release(a, 10_000)
  pool.release(b, 10_000)
  t.equal(pool.take(user), b, 'the newest idle socket first')
  pool.release(b, 10_000)

  // The app closes b (the newest): the pool forgets it.
  for (let i = 0; i < 50 && peers.length < 2; i++) await sleep(10)
  ;(peers[1] as net.Socket).end()
  for (let i = 0; i < 100 && !b.destroyed; i++) await sleep(10)
  t.ok(b.destroyed, 'closed by the app → destroyed')
  t.equal(pool.take(user), a, 'the other one is still there')
  t.equal(pool.take(user), undefined)

  // Stray bytes from the app on an idle socket: not trusted again.
  pool.release(a, 10_000)
  ;(peers[0] as net.Socket).write('HTTP/1.1 200 OK\r\n\r\n')
  for (let i = 0; i < 100 && !a.destroyed; i++) await sleep(10)
  t.ok(a.destroyed, 'bytes on an idle socket → destroyed')
  t.equal(pool.take(user), undefined)

  // The idle time runs out.
  const c = await connect()
  pool.release(c, 50)
  await sleep(200)
  t.ok(c.destroyed, 'idle too long → destroyed')
  t.equal(pool.take(user), undefined)

  // The idle time ran out while the event loop was busy (the pool's timer has not run yet):
  // take() still never hands the socket out.
  const e = await connect()
  pool.release(e, 1)
  const until = performance.now() + 5
  while (performance.now() < until) { /* hold the event loop past the idle time */ }
  t.equal(pool.take(user), undefined, 'expired → not taken, even before the timer ran')
  t.ok(e.destroyed)

  // An idle time of 0 (the app's Keep-Alive allows none) keeps nothing.
  const d = await connect()
  pool.release(d, 0)
  t.ok(d.destroyed)
  t.equal(pool.take(user), undefined)
  t.strictSame([...new Set(events)], ['connect'], 'idle sockets\' events never reach the last user')
})
