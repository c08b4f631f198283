// Benchmark parameters and payloads shared by the runner, the checks and the bench app.
import { createHash } from 'node:crypto'

/** How long and how hard each case runs. */
export interface BenchParams {
  /** Interleaved timed rounds per case and target. */
  readonly rounds: number
  /** Seconds per wrk run (whole seconds: wrk takes no fractions). */
  readonly durationS: number
  /** Whole seconds of untimed warm-up per case and target, before round 1. */
  readonly warmupS: number
  /** Connections of the "many connections" cases. */
  readonly connections: number
  /** Concurrent event streams of the streams case. */
  readonly streams: number
  /** Chunks per event stream. */
  readonly streamChunks: number
  /** Milliseconds between chunks of an event stream. */
  readonly streamIntervalMs: number
  /** Idle open streams held to measure memory per stream. */
  readonly idleStreams: number
}

export const FULL: BenchParams = {
  rounds: 5,
  durationS: 3,
  warmupS: 1,
  connections: 64,
  streams: 64,
  streamChunks: 60,
  streamIntervalMs: 50,
  idleStreams: 1000,
}

/** `--quick`: one short round, for smoke checks of the harness itself. */
export const QUICK: BenchParams = {
  rounds: 1,
  durationS: 1,
  warmupS: 1,
  connections: 64,
  streams: 64,
  streamChunks: 20,
  streamIntervalMs: 50,
  idleStreams: 200,
}

export const SMALL_BYTES = 100
export const POST_BYTES = 16 * 1024
export const BIG_BYTES = 16 * 1024 * 1024

/** The ~100 B response of the small GET case. */
export const SMALL_BODY: Buffer = Buffer.from('{"ok":true,"pad":"' + 'x'.repeat(SMALL_BYTES - 20) + '"}')

/** Paths the bench app serves; the sidecar's rule looks only at LIVEWIRE_PATH. */
export const PATHS = {
  small: '/small',
  echo: '/echo',
  big: '/big',
  livewire: '/livewire/update',
  stream: '/livewire/stream',
  hold: '/hold',
  counts: '/_bench/counts',
} as const

/**
 * A deterministic 16 MiB body: a 64 KiB block from a hash chain, repeated. Deterministic so the
 * runner can check the bytes that arrive without talking to the app.
 */
export function bigBody (bytes: number = BIG_BYTES): Buffer {
  const block = Buffer.alloc(64 * 1024)
  let seed = createHash('sha256').update('fly-replay-sidecar bench').digest()
  for (let off = 0; off < block.length; off += seed.length) {
    seed.copy(block, off)
    seed = createHash('sha256').update(seed).digest()
  }
  const out = Buffer.allocUnsafe(bytes)
  for (let off = 0; off < bytes; off += block.length) block.copy(out, off)
  return out
}

/**
 * A Livewire 3 `/livewire/update` payload of exactly `bytes` bytes whose one call is `method`.
 * `process` and `refresh` have the same length, so the replayed and the proxied body are the same
 * size, and the pass-through POST case sends the `refresh` body too.
 */
export function livewireBody (method: string, bytes: number = POST_BYTES): Buffer {
  const make = (pad: number): string => JSON.stringify({
    _token: 'bench0123456789abcdefghijklmnopqrstuvwxyzABCD',
    components: [{
      snapshot: JSON.stringify({ data: { rows: 'r'.repeat(pad) }, memo: { id: 'bench', name: 'jobs' }, checksum: 'c0ffee' }),
      updates: {},
      calls: [{ path: '', method, params: [] }],
    }],
  })
  const base = Buffer.byteLength(make(0))
  if (base > bytes) throw new Error(`a Livewire body cannot be as small as ${bytes} B`)
  const body = Buffer.from(make(bytes - base))
  if (body.length !== bytes) throw new Error(`Livewire body is ${body.length} B, wanted ${bytes}`)
  return body
}

/** Hex sha256 of a buffer. */
export function sha256 (buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex')
}
