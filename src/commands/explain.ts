// `fly-replay-sidecar explain`: takes a request written like a curl command line and prints what
// the sidecar would do with it — which rule matches and why the earlier ones do not, whether the
// body would be buffered, and the answer a Machine of each pool would give — using the same
// matcher and decisions as the running sidecar.
import { readFile } from 'node:fs/promises'
import type { IncomingHttpHeaders } from 'node:http'
import { parseBody, type ParsedBody } from '../body/parse.ts'
import type { BufferedBody } from '../body/inspect.ts'
import { formatSize } from '../config/units.ts'
import type { Config, PoolConfig } from '../config/types.ts'
import { decidePool, isReplayable, route, type PoolDecision } from '../decision/decide.ts'
import type { Routing } from '../request-handler.ts'
import type { CompiledRule, RequestHead } from '../rules/compile.ts'
import { explainRules, matchBody, matchHead } from '../rules/match.ts'
import { SidecarError } from '../errors.ts'
import { configOption, loadForCommand, problemReport, type CommandIo } from './_config.ts'

export const EXPLAIN_USAGE = `usage: fly-replay-sidecar explain [--config FILE] [-X METHOD] [-H 'Name: value']... [-d @body.json|-d 'text'] PATH

Prints which rule matches the request (and why each earlier rule does not), whether its body would
be buffered for body rules, and what a Machine of each pool would answer. PATH may carry a query
(/search?q=1) or be a whole URL. As with curl, -d makes the method POST and, without a
content-type header, sends application/x-www-form-urlencoded; -d @FILE reads the body from FILE.
Exit 0 when explained, 1 when the config has problems, 2 for a usage error.`

/** Shown for the id of the pool Machine the sidecar would pick at run time. */
const MACHINE_PLACEHOLDER = '<id>'

interface ExplainRequest {
  readonly head: RequestHead
  readonly body: Buffer | undefined
  /** The content type came from curl's default for -d, not from -H. */
  readonly defaultedContentType: boolean
}

function usage (io: CommandIo, message: string): number {
  io.stderr.write(`fly-replay-sidecar explain: ${message}\n${EXPLAIN_USAGE}\n`)
  return 2
}

/** argv → the request it describes; a string is a usage error. */
async function parseArgs (argv: readonly string[]): Promise<{ config: string | undefined, request: ExplainRequest } | string | 'help'> {
  let config: string | undefined
  let method: string | undefined
  let data: string | undefined
  let target: string | undefined
  const headers: IncomingHttpHeaders = {}
  for (let i = 0; i < argv.length;) {
    const a = argv[i] as string
    const value = (): string | undefined => argv[i + 1]
    if (a === '--help' || a === '-h') return 'help'
    const opt = configOption(argv, i)
    if (opt !== undefined) {
      if ('error' in opt) return opt.error
      config = opt.value
      i = opt.next
      continue
    }
    if (a === '-X' || a === '--request' || (a.startsWith('-X') && a.length > 2)) {
      const v = a.length > 2 && a.startsWith('-X') ? a.slice(2) : value()
      if (v === undefined || v === '') return `${a} needs a method`
      method = v.toUpperCase()
      i += a.length > 2 && a.startsWith('-X') ? 1 : 2
    } else if (a === '-H' || a === '--header') {
      const v = value()
      if (v === undefined) return `${a} needs 'Name: value'`
      const header = parseHeader(v)
      if (header === undefined) return `cannot read header ${JSON.stringify(v)}: write it as 'Name: value'`
      const previous = headers[header.name]
      // Repeated lines are joined with ", " as Node joins them for the sidecar.
      headers[header.name] = previous === undefined ? header.value : `${String(previous)}, ${header.value}`
      i += 2
    } else if (a === '-d' || a === '--data' || a === '--data-raw' || a === '--data-binary') {
      const v = value()
      if (v === undefined) return `${a} needs the body, or @FILE`
      if (data !== undefined) return 'give the body once (-d)'
      data = a !== '--data-raw' && v.startsWith('@') ? `@${v.slice(1)}` : `=${v}`
      i += 2
    } else if (a.startsWith('-') && a !== '-') {
      return `unknown option: ${a}`
    } else {
      if (target !== undefined) return `one PATH only (got ${target} and ${a})`
      target = a
      i++
    }
  }
  if (target === undefined) return 'give the request PATH, e.g. /livewire/update'

  let body: Buffer | undefined
  if (data !== undefined) {
    if (data.startsWith('@')) {
      const file = data.slice(1)
      try {
        body = await readFile(file)
      } catch (err) {
        return `cannot read the body file ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`
      }
    } else {
      body = Buffer.from(data.slice(1))
    }
  }

  let pathAndQuery = target
  if (/^https?:\/\//i.test(target)) {
    let url: URL
    try {
      url = new URL(target)
    } catch {
      return `cannot read the URL ${target}`
    }
    pathAndQuery = url.pathname + url.search
    headers.host ??= url.host
  }
  if (!pathAndQuery.startsWith('/')) return `PATH must start with / (got ${target})`
  const q = pathAndQuery.indexOf('?')

  let defaultedContentType = false
  if (body !== undefined) {
    if (headers['content-type'] === undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded'
      defaultedContentType = true
    }
    // A transfer-encoding given with -H stands for a chunked upload: no content-length then.
    if (headers['transfer-encoding'] === undefined) headers['content-length'] ??= String(body.length)
  }

  return {
    config,
    request: {
      head: {
        method: method ?? (body === undefined ? 'GET' : 'POST'),
        path: q === -1 ? pathAndQuery : pathAndQuery.slice(0, q),
        query: q === -1 ? '' : pathAndQuery.slice(q + 1),
        headers,
      },
      body,
      defaultedContentType,
    },
  }
}

