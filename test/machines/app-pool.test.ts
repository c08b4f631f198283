// A pool on another Fly app (`app: shop-tasker`, issue 15), with real sidecar processes: on the
// origin app, its requests are answered `fly-replay: app=shop-tasker` with no API token and no
// Machines API call; on the tasker app's Machines (known by FLY_APP_NAME) they are served, and
// the rest goes back with `fly-replay: app=<SIDECAR_ORIGIN_APP>`, or is served there without it.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { startMachinesApi } from '../../src/emulator/machines-api.ts'
import { closeServer, listen } from '../helpers/net.ts'
import { TOKEN } from '../fixtures/machines/setup.ts'

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const PROCESS = JSON.stringify({ components: [{ snapshot: '{}', updates: {}, calls: [{ path: '', method: 'process', params: [] }] }] })

async function startApp (t: Test, name: string): Promise<{ port: number, seen: string[] }> {
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => { seen.push(`${req.method ?? ''} ${req.url ?? ''}`); res.end(`served by ${name}`) })
  })
  const port = await listen(server)
  t.teardown(() => closeServer(server))
  return { port, seen }
}

/** Starts `fly-replay-sidecar --config file` with `env`; resolves with its port and its log lines. */
async function startSidecar (t: Test, file: string, env: Record<string, string>): Promise<{ port: number, logs: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, [CLI, '--config', file], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const logs: Record<string, unknown>[] = []
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the sidecar did not start')), 20_000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the sidecar exited with ${String(code)}`)) })
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as Record<string, unknown>
      logs.push(msg)
      if (msg.msg === 'listening') { clearTimeout(timer); resolve(Number(String(msg.address).split(':').pop())) }
    })
  })
  return { port, logs }
}

async function send (port: number, method: string, url: string, body?: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${url}`, {
    method,
    ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json', 'x-livewire': 'true' } }),
  })
  return `${res.status} ${res.headers.get('fly-replay') ?? '-'} ${await res.text()}`
}

t.test('a pool on another Fly app', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sidecar-app-pool-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // A Machines API that would record any call (none is expected).
  const api = await startMachinesApi({ app: 'shop', token: TOKEN })
  t.teardown(() => api.close())
  const file = path.join(dir, 'routes.yaml')
  await writeFile(file, `listen: 127.0.0.1:0
app:
  url: http://127.0.0.1:\${APP_PORT}
metrics: false
fly:
  api-url: ${api.url}
pools:
  tasker:
    app: shop-tasker
rules:
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      json:
        components[*].calls[*].method: process
    to: tasker
`)

  await t.test('on the origin app: app=shop-tasker, no token, no API call', async (t) => {
    const app = await startApp(t, 'shop')
    const { port, logs } = await startSidecar(t, file, { APP_PORT: String(app.port), FLY_APP_NAME: 'shop', FLY_MACHINE_ID: 'web0000000001', FLY_REGION: 'ams' })
    t.equal(await send(port, 'POST', '/livewire/update', PROCESS), '307 app=shop-tasker;timeout=30s;fallback=prefer_self;state=livewire-process {"replay":true}\n')
    t.equal(await send(port, 'GET', '/dashboard'), '200 - served by shop', 'the rest is served here')
    t.strictSame(app.seen, ['GET /dashboard'], 'the app never saw the pool request')
    t.equal(api.calls.length, 0, 'no Machines API call')
    t.notOk(logs.some((l) => typeof l.msg === 'string' && l.msg.includes('token')), 'and no complaint about a missing token')
  })

  await t.test('on the tasker app: its requests served, the rest sent back to the origin app', async (t) => {
    const app = await startApp(t, 'shop-tasker')
    const { port } = await startSidecar(t, file, { APP_PORT: String(app.port), FLY_APP_NAME: 'shop-tasker', FLY_MACHINE_ID: 'tsk0000000001', SIDECAR_ORIGIN_APP: 'shop' })
    t.equal(await send(port, 'POST', '/livewire/update', PROCESS), '200 - served by shop-tasker')
    t.equal(await send(port, 'GET', '/dashboard'), '307 app=shop;state=default {"replay":true}\n')
    t.strictSame(app.seen, ['POST /livewire/update'])
  })

  await t.test('on the tasker app without SIDECAR_ORIGIN_APP: everything is served there', async (t) => {
    const app = await startApp(t, 'shop-tasker')
    const { port } = await startSidecar(t, file, { APP_PORT: String(app.port), FLY_APP_NAME: 'shop-tasker', FLY_MACHINE_ID: 'tsk0000000002' })
    t.equal(await send(port, 'GET', '/dashboard'), '200 - served by shop-tasker', 'elsewhere=true would only bounce inside the tasker app')
  })
})
