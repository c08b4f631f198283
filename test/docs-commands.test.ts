// Every shell command in README.md and docs/getting-started.md, run as written where it can run
// here: from a scratch copy of the checkout as `npm ci` leaves it (nothing built), with a user's
// PATH (so `node` is the machine's own, often old, Node), npm offline, loopback only. A command
// that cannot run here (it needs the registry, Fly, or a URL the page leaves to the reader)
// says why. A command added to either page fails this test until it is listed here.
import t, { type Test } from 'tap'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { alive, descendants } from '../src/emulator/runtime.ts'
import { read, runShell, scratchCheckout, scratchDir, shellCommands, signalGroup, userEnv } from './helpers/docs-run.ts'

type Tap = Test
/** Runs the command in a scratch layout and asserts what it must do. */
type Runner = (t: Tap, command: string, where: Layout) => Promise<void>
interface Layout {
  /** A scratch copy of this checkout (README's commands run here). */
  readonly checkout: string
  /** An app's root with getting-started step 3's config/routes.yaml and the checkout as fly-replay-sidecar/. */
  readonly app: string
  readonly scratch: string
}

const NPM_CI = 'not run: it installs from the npm registry; the scratch copy links the node_modules this checkout\'s `npm ci` made'
const URL_PLACEHOLDER = 'not run: the page leaves the repository\'s URL to the reader; the scratch copy stands for the clone'
const NEEDS_FLY = 'not run: needs a Fly account and the network'

