// The executable's allocator re-exec, decided by pure functions: when to re-execute, with which
// environment, and which variables the re-executed process drops again before it starts the app.
import t from 'tap'
import { ALLOCATOR_ENV, REEXEC_MARK, ownVariables, reexecEnv } from '../src/executable.ts'

t.test('reexecEnv', async (t) => {
  const cases: { name: string, env: NodeJS.ProcessEnv, want: NodeJS.ProcessEnv | undefined }[] = [
    { name: 'nothing set: re-exec with the variables and the mark', env: { HOME: '/h' }, want: { HOME: '/h', MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536', [REEXEC_MARK]: 'MALLOC_ARENA_MAX,MALLOC_MMAP_THRESHOLD_' } },
    { name: 'the user set one: theirs kept, the other added', env: { MALLOC_ARENA_MAX: '8' }, want: { MALLOC_ARENA_MAX: '8', MALLOC_MMAP_THRESHOLD_: '65536', [REEXEC_MARK]: 'MALLOC_MMAP_THRESHOLD_' } },
    { name: 'the user set both: no re-exec', env: { MALLOC_ARENA_MAX: '8', MALLOC_MMAP_THRESHOLD_: '131072' }, want: undefined },
    { name: 'set to empty by the user counts as set', env: { MALLOC_ARENA_MAX: '', MALLOC_MMAP_THRESHOLD_: '' }, want: undefined },
    { name: 'already re-executed: never again', env: { MALLOC_ARENA_MAX: '2', [REEXEC_MARK]: 'MALLOC_ARENA_MAX' }, want: undefined },
    { name: 'a mark without the variable still stops a loop', env: { [REEXEC_MARK]: '' }, want: undefined },
  ]
  for (const c of cases) t.strictSame(reexecEnv(c.env), c.want, c.name)
  // Only the proxy lives long enough for the allocator to matter; the other commands end at once.
  const argvCases: { argv: string[], reexec: boolean }[] = [
    { argv: [], reexec: true },
    { argv: ['--config', 'c.yaml'], reexec: true },
    { argv: ['--config', 'c.yaml', '--', 'php', 'artisan', 'serve'], reexec: true },
    { argv: ['--', 'check'], reexec: true },
    { argv: ['check'], reexec: false },
    { argv: ['check', '--config', 'c.yaml'], reexec: false },
    { argv: ['explain', '/x'], reexec: false },
    { argv: ['dev'], reexec: false },
    { argv: ['help'], reexec: false },
    { argv: ['--help'], reexec: false },
    { argv: ['-h'], reexec: false },
    { argv: ['--version'], reexec: false },
    { argv: ['-v'], reexec: false },
  ]
  for (const c of argvCases) t.equal(reexecEnv({}, c.argv) !== undefined, c.reexec, `argv ${JSON.stringify(c.argv)}: ${c.reexec ? 're-exec' : 'no re-exec'}`)
  t.strictSame(ALLOCATOR_ENV, { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536' })
})

t.test('ownVariables', async (t) => {
  const cases: { name: string, env: NodeJS.ProcessEnv, want: string[] }[] = [
    { name: 'not re-executed: nothing to drop', env: { MALLOC_ARENA_MAX: '2' }, want: [] },
    { name: 're-executed: the mark and what it names', env: { MALLOC_ARENA_MAX: '2', [REEXEC_MARK]: 'MALLOC_ARENA_MAX' }, want: [REEXEC_MARK, 'MALLOC_ARENA_MAX'] },
    { name: 'not what the user set before', env: { MALLOC_ARENA_MAX: '8', MALLOC_MMAP_THRESHOLD_: '65536', [REEXEC_MARK]: 'MALLOC_MMAP_THRESHOLD_' }, want: [REEXEC_MARK, 'MALLOC_MMAP_THRESHOLD_'] },
    { name: 'a mark naming anything else drops only the mark', env: { PATH: '/bin', [REEXEC_MARK]: 'PATH,HOME' }, want: [REEXEC_MARK] },
  ]
  for (const c of cases) t.strictSame(ownVariables(c.env), c.want, c.name)
  // Round trip: what a re-exec adds is exactly what the re-executed process drops.
  const user = { HOME: '/h', LOG_LEVEL: 'info' }
  const next = reexecEnv(user) as NodeJS.ProcessEnv
  const dropped = ownVariables(next)
  const left = Object.fromEntries(Object.entries(next).filter(([k]) => !dropped.includes(k)))
  t.strictSame(left, user, 'the app gets the user environment back')
})
