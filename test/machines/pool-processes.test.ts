// Two real sidecar processes (test/fixtures/machines/racer.ts) find the pool empty at the same
// moment against one fake Machines API: both create, and both converge on the oldest Machine;
// the extra is stopped by its creator and destroyed, leaving exactly `size` (1).
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import t from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { byAge } from '../../src/machines/select.ts'
import { loadMachinesSpec } from '../helpers/openapi.ts'
import { APP, TOKEN, live, seedSelf } from '../fixtures/machines/setup.ts'

const spec = loadMachinesSpec()
const RACER = new URL('../fixtures/machines/racer.ts', import.meta.url).pathname

t.test('two sidecar processes racing converge to one pool Machine', async (t) => {
  const api = await startMachinesApi({ app: APP, token: TOKEN, createDelayMs: 80, listLagMs: 20 })
  t.teardown(() => api.close())
  const racers = ['selfa000000001', 'selfb000000002'].map((id) => {
    seedSelf(api, id)
    const child = spawn(process.execPath, [RACER], { env: { ...process.env, API_URL: api.url, SELF_ID: id }, stdio: ['pipe', 'pipe', 'inherit'] })
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
  const codes = await Promise.all(racers.map((r) => r.exited))
  t.strictSame(codes, [0, 0], 'both exited cleanly')
  const creates = api.calls.filter((c) => c.method === 'POST' && c.path === `/v1/apps/${APP}/machines`)
  t.equal(creates.length, 2, 'each found the pool empty and created')
  const all = [...api.machines.values()].filter((m) => m.metadata.sidecar_pool === 'tasker').sort(byAge)
  const oldest = all[0]
  if (oldest === undefined) throw new Error('no tasker')
  for (const r of racers) {
    t.match(r.seen, [{ ready: true }, { first: [oldest.id] }, { final: oldest.id }], 'every pick of both processes went to the oldest')
  }
  const extra = all[1]
  t.ok(extra !== undefined && api.calls.some((c) => c.method === 'POST' && c.path.endsWith(`/${extra.id}/stop`)), 'the extra was stopped by its creator')
  t.strictSame(live(api).map((m) => m.id), [oldest.id], 'and destroyed by a later lookup: the pool is back to size 1')
  t.strictSame(spec.checkAll(api.calls), [])
})
