// `dev` runs a config written for Fly, unchanged: fixed ports on 0.0.0.0 and the default Machines
// API address, which every emulated Machine would share on one computer. Two Machines run side by
// side, a process() call is replayed to the tasker, and a request the rule sends to the pool but
// that cannot be replayed is served where it arrived, which dev says with the reason (no --verbose).
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runDev } from '../../src/emulator/dev.ts'

const DEMO_APP = fileURLToPath(new URL('../../examples/demo/server.ts', import.meta.url))
const AS_ON_FLY = `listen: 0.0.0.0:8080
app:
  url: http://127.0.0.1:8081
metrics:
  listen: 0.0.0.0:9091
fly:
  api-url: http://_api.internal:4280
pools:
  tasker:
    size: 1
    oversize: local
rules:
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      json:
        components[*].calls[*].method: process
    to: tasker
`
const PROCESS = JSON.stringify({ components: [{ snapshot: '{"data":{},"memo":{"id":"c1","name":"rows"}}', updates: {}, calls: [{ path: '', method: 'process', params: [] }] }] })

t.test('a config as deployed on Fly runs under dev as it would on Fly', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dev-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = path.join(dir, 'routes.yaml')
  writeFileSync(config, AS_ON_FLY)
  const lines: string[] = []
  const dev = await runDev({ port: 0, config, appCommand: [process.execPath, DEMO_APP], env: { DEMO_ROWS: '2', DEMO_STEP_MS: '50' }, idleMs: 60_000, log: (line) => lines.push(line) })
  t.teardown(() => dev.close())

  const replayed = await fetch(`${dev.url}/livewire/update`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: PROCESS })
  const body = await replayed.text()
  t.equal(replayed.status, 200)
  t.match(body, /"pool":"tasker"/, 'served by the tasker')
  const states = [...dev.api.machines.values()].map((m) => `${m.metadata.sidecar_pool ?? 'app'}:${m.state}`).sort()
  t.strictSame(states, ['app:started', 'tasker:started'], 'both Machines run, each on its own ports')
  t.match(lines.join('\n'), /replay\s+POST \/livewire\/update: \w+ \(app\) answered fly-replay → \w+ \(tasker\) state=livewire-process/)

  // A chunked body has no length Fly could replay: the pool's oversize (local) applies.
  const chunked = new ReadableStream<Uint8Array>({ start (c) { c.enqueue(new TextEncoder().encode(PROCESS)); c.close() } })
  const local = await fetch(`${dev.url}/livewire/update`, { method: 'POST', headers: { 'content-type': 'application/json', 'fly-force-instance-id': dev.mainMachineId }, body: chunked, duplex: 'half' } as RequestInit)
  t.equal(local.status, 200)
  t.match(await local.text(), /"pool":"app"/, 'served by the app Machine it arrived at')
  const deadline = Date.now() + 5_000
  while (!lines.some((l) => / local {4}/.test(l)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
  const said = lines.filter((l) => / local {4}/.test(l)).map((l) => l.slice(l.indexOf(' local ') + 1))
  t.strictSame(said, [`local    ${dev.mainMachineId} (app): POST /livewire/update served here, not replayed to pool tasker (rule livewire-process): its body cannot be replayed (chunked, or over 1 MiB) and the pool's oversize is local`])
})
