// `npm run bench`: starts the app, nginx, plain Fastify + @fastify/http-proxy, the node:http +
// undici floor and the sidecar on one CPU, checks each for correctness, drives them from the other CPU in interleaved rounds, and
// prints one Markdown table (also written to bench/RESULTS.md). `--quick` for a smoke run.
import os from 'node:os'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { ensureTools, pkgVersion, toolVersion } from './_tools.ts'
import { FULL, QUICK, PATHS, livewireBody, type BenchParams } from './_config.ts'
import { startFakeMachinesApi } from './_machines-api.ts'
import { detectPinning, pinSelf, cpuSeconds, memory, stopChild, type Child } from './_procs.ts'
import { writeWrkScript, runWrk, type WrkResult } from './_wrk.ts'
import { runStreams, quantile, openIdleStreams, openSlowDownloads } from './_streams.ts'
import { checkTarget, LIVEWIRE_HEADERS } from './check.ts'
import {
  ROOT, SIDECAR_CONFIG, TARGETS, buildSidecarExecutable, type SidecarBuild, startApp, directTarget, startNginx, startHttpProxy, startNodeFloor,
  startSidecar, sidecarAvailable, stopTarget, writeHundredRulesConfig, type Target,
} from './_targets.ts'
import { renderTable, renderGoals, SIDECAR_PEERS, type Samples } from './_report.ts'
import { tableCases } from './_cases.ts'
import { computeGoals } from './_goals.ts'

const USAGE = `usage: npm run bench -- [--quick] [--rounds N] [--duration S] [--targets ${TARGETS.join(',')}]
                          [--cases get64,big,...] [--write | --no-write] [--cpu-prof] [--keep]
  --quick       one short round (smoke check); does not write bench/RESULTS.md unless --write
  --rounds N    timed rounds per case and target (default ${FULL.rounds})
  --duration S  seconds per timed run (default ${FULL.durationS})
  --targets     which targets to run (default all)
  --cases       which cases to run: get64,get1,post64,big,streams,replay,inspect,rules100 (default all)
  --cpu-prof    run the sidecar with --cpu-prof; profiles land in bench/.out/prof/
  --sidecar-src run the sidecar from src/cli.ts instead of the production executable (scripts/bundle.ts)
  --node-args   extra Node/V8 flags for the sidecar, e.g. "--max-semi-space-size=4" (tuning experiments)
  --keep        keep the temp dir with configs and logs`

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    targets: { type: 'string' },
    cases: { type: 'string' },
    write: { type: 'boolean' },
    'no-write': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'sidecar-src': { type: 'boolean', default: false },
    'node-args': { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) { console.log(USAGE); process.exit(0) }

const base = args.quick ? QUICK : FULL
const params: BenchParams = {
  ...base,
  ...(args.rounds !== undefined ? { rounds: Number(args.rounds) } : {}),
  ...(args.duration !== undefined ? { durationS: Math.max(1, Math.round(Number(args.duration))) } : {}),
}
const wanted = new Set((args.targets ?? TARGETS.join(',')).split(',').map((s) => s.trim()))
const onlyCases = args.cases === undefined ? null : new Set(args.cases.split(',').map((s) => s.trim()))
const caseWanted = (id: string): boolean => onlyCases === null || onlyCases.has(id)
const writeResults = args.write ?? (!args.quick && !args['no-write'])

// ── cases ──────────────────────────────────────────────────────────────────
interface WrkCase {
  readonly id: string
  readonly label: string
  readonly path: string
  readonly script: string
  readonly connections: number
  /** Which running target each sample column is measured on: column -> target key. */
  readonly on: Readonly<Record<string, string>>
  readonly bytes: boolean
}

const ALL = Object.fromEntries(TARGETS.map((t) => [t, t]))
const c = params.connections

// ── main ───────────────────────────────────────────────────────────────────
const running: Target[] = []
/** Every child started, so an interrupted or failed run leaves nothing behind. */
const spawned: Child[] = []
const killAll = (): void => { for (const ch of spawned) if (!ch.exited) ch.proc.kill('SIGKILL') }
let interrupted = false
process.on('SIGINT', () => {
  interrupted = true
  killAll()
  process.exit(130)
})

