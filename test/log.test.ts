// The logger writes JSON lines with level names and never writes the API token or an
// Authorization header, at whatever depth a log object carries them.
import t from 'tap'
import { Writable } from 'node:stream'
import { spawn } from 'node:child_process'
import { createLogger, requestLogger } from '../src/log.ts'

/** A destination that keeps every line, parsed. */
function sink (): { stream: Writable, lines: Record<string, unknown>[], raw: () => string } {
  const chunks: string[] = []
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      const text = chunk.toString()
      chunks.push(text)
      for (const line of text.split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  return { stream, lines, raw: () => chunks.join('') }
}

t.test('lines are JSON with the level as a name, the object first and msg last', async (t) => {
  const s = sink()
  const log = createLogger({ destination: s.stream })
  log.info({ rule: 'livewire', machine: 'm1' }, 'replaying request')
  log.debug('not written at info')
  t.equal(s.lines.length, 1)
  const line = s.lines[0]!
  t.equal(line.level, 'info')
  t.equal(line.rule, 'livewire')
  t.equal(line.machine, 'm1')
  t.equal(line.msg, 'replaying request')
  t.type(line.time, 'number')
})

t.test('level option', async (t) => {
  const s = sink()
  const log = createLogger({ level: 'debug', destination: s.stream })
  log.debug({ a: 1 }, 'shown')
  t.strictSame(s.lines.map((l) => [l.level, l.msg]), [['debug', 'shown']])
})

t.test('secrets are redacted wherever they appear', async (t) => {
  const s = sink()
  const log = createLogger({ destination: s.stream })
  const secret = 'FlyV1 fm2_SECRET-VALUE'
  log.info({
    config: { fly: { apiToken: secret, app: 'my-app' } },
    apiToken: secret,
    token: secret,
    req: { headers: { authorization: secret, 'proxy-authorization': secret, host: 'example.com' } },
    env: { FLY_API_TOKEN: secret, SIDECAR_POOL: 'tasker' },
    err: { details: { request: { headers: { authorization: secret } } } },
  }, 'started')
  t.notMatch(s.raw(), 'SECRET-VALUE')
  const line = s.lines[0] as any
  t.equal(line.config.fly.apiToken, '[redacted]')
  t.equal(line.config.fly.app, 'my-app')
  t.equal(line.apiToken, '[redacted]')
  t.equal(line.token, '[redacted]')
  t.strictSame(line.req.headers, { authorization: '[redacted]', 'proxy-authorization': '[redacted]', host: 'example.com' })
  t.equal(line.env.FLY_API_TOKEN, '[redacted]')
  t.equal(line.env.SIDECAR_POOL, 'tasker')
  t.equal(line.err.details.request.headers.authorization, '[redacted]')
})

t.test('the object logged is not changed by redaction', async (t) => {
  const s = sink()
  const log = createLogger({ destination: s.stream })
  const cfg = { fly: { apiToken: 'tok' } }
  log.info({ config: cfg }, 'config')
  t.equal(cfg.fly.apiToken, 'tok')
})

t.test('errors keep their cause chain', async (t) => {
  const s = sink()
  const log = createLogger({ destination: s.stream })
  const err = Object.assign(new Error('outer', { cause: new Error('inner') }), { code: 'SIDECAR_ERR_X' })
  log.error({ err }, 'failed')
  const line = s.lines[0] as any
  t.equal(line.err.message, 'outer')
  t.equal(line.err.code, 'SIDECAR_ERR_X')
  t.equal(line.err.cause.message, 'inner')
})

t.test('the request logger writes the same line shape to the same stream, without redaction', async (t) => {
  const s = sink()
  const log = createLogger({ level: 'info', destination: s.stream })
  const requests = requestLogger(log)
  t.equal(requestLogger(log), requests, 'made once per logger')
  requests.info({ method: 'GET', url: '/x?token=abc', decision: 'local', reason: 'no-rule' }, 'request')
  requests.debug({ url: '/hidden' }, 'request')
  log.info({ token: 'secret' }, 'other')
  t.equal(s.lines.length, 2)
  const [line, other] = s.lines as [Record<string, unknown>, Record<string, unknown>]
  t.match(line, { level: 'info', method: 'GET', url: '/x?token=abc', decision: 'local', reason: 'no-rule', msg: 'request' })
  t.strictSame(Object.keys(line).sort(), Object.keys({ ...other, method: 1, url: 1, decision: 1, reason: 1 }).filter((k) => k !== 'token').sort(), 'same base fields as the main logger')
  t.equal(other.token, '[redacted]')
})

t.test('the request logger follows the level of its logger', async (t) => {
  const s = sink()
  const requests = requestLogger(createLogger({ level: 'warn', destination: s.stream }))
  requests.info({ url: '/' }, 'request')
  t.equal(s.lines.length, 0)
})

t.test('stdout is written asynchronously and flushed when the process exits', async (t) => {
  // Lines still queued behind an in-flight write when process.exit() runs must not be lost.
  const script = `
    import { createLogger, requestLogger } from ${JSON.stringify(new URL('../src/log.ts', import.meta.url).href)}
    const log = createLogger()
    const requests = requestLogger(log)
    for (let i = 0; i < 5000; i++) requests.info({ i, url: '/' + 'x'.repeat(100) }, 'request')
    log.info('last')
    process.exit(0)
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const chunks: Buffer[] = []
  child.stdout.on('data', (c: Buffer) => chunks.push(c))
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0)
  const lines = Buffer.concat(chunks).toString().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { i?: number, msg: string })
  t.equal(lines.length, 5001, 'every line arrived, whole')
  t.ok(lines.slice(0, 5000).every((l, i) => l.i === i), 'in order')
  t.equal(lines[5000]?.msg, 'last')
})
