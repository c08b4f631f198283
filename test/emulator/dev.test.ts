// End to end through the emulator with the real sidecar and the demo app: the first process()
// creates the tasker and is replayed to it, chunks arrive spaced as the app wrote them, other
// calls landing on the tasker go elsewhere, the idle tasker stops and is woken, an unreachable
// tasker falls back to the main Machine, nothing is served twice, and close() ends every process.
import t from 'tap'
import { runDev } from '../../src/emulator/dev.ts'
import type { DevEmulator } from '../../src/emulator/dev.ts'
import { alive, descendants } from '../../src/emulator/runtime.ts'

const STEP_MS = 150
const ROWS = 5
const IDLE_MS = 1_000
/** The events that say where a request went (a `wake`, `ready` or `chunk` may come between, depending on timing). */
const ROUTING = new Set(['route', 'replay', 'fallback', 'served'])

interface Chunk { at: number, name: string, content: string }
interface Streamed { status: number, headers: Headers, chunks: Chunk[], final: Record<string, unknown>, start: number, end: number }

function livewireBody (method: string): string {
  return JSON.stringify({ _token: 't', components: [{ snapshot: '{"data":{},"memo":{"id":"c1","name":"rows"}}', updates: {}, calls: [{ path: '', method, params: [] }] }] })
}

/** POSTs a Livewire call and reads the answer as Livewire's client does, timing each chunk. */
async function call (url: string, method: string, headers: Record<string, string> = {}): Promise<Streamed> {
  const start = Date.now()
  const res = await fetch(`${url}/livewire/update`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-livewire': 'true', ...headers },
    body: livewireBody(method),
  })
  const chunks: Chunk[] = []
  let buf = ''
  const decoder = new TextDecoder()
  const pattern = /\{"stream":true.*?"endStream":true\}/g
  for await (const part of res.body as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(part, { stream: true })
    for (const m of buf.match(pattern) ?? []) {
      const c = JSON.parse(m) as { body: { name: string, content: string } }
      chunks.push({ at: Date.now(), name: c.body.name, content: c.body.content })
    }
    buf = buf.replace(pattern, '')
  }
  return { status: res.status, headers: res.headers, chunks, final: JSON.parse(buf) as Record<string, unknown>, start, end: Date.now() }
}

function returned (s: Streamed): Record<string, string | null> {
  const c = (s.final.components as { effects: { returns: Record<string, string | null>[] } }[])[0]
  return c?.effects.returns[0] ?? {}
}

