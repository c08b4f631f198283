// Instructions per proxied request, counted by valgrind's callgrind: a figure that does not
// depend on what else the machine runs (wall-clock CPU time on the shared 2-core VM moves by ±50%
// between runs of the same build). User space only, and not proportional to CPU time: a change
// of a few % here may be none in CPU time; bench/cpu-ab.ts measures that.
//   node bench/cpu-count.ts [--requests N] [--warmup N] [--connections N] [--src | --ref REF]
//     [--no-valgrind [--perf FILE]] [--node-args "FLAGS"]
// Starts the bench app, the fake Machines API and the sidecar (the production bundle, or
// src/cli.ts with --src) as `npm run bench` does (bench/config/sidecar.yaml, on "Fly", metrics
// on, log level info), sends `--warmup` GETs of the 100-byte body over `--connections` kept-alive
// connections with instrumentation off, then `--requests` more with it on, and prints the
// sidecar's instructions (user space, every thread) per request. Kernel work (the system calls
// themselves) is not counted: a change that removes a system call shows only its user-space part.
import { execFileSync, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFakeMachinesApi } from './_machines-api.ts'
import { cpuSeconds, freePort, spawnPinned, stopChild, waitReady } from './_procs.ts'
import { buildSidecarExecutable, sidecarEnv } from './_targets.ts'
import { PATHS, SMALL_BODY } from './_config.ts'

const ROOT = resolve(import.meta.dirname, '..')

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '64' },
    src: { type: 'boolean', default: false },
    /** Run src/cli.ts of this git ref (exported with git archive) instead of the working tree. */
    ref: { type: 'string' },
    'no-valgrind': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    /** Run the sidecar under this command instead of valgrind (e.g. "perf record -g -o F --"). */
    prefix: { type: 'string' },
    'node-args': { type: 'string', default: '' },
    /** Record the measured part with `perf record -g` into this file (run with --no-valgrind). */
    perf: { type: 'string' },
  },
})
const REQUESTS = Number(args.requests)
const WARMUP = Number(args.warmup)
const CONNECTIONS = Number(args.connections)
const valgrind = !args['no-valgrind'] && args.prefix === undefined
const nodeArgs = args['node-args'].split(' ').filter((a) => a !== '')

/**
 * Sends `total` requests over `conns` kept-alive connections, one at a time on each (as wrk
 * does), checking every response is the 100-byte body.
 */
