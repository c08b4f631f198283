// Event-stream clients: concurrent Livewire-style streams with per-chunk delay, and idle open
// streams held to measure memory per stream.
import http from 'node:http'
import { PATHS } from './_config.ts'

/** The outcome of one batch of concurrent streams. */
export interface StreamsResult {
  /** Per-chunk delay (client receive time minus the app's send stamp), ms, sorted ascending. */
  readonly delaysMs: number[]
  /** Problems: missing, reordered or failed streams. Empty when every stream was whole and in order. */
  readonly errors: string[]
  /** Time between the first and last chunk of the first stream, ms: proves chunks were not buffered. */
  readonly firstStreamSpanMs: number
}

const STREAM_REQUEST_BODY = JSON.stringify({ components: [{ calls: [{ method: 'process', params: [] }] }] })

/** Opens `count` streams at once against `base` and collects every chunk's delay. */
export async function runStreams (base: string, count: number, chunks: number, intervalMs: number): Promise<StreamsResult> {
  const delaysMs: number[] = []
  const errors: string[] = []
  let firstStreamSpanMs = NaN
  const url = `${base}${PATHS.stream}?chunks=${chunks}&interval=${intervalMs}`
  const one = (index: number): Promise<void> => new Promise((resolve) => {
    let expected = 0
    let pending = ''
    let firstAt = 0n
    const fail = (why: string): void => { errors.push(`stream ${index}: ${why}`); resolve() }
    const req = http.request(url, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(STREAM_REQUEST_BODY)) },
    }, (res) => {
      if (res.statusCode !== 200) { res.resume(); fail(`status ${res.statusCode}`); return }
      res.setEncoding('utf8')
      res.on('data', (data: string) => {
        const now = process.hrtime.bigint()
        pending += data
        let nl: number
        while ((nl = pending.indexOf('\n')) !== -1) {
          const line = pending.slice(0, nl)
          pending = pending.slice(nl + 1)
          const chunk = JSON.parse(line) as { seq: number, t: string }
          if (chunk.seq !== expected) errors.push(`stream ${index}: chunk ${chunk.seq} arrived when ${expected} was due`)
          expected = chunk.seq + 1
          delaysMs.push(Number(now - BigInt(chunk.t)) / 1e6)
          if (firstAt === 0n) firstAt = now
          if (index === 0 && chunk.seq === chunks - 1) firstStreamSpanMs = Number(now - firstAt) / 1e6
        }
      })
      res.on('end', () => {
        if (expected !== chunks) errors.push(`stream ${index}: ended after ${expected} of ${chunks} chunks`)
        if (pending !== '') errors.push(`stream ${index}: ${pending.length} trailing bytes`)
        resolve()
      })
      res.on('error', (err) => { fail(err.message) })
    })
    req.on('error', (err) => { fail(err.message) })
    req.end(STREAM_REQUEST_BODY)
  })
  await Promise.all(Array.from({ length: count }, (_, i) => one(i)))
  delaysMs.sort((a, b) => a - b)
  return { delaysMs, errors, firstStreamSpanMs }
}

/** The q-quantile (0..1) of an ascending array. */
export function quantile (sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] as number
}

/** Idle streams held open; close() ends them all. */
export interface IdleStreams {
  /** Streams that received their first bytes through the target. */
  readonly opened: number
  /** Why the rest did not, when some did not (e.g. a proxy's upstream connection cap). */
  readonly problem: string | null
  close (): void
}

/**
 * Opens up to `n` streams to the hold endpoint, `batch` at a time (a listen backlog is finite),
 * each waiting for its first bytes through the target. Stops at the first batch in which a stream
 * gets nothing within `waitMs`: a proxy that caps its upstream connections queues the rest.
 */
export async function openIdleStreams (base: string, n: number, batch = 100, waitMs = 5000): Promise<IdleStreams> {
  const reqs: http.ClientRequest[] = []
  let opened = 0
  let problem: string | null = null
  const openOne = (): Promise<boolean> => new Promise((resolve) => {
    let arrived = false
    const req = http.get(`${base}${PATHS.hold}`, { agent: false }, (res) => {
      if (res.statusCode !== 200) { problem ??= `status ${res.statusCode}`; resolve(false); return }
      res.once('data', () => { arrived = true; opened++; req.setTimeout(0); resolve(true) })
      res.on('error', () => { /* destroyed by close() */ })
    })
    req.setTimeout(waitMs, () => { if (!arrived) { problem ??= `no first bytes in ${waitMs} ms`; resolve(false) } })
    req.on('error', (err) => { problem ??= err.message; resolve(false) })
    reqs.push(req)
  })
  for (let done = 0; done < n && problem === null; done += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - done) }, openOne))
  }
  for (const r of reqs) r.setTimeout(0)
  return {
    opened,
    problem: problem === null ? null : `${opened} of ${n} streams got through (${problem})`,
    close: () => { for (const r of reqs) r.destroy() },
  }
}

/**
 * Opens `n` downloads of the 16 MiB body whose clients read the first bytes and then stop
 * reading: what a proxy holds for a slow client shows as its RSS growth (kernel socket buffers
 * are not in RSS). `close()` ends them.
 */
export async function openSlowDownloads (base: string, n: number, waitMs = 5000): Promise<IdleStreams> {
  const reqs: http.ClientRequest[] = []
  let opened = 0
  let problem: string | null = null
  await Promise.all(Array.from({ length: n }, () => new Promise<void>((resolve) => {
    const req = http.get(`${base}${PATHS.big}`, { agent: false }, (res) => {
      if (res.statusCode !== 200) { problem ??= `status ${res.statusCode}`; resolve(); return }
      res.once('data', () => { res.pause(); opened++; req.setTimeout(0); resolve() })
      res.on('error', () => { /* destroyed by close() */ })
    })
    req.setTimeout(waitMs, () => { problem ??= `no first bytes in ${waitMs} ms`; resolve() })
    req.on('error', (err) => { problem ??= err.message; resolve() })
    reqs.push(req)
  })))
  return {
    opened,
    problem: problem === null ? null : `${opened} of ${n} slow downloads got through (${problem})`,
    close: () => { for (const r of reqs) r.destroy() },
  }
}
