// What `dev` says when a request a rule sends to a pool is served where it arrived, read from the
// sidecar's own JSON log lines (the lines below are as the sidecar writes them).
import t from 'tap'
import { localServeNotices } from '../../src/emulator/local-serve.ts'

const POOLS: Record<string, string> = { 'livewire-process': 'tasker', report: 'reports' }
const poolOf = (rule: string): string | undefined => POOLS[rule]

const request = (fields: Record<string, unknown>): string => JSON.stringify({ level: 'info', time: 1, pid: 1, hostname: 'vm', method: 'POST', url: '/livewire/update', ...fields, msg: 'request' })
const LOOKUP_FAILED = JSON.stringify({ level: 'warn', time: 1, component: 'machines', pool: 'tasker', err: { type: 'SidecarError', message: 'Machines API list failed: getaddrinfo ENOTFOUND _api.internal', stack: '...' }, msg: 'pool machine lookup failed' })
const RETRYING = JSON.stringify({ level: 'warn', time: 1, component: 'machines', op: 'list', code: 'SIDECAR_ERR_MACHINES_NETWORK', attempt: 1, delayMs: 233, msg: 'machines api call failed, retrying' })
const NO_TOKEN = JSON.stringify({ level: 'warn', time: 1, component: 'machines', pools: ['tasker'], msg: 'no fly api token: pools are unavailable' })

t.test('each line sequence, and what dev prints for its last line', async (t) => {
  const cases: { name: string, lines: string[], says: string | undefined }[] = [
    {
      name: 'the API lookup failed: the reason is the failure, which --verbose alone used to show',
      lines: [RETRYING, LOOKUP_FAILED, request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })],
      says: 'POST /livewire/update served here, not replayed to pool tasker (rule livewire-process): no tasker Machine could be had, and the pool\'s unavailable is local: pool machine lookup failed: Machines API list failed: getaddrinfo ENOTFOUND _api.internal',
    },
    {
      name: 'a problem without a pool applies to every pool',
      lines: [NO_TOKEN, request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })],
      says: 'POST /livewire/update served here, not replayed to pool tasker (rule livewire-process): no tasker Machine could be had, and the pool\'s unavailable is local: no fly api token: pools are unavailable',
    },
    {
      name: 'only a retry seen so far: its error code',
      lines: [RETRYING, request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })],
      says: 'POST /livewire/update served here, not replayed to pool tasker (rule livewire-process): no tasker Machine could be had, and the pool\'s unavailable is local: machines api call failed, retrying: SIDECAR_ERR_MACHINES_NETWORK',
    },
    {
      name: 'no problem logged (e.g. LOG_LEVEL=error): points at --verbose',
      lines: [request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })],
      says: 'POST /livewire/update served here, not replayed to pool tasker (rule livewire-process): no tasker Machine could be had, and the pool\'s unavailable is local: run with --verbose to see the Machine\'s log',
    },
    {
      name: 'a replay to the pool clears its old problem',
      lines: [LOOKUP_FAILED, request({ decision: 'replay', rule: 'livewire-process', pool: 'tasker', machine: 'm1' }), request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })],
      says: 'POST /livewire/update served here, not replayed to pool tasker (rule livewire-process): no tasker Machine could be had, and the pool\'s unavailable is local: run with --verbose to see the Machine\'s log',
    },
    {
      name: 'a problem of another pool is not the reason',
      lines: [LOOKUP_FAILED, request({ decision: 'local', reason: 'unavailable', rule: 'report', url: '/reports' })],
      says: 'POST /reports served here, not replayed to pool reports (rule report): no reports Machine could be had, and the pool\'s unavailable is local: run with --verbose to see the Machine\'s log',
    },
    {
      name: 'oversize',
      lines: [request({ decision: 'local', reason: 'oversize', rule: 'report', url: '/reports' })],
      says: 'POST /reports served here, not replayed to pool reports (rule report): its body cannot be replayed (chunked, or over 1 MiB) and the pool\'s oversize is local',
    },
    {
      name: 'a rule whose pool a reload removed',
      lines: [request({ decision: 'local', reason: 'no-pool', rule: 'gone' })],
      says: 'POST /livewire/update served here, not replayed to pool (a pool) (rule gone): pool (a pool) is not in the config',
    },
    { name: 'a replay says nothing', lines: [request({ decision: 'replay', rule: 'livewire-process', pool: 'tasker', machine: 'm1' })], says: undefined },
    { name: 'a replayed request on the tasker', lines: [request({ decision: 'local', reason: 'replayed' })], says: undefined },
    { name: 'the tasker serving its own rule', lines: [request({ decision: 'local', reason: 'same-pool', rule: 'livewire-process' })], says: undefined },
    { name: 'a fallback (the edge reports it)', lines: [request({ decision: 'local', reason: 'fallback' })], says: undefined },
    { name: 'no rule matched', lines: [request({ decision: 'local', reason: 'not-on-fly' })], says: undefined },
    { name: 'the app\'s own output', lines: ['demo app (app) on 127.0.0.1:3922', '{not json', '[1,2]', 'null'], says: undefined },
    { name: 'a machines info line is no problem', lines: [JSON.stringify({ level: 'info', component: 'machines', pool: 'tasker', msg: 'pool machine created' })], says: undefined },
  ]
  for (const c of cases) {
    const read = localServeNotices(poolOf)
    const said = c.lines.map((line) => read('m0', line))
    t.strictSame(said.slice(0, -1), said.slice(0, -1).map(() => undefined), `${c.name}: earlier lines say nothing`)
    t.equal(said.at(-1), c.says, c.name)
  }
})

t.test('each Machine keeps its own problems', async (t) => {
  const read = localServeNotices(poolOf)
  t.equal(read('a', LOOKUP_FAILED), undefined)
  t.match(read('b', request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })), /run with --verbose/)
  t.match(read('a', request({ decision: 'local', reason: 'unavailable', rule: 'livewire-process' })), /ENOTFOUND _api\.internal$/)
})
