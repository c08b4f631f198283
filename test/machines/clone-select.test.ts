// Pure parts of the pool: the create request cloned from this Machine, and the split of a
// listed pool into kept, extra and stale Machines.
import t from 'tap'
import { buildCreateRequest } from '../../src/machines/clone.ts'
import { stateRank, viewPool } from '../../src/machines/select.ts'
import type { Machine } from '../../src/machines/api-types.ts'
import { poolConfig } from '../fixtures/machines/setup.ts'

t.test('buildCreateRequest', async (t) => {
  const own: Machine = {
    id: 'self',
    region: 'fra',
    config: {
      image: 'registry.fly.io/a:old',
      env: { A: '1', B: '2' },
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
      services: [{ internal_port: 8080, autostop: true, autostart: false }],
      metadata: { fly_process_group: 'app', fly_platform_version: 'v2' },
      mounts: [{ volume: 'v' }],
      schedule: 'daily',
      auto_destroy: true,
      size: 'shared-cpu-1x',
    },
  }
  const cases: { name: string, pool: Parameters<typeof poolConfig>[1], image: string | undefined, region: string | undefined, want: unknown }[] = [
    {
      name: 'defaults: image and region from the arguments, services autostop from the pool',
      pool: {},
      image: 'registry.fly.io/a:new',
      region: 'ams',
      want: {
        name: 'tasker-id1',
        region: 'ams',
        config: {
          image: 'registry.fly.io/a:new',
          env: { A: '1', B: '2', SIDECAR_POOL: 'tasker' },
          guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
          services: [{ internal_port: 8080, autostop: 'stop', autostart: true }],
          metadata: { sidecar_pool: 'tasker', sidecar_create_id: 'id1' },
        },
      },
    },
    {
      name: 'overrides: env over the clone, guest merged, autostop suspend; unknown image/region from the own record',
      pool: { env: { B: 'x', QUEUE: 'long' }, guest: { memory_mb: 2048, cpu_kind: 'performance' }, autostop: 'suspend' },
      image: undefined,
      region: undefined,
      want: {
        name: 'tasker-id1',
        region: 'fra',
        config: {
          image: 'registry.fly.io/a:old',
          env: { A: '1', B: 'x', QUEUE: 'long', SIDECAR_POOL: 'tasker' },
          guest: { cpu_kind: 'performance', cpus: 1, memory_mb: 2048 },
          services: [{ internal_port: 8080, autostop: 'suspend', autostart: true }],
          metadata: { sidecar_pool: 'tasker', sidecar_create_id: 'id1' },
        },
      },
    },
    {
      name: 'SIDECAR_POOL cannot be overridden by the pool env',
      pool: { env: { SIDECAR_POOL: 'app' }, autostop: 'off' },
      image: 'i',
      region: 'ams',
      want: { config: { env: { SIDECAR_POOL: 'tasker' }, services: [{ autostop: 'off', autostart: true }] } },
    },
  ]
  for (const c of cases) {
    const got = buildCreateRequest(own, { pool: poolConfig('tasker', c.pool), image: c.image, region: c.region, createId: 'id1' })
    if (c.name.startsWith('SIDECAR_POOL')) t.match(got, c.want, c.name)
    else t.strictSame(got, c.want, c.name)
  }
  const bare = buildCreateRequest({ id: 'self' }, { pool: poolConfig('w'), image: 'img', region: undefined, createId: 'z' })
  t.strictSame(bare, { name: 'w-z', config: { image: 'img', env: { SIDECAR_POOL: 'w' }, metadata: { sidecar_pool: 'w', sidecar_create_id: 'z' } } }, 'a Machine with a bare config')
  t.strictSame(own.config?.services, [{ internal_port: 8080, autostop: true, autostart: false }], 'the own record is not modified')
})

t.test('viewPool', async (t) => {
  const m = (id: string, state: string, createdAt: string, image = 'new', pool = 'tasker'): Machine => ({ id, state, created_at: createdAt, config: { image, metadata: { sidecar_pool: pool } } })
  const cases: { name: string, list: Machine[], size: number, image: string | undefined, want: { keep: string[], extras: string[], stale: string[] } }[] = [
    { name: 'empty', list: [], size: 1, image: 'new', want: { keep: [], extras: [], stale: [] } },
    {
      name: 'dead states and other pools are dropped',
      list: [m('a', 'destroyed', '2026-01-01T00:00:00Z'), m('b', 'failed', '2026-01-01T00:00:00Z'), m('c', 'destroying', '2026-01-01T00:00:00Z'), m('d', 'started', '2026-01-01T00:00:00Z', 'new', 'other')],
      size: 1,
      image: 'new',
      want: { keep: [], extras: [], stale: [] },
    },
    {
      name: 'the oldest is kept even when a newer one is awake',
      list: [m('young', 'started', '2026-01-02T00:00:00Z'), m('old', 'stopped', '2026-01-01T00:00:00Z')],
      size: 1,
      image: 'new',
      want: { keep: ['old'], extras: ['young'], stale: [] },
    },
    {
      name: 'equal created_at: the lower id wins, for every sidecar alike',
      list: [m('b2', 'started', '2026-01-01T00:00:00Z'), m('a1', 'started', '2026-01-01T00:00:00Z')],
      size: 1,
      image: 'new',
      want: { keep: ['a1'], extras: ['b2'], stale: [] },
    },
    {
      name: 'within the kept set: started, then booting, then asleep',
      list: [m('s1', 'stopped', '2026-01-01T00:00:00Z'), m('c2', 'created', '2026-01-02T00:00:00Z'), m('g3', 'started', '2026-01-03T00:00:00Z')],
      size: 3,
      image: 'new',
      want: { keep: ['g3', 'c2', 's1'], extras: [], stale: [] },
    },
    {
      name: 'another image is stale and never kept',
      list: [m('old', 'started', '2026-01-01T00:00:00Z', 'prev'), m('cur', 'stopped', '2026-01-02T00:00:00Z')],
      size: 1,
      image: 'new',
      want: { keep: ['cur'], extras: [], stale: ['old'] },
    },
    {
      name: 'image unknown: every image counts as current',
      list: [m('old', 'started', '2026-01-01T00:00:00Z', 'prev'), m('cur', 'stopped', '2026-01-02T00:00:00Z')],
      size: 1,
      image: undefined,
      want: { keep: ['old'], extras: ['cur'], stale: [] },
    },
  ]
  for (const c of cases) {
    const view = viewPool(c.list, 'tasker', c.size, c.image)
    t.strictSame({ keep: view.keep.map((x) => x.id), extras: view.extras.map((x) => x.id), stale: view.stale.map((x) => x.id) }, c.want, c.name)
  }
  t.strictSame(['started', 'starting', 'created', 'stopped', 'suspended', 'weird', undefined].map(stateRank), [0, 1, 1, 2, 2, 3, 3])
})
