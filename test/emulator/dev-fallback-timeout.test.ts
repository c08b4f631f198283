// Through the emulator with the real sidecar: a stopped tasker that cannot be started (its start
// call fails) is retried until the fly-replay timeout, then the request falls back to the main
// Machine with fly-replay-failed reason=timeout, and is served there.
import t from 'tap'
import { runDev } from '../../src/emulator/dev.ts'

const TIMEOUT_MS = 3_000

t.test('an unstartable tasker times out and the call falls back to the main Machine', async (t) => {
  const dev = await runDev({ port: 0, idleMs: 1_000, env: { DEMO_STEP_MS: '50', DEMO_ROWS: '2', SIDECAR_REPLAY_TIMEOUT: `${TIMEOUT_MS}ms` }, log: () => {} })
  t.teardown(() => dev.close())
  const main = dev.mainMachineId
  const call = async (): Promise<{ res: Response, text: string, ms: number }> => {
    const t0 = Date.now()
    const res = await fetch(`${dev.url}/livewire/update`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-livewire': 'true' },
      body: JSON.stringify({ components: [{ snapshot: '{}', updates: {}, calls: [{ path: '', method: 'process', params: [] }] }] }),
    })
    const text = await res.text()
    return { res, text, ms: Date.now() - t0 }
  }
  const first = await call()
  const tasker = [...dev.api.machines.values()].find((m) => m.metadata.sidecar_pool === 'tasker')
  t.ok(tasker !== undefined)
  const taskerId = tasker?.id ?? ''
  t.equal(first.res.headers.get('x-demo-machine'), taskerId)

  const deadline = Date.now() + 20_000
  while (dev.api.machines.get(taskerId)?.state !== 'stopped' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
  t.equal(dev.api.machines.get(taskerId)?.state, 'stopped', 'the idle tasker stopped')
  const fault = dev.api.fault({ method: 'POST', path: `/v1/apps/demo/machines/${taskerId}/start` }, { status: 500, body: { error: 'no capacity' } }, Infinity)

  const second = await call()
  t.equal(second.res.status, 200)
  t.equal(second.res.headers.get('x-demo-machine'), main, 'served by the main Machine')
  const returns = (JSON.parse(second.text.replace(/\{"stream":true.*?"endStream":true\}/g, '')) as { components: { effects: { returns: Record<string, string>[] } }[] }).components[0]?.effects.returns[0]
  t.match(returns?.replayFailed, new RegExp(`^instance=${taskerId};app=demo;region=local;replay_source=${main};reason=timeout;elapsed_ms=(\\d+)$`))
  const elapsed = Number(/elapsed_ms=(\d+)/.exec(returns?.replayFailed ?? '')?.[1])
  t.comment(`fallback after ${elapsed} ms (timeout ${TIMEOUT_MS} ms); ${fault.hits} start attempts; whole call ${second.ms} ms`)
  t.ok(elapsed >= TIMEOUT_MS - 200 && elapsed < TIMEOUT_MS + 2_000, 'after about the replay timeout')
  t.ok(fault.hits >= 2, 'the edge kept trying to start it')
  t.match(second.text, `"content":"done by ${main}"`, 'and the main Machine streamed the rows')
  const id = second.res.headers.get('fly-request-id')
  t.strictSame(dev.events.filter((e) => e.requestId === id && (e.type === 'fallback' || e.type === 'served')).map((e) => [e.type, e.machine, e.reason]), [
    ['fallback', main, 'timeout'],
    ['served', main, undefined],
  ])
})