async function ran (t: Tap, command: string, cwd: string, scratch: string): Promise<string> {
  const run = runShell(command, cwd, userEnv(scratch))
  const exit = await Promise.race([run.exit, new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${command}: no exit within 60 s:\n${run.out()}`)), 60_000))])
  // The output shows in the diff only when the command failed.
  t.strictSame(exit.code === 0 ? exit : { ...exit, output: run.out() }, { code: 0, signal: null }, `${command}: exits 0`)
  return run.out()
}

const check: (configName: string) => Runner = (configName) => async (t, command, where) => {
  const cwd = command.startsWith('npx ') ? where.checkout : where.app
  const out = await ran(t, command, cwd, where.scratch)
  t.match(out, new RegExp(`^${configName}: ok\\n[\\s\\S]*1\\. livewire-process \\(line \\d+\\) -> tasker; buffers JSON bodies`, 'm'), 'the config is checked')
}

const explain: Runner = async (t, command, where) => {
  const cwd = command.startsWith('npx ') ? where.checkout : where.app
  const out = await ran(t, command, cwd, where.scratch)
  t.match(out, /^ {2}MATCH livewire-process \(line \d+\): matched: method POST; path \/livewire\/update; header x-livewire present; json components\[\*\]\.calls\[\*\]\.method equals "process"$/m)
  t.match(out, /^on a Machine of pool app: replay: 307 with fly-replay: instance=<id>;timeout=30s;fallback=prefer_self;state=livewire-process/m)
}

/** `npm start`: the emulator starts, serves the demo page, and a Ctrl-C ends it and everything it started. */
const npmStart: Runner = async (t, command, where) => {
  // PORT=0: any free port (dev takes $PORT as its default), so a busy 3000 cannot fail this.
  const run = runShell(command, where.checkout, userEnv(where.scratch, { PORT: '0' }))
  t.teardown(() => signalGroup(run, 'SIGKILL'))
  const url = (await run.waitFor(/open (http:\/\/127\.0\.0\.1:\d+)/, 60_000))[1] as string
  t.not(url, 'http://127.0.0.1:3000', 'dev took its port from $PORT')
  const page = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  t.equal(page.status, 200)
  t.match(await page.text(), '<title>Invoices · Ledgerly (fly-replay-sidecar demo)</title>')
  const family = descendants(run.child.pid as number)
  t.ok(family.length >= 3, 'dev, a sidecar and the demo app run under npm')
  signalGroup(run, 'SIGINT')
  await run.exit
  t.match(run.out(), /dev\s+stopped\n/, 'dev stopped every Machine')
  t.ok(family.every((p) => !alive(p)), 'nothing left running')
}

const PAGES: Record<string, Record<string, Runner | string>> = {
  'README.md': {
    // `npm ci` is not run (see NPM_CI): it would replace the linked node_modules; what follows it is.
    'npm ci && npm start': async (t, _command, where) => { await npmStart(t, 'npm start', where) },
    'npm ci && npm test': 'not run: it is the suite this test is part of',
    'npx fly-replay-sidecar check': check('config/routes.yaml'),
    'npx fly-replay-sidecar explain -X POST -H \'x-livewire: 1\' -H \'content-type: application/json\' -d \'{"components":[{"calls":[{"method":"process"}]}]}\' /livewire/update': explain,
  },
  'docs/getting-started.md': {
    'git clone <this repository\'s URL> fly-replay-sidecar': URL_PLACEHOLDER,
    'cd fly-replay-sidecar': async (t, command, where) => { await ran(t, command, path.dirname(where.checkout), where.scratch) },
    'npm ci': NPM_CI,
    'npm start': npmStart,
    'git submodule add <this repository\'s URL> fly-replay-sidecar': URL_PLACEHOLDER,
    'printf \'fly-replay-sidecar/node_modules\\nfly-replay-sidecar/dist\\n\' >> .dockerignore': async (t, command, where) => {
      await ran(t, command, where.app, where.scratch)
      t.equal(readFileSync(path.join(where.app, '.dockerignore'), 'utf8'), 'fly-replay-sidecar/node_modules\nfly-replay-sidecar/dist\n')
    },
    '(cd fly-replay-sidecar && npm ci)': NPM_CI,
    'fly-replay-sidecar/bin/fly-replay-sidecar.js check': check('config/routes.yaml'),
    'fly-replay-sidecar/bin/fly-replay-sidecar.js explain -X POST -H \'x-livewire: 1\' -H \'content-type: application/json\' -d \'{"components":[{"calls":[{"method":"process","params":[]}]}]}\' /livewire/update': explain,
    'fly-replay-sidecar/bin/fly-replay-sidecar.js dev -- sh -c \'exec php artisan serve --host=127.0.0.1 --port=$APP_PORT\'': 'run by test/docs-getting-started.test.ts, with a stand-in for php, to a replayed process() call',
    'fly secrets set FLY_API_TOKEN="$(fly tokens create deploy)"': NEEDS_FLY,
    'fly deploy': NEEDS_FLY,
    'fly logs': NEEDS_FLY,
    'curl -s https://my-app.fly.dev/_sidecar/health': NEEDS_FLY,
    'fly machine list': NEEDS_FLY,
  },
}

const { dir: scratch, remove } = scratchDir('docs-commands-')
t.teardown(remove)
const checkout = scratchCheckout(path.join(scratch, 'fly-replay-sidecar'))
const app = path.join(scratch, 'app')
mkdirSync(path.join(app, 'config'), { recursive: true })
const step3 = /## 3\. [\s\S]*?```yaml\n([\s\S]*?)```/.exec(read('docs/getting-started.md'))?.[1]
writeFileSync(path.join(app, 'config/routes.yaml'), step3 ?? '')
symlinkSync(checkout, path.join(app, 'fly-replay-sidecar'))
const where: Layout = { checkout, app, scratch }

for (const [page, known] of Object.entries(PAGES)) {
  t.test(page, async (t) => {
    const commands = [...new Set(shellCommands(read(page)))]
    t.strictSame(commands, Object.keys(known), 'every command of the page is listed here, in its order')
    for (const command of commands) {
      const how = known[command]
      if (typeof how === 'function') await t.test(command, (t) => how(t, command, where))
      else t.ok(how?.startsWith('not run: ') || how?.startsWith('run by '), `${command}: ${how ?? 'not listed'}`)
    }
  })
}