/** `Name: value` → lower-case name and trimmed value; curl's `Name;` is an empty value. */
function parseHeader (text: string): { name: string, value: string } | undefined {
  const colon = text.indexOf(':')
  if (colon === -1) {
    return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+;$/.test(text) ? { name: text.slice(0, -1).toLowerCase(), value: '' } : undefined
  }
  const name = text.slice(0, colon).trim()
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return undefined
  return { name: name.toLowerCase(), value: text.slice(colon + 1).trim() }
}

interface BodyOutcome {
  /** What the body rules saw: undefined when the request has no body. */
  readonly parsed: ParsedBody | undefined
  readonly lines: string[]
  readonly rule: CompiledRule | undefined
}

/** Runs the request through the sidecar's own two-step match and says what happened to the body. */
function matchRequest (routing: Routing, req: ExplainRequest): BodyOutcome {
  const max = routing.config.inspect.maxBodyBytes
  const size = req.body === undefined ? 'no body' : `${req.body.length} bytes`
  const buffered: BufferedBody | undefined = req.body === undefined
    ? undefined
    : { bytes: req.body.subarray(0, max), complete: req.body.length <= max }
  // The body rules see exactly what the sidecar would parse, even when explain also gets a reason.
  const parsed = buffered === undefined ? undefined : parseBody(req.head.headers['content-type'], buffered)

  const m = matchHead(routing.rules, req.head)
  if (m.kind === 'done') {
    const why = routing.rules.anyBodyRule
      ? 'decided on the method, path, headers and query: no body rule could still match'
      : 'no rule has json or form conditions'
    return { parsed, rule: m.rule, lines: [`body: not buffered (${why}); it streams to its destination untouched (${size})`] }
  }
  const names = m.candidates.filter((c) => c.bodyKind !== null).map((c) => c.name).join(', ')
  const lines = [`body: buffered, up to inspect.max-body (${formatSize(max)}), for body rule${names.includes(',') ? 's' : ''} ${names}; the original bytes are then forwarded`]
  const seen = buffered ?? { bytes: Buffer.alloc(0), complete: true }
  const asParsed = parsed ?? parseBody(req.head.headers['content-type'], seen)
  if (!seen.complete) {
    lines.push(`  ${req.body?.length} bytes is over inspect.max-body: not inspected, body rules do not match`)
  } else if (asParsed.kind === 'none') {
    lines.push(`  ${size}: cannot be inspected as ${m.candidates.find((c) => c.bodyKind !== null)?.bodyKind === 'form' ? 'a form' : 'JSON'} (content type, encoding, syntax, nesting over 64, or a __proto__/constructor/prototype key): body rules do not match`)
  } else {
    lines.push(`  ${size}, parsed as ${asParsed.kind === 'json' ? 'JSON' : 'a form'}`)
  }
  return { parsed: asParsed, rule: matchBody(m.candidates, asParsed), lines }
}

