// The pure decisions of contract §4, table-driven: route(), isReplayable(), needsPick(),
// decidePool() (every policy branch, the exact fly-replay headers) and formatDuration().
import t from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import type { PoolConfig } from '../../src/config/types.ts'
import type { PoolPick } from '../../src/machines/types.ts'
import { decidePool, formatDuration, isReplayable, needsPick, route, type PoolDecision, type PoolInput, type Route, type RouteInput } from '../../src/decision/decide.ts'
import { SidecarError } from '../../src/errors.ts'

t.test('route', async (t) => {
  const base: RouteInput = { pool: 'app', onFly: true, replayed: false, fallback: false, target: 'app', ruleName: undefined }
  const cases: Array<{ name: string, input: Partial<RouteInput>, want: Route }> = [
    { name: 'replayed is served here, even for another pool', input: { replayed: true, target: 'tasker' }, want: { kind: 'local', reason: 'replayed' } },
    { name: 'replayed wins over a fallback', input: { replayed: true, fallback: true, target: 'tasker' }, want: { kind: 'local', reason: 'replayed' } },
    { name: 'fallback is served here', input: { fallback: true, target: 'tasker' }, want: { kind: 'local', reason: 'fallback' } },
    { name: 'replayed on a tasker: served here, not elsewhere', input: { pool: 'tasker', replayed: true, target: 'app' }, want: { kind: 'local', reason: 'replayed' } },
    { name: 'replayed off Fly says replayed', input: { onFly: false, replayed: true }, want: { kind: 'local', reason: 'replayed' } },
    { name: 'not on Fly: a pool target is served here', input: { onFly: false, target: 'tasker', ruleName: 'lw' }, want: { kind: 'local', reason: 'not-on-fly' } },
    { name: 'not on Fly, tasker Machine, app target', input: { onFly: false, pool: 'tasker', target: 'app' }, want: { kind: 'local', reason: 'not-on-fly' } },
    { name: 'app target on an app Machine', input: {}, want: { kind: 'local', reason: 'same-pool' } },
    { name: 'tasker target on a tasker Machine', input: { pool: 'tasker', target: 'tasker', ruleName: 'lw' }, want: { kind: 'local', reason: 'same-pool' } },
    { name: 'app target on a tasker: elsewhere with the rule', input: { pool: 'tasker', target: 'app', ruleName: 'pages' }, want: { kind: 'elsewhere', header: 'elsewhere=true;state=pages' } },
    { name: 'no rule on a tasker: elsewhere, state default', input: { pool: 'tasker', target: 'app' }, want: { kind: 'elsewhere', header: 'elsewhere=true;state=default' } },
    { name: 'tasker target on an app Machine', input: { target: 'tasker', ruleName: 'lw' }, want: { kind: 'pool', pool: 'tasker' } },
    { name: 'other pool on a tasker Machine', input: { pool: 'tasker', target: 'exports', ruleName: 'x' }, want: { kind: 'pool', pool: 'exports' } },
  ]
  for (const c of cases) t.strictSame(route({ ...base, ...c.input }), c.want, c.name)
})

t.test('isReplayable: up to 1 MiB with a known length', async (t) => {
  const cases: Array<{ name: string, input: IncomingHttpHeaders, want: boolean }> = [
    { name: 'no body', input: {}, want: true },
    { name: 'content-length 0', input: { 'content-length': '0' }, want: true },
    { name: '1 KiB', input: { 'content-length': '1024' }, want: true },
    { name: 'exactly 1,048,576', input: { 'content-length': '1048576' }, want: true },
    { name: '1,048,577', input: { 'content-length': '1048577' }, want: false },
    { name: '20 MiB', input: { 'content-length': String(20 * 1024 * 1024) }, want: false },
    { name: 'leading zeros', input: { 'content-length': '000010' }, want: true },
    { name: 'chunked', input: { 'transfer-encoding': 'chunked' }, want: false },
    { name: 'chunked with a small content-length', input: { 'transfer-encoding': 'chunked', 'content-length': '5' }, want: false },
    { name: 'any transfer-encoding', input: { 'transfer-encoding': 'gzip, chunked' }, want: false },
    { name: 'two lengths', input: { 'content-length': '5, 5' }, want: false },
    { name: 'negative', input: { 'content-length': '-1' }, want: false },
    { name: 'not a number', input: { 'content-length': 'abc' }, want: false },
    { name: 'empty', input: { 'content-length': '' }, want: false },
    { name: 'a huge number', input: { 'content-length': '9'.repeat(400) }, want: false },
  ]
  for (const c of cases) t.equal(isReplayable(c.input), c.want, c.name)
  t.equal(isReplayable({ 'content-length': '11' }, 10), false, 'a smaller limit')
  t.equal(isReplayable({ 'content-length': '10' }, 10), true, 'exactly a smaller limit')
})

