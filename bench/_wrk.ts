// Drives wrk (one thread, pinned) against a URL and returns its summary as numbers.
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** One wrk run's summary: counts, bytes, and latency percentiles in microseconds. */
export interface WrkResult {
  readonly requests: number
  readonly durationS: number
  readonly bytes: number
  /** connect + read + write + timeout socket errors. */
  readonly socketErrors: number
  /** Responses with status >= 400 (wrk's own rule). */
  readonly statusErrors: number
  readonly p50us: number
  readonly p99us: number
  readonly maxUs: number
}

/** What to send: method, path, extra headers and an optional body file. */
export interface WrkRequest {
  readonly method: 'GET' | 'POST'
  readonly path: string
  readonly headers?: Readonly<Record<string, string>>
  readonly bodyFile?: string
}

// wrk's Lua `done` hook prints one JSON line the runner can parse; the body is read from a file
// once at start-up so every request sends the same bytes.
function luaScript (req: WrkRequest): string {
  const lines = [`wrk.method = "${req.method}"`]
  if (req.bodyFile !== undefined) {
    lines.push(`local f = assert(io.open("${req.bodyFile}", "rb"))`, 'wrk.body = f:read("*a")', 'f:close()')
  }
  for (const [k, v] of Object.entries(req.headers ?? {})) lines.push(`wrk.headers["${k}"] = "${v}"`)
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format(\'BENCHJSON {"requests":%d,"duration":%d,"bytes":%d,"socket":%d,"status":%d,"p50":%d,"p99":%d,"max":%d}\\n\',',
    '    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,',
    '    latency:percentile(50), latency:percentile(99), latency.max))',
    'end'
  )
  return lines.join('\n') + '\n'
}

/** Writes the Lua script for a request shape; returns its path. */
export function writeWrkScript (dir: string, name: string, req: WrkRequest): string {
  const file = join(dir, `${name}.lua`)
  writeFileSync(file, luaScript(req))
  return file
}

/** Runs `wrk -t1 -c<connections> -d<seconds>s` with a script, pinned to `cpu` when given. */
export function runWrk (opts: {
  readonly url: string
  readonly script: string
  readonly connections: number
  readonly durationS: number
  readonly cpu: string | null
}): Promise<WrkResult> {
  const wrkArgs = ['-t1', `-c${opts.connections}`, `-d${opts.durationS}s`, '--timeout', '30s', '-s', opts.script, opts.url]
  const [file, args] = opts.cpu === null ? ['wrk', wrkArgs] : ['taskset', ['-c', opts.cpu, 'wrk', ...wrkArgs]]
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding: 'utf8', timeout: (opts.durationS + 60) * 1000 }, (err, stdout, stderr) => {
      if (err !== null) { reject(new Error(`wrk failed: ${err.message}\n${stderr}`)); return }
      const line = stdout.split('\n').find((l) => l.startsWith('BENCHJSON '))
      if (line === undefined) { reject(new Error(`wrk printed no summary:\n${stdout}\n${stderr}`)); return }
      const j = JSON.parse(line.slice('BENCHJSON '.length)) as Record<string, number>
      resolve({
        requests: j.requests ?? 0,
        durationS: (j.duration ?? 0) / 1e6,
        bytes: j.bytes ?? 0,
        socketErrors: j.socket ?? 0,
        statusErrors: j.status ?? 0,
        p50us: j.p50 ?? 0,
        p99us: j.p99 ?? 0,
        maxUs: j.max ?? 0,
      })
    })
  })
}
