// Memory and start-up of the single executable (scripts/bundle.ts) beside bare Node's HTTP server:
// exec → accepting connections, exec → healthy, idle RSS with metrics on and one body rule, peak
// RSS under small and 16 MiB responses, and RSS 30 s after the load. It runs whatever the
// executable contains, so it measures the data path of the day.
//   npm run bench:lean -- [--exe FILE] [--runs N] [--after-ms MS] [--out FILE] [--write]
// --write puts the report into bench/RESULTS.md between its lean markers (appended when absent).
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, readdirSync, readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { PATHS } from './_config.ts'
import { ROOT, startApp, startNodeFloor, stopTarget } from './_targets.ts'
import { cpuSeconds, dropFromPageCache, freePort, memory, stopChild, type Child } from './_procs.ts'

const { values: args } = parseArgs({
  options: {
    exe: { type: 'string' },
    runs: { type: 'string', default: '10' },
    'no-floor': { type: 'boolean', default: false },
    'load-ms': { type: 'string', default: '5000' },
    'after-ms': { type: 'string', default: '30000' },
    out: { type: 'string' },
    write: { type: 'boolean', default: false },
    // Extra NAME=value for the sidecar under load, e.g. allocator or NODE_OPTIONS experiments.
    'sidecar-env': { type: 'string', multiple: true },
  },
})
const RUNS = Number(args.runs)
const LOAD_MS = Number(args['load-ms'])
const AFTER_MS = Number(args['after-ms'])
const CONFIG = join(ROOT, 'bench', 'config', 'lean.yaml')
const BARE = join(ROOT, 'bench', 'targets', 'bare-http.cjs')
const MiB = 1024 * 1024
/** bench/run.ts writes the rest of bench/RESULTS.md; this script owns what is between these. */
const MARK_START = '<!-- bench/lean.ts: start -->'
const MARK_END = '<!-- bench/lean.ts: end -->'
const dir = mkdtempSync(join(os.tmpdir(), 'bench-lean-'))
const log = (line: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`) }
const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ')

/** Figures of /proc/<pid>/smaps_rollup, in MiB: resident in all, anonymous, file-backed. */
function rollup (pid: number): { rss: number, anon: number, file: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024
  return { rss: kib('Rss'), anon: kib('Anonymous'), file: kib('Rss') - kib('Anonymous') }
}

function connects (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
}

function get (url: string, agent: http.Agent | false = false): Promise<{ status: number, body: string, bytes: number }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      let bytes = 0
      res.on('data', (c: Buffer) => { bytes += c.length; if (chunks.length < 64) chunks.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), bytes }) })
      res.on('error', () => { resolve({ status: 0, body: '', bytes }) })
    })
    req.on('timeout', () => { req.destroy() })
    req.on('error', () => { resolve({ status: 0, body: '', bytes: 0 }) })
  })
}

interface Started { proc: ChildProcess, port: number, acceptMs: number, acceptCpuMs: number, readyMs: number }

/**
 * CPU time the process's threads have run, in ms (/proc/<pid>/task/<tid>/schedstat, nanoseconds):
 * what a start costs, much less sensitive than wall time to the other work on a shared machine.
 */
function threadsCpuMs (pid: number): number {
  let ns = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) } catch { /* the thread ended */ }
  }
  return ns / 1e6
}

/**
 * Spawns `cmd` and times exec → the first accepted TCP connection and exec → the first 200 on
 * `readyPath`, polling every millisecond; bounded at 10 s.
 */
async function startTimed (cmd: string, argv: readonly string[], env: NodeJS.ProcessEnv, readyPath: string, port: number): Promise<Started> {
  const t0 = performance.now()
  const proc = spawn(cmd, argv, { env, stdio: ['ignore', 'ignore', 'inherit'] })
  const deadline = t0 + 10_000
  let acceptMs = NaN
  let acceptCpuMs = NaN
  while (Number.isNaN(acceptMs)) {
    if (performance.now() > deadline || proc.exitCode !== null) { proc.kill('SIGKILL'); throw new Error(`${cmd}: not accepting within 10 s`) }
    if (await connects(port)) { acceptMs = performance.now() - t0; acceptCpuMs = threadsCpuMs(proc.pid as number) } else await sleep(1)
  }
  let readyMs = NaN
  while (Number.isNaN(readyMs)) {
    if (performance.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`${cmd}: not healthy within 10 s`) }
    if ((await get(`http://127.0.0.1:${port}${readyPath}`)).status === 200) readyMs = performance.now() - t0
    else await sleep(1)
  }
  return { proc, port, acceptMs, acceptCpuMs, readyMs }
}

async function stop (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const gone = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  await Promise.race([gone, sleep(3000).then(() => proc.kill('SIGKILL'))])
  await gone
}

