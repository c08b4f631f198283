// `fly-replay-sidecar dev`: Fly on one computer. Starts the Machines API emulator, the edge, and
// the app's first Machine (sidecar + app processes); pool Machines the sidecar creates become
// more processes; idle ones stop and are woken on demand. Logs what happens, one line per event.

import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { startMachinesApi } from './machines-api.ts'
import type { FakeMachine, MachinesApi } from './machines-api.ts'
import { startEdge } from './edge.ts'
import type { Edge, EdgeEvent, EdgeFleet } from './edge.ts'
import { createRuntime } from './runtime.ts'
import { createLiveView, LIVE_VIEW_PREFIX } from './live-view.ts'
import type { LiveView } from './live-view.ts'
import type { MachineSpec, Runtime } from './runtime.ts'
import { SidecarError, isSidecarError } from '../errors.ts'
import { loadConfig } from '../config/load.ts'
import { parseDuration } from './edge.ts'
import { MACHINE_ARG } from './machine.ts'
import { localServeNotices } from './local-serve.ts'

/** The edge's port when none is given (what the README tells people to open). */
export const DEFAULT_DEV_PORT = 3000
/** Idle time before a Machine with autostop is stopped (Fly checks every few minutes). */
export const DEFAULT_IDLE_MS = 30_000
const DEFAULT_APP = 'demo'
const DEFAULT_REGION = 'local'
const EVENTS_KEPT = 2_000
const WAKE_POLL_MS = 25

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DEMO_CONFIG = resolve(ROOT, 'examples/demo/routes.yaml')
const DEMO_APP = resolve(ROOT, 'examples/demo/server.ts')

export interface DevOptions {
  /** The edge's port; default 3000 (0 = any free port). */
  readonly port?: number
  readonly host?: string
  /** The sidecar config every Machine uses; default the demo's `examples/demo/routes.yaml`. */
  readonly config?: string
  /** The app command each Machine's sidecar starts; default the demo app. Empty: no app process. */
  readonly appCommand?: readonly string[]
  /** This package's CLI (run as `<cli> dev --emulated-machine ...`); default the source or the running bundle with the current Node. */
  readonly sidecarCommand?: readonly string[]
  /** Fly app name; default `demo`. */
  readonly app?: string
  readonly region?: string
  /** Idle time before an autostop Machine is stopped; default 30 s. */
  readonly idleMs?: number
  /** Extra `[env]` of the first Machine (cloned into pool Machines by the sidecar). */
  readonly env?: Readonly<Record<string, string>>
  /** Whether the first Machine autostops too (default false: one app Machine always runs). */
  readonly autostopApp?: boolean
  /** Readiness limit and kill timeout of each Machine's processes. */
  readonly readyTimeoutMs?: number
  readonly killTimeoutMs?: number
  /** Working directory of the Machines' processes; default the current one. */
  readonly cwd?: string
  /** Where the human-readable log lines go; default stdout. */
  readonly log?: (line: string) => void
  /** Also print every line the Machines' processes write. */
  readonly verbose?: boolean
}

export interface DevEmulator {
  /** The edge: what to open in a browser. */
  readonly url: string
  /** The live view of Machines and requests (served by the edge under /_dev/). */
  readonly liveUrl: string
  readonly live: LiveView
  readonly apiUrl: string
  readonly api: MachinesApi
  readonly runtime: Runtime
  readonly edge: Edge
  /** The id of the first app Machine. */
  readonly mainMachineId: string
  /** The edge's events, oldest first (the last 2,000). */
  readonly events: EdgeEvent[]
  /** Ends every Machine's processes and closes the edge and the API. */
  close (): Promise<void>
}

const time = (): string => new Date().toISOString().slice(11, 23)

/** The sidecar's own CLI: the source file when running from a checkout, else the running bundle. */
function defaultSidecarCommand (): string[] {
  const source = resolve(ROOT, 'src/cli.ts')
  if (existsSync(source)) return [process.execPath, source]
  const self = process.argv[1]
  if (self === undefined) throw new SidecarError('SIDECAR_ERR_EMULATOR_SETUP', ['cannot find the sidecar CLI to run'])
  return [process.execPath, self]
}

/**
 * Starts the emulator and the first app Machine; resolves once that Machine accepts connections.
 * `close()` stops everything it started.
 */
