// The validated, defaulted, frozen config every other module reads. Produced only by
// loadConfig() in src/config/load.ts from config/routes.yaml (kebab-case keys are mapped to
// camelCase there, once). Durations are milliseconds, sizes bytes.

export type Scalar = string | number | boolean | null

/** A condition on a header, query parameter, JSON selector or form field. */
export type Condition =
  | { readonly kind: 'equals', readonly value: Scalar }
  | { readonly kind: 'in', readonly values: readonly Scalar[] }
  | { readonly kind: 'prefix', readonly value: string }
  | { readonly kind: 'matches', readonly pattern: string, readonly flags: string }
  | { readonly kind: 'exists', readonly value: boolean }

export interface RuleMatch {
  /** Upper-case methods; undefined = any. */
  readonly methods?: readonly string[]
  /** Exact path, a glob with `*` (one segment) and `**` (any rest), or `~regex`. */
  readonly path?: string
  /** Lower-case header name -> condition. `true` in YAML becomes { kind: 'exists', value: true }. */
  readonly headers?: Readonly<Record<string, Condition>>
  readonly query?: Readonly<Record<string, Condition>>
  /** Selector (e.g. `components[*].calls[*].method`) -> condition. */
  readonly json?: Readonly<Record<string, Condition>>
  readonly form?: Readonly<Record<string, Condition>>
}

export interface RuleConfig {
  /** From `name:`, else `rule-<n>` (1-based). Sent as fly-replay `state`. */
  readonly name: string
  readonly match: RuleMatch
  /** A pool name, or `app`. */
  readonly to: string
  /** Where the rule starts in the file, for `explain` and error messages. */
  readonly line: number
}

export type Autostop = 'stop' | 'suspend' | 'off'
export type OversizePolicy = 'forward' | 'local' | 'reject'
export type UnavailablePolicy = 'local' | 'reject'

export interface GuestOverride {
  readonly cpu_kind?: string
  readonly cpus?: number
  readonly memory_mb?: number
}

/** An elastic pool (`min`, `max` or `concurrency` given): placement by load, growth, scale-down. */
export interface ElasticPool {
  /** Machines never destroyed for idleness (stopped ones count). */
  readonly min: number
  /** Never more Machines than this (also the pool's `size`). */
  readonly max: number
  /** Requests one Machine takes before the next is used or created; undefined = no limit. */
  readonly concurrency?: number
  /** A Machine beyond `min` stopped this long is destroyed. */
  readonly destroyAfterMs: number
}

export interface PoolConfig {
  readonly name: string
  /** Fixed pools: exactly this many Machines (created on demand). Elastic pools: their `max`. */
  readonly size: number
  readonly autostop: Autostop
  readonly env: Readonly<Record<string, string>>
  readonly guest: GuestOverride
  readonly oversize: OversizePolicy
  readonly unavailable: UnavailablePolicy
  /** Present when `min`, `max` or `concurrency` is set; absent for `size: N` (exactly N, round-robin). */
  readonly elastic?: ElasticPool
  /** The pool is this other Fly app: requests get `fly-replay: app=<name>`, no Machines API. */
  readonly app?: string
}

export interface HostPort {
  readonly host: string
  readonly port: number
}

export interface Config {
  /** Absolute path of the file this came from. */
  readonly file: string
  readonly listen: HostPort
  readonly app: {
    /** e.g. http://127.0.0.1:8081 (no trailing slash, no path). */
    readonly url: string
    readonly readyTimeoutMs: number
    readonly drainTimeoutMs: number
    readonly stopTimeoutMs: number
    /** `app.env`: set over the defaults of src/app-env.ts for the app started after `--`. */
    readonly env: Readonly<Record<string, string>>
  }
  readonly health: { readonly path: string }
  /** null when `metrics: false`. */
  readonly metrics: (HostPort & { readonly path: string }) | null
  readonly inspect: { readonly maxBodyBytes: number }
  readonly fly: {
    /** undefined when not on Fly (empty env var). */
    readonly app: string | undefined
    readonly machineId: string | undefined
    readonly region: string | undefined
    readonly image: string | undefined
    readonly apiUrl: string
    /** A secret: never log it. */
    readonly apiToken: string | undefined
    readonly replayTimeoutMs: number
    /** Template with {id}, {app}, {port}. */
    readonly privateUrl: string
  }
  /** The pool this Machine belongs to: env SIDECAR_POOL, else the pool whose `app` is FLY_APP_NAME, else `app`. */
  readonly pool: string
  /**
   * On a Machine of a pool on another app (`app:`): the app that replays here (env
   * SIDECAR_ORIGIN_APP), where requests for `app` are sent back with `fly-replay: app=<it>`.
   * null on such a Machine when it is unset (they are then served there); absent on other Machines.
   */
  readonly originApp?: string | null
  /** Named pools (never contains `app`). Insertion order = file order. */
  readonly pools: Readonly<Record<string, PoolConfig>>
  readonly rules: readonly RuleConfig[]
}

/** Defaults with their units, shared by the loader, the schema and the docs. */
export const DEFAULTS = {
  listenPort: 8080,
  listenHost: '0.0.0.0',
  appReadyTimeoutMs: 30_000,
  appDrainTimeoutMs: 3_000,
  appStopTimeoutMs: 4_000,
  healthPath: '/_sidecar/health',
  metricsHost: '0.0.0.0',
  metricsPort: 9091,
  metricsPath: '/metrics',
  inspectMaxBodyBytes: 1024 * 1024,
  flyApiUrl: 'http://_api.internal:4280',
  flyReplayTimeoutMs: 30_000,
  flyPrivateUrl: 'http://{id}.vm.{app}.internal:{port}',
  poolSize: 1,
  poolAutostop: 'stop' as Autostop,
  poolOversize: 'forward' as OversizePolicy,
  poolUnavailable: 'local' as UnavailablePolicy,
  poolMin: 0,
  poolDestroyAfterMs: 30 * 60_000,
} as const

/** Fly cannot replay a request whose body is larger than this (platform notes §1.3). */
export const FLY_REPLAY_MAX_BODY_BYTES = 1024 * 1024
