// The sidecar's logger: pino JSON lines on stdout, with secrets (Authorization headers, the Fly
// API token) redacted wherever a log object carries them, and the per-request line written by a
// second logger on the same stream that skips redaction (its fields are fixed and never secret).
import { writeSync } from 'node:fs'
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
/**
 * Lines are held until this many bytes are waiting (or the next line would not fit in PIPE_BUF),
 * ... (2048 cost 1-3% more CPU per proxied request: twice the writes to the pipe.)
 */
const BATCH_BYTES = 3584
/** ... or this long has passed. */
const BATCH_MS = 100

/** How long a write waits before it is tried again when the pipe is full (EAGAIN). */
const BUSY_RETRY_MS = 100
const sleeper = new Int32Array(new SharedArrayBuffer(4))

/**
 * Lines gathered as bytes in one PIPE_BUF buffer and written to a file descriptor with one
 * write(2) per batch. Each line is copied once, into the buffer; pino's sonic-boom, used before,
 * kept the batch as a string that it measured (its UTF-8 length, the whole batch again on every
 * line) and flattened per line, then converted again to bytes for the write.
 */
class LineBatch {
  readonly #fd: number
  readonly #buf = Buffer.allocUnsafe(PIPE_BUF)
  #used = 0

  constructor (fd: number) {
    this.#fd = fd
    setInterval(() => { this.flushSync() }, BATCH_MS).unref()
  }

  write (line: string): boolean {
    // At most 3 UTF-8 bytes per UTF-16 unit: the exact length is needed only near the end.
    if (line.length * 3 > PIPE_BUF - this.#used) {
      const bytes = Buffer.byteLength(line)
      if (bytes > PIPE_BUF - this.#used) {
        this.flushSync()
        // Longer than a pipe keeps whole: written alone (nothing can keep it whole).
        if (bytes > PIPE_BUF) { this.#writeAll(Buffer.from(line, 'utf8')); return true }
      }
    }
    this.#used += this.#buf.write(line, this.#used, 'utf8')
    if (this.#used >= BATCH_BYTES) this.flushSync()
    return true
  }

  /** Writes what is held, now. */
  flushSync (): void {
    const n = this.#used
    if (n === 0) return
    this.#used = 0
    this.#writeAll(this.#buf.subarray(0, n))
  }

  #writeAll (bytes: Buffer): void {
    let off = 0
    while (off < bytes.length) {
      try {
        off += writeSync(this.#fd, bytes, off, bytes.length - off)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        // A full non-blocking pipe: wait for the reader, as sonic-boom did; anything else throws.
        if (code !== 'EAGAIN' && code !== 'EBUSY') throw err
        Atomics.wait(sleeper, 0, 0, BUSY_RETRY_MS)
      }
    }
  }
}

/**
 * stdout, written in batches: one write(2) per log line was the largest single cost of a
 * proxied request (22% of the sidecar's CPU with one `request` line per request), and an
 * asynchronous write per line costs about as much in thread-pool hand-offs. Under load about
 * twenty request lines go out per write; when quiet a line waits at most 100 ms. What is still held when
 * the process exits (process.exit, the end of the event loop, an uncaught exception) is written
 * synchronously then; only SIGKILL loses it.
 */
export function stdoutDestination (): DestinationStream {
  const dest = new LineBatch(1)
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

/** The fields of a `request` line: strings and numbers, none of them secret. */
export type RequestFields = Readonly<Record<string, string | number | boolean | undefined>>

/** Writes the one `request` line per request (info) and the like (debug). */
export interface RequestLog {
  info (fields: RequestFields, msg: string): void
  debug (fields: RequestFields, msg: string): void
}

/**
 * A JSON string literal of `s`, as JSON.stringify writes it: the common strings (short, nothing
 * to escape) are quoted as they are, without a scan of JSON.stringify's own.
 */
function quote (s: string): string {
  if (s.length > 100) return JSON.stringify(s)
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    // Control characters, '"', '\', and surrogates (a lone one is escaped): JSON.stringify's work.
    if (c < 32 || c === 34 || c === 92 || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s)
  }
  return '"' + s + '"'
}

/** A value as pino writes it (undefined: the field is left out). */
function jsonValue (v: unknown): string | undefined {
  switch (typeof v) {
    case 'string': return quote(v)
    case 'number': return Number.isFinite(v) ? String(v) : 'null'
    case 'boolean': return v ? 'true' : 'false'
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined
    default: return JSON.stringify(v)
  }
}

interface PinoInternals { [key: symbol]: unknown }

/**
 * The request lines, written as text by hand: the same line pino writes for
 * `logger.info(fields, msg)` (`{"level":"info","time":…,"pid":…,"hostname":…,<fields>,"msg":…}`),
 * to the same stream, but without pino's per-call work: its redaction paths (36, wildcards to depth
 * 5), serializer and hook lookups, and the generic stringify; about 6% of a proxied request's CPU
 * together. The fields are fixed by the request handler (method, url, decision, reason, rule, pool,
 * machine), none of them a secret, so nothing is redacted. The level is the logger's when made.
 */
class RequestLines implements RequestLog {
  readonly #stream: DestinationStream
  readonly #bindings: string
  readonly #info: boolean
  readonly #debug: boolean

  constructor (logger: Logger, stream: DestinationStream) {
    this.#stream = stream
    this.#bindings = String((logger as unknown as PinoInternals)[pino.symbols.chindingsSym] ?? '')
    this.#info = logger.isLevelEnabled('info')
    this.#debug = logger.isLevelEnabled('debug')
  }

  info (fields: RequestFields, msg: string): void {
    if (this.#info) this.#write('{"level":"info","time":', fields, msg)
  }

  debug (fields: RequestFields, msg: string): void {
    if (this.#debug) this.#write('{"level":"debug","time":', fields, msg)
  }

  #write (start: string, fields: RequestFields, msg: string): void {
    let line = start + Date.now() + this.#bindings
    for (const key in fields) {
      const v = jsonValue(fields[key])
      if (v !== undefined) line += ',' + quote(key) + ':' + v
    }
    this.#stream.write(line + ',"msg":' + quote(msg) + '}\n')
  }
}

const requestLoggers = new WeakMap<Logger, RequestLog>()

/**
 * The logger for the one `request` line per request: the same stream, level and line shape as
 * `logger`, without redaction (see RequestLines). Made once per logger.
 */
export function requestLogger (logger: Logger): RequestLog {
  let made = requestLoggers.get(logger)
  if (made === undefined) {
    const stream = (logger as unknown as PinoInternals)[pino.symbols.streamSym] as DestinationStream | undefined
    made = stream === undefined ? logger : new RequestLines(logger, stream)
    requestLoggers.set(logger, made)
  }
  return made
}