async function main (): Promise<void> {
  const started = Date.now()
  // The code measured is the code built now: a commit made during the run must not be named.
  const commit = spawnSync('git', ['-C', ROOT, 'log', '-1', '--format=%h %cI'], { encoding: 'utf8' }).stdout.trim()
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout.trim() !== ''
  const { nginx: nginxBin } = ensureTools()
  const cpus = os.cpus().length
  const pin = detectPinning(cpus)
  if (pin !== null && !pinSelf(pin.load)) console.error('warning: could not pin the benchmark process to CPU ' + pin.load)
  const serverCpu = pin?.server ?? null
  const dir = mkdtempSync(join(os.tmpdir(), 'sidecar-bench-'))
  const outDir = join(ROOT, 'bench', '.out')
  mkdirSync(outDir, { recursive: true })
  const log = (msg: string): void => { console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}`) }

  // Bodies and wrk scripts, written once.
  const refreshFile = join(dir, 'livewire-refresh.json')
  const processFile = join(dir, 'livewire-process.json')
  writeFileSync(refreshFile, livewireBody('refresh'))
  writeFileSync(processFile, livewireBody('process'))
  const scripts = {
    small: writeWrkScript(dir, 'get-small', { method: 'GET', path: PATHS.small }),
    echo: writeWrkScript(dir, 'post-echo', { method: 'POST', path: PATHS.echo, headers: { 'Content-Type': 'application/json' }, bodyFile: refreshFile }),
    big: writeWrkScript(dir, 'get-big', { method: 'GET', path: PATHS.big }),
    replay: writeWrkScript(dir, 'livewire-replay', { method: 'POST', path: PATHS.livewire, headers: { 'Content-Type': LIVEWIRE_HEADERS['content-type'], 'X-Livewire': 'true' }, bodyFile: processFile }),
    inspect: writeWrkScript(dir, 'livewire-inspect', { method: 'POST', path: PATHS.livewire, headers: { 'Content-Type': LIVEWIRE_HEADERS['content-type'], 'X-Livewire': 'true' }, bodyFile: refreshFile }),
  }

  // Targets.
  const status: Record<string, string> = {}
  const notes: string[] = []
  let sidecarForm = 'src/cli.ts'
  const api = await startFakeMachinesApi()
  const app = await startApp(dir, serverCpu)
  spawned.push(app.child)
  const appBase = `http://127.0.0.1:${app.port}`
  const targets: Record<string, Target> = {}
  const tryStart = async (key: string, start: () => Promise<Target>): Promise<void> => {
    try {
      const t = await start()
      targets[key] = t
      running.push(t)
      spawned.push(...t.children)
    } catch (err) {
      status[key] = `did not start: ${(err as Error).message}`
    }
  }
  if (wanted.has('direct')) targets.direct = directTarget(app)
  if (wanted.has('nginx')) {
    if (nginxBin === null) status.nginx = 'nginx is not installed'
    else await tryStart('nginx', () => startNginx(dir, serverCpu, app.port, nginxBin))
  }
  if (wanted.has('http-proxy')) await tryStart('http-proxy', () => startHttpProxy(dir, serverCpu, app.port))
  if (wanted.has('node-floor')) await tryStart('node-floor', () => startNodeFloor(dir, serverCpu, app.port))
  if (wanted.has('sidecar')) {
    if (!sidecarAvailable()) status.sidecar = 'src/cli.ts does not exist yet'
    else {
      const profDir = join(outDir, 'prof')
      let build: SidecarBuild | undefined
      if (!args['sidecar-src']) {
        try {
          build = await buildSidecarExecutable(dir)
          sidecarForm = args['node-args'] === undefined && !args['cpu-prof']
            ? `the production single executable (scripts/bundle.ts; baked-in flags ${build.nodeFlags.join(' ')})`
            : `the production executable's JavaScript run by node with its flags (${build.nodeFlags.join(' ')})`
        } catch (err) {
          sidecarForm = 'src/cli.ts (the bundle did not build)'
          notes.push(`the sidecar bundle did not build, so the sidecar ran from src/cli.ts: ${(err as Error).message.split('\n')[0] ?? ''}`)
        }
      }
      // --node-args come after the executable's own flags: V8 takes the last value of a flag.
      const nodeArgs = [
        ...(args['node-args'] ?? '').split(/\s+/).filter((a) => a !== ''),
        ...(args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
      ]
      await tryStart('sidecar', () => startSidecar({ name: 'sidecar', dir, cpu: serverCpu, appPort: app.port, config: SIDECAR_CONFIG, apiUrl: api.url, build, nodeArgs }))
      await tryStart('sidecar-100', () => startSidecar({ name: 'sidecar-100', dir, cpu: serverCpu, appPort: app.port, config: writeHundredRulesConfig(dir), apiUrl: api.url, build, nodeArgs: nodeArgs.filter((a) => !a.startsWith('--cpu-prof')) }))
    }
  }
  log(`started: ${Object.keys(targets).join(', ')}${Object.keys(status).length > 0 ? `; not started: ${JSON.stringify(status)}` : ''}`)

  // Memory per idle stream, first: in a fresh process the streams' memory shows as RSS growth; after
  // the loads it would hide in heap the loads already grew.
  const columns: readonly string[] = TARGETS
  const fresh: Record<string, number> = {}
  const idle: Record<string, { rss: number, perStream: number }> = {}
  for (const column of columns) {
    if (targets[column] === undefined) continue
    const t = targets[column] as Target
    fresh[column] = memory(t.pid).rss
    try {
      const before = memory(t.pid).rss
      const held = await openIdleStreams(t.base, params.idleStreams)
      await sleep(500)
      const withStreams = memory(t.pid).rss
      held.close()
      if (held.problem !== null) notes.push(`idle streams on ${column}: ${held.problem}; RSS and KiB per stream are for those`)
      if (held.opened > 0) idle[column] = { rss: withStreams, perStream: (withStreams - before) / held.opened }
      await sleep(500)
    } catch (err) {
      notes.push(`idle streams on ${column}: ${(err as Error).message}`)
    }
  }
  log('idle streams measured')

  // Memory held per slow download: clients that take the first bytes of the 16 MiB body and then
  // stop reading, in a process that has not run the loads yet.
  const SLOW_DOWNLOADS = 64
  const slow: Record<string, number> = {}
  for (const column of columns) {
    if (targets[column] === undefined || column === 'direct') continue
    const t = targets[column] as Target
    try {
      const before = memory(t.pid).rss
      const held = await openSlowDownloads(t.base, SLOW_DOWNLOADS)
      await sleep(1500)
      const during = memory(t.pid).rss
      held.close()
      if (held.problem !== null) notes.push(`slow downloads on ${column}: ${held.problem}`)
      if (held.opened > 0) slow[column] = Math.max(0, during - before) / held.opened
      await sleep(500)
    } catch (err) {
      notes.push(`slow downloads on ${column}: ${(err as Error).message}`)
    }
  }
  log('slow downloads measured')

  // Correctness before timing.
  for (const [key, t] of Object.entries(targets)) {
    const problems = await checkTarget(t.base, { appBase, sidecar: key.startsWith('sidecar'), streamIntervalMs: params.streamIntervalMs })
    if (problems.length > 0) {
      status[key] = `failed checks: ${problems.join('; ')}`
      log(`${key} FAILED: ${problems.join('; ')}`)
    }
  }
  const ok = (key: string): boolean => targets[key] !== undefined && status[key] === undefined
  log(`checks passed: ${Object.keys(targets).filter(ok).join(', ') || 'none'}`)

  const wrkCases: WrkCase[] = [
    { id: 'get64', label: 'GET small ×64', path: PATHS.small, script: scripts.small, connections: c, on: ALL, bytes: false },
    { id: 'get1', label: 'GET small ×1', path: PATHS.small, script: scripts.small, connections: 1, on: ALL, bytes: false },
    { id: 'post64', label: 'POST echo ×64', path: PATHS.echo, script: scripts.echo, connections: c, on: ALL, bytes: false },
    { id: 'big', label: 'GET 16 MiB', path: PATHS.big, script: scripts.big, connections: 1, on: ALL, bytes: true },
    { id: 'replay', label: 'Livewire replay', path: PATHS.livewire, script: scripts.replay, connections: c, on: { sidecar: 'sidecar' }, bytes: false },
    { id: 'inspect', label: 'Livewire inspect', path: PATHS.livewire, script: scripts.inspect, connections: c, on: { sidecar: 'sidecar' }, bytes: false },
    { id: 'rules100', label: 'GET small ×64, 100 rules', path: PATHS.small, script: scripts.small, connections: c, on: { sidecar: 'sidecar-100' }, bytes: false },
  ]
  const samples: Samples = {}
  const push = (caseId: string, column: string, key: string, v: number): void => {
    const byTarget = samples[caseId] ??= {}
    const byMetric = byTarget[column] ??= {}
    ;(byMetric[key] ??= []).push(v)
  }

  const runOne = async (wc: WrkCase, column: string, key: string, durationS: number, record: boolean): Promise<void> => {
    const t = targets[key] as Target
    const cpu0 = cpuSeconds(t.pid)
    let r: WrkResult
    try {
      r = await runWrk({ url: `${t.base}${wc.path}`, script: wc.script, connections: wc.connections, durationS, cpu: pin?.load ?? null })
    } catch (err) {
      status[key] = `failed during ${wc.id}: ${(err as Error).message.split('\n')[0] ?? ''}`
      return
    }
    const cpu = cpuSeconds(t.pid) - cpu0
    if (t.children.some((ch) => ch.exited)) { status[key] = `exited during ${wc.id} (log: ${t.children[0]?.log ?? ''})`; return }
    const errors = r.socketErrors + r.statusErrors
    if (errors > 0) notes.push(`${wc.label} on ${key}: ${r.statusErrors} responses ≥ 400 and ${r.socketErrors} socket errors of ${r.requests}${record ? '' : ' (warm-up)'}`)
    if (!record || r.requests === 0) return
    if (wc.bytes) {
      push(wc.id, column, 'mibps', r.bytes / r.durationS / 2 ** 20)
      push(wc.id, column, 'cpuGiB', cpu * 1e3 / (r.bytes / 2 ** 30))
    } else {
      push(wc.id, column, 'rps', r.requests / r.durationS)
      push(wc.id, column, 'p50', r.p50us / 1e3)
      push(wc.id, column, 'p99', r.p99us / 1e3)
      push(wc.id, column, 'cpu', cpu * 1e6 / r.requests)
    }
  }

  const runStreamsOne = async (column: string, chunks: number, record: boolean): Promise<void> => {
    const t = targets[column] as Target
    const r = await runStreams(t.base, params.streams, chunks, params.streamIntervalMs)
    if (r.errors.length > 0) notes.push(`streams on ${column}: ${r.errors.length} problems, e.g. ${r.errors[0] ?? ''}`)
    if (!record) return
    push('streams', column, 'd50', quantile(r.delaysMs, 0.5))
    push('streams', column, 'd99', quantile(r.delaysMs, 0.99))
    push('streams', column, 'dmax', r.delaysMs[r.delaysMs.length - 1] ?? NaN)
  }

  const rotate = <T>(xs: readonly T[], n: number): T[] => xs.map((_, i) => xs[(i + n) % xs.length] as T)
  const round = async (r: number, record: boolean, durationS: number, chunks: number): Promise<void> => {
    for (const wc of wrkCases) {
      if (!caseWanted(wc.id)) continue
      for (const column of rotate(columns, r)) {
        const key = wc.on[column]
        if (key === undefined || !ok(key) || interrupted) continue
        await runOne(wc, column, key, durationS, record)
        notePeak(key, `${wc.id}, ${record ? `round ${r + 1}` : 'warm-up'}`)
        if (!record && key === column) (growth[column] ??= []).push([wc.id, memory((targets[key] as Target).pid).rss])
        await sleep(150)
      }
    }
    for (const column of rotate(columns, r)) {
      if (!ok(column) || !caseWanted('streams') || interrupted) continue
      await runStreamsOne(column, chunks, record)
      notePeak(column, `streams, ${record ? `round ${r + 1}` : 'warm-up'}`)
      if (!record) (growth[column] ??= []).push(['streams', memory((targets[column] as Target).pid).rss])
    }
  }

  // Where each process's high-water mark was set: the load to look at for its peak RSS.
  const peakAt: Record<string, { hwm: number, at: string }> = {}
  const notePeak = (key: string, at: string): void => {
    const t = targets[key]
    if (t === undefined || t.children.some((ch) => ch.exited)) return
    const hwm = memory(t.pid).hwm
    if (hwm > (peakAt[key]?.hwm ?? -1)) peakAt[key] = { hwm, at }
  }
  for (const key of Object.keys(targets)) if (ok(key)) notePeak(key, 'the idle streams and slow downloads')

  // RSS after each case's first exposure (the warm-up): which load grows a process's memory.
  const growth: Record<string, Array<[string, number]>> = {}
  for (const column of columns) if (ok(column)) growth[column] = [['start', memory((targets[column] as Target).pid).rss]]
  log(`warm-up (${params.warmupS} s per case and target)`)
  await round(0, false, params.warmupS, Math.min(10, params.streamChunks))
  const apiCallsBefore = api.calls.length
  for (let r = 0; r < params.rounds; r++) {
    log(`round ${r + 1} of ${params.rounds}`)
    await round(r, true, params.durationS, params.streamChunks)
  }
  const apiCallsTimed = api.calls.length - apiCallsBefore

  // Memory: the high-water mark of every load above.
  const extraRows: string[][] = []
  const peak: Record<string, number> = {}
  for (const column of columns) if (ok(column)) peak[column] = memory((targets[column] as Target).pid).hwm
  const mib = (b: number | undefined): string => b === undefined ? '—' : (b / 2 ** 20).toFixed(1)
  const kib = (b: number | undefined): string => b === undefined ? '—' : (b / 1024).toFixed(1)
  const memRow = (label: string, metric: string, f: (col: string) => number | undefined, fmt: (b: number | undefined) => string): string[] => {
    const row = [label, metric]
    for (const col of columns) {
      const v = f(col)
      row.push(v === undefined ? (status[col] !== undefined ? 'failed' : '—') : fmt(v))
      // The app is shared by every target, so its memory is no floor for a proxy's: no ratio.
      if (col !== 'direct') row.push('—')
    }
    const s = f('sidecar')
    for (const peer of SIDECAR_PEERS) {
      const p = f(peer)
      row.push(s !== undefined && p !== undefined && p > 0 ? `${(s / p).toFixed(2)}×` : '—')
    }
    return row
  }
  extraRows.push(memRow('fresh process', 'RSS MiB ↓', (col) => fresh[col], mib))
  extraRows.push(memRow('all loads above', 'peak RSS MiB ↓', (col) => peak[col], mib))
  extraRows.push(memRow(`${params.idleStreams.toLocaleString('en-US')} idle open streams`, 'RSS MiB ↓', (col) => idle[col]?.rss, mib))
  extraRows.push(memRow(`${params.idleStreams.toLocaleString('en-US')} idle open streams`, 'KiB per stream ↓', (col) => idle[col]?.perStream, kib))
  extraRows.push(memRow(`${SLOW_DOWNLOADS} slow downloads of 16 MiB (first bytes read, then none)`, 'RSS growth KiB per download ↓', (col) => slow[col], kib))

  // Stop everything before writing (so a profile is flushed).
  for (const t of [...running].reverse()) await stopTarget(t)
  await stopChild(app.child)
  await api.close()

  // ── report ─────────────────────────────────────────────────────────────
  const goals = computeGoals(samples, { fresh, peak, idle, slow })

  const cpuModel = os.cpus()[0]?.model ?? '?'
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const header = [
    `Date: ${date} · machine: ${cpus} × ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${os.release()}${process.env.BENCH_MACHINE !== undefined ? ` (${process.env.BENCH_MACHINE})` : ''}`,
    `Versions: Node ${process.version} · ${toolVersion('nginx', nginxBin ?? 'nginx', ['-v'])} · ${toolVersion('wrk', 'wrk', ['-v'])} · fastify ${pkgVersion('fastify')} · @fastify/http-proxy ${pkgVersion('@fastify/http-proxy')} · undici ${pkgVersion('undici')} · sidecar at ${commit}${dirty ? ' (+ uncommitted changes in src/)' : ''}`,
    `Parameters: ${params.rounds} interleaved round${params.rounds === 1 ? '' : 's'} × ${params.durationS} s per case and target after ${params.warmupS} s warm-up; wrk -t1 -c${c} (-c1 for the 1-connection and 16 MiB cases); ` +
      `streams ${params.streams} × ${params.streamChunks} chunks every ${params.streamIntervalMs} ms; ${params.idleStreams} idle streams; ` +
      (pin !== null ? `wrk and the stream clients pinned to CPU ${pin.load}, proxy and app to CPU ${pin.server} (taskset)` : 'NOT pinned (fewer than 2 CPUs or no taskset)') +
      `; nginx: 1 worker, proxy_buffering off, proxy_request_buffering off, keep-alive upstream; http-proxy: Fastify + @fastify/http-proxy defaults; node-floor: node:http + one undici Pool dispatch per request (bench/targets/node-floor.js); sidecar: ${sidecarForm}${args['node-args'] !== undefined && args['node-args'].trim() !== '' ? ` run with \`${args['node-args'].trim()}\`` : ''} with bench/config/sidecar.yaml (1 Livewire body rule, metrics on, log level ${process.env.LOG_LEVEL ?? 'info'}).`,
    'Cells: best / median ±spread over rounds (spread = (max − min) / median); ratios compare best rounds. ↑ higher is better, ↓ lower. ' +
      'CPU is the proxy process\'s own user+system time (nginx: its worker; direct: the app) from /proc/<pid>/stat. Stream delays are receive time minus the app\'s send stamp (CLOCK_MONOTONIC); peer columns show the difference.',
  ]
  const table = renderTable({ cases: tableCases(params), samples, peers: columns.filter((col) => col !== 'sidecar'), sidecar: 'sidecar', status, extraRows })
  const statusLines = Object.entries(status).map(([k, v]) => `- ${k}: ${v}`)
  for (const column of ['http-proxy', 'node-floor', 'sidecar']) {
    const g = growth[column]
    if (g !== undefined && g.length > 1) notes.push(`${column} RSS after its first run of each case (warm-up), MiB: ${g.map(([k, v]) => `${k} ${mib(v)}`).join(' → ')}.`)
    const p = peakAt[column]
    if (p !== undefined && p.hwm > 0) notes.push(`${column} peak RSS (${mib(p.hwm)} MiB) was reached during ${p.at}.`)
  }
  notes.push(`Machines API calls during the timed rounds: ${apiCallsTimed} (${api.calls.length} in all).`)
  const elapsed = `${((Date.now() - started) / 1000).toFixed(0)} s`
  const md = [
    '# Benchmark results', '',
    ...header.map((h) => `${h}  `), '',
    table, '',
    '## Goals (issue #12)', '',
    renderGoals(goals), '',
    'The node-floor figures beside a goal are the bare `node:http` + undici proxy in the same run: what the stack leaves before any sidecar code runs. Why each unmet goal is not met, with profiles and A/B runs: [docs/performance.md](../docs/performance.md#the-goals-judged-on-this-run).', '',
    ...(statusLines.length > 0 ? ['## Targets not timed', '', ...statusLines, ''] : []),
    '## Notes', '',
    ...notes.map((n) => `- ${n}`),
    `- Whole run: ${elapsed}.`, '',
  ].join('\n')
  console.log(md)
  writeFileSync(join(outDir, 'last.json'), JSON.stringify({ date, params, samples, status, peak, idle, notes }, null, 2))
  if (writeResults) {
    // bench/lean.ts owns the part of RESULTS.md between its markers: keep it below this run.
    const file = join(ROOT, 'bench', 'RESULTS.md')
    const previous = existsSync(file) ? readFileSync(file, 'utf8') : ''
    const lean = /<!-- bench\/lean\.ts: start -->[\s\S]*?<!-- bench\/lean\.ts: end -->\n?/.exec(previous)?.[0]
    writeFileSync(file, lean === undefined ? md : `${md.trimEnd()}\n\n${lean}`)
    log('wrote bench/RESULTS.md')
  }
  if (args.keep) log(`kept ${dir}`)
  else rmSync(dir, { recursive: true, force: true })
}

main().catch((err: unknown) => {
  console.error(err)
  killAll()
  process.exitCode = 1
})
