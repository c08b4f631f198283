// The config an emulated Machine's sidecar runs: the file's, with that Machine's ports and the
// emulator's Machines API in place of what the file says for Fly; nothing else changes.
import t from 'tap'
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