function pool (over: Partial<PoolConfig> = {}): PoolConfig {
  return { name: 'tasker', size: 1, autostop: 'stop', env: {}, guest: {}, oversize: 'forward', unavailable: 'local', ...over }
}

t.test('needsPick', async (t) => {
  const cases: Array<{ name: string, input: [PoolConfig, boolean], want: boolean }> = [
    { name: 'replayable, forward', input: [pool(), true], want: true },
    { name: 'replayable, local', input: [pool({ oversize: 'local' }), true], want: true },
    { name: 'replayable, reject', input: [pool({ oversize: 'reject' }), true], want: true },
    { name: 'oversize, forward: needs a Machine to forward to', input: [pool(), false], want: true },
    { name: 'oversize, local', input: [pool({ oversize: 'local' }), false], want: false },
    { name: 'oversize, reject', input: [pool({ oversize: 'reject' }), false], want: false },
  ]
  for (const c of cases) t.equal(needsPick(...c.input), c.want, c.name)
})

t.test('decidePool: every branch, the exact header', async (t) => {
  const ok: PoolPick = { ok: true, machineId: '148e21ea7d4089' }
  const down = new SidecarError('SIDECAR_ERR_MACHINES_UNAVAILABLE', ['no token'])
  const failed: PoolPick = { ok: false, error: down }
  type Want = PoolDecision | { kind: 'reject', code: string, message: string, status: number, cause: unknown }
  const cases: Array<{ name: string, input: { pool: PoolConfig, replayable: boolean, pick: PoolPick | undefined }, want: Want }> = [
    {
      name: 'replayable + Machine: replay',
      input: { pool: pool(), replayable: true, pick: ok },
      want: { kind: 'replay', machineId: '148e21ea7d4089', header: 'instance=148e21ea7d4089;timeout=30s;fallback=prefer_self;state=livewire-process' },
    },
    { name: 'replayable, no Machine, unavailable local', input: { pool: pool(), replayable: true, pick: failed }, want: { kind: 'local', reason: 'unavailable' } },
    {
      name: 'replayable, no Machine, unavailable reject',
      input: { pool: pool({ unavailable: 'reject' }), replayable: true, pick: failed },
      want: { kind: 'reject', code: 'SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE', message: 'no Machine of pool tasker can be had', status: 503, cause: down },
    },
    {
      name: 'replayable, not picked, unavailable reject',
      input: { pool: pool({ unavailable: 'reject' }), replayable: true, pick: undefined },
      want: { kind: 'reject', code: 'SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE', message: 'no Machine of pool tasker can be had', status: 503, cause: undefined },
    },
    { name: 'oversize forward + Machine: forward', input: { pool: pool(), replayable: false, pick: ok }, want: { kind: 'forward', machineId: '148e21ea7d4089' } },
    { name: 'oversize forward, no Machine, unavailable local', input: { pool: pool(), replayable: false, pick: failed }, want: { kind: 'local', reason: 'unavailable' } },
    {
      name: 'oversize forward, no Machine, unavailable reject',
      input: { pool: pool({ unavailable: 'reject' }), replayable: false, pick: failed },
      want: { kind: 'reject', code: 'SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE', message: 'no Machine of pool tasker can be had', status: 503, cause: down },
    },
    { name: 'oversize local', input: { pool: pool({ oversize: 'local' }), replayable: false, pick: undefined }, want: { kind: 'local', reason: 'oversize' } },
    { name: 'oversize local ignores a pick', input: { pool: pool({ oversize: 'local' }), replayable: false, pick: ok }, want: { kind: 'local', reason: 'oversize' } },
    {
      name: 'oversize reject',
      input: { pool: pool({ oversize: 'reject', unavailable: 'local' }), replayable: false, pick: undefined },
      want: { kind: 'reject', code: 'SIDECAR_ERR_REPLAY_OVERSIZE', message: 'the request body is too large to replay to pool tasker', status: 503, cause: undefined },
    },
  ]
  for (const c of cases) {
    const d = decidePool({ ...c.input, replayTimeout: '30s', ruleName: 'livewire-process' })
    if (d.kind === 'reject') {
      t.strictSame({ kind: d.kind, code: d.error.code, message: d.error.message, status: d.error.status, cause: d.error.cause }, c.want, c.name)
      t.strictSame(d.error.toJSON(), { error: { code: (c.want as { code: string }).code, message: (c.want as { message: string }).message } }, `${c.name}: client body`)
    } else {
      t.strictSame(d, c.want, c.name)
    }
  }
  const d = decidePool({ pool: pool({ name: 'exports' }), replayable: true, pick: { ok: true, machineId: 'e2865013b12345' }, replayTimeout: '1500ms', ruleName: 'rule-3' })
  t.equal(d.kind === 'replay' && d.header, 'instance=e2865013b12345;timeout=1500ms;fallback=prefer_self;state=rule-3', 'timeout and state as given')
})

