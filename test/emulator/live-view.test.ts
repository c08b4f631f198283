// The live view: the pure fold of edge events into a request's route (table-driven), and the
// server-sent event stream behind a real edge with plain HTTP servers as Machines — a snapshot
// first, then every change; a page opened later gets the current state and the recent history.
import t, { type Test } from 'tap'
import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { startEdge } from '../../src/emulator/edge.ts'
import type { EdgeEvent, EdgeFleet } from '../../src/emulator/edge.ts'
import { applyEdgeEvent, createLiveView } from '../../src/emulator/live-view.ts'
import type { LiveMachine, LiveRequest, LiveSnapshot, LiveView } from '../../src/emulator/live-view.ts'
import { listen, closeServer } from '../helpers/net.ts'

const T0 = 1_800_000_000_000
const ev = (type: EdgeEvent['type'], at: number, fields: Partial<EdgeEvent> = {}): EdgeEvent =>
  ({ type, requestId: 'r1', method: 'POST', path: '/livewire/update', at: T0 + at, ...fields })
const fold = (events: EdgeEvent[], created?: { ms: number | null }): LiveRequest =>
  events.reduce<LiveRequest | undefined>((r, e) => applyEdgeEvent(r, e, e.type === 'replay' ? created : undefined), undefined) as LiveRequest

t.test('applyEdgeEvent: each kind of route, hop by hop', async (t) => {
  const header = 'instance=t1;timeout=30s;fallback=prefer_self;state=livewire-process'
  const cases: { name: string, events: EdgeEvent[], created?: { ms: number | null }, want: Partial<LiveRequest> }[] = [
    {
      name: 'replayed to a pool Machine created for it, streamed back',
      events: [
        ev('route', 0, { machine: 'a1' }),
        ev('replay', 900, { machine: 'a1', target: 't1', state: 'livewire-process', hop: 1, header }),
        ev('served', 950, { machine: 't1', status: 200 }),
        ev('chunk', 951, { machine: 't1', chunks: 1, bytes: 40 }),
        ev('chunk', 1300, { machine: 't1', chunks: 4, bytes: 160 }),
        ev('done', 2000, { machine: 't1', status: 200, ms: 2000, bytes: 300, chunks: 8 }),
      ],
      created: { ms: 640 },
      want: {
        phase: 'done',
        status: 200,
        chunks: 8,
        bytes: 300,
        ms: 2000,
        hops: [
          { machine: 'a1', via: 'route', at: 0, answer: { kind: 'replay', header, rule: 'livewire-process', at: 900 } },
          { machine: 't1', via: 'replay', at: 900, created: { ms: 640 }, answer: { kind: 'served', status: 200, at: 950 } },
        ],
      },
    },
    {
      name: 'streaming: chunks counted before the end',
      events: [ev('route', 0, { machine: 'a1' }), ev('served', 5, { machine: 'a1', status: 200 }), ev('chunk', 6, { machine: 'a1', chunks: 3, bytes: 90 })],
      want: { phase: 'streaming', status: 200, chunks: 3, bytes: 90, ms: null },
    },
    {
      name: 'an elsewhere bounce from a pool Machine',
      events: [
        ev('route', 0, { machine: 't1' }),
        ev('replay', 3, { machine: 't1', target: 'a1', reason: 'elsewhere', state: 'default', hop: 1, header: 'elsewhere=true;state=default' }),
        ev('served', 8, { machine: 'a1', status: 200 }),
      ],
      want: {
        hops: [
          { machine: 't1', via: 'route', at: 0, answer: { kind: 'elsewhere', header: 'elsewhere=true;state=default', rule: 'default', at: 3 } },
          { machine: 'a1', via: 'elsewhere', at: 3, answer: { kind: 'served', status: 200, at: 8 } },
        ],
      },
    },
    {
      name: 'a woken replay target that cannot be reached: fly-replay-failed back to the replayer',
      events: [
        ev('route', 0, { machine: 'a1' }),
        ev('replay', 2, { machine: 'a1', target: 't1', state: 'livewire-process', hop: 1, header }),
        ev('wake', 3, { machine: 't1', reason: 'stopped' }),
        ev('fallback', 30_003, { machine: 'a1', target: 't1', reason: 'timeout' }),
        ev('served', 30_010, { machine: 'a1', status: 200 }),
      ],
      want: {
        phase: 'streaming',
        hops: [
          { machine: 'a1', via: 'route', at: 0, answer: { kind: 'replay', header, rule: 'livewire-process', at: 2 } },
          { machine: 't1', via: 'replay', at: 2, woke: { from: 'stopped', ms: null }, unreachable: { reason: 'timeout', at: 30_003 } },
          { machine: 'a1', via: 'fallback', at: 30_003, reason: 'timeout', answer: { kind: 'served', status: 200, at: 30_010 } },
        ],
      },
    },
    {
      name: 'a stopped Machine woken for the request, with the wake time',
      events: [ev('route', 0, { machine: 't1' }), ev('wake', 1, { machine: 't1', reason: 'suspended' }), ev('ready', 700, { machine: 't1', ms: 699 })],
      want: { phase: 'routing', hops: [{ machine: 't1', via: 'route', at: 0, woke: { from: 'suspended', ms: 699 } }] },
    },
    {
      name: 'an error the edge answered itself',
      events: [ev('route', 0, { machine: 'a1' }), ev('error', 12, { status: 502, reason: 'PR04: fly-replay target t9 unavailable: no_candidate' })],
      want: { phase: 'error', status: 502, error: 'PR04: fly-replay target t9 unavailable: no_candidate', ms: 12 },
    },
  ]
  for (const c of cases) {
    const got = fold(c.events, c.created)
    const subset = Object.fromEntries(Object.keys(c.want).map((k) => [k, got[k as keyof LiveRequest]]))
    t.strictSame(subset, c.want, c.name)
    t.equal(got.start, T0, `${c.name}: starts at the first event`)
  }
})

