// `fly-replay-sidecar dev` as a user runs it (npm start): prints the URL, serves the demo page,
// and on Ctrl-C (SIGINT) stops every process it started and exits 0; usage and start-up errors.
import t from 'tap'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { alive, descendants } from '../../src/emulator/runtime.ts'
import { main } from '../../src/emulator/dev.ts'
import { listen } from '../helpers/net.ts'

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

t.test('dev prints the URL, serves the demo, and SIGINT ends every process', async (t) => {
  const child = spawn(process.execPath, [CLI, 'dev', '--port', '0', '--idle', '1s'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (s: string) => { out += s })
  child.stderr.on('data', (s: string) => { out += s })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed:\n${out}`)), 30_000)
    child.stdout.on('data', () => {
      const m = /open (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m?.[1] !== undefined) { clearTimeout(timer); resolve(m[1]) }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`dev exited ${String(code)}:\n${out}`)) })
  })
  const page = await fetch(url)
  t.equal(page.status, 200)
  t.match(await page.text(), '<title>Invoices · Ledgerly (fly-replay-sidecar demo)</title>')
  t.match(out, `live view of Machines and replays: ${url}/_dev/`)
  const live = await fetch(`${url}/_dev/`)
  t.equal(live.status, 200)
  t.match(await live.text(), '<title>live view · fly-replay-sidecar dev</title>')
  t.match(out, /machines\s+created \w+ \(app\) image=registry\.fly\.io\/demo:deployment-dev/)
  // The log line comes when the response has ended, a moment after the client has it all.
  const deadline = Date.now() + 5_000
  while (!/edge\s+GET \/ ← 200/.test(out) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.match(out, /edge\s+GET \/ ← 200 from \w+ \(app\) in \d+ ms/)
  const family = [...descendants(child.pid as number)]
  t.ok(family.length >= 2, 'a sidecar and the demo app run under it')
  const exit = await new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code))
    child.kill('SIGINT')
  })
  t.equal(exit, 0)
  t.match(out, /SIGINT: stopping every Machine/)
  t.ok(family.every((p) => !alive(p)), `all of ${family.join(', ')} ended`)
})

/** Runs `dev`'s main in this process; resolves with its exit code and output. */
async function runMain (args: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await main(args, { stdout: { write: (s: string) => { out += s } }, stderr: { write: (s: string) => { err += s } } })
  return { code, out, err }
}

t.test('usage and config errors exit 2, a taken port exits 1, nothing left running', async (t) => {
  const bad = await runMain(['--idle', 'soon'])
  t.equal(bad.code, 2)
  t.match(bad.err, /^fly-replay-sidecar dev: --idle takes a duration like 30s or 500ms\nusage: fly-replay-sidecar dev /)
  const unknown = await runMain(['--nope'])
  t.equal(unknown.code, 2)
  t.match(unknown.err, /^fly-replay-sidecar dev: unknown option --nope\n/)
  const help = await runMain(['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /^usage: fly-replay-sidecar dev \[--port 3000\]/)

  const dir = mkdtempSync(join(tmpdir(), 'dev-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'routes.yaml'), 'app:\n  url: http://127.0.0.1:${APP_PORT}\nrules:\n  - match: { pathx: / }\n    to: app\n')
  const invalid = await runMain(['--port', '0', '--config', join(dir, 'routes.yaml')])
  t.equal(invalid.code, 2)
  t.equal(invalid.err, `fly-replay-sidecar dev: SIDECAR_ERR_CONFIG_INVALID: invalid config ${join(dir, 'routes.yaml')} (1 problem):\n${join(dir, 'routes.yaml')}:4:14: rules[0].match.pathx: unknown key (did you mean "path"?)\n`)
  t.equal(invalid.out, '', 'checked before any Machine started')

  const taken = net.createServer()
  const port = await listen(taken)
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())))
  const busy = await runMain(['--port', String(port)])
  t.equal(busy.code, 1)
  t.match(busy.err, new RegExp(`^fly-replay-sidecar dev: SIDECAR_ERR_EMULATOR_SETUP: the emulator cannot start: the edge cannot listen on port ${port} \\(listen EADDRINUSE`))
  t.notMatch(busy.out, /machines\s+created/, 'no Machine was started')
})

t.test('--port defaults to $PORT when set; a bad $PORT is a usage error', async (t) => {
  const before = process.env.PORT
  t.teardown(() => { if (before === undefined) delete process.env.PORT; else process.env.PORT = before })
  process.env.PORT = 'x80'
  const bad = await runMain([])
  t.strictSame(bad, { code: 2, out: '', err: 'fly-replay-sidecar dev: PORT must be a port number, got "x80"\n' })
  // A taken $PORT shows that it was used: the edge's error names it, before any Machine starts.
  const taken = net.createServer()
  const port = await listen(taken)
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())))
  process.env.PORT = String(port)
  const busy = await runMain([])
  t.equal(busy.code, 1)
  t.match(busy.err, `the edge cannot listen on port ${port} (listen EADDRINUSE`)
})
