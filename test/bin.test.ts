// bin/fly-replay-sidecar.js, the package's command, in a checkout: in this process on a Node that
// strips types; on one that does not (an old Node, here Node 24 with stripping turned off) through
// node_modules' Node 24, passing signals on once and ending as the CLI ends. (The published
// package's dist/ path is tested in test/package.test.ts.)
import t from 'tap'
import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { deadPort } from './helpers/net.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const BIN = path.join(root, 'bin/fly-replay-sidecar.js')
const APP = path.join(root, 'test/fixtures/cli/app.mjs')
const VERSION = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version
const OLD_NODE = ['--no-experimental-strip-types']

interface Ran { code: number | null, signal: NodeJS.Signals | null, out: string, err: string }

function launch (nodeArgs: string[], args: string[], env: NodeJS.ProcessEnv = {}, bin = BIN): { child: ReturnType<typeof spawn>, done: Promise<Ran>, out: () => string } {
  const child = spawn(process.execPath, [...nodeArgs, bin, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { out += s })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { err += s })
  const done = new Promise<Ran>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out, err })))
  return { child, done, out: () => out }
}

async function until (what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

t.test('answers and exit codes are the CLI\'s, with and without type stripping', async (t) => {
  for (const [name, nodeArgs] of [['strips types', []], ['old Node', OLD_NODE]] as const) {
    const version = await launch([...nodeArgs], ['--version']).done
    t.strictSame(version, { code: 0, signal: null, out: `${VERSION}\n`, err: '' }, `${name}: --version`)
    const typo = await launch([...nodeArgs], ['chek']).done
    t.strictSame({ code: typo.code, first: typo.err.split('\n')[0] }, { code: 2, first: 'fly-replay-sidecar: unknown command: chek (did you mean "check"?)' }, `${name}: a usage error exits 2`)
  }
})

t.test('on an old Node: signals reach the CLI once, and it ends with the app\'s code', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bin-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = path.join(dir, 'routes.yaml')
  writeFileSync(config, 'listen: 127.0.0.1:${PORT}\napp:\n  url: http://127.0.0.1:${APP_PORT}\n  drain-timeout: 500ms\n  stop-timeout: 2s\nmetrics: false\n')
  const env = { PORT: String(await deadPort()), APP_PORT: String(await deadPort()) }
  const run = launch(OLD_NODE, ['--config', config, '--', process.execPath, APP], env)
  t.teardown(() => { run.child.kill('SIGKILL') })
  // The app answering through the sidecar: the CLI's signal handlers are in place.
  let up = false
  await until('the app', () => {
    fetch(`http://127.0.0.1:${env.PORT}/`).then((r) => { up = r.status === 200 }, () => {})
    return up
  })
  // npm (npx, npm run) forwards SIGINT and SIGTERM on top of the terminal's: two at once are one.
  // Apart enough not to merge into one pending signal, close enough to be the same one twice.
  // SIGHUP is the CLI's own (it reloads the rules, the app never sees it): count the reloads.
  const reloads = (): number => run.out().split('"msg":"config reloaded"').length - 1
  run.child.kill('SIGHUP')
  await new Promise((resolve) => setTimeout(resolve, 60))
  run.child.kill('SIGHUP')
  await until('SIGHUP at the CLI', () => reloads() === 1)
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.equal(reloads(), 1, 'two SIGHUPs at once reach the CLI once')
  run.child.kill('SIGHUP')
  await until('the second SIGHUP', () => reloads() === 2)
  t.notMatch(run.out(), 'app got SIGHUP', 'the CLI keeps SIGHUP to itself')
  run.child.kill('SIGTERM')
  const ended = await run.done
  t.strictSame({ code: ended.code, signal: ended.signal }, { code: 143, signal: null }, 'the app\'s 128+SIGTERM, as the CLI exits')
  t.match(ended.out, /"msg":"stopped"/)

  const exits = launch(OLD_NODE, ['--config', config, '--', process.execPath, APP], { ...env, APP_EXIT_CODE: '7', APP_EXIT_AFTER_MS: '300' })
  t.strictSame((await exits.done).code, 7, 'an app that exits 7 makes the command exit 7')
})

t.test('on an old Node without npm ci: says what to do', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bin-bare-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const entry of ['bin', 'src', 'package.json']) cpSync(path.join(root, entry), path.join(dir, entry), { recursive: true })
  const bare = await launch(OLD_NODE, ['--version'], {}, path.join(dir, 'bin/fly-replay-sidecar.js')).done
  t.strictSame(bare, {
    code: 1,
    signal: null,
    out: '',
    err: `fly-replay-sidecar: this Node (${process.version}) cannot run the TypeScript source: run \`npm ci\` in ${dir}/ (it brings Node 24), or use Node >= 22.18\n`,
  })
})