/** Prometheus text → the value of one series without labels. */
function series (text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)`, 'm').exec(text)
  return m === null ? NaN : Number(m[1])
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }
const best = (xs: number[]): number => Math.min(...xs)

// ── the executable ────────────────────────────────────────────────────────────────────────────
let exe = args.exe
let made = ''
if (exe === undefined) {
  const { bundle } = await import('../scripts/bundle.ts')
  const r = await bundle({ outDir: join(dir, 'bundle') })
  exe = r.executable
  made = `${(r.executableBytes / MiB).toFixed(1)} MiB: Node ${r.nodeVersion} ${(r.nodeBytes / MiB).toFixed(1)} MiB${r.stripped ? ' stripped' : ''} + blob ${(r.blobBytes / MiB).toFixed(1)} MiB (${(r.entryBytes / MiB).toFixed(1)} MiB JavaScript + code cache)`
  log(`built ${exe} (${made})`)
}

const app = await startApp(dir, null)
// Bare Node runs from a copy of this Node: the app (bench/targets/app.ts) runs this one, and the
// pages it keeps mapped would neither leave the cache nor count as faulted by bare Node.
const bareNode = join(dir, 'node')
copyFileSync(process.execPath, bareNode)
const base: NodeJS.ProcessEnv = { PATH: process.env.PATH, LOG_LEVEL: 'warn', APP_PORT: String(app.port) }
const extraEnv = Object.fromEntries((args['sidecar-env'] ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))

type Kind = 'bare' | 'sidecar'
async function startKind (kind: Kind): Promise<Started & { metricsPort: number }> {
  const port = await freePort()
  const metricsPort = await freePort()
  const env: NodeJS.ProcessEnv = { ...base, PORT: String(port), METRICS_PORT: String(metricsPort) }
  if (kind === 'bare') {
    dropFromPageCache(bareNode)
    return { ...await startTimed(bareNode, [BARE], env, '/', port), metricsPort }
  }
  Object.assign(env, extraEnv)
  dropFromPageCache(exe as string)
  return { ...await startTimed(exe as string, ['--config', CONFIG], env, '/_sidecar/health', port), metricsPort }
}

// ── start-up and idle memory, runs interleaved so a busy machine slows all alike ─────────────
const kinds: readonly Kind[] = ['bare', 'sidecar']
const start: Record<Kind, { accept: number[], acceptCpu: number[], ready: number[], rss: number[], anon: number[], file: number[], heap: number[], external: number[] }> = Object.fromEntries(kinds.map((k) => [k, { accept: [], acceptCpu: [], ready: [], rss: [], anon: [], file: [], heap: [], external: [] }])) as never
const loads: string[] = [load()]
for (let i = 0; i < RUNS; i++) {
  for (const kind of kinds) {
    const s = await startKind(kind)
    const f = start[kind]
    f.accept.push(s.acceptMs)
    f.acceptCpu.push(s.acceptCpuMs)
    f.ready.push(s.readyMs)
    // Idle: one health check answered, then two seconds of nothing.
    await sleep(2000)
    const m = rollup(s.proc.pid as number)
    f.rss.push(m.rss); f.anon.push(m.anon); f.file.push(m.file)
    if (kind !== 'bare') {
      const text = (await get(`http://127.0.0.1:${s.metricsPort}/metrics`)).body
      f.heap.push(series(text, 'nodejs_heap_size_used_bytes') / MiB)
      f.external.push(series(text, 'nodejs_external_memory_bytes') / MiB)
    }
    await stop(s.proc)
  }
  log(`start-up run ${i + 1}/${RUNS} (load ${load()})`)
}
loads.push(load())

// ── load, peak and 30 s after: the sidecar and node-floor (node:http + undici) ────────────────
async function drive (baseUrl: string, path: string, concurrency: number, ms: number): Promise<{ requests: number, bad: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const until = performance.now() + ms
  let requests = 0
  let bad = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < until) {
      const r = await get(`${baseUrl}${path}`, agent)
      requests++
      if (r.status !== 200) bad++
    }
  }))
  agent.destroy()
  return { requests, bad }
}

interface LoadFigures { idle: number, peak: number, after: number, afterAnon: number, heapAfter: number, heapTotalAfter: number, smallRps: number, bigMiBs: number, cpuMs: number, bad: number }
async function underLoad (pid: number, baseUrl: string, metricsUrl?: string): Promise<LoadFigures> {
  const idle = rollup(pid).rss
  const cpu0 = cpuSeconds(pid)
  const small = await drive(baseUrl, PATHS.small, 16, LOAD_MS)
  const big = await drive(baseUrl, PATHS.big, 1, LOAD_MS)
  const cpuMs = (cpuSeconds(pid) - cpu0) * 1000
  const peak = memory(pid).hwm / MiB
  await sleep(AFTER_MS)
  const after = rollup(pid)
  const text = metricsUrl === undefined ? '' : (await get(metricsUrl)).body
  return { idle, peak, after: after.rss, afterAnon: after.anon, heapAfter: series(text, 'nodejs_heap_size_used_bytes') / MiB, heapTotalAfter: series(text, 'nodejs_heap_size_total_bytes') / MiB, smallRps: small.requests / (LOAD_MS / 1000), bigMiBs: big.requests * 16 / (LOAD_MS / 1000), cpuMs, bad: small.bad + big.bad }
}

