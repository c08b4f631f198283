// The sidecar's logger: pino JSON lines on stdout, with secrets (Authorization headers, the Fly
// API token) redacted wherever a log object carries them, and the per-request line written by a
// second logger on the same stream that skips redaction (its fields are fixed and never secret).
import { pino } from 'pino'
import type { DestinationStream, Logger, LoggerOptions as PinoOptions } from 'pino'

/** Keys whose values are secrets, whatever object they sit in. */
const SECRET_KEYS = [
  'authorization',
  'proxy-authorization',
  'apiToken',
  'api-token',
  'token',
  'FLY_API_TOKEN',
]

/**
 * pino's redaction has no "any depth" wildcard, so each key is listed at depths 0 to 5
 * (`token`, `*.token`, `*.*.token`, ...). That reaches `config.fly.apiToken`,
 * `req.headers.authorization` and `err.details.request.headers.authorization`; the paths are
 * compiled once, when the logger is made.
 */
const MAX_DEPTH = 5
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((key) => {
  const plain = /^[A-Za-z_$][\w$]*$/.test(key)
  const paths = [plain ? key : `["${key}"]`]
  for (let depth = 1; depth <= MAX_DEPTH; depth++) {
    const stars = Array(depth).fill('*').join('.')
    paths.push(plain ? `${stars}.${key}` : `${stars}["${key}"]`)
  }
  return paths
})

export interface LoggerOptions {
  /** pino level name; default `info`. */
  level?: string
  /** Where the JSON lines go; default stdout, see stdoutDestination(). */
  destination?: DestinationStream
}

/**
 * Lines are written to stdout in writes of at most this many bytes: PIPE_BUF, the size a pipe
 * keeps whole, so the sidecar's lines never interleave mid-line with the app's output on the
 * shared stdout.
 */
const PIPE_BUF = 4096
/** Lines are held until this many bytes are waiting, ... */
const BATCH_BYTES = 2048
/** ... or this long has passed. */
const BATCH_MS = 100

/**
 * stdout, written in batches: one write(2) per log line was the largest single cost of a
 * proxied request (22% of the sidecar's CPU with one `request` line per request), and an
 * asynchronous write per line costs about as much in thread-pool hand-offs. Under load about
 * ten lines go out per write; when quiet a line waits at most 100 ms. What is still held when
 * the process exits (process.exit, the end of the event loop, an uncaught exception) is written
 * synchronously then; only SIGKILL loses it.
 */
export function stdoutDestination (): DestinationStream {
  const dest = pino.destination({ dest: 1, sync: true, minLength: BATCH_BYTES, maxWrite: PIPE_BUF, periodicFlush: BATCH_MS })
  process.once('exit', () => {
    try {
      dest.flushSync()
    } catch {
      // stdout is gone (EPIPE, closed): nothing left to write to.
    }
  })
  return dest
}

const FORMATTERS: NonNullable<PinoOptions['formatters']> = { level: (label) => ({ level: label }) }

/**
 * The one logger of the process. Levels are written as names (`"level":"info"`), which read
 * better in `fly logs` than pino's numbers; errors keep their `cause` chain.
 */
export function createLogger (options: LoggerOptions = {}): Logger {
  return pino({
    level: options.level ?? 'info',
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    formatters: FORMATTERS,
    serializers: { err: pino.stdSerializers.errWithCause },
  }, options.destination ?? stdoutDestination())
}

const requestLoggers = new WeakMap<Logger, Logger>()

/**
 * The logger for the one `request` line per request: the same stream, level and line shape as
 * `logger`, without redaction. pino runs its redaction paths (36 of them, wildcards to depth 5)
 * on every call, about 8% of a proxied request; the request line carries only method, url,
 * decision, reason, rule, pool and machine, none of which is a secret. Made once per logger.
 */
export function requestLogger (logger: Logger): Logger {
  let made = requestLoggers.get(logger)
  if (made === undefined) {
    const stream = (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym]
    made = stream === undefined ? logger : pino({ level: logger.level, formatters: FORMATTERS }, stream)
    requestLoggers.set(logger, made)
  }
  return made
}
