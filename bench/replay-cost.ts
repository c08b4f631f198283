// CPU per request of the sidecar's Livewire cases, for A/B of one change at a time on a shared
// machine (docs/performance.md, "The replay answer and inspected bodies"):
//   node bench/replay-cost.ts --mode callgrind [--case replay] [--src DIR]...
//     instructions per request, counted by valgrind's callgrind over a fixed number of requests
//     after a warm-up: independent of the machine's load. One sidecar at a time.
//   node bench/replay-cost.ts --mode ab [--case replay] --src DIR_A --src DIR_B
//   node bench/replay-cost.ts --mode summarize --dump FILE --requests N   (a dump again)
//     the same-time A/B: every sidecar behind one bench app, all on CPU 1, one wrk per sidecar on
//     CPU 0 started together each round; CPU µs per request from /proc/<pid>/stat.
// `--src DIR` is a checkout whose src/cli.ts runs (its types stripped at load; default: this
// one). `--case`: replay (the `process()` body, answered 307), inspect (the `refresh()` body,
// read, not matched, proxied), echo (POST /echo, never inspected).
import os from 'node:os'
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { PATHS, livewireBody } from './_config.ts'
import { startFakeMachinesApi } from './_machines-api.ts'
import { cpuSeconds, freePort, pinSelf, spawnPinned, stopChild, waitReady, type Child } from './_procs.ts'
import { SIDECAR_CONFIG, sidecarEnv, startApp } from './_targets.ts'
import { runWrk, writeWrkScript } from './_wrk.ts'

const ROOT = resolve(import.meta.dirname, '..')
const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'callgrind' },
    case: { type: 'string', default: 'replay' },
    src: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '4' },
    connections: { type: 'string', default: '32' },
    requests: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '6000' },
    'node-args': { type: 'string', default: '' },
    dump: { type: 'string' },
  },
})

const CASES = {
  replay: { path: PATHS.livewire, body: livewireBody('process'), livewire: true, status: 307 },
  inspect: { path: PATHS.livewire, body: livewireBody('refresh'), livewire: true, status: 200 },
  echo: { path: PATHS.echo, body: livewireBody('refresh'), livewire: false, status: 200 },
} as const
const benchCase = CASES[args.case as keyof typeof CASES]
if (benchCase === undefined) throw new Error(`--case must be one of ${Object.keys(CASES).join(', ')}`)
const roots = (args.src ?? [ROOT]).map((d) => resolve(d))
const dir = mkdtempSync(join(os.tmpdir(), 'replay-cost-'))
const children: Child[] = []
process.on('exit', () => { for (const c of children) if (!c.exited) c.proc.kill('SIGKILL') })

