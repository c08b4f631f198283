// The elastic and other-app pool keys (issue 15): what each combination loads to, and every
// combination that is refused, with its position. `size: N` alone is covered by load.test.ts.
import t from 'tap'
import { isSidecarError } from '../../src/errors.ts'
import { parseConfig, type ConfigProblem } from '../../src/config/load.ts'
import { isConfigFile } from '../../src/config/schema.ts'

const APP = 'app:\n  url: http://127.0.0.1:8081\n'
const BASE = { autostop: 'stop', env: {}, guest: {}, oversize: 'forward', unavailable: 'local' }

function problems (yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'f.yaml', env)
    return []
  } catch (err) {
    if (!isSidecarError(err) || err.code !== 'SIDECAR_ERR_CONFIG_INVALID') throw err
    return (err.details?.problems as ConfigProblem[]).map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`)
  }
}

const pools = (body: string): string => `${APP}pools:\n  tasker:\n${body}`

t.test('what each pool form loads to', async (t) => {
  const cases: { name: string, body: string, want: Record<string, unknown> }[] = [
    {
      name: 'the issue example',
      body: '    min: 0\n    max: 4\n    concurrency: 2\n    destroy-after: 30m\n',
      want: { name: 'tasker', size: 4, ...BASE, elastic: { min: 0, max: 4, concurrency: 2, destroyAfterMs: 1_800_000 } },
    },
    {
      name: 'max alone: min 0, no concurrency limit, destroy-after 30m',
      body: '    max: 3\n',
      want: { name: 'tasker', size: 3, ...BASE, elastic: { min: 0, max: 3, destroyAfterMs: 1_800_000 } },
    },
    {
      name: 'one Machine per request',
      body: '    max: 10\n    concurrency: 1\n    destroy-after: 5m\n',
      want: { name: 'tasker', size: 10, ...BASE, elastic: { min: 0, max: 10, concurrency: 1, destroyAfterMs: 300_000 } },
    },
    {
      name: 'size with concurrency: exactly size, placed by load',
      body: '    size: 2\n    concurrency: 3\n',
      want: { name: 'tasker', size: 2, ...BASE, elastic: { min: 2, max: 2, concurrency: 3, destroyAfterMs: 1_800_000 } },
    },
    {
      name: 'concurrency alone: like size 1',
      body: '    concurrency: 4\n',
      want: { name: 'tasker', size: 1, ...BASE, elastic: { min: 1, max: 1, concurrency: 4, destroyAfterMs: 1_800_000 } },
    },
    {
      name: 'min equal to max',
      body: '    min: 2\n    max: 2\n',
      want: { name: 'tasker', size: 2, ...BASE, elastic: { min: 2, max: 2, destroyAfterMs: 1_800_000 } },
    },
    {
      name: 'another app: oversize defaults to local',
      body: '    app: shop-tasker\n',
      want: { name: 'tasker', size: 1, ...BASE, oversize: 'local', app: 'shop-tasker' },
    },
    {
      name: 'another app with oversize reject',
      body: '    app: shop-tasker\n    oversize: reject\n',
      want: { name: 'tasker', size: 1, ...BASE, oversize: 'reject', app: 'shop-tasker' },
    },
  ]
  for (const c of cases) {
    const yaml = pools(c.body)
    t.strictSame(parseConfig(yaml, 'f.yaml', {}).pools.tasker, c.want, c.name)
    t.ok(isConfigFile((await import('yaml')).parse(yaml)), `${c.name}: the JSON Schema accepts it too`)
  }
})

t.test('refused combinations, each at its key', async (t) => {
  const cases: { name: string, body: string, want: string[] }[] = [
    { name: 'size with max', body: '    size: 2\n    max: 3\n', want: ['6:5 pools.tasker.max: `size` means exactly that many Machines: use min and max instead of size'] },
    { name: 'size with min', body: '    min: 1\n    size: 2\n', want: ['5:5 pools.tasker.min: `size` means exactly that many Machines: use min and max instead of size'] },
    { name: 'size with destroy-after', body: '    size: 2\n    destroy-after: 5m\n', want: ['6:5 pools.tasker.destroy-after: `size` means exactly that many Machines: use min and max instead of size'] },
    { name: 'min without max', body: '    min: 2\n', want: ['5:5 pools.tasker.min: needs max (the most Machines the pool may have)'] },
    { name: 'min above max', body: '    min: 5\n    max: 2\n', want: ['5:10 pools.tasker.min: must be at most max (2), got 5'] },
    { name: 'max 0', body: '    max: 0\n', want: ['5:10 pools.tasker.max: must be at least 1, got 0'] },
    { name: 'concurrency 0', body: '    max: 2\n    concurrency: 0\n', want: ['6:18 pools.tasker.concurrency: must be at least 1, got 0'] },
    { name: 'destroy-after 0s', body: '    max: 2\n    destroy-after: 0s\n', want: ['6:20 pools.tasker.destroy-after: must be more than 0'] },
    { name: 'destroy-after without a unit', body: '    max: 2\n    destroy-after: 30\n', want: ['6:20 pools.tasker.destroy-after: must be a duration like "30s" (a number with ms, s, m or h), got 30: a bare number has no unit, write e.g. "30s"'] },
    { name: 'a bad app name', body: '    app: Shop_Tasker\n', want: ['5:10 pools.tasker.app: must be a Fly app name (lower-case letters, digits and "-"), got "Shop_Tasker"'] },
    {
      name: 'app with Machine keys',
      body: '    app: shop-tasker\n    max: 2\n    env: { A: b }\n    oversize: forward\n',
      want: [
        '6:5 pools.tasker.max: does not apply to a pool on another Fly app (app: shop-tasker): that app\'s own fly.toml and `fly scale count` decide its Machines',
        '7:5 pools.tasker.env: does not apply to a pool on another Fly app (app: shop-tasker): that app\'s own fly.toml and `fly scale count` decide its Machines',
        '8:15 pools.tasker.oversize: a pool on another Fly app takes "local" or "reject": "forward" needs a Machine id, and Fly picks that app\'s Machine',
      ],
    },
  ]
  for (const c of cases) t.strictSame(problems(pools(c.body)), c.want, c.name)
})

t.test('the Machines of a pool on another app know their pool and their origin', async (t) => {
  const yaml = pools('    app: shop-tasker\n')
  const onTasker = parseConfig(yaml, 'f.yaml', { FLY_APP_NAME: 'shop-tasker', FLY_MACHINE_ID: 'm1', SIDECAR_ORIGIN_APP: 'shop' })
  t.equal(onTasker.pool, 'tasker', 'FLY_APP_NAME equal to the pool app makes it a Machine of that pool')
  t.equal(onTasker.originApp, 'shop')
  const byEnv = parseConfig(yaml, 'f.yaml', { FLY_APP_NAME: 'renamed', FLY_MACHINE_ID: 'm1', SIDECAR_POOL: 'tasker' })
  t.equal(byEnv.pool, 'tasker', 'SIDECAR_POOL works too')
  t.equal(byEnv.originApp, null, 'without SIDECAR_ORIGIN_APP the origin is unknown')
  const onShop = parseConfig(yaml, 'f.yaml', { FLY_APP_NAME: 'shop', FLY_MACHINE_ID: 'm2', SIDECAR_ORIGIN_APP: 'shop' })
  t.equal(onShop.pool, 'app', 'the origin app is not in the pool')
  t.equal(onShop.originApp, undefined, 'and has no origin of its own')
})

t.test('the pool examples of docs/pools.md and the cookbook load as they say', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const { parse, stringify } = await import('yaml')
  const blocks: { doc: string, pools: Record<string, unknown> }[] = []
  for (const doc of ['docs/pools.md', 'docs/rules-cookbook.md']) {
    const text = await readFile(new URL(`../../${doc}`, import.meta.url), 'utf8')
    for (const m of text.matchAll(/^```yaml\n([\s\S]*?)^```/gm)) {
      const yaml = parse(m[1] ?? '') as { pools?: Record<string, unknown> } | null
      if (yaml?.pools !== undefined) blocks.push({ doc, pools: yaml.pools })
    }
  }
  t.ok(blocks.length >= 4, `found the examples (${blocks.length})`)
  for (const b of blocks) {
    const c = parseConfig(stringify({ app: { url: 'http://127.0.0.1:8081' }, pools: b.pools }), 'f.yaml', {})
    t.ok(Object.keys(c.pools).length > 0, `${b.doc}: ${Object.keys(b.pools).join(', ')} load`)
  }
  const kinds = (await readFile(new URL('../../docs/pools.md', import.meta.url), 'utf8'))
  const three = parse(/## The three kinds of pool[\s\S]*?```yaml\n([\s\S]*?)```/.exec(kinds)?.[1] ?? '') as { pools: Record<string, unknown> }
  const c = parseConfig(stringify({ app: { url: 'http://127.0.0.1:8081' }, pools: three.pools }), 'f.yaml', {})
  t.equal(c.pools.tasker?.elastic, undefined, 'tasker: fixed')
  t.strictSame(c.pools.exports?.elastic, { min: 0, max: 4, concurrency: 2, destroyAfterMs: 1_800_000 }, 'exports: elastic')
  t.equal(c.pools.reports?.app, 'shop-reports', 'reports: another app')
})
