// The pure decisions of elastic pools, table-driven: placement by load and which Machines
// scale-down destroys.
import t from 'tap'
import type { Machine } from '../../src/machines/api-types.ts'
import { placeByLoad, scaleDown, type Placed, type Placement, type ScaleDownInput } from '../../src/machines/select.ts'

t.test('placeByLoad', async (t) => {
  const m = (id: string, load: number): Placed => ({ id, load })
  const cases: { name: string, machines: Placed[], concurrency: number | undefined, want: Placement }[] = [
    { name: 'none', machines: [], concurrency: 2, want: { kind: 'full', least: undefined } },
    { name: 'none, no limit', machines: [], concurrency: undefined, want: { kind: 'full', least: undefined } },
    { name: 'the least-loaded', machines: [m('a', 2), m('b', 0), m('c', 1)], concurrency: 3, want: { kind: 'use', id: 'b' } },
    { name: 'a tie goes to the earlier (best state, oldest)', machines: [m('a', 1), m('b', 1)], concurrency: 3, want: { kind: 'use', id: 'a' } },
    { name: 'at concurrency is full', machines: [m('a', 2), m('b', 2)], concurrency: 2, want: { kind: 'full', least: 'a' } },
    { name: 'full names the least-loaded over it', machines: [m('a', 5), m('b', 3)], concurrency: 2, want: { kind: 'full', least: 'b' } },
    { name: 'one under concurrency among full ones', machines: [m('a', 2), m('b', 1)], concurrency: 2, want: { kind: 'use', id: 'b' } },
    { name: 'no limit: always the least-loaded', machines: [m('a', 90), m('b', 40)], concurrency: undefined, want: { kind: 'use', id: 'b' } },
    { name: 'concurrency 1: an idle one', machines: [m('a', 1), m('b', 0)], concurrency: 1, want: { kind: 'use', id: 'b' } },
  ]
  for (const c of cases) t.strictSame(placeByLoad(c.machines, c.concurrency), c.want, c.name)
})

t.test('scaleDown', async (t) => {
  const NOW = Date.parse('2026-12-07T12:00:00Z')
  const ago = (ms: number): string => new Date(NOW - ms).toISOString()
  const machine = (id: string, state: string, idleMs: number, created: string): Machine =>
    ({ id, state, updated_at: ago(idleMs), created_at: created }) as Machine
  const HOUR = 3_600_000
  const a = machine('a', 'stopped', HOUR, '2026-12-07T09:00:00Z')
  const b = machine('b', 'stopped', HOUR, '2026-12-07T09:01:00Z')
  const c = machine('c', 'suspended', HOUR, '2026-12-07T09:02:00Z')
  const started = machine('s', 'started', HOUR, '2026-12-07T09:03:00Z')
  const recent = machine('r', 'stopped', 60_000, '2026-12-07T09:04:00Z')
  const starting = machine('g', 'starting', HOUR, '2026-12-07T09:05:00Z')
  const base: ScaleDownInput = { min: 0, destroyAfterMs: 30 * 60_000, recentMs: 60_000, now: NOW, handedOutAt: () => undefined }
  const cases: { name: string, kept: Machine[], input?: Partial<ScaleDownInput>, want: string[] }[] = [
    { name: 'every idle one, newest first', kept: [a, b, c], want: ['c', 'b', 'a'] },
    { name: 'min stays: the oldest are kept', kept: [a, b, c], input: { min: 2 }, want: ['c'] },
    { name: 'stopped ones count towards min', kept: [a, b, c], input: { min: 3 }, want: [] },
    { name: 'never a started or starting one', kept: [started, starting, a], want: ['a'] },
    { name: 'started ones count towards min too', kept: [started, a, b], input: { min: 2 }, want: ['b'] },
    { name: 'not stopped long enough', kept: [recent, a], want: ['a'] },
    { name: 'exactly destroy-after is enough', kept: [machine('x', 'stopped', 30 * 60_000, '2026-12-07T09:00:00Z')], want: ['x'] },
    { name: 'handed out in the last minute: spared', kept: [a, b], input: { handedOutAt: (id) => id === 'b' ? NOW - 59_999 : undefined }, want: ['a'] },
    { name: 'handed out a minute ago: not spared', kept: [a, b], input: { handedOutAt: (id) => id === 'b' ? NOW - 60_000 : undefined }, want: ['b', 'a'] },
    { name: 'no updated_at: never', kept: [{ id: 'n', state: 'stopped', created_at: '2026-12-07T09:00:00Z' } as Machine], want: [] },
    { name: 'nothing beyond min', kept: [a], input: { min: 1 }, want: [] },
  ]
  for (const c of cases) t.strictSame(scaleDown(c.kept, { ...base, ...c.input }).map((m) => m.id), c.want, c.name)
})