/** The request's bytes, sent again and again on each connection. */
function requestBytes (): Buffer {
  const head = [
    `POST ${benchCase.path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Content-Type: application/json',
    ...(benchCase.livewire ? ['X-Livewire: true'] : []),
    `Content-Length: ${benchCase.body.length}`,
    '', '',
  ].join('\r\n')
  return Buffer.concat([Buffer.from(head, 'latin1'), benchCase.body])
}

/**
 * Sends `total` requests over `connections` kept-alive connections, one at a time on each, and
 * checks each response's status. A response is framed by its Content-Length (the sidecar's and
 * the app's answers all have one).
 */
async function drive (port: number, total: number, connections: number): Promise<void> {
  const req = requestBytes()
  let sent = 0
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    s.setNoDelay(true)
    let buf: Buffer = Buffer.alloc(0)
    const next = (): void => {
      if (sent >= total) { s.end(); resolve(); return }
      sent++
      s.write(req)
    }
    s.on('connect', next)
    s.on('error', reject)
    s.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const head = buf.subarray(0, end).toString('latin1')
        const m = /\r\ncontent-length: *(\d+)/i.exec(head)
        const length = m === null ? 0 : Number(m[1])
        if (buf.length < end + 4 + length) return
        const status = Number(head.slice(9, 12))
        if (status !== benchCase.status) { reject(new Error(`status ${status}, wanted ${benchCase.status}:\n${head}`)); s.destroy(); return }
        buf = buf.subarray(end + 4 + length)
        next()
      }
    })
  })
  await Promise.all(Array.from({ length: connections }, one))
}

async function startSidecar (root: string, i: number, appPort: number, apiUrl: string, valgrind: boolean): Promise<{ child: Child, port: number }> {
  const port = await freePort()
  const node = process.execPath
  const nodeArgs = (args['node-args'] ?? '').split(' ').filter((a) => a !== '')
  const cli = [...nodeArgs, join(root, 'src', 'cli.ts'), '--config', SIDECAR_CONFIG]
  const [cmd, argv] = valgrind
    ? ['valgrind', ['--tool=callgrind', `--callgrind-out-file=${join(dir, `callgrind.${i}.%p`)}`, node, ...cli]]
    : [node, cli]
  const child = spawnPinned(`sidecar-${i}`, '1', cmd, argv, { cwd: root, env: sidecarEnv(port, appPort, apiUrl), log: join(dir, `sidecar-${i}.log`) })
  children.push(child)
  await waitReady(child, `http://127.0.0.1:${port}${PATHS.small}`, valgrind ? 900_000 : 20_000)
  return { child, port }
}

// V8's garbage collector and optimizing compilers run in bursts (a major GC falls into one
// window of a few thousand requests and not into the next): their share is reported apart.
const GC_RE = /v8::internal::(?:.*(?:Marking|Scaveng|Sweep|Evacuat|Compact|RememberedSet|MarkCompact|ConcurrentMarking|GCTracer)|Heap::|HeapObject::SizeFromMap|BodyDescriptorBase)|heap::base::/
const COMPILER_RE = /v8::internal::(?:compiler::|maglev::|turboshaft::)/

/** The Ir total of the newest callgrind dump of `pid`, and the part of it in GC and compilers. */
function dumpedInstructions (pid: number): { total: number, gc: number, compiler: number } {
  const files = readdirSync(dir).filter((f) => f.startsWith('callgrind.') && f.includes(`.${pid}`)).sort()
  const last = files.at(-1)
  if (last === undefined) throw new Error(`no callgrind dump for ${pid} in ${dir}`)
  return dumpSplit(join(dir, last))
}

function dumpSplit (file: string): { total: number, gc: number, compiler: number } {
  const text = readFileSync(file, 'utf8')
  const m = /^(?:summary|totals): (\d+)/m.exec(text)
  if (m === null) throw new Error(`no totals in ${file}`)
  // Self cost per function: cost lines under fn=, except the one after each calls= (inclusive).
  const names = new Map<string, string>()
  let kind: 'gc' | 'compiler' | 'other' = 'other'
  let afterCall = false
  let gc = 0
  let compiler = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      const f = /^fn=\((\d+)\)(?: (.*))?$/.exec(line)
      const name = f === null ? line.slice(3) : (f[2] ?? names.get(f[1] ?? '') ?? '')
      if (f?.[2] !== undefined) names.set(f[1] ?? '', f[2])
      kind = GC_RE.test(name) ? 'gc' : COMPILER_RE.test(name) ? 'compiler' : 'other'
    } else if (line.startsWith('cfn=')) {
      const f = /^cfn=\((\d+)\) (.*)$/.exec(line)
      if (f !== null) names.set(f[1] ?? '', f[2] ?? '')
    } else if (line.startsWith('calls=')) {
      afterCall = true
    } else if (/^[0-9+*-]/.test(line)) {
      if (afterCall) { afterCall = false; continue }
      const cost = Number(line.split(' ')[1] ?? 0)
      if (kind === 'gc') gc += cost
      else if (kind === 'compiler') compiler += cost
    }
  }
  return { total: Number(m[1]), gc, compiler }
}

function split (ir: { total: number, gc: number, compiler: number }, requests: number): string {
  const per = (n: number): string => Math.round(n / requests).toLocaleString('en')
  return `${per(ir.total)} instructions per request; without GC and compilers ${per(ir.total - ir.gc - ir.compiler)} (GC ${per(ir.gc)}, compilers ${per(ir.compiler)})`
}

