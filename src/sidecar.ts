// Start and stop of the whole sidecar: config → metrics → pool Machines → forwarder → server
// (bound at once) → the app child. Owns the shutdown order of contract §2: stop accepting,
// drain in-flight requests up to app.drain-timeout, stop the app's process group, exit with
// the app's code. Also owns config reload (SIGHUP or a change of the file).
import { watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Config } from './config/types.ts'
import { loadConfig } from './config/load.ts'
import { buildRouting, type Routing } from './request-handler.ts'
import { createServer, type SidecarServer } from './server.ts'
import { createForwarder } from './proxy/forward.ts'
import { createPoolMachines } from './machines/pool.ts'
import type { PoolMachines } from './machines/types.ts'
import type { SidecarMetrics } from './metrics.ts'
import { superviseApp, type AppExit, type Supervisor } from './supervisor.ts'
import { appEnvironment } from './app-env.ts'
import { isSidecarError } from './errors.ts'

const RELOAD_DEBOUNCE_MS = 100

export interface SidecarOptions {
  readonly config: Config
  readonly logger: Logger
  /** The app command and its arguments (after `--`); absent = the app is started elsewhere. */
  readonly command?: readonly string[]
  readonly env?: NodeJS.ProcessEnv
  /** Reload when the config file changes (SIGHUP always reloads). */
  readonly watchConfig?: boolean
  /** Replaces the Machines API client (tests, embedding). */
  readonly pools?: PoolMachines
  /** Timeouts that are not in the config file; the defaults suit production, tests shorten them. */
  readonly timeouts?: Partial<SidecarTimeouts>
  /** Applied to every reloaded config as the caller applied it to `config` (the emulator's per-Machine ports). */
  readonly adjust?: (config: Config) => Config
}

export interface SidecarTimeouts {
  /** A client's request headers must all arrive within this, else 408 (slowloris). Default 60 s. */
  readonly clientHeadersMs: number
  /** A body read for body rules must arrive within this, else 408. Default 60 s. */
  readonly inspectBodyMs: number
  /** The app must send its response headers within this, else 504. Default 300 s. */
  readonly appHeadersMs: number
}

export interface Sidecar {
  readonly address: AddressInfo
  readonly metricsPort: number | undefined
  /** Resolves with the process exit code once the sidecar has stopped (by signal or because the app exited). */
  readonly done: Promise<number>
  /** SIGTERM/SIGINT behaviour: drain, stop the app with `signal`, resolve with the exit code. */
  shutdown (signal?: NodeJS.Signals): Promise<number>
  /** Forwards a signal to the app's process group (SIGQUIT, SIGHUP). */
  forward (signal: NodeJS.Signals): void
  /** Re-reads the config file; keeps the old rules when the new file is invalid. */
  reload (): Promise<boolean>
  routing (): Routing
}

function delay (ms: number): Promise<void> {
  return new Promise((resolve) => { setTimeout(resolve, ms).unref() })
}

