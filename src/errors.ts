// The one error vocabulary of the sidecar. Every error a user can see has a code
// SIDECAR_ERR_<AREA>_<WHAT>, documented in docs/errors.md (a test keeps the two in sync).
// Add new codes to the banner of their area; never reuse a retired code.

export interface ErrorSpec {
  /** HTTP status when this error answers a client request; undefined for internal errors. */
  readonly status?: number
  /** One-line message; `%s` placeholders are filled from `args` in order. */
  readonly message: string
}

export const codes = {
  // ── CONFIG: loading and validating config/routes.yaml ─────────────────────
  SIDECAR_ERR_CONFIG_READ: { message: 'cannot read config file %s' },
  SIDECAR_ERR_CONFIG_INVALID: { message: 'invalid config %s' },
  SIDECAR_ERR_CONFIG_SELECTOR: { message: 'invalid selector %s: %s' },

  // ── RULE: compiling and matching rules ─────────────────────────────────────
  SIDECAR_ERR_RULE_COMPILE: { message: 'rule %s (line %s) cannot be compiled: %s' },

  // ── BODY: request body inspection ──────────────────────────────────────────
  SIDECAR_ERR_BODY_ABORTED: { message: 'the request body ended early after %s bytes: %s' },
  SIDECAR_ERR_BODY_TIMEOUT: { status: 408, message: 'the request body needed for the rules did not arrive within %s ms' },

  // ── UPSTREAM: proxying to the app or to a pool Machine ─────────────────────
  SIDECAR_ERR_UPSTREAM_UNAVAILABLE: { status: 502, message: 'the app is not accepting connections' },
  SIDECAR_ERR_UPSTREAM_TIMEOUT: { status: 504, message: 'the app did not answer in time' },
  SIDECAR_ERR_UPSTREAM_RESET: { status: 502, message: 'the app closed the connection before answering' },
  SIDECAR_ERR_UPSTREAM_BAD_RESPONSE: { status: 502, message: 'the app sent an invalid HTTP response' },
  SIDECAR_ERR_UPSTREAM_ABORTED: { message: 'the app ended the response early: %s' },

  // ── REPLAY: decisions that answer the client ───────────────────────────────
  SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE: { status: 503, message: 'no Machine of pool %s can be had' },
  SIDECAR_ERR_REPLAY_OVERSIZE: { status: 503, message: 'the request body is too large to replay to pool %s' },

  // ── MACHINES: the Fly Machines API client ──────────────────────────────────
  SIDECAR_ERR_MACHINES_UNAVAILABLE: { message: 'the Machines API cannot be used: %s' },
  SIDECAR_ERR_MACHINES_UNKNOWN_POOL: { message: 'pool %s is not defined in the config' },
  SIDECAR_ERR_MACHINES_HTTP: { message: 'Machines API %s answered %s (fly-request-id %s): %s' },
  SIDECAR_ERR_MACHINES_TIMEOUT: { message: 'Machines API %s did not answer within %s ms' },
  SIDECAR_ERR_MACHINES_NETWORK: { message: 'Machines API %s failed: %s' },
  SIDECAR_ERR_MACHINES_BAD_RESPONSE: { message: 'Machines API %s answered a body that is not the expected JSON' },
  SIDECAR_ERR_MACHINES_CIRCUIT_OPEN: { message: 'Machines API calls are paused for %s ms after %s consecutive failures' },
  SIDECAR_ERR_MACHINES_NOT_STARTED: { message: 'Machine %s of pool %s did not reach started within %s ms' },
  SIDECAR_ERR_MACHINES_CREATE_FAILED: { message: 'no Machine of pool %s could be created: %s' },
  SIDECAR_ERR_MACHINES_CLOSED: { message: 'the pool Machines client is closed' },
  SIDECAR_ERR_MACHINES_LOAD_REPORT: { message: 'the load report of Machine %s has no inFlight count' },

  // ── CHILD: supervising the app process ─────────────────────────────────────
  SIDECAR_ERR_CHILD_SPAWN: { message: 'cannot start the app command %s: %s' },
  SIDECAR_ERR_CHILD_SIGNAL: { message: 'cannot send %s to the app process group %s: %s' },

  // ── SERVER: the sidecar's own HTTP server ───────────────────────────────────
  SIDECAR_ERR_SERVER_INTERNAL: { status: 500, message: 'the sidecar failed to handle the request' },
  SIDECAR_ERR_SERVER_LISTEN: { message: 'cannot listen on %s' },
  SIDECAR_ERR_SERVER_BAD_REQUEST: { status: 400, message: 'bad request: %s' },
  SIDECAR_ERR_SERVER_HEADERS_TOO_LARGE: { status: 431, message: 'the request line and headers are larger than %s bytes' },
  SIDECAR_ERR_SERVER_HEADERS_TIMEOUT: { status: 408, message: 'the request headers did not arrive within %s ms' },
  SIDECAR_ERR_SERVER_CLOSING: { status: 503, message: 'the sidecar is shutting down' },

  // ── EMULATOR: the local Fly emulator (`dev`) ───────────────────────────────
  SIDECAR_ERR_EMULATOR_MACHINE_START: { message: 'emulated Machine %s did not start: %s' },
  SIDECAR_ERR_EMULATOR_SETUP: { message: 'the emulator cannot start: %s' },

  // ── CLI: command line ──────────────────────────────────────────────────────
  SIDECAR_ERR_CLI_USAGE: { message: '%s' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof codes

export interface SidecarErrorOptions {
  cause?: unknown
  /** Extra structured fields kept for logs (never secrets). */
  details?: Record<string, unknown>
}

/** The only error class the sidecar throws on purpose. `code` names the entry in `codes`. */
export class SidecarError extends Error {
  readonly code: ErrorCode
  readonly status: number | undefined
  readonly details: Record<string, unknown> | undefined

  constructor (code: ErrorCode, args: readonly unknown[] = [], options: SidecarErrorOptions = {}) {
    const spec: ErrorSpec = codes[code]
    let i = 0
    const message = spec.message.replace(/%s/g, () => String(args[i++] ?? ''))
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'SidecarError'
    this.code = code
    this.status = spec.status
    this.details = options.details
  }

  /** The JSON body a client sees: `{ "error": { "code", "message" } }`, never a stack. */
  toJSON (): { error: { code: ErrorCode, message: string } } {
    return { error: { code: this.code, message: this.message } }
  }
}

export function sidecarError (code: ErrorCode, ...args: unknown[]): SidecarError {
  return new SidecarError(code, args)
}

export function isSidecarError (err: unknown): err is SidecarError {
  return err instanceof SidecarError
}
