// What an app Machine knows of the load on each Machine of an elastic pool. The sidecar that
// answers fly-replay never sees the replayed request end (Fly's edge talks to the pool Machine),
// so it combines two sources: the in-flight count each pool Machine's sidecar reports on its
// health endpoint (read over the private network, at most once per `ttlMs`), and the replays
// this sidecar sent there since that report was taken. docs/pools.md has the trade-offs.

/** Timing of the load book; tests shrink it. */
export interface LoadTiming {
  /** A Machine's report is re-read when older than this (and only while requests are placed). */
  readonly loadTtlMs: number
  /** A report older than this is not trusted at all (the Machine stopped or cannot be reached). */
  readonly loadStaleMs: number
  /** A replay no report covers counts as in flight for this long. */
  readonly loadHoldMs: number
  /** One report read's timeout. */
  readonly loadTimeoutMs: number
  /**
   * A replay sent this long before a report was taken may not have reached the Machine when it
   * counted: it is counted on top (an over-count for a moment rather than an overload).
   */
  readonly loadTransitMs: number
}

export const DEFAULT_LOAD_TIMING: LoadTiming = {
  loadTtlMs: 1_000,
  loadStaleMs: 10_000,
  loadHoldMs: 60_000,
  loadTimeoutMs: 1_000,
  loadTransitMs: 1_000,
}

export interface LoadEntry {
  /** The last in-flight count the Machine reported, and when that read started. */
  reported: number
  reportAt: number
  /** When this sidecar replayed requests there, ascending (pruned as they stop counting). */
  sends: number[]
}

/** Index of the first time >= `t` in an ascending list (binary search: a busy pool has many sends). */
function firstAtOrAfter (times: readonly number[], t: number): number {
  let lo = 0
  let hi = times.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((times[mid] as number) < t) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * Pure: the estimated load of one Machine at `now`. A fresh report counts, plus the replays sent
 * since it was taken, or shortly before (`loadTransitMs`: they may not have arrived when it
 * counted); without a fresh report, the replays of the last `loadHoldMs` count. Older sends are in
 * the report already, if they still run.
 */
export function estimateLoad (entry: LoadEntry | undefined, now: number, timing: Pick<LoadTiming, 'loadStaleMs' | 'loadHoldMs' | 'loadTransitMs'>): number {
  if (entry === undefined) return 0
  const fresh = now - entry.reportAt <= timing.loadStaleMs
  const after = fresh ? Math.max(entry.reportAt - timing.loadTransitMs, now - timing.loadHoldMs) : now - timing.loadHoldMs
  return (fresh ? entry.reported : 0) + entry.sends.length - firstAtOrAfter(entry.sends, after)
}

export interface LoadBookOptions {
  readonly timing: LoadTiming
  readonly now: () => number
  /** Reads one Machine's reported in-flight count; rejects when it cannot. */
  readonly read: (id: string, signal: AbortSignal) => Promise<number>
  /** A read failed (logged at debug by the caller). */
  readonly onReadError?: (id: string, err: unknown) => void
}

export interface LoadBook {
  load (id: string): number
  /** This sidecar just replayed a request to `id`. */
  sent (id: string): void
  /** Re-reads, in the background, the reports of these Machines that are older than loadTtlMs. */
  refresh (ids: Iterable<string>): void
  /** The reads of these Machines still under way, if any (bounded by loadTimeoutMs). */
  pending (ids: Iterable<string>): Promise<void> | undefined
  /** A count known otherwise: a Machine the API lists as stopped runs nothing. */
  report (id: string, count: number, at: number): void
  /** Resolves when every read started so far has ended (tests). */
  settled (): Promise<void>
  forget (id: string): void
  close (): void
}

export function createLoadBook (options: LoadBookOptions): LoadBook {
  const { timing, now } = options
  const entries = new Map<string, LoadEntry>()
  const reading = new Map<string, Promise<void>>()
  const closing = new AbortController()
  /** When each Machine was last asked, so a failing one is not asked on every pick. */
  const asked = new Map<string, number>()

  function entryOf (id: string): LoadEntry {
    let e = entries.get(id)
    if (e === undefined) {
      e = { reported: 0, reportAt: Number.NEGATIVE_INFINITY, sends: [] }
      entries.set(id, e)
    }
    return e
  }

  /**
   * Sends older than loadHoldMs never count again (estimateLoad looks no further back). They are
   * cut off in batches, so the work stays constant per send however busy the pool is.
   */
  function prune (e: LoadEntry, at: number): void {
    const old = firstAtOrAfter(e.sends, at - timing.loadHoldMs)
    if (old >= 64 || (old > 0 && old * 2 >= e.sends.length)) e.sends = e.sends.slice(old)
  }

  function readOne (id: string): void {
    const started = now()
    asked.set(id, started)
    const signal = AbortSignal.any([closing.signal, AbortSignal.timeout(timing.loadTimeoutMs)])
    const p = options.read(id, signal).then((count) => {
      const e = entryOf(id)
      // A slower, older read must not overwrite a newer one.
      if (started >= e.reportAt) { e.reported = count; e.reportAt = started }
    }, (err: unknown) => {
      if (!closing.signal.aborted) options.onReadError?.(id, err)
    }).finally(() => { reading.delete(id) })
    reading.set(id, p)
  }

  return {
    load (id) {
      const e = entries.get(id)
      if (e !== undefined) prune(e, now())
      return estimateLoad(e, now(), timing)
    },
    sent (id) {
      entryOf(id).sends.push(now())
    },
    refresh (ids) {
      if (closing.signal.aborted) return
      const at = now()
      for (const id of ids) {
        if (reading.has(id)) continue
        if (at - (asked.get(id) ?? Number.NEGATIVE_INFINITY) < timing.loadTtlMs) continue
        readOne(id)
      }
    },
    pending (ids) {
      const reads: Promise<void>[] = []
      for (const id of ids) {
        const p = reading.get(id)
        if (p !== undefined) reads.push(p)
      }
      return reads.length === 0 ? undefined : Promise.all(reads).then(() => {})
    },
    report (id, count, at) {
      const e = entryOf(id)
      if (at >= e.reportAt) { e.reported = count; e.reportAt = at }
    },
    async settled () {
      await Promise.all([...reading.values()])
    },
    forget (id) {
      entries.delete(id)
      asked.delete(id)
    },
    close () {
      closing.abort()
    },
  }
}
