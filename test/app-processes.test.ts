// Which processes are the app's: the pure decision, table-driven, and the /proc reader on this
// process's own children (a real marked child, an unmarked one, a zombie).
import t from 'tap'
import { spawn } from 'node:child_process'
import { appMembers, readProcessTable, startTimeOf, APP_MARK_VARIABLE, type ProcessEntry } from '../src/app-processes.ts'

const p = (pid: number, ppid: number, pgid: number, extra: Partial<ProcessEntry> = {}): ProcessEntry =>
  ({ pid, ppid, pgid, live: true, marked: false, start: pid, ...extra })

const SELF = 10
const APP = 100
const cases: Array<{ name: string, table: ProcessEntry[], want: Array<[number, boolean]> }> = [
  { name: 'the group, not the sidecar or init', table: [p(1, 0, 1), p(SELF, 1, SELF), p(APP, SELF, APP), p(101, APP, APP)], want: [[APP, true], [101, true]] },
  { name: 'a marked daemon in its own session, and its workers', table: [p(APP, SELF, APP), p(200, 1, 200, { marked: true }), p(201, 200, 200), p(202, 200, 200)], want: [[APP, true], [200, false], [201, false], [202, false]] },
  { name: 'an unmarked descendant that left the group', table: [p(APP, SELF, APP), p(300, APP, 300)], want: [[APP, true], [300, false]] },
  { name: 'descendants of descendants', table: [p(APP, SELF, APP), p(301, APP, 301), p(302, 301, 302), p(303, 302, 303)], want: [[APP, true], [301, false], [302, false], [303, false]] },
  { name: 'zombies are not members, but their live children are', table: [p(APP, SELF, APP, { live: false }), p(401, APP, APP)], want: [[401, true]] },
  { name: 'unrelated processes, even children of init', table: [p(APP, SELF, APP), p(500, 1, 500), p(501, SELF, SELF)], want: [[APP, true]] },
  { name: 'the sidecar is never a member, even if marked', table: [p(SELF, 1, SELF, { marked: true }), p(APP, SELF, APP)], want: [[APP, true]] },
  { name: 'nothing left', table: [p(1, 0, 1), p(SELF, 1, SELF)], want: [] },
  { name: 'a ppid cycle does not loop', table: [p(600, 601, 600, { marked: true }), p(601, 600, 601)], want: [[600, false], [601, false]] },
]
for (const c of cases) {
  t.strictSame(appMembers(c.table, APP, SELF).map((m) => [m.pid, m.inGroup]), c.want, c.name)
  t.ok(appMembers(c.table, APP, SELF).every((m) => m.start === m.pid), `${c.name}: start times kept`)
}

t.test('readProcessTable on real children', async (t) => {
  const value = `test.${process.pid}`
  const marked = spawn('sleep', ['30'], { env: { ...process.env, [APP_MARK_VARIABLE]: value } })
  const forged = spawn('sleep', ['30'], { env: { ...process.env, [APP_MARK_VARIABLE]: `${value}0` } })
  // `sleep 30` never reaps the `true` it inherits from the shell: a zombie for as long as it runs.
  const parent = spawn('sh', ['-c', 'true & exec sleep 30'], { detached: true })
  const plainPid = (): number => forged.pid as number
  t.teardown(() => { marked.kill('SIGKILL'); forged.kill('SIGKILL'); parent.kill('SIGKILL') })
  let table = readProcessTable({ value, fdTargets: [] })
  for (let i = 0; i < 100 && !table.some((e) => e.ppid === parent.pid && !e.live); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    table = readProcessTable({ value, fdTargets: [] })
  }
  const of = (pid: number | undefined): ProcessEntry | undefined => table.find((e) => e.pid === pid)
  t.strictSame(of(marked.pid), { pid: marked.pid, ppid: process.pid, pgid: of(process.pid)?.pgid, live: true, marked: true, start: startTimeOf(marked.pid as number) })
  t.match(of(forged.pid), { live: true, marked: false }, 'a longer value is another mark')
  t.strictSame(of(parent.pid), { pid: parent.pid, ppid: process.pid, pgid: parent.pid, live: true, marked: false, start: startTimeOf(parent.pid as number) })
  t.strictSame(table.filter((e) => e.ppid === parent.pid).map((e) => [e.live, e.marked]), [[false, false]], 'the zombie child')

  // A process older than the app cannot carry its mark: with `since` after it, it is not read.
  const started = startTimeOf(marked.pid as number) as number
  t.type(started, 'number')
  const of2 = (since: number): ProcessEntry | undefined => readProcessTable({ value, fdTargets: [], since }).find((e) => e.pid === marked.pid)
  t.equal(of2(started)?.marked, true, 'started at `since`: read')
  t.equal(of2(started + 1)?.marked, false, 'started before `since`: not read')

  // A process seen as a member before stays one while its pid and start time match.
  const unmarked = readProcessTable({ value: 'other', fdTargets: [] }, new Map([[plainPid(), startTimeOf(plainPid()) as number]]))
  t.equal(unmarked.find((e) => e.pid === plainPid())?.marked, true, 'seen before, same start: marked')
  const reused = readProcessTable({ value: 'other', fdTargets: [] }, new Map([[plainPid(), (startTimeOf(plainPid()) as number) - 1]]))
  t.equal(reused.find((e) => e.pid === plainPid())?.marked, false, 'same pid, another start (a reused pid): not marked')
})
