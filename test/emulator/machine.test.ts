// The config an emulated Machine's sidecar runs: the file's, with that Machine's ports and the
// emulator's Machines API in place of what the file says for Fly; nothing else changes, and a
// reload of the file keeps them.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { deadPort } from '../helpers/net.ts'
import { parseConfig } from '../../src/config/load.ts'
import { emulatedConfig } from '../../src/emulator/machine.ts'

const ENV = { PORT: '40001', METRICS_PORT: '40002', APP_PORT: '40003', FLY_API_URL: 'http://127.0.0.1:40004' }

const RULES = `pools:
  tasker: { size: 1 }
rules:
  - name: p
    match: { path: /p }
    to: tasker
`

t.test('the Machine\'s ports and API replace the file\'s, whatever the file says', async (t) => {
  const cases: { name: string, yaml: string, runsApp: boolean, listen: string, metrics: string | null, app: string }[] = [
    { name: 'defaults only (getting-started step 3)', yaml: `app:\n  url: http://127.0.0.1:\${APP_PORT:-8081}\n${RULES}`, runsApp: true, listen: '127.0.0.1:40001', metrics: '127.0.0.1:40002/metrics', app: 'http://127.0.0.1:40003' },
    { name: 'fixed ports and 0.0.0.0, as on Fly', yaml: `listen: 0.0.0.0:8080\napp:\n  url: http://127.0.0.1:8081\nmetrics:\n  listen: 0.0.0.0:9091\n  path: /m\nfly:\n  api-url: http://_api.internal:4280\n${RULES}`, runsApp: true, listen: '127.0.0.1:40001', metrics: '127.0.0.1:40002/m', app: 'http://127.0.0.1:40003' },
    { name: 'metrics off stay off', yaml: `app:\n  url: http://localhost:8081\nmetrics: false\n${RULES}`, runsApp: true, listen: '127.0.0.1:40001', metrics: null, app: 'http://localhost:40003' },
    { name: 'no app command: every Machine proxies to the one app at app.url', yaml: `app:\n  url: http://127.0.0.1:5173\n${RULES}`, runsApp: false, listen: '127.0.0.1:40001', metrics: '127.0.0.1:40002/metrics', app: 'http://127.0.0.1:5173' },
  ]
  for (const c of cases) {
    const file = parseConfig(c.yaml, '/x/routes.yaml', {})
    const got = emulatedConfig(file, ENV, c.runsApp)
    t.strictSame({
      listen: `${got.listen.host}:${got.listen.port}`,
      metrics: got.metrics === null ? null : `${got.metrics.host}:${got.metrics.port}${got.metrics.path}`,
      app: got.app.url,
      api: got.fly.apiUrl,
    }, { listen: c.listen, metrics: c.metrics, app: c.app, api: 'http://127.0.0.1:40004' }, c.name)
    // Everything else is the file's own, and the result is as frozen as a loaded config.
    t.strictSame({ ...got, listen: file.listen, metrics: file.metrics, app: file.app, fly: file.fly }, file, `${c.name}: nothing else changes`)
    t.ok(Object.isFrozen(got) && Object.isFrozen(got.listen) && Object.isFrozen(got.app) && Object.isFrozen(got.fly), `${c.name}: frozen`)
  }
})

t.test('a Machine started without its ports or API is a setup error, not a wrong port', async (t) => {
  const file = parseConfig(`app:\n  url: http://127.0.0.1:8081\n`, '/x/routes.yaml', {})
  for (const [env, message] of [
    [{ ...ENV, PORT: undefined }, 'an emulated Machine needs PORT (a port), got null'],
    [{ ...ENV, METRICS_PORT: '9x' }, 'an emulated Machine needs METRICS_PORT (a port), got "9x"'],
    [{ ...ENV, APP_PORT: '70000' }, 'an emulated Machine needs APP_PORT (a port), got "70000"'],
    [{ ...ENV, FLY_API_URL: '' }, 'an emulated Machine needs FLY_API_URL'],
  ] as const) {
    t.throws(() => emulatedConfig(file, env, true), { code: 'SIDECAR_ERR_EMULATOR_SETUP', message: `the emulator cannot start: ${message}` })
  }
  // Without an app command APP_PORT is not needed.
  t.equal(emulatedConfig(file, { ...ENV, APP_PORT: undefined }, false).app.url, 'http://127.0.0.1:8081')
})

t.test('an emulated Machine keeps its ports across a config reload', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'emulated-machine-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'routes.yaml')
  // The file's app port has nothing on it: only the Machine's $APP_PORT has the app.
  const yaml = `app:\n  url: http://127.0.0.1:${await deadPort()}\n  drain-timeout: 200ms\n  stop-timeout: 1s\n`
  writeFileSync(file, yaml)
  const env = { PATH: process.env.PATH, PORT: String(await deadPort()), METRICS_PORT: String(await deadPort()), APP_PORT: String(await deadPort()), FLY_API_URL: `http://127.0.0.1:${await deadPort()}` }
  const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
  const app = fileURLToPath(new URL('../fixtures/cli/app.mjs', import.meta.url))
  const child = spawn(process.execPath, [cli, 'dev', '--emulated-machine', '--config', file, '--', process.execPath, app], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  const health = async (): Promise<number> => (await fetch(`http://127.0.0.1:${env.PORT}/_sidecar/health`).catch(() => ({ status: 0 }))).status
  const until = async (what: string, check: () => Promise<boolean> | boolean): Promise<void> => {
    const deadline = Date.now() + 20_000
    while (!await check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${out}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await until('the app up', async () => await health() === 200)
  t.match(out, `"address":"127.0.0.1:${env.PORT}","app":"http://127.0.0.1:${env.APP_PORT}"`, 'listens on $PORT, proxies to $APP_PORT')
  t.equal((await fetch(`http://127.0.0.1:${env.METRICS_PORT}/metrics`)).status, 200, 'metrics on $METRICS_PORT')
  writeFileSync(file, `${yaml}rules:\n  - match: { path: /x }\n    to: app\n`)
  await until('the reload', () => out.includes('"msg":"config reloaded"'))
  t.equal(await health(), 200, 'the health check still probes the app on $APP_PORT')
  const exit = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exit
})
