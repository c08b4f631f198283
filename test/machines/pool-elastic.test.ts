// Elastic pools (issue 15) against the fake Machines API: a burst of N requests with
// `concurrency: C` and `max: M` gets min(M, ceil(N/C)) Machines with exactly that many creates;
// placement follows the reported load; two racing app Machines end with at most `max`;
// scale-down destroys only stopped Machines beyond `min`, never a started one or one handed out
// in the last moments.
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import type { MachinesApi } from '../../src/emulator/machines-api.ts'
import type { ElasticPool } from '../../src/config/types.ts'
import { createPoolMachines } from '../../src/machines/pool.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, FAST, IMAGE, TOKEN, captureLogs, live, makeConfig, poolConfig, seedSelf, startPools, until } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const MACHINES = `/v1/apps/${APP}/machines`

function elastic (e: Partial<ElasticPool>): ReturnType<typeof poolConfig> {
  const full: ElasticPool = { min: 0, max: 1, destroyAfterMs: 30 * 60_000, ...e }
  return poolConfig('tasker', { size: full.max, elastic: full })
}

function creates (api: MachinesApi): number {
  return api.calls.filter((c) => c.method === 'POST' && c.path === MACHINES).length
}

/** How many picks went to each Machine, largest first. */
function spread (ids: readonly string[]): number[] {
  const counts = new Map<string, number>()
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
  return [...counts.values()].sort((a, b) => b - a)
}

t.test('a burst of N with concurrency C and max M: min(M, ceil(N/C)) Machines, exactly that many creates', async (t) => {
  const cases: { n: number, c: number | undefined, m: number, spread: number[], overflows: number }[] = [
    { n: 5, c: 2, m: 4, spread: [2, 2, 1], overflows: 0 },
    { n: 6, c: 1, m: 10, spread: [1, 1, 1, 1, 1, 1], overflows: 0 },
    { n: 10, c: 3, m: 3, spread: [4, 3, 3], overflows: 1 },
    { n: 4, c: 1, m: 2, spread: [2, 2], overflows: 2 },
    { n: 5, c: undefined, m: 3, spread: [5], overflows: 0 },
  ]
  for (const c of cases) {
    await t.test(`N=${c.n} C=${String(c.c)} M=${c.m}`, async (t) => {
      const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 20 })
      t.teardown(() => api.close())
      seedSelf(api)
      const { pools, overflows } = startPools(t, api, {
        pools: [elastic({ max: c.m, ...(c.c === undefined ? {} : { concurrency: c.c }) })],
        readLoad: async () => 0,
        timing: { loadTtlMs: 60_000 },
      })
      const picks = await Promise.all(Array.from({ length: c.n }, () => pools.pick('tasker')))
      const ids = picks.map((p) => p.ok ? p.machineId : `error ${p.error.code}`)
      const want = Math.min(c.m, c.c === undefined ? 1 : Math.ceil(c.n / c.c))
      t.equal(creates(api), want, `exactly ${want} creates`)
      t.equal(live(api).length, want, `${want} Machines`)
      t.strictSame(new Set(ids), new Set(live(api).map((m) => m.id)), 'every pick on one of them, each of them used')
      t.strictSame(spread(ids), c.spread, 'no Machine over C while the pool could grow')
      t.equal(overflows.length, c.overflows, 'the overflows past max are counted')
      t.strictSame(spec.checkAll(api.calls), [])
    })
  }
})

t.test('later requests of a grown pool: the Machines with room, one more created only when all are full', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 10 })
  t.teardown(() => api.close())
  seedSelf(api)
  const { pools } = startPools(t, api, { pools: [elastic({ max: 3, concurrency: 2 })], readLoad: async () => 0, timing: { loadTtlMs: 60_000 } })
  const first = await Promise.all([pools.pick('tasker'), pools.pick('tasker'), pools.pick('tasker')])
  t.equal(creates(api), 2)
  const again = await pools.pick('tasker')
  t.equal(creates(api), 2, 'the second Machine had room: no create')
  const third = await pools.pick('tasker')
  t.equal(creates(api), 3, 'both full: a third one')
  const ids = [...first, again, third].map((p) => p.ok ? p.machineId : '')
  t.strictSame(spread(ids), [2, 2, 1])
})

