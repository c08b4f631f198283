// Which processes belong to the app, for stopping all of them (docs/supervision.md). Its process
// group is not enough: a daemon leaves it on purpose (`php-fpm -D` calls setsid(), so with the
// usual `php-fpm -D; exec nginx` start script php-fpm's master and workers are in no group or
// session of the app, and are not its descendants once their launcher exited). So the app is
// started carrying two marks that such a process keeps: an inherited file descriptor (fd 3, on a
// file only the sidecar opened) and an environment variable (some servers overwrite their
// environment block with their process title, as php-fpm and nginx do, but do not close fds).
// A member is a live process in the app's group or carrying a mark, or a descendant of one.
// Linux only (/proc); elsewhere the supervisor falls back to the process group.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

/** The environment variable that marks the app's processes; its value is unique per app start. */
export const APP_MARK_VARIABLE = 'FLY_REPLAY_SIDECAR_APP'
/** The descriptor number the marker file is inherited on. */
export const APP_MARK_FD = 3

export interface ProcessEntry {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
  /** Not a zombie (a zombie is dead: it only waits to be reaped). */
  readonly live: boolean
  /** Holds the marker fd or the marker variable, or was seen as a member before. */
  readonly marked: boolean
  /** Start time, clock ticks since boot: with the pid, it names one process (pids are reused). */
  readonly start: number
}

export interface Member {
  readonly pid: number
  readonly start: number
  /** Whether it is still in the app's process group (a group signal reaches it). */
  readonly inGroup: boolean
}

/**
 * Pure: the live processes of `table` that belong to the app whose group is `pgid` — in the
 * group, or marked, or a descendant of either — without `self` (the sidecar).
 */
export function appMembers (table: readonly ProcessEntry[], pgid: number, self: number): Member[] {
  const children = new Map<number, ProcessEntry[]>()
  for (const p of table) {
    const list = children.get(p.ppid)
    if (list === undefined) children.set(p.ppid, [p])
    else list.push(p)
  }
  const seen = new Set<number>()
  const queue = table.filter((p) => p.pid !== self && (p.pgid === pgid || p.marked))
  for (let i = 0; i < queue.length; i++) {
    const p = queue[i] as ProcessEntry
    if (seen.has(p.pid)) continue
    seen.add(p.pid)
    for (const c of children.get(p.pid) ?? []) if (c.pid !== self) queue.push(c)
  }
  return table
    .filter((p) => p.live && seen.has(p.pid))
    .map((p) => ({ pid: p.pid, start: p.start, inGroup: p.pgid === pgid }))
}

export interface AppMark {
  /** The value of APP_MARK_VARIABLE. */
  readonly value: string
  /** What /proc/<pid>/fd/3 reads as in a marked process (the marker file was unlinked). */
  readonly fdTargets: readonly string[]
  /**
   * The app's start time (/proc stat field 22, clock ticks since boot), when known: a process
   * that started before it cannot carry the mark, so its fd and environment are not read (that
   * reading is most of a scan's cost).
   */
  readonly since?: number
}

/** The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state). */
function statFields (stat: string): string[] {
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** A process's start time in clock ticks since boot; undefined when it is gone. */
export function startTimeOf (pid: number): number | undefined {
  try {
    return Number(statFields(readFileSync(`/proc/${pid}/stat`, 'latin1'))[19])
  } catch {
    return undefined
  }
}

/** One /proc/<pid> entry; undefined when the process vanished or is not readable. */
function readEntry (pid: number, mark: AppMark, needle: Buffer, seen: ReadonlyMap<number, number> | undefined): ProcessEntry | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  const fields = statFields(stat)
  const state = fields[0]
  const live = state !== 'Z' && state !== 'X'
  const start = Number(fields[19])
  let marked = seen?.get(pid) === start
  if (live && !marked && (mark.since === undefined || start >= mark.since)) {
    try {
      marked = mark.fdTargets.includes(readlinkSync(`/proc/${pid}/fd/${APP_MARK_FD}`))
    } catch {}
    if (!marked) {
      try {
        const environ = readFileSync(`/proc/${pid}/environ`)
        marked = environ.includes(needle) || environ.subarray(0, needle.length - 1).equals(needle.subarray(1))
      } catch {}
    }
  }
  return { pid, ppid: Number(fields[1]), pgid: Number(fields[2]), live, marked, start }
}

/**
 * The process table as far as this process may read it (others' fds and environ are skipped).
 * `seen` (pid → start time) marks processes found as members before: a server whose parent
 * closed its fds, that overwrote its environment and whose parent died (supervisord killed under
 * nginx) carries no mark any more, but was a descendant when it was last looked at.
 */
export function readProcessTable (mark: AppMark, seen?: ReadonlyMap<number, number>): ProcessEntry[] {
  let names: string[]
  try {
    names = readdirSync('/proc')
  } catch {
    return []
  }
  // NUL on both sides: the whole variable, not a prefix of a longer value.
  const needle = Buffer.from(`\0${APP_MARK_VARIABLE}=${mark.value}\0`)
  const table: ProcessEntry[] = []
  for (const name of names) {
    const first = name.charCodeAt(0)
    if (first < 48 || first > 57) continue
    const entry = readEntry(Number(name), mark, needle, seen)
    if (entry !== undefined) table.push(entry)
  }
  return table
}
