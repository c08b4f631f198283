// Shared by the hardening tests: an in-process sidecar on Fly (FLY_* set, stub pools) whose log
// lines are captured, raw-socket exchanges that can drip bytes, and the leak and
// unhandled-rejection checks every fault test ends with.
import type { Test } from 'tap'
import net from 'node:net'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { parseConfig } from '../../src/config/load.ts'
import { REDACT_PATHS } from '../../src/log.ts'
import { startSidecar, type Sidecar, type SidecarOptions } from '../../src/sidecar.ts'
import type { PoolMachines, PoolPick } from '../../src/machines/types.ts'
import type { Config } from '../../src/config/types.ts'
import type { Logger } from 'pino'

export const TOKEN = 'FlyV1 fm2_hardening-secret-token-5f1c9a'
export const FLY_ENV: Readonly<Record<string, string>> = {
  FLY_APP_NAME: 'demo',
  FLY_MACHINE_ID: 'web-1',
  FLY_REGION: 'ams',
  FLY_IMAGE_REF: 'registry.fly.io/demo:deployment-1',
  FLY_API_TOKEN: TOKEN,
}

/** Rules used by most hardening tests: one body rule, one path rule. */
export const RULES = `rules:
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      json:
        components[*].calls[*].method: process
    to: tasker
  - name: form-process
    match:
      method: POST
      path: /form
      form:
        action: process
    to: tasker
  - name: reports
    match:
      path: /reports/**
    to: tasker
`

export function configYaml (opts: { appUrl: string, extra?: string, rules?: string, apiUrl?: string, metrics?: boolean, readyTimeout?: string, privateUrl?: string }): string {
  return `listen: 127.0.0.1:0
app:
  url: ${opts.appUrl}
  ready-timeout: ${opts.readyTimeout ?? '1s'}
  drain-timeout: 1s
  stop-timeout: 500ms
metrics: ${opts.metrics === true ? '\n  listen: 127.0.0.1:0' : 'false'}
fly:
  replay-timeout: 30s
  private-url: ${opts.privateUrl ?? 'http://127.0.0.1:1'}
${opts.apiUrl === undefined ? '' : `  api-url: ${opts.apiUrl}\n`}pools:
  tasker:
    size: 1
${opts.extra ?? ''}
${opts.rules ?? RULES}`
}

export interface StubPools extends PoolMachines {
  readonly picks: string[]
  readonly failed: string[]
}

export function stubPools (pick: (pool: string) => PoolPick = () => ({ ok: true, machineId: 'tasker-1' })): StubPools {
  const picks: string[] = []
  const failed: string[] = []
  return {
    picks,
    failed,
    pick: async (pool) => { picks.push(pool); return pick(pool) },
    reportFailed: (pool, id) => { failed.push(`${pool}/${id}`) },
    snapshot: () => [],
    close: async () => {},
  }
}

export interface Started {
  readonly sidecar: Sidecar
  readonly port: number
  /** Every log line written so far, parsed. */
  readonly logs: () => Record<string, unknown>[]
  /** The raw log text. */
  readonly logText: () => string
}

