// Same-time A/B of the sidecar's CPU per request (docs/performance.md, "same-time A/B"): two builds
// run at once in front of one bench app, all three on CPU 1, each loaded by its own
// `wrk -t1 -c32` on CPU 0 for the same seconds, so that whatever else loads the machine loads
// both. Prints each round's CPU µs per request of A and B and the ratio B ÷ A.
//   node bench/cpu-ab.ts --a REF [--b REF] [--rounds N] [--seconds S]
// A and B are git refs (exported with `git archive` beside this checkout's node_modules); B
// defaults to the working tree. Both run from src/cli.ts (types stripped at load), with
// bench/config/sidecar.yaml, as if on a Fly Machine, with the fake Machines API.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startFakeMachinesApi } from './_machines-api.ts'
import { sidecarEnv } from './_targets.ts'
import { cpuSeconds, freePort, spawnPinned, stopChild, waitReady, type Child } from './_procs.ts'
import { PATHS } from './_config.ts'

const ROOT = resolve(import.meta.dirname, '..')
const { values: args } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '4' },
    /** B's config instead of bench/config/sidecar.yaml (e.g. metrics off), and more env for B. */
    'b-config': { type: 'string' },
    'b-env': { type: 'string', multiple: true, default: [] },
  },
})
if (args.a === undefined) throw new Error('--a REF is required')

/** A checkout of `ref` in `dir` (git archive), using this checkout's node_modules. */
async function exportRef (ref: string, dir: string): Promise<string> {
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${ref}" | tar -x -C "${dir}"`])
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  return dir
}

/** Requests wrk completed, from its summary. */
function wrk (url: string, seconds: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('taskset', ['-c', '0', 'wrk', '-t1', '-c32', `-d${seconds}s`, url], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (c: Buffer) => { out += c.toString() })
    p.on('error', reject)
    p.on('exit', () => {
      const m = /(\d+) requests in/.exec(out)
      if (m === null) reject(new Error(`wrk: ${out}`))
      else resolve(Number(m[1]))
    })
  })
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cpu-ab-'))
  const children: Child[] = []
  const api = await startFakeMachinesApi()
  try {
    const aDir = await exportRef(args.a as string, await mkdtemp(join(dir, 'a-')))
    const bDir = args.b === undefined ? ROOT : await exportRef(args.b, await mkdtemp(join(dir, 'b-')))
    const appPort = await freePort()
    const app = spawnPinned('app', '1', process.execPath, [join(ROOT, 'bench', 'targets', 'app.ts')], { env: { ...process.env, APP_PORT: String(appPort) }, log: join(dir, 'app.log') })
    children.push(app)
    await waitReady(app, `http://127.0.0.1:${appPort}${PATHS.small}`)
    const start = async (name: string, root: string, config: string, extraEnv: readonly string[]): Promise<{ child: Child, url: string }> => {
      const port = await freePort()
      const env = sidecarEnv(port, appPort, api.url)
      for (const kv of extraEnv) { const at = kv.indexOf('='); env[kv.slice(0, at)] = kv.slice(at + 1) }
      const child = spawnPinned(name, '1', process.execPath, ['--max-semi-space-size=4', join(root, 'src', 'cli.ts'), '--config', config], { cwd: root, env, log: join(dir, `${name}.log`) })
      children.push(child)
      const url = `http://127.0.0.1:${port}${PATHS.small}`
      await waitReady(child, url)
      return { child, url }
    }
    const config = join(ROOT, 'bench', 'config', 'sidecar.yaml')
    const a = await start('a', aDir, config, [])
    const b = await start('b', bDir, args['b-config'] === undefined ? config : resolve(args['b-config']), args['b-env'])
    const seconds = Number(args.seconds)
    // Warm-up: both builds optimized before the first timed round.
    await Promise.all([wrk(a.url, 3), wrk(b.url, 3)])
    const ratios: number[] = []
    for (let r = 0; r < Number(args.rounds); r++) {
      const cpuA = cpuSeconds(a.child.pid)
      const cpuB = cpuSeconds(b.child.pid)
      const [nA, nB] = await Promise.all([wrk(a.url, seconds), wrk(b.url, seconds)])
      const usA = (cpuSeconds(a.child.pid) - cpuA) * 1e6 / nA
      const usB = (cpuSeconds(b.child.pid) - cpuB) * 1e6 / nB
      ratios.push(usB / usA)
      console.log(`round ${r + 1}: A ${usA.toFixed(1)} µs/req (${nA} req), B ${usB.toFixed(1)} µs/req (${nB} req), B/A ${(usB / usA).toFixed(2)}`)
    }
    const sorted = [...ratios].sort((x, y) => x - y)
    console.log(`B/A median ${(sorted[Math.floor(sorted.length / 2)] as number).toFixed(2)} (range ${(sorted[0] as number).toFixed(2)}–${(sorted[sorted.length - 1] as number).toFixed(2)}), load average ${execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ')}`)
  } finally {
    for (const c of children.reverse()) await stopChild(c, 20_000)
    await api.close()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