interface Fake { id: string, url: string, hits: number }

async function machine (t: Test, id: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Fake> {
  const fake: Fake = { id, url: '', hits: 0 }
  const server = http.createServer((req, res) => { fake.hits++; req.resume(); req.on('end', () => handler(req, res)) })
  fake.url = `http://127.0.0.1:${await listen(server)}`
  t.teardown(() => closeServer(server))
  return fake
}

/** Reads server-sent events from `url` until `until` is satisfied or 10 s pass. */
async function readEvents (url: string, until: (events: { event: string, data: unknown }[]) => boolean): Promise<{ event: string, data: unknown }[]> {
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), 10_000)
  const res = await fetch(url, { signal: ac.signal })
  const out: { event: string, data: unknown }[] = []
  let buf = ''
  try {
    const decoder = new TextDecoder()
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true })
      let end
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, end)
        buf = buf.slice(end + 2)
        const event = /^event: (.*)$/m.exec(frame)?.[1]
        const data = /^data: (.*)$/m.exec(frame)?.[1]
        if (event !== undefined && data !== undefined) out.push({ event, data: JSON.parse(data) })
      }
      if (until(out)) break
    }
  } finally {
    clearTimeout(timer)
    ac.abort()
  }
  return out
}

const machineCard = (id: string, pool: string): Omit<LiveMachine, 'createdBy' | 'createdFor' | 'startMs' | 'inFlight' | 'idleAt'> =>
  ({ id, pool, state: 'started', image: 'registry.fly.io/demo:deployment-1', region: 'local', createdAt: Date.now(), autostop: pool !== 'app' })

