// docs/getting-started.md followed literally: step 3's config in an app's config/routes.yaml,
// the sidecar as the app's fly-replay-sidecar/ directory, and step 4's `dev` command run by sh
// from the app's root. A process() call through the emulator must be replayed to a tasker that
// the sidecar creates. The one stand-in: `php` on PATH is the demo app, listening where
// `php artisan serve --port=...` was told to.
import t from 'tap'
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { alive, descendants } from '../src/emulator/runtime.ts'
import { ROOT, read, runShell, scratchCheckout, scratchDir, shellCommands, signalGroup, userEnv } from './helpers/docs-run.ts'

const page = read('docs/getting-started.md')

/** The text of the section that starts with `## <n>.` */
function step (n: number): string {
  const start = page.indexOf(`\n## ${n}. `)
  const end = page.indexOf('\n## ', start + 1)
  return page.slice(start, end === -1 ? undefined : end)
}

const LIVEWIRE_PROCESS = JSON.stringify({ _token: 't', components: [{ snapshot: '{"data":{},"memo":{"id":"c1","name":"rows"}}', updates: {}, calls: [{ path: '', method: 'process', params: [] }] }] })

t.test('step 4 replays a process() call with step 3\'s config, unchanged', async (t) => {
  const config = /```yaml\n([\s\S]*?)```/.exec(step(3))?.[1]
  t.ok(config?.includes('to: tasker'), 'step 3 has the config')
  const [command, ...more] = shellCommands(step(4))
  t.strictSame(more, [], 'step 4 is one command')
  t.match(command, /^fly-replay-sidecar\/bin\/fly-replay-sidecar\.js dev -- sh -c '.*php artisan serve .*--port=\$APP_PORT'$/, 'step 4 runs dev with php artisan serve on $APP_PORT')

  const { dir, remove } = scratchDir('getting-started-')
  t.teardown(remove)
  const app = path.join(dir, 'app')
  mkdirSync(path.join(app, 'config'), { recursive: true })
  writeFileSync(path.join(app, 'config/routes.yaml'), config ?? '')
  const sidecar = path.join(dir, 'sidecar')
  mkdirSync(sidecar)
  scratchCheckout(sidecar)
  symlinkSync(sidecar, path.join(app, 'fly-replay-sidecar'))
  // `php artisan serve --host=H --port=P` → the demo app on H:P, with the Node npm ci installed.
  const bin = path.join(dir, 'bin')
  mkdirSync(bin)
  writeFileSync(path.join(bin, 'php'), `#!/bin/sh
[ "$1 $2" = "artisan serve" ] || { echo "php stand-in: only artisan serve, got: $*" >&2; exit 64; }
for a; do case $a in --host=*) host=\${a#--host=};; --port=*) port=\${a#--port=};; esac; done
APP_HOST=$host APP_PORT=$port DEMO_ROWS=2 DEMO_STEP_MS=50 exec '${path.join(ROOT, 'node_modules/.bin/node')}' '${path.join(ROOT, 'examples/demo/server.ts')}'
`)
  chmodSync(path.join(bin, 'php'), 0o755)

  const env = userEnv(dir, { PORT: '0' })
  env.PATH = `${bin}${path.delimiter}${env.PATH ?? ''}`
  const dev = runShell(command as string, app, env)
  t.teardown(() => signalGroup(dev, 'SIGKILL'))
  const url = (await dev.waitFor(/open (http:\/\/127\.0\.0\.1:\d+)/, 60_000))[1] as string

  const res = await fetch(`${url}/livewire/update`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-livewire': 'true' },
    body: LIVEWIRE_PROCESS,
    signal: AbortSignal.timeout(60_000),
  })
  const body = await res.text()
  t.equal(res.status, 200)
  t.equal(res.headers.get('x-livewire-stream'), 'true', 'the demo app streamed it')
  t.match(body, /"pool":"tasker"/, 'a tasker Machine served it')
  t.match(body, /"replaySrc":"instance=\w+/, 'it arrived replayed')
  await dev.waitFor(/edge\s+POST \/livewire\/update ← 200 from \w+ \(tasker\)/, 10_000)
  t.match(dev.out(), /machines created \w+ \(tasker\)/)
  t.match(dev.out(), /replay\s+POST \/livewire\/update: \w+ \(app\) answered fly-replay → \w+ \(tasker\) state=livewire-process \(hop 1\)/)
  t.notMatch(dev.out(), /local\s+\w+ \(\w+\): /, 'nothing served where it arrived')

  // Ctrl-C in the terminal ends dev and every process it started.
  const family = descendants(dev.child.pid as number)
  t.ok(family.length >= 4, 'sidecars and apps of two Machines run under it')
  signalGroup(dev, 'SIGINT')
  const exit = await dev.exit
  t.strictSame(exit, { code: 0, signal: null }, dev.out())
  t.ok(family.every((p) => !alive(p)), 'nothing left running')
})
