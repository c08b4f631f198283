// Loads config/routes.yaml: YAML with positions, ${VAR} expansion on scalars, schema and semantic
// checks (every problem at once, with file:line:column and key path), defaults, camelCase, frozen.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node as YNode, type ScalarTag } from 'yaml'
import { SidecarError, isSidecarError } from '../errors.ts'
import { checkNode, restoreStrings, type PathSegment, type Position, type YamlEntry, type YamlNode, type YamlScalar } from './check.ts'
import { POOL_NAME_PATTERN } from './schema.ts'
import { DEFAULTS, type Condition, type Config, type GuestOverride, type HostPort, type PoolConfig, type RuleConfig, type RuleMatch, type Scalar } from './types.ts'
import { MAX_DURATION_MS, parseDuration, parseHostPort, parseSelector, parseSize } from './units.ts'

export { parseSelector, type SelectorStep } from './units.ts'

/** One thing wrong with a config file, where it is and which key. */
export interface ConfigProblem {
  readonly file: string
  /** 1-based; 0 when the file could not be read (no text to point into). */
  readonly line: number
  /** 1-based; 0 with line 0. */
  readonly column: number
  /** Key path, e.g. `rules[0].match.json["a.b"]`; empty for YAML syntax errors. */
  readonly path: string
  readonly message: string
}

/** The default config file, relative to the working directory. */
export const DEFAULT_CONFIG_PATH = 'config/routes.yaml'

/** Aliases can multiply a small file into a huge tree (the "billion laughs"): cap the nodes. */
const MAX_NODES = 100_000

/**
 * The config file to use, as an absolute path: `--config` from argv, else env SIDECAR_CONFIG,
 * else `config/routes.yaml`, relative to the working directory.
 */
export function resolveConfigPath (argvConfig: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = argvConfig !== undefined && argvConfig !== ''
    ? argvConfig
    : env.SIDECAR_CONFIG !== undefined && env.SIDECAR_CONFIG !== '' ? env.SIDECAR_CONFIG : DEFAULT_CONFIG_PATH
  return path.resolve(chosen)
}

/**
 * Reads and validates a config file. Throws SidecarError SIDECAR_ERR_CONFIG_READ (with the fs
 * error as cause) when it cannot be read, SIDECAR_ERR_CONFIG_INVALID as parseConfig() does.
 */
export async function loadConfig (file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string
  try {
    // Read synchronously: an asynchronous read at start was the first use of libuv's thread pool,
    // which started its 4 threads (each with a malloc arena) before the port was open, and
    // node:fs/promises loaded 7 more of Node's built-in modules (readline among them). A config
    // file is a few KiB, read at start and on a reload.
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SidecarError('SIDECAR_ERR_CONFIG_READ', [`${file} (${readFailure(err)})`], { cause: err })
  }
  return parseConfig(text, file, env)
}

/** The system's reason a config could not be read, with what to do when the file is not there. */
export function readFailure (err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'ENOENT: no such file; name it with --config FILE or SIDECAR_CONFIG, else config/routes.yaml in the working directory is read'
  return code ?? (err as Error).message
}

/**
 * Parses and validates config text. `file` names it in problems (Config.file is its absolute
 * path). Throws SidecarError SIDECAR_ERR_CONFIG_INVALID with `details.problems: ConfigProblem[]`
 * (all of them, in file order); its message lists them one per line.
 */