t.test('placement follows the reported load', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const [a, b, c] = ['a', 'b', 'c'].map((x, i) => api.addMachine({
    id: `${x}0000000000000`,
    state: 'started',
    created_at: `2026-12-01T10:0${i}:00Z`,
    image: IMAGE,
    metadata: { sidecar_pool: 'tasker' },
  }).id)
  const reports = new Map([[a, 2], [b, 0], [c, 1]])
  let reads = 0
  let clock = Date.now()
  const overflows: string[] = []
  const pools = createPoolMachines({
    config: makeConfig(api, {}, [elastic({ max: 3, concurrency: 3 })]),
    logger: captureLogs().logger,
    now: () => clock,
    timing: { ...FAST, loadTtlMs: 1_000, loadStaleMs: 60_000, loadHoldMs: 60_000, loadTransitMs: 0, scaleDownEveryMs: 60_000 },
    readLoad: async (id) => { reads++; return reports.get(id) ?? 0 },
    hooks: { onOverflow: (pool) => overflows.push(pool) },
  })
  t.teardown(() => pools.close())
  const names = new Map([[a, 'a'], [b, 'b'], [c, 'c']])
  const pick = async (): Promise<string> => {
    const p = await pools.pick('tasker')
    return p.ok ? names.get(p.machineId) ?? p.machineId : p.error.code
  }
  const seq: string[] = [await pick()]
  t.ok(await until(() => reads === 3), 'the first placement asked each Machine for its load')
  await new Promise((resolve) => setImmediate(resolve))
  for (let i = 0; i < 6; i++) seq.push(await pick())
  // a: reported 2 + 1 sent; b: 0; c: 1. Least-loaded first, ties to the older; all at 3 → overflow.
  t.strictSame(seq, ['a', 'b', 'b', 'c', 'b', 'c', 'a'])
  t.equal(overflows.length, 1, 'the seventh went over concurrency, counted')
  t.equal(reads, 3, 'no re-read within the TTL')

  reports.set(a, 0); reports.set(b, 3); reports.set(c, 1)
  clock += 1_000
  seq.length = 0
  seq.push(await pick())
  t.ok(await until(() => reads === 6), 're-read once the TTL passed')
  await new Promise((resolve) => setImmediate(resolve))
  for (let i = 0; i < 3; i++) seq.push(await pick())
  // The eighth is placed on what was known (all full), the rest on the new reports: a 0, b 3+1, c 1.
  t.strictSame(seq, ['b', 'a', 'a', 'c'])
  t.equal(overflows.length, 2)
  t.equal(creates(api), 0, 'at max: never a create')
})

t.test('an unreachable Machine: its load is the replays sent there, and it stays usable', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const [a, b] = ['a', 'b'].map((x, i) => api.addMachine({ id: `${x}0000000000000`, state: 'started', created_at: `2026-12-01T10:0${i}:00Z`, image: IMAGE, metadata: { sidecar_pool: 'tasker' } }).id)
  const { pools } = startPools(t, api, {
    pools: [elastic({ max: 2, concurrency: 2 })],
    readLoad: async (id) => { if (id === a) throw new Error('connect ETIMEDOUT'); return 0 },
    timing: { loadTtlMs: 0, loadTransitMs: 0 },
  })
  const ids: string[] = []
  for (let i = 0; i < 4; i++) {
    const p = await pools.pick('tasker')
    ids.push(p.ok ? p.machineId : p.error.code)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.strictSame(ids, [a, b, a, b], 'a (no report) counts its two replays; b reports 0 but its replays since count')
})