async function until (what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const lines: string[] = []
let dev: DevEmulator
let taskerId = ''

t.before(async () => {
  dev = await runDev({
    port: 0,
    idleMs: IDLE_MS,
    killTimeoutMs: 8_000,
    env: { DEMO_STEP_MS: String(STEP_MS), DEMO_ROWS: String(ROWS), SIDECAR_REPLAY_TIMEOUT: '30s' },
    log: (line) => lines.push(line),
  })
})
t.teardown(async () => { await dev?.close() })

t.test('the first process() call creates the tasker and is replayed to it, streaming', async (t) => {
  const main = dev.mainMachineId
  const s = await call(dev.url, 'process')
  t.equal(s.status, 200)
  t.equal(s.headers.get('content-type'), 'text/event-stream')
  t.equal(s.headers.get('x-livewire-stream'), 'true')
  const pools = [...dev.api.machines.values()].map((m) => [m.id, m.metadata.sidecar_pool ?? 'app', m.state])
  t.equal(pools.length, 2, 'one tasker was created')
  const tasker = [...dev.api.machines.values()].find((m) => m.metadata.sidecar_pool === 'tasker')
  taskerId = tasker?.id ?? ''
  t.ok(taskerId !== '' && taskerId !== main)
  t.equal(tasker?.config.env?.SIDECAR_POOL, 'tasker')
  t.equal(s.headers.get('x-demo-machine'), taskerId, 'served by the tasker')
  const r = returned(s)
  t.equal(r.machine, taskerId)
  t.equal(r.pool, 'tasker')
  t.match(r.replaySrc, new RegExp(`^instance=${main};region=local;t=\\d{16};state=livewire-process$`))
  t.equal(dev.api.calls.filter((c) => c.method === 'POST' && /\/machines$/.test(c.path)).length, 2, 'the main Machine and one tasker were created')

  // One chunk per status change, spaced as the app wrote them.
  t.strictSame(s.chunks.map((c) => `${c.name}:${c.content.split(' ')[0] ?? ''}`), [
    'served-by:' + taskerId,
    ...Array.from({ length: ROWS }, (_, i) => [`row-${i + 1}:processing…`, `row-${i + 1}:done`]).flat(),
  ])
  const done = s.chunks.filter((c) => c.content.startsWith('done')).map((c) => c.at)
  const gaps = done.slice(1).map((v, i) => v - (done[i] as number))
  t.comment(`done chunks ${gaps.join(', ')} ms apart (app step ${STEP_MS} ms); first chunk after ${(s.chunks[0]?.at ?? 0) - s.start} ms, whole call ${s.end - s.start} ms`)
  // Buffering would bunch the chunks (gaps near 0, pairs at least twice in 4 gaps); scheduling
  // jitter on a busy machine delays single ones, shortening one gap (seen once under load).
  t.ok(gaps.filter((g) => g < STEP_MS / 3).length <= 1, 'each row arrives on its own, not all at once')
  t.ok((done.at(-1) as number) - (done[0] as number) >= (ROWS - 1) * STEP_MS * 0.75, 'spread over the time the app took')
  t.ok((done[0] as number) < s.end - (ROWS - 1) * STEP_MS * 0.6, 'the first row arrived long before the stream ended')

  const id = s.headers.get('fly-request-id')
  // (A `wake` may come between: on a busy machine the 1 s idle time can pass before the replay.)
  const mine = dev.events.filter((e) => e.requestId === id && ROUTING.has(e.type))
  t.strictSame(mine.map((e) => [e.type, e.machine, e.target]), [
    ['route', main, undefined],
    ['replay', main, taskerId],
    ['served', taskerId, undefined],
  ])
})

t.test('normal requests that land on the tasker go elsewhere, to the main Machine', async (t) => {
  const main = dev.mainMachineId
  const page = await fetch(`${dev.url}/`, { headers: { 'fly-force-instance-id': taskerId } })
  t.equal(page.status, 200)
  t.equal(page.headers.get('x-demo-machine'), main)
  t.match(await page.text(), `served by Machine <b id="page-machine">${main}</b>`)
  const ping = await call(dev.url, 'ping', { 'fly-force-instance-id': taskerId })
  t.equal(returned(ping).machine, main)
  t.match(returned(ping).replaySrc, new RegExp(`^instance=${taskerId};region=local;t=\\d+;state=default$`))
  const id = ping.headers.get('fly-request-id')
  // (If the 1 s idle time stopped the tasker meanwhile, a `wake` comes first: left out here.)
  t.strictSame(dev.events.filter((e) => e.requestId === id && ROUTING.has(e.type)).map((e) => [e.type, e.machine, e.target, e.reason]), [
    ['route', taskerId, undefined, undefined],
    ['replay', taskerId, main, 'elsewhere'],
    ['served', main, undefined, undefined],
  ])
  for (let i = 0; i < 4; i++) {
    const res = await call(dev.url, 'ping')
    t.equal(returned(res).machine, main, 'whichever Machine the edge picks, the main one serves')
  }
})

t.test('the idle tasker autostops and the next process() wakes it', async (t) => {
  // The previous calls may have left it stopped already: a call makes sure it runs.
  if (dev.runtime.state(taskerId) !== 'started') await call(dev.url, 'process')
  const pid = dev.runtime.pid(taskerId) as number
  const family = [pid, ...descendants(pid)]
  t.ok(family.length >= 2, 'the tasker runs a sidecar and its app')
  const t0 = Date.now()
  await until('the tasker to stop', () => dev.api.machines.get(taskerId)?.state === 'stopped', IDLE_MS + 15_000)
  t.comment(`tasker stopped ${Date.now() - t0} ms after its last connection closed (idle ${IDLE_MS} ms)`)
  t.ok(family.every((p) => !alive(p)), 'its sidecar and app processes ended')
  t.match(lines.join('\n'), `had no connection for 1 s: stopping it`)

  const w0 = Date.now()
  const s = await call(dev.url, 'process')
  t.equal(s.status, 200)
  t.equal(returned(s).machine, taskerId, 'the same tasker, woken')
  t.comment(`woken tasker answered its first chunk after ${(s.chunks[0]?.at ?? 0) - w0} ms`)
  const id = s.headers.get('fly-request-id')
  t.ok(dev.events.some((e) => e.requestId === id && e.type === 'wake' && e.machine === taskerId))
  t.equal([...dev.api.machines.values()].length, 2, 'no new Machine was created')
  t.ok(dev.api.calls.some((c) => c.method === 'POST' && c.path.endsWith(`/${taskerId}/start`)))
})

t.test('a tasker that cannot be reached falls back to the main Machine (prefer_self)', async (t) => {
  const main = dev.mainMachineId
  // Gone behind the sidecar's back: its cached pick now names a Machine the edge cannot find.
  await dev.runtime.destroy(taskerId)
  dev.api.setState(taskerId, 'destroyed')
  const s = await call(dev.url, 'process')
  t.equal(s.status, 200)
  const r = returned(s)
  t.equal(r.machine, main, 'served by the main Machine')
  t.match(r.replayFailed, new RegExp(`^instance=${taskerId};app=demo;region=local;replay_source=${main};reason=no_candidate;elapsed_ms=\\d+$`))
  t.equal(r.replaySrc, null, 'a fallback is not a replay')
  t.equal(s.chunks.filter((c) => c.content.startsWith('done')).length, ROWS, 'and it still streams every row')
  const id = s.headers.get('fly-request-id')
  t.strictSame(dev.events.filter((e) => e.requestId === id && (ROUTING.has(e.type) || e.type === 'wake')).map((e) => [e.type, e.machine, e.target]), [
    ['route', main, undefined],
    ['replay', main, taskerId],
    ['fallback', main, taskerId],
    ['served', main, undefined],
  ])
})

t.test('no request was served twice or looped', async (t) => {
  const byRequest = new Map<string, string[]>()
  for (const e of dev.events) byRequest.set(e.requestId, [...(byRequest.get(e.requestId) ?? []), e.type])
  t.ok(byRequest.size >= 8, `${byRequest.size} requests`)
  for (const [id, types] of byRequest) {
    t.equal(types.filter((x) => x === 'served').length, 1, `${id} served once: ${types.join(' ')}`)
    t.ok(types.filter((x) => x === 'replay').length <= 1, `${id} replayed at most once`)
    t.notOk(types.includes('error'), `${id} had no error`)
  }
})

t.test('close() ends every process it started', async (t) => {
  const pid = dev.runtime.pid(dev.mainMachineId) as number
  const family = [pid, ...descendants(pid)]
  t.ok(family.length >= 2)
  await dev.close()
  t.ok(family.every((p) => !alive(p)), `all of ${family.join(', ')} ended`)
  await t.rejects(fetch(dev.url))
})