export function parseConfig (text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const problems = new Problems(file)
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset)
    return { line, column: col }
  }
  // After one syntax error the parser reports every later token too: keep the first, plus any
  // duplicate keys (each a mistake of its own).
  const syntax = doc.errors.filter((err, i) => i === 0 || err.code === 'DUPLICATE_KEY')
  for (const err of syntax) {
    const pos = at(err.pos[0])
    const line = text.split('\n')[pos.line - 1] ?? ''
    const hint = err.code !== 'DUPLICATE_KEY' && /[{[].*\$\{/.test(line) ? ' (inside { } or [ ], quote values that use ${...})' : ''
    problems.add(pos, [], err.message + hint)
  }
  // A file that is not YAML has no trustworthy tree: its syntax errors are the whole story.
  if (problems.list.length > 0) throw problems.error()

  const tree = restoreStrings(new TreeBuilder(doc, at, env, problems).build(doc.contents, [], { line: 1, column: 1 }))
  if (tree.kind === 'scalar' && tree.value === null) {
    problems.add(tree.pos, [], 'the file is empty: a config needs at least app.url, where the app listens (e.g. "app: { url: http://127.0.0.1:8081 }")')
    throw problems.error()
  }
  // checkNode() walks the TypeBox schema's JSON to place each error. That TypeBox's own compiled
  // check agrees with it is asserted by the tests (test/config/schema.test.ts), not at every start:
  // the compiled checker cost the running sidecar 2 MiB of heap and up to 100 ms of start-up.
  for (const p of checkNode(tree)) problems.add(p.pos, p.path, p.message)
  const config = buildConfig(tree, path.resolve(file), env, problems)
  if (problems.list.length > 0) throw problems.error()
  return deepFreeze(config)
}

/** `file:line:column: path: message`, one line per problem. */
export function formatProblems (problems: readonly ConfigProblem[]): string {
  return problems
    .map((p) => `${p.line === 0 ? p.file : `${p.file}:${p.line}:${p.column}`}: ${p.path === '' ? '' : `${p.path}: `}${p.message}`)
    .join('\n')
}

/** `['rules', 0, 'match', 'json', 'a.b']` → `rules[0].match.json["a.b"]`. */
export function formatPath (segments: readonly PathSegment[]): string {
  let out = ''
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += out === '' ? s : `.${s}`
    else out += `[${JSON.stringify(s)}]`
  }
  return out
}

class Problems {
  readonly list: ConfigProblem[] = []
  readonly file: string
  /** Keys whose value could not be expanded: checking the unexpanded text would report them twice. */
  readonly #unexpanded = new Set<string>()
  constructor (file: string) { this.file = file }

  add (pos: Position, at: readonly PathSegment[], message: string): void {
    const path = formatPath(at)
    if (this.#unexpanded.has(path)) return
    this.list.push({ file: this.file, line: pos.line, column: pos.column, path, message })
  }

  /** Reports a failed ${VAR} expansion; later problems of the same key are left out. */
  addUnexpanded (pos: Position, at: readonly PathSegment[], message: string): void {
    this.add(pos, at, message)
    this.#unexpanded.add(formatPath(at))
  }

  error (): SidecarError {
    // Stable sort: problems at the same place keep the order they were found in.
    const problems = [...this.list].sort((a, b) => a.line - b.line || a.column - b.column)
    const n = problems.length
    return new SidecarError('SIDECAR_ERR_CONFIG_INVALID', [`${this.file} (${n} problem${n === 1 ? '' : 's'}):\n${formatProblems(problems)}`], {
      details: { file: this.file, problems },
    })
  }
}

// ── YAML → positioned tree, with ${VAR} expansion ──────────────────────────────

class TreeBuilder {
  readonly #doc: Document.Parsed
  readonly #at: (offset: number) => Position
  readonly #env: NodeJS.ProcessEnv
  readonly #problems: Problems
  #nodes = 0

  constructor (doc: Document.Parsed, at: (offset: number) => Position, env: NodeJS.ProcessEnv, problems: Problems) {
    this.#doc = doc
    this.#at = at
    this.#env = env
    this.#problems = problems
  }

  build (node: unknown, at: PathSegment[], fallback: Position): YamlNode {
    if (++this.#nodes > MAX_NODES) {
      this.#problems.add(fallback, at, `more than ${MAX_NODES} values (aliases expanding too far?)`)
      return { kind: 'scalar', pos: fallback, value: null }
    }
    if (isAlias(node)) return this.build(node.resolve(this.#doc), at, this.#pos(node, fallback))
    const pos = this.#pos(node, fallback)
    if (isMap(node)) {
      const entries: YamlEntry[] = []
      for (const pair of node.items) {
        const keyPos = this.#pos(pair.key, pos)
        let key: string
        if (isScalar(pair.key)) key = String(pair.key.value ?? '')
        else {
          this.#problems.add(keyPos, at, 'keys must be plain strings, not lists or maps')
          continue
        }
        entries.push({ key, keyPos, value: this.build(pair.value, [...at, key], keyPos) })
      }
      return { kind: 'map', pos, entries }
    }
    if (isSeq(node)) {
      return { kind: 'seq', pos, items: node.items.map((item, i) => this.build(item, [...at, i], pos)) }
    }
    if (isScalar(node)) {
      const v = node.value
      if (typeof v === 'string') return this.#expand(v, node.type === 'PLAIN' && node.tag === undefined, pos, at)
      if (typeof v === 'number' || typeof v === 'boolean' || v === null) return { kind: 'scalar', pos, value: v }
      if (typeof v === 'bigint') return { kind: 'scalar', pos, value: Number(v) }
      this.#problems.add(pos, at, `unsupported YAML value (${node.tag ?? typeof v})`)
      return { kind: 'scalar', pos, value: null }
    }
    return { kind: 'scalar', pos, value: null } // an empty document or `key:` with no value
  }

  #pos (node: unknown, fallback: Position): Position {
    const range = (node as YNode | null)?.range
    return range === undefined || range === null ? fallback : this.#at(range[0])
  }

  /** Expands one string scalar; a plain one is re-read as a YAML scalar so `${N:-2}` is a number. */
  #expand (text: string, plain: boolean, pos: Position, at: PathSegment[]): YamlScalar {
    if (!text.includes('$')) return { kind: 'scalar', pos, value: text }
    const result = expandEnv(text, this.#env)
    if (typeof result !== 'string') {
      this.#problems.addUnexpanded(pos, at, result.error)
      return { kind: 'scalar', pos, value: text }
    }
    if (!plain || result === '') return { kind: 'scalar', pos, value: result }
    // Only the schema's scalar tags: a value like "[a, b]" or "x: y" stays a string.
    for (const tag of this.#doc.schema.tags) {
      if (tag.collection !== undefined || tag.default !== true) continue
      const scalarTag = tag as ScalarTag
      if (scalarTag.test?.test(result) !== true) continue
      const resolved = scalarTag.resolve(result, () => {}, this.#doc.options)
      const v = isScalar(resolved) ? resolved.value : resolved // booleans come wrapped in a Scalar
      return typeof v === 'number' || typeof v === 'boolean' || v === null ? { kind: 'scalar', pos, value: v, text: result } : { kind: 'scalar', pos, value: result }
    }
    return { kind: 'scalar', pos, value: result }
  }
}

/**
 * `${VAR}` → the variable or '' when unset; `${VAR:-default}` → the default when VAR is unset or
 * empty; `$$` → `$`. Any other `$` stays. Returns { error } for a malformed reference.
 */
export function expandEnv (text: string, env: NodeJS.ProcessEnv): string | { error: string } {
  let out = ''
  let i = 0
  while (i < text.length) {
    const dollar = text.indexOf('$', i)
    if (dollar === -1) { out += text.slice(i); break }
    out += text.slice(i, dollar)
    const next = text[dollar + 1]
    if (next === '$') { out += '$'; i = dollar + 2; continue }
    if (next !== '{') { out += '$'; i = dollar + 1; continue }
    const close = text.indexOf('}', dollar + 2)
    if (close === -1) return { error: `unterminated "\${" in ${JSON.stringify(text)} (write $$ for a literal $)` }
    const inner = text.slice(dollar + 2, close)
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s.exec(inner)
    if (m?.[2]?.includes('${') === true) return { error: `a default cannot hold another \${...}, got ${JSON.stringify(text)}` }
    if (m === null) return { error: `invalid reference "\${${inner}}": write \${NAME} or \${NAME:-default}` }
    const value = env[m[1] ?? '']
    out += m[2] !== undefined && (value === undefined || value === '') ? m[2] : value ?? ''
    i = close + 1
  }
  return out
}

// ── tree → Config ──────────────────────────────────────────────────────────────

function entry (node: YamlNode | undefined, key: string): YamlEntry | undefined {
  return node?.kind === 'map' ? node.entries.find((e) => e.key === key) : undefined
}

function stringOf (e: YamlEntry | undefined): string | undefined {
  return e?.value.kind === 'scalar' && typeof e.value.value === 'string' ? e.value.value : undefined
}

function numberOf (e: YamlEntry | undefined): number | undefined {
  return e?.value.kind === 'scalar' && typeof e.value.value === 'number' ? e.value.value : undefined
}

/** A record safe for any key (even `__proto__`), in insertion order. */
/** A map of strings (`env:`), as far as the schema accepted it. */
function stringRecord (e: YamlEntry | undefined): Record<string, string> {
  const entries = e?.value.kind === 'map' ? e.value.entries : []
  return record(entries.flatMap((x) => {
    const v = stringOf(x)
    return v === undefined ? [] : [[x.key, v] as const]
  }))
}

function record<T> (pairs: Iterable<readonly [string, T]>): Record<string, T> {
  const out: Record<string, T> = {}
  for (const [k, v] of pairs) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
  return out
}

function buildConfig (tree: YamlNode, file: string, env: NodeJS.ProcessEnv, p: Problems): Config {
  const root = tree.kind === 'map' ? tree : undefined
  const origin: Position = { line: 1, column: 1 }

  const duration = (section: YamlEntry | undefined, key: string, fallback: number, at: PathSegment[]): number => {
    const e = entry(section?.value, key)
    const text = stringOf(e)
    const ms = text === undefined ? undefined : parseDuration(text)
    if (e === undefined || ms === undefined) return fallback // absent, or already reported by the schema
    if (ms > MAX_DURATION_MS) p.add(e.value.pos, [...at, key], `must be at most ${Math.floor(MAX_DURATION_MS / 3_600_000)}h (a Node timer limit), got ${JSON.stringify(text)}`)
    return ms
  }
  const hostPort = (e: YamlEntry | undefined, at: PathSegment[], fallback: HostPort): HostPort => {
    const text = stringOf(e)
    if (e === undefined || text === undefined) return fallback
    const hp = parseHostPort(text, DEFAULTS.listenHost)
    if (hp === undefined) {
      // The schema already rejected anything but the port range.
      if (/:[0-9]{1,5}$/.test(text)) p.add(e.value.pos, at, `port must be 0-65535, got ${JSON.stringify(text)}`)
      return fallback
    }
    return hp
  }
  const urlPath = (e: YamlEntry | undefined, at: PathSegment[], fallback: string): string => {
    const text = stringOf(e)
    if (e === undefined || text === undefined) return fallback
    if (/[\s?#]/.test(text)) p.add(e.value.pos, at, `must be a plain path without spaces, ? or #, got ${JSON.stringify(text)}`)
    return text
  }

  // listen: absent → 0.0.0.0:${PORT:-8080}
  const listenEntry = entry(root, 'listen')
  let listen: HostPort = { host: DEFAULTS.listenHost, port: DEFAULTS.listenPort }
  if (listenEntry !== undefined) listen = hostPort(listenEntry, ['listen'], listen)
  else if (env.PORT !== undefined && env.PORT !== '') {
    const hp = parseHostPort(`${DEFAULTS.listenHost}:${env.PORT}`)
    if (hp === undefined) p.add(origin, ['listen'], `env PORT=${JSON.stringify(env.PORT)} is not a port (listen defaults to 0.0.0.0:\${PORT:-8080})`)
    else listen = hp
  }

  // app
  const appE = entry(root, 'app')
  const urlE = entry(appE?.value, 'url')
  let appUrl = ''
  const urlText = stringOf(urlE)
  if (urlE !== undefined && urlText !== undefined && /^https?:\/\//.test(urlText)) {
    const checked = checkUrl(urlText, false)
    if (typeof checked === 'string') appUrl = checked
    else p.add(urlE.value.pos, ['app', 'url'], checked.error)
  }
  const app = {
    url: appUrl,
    readyTimeoutMs: duration(appE, 'ready-timeout', DEFAULTS.appReadyTimeoutMs, ['app']),
    drainTimeoutMs: duration(appE, 'drain-timeout', DEFAULTS.appDrainTimeoutMs, ['app']),
    stopTimeoutMs: duration(appE, 'stop-timeout', DEFAULTS.appStopTimeoutMs, ['app']),
    env: stringRecord(entry(appE?.value, 'env')),
  }

  const health = { path: urlPath(entry(entry(root, 'health')?.value, 'path'), ['health', 'path'], DEFAULTS.healthPath) }

  // metrics: absent or true → defaults; false → off
  const metricsE = entry(root, 'metrics')
  let metrics: Config['metrics'] = { host: DEFAULTS.metricsHost, port: DEFAULTS.metricsPort, path: DEFAULTS.metricsPath }
  if (metricsE?.value.kind === 'scalar' && metricsE.value.value === false) metrics = null
  else if (metricsE?.value.kind === 'map') {
    const listenE = entry(metricsE.value, 'listen')
    const hp = hostPort(listenE, ['metrics', 'listen'], metrics)
    metrics = { ...hp, path: urlPath(entry(metricsE.value, 'path'), ['metrics', 'path'], DEFAULTS.metricsPath) }
    if (listenE !== undefined && hp.port !== 0 && hp.port === listen.port) {
      p.add(listenE.value.pos, ['metrics', 'listen'], `port ${hp.port} is also the sidecar's listen port`)
    }
  }

  // inspect
  const maxBodyE = entry(entry(root, 'inspect')?.value, 'max-body')
  const maxBodyText = stringOf(maxBodyE)
  let maxBodyBytes: number = DEFAULTS.inspectMaxBodyBytes
  const size = maxBodyText === undefined ? undefined : parseSize(maxBodyText)
  if (maxBodyE !== undefined && size !== undefined) {
    if (size < 1) p.add(maxBodyE.value.pos, ['inspect', 'max-body'], 'must be at least 1B')
    else maxBodyBytes = size
  }

  // fly: each value defaults from the variable Fly sets inside a Machine; empty means "not on Fly"
  const flyE = entry(root, 'fly')
  const fromEnv = (key: string, variable: string): string | undefined => {
    const e = entry(flyE?.value, key)
    const v = e === undefined ? env[variable] : stringOf(e)
    return v === undefined || v === '' ? undefined : v
  }
  let apiUrl: string = DEFAULTS.flyApiUrl
  const apiUrlE = entry(flyE?.value, 'api-url')
  const apiUrlText = stringOf(apiUrlE)
  if (apiUrlE !== undefined && apiUrlText !== undefined && /^https?:\/\//.test(apiUrlText)) {
    const checked = checkUrl(apiUrlText, true)
    if (typeof checked !== 'string') p.add(apiUrlE.value.pos, ['fly', 'api-url'], checked.error)
    else if (/\/v1$/.test(checked)) p.add(apiUrlE.value.pos, ['fly', 'api-url'], 'leave out /v1: the client appends /v1/apps/...')
    else apiUrl = checked
  }
  let privateUrl: string = DEFAULTS.flyPrivateUrl
  const privateE = entry(flyE?.value, 'private-url')
  const privateText = stringOf(privateE)
  if (privateE !== undefined && privateText !== undefined && /^https?:\/\//.test(privateText)) {
    const unknown = [...privateText.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]).filter((n) => n !== 'id' && n !== 'app' && n !== 'port')
    if (unknown.length > 0) p.add(privateE.value.pos, ['fly', 'private-url'], `unknown placeholder {${unknown[0] ?? ''}}: use {id}, {app} and {port}`)
    else {
      const checked = checkUrl(privateText.replace(/\{(id|app)\}/g, 'x').replace(/\{port\}/g, '1'), true)
      if (typeof checked !== 'string') p.add(privateE.value.pos, ['fly', 'private-url'], checked.error)
      else privateUrl = privateText.replace(/\/+$/, '')
    }
  }
  const replayTimeoutMs = duration(flyE, 'replay-timeout', DEFAULTS.flyReplayTimeoutMs, ['fly'])
  const replayE = entry(flyE?.value, 'replay-timeout')
  if (replayE !== undefined && replayTimeoutMs === 0) p.add(replayE.value.pos, ['fly', 'replay-timeout'], 'must be more than 0')
  const fly = {
    app: fromEnv('app', 'FLY_APP_NAME'),
    machineId: fromEnv('machine-id', 'FLY_MACHINE_ID'),
    region: fromEnv('region', 'FLY_REGION'),
    image: fromEnv('image', 'FLY_IMAGE_REF'),
    apiUrl,
    apiToken: fromEnv('api-token', 'FLY_API_TOKEN'),
    replayTimeoutMs,
    privateUrl,
  }

  // pools
  const poolsE = entry(root, 'pools')
  const pools: Array<[string, PoolConfig]> = []
  for (const e of poolsE?.value.kind === 'map' ? poolsE.value.entries : []) {
    pools.push([e.key, buildPool(e.key, e.value, ['pools', e.key], p)])
  }
  // Only well-named pools count as defined (a bad name is reported once, by the schema).
  const poolNames = new Set(pools.map(([name]) => name).filter((name) => new RegExp(POOL_NAME_PATTERN).test(name)))

  // rules
  const rulesE = entry(root, 'rules')
  const rules: RuleConfig[] = []
  const names = new Map<string, number>()
  for (const [i, node] of (rulesE?.value.kind === 'seq' ? rulesE.value.items : []).entries()) {
    if (node.kind !== 'map') continue
    const at = ['rules', i]
    const nameE = entry(node, 'name')
    const name = stringOf(nameE) ?? `rule-${i + 1}`
    const seen = names.get(name)
    if (seen !== undefined) p.add(nameE?.value.pos ?? node.pos, [...at, 'name'], `duplicate rule name ${JSON.stringify(name)} (rules[${seen}] has it)`)
    else names.set(name, i)
    const toE = entry(node, 'to')
    const to = stringOf(toE) ?? 'app'
    if (toE !== undefined && to !== 'app' && /^[a-z][a-z0-9-]*$/.test(to) && !poolNames.has(to)) {
      const defined = [...poolNames].join(', ')
      p.add(toE.value.pos, [...at, 'to'], `no pool named ${JSON.stringify(to)} (defined: ${defined === '' ? 'none' : defined}; or "app")`)
    }
    const matchE = entry(node, 'match')
    rules.push({ name, match: matchE === undefined ? {} : buildMatch(matchE.value, [...at, 'match'], p), to, line: node.pos.line })
  }

  // this Machine's pool: SIDECAR_POOL, else the pool that is this very Fly app (`app:`)
  const byAppName = fly.app === undefined ? undefined : pools.find(([, pool]) => pool.app === fly.app)?.[0]
  const sidecarPool = env.SIDECAR_POOL === undefined || env.SIDECAR_POOL === '' ? (byAppName ?? 'app') : env.SIDECAR_POOL
  if (sidecarPool !== 'app' && !poolNames.has(sidecarPool)) {
    p.add(poolsE?.keyPos ?? origin, ['pools'], `env SIDECAR_POOL=${JSON.stringify(sidecarPool)} names no pool defined here`)
  }
  const ownPool = pools.find(([name]) => name === sidecarPool)?.[1]
  const originApp = ownPool?.app === undefined ? undefined : env.SIDECAR_ORIGIN_APP === undefined || env.SIDECAR_ORIGIN_APP === '' ? null : env.SIDECAR_ORIGIN_APP

  return {
    file,
    listen,
    app,
    health,
    metrics,
    inspect: { maxBodyBytes },
    fly,
    pool: sidecarPool,
    ...(originApp === undefined ? {} : { originApp }),
    pools: record(pools),
    rules,
  }
}

/** Keys that describe Machines this sidecar creates: meaningless for a pool that is another app. */
const MACHINE_POOL_KEYS = ['size', 'min', 'max', 'concurrency', 'destroy-after', 'autostop', 'env', 'guest', 'unavailable'] as const

function buildPool (name: string, node: YamlNode, at: PathSegment[], p: Problems): PoolConfig {
  const guestE = entry(node, 'guest')
  const guest: { cpu_kind?: string, cpus?: number, memory_mb?: number } = {}
  const cpuKind = stringOf(entry(guestE?.value, 'cpu_kind'))
  const cpus = numberOf(entry(guestE?.value, 'cpus'))
  const memory = numberOf(entry(guestE?.value, 'memory_mb'))
  if (cpuKind !== undefined) guest.cpu_kind = cpuKind
  if (cpus !== undefined) guest.cpus = cpus
  if (memory !== undefined) guest.memory_mb = memory
  const envE = entry(node, 'env')
  const env = envE?.value.kind === 'map' ? envE.value.entries : []
  const appE = entry(node, 'app')
  const app = stringOf(appE)
  const sizeE = entry(node, 'size')
  const minE = entry(node, 'min')
  const maxE = entry(node, 'max')
  const concurrencyE = entry(node, 'concurrency')
  const destroyE = entry(node, 'destroy-after')
  const size = numberOf(sizeE)
  const min = numberOf(minE)
  const max = numberOf(maxE)
  const concurrency = numberOf(concurrencyE)
  const destroyText = stringOf(destroyE)
  const destroyMs = destroyText === undefined ? undefined : parseDuration(destroyText)
  if (destroyE !== undefined && destroyMs !== undefined) {
    if (destroyMs > MAX_DURATION_MS) p.add(destroyE.value.pos, [...at, 'destroy-after'], `must be at most ${Math.floor(MAX_DURATION_MS / 3_600_000)}h (a Node timer limit), got ${JSON.stringify(destroyText)}`)
    else if (destroyMs === 0) p.add(destroyE.value.pos, [...at, 'destroy-after'], 'must be more than 0')
  }
  const oversizeE = entry(node, 'oversize')
  let oversize = stringOf(oversizeE) as PoolConfig['oversize'] | undefined
  if (appE !== undefined) {
    for (const key of MACHINE_POOL_KEYS) {
      const e = entry(node, key)
      if (e !== undefined) p.add(e.keyPos, [...at, key], `does not apply to a pool on another Fly app (app: ${app ?? ''}): that app's own fly.toml and \`fly scale count\` decide its Machines`)
    }
    if (oversize === 'forward' && oversizeE !== undefined) p.add(oversizeE.value.pos, [...at, 'oversize'], 'a pool on another Fly app takes "local" or "reject": "forward" needs a Machine id, and Fly picks that app\'s Machine')
    oversize ??= 'local'
  } else {
    for (const e of [minE, maxE, destroyE]) {
      if (sizeE !== undefined && e !== undefined) p.add(e.keyPos, [...at, e.key], '`size` means exactly that many Machines: use min and max instead of size')
    }
    if (minE !== undefined && maxE === undefined && sizeE === undefined) p.add(minE.keyPos, [...at, 'min'], 'needs max (the most Machines the pool may have)')
    if (min !== undefined && max !== undefined && min > max) p.add(minE?.value.pos ?? node.pos, [...at, 'min'], `must be at most max (${max}), got ${min}`)
  }
  const elastic = appE === undefined && (maxE !== undefined || minE !== undefined || concurrencyE !== undefined)
  const most = max ?? size ?? DEFAULTS.poolSize
  return {
    name,
    size: most,
    autostop: (stringOf(entry(node, 'autostop')) ?? DEFAULTS.poolAutostop) as PoolConfig['autostop'],
    env: record(env.flatMap((e) => {
      const v = stringOf(e)
      return v === undefined ? [] : [[e.key, v] as const]
    })),
    guest: guest satisfies GuestOverride,
    oversize: oversize ?? DEFAULTS.poolOversize,
    unavailable: (stringOf(entry(node, 'unavailable')) ?? DEFAULTS.poolUnavailable) as PoolConfig['unavailable'],
    ...(elastic
      ? {
          elastic: {
            // `size: N` with `concurrency` is min = max = N; `max` alone starts from 0.
            min: min ?? (maxE === undefined ? most : DEFAULTS.poolMin),
            max: most,
            ...(concurrency === undefined ? {} : { concurrency }),
            destroyAfterMs: destroyMs !== undefined && destroyMs > 0 ? destroyMs : DEFAULTS.poolDestroyAfterMs,
          },
        }
      : {}),
    ...(app === undefined ? {} : { app }),
  }
}

function buildMatch (node: YamlNode, at: PathSegment[], p: Problems): RuleMatch {
  const match: { -readonly [K in keyof RuleMatch]: RuleMatch[K] } = {}
  if (node.kind !== 'map') return match
  const methodE = entry(node, 'method')
  if (methodE !== undefined) {
    const v = methodE.value
    const list = v.kind === 'seq' ? v.items : [v]
    const methods = list.flatMap((m) => m.kind === 'scalar' && typeof m.value === 'string' ? [m.value.toUpperCase()] : [])
    if (methods.length > 0) match.methods = [...new Set(methods)]
  }
  const pathE = entry(node, 'path')
  const pathText = stringOf(pathE)
  if (pathE !== undefined && pathText !== undefined) {
    const problem = checkRulePath(pathText)
    if (problem !== undefined) p.add(pathE.value.pos, [...at, 'path'], problem)
    match.path = pathText
  }
  for (const kind of ['headers', 'query', 'json', 'form'] as const) {
    const e = entry(node, kind)
    if (e?.value.kind !== 'map' || e.value.entries.length === 0) continue // empty = no condition
    const conditions: Array<[string, Condition]> = []
    const seen = new Set<string>()
    for (const c of e.value.entries) {
      const key = kind === 'headers' ? c.key.toLowerCase() : c.key
      const cat = [...at, kind, c.key]
      if (seen.has(key)) p.add(c.keyPos, cat, 'duplicate header (header names are case-insensitive)')
      seen.add(key)
      if (kind === 'json') {
        try {
          parseSelector(key)
        } catch (err) {
          if (!isSidecarError(err)) throw err
          p.add(c.keyPos, cat, `invalid selector: ${String(err.details?.reason)} (at character ${Number(err.details?.offset) + 1})`)
        }
      }
      const cond = buildCondition(c.value, kind, cat, p)
      if (cond !== undefined) conditions.push([key, cond])
    }
    match[kind] = record(conditions)
  }
  return match
}

/** Headers, query parameters and form fields are text on the wire: their values compare as strings. */
function buildCondition (node: YamlNode, kind: 'headers' | 'query' | 'json' | 'form', at: PathSegment[], p: Problems): Condition | undefined {
  const textual = kind !== 'json'
  const value = (n: YamlNode): Scalar | undefined => {
    if (n.kind !== 'scalar') return undefined
    if (!textual) return n.value
    if (n.value === null) {
      p.add(n.pos, at, 'an empty value matches nothing here: write "" for an empty value, or exists: false for absent')
      return undefined
    }
    return String(n.value)
  }
  const values = (n: YamlNode): Scalar[] | undefined => {
    if (n.kind !== 'seq') return undefined
    const out = n.items.map(value)
    return out.every((v) => v !== undefined) ? out as Scalar[] : undefined
  }
  if (node.kind === 'scalar') {
    if (kind === 'headers' && typeof node.value === 'boolean') return { kind: 'exists', value: node.value }
    const v = value(node)
    return v === undefined ? undefined : { kind: 'equals', value: v }
  }
  if (node.kind === 'seq') {
    const vs = values(node)
    return vs === undefined ? undefined : { kind: 'in', values: vs }
  }
  const [only] = node.entries
  if (only === undefined || node.entries.length !== 1) return undefined // reported by the schema
  const v = only.value
  switch (only.key) {
    case 'equals': { const x = value(v); return x === undefined ? undefined : { kind: 'equals', value: x } }
    case 'in': { const xs = values(v); return xs === undefined ? undefined : { kind: 'in', values: xs } }
    case 'prefix': return v.kind === 'scalar' && typeof v.value === 'string' ? { kind: 'prefix', value: v.value } : undefined
    case 'exists': return v.kind === 'scalar' && typeof v.value === 'boolean' ? { kind: 'exists', value: v.value } : undefined
    case 'matches': {
      if (v.kind !== 'scalar' || typeof v.value !== 'string') return undefined
      const problem = regexProblem(v.value)
      if (problem !== undefined) { p.add(v.pos, [...at, 'matches'], problem); return undefined }
      return { kind: 'matches', pattern: v.value, flags: '' }
    }
    default: return undefined
  }
}

function regexProblem (source: string): string | undefined {
  try {
    new RegExp(source) // eslint-disable-line no-new
    return undefined
  } catch (err) {
    // V8 says "Invalid regular expression: /(/: Unterminated group": keep the reason.
    return `invalid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '')}`
  }
}

/** Exact, `*` (one segment), `**` (any rest, last segment only) or `~regex`. */
function checkRulePath (text: string): string | undefined {
  if (text.startsWith('~')) return text === '~' ? 'empty regular expression after "~"' : regexProblem(text.slice(1))
  if (/[\s?#]/.test(text)) return `must not contain spaces, ? or # (the query is matched with query:), got ${JSON.stringify(text)}`
  const segments = text.split('/')
  const deep = segments.findIndex((s) => s.includes('**'))
  if (deep !== -1 && (segments[deep] !== '**' || deep !== segments.length - 1)) {
    return `"**" matches the rest of the path: it must be the whole last segment, as in "/api/**", got ${JSON.stringify(text)}`
  }
  return undefined
}

/** An http(s) URL without credentials, query or fragment; the app's also without a path. */
function checkUrl (text: string, pathAllowed: boolean): string | { error: string } {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return { error: `not a valid URL: ${JSON.stringify(text)}` }
  }
  if (url.username !== '' || url.password !== '') return { error: 'must not contain a user or password' }
  if (url.search !== '' || url.hash !== '') return { error: `must not have a query or fragment, got ${JSON.stringify(text)}` }
  if (!pathAllowed && url.pathname !== '/') return { error: `must have no path (like http://127.0.0.1:8081), got ${JSON.stringify(text)}` }
  return pathAllowed ? url.href.replace(/\/+$/, '') : url.origin
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