async function callgrind (appPort: number, apiUrl: string): Promise<void> {
  const requests = Number(args.requests)
  const warmup = Number(args.warmup)
  const connections = Number(args.connections)
  for (const [i, root] of roots.entries()) {
    const { child, port } = await startSidecar(root, i, appPort, apiUrl, true)
    await drive(port, warmup, connections)
    execFileSync('callgrind_control', ['-z', String(child.pid)], { stdio: 'ignore' })
    await drive(port, requests, connections)
    execFileSync('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore' })
    await sleep(500)
    console.log(`${root}: ${args.case}, ${requests} requests after ${warmup}, ${connections} conn: ${split(dumpedInstructions(child.pid), requests)} (dumps in ${dir})`)
    await stopChild(child, 15_000)
  }
}

async function ab (appPort: number, apiUrl: string): Promise<void> {
  const script = join(dir, 'body.json')
  writeFileSync(script, benchCase.body)
  const lua = writeWrkScript(dir, 'case', {
    method: 'POST',
    path: benchCase.path,
    headers: { 'Content-Type': 'application/json', ...(benchCase.livewire ? { 'X-Livewire': 'true' } : {}) },
    bodyFile: script,
  })
  const sidecars = []
  for (const [i, root] of roots.entries()) sidecars.push(await startSidecar(root, i, appPort, apiUrl, false))
  const connections = Number(args.connections)
  const durationS = Number(args.duration)
  // Warm-up, untimed.
  await Promise.all(sidecars.map((s) => runWrk({ url: `http://127.0.0.1:${s.port}${benchCase.path}`, script: lua, connections, durationS: 2, cpu: '0' })))
  const perRound: number[][] = []
  for (let r = 0; r < Number(args.rounds); r++) {
    const before = sidecars.map((s) => cpuSeconds(s.child.pid))
    const results = await Promise.all(sidecars.map((s) => runWrk({ url: `http://127.0.0.1:${s.port}${benchCase.path}`, script: lua, connections, durationS, cpu: '0' })))
    const us = sidecars.map((s, i) => (cpuSeconds(s.child.pid) - (before[i] ?? 0)) * 1e6 / (results[i]?.requests ?? 1))
    perRound.push(us)
    const errors = results.map((x) => x.socketErrors + x.statusErrors)
    console.log(`round ${r + 1}: ${us.map((u) => u.toFixed(1)).join(' / ')} µs/req; ratios to the first: ${us.map((u) => (u / (us[0] ?? 1)).toFixed(3)).join(' ')}; req ${results.map((x) => x.requests).join(' / ')}${errors.some((e) => e > 0) ? `; errors ${errors.join(' / ')}` : ''}`)
  }
  const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }
  for (const [i, root] of roots.entries()) {
    console.log(`${root}: median ${median(perRound.map((u) => u[i] ?? NaN)).toFixed(1)} µs/req, median ratio to the first ${median(perRound.map((u) => (u[i] ?? NaN) / (u[0] ?? NaN))).toFixed(3)}`)
  }
  for (const s of sidecars) await stopChild(s.child, 15_000)
}

/** `--requests` requests at each sidecar after `--warmup` ones; its log is kept (for --node-args tracing). */
async function driveOnly (appPort: number, apiUrl: string): Promise<void> {
  for (const [i, root] of roots.entries()) {
    const { child, port } = await startSidecar(root, i, appPort, apiUrl, false)
    await drive(port, Number(args.warmup), Number(args.connections))
    console.log(`--- warm-up done (${root}; log ${child.log})`)
    appendFileSync(child.log, '--- warm-up done\n')
    await drive(port, Number(args.requests), Number(args.connections))
    await stopChild(child, 15_000)
  }
}

async function main (): Promise<void> {
  if (args.mode === 'summarize') {
    // A dump of an earlier run again: `--dump FILE --requests N`.
    if (args.dump === undefined) throw new Error('--mode summarize needs --dump FILE')
    console.log(`${args.dump}: ${split(dumpSplit(args.dump), Number(args.requests))}`)
    return
  }
  pinSelf('0')
  const api = await startFakeMachinesApi()
  const app = await startApp(dir, '1')
  children.push(app.child)
  try {
    if (args.mode === 'callgrind') await callgrind(app.port, api.url)
    else if (args.mode === 'ab') await ab(app.port, api.url)
    else if (args.mode === 'drive') await driveOnly(app.port, api.url)
    else throw new Error('--mode is callgrind, ab or drive')
  } finally {
    await stopChild(app.child)
    await api.close()
  }
}

await main()