t.test('the event stream: snapshot, then machines and requests as they change; a late page gets the history', async (t) => {
  const tasker = await machine(t, 't1', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    let n = 0
    const tick = setInterval(() => {
      res.write(`data: ${++n}\n\n`)
      if (n === 4) { clearInterval(tick); res.end() }
    }, 150)
  })
  const states = new Map([['a1', 'started'], ['t1', 'started']])
  const live: LiveView = createLiveView({ app: 'demo', idleMs: 30_000, history: 3, states: () => [...states].map(([id, state]) => ({ id, state })) })
  t.teardown(() => live.close())
  const app = await machine(t, 'a1', (req, res) => {
    if (req.url === '/work') {
      // As a sidecar does: the pool Machine is created while the request waits for its answer.
      live.created(machineCard('t1', 'tasker'))
      live.machine({ id: 't1', startMs: 480 })
      res.writeHead(204, { 'fly-replay': 'instance=t1;state=work-rule' }).end()
      return
    }
    res.end('page')
  })
  const fleet: EdgeFleet = {
    list: () => [{ id: 'a1', state: 'started', url: app.url }, ...(live.snapshot().machines.some((m) => m.id === 't1') === true ? [{ id: 't1', state: 'started', url: tasker.url }] : [])],
    wake: async () => { throw new Error('not used') },
  }
  live.created({ ...machineCard('a1', 'app'), createdBy: 'dev' })
  const edge = await startEdge({ app: 'demo', fleet, onEvent: (e) => live.edgeEvent(e), intercept: live.handle })
  t.teardown(() => edge.close())

  // The live view's own paths are answered by the edge, never routed to a Machine.
  const page = await fetch(`${edge.url}/_dev/`)
  t.equal(page.status, 200)
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  t.match(await page.text(), /new EventSource\('\/_dev\/events'\)/)
  const bare = await fetch(`${edge.url}/_dev?x=1`)
  t.equal(bare.headers.get('content-type'), 'text/html; charset=utf-8', '/_dev with a query is the page too')
  await bare.text()
  const head = await fetch(`${edge.url}/_dev/events`, { method: 'HEAD' })
  t.strictSame([head.status, head.headers.get('content-type')], [200, 'text/event-stream; charset=utf-8'])
  const missing = await fetch(`${edge.url}/_dev/nope`)
  t.equal(missing.status, 404)
  await missing.text()
  const post = await fetch(`${edge.url}/_dev/state`, { method: 'POST' })
  t.equal(post.status, 405)
  await post.text()
  t.equal(app.hits + tasker.hits, 0, 'no Machine saw them')

  const stream = readEvents(`${edge.url}/_dev/events`, (evs) => evs.some((e) => e.event === 'request' && (e.data as LiveRequest).path === '/work' && (e.data as LiveRequest).phase === 'done'))
  await new Promise((resolve) => setTimeout(resolve, 100))
  const work = await fetch(`${edge.url}/work`)
  t.equal(work.status, 200)
  t.equal(await work.text(), 'data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n')
  const events = await stream
  const first = events[0]
  t.equal(first?.event, 'snapshot', 'a snapshot comes first')
  t.strictSame((first?.data as LiveSnapshot).machines.map((m) => [m.id, m.pool, m.createdBy]), [['a1', 'app', 'dev']])

  const tCard = events.filter((e) => e.event === 'machine' && (e.data as LiveMachine).id === 't1').map((e) => e.data as LiveMachine)
  t.strictSame(tCard[0] && [tCard[0].createdBy, tCard[0].pool, tCard[0].state], ['a1', 'tasker', 'started'], 'the tasker card: created by the Machine the request waited on')
  const mine = events.filter((e) => e.event === 'request' && (e.data as LiveRequest).path === '/work').map((e) => e.data as LiveRequest)
  t.equal(tCard[0]?.createdFor, mine[0]?.id, 'and for that request')
  const streaming = mine.filter((r) => r.phase === 'streaming')
  t.ok(streaming.some((r) => r.chunks >= 1 && r.chunks < 4), `chunks were counted while streaming: ${streaming.map((r) => r.chunks).join(', ')}`)
  const last = mine.at(-1) as LiveRequest
  t.equal(last.phase, 'done')
  t.equal(last.chunks, 4)
  t.strictSame(last.hops.map((h) => [h.via, h.machine, h.answer?.kind, h.created?.ms]), [
    ['route', 'a1', 'replay', undefined],
    ['replay', 't1', 'served', 480],
  ], 'the route: app Machine → fly-replay → the tasker created for it')
  t.strictSame(last.hops[0]?.answer, { kind: 'replay', header: 'instance=t1;state=work-rule', rule: 'work-rule', at: last.hops[0]?.answer?.at })

  // State changes reach the page without a hook: the poll finds them.
  const stopped = readEvents(`${edge.url}/_dev/events`, (evs) => evs.some((e) => e.event === 'machine' && (e.data as LiveMachine).state === 'stopped'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  states.set('t1', 'stopped')
  const after = await stopped
  t.strictSame(after.filter((e) => e.event === 'machine').map((e) => [(e.data as LiveMachine).id, (e.data as LiveMachine).state, (e.data as LiveMachine).idleAt]), [['t1', 'stopped', null]])

  // A page opened later: the current state and the last `history` requests, oldest first.
  for (const p of ['/a', '/b', '/c']) await (await fetch(`${edge.url}${p}`)).text()
  const late = await readEvents(`${edge.url}/_dev/events`, (evs) => evs.length >= 1)
  const snap = late[0]?.data as LiveSnapshot
  t.equal(late[0]?.event, 'snapshot')
  t.strictSame(snap.requests.map((r) => [r.path, r.phase]), [['/a', 'done'], ['/b', 'done'], ['/c', 'done']], 'the last 3 requests')
  t.strictSame(snap.machines.map((m) => [m.id, m.state]), [['a1', 'started'], ['t1', 'stopped']])
  const json = await (await fetch(`${edge.url}/_dev/state`)).json() as LiveSnapshot
  t.strictSame(json.requests.map((r) => r.path), ['/a', '/b', '/c'], '/_dev/state has the same')
})

t.test('a Machine created with no request waiting, or with requests waiting on two Machines, has an unknown creator', async (t) => {
  const live = createLiveView({ app: 'demo', idleMs: 1000 })
  t.teardown(() => live.close())
  live.created(machineCard('p1', 'tasker'))
  live.edgeEvent(ev('route', 0, { requestId: 'x', machine: 'a1' }))
  live.edgeEvent(ev('route', 1, { requestId: 'y', machine: 'a2' }))
  live.created(machineCard('p2', 'tasker'))
  live.edgeEvent(ev('served', 2, { requestId: 'y', machine: 'a2', status: 200 }))
  live.created(machineCard('p3', 'tasker'))
  t.strictSame(live.snapshot().machines.map((m) => [m.id, m.createdBy, m.createdFor]), [
    ['p1', 'Machines API', null],
    ['p2', 'Machines API', null],
    ['p3', 'a1', 'x'],
  ])
})
