// The load estimate of an elastic pool's Machine: reports, replays sent since, transit, hold and
// staleness (table-driven), and the book's re-reading: at most once per TTL, a failed read does
// not count, an older read never overwrites a newer one.
import t from 'tap'
import { createLoadBook, estimateLoad, type LoadEntry, type LoadTiming } from '../../src/machines/load.ts'

const TIMING: LoadTiming = { loadTtlMs: 1_000, loadStaleMs: 10_000, loadHoldMs: 60_000, loadTimeoutMs: 1_000, loadTransitMs: 500 }

t.test('estimateLoad', async (t) => {
  const NOW = 1_000_000
  const cases: { name: string, entry: LoadEntry | undefined, want: number }[] = [
    { name: 'never seen', entry: undefined, want: 0 },
    { name: 'a fresh report alone', entry: { reported: 3, reportAt: NOW - 2_000, sends: [] }, want: 3 },
    { name: 'plus the replays sent since', entry: { reported: 3, reportAt: NOW - 2_000, sends: [NOW - 1_000, NOW] }, want: 5 },
    { name: 'a replay just before the report may not have arrived: counted', entry: { reported: 1, reportAt: NOW - 2_000, sends: [NOW - 2_400] }, want: 2 },
    { name: 'older replays are in the report already', entry: { reported: 1, reportAt: NOW - 2_000, sends: [NOW - 2_600] }, want: 1 },
    { name: 'a stale report is ignored; replays of the hold time count', entry: { reported: 7, reportAt: NOW - 10_001, sends: [NOW - 59_000, NOW - 20_000] }, want: 2 },
    { name: 'beyond the hold time a replay no longer counts', entry: { reported: 0, reportAt: Number.NEGATIVE_INFINITY, sends: [NOW - 60_001, NOW - 1] }, want: 1 },
    { name: 'a report of 0 after a burst: only what came after it', entry: { reported: 0, reportAt: NOW - 5_000, sends: [NOW - 9_000, NOW - 8_000, NOW - 100] }, want: 1 },
  ]
  for (const c of cases) t.equal(estimateLoad(c.entry, NOW, TIMING), c.want, c.name)
})

t.test('the book reads each Machine at most once per TTL, in the background', async (t) => {
  let clock = 0
  const reads: string[] = []
  const answers = new Map<string, number>([['a', 2], ['b', 0]])
  const book = createLoadBook({
    timing: TIMING,
    now: () => clock,
    read: async (id) => {
      reads.push(id)
      const n = answers.get(id)
      if (n === undefined) throw new Error('unreachable')
      return n
    },
  })
  t.teardown(() => book.close())
  book.sent('a')
  t.equal(book.load('a'), 1, 'before any report: the replay counts')
  book.refresh(['a', 'b', 'c'])
  book.refresh(['a', 'b', 'c'])
  await book.settled()
  t.strictSame(reads, ['a', 'b', 'c'], 'one read each, however often asked')
  t.equal(book.load('a'), 3, 'the report (2) plus the replay sent in transit')
  t.equal(book.load('c'), 0, 'an unreachable Machine with no replays')
  clock = 999
  book.refresh(['a'])
  t.equal(reads.length, 3, 'not again within the TTL')
  clock = 1_000
  answers.set('a', 1)
  book.refresh(['a'])
  await book.settled()
  t.equal(reads.length, 4)
  t.equal(book.load('a'), 1, 'the new report; the replay is older than it and its transit')
  book.forget('a')
  t.equal(book.load('a'), 0, 'forgotten')
})

t.test('a slow old read never overwrites a newer report', async (t) => {
  let clock = 0
  const pending: ((n: number) => void)[] = []
  const book = createLoadBook({ timing: { ...TIMING, loadTtlMs: 0 }, now: () => clock, read: async () => await new Promise<number>((resolve) => pending.push(resolve)) })
  t.teardown(() => book.close())
  book.refresh(['a'])
  clock = 10
  const first = pending.shift()
  first?.(0)
  await book.settled()
  book.refresh(['a'])
  const second = pending.shift()
  clock = 20
  second?.(4)
  await book.settled()
  t.equal(book.load('a'), 4)
  // An answer of an earlier read arriving late (simulated by a third read started before 10).
  clock = 5
  book.refresh(['a'])
  clock = 30
  pending.shift()?.(9)
  await book.settled()
  t.equal(book.load('a'), 4, 'the report taken at 10 stays')
})

t.test('pending: the reads under way, so a create can wait for them; report: a count known otherwise', async (t) => {
  let clock = 0
  let release: (n: number) => void = () => {}
  const book = createLoadBook({ timing: TIMING, now: () => clock, read: async () => await new Promise<number>((resolve) => { release = resolve }) })
  t.teardown(() => book.close())
  t.equal(book.pending(['a']), undefined, 'nothing read yet')
  book.sent('a')
  clock = 600
  book.refresh(['a'])
  const pending = book.pending(['a', 'b'])
  t.ok(pending !== undefined, 'a read of a is under way')
  release(0)
  await pending
  t.equal(book.load('a'), 0, 'the report taken at 600 covers the replay sent at 0 (transit 500)')
  t.equal(book.pending(['a']), undefined, 'done')
  book.sent('b'); book.sent('b')
  book.report('b', 0, 300)
  t.equal(book.load('b'), 2, 'replays within the transit time before a stopped listing still count')
  book.report('b', 0, 1_200)
  t.equal(book.load('b'), 0, 'a Machine listed stopped later runs nothing')
})

t.test('a busy pool: many sends are counted and cut off correctly', async (t) => {
  let clock = 0
  const book = createLoadBook({ timing: { ...TIMING, loadHoldMs: 1_000 }, now: () => clock, read: async () => 0 })
  t.teardown(() => book.close())
  for (let i = 0; i < 5_000; i++) { clock = i; book.sent('a') }
  // At 4,999 the sends of 3,999..4,999 are within the hold time.
  t.equal(book.load('a'), 1_001)
  clock = 5_500
  t.equal(book.load('a'), 500, 'those of 4,500..4,999')
  clock = 10_000
  t.equal(book.load('a'), 0)
})
