// A tiny in-memory Fly Machines API for the benchmark: the sidecar's replay case needs a pool
// Machine to name, and counting the calls shows the API stays off the hot path.
import http from 'node:http'

/** The fake's identity: this Machine (the sidecar's own) and the image every Machine runs. */
export const BENCH_FLY = {
  app: 'bench-app',
  machineId: '148e1111aaaa01',
  taskerId: '148e2222bbbb02',
  image: 'registry.fly.io/bench-app:deployment-01',
  region: 'ams',
  token: 'bench-token',
} as const

interface FakeMachine {
  id: string
  name: string
  state: string
  region: string
  instance_id: string
  private_ip: string
  created_at: string
  updated_at: string
  config: {
    image: string
    env: Record<string, string>
    metadata: Record<string, string>
    guest: { cpu_kind: string, cpus: number, memory_mb: number }
    services: unknown[]
  }
}

function machine (id: string, pool: string | null, created: string): FakeMachine {
  const env: Record<string, string> = { PORT: '8080' }
  const metadata: Record<string, string> = {}
  if (pool !== null) { env.SIDECAR_POOL = pool; metadata.sidecar_pool = pool }
  return {
    id,
    name: `bench-${id}`,
    state: 'started',
    region: BENCH_FLY.region,
    instance_id: `01BENCH${id.toUpperCase()}`,
    private_ip: 'fdaa:0:1:a7b:1::2',
    created_at: created,
    updated_at: created,
    config: {
      image: BENCH_FLY.image,
      env,
      metadata,
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
      services: [{ protocol: 'tcp', internal_port: 8080, autostop: 'stop', autostart: true, ports: [{ port: 443, handlers: ['tls', 'http'] }] }],
    },
  }
}

/** A running fake: its base URL, the calls it answered, and close(). */
export interface FakeMachinesApi {
  readonly url: string
  readonly calls: string[]
  close (): Promise<void>
}

/** Serves list/get/create/wait/destroy for one app with this Machine and one started tasker. */
export async function startFakeMachinesApi (): Promise<FakeMachinesApi> {
  const machines = new Map<string, FakeMachine>([
    [BENCH_FLY.machineId, machine(BENCH_FLY.machineId, null, '2026-01-01T00:00:00Z')],
    [BENCH_FLY.taskerId, machine(BENCH_FLY.taskerId, 'tasker', '2026-01-01T00:01:00Z')],
  ])
  const calls: string[] = []
  let created = 0
  const prefix = `/v1/apps/${BENCH_FLY.app}/machines`
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => { chunks.push(c) })
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://api')
      calls.push(`${req.method ?? ''} ${url.pathname}${url.search}`)
      const send = (status: number, body: unknown): void => {
        const text = JSON.stringify(body)
        res.writeHead(status, { 'content-type': 'application/json', 'fly-request-id': `bench-${calls.length}` })
        res.end(text)
      }
      if (req.headers.authorization !== `Bearer ${BENCH_FLY.token}`) { send(401, { error: 'unauthorized' }); return }
      const rest = url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) : null
      if (rest === null) { send(404, { error: 'not found' }); return }
      if (rest === '' || rest === '/') {
        if (req.method === 'GET') {
          const pool = url.searchParams.get('metadata.sidecar_pool')
          send(200, [...machines.values()].filter((m) => pool === null || m.config.metadata.sidecar_pool === pool))
          return
        }
        if (req.method === 'POST') {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { config?: { metadata?: Record<string, string> } }
          const pool = body.config?.metadata?.sidecar_pool ?? null
          const m = machine(`148e3333cccc${String(++created).padStart(2, '0')}`, pool, new Date().toISOString())
          Object.assign(m.config.metadata, body.config?.metadata ?? {})
          machines.set(m.id, m)
          send(200, m)
          return
        }
      }
      const parts = rest.split('/').filter(Boolean)
      const m = machines.get(parts[0] ?? '')
      if (m === undefined) { send(404, { error: 'machine not found' }); return }
      if (parts.length === 1 && req.method === 'GET') { send(200, m); return }
      if (parts.length === 1 && req.method === 'DELETE') { machines.delete(m.id); send(200, { ok: true }); return }
      if (parts[1] === 'wait') { send(200, { ok: true }); return }
      send(404, { error: 'not found' })
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('fake Machines API has no TCP address')
  return {
    url: `http://127.0.0.1:${addr.port}`,
    calls,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }),
  }
}