t.test('two racing app Machines never keep more than max', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 30 })
  t.teardown(() => api.close())
  const selves = ['selfa000000001', 'selfb000000002']
  for (const id of selves) seedSelf(api, id)
  const racers = selves.map((machineId) => startPools(t, api, {
    fly: { machineId },
    pools: [elastic({ max: 3, concurrency: 2 })],
    readLoad: async () => 0,
    timing: { loadTtlMs: 60_000, scaleDownEveryMs: 50 },
  }))
  const picks = await Promise.all(racers.flatMap((r) => Array.from({ length: 6 }, () => r.pools.pick('tasker'))))
  t.ok(creates(api) > 3, `both created (${creates(api)} creates)`)
  t.ok(await until(() => live(api).length === 3, 5_000), 'the extras are stopped and destroyed: back to max')
  const kept = new Set(live(api).map((m) => m.id))
  t.ok(picks.every((p) => p.ok && kept.has(p.machineId)), 'every request went to a kept Machine')
  const destroyed = api.calls.filter((c) => c.method === 'DELETE')
  t.ok(destroyed.every((c) => c.status === 200 && c.query.force === undefined), 'extras destroyed once stopped, never forced')
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('scale-down: only stopped Machines beyond min, after destroy-after, never a started or recently handed-out one', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const HOUR_AGO = new Date(Date.now() - 3_600_000).toISOString()
  const seed = (x: string, i: number, state: string, updated: string): string => api.addMachine({
    id: `${x}0000000000000`,
    state,
    created_at: `2026-12-01T10:0${i}:00Z`,
    updated_at: updated,
    image: IMAGE,
    metadata: { sidecar_pool: 'tasker' },
  }).id
  const m1 = seed('1', 1, 'stopped', HOUR_AGO)
  const m2 = seed('2', 2, 'stopped', HOUR_AGO)
  const m3 = seed('3', 3, 'started', HOUR_AGO)
  const m4 = seed('4', 4, 'stopped', new Date(Date.now() - 60_000).toISOString())
  const { pools, scaledDown } = startPools(t, api, {
    pools: [elastic({ min: 0, max: 4, concurrency: 2, destroyAfterMs: 30 * 60_000 })],
    readLoad: async () => 0,
    timing: { scaleDownEveryMs: 50, handedOutRecentMs: 1_500, loadTtlMs: 60_000 },
  })
  const deletes = (): string[] => api.calls.filter((c) => c.method === 'DELETE').map((c) => c.path.slice(MACHINES.length + 1))
  const pick = await pools.pick('tasker')
  t.strictSame(pick, { ok: true, machineId: m3 }, 'the started one is used, not one being destroyed')
  t.ok(await until(() => deletes().length === 2), 'the two stopped an hour ago go')
  t.strictSame(deletes().sort(), [m1, m2].sort())
  // The fake API records a DELETE when it arrives; the pool counts it once the answer is back.
  t.ok(await until(() => scaledDown.length >= 2), `counted (${scaledDown.length})`)
  t.equal(scaledDown.length, 2, 'once each')

  // m3 goes idle: stopped long ago on paper, but handed out a moment ago; m4 now old enough.
  api.setState(m3, 'stopped')
  for (const id of [m3, m4]) (api.machines.get(id) as { updated_at: string }).updated_at = HOUR_AGO
  t.ok(await until(() => deletes().includes(m4)), 'the scale-down timer destroys m4 without any request')
  t.notOk(deletes().includes(m3), 'm3 was handed out in the last moments: spared')
  t.ok(await until(() => deletes().includes(m3), 4_000), 'and destroyed once that is long enough ago')
  t.equal(live(api).length, 0, 'min 0: nothing left')
  t.ok(api.calls.filter((c) => c.method === 'DELETE').every((c) => c.status === 200 && c.query.force === undefined), 'never forced, never refused (none was running)')
  t.strictSame(spec.checkAll(api.calls), [])
})

t.test('min stays, even when idle', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN })
  t.teardown(() => api.close())
  seedSelf(api)
  const HOUR_AGO = new Date(Date.now() - 3_600_000).toISOString()
  const ids = ['1', '2', '3'].map((x, i) => api.addMachine({ id: `${x}0000000000000`, state: 'stopped', created_at: `2026-12-01T10:0${i}:00Z`, updated_at: HOUR_AGO, image: IMAGE, metadata: { sidecar_pool: 'tasker' } }).id)
  const { pools } = startPools(t, api, { pools: [elastic({ min: 2, max: 4 })], readLoad: async () => 0, timing: { scaleDownEveryMs: 30 } })
  const pick = await pools.pick('tasker')
  t.strictSame(pick, { ok: true, machineId: ids[0] }, 'the oldest kept one')
  t.ok(await until(() => api.calls.some((c) => c.method === 'DELETE')))
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.strictSame(api.calls.filter((c) => c.method === 'DELETE').map((c) => c.path.slice(MACHINES.length + 1)), [ids[2]], 'only the newest, once')
  t.strictSame(live(api).map((m) => m.id), ids.slice(0, 2))
})

t.test('a failed create: its requests get the error (the caller applies unavailable), no create loop', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 5 })
  t.teardown(() => api.close())
  seedSelf(api)
  const refused = api.fault({ method: 'POST', path: MACHINES }, { status: 422, body: { error: 'insufficient capacity' } }, Number.POSITIVE_INFINITY)
  const { pools } = startPools(t, api, { pools: [elastic({ max: 3, concurrency: 1 })], readLoad: async () => 0 })
  const picks = await Promise.all([pools.pick('tasker'), pools.pick('tasker'), pools.pick('tasker')])
  t.strictSame(picks.map((p) => p.ok ? p.machineId : p.error.code), Array(3).fill('SIDECAR_ERR_MACHINES_CREATE_FAILED'))
  t.match(picks[0], { error: { message: /insufficient capacity/ } }, 'with the API\'s reason')
  t.equal(creates(api), 3, 'one create per Machine wanted, none after they failed')
  refused.clear()
  const later = await pools.pick('tasker')
  t.equal(later.ok, true, 'a later request creates again')
  t.equal(creates(api), 4)
})