async function load (port: number, request: Buffer, conns: number, total: number): Promise<void> {
  let sent = 0
  let done = 0
  const expectTail = SMALL_BODY.toString('latin1')
  await new Promise<void>((resolve, reject) => {
    let open = conns
    for (let i = 0; i < conns; i++) {
      const s = net.connect({ port, host: '127.0.0.1', noDelay: true })
      let got = ''
      const send = (): void => {
        if (sent >= total) { s.end(); return }
        sent++
        s.write(request)
      }
      s.on('connect', send)
      s.on('data', (chunk: Buffer) => {
        got += chunk.toString('latin1')
        const at = got.indexOf('\r\n\r\n')
        if (at === -1 || got.length < at + 4 + SMALL_BODY.length) return
        if (!got.startsWith('HTTP/1.1 200') || got.slice(at + 4) !== expectTail) {
          reject(new Error(`unexpected response: ${JSON.stringify(got.slice(0, 300))}`))
          s.destroy()
          return
        }
        got = ''
        done++
        send()
      })
      s.on('error', reject)
      s.on('close', () => { if (--open === 0) { if (done === total) resolve(); else reject(new Error(`${done} of ${total} answered`)) } })
    }
  })
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cpu-count-'))
  const api = await startFakeMachinesApi()
  const appPort = await freePort()
  const app = spawnPinned('app', null, process.execPath, [join(ROOT, 'bench', 'targets', 'app.ts')], { env: { ...process.env, APP_PORT: String(appPort) }, log: join(dir, 'app.log') })
  await waitReady(app, `http://127.0.0.1:${appPort}${PATHS.small}`)

  let entry: string
  let nodeFlags: readonly string[]
  if (args.ref !== undefined) {
    const tree = join(dir, 'tree')
    await mkdir(tree)
    execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${args.ref}" | tar -x -C "${tree}"`])
    await symlink(join(ROOT, 'node_modules'), join(tree, 'node_modules'))
    entry = join(tree, 'src', 'cli.ts')
    nodeFlags = ['--max-semi-space-size=4', '--disable-warning=ExperimentalWarning']
  } else if (args.src) {
    entry = join(ROOT, 'src', 'cli.ts')
    nodeFlags = ['--max-semi-space-size=4', '--disable-warning=ExperimentalWarning']
  } else {
    const b = await buildSidecarExecutable(dir)
    entry = b.entry
    nodeFlags = b.nodeFlags
  }
  const port = await freePort()
  const out = join(dir, 'callgrind.out')
  // Under valgrind every thread runs in turn, and V8's parallel GC helpers (we think) spin while
  // they wait for each other: with them, one change's count moved by 20% where its CPU time moved by 1%
  // (docs/performance.md, "CPU per request, round 3"). A last --node-args flag wins.
  const gcFlags = valgrind ? ['--single-threaded-gc'] : []
  const node = [...nodeFlags, ...gcFlags, ...nodeArgs, entry, '--config', join(ROOT, 'bench', 'config', 'sidecar.yaml')]
  const prefix = args.prefix?.split(' ').filter((a) => a !== '') ?? []
  const cmd = valgrind ? 'valgrind' : prefix.length > 0 ? prefix[0] as string : process.execPath
  const argv = valgrind
    ? ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, ...node]
    : prefix.length > 0 ? [...prefix.slice(1), process.execPath, ...node] : node
  const env = sidecarEnv(port, appPort, api.url)
  const sidecar = spawnPinned('sidecar', null, cmd, argv, { cwd: ROOT, env, log: join(dir, 'sidecar.log') })
  try {
    await waitReady(sidecar, `http://127.0.0.1:${port}${PATHS.small}`, 300_000)
    const request = Buffer.from(`GET ${PATHS.small} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, 'latin1')
    await load(port, request, CONNECTIONS, WARMUP)
    if (valgrind) execFileSync('callgrind_control', ['--instr=on', String(sidecar.pid)], { stdio: 'ignore' })
    const perf = args.perf === undefined ? undefined : spawn('perf', ['record', '-e', 'cpu-clock', '-g', '-p', String(sidecar.pid), '-o', args.perf], { stdio: 'ignore' })
    if (perf !== undefined) await sleep(1000)
    const cpu0 = valgrind || prefix.length > 0 ? 0 : cpuSeconds(sidecar.pid)
    const t0 = performance.now()
    await load(port, request, CONNECTIONS, REQUESTS)
    const ms = performance.now() - t0
    if (perf !== undefined) {
      const exited = new Promise((resolve) => perf.once('exit', resolve))
      perf.kill('SIGINT')
      await exited
    }
    if (valgrind) {
      execFileSync('callgrind_control', ['--dump', String(sidecar.pid)], { stdio: 'ignore' })
      await sleep(500)
    }
    if (valgrind) {
      const files = (await readdir(dir)).filter((f) => f.startsWith('callgrind.out'))
      let total = 0
      for (const f of files) {
        const text = await readFile(join(dir, f), 'utf8')
        // A dump holds the events since the last one: the instrumented part only.
        const m = /^(?:summary|totals):\s*(\d+)/m.exec(text)
        if (m !== null && f !== 'callgrind.out') total += Number(m[1])
      }
      console.log(JSON.stringify({ requests: REQUESTS, connections: CONNECTIONS, instructions: total, perRequest: Math.round(total / REQUESTS), seconds: +(ms / 1000).toFixed(1), files, dir: args.keep ? dir : undefined }))
    } else {
      const cpu = valgrind || prefix.length > 0 ? undefined : +((cpuSeconds(sidecar.pid) - cpu0) * 1e6 / REQUESTS).toFixed(1)
      console.log(JSON.stringify({ requests: REQUESTS, reqPerSec: Math.round(REQUESTS / (ms / 1000)), cpuUsPerRequest: cpu }))
    }
  } finally {
    await stopChild(sidecar, 20_000)
    await stopChild(app)
    await api.close()
    if (!args.keep) await rm(dir, { recursive: true, force: true })
  }
}

await main()
