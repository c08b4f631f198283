// The runtime with a stand-in Machine process: start/stop/destroy, the SIGKILL escalation, leftover
// descendants, autostop after idle time, crashes.
import t, { type Test } from 'tap'
import { fileURLToPath } from 'node:url'
import { createRuntime, descendants, alive } from '../../src/emulator/runtime.ts'
import type { RuntimeOptions } from '../../src/emulator/runtime.ts'

const FAKE = fileURLToPath(new URL('./fixtures/fake-machine.ts', import.meta.url))

function runtimeFor (t: Test, opts: Partial<RuntimeOptions> = {}): ReturnType<typeof createRuntime> {
  const rt = createRuntime({ command: [process.execPath, FAKE], idleMs: 60_000, killTimeoutMs: 2_000, readyTimeoutMs: 10_000, ...opts })
  t.teardown(() => rt.close())
  return rt
}

t.test('start runs the Machine on its own ports with its env; stop ends it', async (t) => {
  const rt = runtimeFor(t)
  const url = await rt.start({ id: 'm1', env: { FLY_MACHINE_ID: 'm1' }, autostop: false })
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal(rt.state('m1'), 'started')
  t.equal(await rt.start({ id: 'm1', env: { FLY_MACHINE_ID: 'm1' }, autostop: false }), url, 'start is idempotent')
  const info = await (await fetch(url)).json() as Record<string, string | number>
  t.equal(info.id, 'm1')
  t.equal(`http://127.0.0.1:${String(info.port)}`, url)
  t.not(info.appPort, info.port)
  t.ok(Number(info.appPort) > 0 && Number(info.metricsPort) > 0)
  const pid = rt.pid('m1') as number
  t.equal(info.pid, pid)
  await rt.stop('m1')
  t.equal(rt.state('m1'), 'stopped')
  t.equal(rt.url('m1'), undefined)
  t.notOk(alive(pid), 'the process ended')
  const again = await rt.start({ id: 'm1', env: { FLY_MACHINE_ID: 'm1' }, autostop: false })
  t.equal((await (await fetch(again)).json() as { id: string }).id, 'm1', 'a stopped Machine starts again')
  await rt.destroy('m1')
  t.equal(rt.state('m1'), 'stopped')
})

t.test('a Machine that ignores SIGTERM is SIGKILLed after the kill timeout', async (t) => {
  const rt = runtimeFor(t, { killTimeoutMs: 300 })
  await rt.start({ id: 'm1', env: { FAKE_MODE: 'stubborn' }, autostop: false })
  const pid = rt.pid('m1') as number
  const t0 = Date.now()
  await rt.stop('m1')
  const took = Date.now() - t0
  t.ok(took >= 250 && took < 3_000, `stopped after ${took} ms`)
  t.notOk(alive(pid))
})

t.test('descendants left behind by the main process are ended too', async (t) => {
  const rt = runtimeFor(t)
  const url = await rt.start({ id: 'm1', env: { FAKE_MODE: 'orphan' }, autostop: false })
  const info = await (await fetch(url)).json() as { grandchild: number, pid: number }
  t.ok(alive(info.grandchild))
  t.ok(descendants(info.pid).includes(info.grandchild))
  await rt.stop('m1')
  t.notOk(alive(info.pid))
  t.notOk(alive(info.grandchild), 'the abandoned grandchild was killed')
})

t.test('autostop: idle for idleMs without connections calls onIdle; activity holds it off', async (t) => {
  const idle: { id: string, at: number }[] = []
  const rt = runtimeFor(t, { idleMs: 300, onIdle: (id) => idle.push({ id, at: Date.now() }) })
  const t0 = Date.now()
  await rt.start({ id: 'app', env: {}, autostop: false })
  await rt.start({ id: 'task', env: {}, autostop: true })
  rt.activity('task', 1)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.strictSame(idle, [], 'a Machine with an open connection is never idle')
  const released = Date.now()
  rt.activity('task', 0)
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.strictSame(idle.map((e) => e.id), ['task'], 'only the autostop Machine, once')
  const after = (idle[0]?.at ?? 0) - released
  t.ok(after >= 280 && after < 600, `idle after ${after} ms`)
  t.ok(Date.now() - t0 > 800)
})

t.test('autostop without onIdle stops the Machine itself', async (t) => {
  const rt = runtimeFor(t, { idleMs: 200 })
  await rt.start({ id: 'task', env: {}, autostop: true })
  const pid = rt.pid('task') as number
  const deadline = Date.now() + 3_000
  while (rt.state('task') !== 'stopped' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(rt.state('task'), 'stopped')
  t.notOk(alive(pid))
})

t.test('a crash is reported with the last output; a Machine that cannot start is an error', async (t) => {
  const exits: { id: string, code: number | null, last: readonly string[] }[] = []
  const rt = runtimeFor(t, { onExit: (id, code, signal, last) => exits.push({ id, code, last }) })
  const url = await rt.start({ id: 'm1', env: {}, autostop: false })
  await fetch(`${url}/crash`)
  const deadline = Date.now() + 3_000
  while (exits.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(exits[0]?.id, 'm1')
  t.equal(exits[0]?.code, 7)
  t.equal(exits[0]?.last.at(-1), 'fake: crashing now')
  t.equal(rt.state('m1'), 'stopped')
  await t.rejects(rt.start({ id: 'bad', env: { FAKE_MODE: 'exit' }, autostop: false }), {
    code: 'SIDECAR_ERR_EMULATOR_MACHINE_START',
    message: 'emulated Machine bad did not start: it exited: fake: cannot start',
  })
  t.equal(exits.length, 1, 'a failed start is reported by start(), not as an exit')
})