t.test('formatDuration', async (t) => {
  const cases: Array<{ name: string, input: number, want: string }> = [
    { name: '30 s', input: 30_000, want: '30s' },
    { name: '1.5 s', input: 1500, want: '1500ms' },
    { name: '5 min', input: 300_000, want: '5m' },
    { name: '90 s', input: 90_000, want: '90s' },
    { name: 'an hour in minutes', input: 3_600_000, want: '60m' },
    { name: '1 ms', input: 1, want: '1ms' },
    { name: 'zero', input: 0, want: '0ms' },
  ]
  for (const c of cases) t.equal(formatDuration(c.input), c.want, c.name)
})

t.test('pools on another Fly app (issue 15)', async (t) => {
  const other = pool({ app: 'shop-tasker', oversize: 'local' })
  t.equal(needsPick(other, true), false, 'no pick: Fly picks the Machine of that app')
  t.equal(needsPick(pool({ app: 'shop-tasker', oversize: 'reject' }), false), false, 'not for an oversize body either')
  const cases: Array<{ name: string, input: Partial<PoolInput>, want: PoolDecision }> = [
    {
      name: 'replayable: app=<name>, with timeout, fallback and state',
      input: { pool: other },
      want: { kind: 'replay', machineId: '', header: 'app=shop-tasker;timeout=30s;fallback=prefer_self;state=lw' },
    },
    {
      name: 'a pick (say an error) is ignored: no Machines API is involved',
      input: { pool: other, pick: { ok: false, error: new SidecarError('SIDECAR_ERR_MACHINES_UNKNOWN_POOL', ['tasker']) } },
      want: { kind: 'replay', machineId: '', header: 'app=shop-tasker;timeout=30s;fallback=prefer_self;state=lw' },
    },
    { name: 'oversize local', input: { pool: other, replayable: false }, want: { kind: 'local', reason: 'oversize' } },
  ]
  for (const c of cases) t.strictSame(decidePool({ pool: other, replayable: true, pick: undefined, replayTimeout: '30s', ruleName: 'lw', ...c.input }), c.want, c.name)
  const rejected = decidePool({ pool: pool({ app: 'shop-tasker', oversize: 'reject' }), replayable: false, pick: undefined, replayTimeout: '30s', ruleName: 'lw' })
  t.equal(rejected.kind === 'reject' ? rejected.error.code : rejected.kind, 'SIDECAR_ERR_REPLAY_OVERSIZE', 'oversize reject')

  const base: RouteInput = { pool: 'tasker', onFly: true, replayed: false, fallback: false, target: 'app', ruleName: 'pages', originApp: 'shop' }
  t.strictSame(route(base), { kind: 'elsewhere', header: 'app=shop;state=pages' }, 'on that app, requests for app go back to the origin app')
  t.strictSame(route({ ...base, ruleName: undefined }), { kind: 'elsewhere', header: 'app=shop;state=default' }, 'state default')
  t.strictSame(route({ ...base, target: 'tasker' }), { kind: 'local', reason: 'same-pool' }, 'its own requests are served there')
  t.strictSame(route({ ...base, replayed: true }), { kind: 'local', reason: 'replayed' }, 'replayed ones too')
})

t.test('a Machine of a pool on another app without a known origin serves requests for app itself', async (t) => {
  const base: RouteInput = { pool: 'tasker', onFly: true, replayed: false, fallback: false, target: 'app', ruleName: 'pages', originApp: null }
  t.strictSame(route(base), { kind: 'local', reason: 'no-origin' }, 'elsewhere=true would only bounce inside the pool app')
  t.strictSame(route({ ...base, target: 'exports' }), { kind: 'pool', pool: 'exports' }, 'other pools are unaffected')
})
