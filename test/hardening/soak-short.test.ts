// The short soak (10 s, 64 connections) as CI runs it: the script's own verdict and figures.
// `npm run soak` runs the long one (2 minutes) on its own.
import t from 'tap'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

interface Summary {
  requests: number
  perKind: Record<string, number>
  failures: number
  firstFailures: string[]
  sha256VerifiedAtApp: number
  sha256Mismatches: number
  rssMiB: { first: number, last: number, flat: boolean }
  handles: { first: number, last: number, flat: boolean }
  sidecarExitCode: number | null
  pass: boolean
}

t.test('10 s of mixed traffic over 64 connections: no failure, every body verified, flat RSS and handles', async (t) => {
  const child = spawn(process.execPath, [path.join(root, 'scripts/soak.ts'), '--seconds', '10'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  const line = out.split('\n').find((l) => l.startsWith('SOAK '))
  t.ok(line, `the script printed its summary${line === undefined ? `:\n${out}\n${err}` : ''}`)
  if (line === undefined) return
  const s = JSON.parse(line.slice(5)) as Summary
  t.comment(out.split('\n').filter((l) => !l.startsWith('SOAK ')).join('\n'))
  t.strictSame(s.firstFailures, [], 'no failed request')
  t.equal(s.failures, 0)
  t.equal(s.sha256Mismatches, 0)
  for (const kind of ['get', 'replay', 'livewire', 'upload', 'events', 'websocket']) t.ok((s.perKind[kind] ?? 0) > 0, `some ${kind} traffic (${s.perKind[kind] ?? 0})`)
  t.ok(s.sha256VerifiedAtApp > 0, `${s.sha256VerifiedAtApp} bodies verified at the app`)
  t.ok(s.rssMiB.flat, `RSS ${s.rssMiB.first} → ${s.rssMiB.last} MiB`)
  t.ok(s.handles.flat, `handles ${s.handles.first} → ${s.handles.last}`)
  t.equal(s.sidecarExitCode, 0, 'the sidecar stopped cleanly on SIGTERM')
  t.ok(s.pass)
  t.equal(code, 0)
})