/** fly.private-url with what is known now filled in; {id} is the picked Machine's. */
function privateUrl (config: Config): string {
  return config.fly.privateUrl
    .replaceAll('{id}', MACHINE_PLACEHOLDER)
    .replaceAll('{app}', config.fly.app ?? '<app>')
    .replaceAll('{port}', String(config.listen.port))
}

/** Which Machine of the pool a replay goes to, in words. */
function whichMachine (pool: PoolConfig): string {
  if (pool.app !== undefined) return `Fly's proxy picks a Machine of app ${pool.app}, starting a stopped one`
  const e = pool.elastic
  if (e === undefined) return `${MACHINE_PLACEHOLDER} = a Machine of pool ${pool.name}, found or created`
  const room = e.concurrency === undefined ? 'the least-loaded Machine' : `the least-loaded Machine with fewer than ${e.concurrency} requests`
  return `${MACHINE_PLACEHOLDER} = ${room} of pool ${pool.name}; when there is none, one more is created, up to ${e.max}`
}

function describePoolDecision (d: PoolDecision, config: Config, pool: PoolConfig): string {
  switch (d.kind) {
    case 'replay':
      return `replay: 307 with fly-replay: ${d.header}   (${whichMachine(pool)})`
    case 'forward':
      return `forward: the body cannot be replayed (over 1 MiB or chunked); oversize: forward proxies it to a Machine of pool ${pool.name} at ${privateUrl(config)}`
    case 'local':
      return d.reason === 'oversize'
        ? `served here: the body cannot be replayed (over 1 MiB or chunked) and oversize: local; proxied to ${config.app.url}`
        : `served here (unavailable: local); proxied to ${config.app.url}`
    case 'reject':
      return `503 ${d.error.code}: ${d.error.message}`
  }
}

/** What a Machine of `machinePool` answers; several lines when it depends on the pool's Machines. */
function decisionOn (machinePool: string, routing: Routing, req: ExplainRequest, rule: CompiledRule | undefined): string[] {
  const config = routing.config
  const headers = req.head.headers
  const r = route({
    pool: machinePool,
    onFly: true,
    replayed: headers['fly-replay-src'] !== undefined,
    fallback: headers['fly-replay-failed'] !== undefined,
    target: rule?.to ?? 'app',
    ruleName: rule?.name,
    // A Machine of a pool on another app sends requests for `app` back to SIDECAR_ORIGIN_APP.
    originApp: config.pools[machinePool]?.app === undefined ? undefined : machinePool === config.pool ? config.originApp ?? null : null,
  })
  if (r.kind === 'local') {
    const why = r.reason === 'replayed'
      ? 'already replayed (fly-replay-src is set), never replayed twice'
      : r.reason === 'fallback'
        ? 'a replay fallback (fly-replay-failed is set)'
        : r.reason === 'no-origin' ? `pool ${machinePool} is another Fly app, and without SIDECAR_ORIGIN_APP on its Machines they serve it (with it: fly-replay app=<it>)` : `it belongs to pool ${machinePool}`
    return [`served here: ${why}; proxied to ${config.app.url}`]
  }
  if (r.kind === 'elsewhere') {
    const where = r.header.startsWith('app=') ? `Fly sends it back to app ${r.header.slice(4, r.header.indexOf(';'))}` : 'Fly sends it to an ordinary Machine'
    return [`307 with fly-replay: ${r.header}   (${where})`]
  }
  const pool = config.pools[r.pool]
  if (pool === undefined) return [`pool ${r.pool} is not defined`]
  const common = { pool, replayable: isReplayable(headers), replayTimeout: routing.replayTimeout, ruleName: rule?.name ?? 'default' }
  const picked = decidePool({ ...common, pick: { ok: true, machineId: MACHINE_PLACEHOLDER } })
  const none = decidePool({ ...common, pick: { ok: false, error: new SidecarError('SIDECAR_ERR_MACHINES_UNAVAILABLE', ['explain']) } })
  const lines = [describePoolDecision(picked, config, pool)]
  if (none.kind !== picked.kind || (none.kind === 'local' && picked.kind === 'local' && none.reason !== picked.reason)) {
    lines.push(`when no Machine of pool ${pool.name} can be had (not on Fly, no FLY_API_TOKEN, API down): ${describePoolDecision(none, config, pool)}`)
  }
  return lines
}

