// Two real app-Machine processes (test/fixtures/machines/racer.ts) with an elastic pool
// (`max: 3`, `concurrency: 4`) get a burst of 20 requests each at the same moment against one fake
// Machines API: both create (each at most max), both converge on the oldest 3, every request goes to one of those,
// and the extras are stopped by their creators and destroyed: the pool never keeps more than max.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { byAge } from '../../src/machines/select.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, TOKEN, live, seedSelf, until } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const RACER = new URL('../fixtures/machines/racer.ts', import.meta.url).pathname
const MAX = 3

t.test('two app Machine processes racing on an elastic pool keep at most max', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 80 })
  t.teardown(() => api.close())
  const racers = ['selfa000000001', 'selfb000000002'].map((id) => {
    seedSelf(api, id)
    const child = spawn(process.execPath, [RACER], { env: { ...process.env, API_URL: api.url, SELF_ID: id, POOL_MAX: String(MAX), POOL_CONCURRENCY: '4' }, stdio: ['pipe', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    const seen: Record<string, unknown>[] = []
    const ready = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const msg = JSON.parse(line) as Record<string, unknown>
        seen.push(msg)
        if (msg.ready === true) resolve()
      })
    })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    return { child, seen, ready, exited }
  })
  await Promise.all(racers.map((r) => r.ready))
  for (const r of racers) r.child.stdin.write('go\n')
  t.strictSame(await Promise.all(racers.map((r) => r.exited)), [0, 0], 'both exited cleanly')
  const creates = api.calls.filter((c) => c.method === 'POST' && c.path === `/v1/apps/${APP}/machines`).length
  t.ok(creates >= MAX && creates <= 2 * MAX, `each created at most max (${creates} creates; fewer than ${2 * MAX} when one saw the other's first)`)
  if (creates > 2 * MAX) for (const r of racers) t.comment(JSON.stringify(r.seen.find((m) => m.logs !== undefined)))
  const oldest = [...api.machines.values()].filter((m) => m.metadata.sidecar_pool === 'tasker').sort(byAge).slice(0, MAX).map((m) => m.id)
  for (const [i, r] of racers.entries()) {
    const used = r.seen.flatMap((m) => [...(m.first as string[] | undefined ?? []), ...(m.later as string[] | undefined ?? [])])
    t.ok(used.length > 0 && used.every((id) => oldest.includes(id)), `racer ${i}: every request went to one of the oldest ${MAX}`)
  }
  t.ok(await until(() => live(api).length === MAX, 5_000), 'the extras are stopped and destroyed')
  t.strictSame(live(api).map((m) => m.id).sort(), [...oldest].sort(), 'the pool keeps exactly the oldest max')
  t.ok(api.calls.filter((c) => c.method === 'DELETE').every((c) => c.query.force === undefined), 'never forced')
  t.strictSame(spec.checkAll(api.calls), [])
})