export async function runDev (options: DevOptions = {}): Promise<DevEmulator> {
  const appName = options.app ?? DEFAULT_APP
  const region = options.region ?? DEFAULT_REGION
  const write = options.log ?? ((line: string) => { process.stdout.write(`${line}\n`) })
  const log = (area: string, message: string): void => write(`${time()}  ${area.padEnd(8)} ${message}`)
  const config = resolve(options.config ?? DEMO_CONFIG)
  // Check the config once, as a Machine would read it, before any process starts: its errors
  // (with line:column) then come first instead of from every Machine's failed start.
  const checked = await loadConfig(config, { ...process.env, PORT: '8080', APP_PORT: '8081', METRICS_PORT: '9091', FLY_API_URL: 'http://127.0.0.1:4280', FLY_APP_NAME: options.app ?? DEFAULT_APP, FLY_MACHINE_ID: 'check' })
  const appCommand = options.appCommand ?? (options.config === undefined ? [process.execPath, DEMO_APP] : [])
  // Each Machine's sidecar runs the user's file with the ports and Machines API URL this
  // emulator gives that Machine (src/emulator/machine.ts), so the file needs no edit for `dev`.
  const command = [...(options.sidecarCommand ?? defaultSidecarCommand()), 'dev', MACHINE_ARG, '--config', config, ...(appCommand.length > 0 ? ['--', ...appCommand] : [])]
  const token = `FlyV1 fm2_emulator_${randomBytes(12).toString('hex')}`
  const localServe = localServeNotices((rule) => checked.rules.find((r) => r.name === rule)?.to)
  const events: EdgeEvent[] = []
  const idleMs = options.idleMs ?? DEFAULT_IDLE_MS
  let mainCreated = false
  const live = createLiveView({
    app: appName,
    idleMs,
    states: () => api.machines.values(),
  })
  const startErrors = new Map<string, unknown>()

  let edge: Edge | undefined
  const label = (id: string | undefined): string => {
    if (id === undefined || id === '') return '(none)'
    const m = api.machines.get(id)
    return `${id} (${m?.metadata.sidecar_pool ?? m?.metadata.fly_process_group ?? 'app'})`
  }

  async function apiCall (method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${api.url}/v1/apps/${appName}/machines${path}`, {
      method,
      headers: { authorization: token, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    if (!res.ok) throw new SidecarError('SIDECAR_ERR_EMULATOR_SETUP', [`Machines API ${method} ${path} answered ${res.status}: ${text.slice(0, 200)}`])
    return text === '' ? undefined : JSON.parse(text)
  }

  function specFor (m: FakeMachine): MachineSpec {
    const services = Array.isArray(m.config.services) ? m.config.services as { autostop?: unknown }[] : []
    const autostop = services.some((s) => s.autostop === true || s.autostop === 'stop' || s.autostop === 'suspend')
    const env: Record<string, string> = {
      ...(m.config.env ?? {}),
      // Secrets and the variables Fly sets in every Machine (platform notes §2.7).
      FLY_API_TOKEN: token,
      FLY_API_URL: api.url,
      FLY_APP_NAME: appName,
      FLY_MACHINE_ID: m.id,
      FLY_ALLOC_ID: m.id,
      FLY_REGION: m.region,
      FLY_IMAGE_REF: m.config.image ?? '',
      FLY_MACHINE_VERSION: m.instance_id,
      FLY_PRIVATE_IP: m.private_ip,
      FLY_PROCESS_GROUP: m.metadata.fly_process_group ?? 'app',
    }
    return { id: m.id, env, autostop, label: m.metadata.sidecar_pool ?? 'app' }
  }

  // The hooks run only after a create, by which time `runtime` below exists.
  const api: MachinesApi = await startMachinesApi({
    app: appName,
    token,
    region,
    runtime: {
      onCreate: (m) => {
        log('machines', `created ${label(m.id)} image=${m.config.image ?? '?'}`)
        live.created({
          id: m.id,
          pool: m.metadata.sidecar_pool ?? m.metadata.fly_process_group ?? 'app',
          state: m.state,
          image: m.config.image ?? '',
          region: m.region,
          createdAt: Date.parse(m.created_at),
          autostop: specFor(m).autostop,
          // The first Machine is made by dev itself; the others by a sidecar, inferred by the live view.
          ...(mainCreated ? {} : { createdBy: 'dev' }),
        })
        mainCreated = true
      },
      onStart: async (m) => {
        log('machines', `starting ${label(m.id)}`)
        live.machine({ id: m.id, state: 'starting' })
        const began = Date.now()
        try {
          const url = await runtime.start(specFor(m))
          log('machines', `started ${label(m.id)} at ${url} (pid ${String(runtime.pid(m.id))})`)
          // The runtime arms its idle timer as the Machine starts: the countdown starts here too.
          const autostop = specFor(m).autostop
          live.machine({ id: m.id, state: 'started', startMs: Date.now() - began, idleAt: autostop && theEdgeActive(m.id) === 0 ? Date.now() + idleMs : null })
        } catch (err) {
          // The API marks the Machine failed; say why here, where the user looks.
          startErrors.set(m.id, err)
          log('machines', `${label(m.id)} failed to start: ${err instanceof Error ? err.message : String(err)}`)
          throw err
        }
      },
      onStop: async (m) => {
        log('machines', `stopping ${label(m.id)}`)
        live.machine({ id: m.id, state: m.state, idleAt: null })
        await runtime.stop(m.id)
        log('machines', `stopped ${label(m.id)}`)
      },
      onDestroy: async (m) => {
        live.machine({ id: m.id, state: m.state, idleAt: null })
        await runtime.destroy(m.id)
        log('machines', `destroyed ${label(m.id)}`)
      },
      privateUrl: (m) => runtime.url(m.id),
    },
  })
  const runtime = createRuntime({
    command,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    idleMs,
    ...(options.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: options.readyTimeoutMs }),
    ...(options.killTimeoutMs === undefined ? {} : { killTimeoutMs: options.killTimeoutMs }),
    onIdle: (id) => {
      log('autostop', `${label(id)} had no connection for ${Math.round(idleMs / 100) / 10} s: stopping it`)
      // As Fly Proxy does: the stop goes through the Machines API, so its state is right.
      apiCall('POST', `/${id}/stop`, {}).catch((err: unknown) => log('autostop', `stop of ${label(id)} failed: ${String(err)}`))
    },
    onExit: (id, code, signal, lastOutput) => {
      log('machine', `${label(id)} exited on its own (${signal ?? `code ${String(code)}`}); it is now stopped. Last output:`)
      for (const line of lastOutput.slice(-10)) write(`    ${line}`)
      const m = api.machines.get(id)
      if (m !== undefined && m.state !== 'destroyed' && m.state !== 'destroying') api.setState(id, 'stopped')
    },
    onOutput: (id, line) => {
      // Said without --verbose: a request a rule sends to a pool that was not replayed.
      const notice = localServe(id, line)
      if (notice !== undefined) log('local', `${label(id)}: ${notice}`)
      if (options.verbose === true) write(`    ${id} | ${line}`)
    },
  })

  const fleet: EdgeFleet = {
    list: () => [...api.machines.values()].map((m) => ({ id: m.id, state: m.state, url: m.state === 'started' ? runtime.url(m.id) : undefined })),
    wake: async (id, signal) => {
      let asked = 0
      for (;;) {
        if (signal.aborted) throw new SidecarError('SIDECAR_ERR_EMULATOR_MACHINE_START', [id, 'not started in time'])
        const m = api.machines.get(id)
        if (m === undefined || m.state === 'destroyed' || m.state === 'destroying' || m.state === 'failed') {
          throw new SidecarError('SIDECAR_ERR_EMULATOR_MACHINE_START', [id, `it is ${m?.state ?? 'gone'}`])
        }
        const url = m.state === 'started' ? runtime.url(id) : undefined
        if (url !== undefined) return url
        if ((m.state === 'stopped' || m.state === 'suspended') && Date.now() - asked > 1_000) {
          asked = Date.now()
          log('autostart', `waking ${label(id)}`)
          await apiCall('POST', `/${id}/start`)
        }
        await new Promise((resolve) => setTimeout(resolve, WAKE_POLL_MS))
      }
    },
    activity: (id, active) => {
      runtime.activity(id, active)
      // The same rule as the runtime's idle timer: it runs while a started autostop Machine has no exchange open.
      const m = api.machines.get(id)
      const counting = m !== undefined && m.state === 'started' && active === 0 && specFor(m).autostop
      live.machine({ id, inFlight: active, idleAt: counting ? Date.now() + idleMs : null })
    },
  }
  const theEdgeActive = (id: string): number => edge?.active(id) ?? 0

  const onEvent = (e: EdgeEvent): void => {
    events.push(e)
    if (events.length > EVENTS_KEPT) events.shift()
    live.edgeEvent(e)
    const what = `${e.method} ${e.path}`
    switch (e.type) {
      case 'route': log('edge', `${what} → ${label(e.machine)}`); break
      case 'replay': log('replay', `${what}: ${label(e.machine)} answered fly-replay${e.reason === 'elsewhere' ? ' elsewhere=true' : ''} → ${label(e.target)}${e.state === undefined ? '' : ` state=${e.state}`} (hop ${String(e.hop)})`); break
      case 'wake': log('edge', `${what}: ${label(e.machine)} is ${String(e.reason)}, waking it`); break
      case 'ready': log('edge', `${what}: ${label(e.machine)} woke in ${String(e.ms)} ms`); break
      case 'fallback': log('fallback', `${what}: ${label(e.target)} unreachable (${String(e.reason)}) → back to ${label(e.machine)} with fly-replay-failed`); break
      case 'done': log('edge', `${what} ← ${String(e.status)} from ${label(e.machine)} in ${String(e.ms)} ms, ${String(e.bytes)} bytes`); break
      case 'error': log('edge', `${what} ← ${String(e.status)} ${String(e.reason)}`); break
      case 'served': case 'chunk': break
    }
  }

  const closeAll = async (): Promise<void> => {
    live.close()
    await edge?.close()
    await runtime.close()
    await api.close()
  }

  try {
    edge = await startEdge({ app: appName, region, fleet, onEvent, intercept: live.handle, host: options.host ?? '127.0.0.1', port: options.port ?? DEFAULT_DEV_PORT })
  } catch (err) {
    await closeAll()
    throw new SidecarError('SIDECAR_ERR_EMULATOR_SETUP', [`the edge cannot listen on port ${String(options.port ?? DEFAULT_DEV_PORT)} (${err instanceof Error ? err.message : String(err)})`], { cause: err })
  }
  const theEdge = edge

  // The first app Machine, created the way `fly deploy` would: a process group, services, no pool.
  let mainId: string
  try {
    const created = await apiCall('POST', '', {
      region,
      config: {
        image: `registry.fly.io/${appName}:deployment-dev`,
        env: { ...(options.env ?? {}) },
        guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 },
        services: [{
          protocol: 'tcp',
          internal_port: 8080,
          ports: [{ port: 80, handlers: ['http'] }, { port: 443, handlers: ['tls', 'http'] }],
          autostop: options.autostopApp === true ? 'stop' : 'off',
          autostart: true,
          min_machines_running: options.autostopApp === true ? 0 : 1,
        }],
        restart: { policy: 'on-failure' },
        metadata: { fly_process_group: 'app', fly_platform_version: 'v2' },
      },
    }) as { id: string }
    mainId = created.id
    const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000) + 5_000
    for (;;) {
      const m = api.machines.get(mainId)
      if (m?.state === 'started' && runtime.url(mainId) !== undefined) break
      if (startErrors.has(mainId)) throw startErrors.get(mainId)
      if (m?.state === 'failed' || Date.now() > deadline) throw new SidecarError('SIDECAR_ERR_EMULATOR_MACHINE_START', [mainId, `it is ${m?.state ?? 'gone'}`])
      await new Promise((resolve) => setTimeout(resolve, WAKE_POLL_MS))
    }
  } catch (err) {
    await closeAll()
    throw err
  }

  return {
    url: theEdge.url,
    liveUrl: `${theEdge.url}${LIVE_VIEW_PREFIX}`,
    live,
    apiUrl: api.url,
    api,
    runtime,
    edge: theEdge,
    mainMachineId: mainId,
    events,
    close: closeAll,
  }
}

const USAGE = `usage: fly-replay-sidecar dev [--port 3000] [--host 127.0.0.1] [--config FILE] [--idle 30s]
                               [--app NAME] [--env NAME=VALUE]... [--verbose] [-- app command...]

Runs Fly on this computer: an edge proxy that honours fly-replay, a Machines API, and each
Machine as a sidecar + app process pair. Without --config it runs the demo (examples/demo).
--port defaults to $PORT when set, else 3000.

Each Machine's sidecar reads the config as on Fly, with its own ports and this emulator's
Machines API in place of the file's: it listens on $PORT, metrics on $METRICS_PORT, and the
app must listen on $APP_PORT. The app command runs without a shell, so $APP_PORT reaches it
as those literal characters; to expand it, run a shell:
  fly-replay-sidecar dev -- sh -c 'exec php artisan serve --host=127.0.0.1 --port=$APP_PORT'`

interface DevArgs { options: DevOptions, help: boolean }

/** Where `main` writes (the process's streams, or a test's). */
export interface DevIo {
  readonly stdout: { write (text: string): unknown }
  readonly stderr: { write (text: string): unknown }
}

function parseArgs (argv: readonly string[]): DevArgs {
  const options: { -readonly [K in keyof DevOptions]: DevOptions[K] } = {}
  const env: Record<string, string> = {}
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new SidecarError('SIDECAR_ERR_CLI_USAGE', [`${arg} needs a value`])
      return v
    }
    if (arg === '--') { options.appCommand = argv.slice(i + 1); break }
    switch (arg) {
      case '--port': case '-p': {
        const port = Number(value())
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SidecarError('SIDECAR_ERR_CLI_USAGE', [`--port must be a port number`])
        options.port = port
        break
      }
      case '--host': options.host = value(); break
      case '--config': case '-c': options.config = value(); break
      case '--app': options.app = value(); break
      case '--idle': {
        const ms = parseDuration(value())
        if (ms === undefined) throw new SidecarError('SIDECAR_ERR_CLI_USAGE', [`--idle takes a duration like 30s or 500ms`])
        options.idleMs = ms
        break
      }
      case '--env': case '-e': {
        const pair = value()
        const eq = pair.indexOf('=')
        if (eq <= 0) throw new SidecarError('SIDECAR_ERR_CLI_USAGE', [`--env takes NAME=VALUE`])
        env[pair.slice(0, eq)] = pair.slice(eq + 1)
        break
      }
      case '--verbose': case '-v': options.verbose = true; break
      case '--help': case '-h': help = true; break
      default: throw new SidecarError('SIDECAR_ERR_CLI_USAGE', [`unknown option ${arg}`])
    }
  }
  if (Object.keys(env).length > 0) options.env = env
  return { options, help }
}

/**
 * The `dev` subcommand: runs until SIGINT/SIGTERM, then stops every process it started.
 * Resolves with the exit code: 0 after a clean stop, 1 when it cannot start, 2 on a usage error.
 */
export async function main (argv: readonly string[], io: DevIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let parsed: DevArgs
  try {
    parsed = parseArgs(argv)
  } catch (err) {
    if (!isSidecarError(err)) throw err
    io.stderr.write(`fly-replay-sidecar dev: ${err.message}\n${USAGE}\n`)
    return 2
  }
  const { help } = parsed
  let options = parsed.options
  if (help) { io.stdout.write(`${USAGE}\n`); return 0 }
  // As most local dev servers do: a hosted dev environment tells the port to use in $PORT.
  if (options.port === undefined && process.env.PORT !== undefined && process.env.PORT !== '') {
    const port = Number(process.env.PORT)
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      io.stderr.write(`fly-replay-sidecar dev: PORT must be a port number, got ${JSON.stringify(process.env.PORT)}\n`)
      return 2
    }
    options = { ...options, port }
  }
  let dev: DevEmulator
  try {
    dev = await runDev({ log: (line) => { io.stdout.write(`${line}\n`) }, ...options })
  } catch (err) {
    const message = isSidecarError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)
    io.stderr.write(`fly-replay-sidecar dev: ${message}\n`)
    // Config problems exit 2, like the sidecar's own run and check.
    return isSidecarError(err) && err.code.startsWith('SIDECAR_ERR_CONFIG_') ? 2 : 1
  }
  io.stdout.write([
    '',
    `  fly-replay-sidecar dev: open ${dev.url}`,
    `  live view of Machines and replays: ${dev.liveUrl}`,
    `  Machines API ${dev.apiUrl}, first app Machine ${dev.mainMachineId}`,
    `  idle Machines with autostop stop after ${Math.round((options.idleMs ?? DEFAULT_IDLE_MS) / 100) / 10} s; Ctrl-C stops everything`,
    '',
    '',
  ].join('\n'))
  return await new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) { io.stdout.write(`${signal} again: still stopping Machines (each gets at most its kill timeout)\n`); return }
      stopping = true
      io.stdout.write(`${time()}  ${'dev'.padEnd(8)} ${signal}: stopping every Machine\n`)
      dev.close().then(() => {
        io.stdout.write(`${time()}  ${'dev'.padEnd(8)} stopped\n`)
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        resolve(0)
      }, (err: unknown) => {
        io.stderr.write(`stopping failed: ${String(err)}\n`)
        resolve(1)
      })
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