function report (file: string, routing: Routing, req: ExplainRequest): string {
  const config = routing.config
  const out: string[] = []
  const { head } = req
  out.push(`config: ${file}`)
  out.push(`request: ${head.method} ${head.path}${head.query === '' ? '' : `?${head.query}`}`)
  for (const [name, value] of Object.entries(head.headers)) {
    const note = name === 'content-type' && req.defaultedContentType ? '   (curl\'s default for -d; add -H \'content-type: application/json\' for JSON)' : ''
    out.push(`  ${name}: ${String(value)}${note}`)
  }
  out.push('')

  if (head.path === config.health.path && (head.method === 'GET' || head.method === 'HEAD')) {
    out.push(`${head.path} is the health path: answered by the sidecar itself on every Machine; no rule applies.`)
    return `${out.join('\n')}\n`
  }

  const outcome = matchRequest(routing, req)
  out.push(...outcome.lines, '')

  const reasons = explainRules(routing.rules, head, outcome.parsed)
  if (reasons.length === 0) {
    out.push('rules: none in the config')
  } else {
    out.push('rules, first match wins:')
    const byName = new Map(routing.rules.rules.map((r) => [r.name, r]))
    for (const r of reasons) out.push(`  ${r.matched ? 'MATCH' : 'no   '} ${r.name} (line ${byName.get(r.name)?.line ?? '?'}): ${r.reason}`)
    const rest = routing.rules.rules.length - reasons.length
    if (rest > 0) out.push(`  (${rest} later rule${rest === 1 ? '' : 's'} not evaluated)`)
  }
  const rule = outcome.rule
  out.push(rule === undefined ? 'target: pool app (no rule matched)' : `target: pool ${rule.to} (rule ${rule.name})`, '')

  for (const pool of ['app', ...Object.keys(config.pools)]) {
    const [first, ...more] = decisionOn(pool, routing, req, rule)
    out.push(`on a Machine of pool ${pool}: ${first ?? ''}`)
    for (const line of more) out.push(`  ${line}`)
  }
  if (!routing.onFly) out.push('', '(FLY_APP_NAME or FLY_MACHINE_ID is not set here: these are the answers of a Machine on Fly; off Fly the sidecar serves every request locally)')
  return `${out.join('\n')}\n`
}

/** Runs `explain`; resolves with the exit code (0 explained, 1 config problems, 2 usage). */
export async function runExplain (argv: readonly string[], io: CommandIo): Promise<number> {
  const parsed = await parseArgs(argv)
  if (parsed === 'help') {
    io.stdout.write(`${EXPLAIN_USAGE}\n`)
    return 0
  }
  if (typeof parsed === 'string') return usage(io, parsed)
  const loaded = await loadForCommand(parsed.config)
  if (!loaded.ok) {
    io.stderr.write(problemReport(loaded.problems))
    return 1
  }
  io.stdout.write(report(loaded.file, loaded.routing, parsed.request))
  return 0
}
