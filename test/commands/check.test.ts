// `check`: every problem with file:line:column and exit 1; a summary and exit 0 for a valid file;
// exit 2 for usage errors. Real files in a temp directory, the command called in-process.
import t from 'tap'
import path from 'node:path'
import { runCheck } from '../../src/commands/check.ts'
import { captureIo } from './_io.ts'

const VALID = `app:
  url: http://127.0.0.1:\${APP_PORT:-8081}
metrics: false
pools:
  tasker:
    size: 2
    oversize: reject
rules:
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      json:
        components[*].calls[*].method: process
    to: tasker
  - match:
      path: /reports/**
    to: tasker
`

const INVALID = `app:
  url: nope
  ready-timeout: soon
bogus: 1
rules:
  - match: { path: /a }
    to: nowhere
`

/** The path as check prints it: relative to the working directory. */
const shown = (file: string): string => path.relative(process.cwd(), file)

t.test('a valid file: a summary of what the sidecar will do, exit 0', async (t) => {
  const dir = t.testdir({ 'routes.yaml': VALID })
  const file = path.join(dir, 'routes.yaml')
  const c = captureIo()
  t.equal(await runCheck(['--config', file], c.io), 0)
  t.equal(c.stdout(), [
    `${shown(file)}: ok`,
    '  listen 0.0.0.0:8080 -> app http://127.0.0.1:8081; health /_sidecar/health; metrics off',
    '  pools: tasker (size 2, autostop stop, oversize reject, unavailable local)',
    '  rules, first match wins:',
    '    1. livewire-process (line 9) -> tasker; buffers JSON bodies up to 1MiB',
    '    2. rule-2 (line 16) -> tasker',
    '',
  ].join('\n'))
  t.equal(c.stderr(), '')
})

t.test('every problem, with file:line:column and key path, exit 1', async (t) => {
  const dir = t.testdir({ 'routes.yaml': INVALID })
  const file = path.join(dir, 'routes.yaml')
  const c = captureIo()
  t.equal(await runCheck(['--config', file], c.io), 1)
  const f = shown(file)
  t.equal(c.stdout(), [
    `${f}:2:8: app.url: must be an http:// or https:// URL, got "nope"`,
    `${f}:3:18: app.ready-timeout: must be a duration like "30s" (a number with ms, s, m or h), got "soon"`,
    `${f}:4:1: bogus: unknown key`,
    `${f}:7:9: rules[0].to: no pool named "nowhere" (defined: none; or "app")`,
    '4 problems',
    '',
  ].join('\n'))
})

t.test('a file that cannot be read is a problem too, exit 1', async (t) => {
  const dir = t.testdir({})
  const file = path.join(dir, 'missing.yaml')
  const c = captureIo()
  t.equal(await runCheck([`--config=${file}`], c.io), 1)
  t.equal(c.stdout(), `${shown(file)}: cannot read the file (ENOENT: no such file; name it with --config FILE or SIDECAR_CONFIG, else config/routes.yaml in the working directory is read)\n1 problem\n`)
})

t.test('the file may be given as an argument, with -c, or by SIDECAR_CONFIG', async (t) => {
  const dir = t.testdir({ 'a.yaml': INVALID, 'b.yaml': VALID })
  const a = path.join(dir, 'a.yaml')
  const b = path.join(dir, 'b.yaml')
  for (const argv of [[a], ['-c', a]]) {
    const c = captureIo()
    t.equal(await runCheck(argv, c.io), 1, argv.join(' '))
    t.match(c.stdout(), `${shown(a)}:2:8: app.url`)
  }
  const before = process.env.SIDECAR_CONFIG
  process.env.SIDECAR_CONFIG = b
  t.teardown(() => { if (before === undefined) delete process.env.SIDECAR_CONFIG; else process.env.SIDECAR_CONFIG = before })
  const c = captureIo()
  t.equal(await runCheck([], c.io), 0)
  t.match(c.stdout(), `${shown(b)}: ok\n`)
})

t.test('${VAR} values come from the environment, as at start-up', async (t) => {
  const dir = t.testdir({ 'routes.yaml': VALID })
  const file = path.join(dir, 'routes.yaml')
  const before = process.env.APP_PORT
  process.env.APP_PORT = '9000'
  t.teardown(() => { if (before === undefined) delete process.env.APP_PORT; else process.env.APP_PORT = before })
  const c = captureIo()
  t.equal(await runCheck([file], c.io), 0)
  t.match(c.stdout(), '-> app http://127.0.0.1:9000;')
})

t.test('usage errors exit 2 with the usage on stderr; --help exits 0', async (t) => {
  for (const argv of [['--bogus'], ['--config'], ['a.yaml', 'b.yaml']]) {
    const c = captureIo()
    t.equal(await runCheck(argv, c.io), 2, argv.join(' '))
    t.match(c.stderr(), /^fly-replay-sidecar check: .+\nusage: fly-replay-sidecar check \[--config FILE\]/)
    t.equal(c.stdout(), '')
  }
  const c = captureIo()
  t.equal(await runCheck(['--help'], c.io), 0)
  t.match(c.stdout(), /^usage: fly-replay-sidecar check/)
})

t.test('elastic pools and pools on another app are summarised with their keys (issue 15)', async (t) => {
  const dir = t.testdir({
    'routes.yaml': `app:
  url: http://127.0.0.1:8081
metrics: false
pools:
  tasker:
    max: 4
    concurrency: 1
    destroy-after: 5m
  burst:
    min: 1
    max: 3
  reports:
    app: shop-reports
`,
  })
  const c = captureIo()
  t.equal(await runCheck(['--config', path.join(dir, 'routes.yaml')], c.io), 0)
  t.match(c.stdout(), '  pools: tasker (elastic: min 0, max 4, concurrency 1, destroy-after 5m; autostop stop, oversize forward, unavailable local), ' +
    'burst (elastic: min 1, max 3, no concurrency limit, destroy-after 30m; autostop stop, oversize forward, unavailable local), ' +
    'reports (Fly app shop-reports: fly-replay app=shop-reports, no token needed; oversize local)\n')
})
