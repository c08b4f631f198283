// The sidecar's logger: pino JSON lines on stdout, with secrets (Authorization headers, the Fly
// API token) redacted wherever a log object carries them.
import { pino } from 'pino'
import type { DestinationStream, Logger } from 'pino'

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
  /** Where the JSON lines go; default stdout (synchronous, so nothing is lost at exit). */
  destination?: DestinationStream
}

/**
 * The one logger of the process. Levels are written as names (`"level":"info"`), which read
 * better in `fly logs` than pino's numbers; errors keep their `cause` chain.
 */
export function createLogger (options: LoggerOptions = {}): Logger {
  return pino({
    level: options.level ?? 'info',
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: pino.stdSerializers.errWithCause },
  }, options.destination ?? pino.destination({ dest: 1, sync: true }))
}