/** Starts the sidecar in-process with the production logger settings, capturing its lines. */
export async function startHardened (t: Test, opts: {
  appUrl: string
  yaml?: string
  extra?: string
  rules?: string
  apiUrl?: string
  metrics?: boolean
  readyTimeout?: string
  /** fly.private-url (where `oversize: forward` sends a request); default a refusing port. */
  privateUrl?: string
  env?: Record<string, string>
  /** A PoolMachines, a factory given the parsed config and logger, or null for the real client. */
  pools?: PoolMachines | ((config: Config, logger: Logger) => PoolMachines) | null
  file?: string
  sidecar?: Partial<SidecarOptions>
}): Promise<Started> {
  let text = ''
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) { text += chunk.toString(); cb() },
  })
  // Same redaction as src/log.ts's createLogger, at debug so every line a user could enable is checked.
  const logger = pino({ level: 'debug', redact: { paths: [...REDACT_PATHS], censor: '[redacted]' }, serializers: { err: pino.stdSerializers.errWithCause } }, sink)
  const env = { ...FLY_ENV, ...opts.env }
  const yaml = opts.yaml ?? configYaml({
    appUrl: opts.appUrl,
    ...(opts.extra === undefined ? {} : { extra: opts.extra }),
    ...(opts.rules === undefined ? {} : { rules: opts.rules }),
    ...(opts.apiUrl === undefined ? {} : { apiUrl: opts.apiUrl }),
    ...(opts.metrics === undefined ? {} : { metrics: opts.metrics }),
    ...(opts.readyTimeout === undefined ? {} : { readyTimeout: opts.readyTimeout }),
    ...(opts.privateUrl === undefined ? {} : { privateUrl: opts.privateUrl }),
  })
  const config = parseConfig(yaml, opts.file ?? '/tmp/hardening-routes.yaml', env)
  const sidecar = await startSidecar({
    config,
    logger,
    env,
    ...(opts.pools === null ? {} : { pools: typeof opts.pools === 'function' ? opts.pools(config, logger) : opts.pools ?? stubPools() }),
    ...opts.sidecar,
  })
  t.teardown(() => sidecar.shutdown())
  return {
    sidecar,
    port: sidecar.address.port,
    logText: () => text,
    logs: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

export interface RawResult {
  /** Everything the server sent, as latin1 text. */
  readonly data: string
  /** The server closed (FIN or RST) before `waitMs` ran out. */
  readonly closed: boolean
  readonly ms: number
}

/**
 * Opens a raw connection, writes `parts` (each after `gapMs`), optionally half-closes, and
 * collects whatever comes back until the server closes or `waitMs` passes.
 */
export async function rawExchange (port: number, parts: readonly (string | Buffer)[], opts: { gapMs?: number, end?: boolean, waitMs?: number } = {}): Promise<RawResult> {
  const started = Date.now()
  const sock = net.connect(port, '127.0.0.1')
  sock.on('error', () => {})
  let data = ''
  let closed = false
  sock.on('data', (c: Buffer) => { data += c.toString('latin1') })
  const closedP = new Promise<void>((resolve) => { sock.once('close', () => { closed = true; resolve() }) })
  await new Promise<void>((resolve) => { sock.once('connect', resolve); sock.once('close', resolve) })
  for (const [i, part] of parts.entries()) {
    if (closed) break
    if (i > 0 && (opts.gapMs ?? 0) > 0) await sleep(opts.gapMs)
    sock.write(part)
  }
  if (opts.end === true && !closed) sock.end()
  await Promise.race([closedP, sleep(opts.waitMs ?? 2000)])
  sock.destroy()
  return { data, closed, ms: Date.now() - started }
}

/** The status code of the first response in raw bytes, or 0 when there is none. */
export function statusOf (raw: string): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(raw)
  return m === null ? 0 : Number(m[1])
}

/** Counts of process.getActiveResourcesInfo() by kind. */
export function resources (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}

/**
 * Records unhandled rejections and the active handles now; at teardown time `check()` asserts no
 * rejection happened and that sockets and timers are back to where they were (polling a little,
 * since closes complete on the next ticks).
 */
export function watchLeaks (t: Test): { check: (what: string) => Promise<void> } {
  const rejections: unknown[] = []
  const onRejection = (reason: unknown): void => { rejections.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })
  const before = resources()
  const kinds = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'PipeWrap', 'ProcessWrap'] as const
  return {
    async check (what) {
      let after = resources()
      for (let i = 0; i < 100; i++) {
        if (kinds.every((k) => (after[k] ?? 0) <= (before[k] ?? 0))) break
        await sleep(20)
        after = resources()
      }
      t.strictSame(rejections, [], `${what}: no unhandled rejection`)
      for (const k of kinds) t.ok((after[k] ?? 0) <= (before[k] ?? 0), `${what}: ${k} ${before[k] ?? 0} before, ${after[k] ?? 0} after`)
    },
  }
}