const loadFigures: Record<string, LoadFigures> = {}
const loadLoads: Record<string, string> = {}
{
  const s = await startKind('sidecar')
  await sleep(2000)
  loadLoads.sidecar = load()
  loadFigures.sidecar = await underLoad(s.proc.pid as number, `http://127.0.0.1:${s.port}`, `http://127.0.0.1:${s.metricsPort}/metrics`)
  await stop(s.proc)
  log(`sidecar under load done (load ${load()})`)
}
if (!args['no-floor']) {
  const floor = await startNodeFloor(dir, null, app.port)
  await sleep(2000)
  loadLoads['node-floor'] = load()
  loadFigures['node-floor'] = await underLoad(floor.pid, floor.base)
  await stopTarget(floor)
  log(`node-floor under load done (load ${load()})`)
}
await stopChild(app.child as Child)
// The temp dir holds a 106 MiB executable per run.
rmSync(dir, { recursive: true, force: true })

// ── report ───────────────────────────────────────────────────────────────────────────────────
const f1 = (n: number): string => Number.isFinite(n) ? n.toFixed(1) : '—'
const cell = (xs: number[]): string => xs.length === 0 ? '—' : `${f1(best(xs))} / ${f1(median(xs))}`
const bare = start.bare
const sc = start.sidecar
const lines = [
  `## Memory and start-up (bench/lean.ts, issue 13)`,
  '',
  `Date: ${new Date().toISOString().slice(0, 19)}Z · machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB · load average (1/5/15 min) before and after the start-up runs: ${loads.join(' → ')}  `,
  `Executable: ${made === '' ? exe : made}; Node ${process.version} for bare Node and node-floor  `,
  `Sidecar: bench/config/lean.yaml (metrics on, one JSON body rule), LOG_LEVEL=warn, its app bench/targets/app.ts already running. Bare Node: bench/targets/bare-http.cjs (node:http answering 200), run by a copy of this Node. Before each start its binary is dropped from the page cache, as on a Machine just booted (the file-backed figure otherwise measures how the cache holds the file: see bench/resident-pages.ts). ${RUNS} interleaved runs; cells: best / median. Idle: 2 s after the first healthy answer, from /proc/<pid>/smaps_rollup; heap and external from the sidecar's own /metrics.  `,
  '',
  '| figure | bare Node | sidecar | sidecar ÷ bare |',
  '| --- | --- | --- | --- |',
  `| exec → accepting, ms ↓ | ${cell(bare.accept)} | ${cell(sc.accept)} | ${(median(sc.accept) / median(bare.accept)).toFixed(2)}× (medians) |`,
  `| CPU time of its threads until accepting, ms ↓ | ${cell(bare.acceptCpu)} | ${cell(sc.acceptCpu)} | ${(median(sc.acceptCpu) / median(bare.acceptCpu)).toFixed(2)}× |`,
  `| exec → healthy (200), ms ↓ | ${cell(bare.ready)} | ${cell(sc.ready)} | ${(median(sc.ready) / median(bare.ready)).toFixed(2)}× |`,
  `| idle RSS, MiB ↓ | ${cell(bare.rss)} | ${cell(sc.rss)} | ${(median(sc.rss) / median(bare.rss)).toFixed(2)}× |`,
  `| of it anonymous, MiB | ${cell(bare.anon)} | ${cell(sc.anon)} | |`,
  `| of it file-backed (the binary's pages), MiB | ${cell(bare.file)} | ${cell(sc.file)} | |`,
  `| V8 heap used, MiB | — | ${cell(sc.heap)} | |`,
  `| external memory, MiB | — | ${cell(sc.external)} | |`,
  '',
  `Under load, one process each: ${LOAD_MS / 1000} s of GET ${PATHS.small} (100 B, 16 connections) then ${LOAD_MS / 1000} s of GET ${PATHS.big} (16 MiB, 1 connection), then ${AFTER_MS / 1000} s idle. node-floor is node:http + one undici Pool dispatch (bench/targets/node-floor.js). ${Object.keys(extraEnv).length > 0 ? `Sidecar environment added: ${Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`).join(' ')}. ` : ''}Load average at the start: ${Object.entries(loadLoads).map(([k, v]) => `${k} ${v}`).join('; ')}.`,
  '',
  '| figure | node-floor | sidecar |',
  '| --- | --- | --- |',
  ...(['idle', 'peak', 'after'] as const).map((k) => `| ${k === 'idle' ? 'RSS before the load' : k === 'peak' ? 'peak RSS (VmHWM)' : `RSS ${AFTER_MS / 1000} s after`}, MiB ↓ | ${f1(loadFigures['node-floor']?.[k] ?? NaN)} | ${f1(loadFigures.sidecar?.[k] ?? NaN)} |`),
  `| of it anonymous, MiB | ${f1(loadFigures['node-floor']?.afterAnon ?? NaN)} | ${f1(loadFigures.sidecar?.afterAnon ?? NaN)} |`,
  `| V8 heap used / total then, MiB | — | ${f1(loadFigures.sidecar?.heapAfter ?? NaN)} / ${f1(loadFigures.sidecar?.heapTotalAfter ?? NaN)} |`,
  `| after ÷ before ↓ | ${((loadFigures['node-floor']?.after ?? NaN) / (loadFigures['node-floor']?.idle ?? NaN)).toFixed(2)}× | ${((loadFigures.sidecar?.after ?? NaN) / (loadFigures.sidecar?.idle ?? NaN)).toFixed(2)}× |`,
  `| small GET req/s ↑ | ${f1(loadFigures['node-floor']?.smallRps ?? NaN)} | ${f1(loadFigures.sidecar?.smallRps ?? NaN)} |`,
  `| 16 MiB GET MiB/s ↑ | ${f1(loadFigures['node-floor']?.bigMiBs ?? NaN)} | ${f1(loadFigures.sidecar?.bigMiBs ?? NaN)} |`,
  `| CPU of the load, ms ↓ | ${f1(loadFigures['node-floor']?.cpuMs ?? NaN)} | ${f1(loadFigures.sidecar?.cpuMs ?? NaN)} |`,
  `| failed requests | ${loadFigures['node-floor']?.bad ?? '—'} | ${loadFigures.sidecar?.bad ?? '—'} |`,
  '',
]
const sf = loadFigures.sidecar
const yes = (ok: boolean): string => ok ? 'yes' : '**no**'
const acceptRatio = median(sc.accept) / median(bare.accept)
const healthyGap = median(sc.ready.map((r, i) => r - (sc.accept[i] as number)))
lines.push(
  '| target (issue 13) | measured (medians) | met |',
  '| --- | --- | --- |',
  `| idle RSS ≤ 55 MiB (metrics on, one body rule) | ${f1(median(sc.rss))} MiB (bare Node ${f1(median(bare.rss))} MiB) | ${yes(median(sc.rss) <= 55)} |`,
  `| ${AFTER_MS / 1000} s after the load ≤ 1.25× idle | ${sf === undefined ? '—' : `${(sf.after / sf.idle).toFixed(2)}× (${f1(sf.after)} vs ${f1(sf.idle)} MiB)`} | ${sf === undefined ? '—' : yes(sf.after <= 1.25 * sf.idle)} |`,
  `| peak under these loads ≤ 100 MiB | ${sf === undefined ? '—' : `${f1(sf.peak)} MiB`} | ${sf === undefined ? '—' : yes(sf.peak <= 100)} |`,
  `| exec → accepting ≤ 2× bare Node | ${acceptRatio.toFixed(2)}× (${f1(median(sc.accept))} vs ${f1(median(bare.accept))} ms; CPU until then ${(median(sc.acceptCpu) / median(bare.acceptCpu)).toFixed(2)}×) | ${yes(acceptRatio <= 2)} |`,
  `| healthy as soon as the app is | the first health check after the port accepts answered 200, ${f1(healthyGap)} ms later (the app was already up) | ${yes(healthyGap < 50)} |`,
  '',
  'Why each unmet target is not met, with what was measured: [docs/performance.md](../docs/performance.md#memory-and-start-up).',
  ''
)
const report = lines.join('\n')
process.stdout.write(report)
if (args.out !== undefined) { mkdirSync(join(args.out, '..'), { recursive: true }); writeFileSync(args.out, report) }
if (args.write) {
  const file = join(ROOT, 'bench', 'RESULTS.md')
  const section = `${MARK_START}\n${report}${MARK_END}\n`
  const current = readFileSync(file, 'utf8')
  const at = current.indexOf(MARK_START)
  const end = current.indexOf(MARK_END)
  writeFileSync(file, at === -1 || end === -1 ? `${current.trimEnd()}\n\n${section}` : `${current.slice(0, at)}${section}${current.slice(end + MARK_END.length + 1)}`)
  log('wrote its section of bench/RESULTS.md')
}