export async function startSidecar (options: SidecarOptions): Promise<Sidecar> {
  const { logger } = options
  const env = options.env ?? process.env
  let routing = buildRouting(options.config)
  const config = options.config

  // prom-client (and the cluster, v8 and perf_hooks modules it loads) only when metrics are on.
  const metricsCode = config.metrics === null ? undefined : await import('./metrics.ts')
  const metrics: SidecarMetrics | undefined = metricsCode?.createMetrics()
  const pools = options.pools ?? createPoolMachines({
    config,
    logger: logger.child({ component: 'machines' }),
    ...(metrics === undefined
      ? {}
      : {
          hooks: {
            onCall: (op: string, outcome: string, seconds: number) => metrics.machinesCall(op, outcome, seconds),
            onCreated: (pool: string) => metrics.poolMachineCreated(pool),
            onReplaced: (pool: string) => metrics.poolMachineReplaced(pool),
            onOverflow: (pool: string) => metrics.poolOverflow(pool),
            onScaledDown: (pool: string) => metrics.poolMachineScaledDown(pool),
          },
        }),
  })
  metrics?.readPoolMachines(() => pools.snapshot())
  const forwarder = createForwarder({
    origin: config.app.url,
    readyTimeoutMs: config.app.readyTimeoutMs,
    ...(options.timeouts?.appHeadersMs === undefined ? {} : { headersTimeoutMs: options.timeouts.appHeadersMs }),
    logger: logger.child({ component: 'proxy' }),
    ...(metrics === undefined
      ? {}
      : { onUpstreamError: (code: string) => metrics.upstreamError(code), onStream: (d: 1 | -1) => metrics.stream(d) }),
  })
  const server: SidecarServer = createServer({
    logger,
    forwarder,
    pools,
    metrics,
    routing: () => routing,
    ...(options.timeouts?.clientHeadersMs === undefined ? {} : { headersTimeoutMs: options.timeouts.clientHeadersMs }),
    ...(options.timeouts?.inspectBodyMs === undefined ? {} : { inspectBodyTimeoutMs: options.timeouts.inspectBodyMs }),
  })
  // Contract §2: the port is bound at once, before the app is ready; early requests wait in
  // the forwarder for the app's port.
  const address = await server.listen(config.listen.host, config.listen.port)
  logger.info({ address: `${address.address}:${address.port}`, app: config.app.url, pool: config.pool }, 'listening')
  if (!routing.onFly) logger.info('not on Fly (no FLY_APP_NAME or FLY_MACHINE_ID): every request is served here')

  let metricsServer: { port: number, close (): Promise<void> } | undefined
  if (metricsCode !== undefined && metrics !== undefined && config.metrics !== null) {
    metricsServer = await metricsCode.startMetricsServer(config.metrics, metrics, logger)
  }

  let supervisor: Supervisor | undefined
  if (options.command !== undefined && options.command.length > 0) {
    const [command, ...args] = options.command
    supervisor = superviseApp({ command: command as string, args, env: appEnvironment(env, config), logger: logger.child({ component: 'app' }) })
  }

  let watcher: FSWatcher | undefined
  let stopping: Promise<number> | undefined
  let resolveDone: (code: number) => void = () => {}
  const done = new Promise<number>((resolve) => { resolveDone = resolve })

  async function reload (): Promise<boolean> {
    try {
      const loaded = await loadConfig(config.file, env)
      const next = options.adjust === undefined ? loaded : options.adjust(loaded)
      routing = buildRouting(next)
      logger.info({ rules: next.rules.length, file: config.file }, 'config reloaded')
      return true
    } catch (err) {
      const problems = isSidecarError(err) ? err.details?.problems : undefined
      logger.error({ err: isSidecarError(err) ? { code: err.code, message: err.message } : err, problems }, 'config reload failed: keeping the previous rules')
      return false
    }
  }

  if (options.watchConfig === true) {
    let timer: NodeJS.Timeout | undefined
    try {
      // Watch the directory: editors replace files by rename, which a file watch would miss.
      const base = path.basename(config.file)
      watcher = watch(path.dirname(config.file), (_event, name) => {
        if (name !== base) return
        clearTimeout(timer)
        timer = setTimeout(() => { void reload() }, RELOAD_DEBOUNCE_MS)
      })
      watcher.unref()
    } catch (err) {
      logger.warn({ err }, 'cannot watch the config file; SIGHUP still reloads it')
    }
  }

  async function shutdown (signal?: NodeJS.Signals): Promise<number> {
    if (stopping !== undefined) return stopping
    stopping = (async () => {
      watcher?.close()
      const inFlight = server.inFlight()
      logger.info({ signal, inFlight }, 'shutting down')
      const drained = server.close().then(() => true, () => true)
      const inTime = await Promise.race([drained, delay(config.app.drainTimeoutMs).then(() => false)])
      if (!inTime) logger.warn({ inFlight: server.inFlight() }, 'drain timeout: stopping the app with requests in flight')
      let exit: AppExit | undefined
      if (supervisor !== undefined) {
        // Also when the app already exited: stop() then cleans up what it left in its group.
        exit = await supervisor.stop(signal ?? 'SIGTERM', config.app.stopTimeoutMs)
      }
      server.closeAllConnections()
      await Promise.allSettled([forwarder.close(), pools.close(), metricsServer?.close()])
      const code = exit?.exitCode ?? 0
      logger.info({ exitCode: code }, 'stopped')
      resolveDone(code)
      return code
    })()
    return stopping
  }

  if (supervisor !== undefined) {
    void supervisor.exited.then((exit) => {
      if (stopping !== undefined) return
      // Contract §2: when the app exits on its own the sidecar stops too, with its code, and
      // Fly's restart policy decides what happens next.
      logger.warn({ code: exit.code, signal: exit.signal, exitCode: exit.exitCode }, 'app exited: stopping')
      void shutdown()
    })
  }

  return {
    address,
    metricsPort: metricsServer?.port,
    done,
    shutdown,
    forward: (signal) => { supervisor?.signal(signal) },
    reload,
    routing: () => routing,
  }
}
