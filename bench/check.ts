// Correctness before timing: a target that garbles a body, reorders or buffers a stream, or (the
// sidecar) answers a Livewire process() call with anything but a replay, is reported failed and
// is not timed.
import http from 'node:http'
import { BIG_BYTES, PATHS, SMALL_BODY, bigBody, livewireBody, sha256 } from './_config.ts'
import { BENCH_FLY } from './_machines-api.ts'
import { runStreams } from './_streams.ts'

interface Reply { status: number, headers: http.IncomingHttpHeaders, body: Buffer }

/** One request with a fresh connection; resolves with the whole response. */
export function fetchRaw (url: string, opts: { method?: string, headers?: Record<string, string>, body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers = { ...opts.headers }
    if (opts.body !== undefined) headers['content-length'] = String(opts.body.length)
    const req = http.request(url, { method: opts.method ?? 'GET', headers, agent: false, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`no answer from ${url} in 30 s`)) })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** Headers every Livewire request carries (the rule looks for x-livewire). */
export const LIVEWIRE_HEADERS = { 'content-type': 'application/json', 'x-livewire': 'true' } as const

/** The app's per-path request counters, read from the app itself (never through a target). */
async function appCount (appBase: string, path: string): Promise<number> {
  const r = await fetchRaw(`${appBase}${PATHS.counts}`)
  return (JSON.parse(r.body.toString('utf8')) as Record<string, number>)[path] ?? 0
}

/**
 * Runs every check a target must pass; resolves with the problems found (empty = passed).
 * `sidecar` adds the replay and inspected-but-not-matching checks.
 */
export async function checkTarget (base: string, opts: { appBase: string, sidecar: boolean, streamIntervalMs: number }): Promise<string[]> {
  const problems: string[] = []
  const expect = (ok: boolean, what: string): void => { if (!ok) problems.push(what) }
  try {
    const small = await fetchRaw(`${base}${PATHS.small}`)
    expect(small.status === 200 && small.body.equals(SMALL_BODY), `GET ${PATHS.small}: status ${small.status}, ${small.body.length} B`)

    const post = livewireBody('refresh')
    const echo = await fetchRaw(`${base}${PATHS.echo}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: post })
    expect(echo.status === 200 && sha256(echo.body) === sha256(post) && echo.headers['content-type'] === 'application/json',
      `POST ${PATHS.echo}: status ${echo.status}, echo sha256 ${sha256(echo.body).slice(0, 12)} != ${sha256(post).slice(0, 12)}`)

    const big = await fetchRaw(`${base}${PATHS.big}`)
    const bigSha = sha256(bigBody())
    expect(big.status === 200 && big.body.length === BIG_BYTES && sha256(big.body) === bigSha,
      `GET ${PATHS.big}: status ${big.status}, ${big.body.length} B, sha256 ${sha256(big.body).slice(0, 12)}`)

    const chunks = 10
    const streams = await runStreams(base, 4, chunks, opts.streamIntervalMs)
    for (const e of streams.errors.slice(0, 3)) problems.push(`stream order: ${e}`)
    // Chunks sent 50 ms apart must arrive spread out: a buffering proxy delivers them at once.
    const minSpan = (chunks - 1) * opts.streamIntervalMs * 0.5
    expect(streams.firstStreamSpanMs >= minSpan, `stream buffered: first to last chunk in ${streams.firstStreamSpanMs.toFixed(1)} ms (< ${minSpan})`)

    if (opts.sidecar) {
      const before = await appCount(opts.appBase, PATHS.livewire)
      const replay = await fetchRaw(`${base}${PATHS.livewire}`, { method: 'POST', headers: LIVEWIRE_HEADERS, body: livewireBody('process') })
      const header = String(replay.headers['fly-replay'] ?? '')
      expect(replay.status === 307 && new RegExp(`^instance=${BENCH_FLY.taskerId}(;|$)`).test(header) && /(^|;)state=livewire-process(;|$)/.test(header),
        `replay: status ${replay.status}, fly-replay "${header}", body ${replay.body.toString('utf8').slice(0, 200)}`)
      expect(await appCount(opts.appBase, PATHS.livewire) === before, 'replay: the app saw the replayed request')

      const refresh = livewireBody('refresh')
      const inspected = await fetchRaw(`${base}${PATHS.livewire}`, { method: 'POST', headers: LIVEWIRE_HEADERS, body: refresh })
      expect(inspected.status === 200 && sha256(inspected.body) === sha256(refresh) && inspected.headers['fly-replay'] === undefined,
        `inspected, no match: status ${inspected.status}, echo sha256 ${sha256(inspected.body).slice(0, 12)}, fly-replay ${String(inspected.headers['fly-replay'])}`)
      expect(await appCount(opts.appBase, PATHS.livewire) === before + 1, 'inspected, no match: the app did not see it exactly once')
    }
  } catch (err) {
    problems.push(`check aborted: ${(err as Error).message}`)
  }
  return problems
}
