// `fly-replay-sidecar dev` as a user runs it (npm start): prints the URL, serves the demo page,
// and on Ctrl-C (SIGINT) stops every process it started and exits 0.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { alive, descendants } from '../../src/emulator/runtime.ts'

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
  t.match(await page.text(), 'Livewire-style demo')
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
