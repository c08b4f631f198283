// Two app Machines' sidecars as real processes (test/fixtures/machines/racer.ts) against one fake
// Machines API: each is spawned, waits until it reports ready, then both are sent "go" together.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { Test } from 'tap'
import type { MachinesApi } from '../../src/emulator/machines-api.ts'
import { seedSelf } from '../fixtures/machines/setup.ts'

const RACER = new URL('../fixtures/machines/racer.ts', import.meta.url).pathname

export interface Racer {
  readonly child: ChildProcess
  /** Every JSON line the racer printed, in order. */
  readonly seen: Record<string, unknown>[]
  readonly exited: Promise<number | null>
}

/** Starts one racer per id (each seeded as a started app Machine), and lets them all go at once. */
export async function race (t: Test, api: MachinesApi, ids: readonly string[], env: Record<string, string> = {}): Promise<Racer[]> {
  const racers = ids.map((id) => {
    seedSelf(api, id)
    const child = spawn(process.execPath, [RACER], { env: { ...process.env, API_URL: api.url, SELF_ID: id, ...env }, stdio: ['pipe', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    const seen: Record<string, unknown>[] = []
    const ready = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const msg = JSON.parse(line) as Record<string, unknown>
        seen.push(msg)
        if (msg.ready === true) resolve()
      })
    })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    return { child, seen, ready, exited }
  })
  await Promise.all(racers.map((r) => r.ready))
  for (const r of racers) r.child.stdin?.write('go\n')
  return racers
}
