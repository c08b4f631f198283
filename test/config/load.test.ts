// The config loader: defaults, every key, every kind of error with its position and key path,
// ${VAR} expansion, the frozen result, file reading and the shipped example.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { isSidecarError } from '../../src/errors.ts'
import { DEFAULT_CONFIG_PATH, expandEnv, formatPath, formatProblems, loadConfig, parseConfig, resolveConfigPath, type ConfigProblem } from '../../src/config/load.ts'
import type { Config } from '../../src/config/types.ts'

const fixture = (name: string): string => path.join(import.meta.dirname, '..', 'fixtures', 'config', name)
const APP = 'app:\n  url: http://127.0.0.1:8081\n'

/** The problems parseConfig reports, as `line:column path: message`. */
function problems (yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'f.yaml', env)
    return []
  } catch (err) {
    if (!isSidecarError(err) || err.code !== 'SIDECAR_ERR_CONFIG_INVALID') throw err
    return (err.details?.problems as ConfigProblem[]).map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`)
  }
}

t.test('defaults: a file with only app.url and an empty env', async (t) => {
  const config = parseConfig(APP, 'config/routes.yaml', {})
  const want: Config = {
    file: path.resolve('config/routes.yaml'),
    listen: { host: '0.0.0.0', port: 8080 },
    app: { url: 'http://127.0.0.1:8081', readyTimeoutMs: 30_000, drainTimeoutMs: 3000, stopTimeoutMs: 4000, env: {} },
    health: { path: '/_sidecar/health' },
    metrics: { host: '0.0.0.0', port: 9091, path: '/metrics' },
    inspect: { maxBodyBytes: 1_048_576 },
    fly: {
      app: undefined,
      machineId: undefined,
      region: undefined,
      image: undefined,
      apiUrl: 'http://_api.internal:4280',
      apiToken: undefined,
      replayTimeoutMs: 30_000,
      privateUrl: 'http://{id}.vm.{app}.internal:{port}',
    },
    pool: 'app',
    pools: {},
    rules: [],
  }
  t.strictSame(config, want)
})

t.test('defaults that come from the environment', async (t) => {
  const flyEnv = {
    FLY_APP_NAME: 'shop',
    FLY_MACHINE_ID: '0801',
    FLY_REGION: 'ams',
    FLY_IMAGE_REF: 'registry.fly.io/shop:deployment-1',
    FLY_API_TOKEN: 'FlyV1 abc',
  }
  const c = parseConfig(APP + 'pools:\n  tasker: {}\n', 'f.yaml', { ...flyEnv, PORT: '3000', SIDECAR_POOL: 'tasker' })
  t.strictSame(c.listen, { host: '0.0.0.0', port: 3000 }, 'listen: 0.0.0.0:${PORT}')
  t.strictSame([c.fly.app, c.fly.machineId, c.fly.region, c.fly.image, c.fly.apiToken], Object.values(flyEnv))
  t.equal(c.pool, 'tasker', 'SIDECAR_POOL names this Machine\'s pool')

  const empty = parseConfig(APP, 'f.yaml', { FLY_APP_NAME: '', FLY_API_TOKEN: '', PORT: '', SIDECAR_POOL: '' })
  t.equal(empty.fly.app, undefined, 'an empty env var means unset')
  t.equal(empty.fly.apiToken, undefined)
  t.equal(empty.listen.port, 8080, 'an empty PORT means 8080')
  t.equal(empty.pool, 'app', 'an empty SIDECAR_POOL means app')
  t.equal(parseConfig(APP, 'f.yaml', { SIDECAR_POOL: 'app' }).pool, 'app', 'SIDECAR_POOL=app needs no pool')

  const explicit = parseConfig(APP + 'listen: 127.0.0.1:1\nfly:\n  app: other\n  region: ""\n', 'f.yaml', { ...flyEnv, PORT: '3000' })
  t.equal(explicit.listen.port, 1, 'listen in the file wins over PORT')
  t.equal(explicit.fly.app, 'other', 'a value in the file wins over the env')
  t.equal(explicit.fly.region, undefined, 'an empty value in the file means unset, even when the env has one')
})

t.test('defaults of pools, rules and sections', async (t) => {
  const c = parseConfig(APP + 'metrics: true\npools:\n  tasker: {}\nrules:\n  - to: tasker\n  - to: app\n    match: {}\n', 'f.yaml', {})
  t.strictSame(c.metrics, { host: '0.0.0.0', port: 9091, path: '/metrics' }, 'metrics: true = defaults')
  t.strictSame(c.pools.tasker, { name: 'tasker', size: 1, autostop: 'stop', env: {}, guest: {}, oversize: 'forward', unavailable: 'local' })
  t.strictSame(c.rules, [
    { name: 'rule-1', match: {}, to: 'tasker', line: 7 },
    { name: 'rule-2', match: {}, to: 'app', line: 8 },
  ], 'names default to rule-<n>; an absent or empty match matches everything')
  t.equal(parseConfig(APP + 'metrics: false\n', 'f.yaml', {}).metrics, null, 'metrics: false = off')
  t.strictSame(parseConfig(APP + 'metrics:\n  path: /m\n', 'f.yaml', {}).metrics, { host: '0.0.0.0', port: 9091, path: '/m' })
})

t.test('every key, set to a value other than its default', async (t) => {
  const c = parseConfig(readFileSync(fixture('full.yaml'), 'utf8'), fixture('full.yaml'), { FLY_APP_NAME: 'ignored' })
  t.strictSame(c, {
    file: fixture('full.yaml'),
    listen: { host: '127.0.0.1', port: 9000 },
    app: { url: 'https://app.internal:8443', readyTimeoutMs: 60_000, drainTimeoutMs: 500, stopTimeoutMs: 1500, env: {} },
    health: { path: '/healthz' },
    metrics: { host: '::', port: 9100, path: '/prom' },
    inspect: { maxBodyBytes: 65_536 },
    fly: {
      app: 'my-app',
      machineId: '148e21ea7e1234',
      region: 'ams',
      image: 'registry.fly.io/my-app:deployment-01',
      apiUrl: 'https://api.machines.dev',
      apiToken: 'FlyV1 secret',
      replayTimeoutMs: 120_000,
      privateUrl: 'http://127.0.0.1:{port}',
    },
    pool: 'app',
    pools: {
      tasker: {
        name: 'tasker',
        size: 3,
        autostop: 'suspend',
        env: { QUEUE: 'sync', WORKERS: '4' },
        guest: { cpu_kind: 'performance', cpus: 2, memory_mb: 4096 },
        oversize: 'reject',
        unavailable: 'reject',
      },
      'reports-2': { name: 'reports-2', size: 1, autostop: 'off', env: {}, guest: {}, oversize: 'forward', unavailable: 'local' },
    },
    rules: [
      {
        name: 'livewire-process',
        match: {
          methods: ['POST', 'PUT'],
          path: '/livewire/**',
          headers: {
            'x-livewire': { kind: 'exists', value: true },
            'x-absent': { kind: 'exists', value: false },
            'x-version': { kind: 'equals', value: '2' },
            accept: { kind: 'in', values: ['text/html', '1'] },
          },
          query: { page: { kind: 'prefix', value: '1' }, debug: { kind: 'equals', value: 'true' } },
          json: {
            'components[*].calls[*].method': { kind: 'equals', value: 'process' },
            '["odd.key"][0]': { kind: 'in', values: [1, '1', null, true] },
            count: { kind: 'equals', value: 2 },
            name: { kind: 'matches', pattern: '^a.*z$', flags: '' },
            gone: { kind: 'exists', value: false },
            nothing: { kind: 'equals', value: null },
          },
          form: { _token: { kind: 'exists', value: true } },
        },
        to: 'tasker',
        line: 35,
      },
      { name: 'rule-2', match: { path: '~^/reports/[0-9]+$' }, to: 'reports-2', line: 50 },
      { name: 'rule-3', match: {}, to: 'app', line: 52 },
    ],
  })
  t.strictSame(Object.keys(c.pools), ['tasker', 'reports-2'], 'pools keep file order')
})

// Each kind of problem, with the exact line:column and key path it is reported at.
const errorCases: Array<{ name: string, yaml: string, env?: NodeJS.ProcessEnv, want: string[] }> = [
  { name: 'yaml syntax', yaml: 'app:\n  url: "http://x\n', want: ['3:1 : Missing closing "quote'] },
  { name: 'yaml bad indent', yaml: 'app:\n  url: http://x:1\n bad: 1\n', want: ['3:1 : All mapping items must start at the same column'] },
  { name: 'duplicate key', yaml: APP + 'listen: :1\nlisten: :2\n', want: ['4:1 : Map keys must be unique'] },
  { name: 'flow with ${}', yaml: APP + 'pools:\n  t: { size: ${N} }\n', want: ['4:15 : Unexpected flow-map-start at node end (inside { } or [ ], quote values that use ${...})'] },
  { name: 'empty file', yaml: '', want: ['1:1 : the file is empty: a config needs at least app.url, where the app listens (e.g. "app: { url: http://127.0.0.1:8081 }")'] },
  { name: 'only comments', yaml: '# nothing yet\n', want: ['1:1 : the file is empty: a config needs at least app.url, where the app listens (e.g. "app: { url: http://127.0.0.1:8081 }")'] },
  { name: 'root list', yaml: '- a\n', want: ['1:1 : must be a map, got a list'] },
  { name: 'missing app', yaml: 'listen: :80\n', want: ['1:1 app: is required'] },
  { name: 'missing url', yaml: 'app:\n  ready-timeout: 1s\n', want: ['1:1 app.url: is required'] },
  { name: 'app null', yaml: 'app:\n', want: ['1:5 app: must be a map, got an empty value'] },
  { name: 'unknown top', yaml: APP + 'rule: []\n', want: ['3:1 rule: unknown key (did you mean "rules"?)'] },
  { name: 'unknown nested', yaml: APP + 'fly:\n  api_token: x\n', want: ['4:3 fly.api_token: unknown key (did you mean "api-token"?)'] },
  { name: 'url no scheme', yaml: 'app:\n  url: 127.0.0.1:8081\n', want: ['2:8 app.url: must be an http:// or https:// URL, got "127.0.0.1:8081"'] },
  { name: 'url path', yaml: 'app:\n  url: http://127.0.0.1:8081/x\n', want: ['2:8 app.url: must have no path (like http://127.0.0.1:8081), got "http://127.0.0.1:8081/x"'] },
  { name: 'url query', yaml: 'app:\n  url: http://127.0.0.1:8081?x=1\n', want: ['2:8 app.url: must not have a query or fragment, got "http://127.0.0.1:8081?x=1"'] },
  { name: 'url creds', yaml: 'app:\n  url: http://u:p@127.0.0.1:8081\n', want: ['2:8 app.url: must not contain a user or password'] },
  { name: 'url bad', yaml: 'app:\n  url: http://\n', want: ['2:8 app.url: not a valid URL: "http://"'] },
  { name: 'duration number', yaml: APP.replace('\n  url', '\n  drain-timeout: 3\n  url'), want: ['2:18 app.drain-timeout: must be a duration like "30s" (a number with ms, s, m or h), got 3: a bare number has no unit, write e.g. "30s"'] },
  { name: 'duration bad unit', yaml: APP + '  stop-timeout: 3d\n', want: ['3:17 app.stop-timeout: must be a duration like "30s" (a number with ms, s, m or h), got "3d"'] },
  { name: 'duration too long', yaml: APP + '  stop-timeout: 1000h\n', want: ['3:17 app.stop-timeout: must be at most 596h (a Node timer limit), got "1000h"'] },
  { name: 'size number', yaml: APP + 'inspect:\n  max-body: 1048576\n', want: ['4:13 inspect.max-body: must be a size like "64KiB" (a number with B, KiB, MiB, GiB, kB, MB or GB), got 1048576: a bare number has no unit, write e.g. "1MiB"'] },
  { name: 'size zero', yaml: APP + 'inspect:\n  max-body: 0B\n', want: ['4:13 inspect.max-body: must be at least 1B'] },
  { name: 'listen port range', yaml: 'listen: 0.0.0.0:70000\n' + APP, want: ['1:9 listen: port must be 0-65535, got "0.0.0.0:70000"'] },
  { name: 'listen number', yaml: 'listen: 8080\n' + APP, want: ['1:9 listen: must be host:port like "0.0.0.0:8080", got 8080: write the host too, e.g. "0.0.0.0:8080"'] },
  { name: 'env PORT bad', yaml: APP, env: { PORT: 'http' }, want: ['1:1 listen: env PORT="http" is not a port (listen defaults to 0.0.0.0:${PORT:-8080})'] },
  { name: 'metrics 1', yaml: APP + 'metrics: 1\n', want: ['3:10 metrics: must be false (off), true (defaults) or a map, got 1'] },
  { name: 'metrics same port', yaml: 'listen: :9000\n' + APP + 'metrics:\n  listen: 127.0.0.1:9000\n', want: ['5:11 metrics.listen: port 9000 is also the sidecar\'s listen port'] },
  { name: 'health path', yaml: APP + 'health:\n  path: health\n', want: ['4:9 health.path: must be a path starting with "/", got "health"'] },
  { name: 'health path query', yaml: APP + 'health:\n  path: /h?x\n', want: ['4:9 health.path: must be a plain path without spaces, ? or #, got "/h?x"'] },
  { name: 'api-url v1', yaml: APP + 'fly:\n  api-url: https://api.machines.dev/v1\n', want: ['4:12 fly.api-url: leave out /v1: the client appends /v1/apps/...'] },
  { name: 'private-url placeholder', yaml: APP + 'fly:\n  private-url: http://{ip}:{port}\n', want: ['4:16 fly.private-url: unknown placeholder {ip}: use {id}, {app} and {port}'] },
  { name: 'replay 0', yaml: APP + 'fly:\n  replay-timeout: 0s\n', want: ['4:19 fly.replay-timeout: must be more than 0'] },
  {
    name: 'pool name',
    yaml: APP + 'pools:\n  Big: {}\n  app: {}\n  9x: {}\n',
    want: [
      '4:3 pools.Big: "Big" is not a pool name: a lower-case letter, then lower-case letters, digits or "-" ("app" is reserved)',
      '5:3 pools.app: "app" is not a pool name: a lower-case letter, then lower-case letters, digits or "-" ("app" is reserved)',
      '6:3 pools["9x"]: "9x" is not a pool name: a lower-case letter, then lower-case letters, digits or "-" ("app" is reserved)',
    ]
  },
  {
    name: 'pool fields',
    yaml: APP + 'pools:\n  t:\n    size: 1.5\n    autostop: never\n    oversize: drop\n    unavailable: forward\n',
    want: [
      '5:11 pools.t.size: must be an integer of at least 1, got 1.5',
      '6:15 pools.t.autostop: must be one of "stop", "suspend", "off", got "never"',
      '7:15 pools.t.oversize: must be one of "forward", "local", "reject", got "drop"',
      '8:18 pools.t.unavailable: must be one of "local", "reject", got "forward"',
    ]
  },
  {
    name: 'pool guest',
    yaml: APP + 'pools:\n  t:\n    guest: { cpu_kind: fast, cpus: 0, memory_mb: 1000, gpus: 1 }\n',
    want: [
      '5:24 pools.t.guest.cpu_kind: must be one of "shared", "performance", got "fast"',
      '5:36 pools.t.guest.cpus: must be at least 1, got 0',
      '5:50 pools.t.guest.memory_mb: must be a multiple of 256, got 1000',
      '5:56 pools.t.guest.gpus: unknown key (did you mean "cpus"?)',
    ]
  },
  {
    name: 'pool env',
    yaml: APP + 'pools:\n  t:\n    env: { A: 1, B: true, 1C: x, D: }\n',
    want: [
      '5:15 pools.t.env.A: must be a string, got 1: quote it, e.g. "1"',
      '5:21 pools.t.env.B: must be a string, got true: quote it, e.g. "true"',
      '5:27 pools.t.env["1C"]: "1C" is not an environment variable name (letters, digits and "_", not starting with a digit)',
      '5:37 pools.t.env.D: must be a string, got an empty value',
    ]
  },
  { name: 'pools null', yaml: APP + 'pools:\n', want: ['3:7 pools: must be a map, got an empty value'] },
  {
    name: 'pool keys dedented',
    yaml: APP + 'pools:\n  tasker:\n  size: 1\n  autostop: stop\n',
    want: [
      '4:10 pools.tasker: must be a map, got an empty value: the keys below it are not indented under it',
      '5:3 pools.size: must be a map, got 1: "size" is a key inside an entry, not an entry\'s name; indent it under "tasker"',
      '6:3 pools.autostop: must be a map, got "stop": "autostop" is a key inside an entry, not an entry\'s name; indent it under "tasker"',
    ]
  },
  { name: 'rules not list', yaml: APP + 'rules: {}\n', want: ['3:8 rules: must be a list, got a map'] },
  { name: 'rule missing to', yaml: APP + 'rules:\n  - name: a\n', want: ['4:5 rules[0].to: is required'] },
  { name: 'rule to unknown', yaml: APP + 'rules:\n  - to: tasker\n', want: ['4:9 rules[0].to: no pool named "tasker" (defined: none; or "app")'] },
  { name: 'rule to bad', yaml: APP + 'rules:\n  - to: Tasker\n', want: ['4:9 rules[0].to: must be a pool name or "app", got "Tasker"'] },
  {
    name: 'rule name dup',
    yaml: APP + 'rules:\n  - { name: a, to: app }\n  - { name: a, to: app }\n  - { to: app }\n  - { name: rule-3, to: app }\n',
    want: [
      '5:13 rules[1].name: duplicate rule name "a" (rules[0] has it)',
      '7:13 rules[3].name: duplicate rule name "rule-3" (rules[2] has it)',
    ]
  },
  { name: 'rule name bad', yaml: APP + 'rules:\n  - { name: "a/b", to: app }\n', want: ['4:13 rules[0].name: must be a rule name of letters, digits, ".", "_" and "-" (it is sent in a header), got "a/b"'] },
  { name: 'method bad', yaml: APP + 'rules:\n  - to: app\n    match: { method: [GET, "PO ST"] }\n', want: ['5:28 rules[0].match.method[1]: must be an HTTP token (letters, digits and !#$%&\'*+-.^_`|~), got "PO ST"'] },
  { name: 'method empty list', yaml: APP + 'rules:\n  - to: app\n    match: { method: [] }\n', want: ['5:22 rules[0].match.method: must have at least 1 item'] },
  { name: 'method number', yaml: APP + 'rules:\n  - to: app\n    match: { method: 1 }\n', want: ['5:22 rules[0].match.method: must be an HTTP method or a list of methods, got 1'] },
  { name: 'path no slash', yaml: APP + 'rules:\n  - to: app\n    match: { path: livewire }\n', want: ['5:20 rules[0].match.path: must be a path starting with "/" (a glob) or "~" (a regular expression), got "livewire"'] },
  { name: 'path regex bad', yaml: APP + 'rules:\n  - to: app\n    match: { path: "~(" }\n', want: ['5:20 rules[0].match.path: invalid regular expression: Unterminated group'] },
  { name: 'path ** middle', yaml: APP + 'rules:\n  - to: app\n    match: { path: /a/**/b }\n', want: ['5:20 rules[0].match.path: "**" matches the rest of the path: it must be the whole last segment, as in "/api/**", got "/a/**/b"'] },
  { name: 'path a**', yaml: APP + 'rules:\n  - to: app\n    match: { path: /a** }\n', want: ['5:20 rules[0].match.path: "**" matches the rest of the path: it must be the whole last segment, as in "/api/**", got "/a**"'] },
  { name: 'header name bad', yaml: APP + 'rules:\n  - to: app\n    match: { headers: { "x a": true } }\n', want: ['5:25 rules[0].match.headers["x a"]: "x a" is not an HTTP token (letters, digits and !#$%&\'*+-.^_`|~)'] },
  { name: 'header dup', yaml: APP + 'rules:\n  - to: app\n    match: { headers: { X-A: true, x-a: "1" } }\n', want: ['5:36 rules[0].match.headers.x-a: duplicate header (header names are case-insensitive)'] },
  { name: 'header null', yaml: APP + 'rules:\n  - to: app\n    match: { headers: { x-a: } }\n', want: ['5:30 rules[0].match.headers.x-a: an empty value matches nothing here: write "" for an empty value, or exists: false for absent'] },
  { name: 'cond two ops', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: { equals: 1, in: [1] }\n', want: ['7:12 rules[0].match.json.a: must be a value, a list of values, or a map with exactly one of equals, in, prefix, matches, exists, got a map'] },
  { name: 'cond unknown op', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: { equal: 1 }\n', want: ['7:12 rules[0].match.json.a: must be a value, a list of values, or a map with exactly one of equals, in, prefix, matches, exists, got a map'] },
  { name: 'cond empty map', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: {}\n', want: ['7:12 rules[0].match.json.a: must be a value, a list of values, or a map with exactly one of equals, in, prefix, matches, exists, got a map'] },
  { name: 'cond in empty', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: { in: [] }\n', want: ['7:18 rules[0].match.json.a.in: must have at least 1 item'] },
  { name: 'cond in nested', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: { in: [[1]] }\n', want: ['7:19 rules[0].match.json.a.in[0]: must be a string, number, true/false or null, got a list'] },
  { name: 'cond prefix num', yaml: APP + 'rules:\n  - to: app\n    match:\n      query:\n        a: { prefix: 1 }\n', want: ['7:22 rules[0].match.query.a.prefix: must be a string, got 1: quote it, e.g. "1"'] },
  { name: 'cond exists str', yaml: APP + 'rules:\n  - to: app\n    match:\n      form:\n        a: { exists: "yes" }\n', want: ['7:22 rules[0].match.form.a.exists: must be true or false, got "yes"'] },
  { name: 'cond matches bad', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: { matches: "[" }\n', want: ['7:23 rules[0].match.json.a.matches: invalid regular expression: Unterminated character class'] },
  { name: 'cond list of maps', yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        a: [{ x: 1 }]\n', want: ['7:13 rules[0].match.json.a[0]: must be a string, number, true/false or null, got a map'] },
  {
    name: 'selector bad',
    yaml: APP + 'rules:\n  - to: app\n    match:\n      json:\n        "a[x]": 1\n        b.: 2\n',
    want: [
      '7:9 rules[0].match.json["a[x]"]: invalid selector: expected [n], [*] or ["key"] (at character 2)',
      '8:9 rules[0].match.json["b."]: invalid selector: selector ends with "." (at character 3)',
    ]
  },
  { name: 'env bad ref', yaml: APP + 'pools:\n  t:\n    env: { A: "${1X}" }\n', want: ['5:15 pools.t.env.A: invalid reference "${1X}": write ${NAME} or ${NAME:-default}'] },
  { name: 'env unterminated', yaml: APP + 'fly:\n  region: ${FLY_REGION\n', want: ['4:11 fly.region: unterminated "${" in "${FLY_REGION" (write $$ for a literal $)'] },
  { name: 'env unterminated, reported once', yaml: 'app:\n  url: http://127.0.0.1:${PORT\n', want: ['2:8 app.url: unterminated "${" in "http://127.0.0.1:${PORT" (write $$ for a literal $)'] },
  { name: 'env nested', yaml: APP + 'fly:\n  region: ${A:-${B}}\n', want: ['4:11 fly.region: a default cannot hold another ${...}, got "${A:-${B}}"'] },
  { name: 'SIDECAR_POOL unknown', yaml: APP + 'pools:\n  tasker: {}\n', env: { SIDECAR_POOL: 'worker' }, want: ['3:1 pools: env SIDECAR_POOL="worker" names no pool defined here'] },
  { name: 'SIDECAR_POOL no pools', yaml: APP, env: { SIDECAR_POOL: 'worker' }, want: ['1:1 pools: env SIDECAR_POOL="worker" names no pool defined here'] },
  { name: 'env structure injection', yaml: APP + 'pools:\n  t:\n    size: ${N}\n', env: { N: '{a: 1}' }, want: ['5:11 pools.t.size: must be an integer of at least 1, got "{a: 1}"'] },
  { name: 'complex key', yaml: APP + '? [a]\n: 1\n', want: ['3:3 : keys must be plain strings, not lists or maps'] },
]

t.test('each kind of problem is reported at its line:column with its key path', async (t) => {
  for (const c of errorCases) t.strictSame(problems(c.yaml, c.env), c.want, c.name)
})

t.test('all problems at once, in file order, in the error message too', async (t) => {
  const file = fixture('invalid-many.yaml')
  const err = await loadConfig(file, {}).then(() => undefined, (e: unknown) => e)
  if (!isSidecarError(err)) throw new Error('expected a SidecarError')
  t.equal(err.code, 'SIDECAR_ERR_CONFIG_INVALID')
  const list = err.details?.problems as ConfigProblem[]
  t.strictSame(list.map((p) => `${p.line}:${p.column} ${p.path}`), [
    '1:9 listen',
    '3:8 app.url',
    '4:18 app.ready-timeout',
    '5:3 app.readyTimeout',
    '6:18 metrics.path',
    '8:13 inspect.max-body',
    '10:3 pools.Tasker',
    '12:11 pools.tasker.size',
    '13:15 pools.tasker.autostop',
    '15:11 rules[0].name',
    '18:13 rules[0].match.path',
    '20:9 rules[0].match.json["a..b"]',
    '21:24 rules[0].match.json.ok.matches',
    '22:23 rules[0].match.headers.x-a',
    '23:9 rules[0].to',
    '24:5 rules[1].to',
    '24:14 rules[1].match.bogus',
  ])
  t.ok(list.every((p) => p.file === file))
  const lines = err.message.split('\n')
  t.equal(lines[0], `invalid config ${file} (17 problems):`)
  t.equal(lines[1], `${file}:1:9: listen: must be host:port like "0.0.0.0:8080", got 8080: write the host too, e.g. "0.0.0.0:8080"`)
  t.equal(lines[4], `${file}:5:3: app.readyTimeout: unknown key (did you mean "ready-timeout"?)`)
  t.equal(lines.slice(1).join('\n'), formatProblems(list))
})

t.test('formatProblems and formatPath', async (t) => {
  t.equal(formatProblems([
    { file: 'a.yaml', line: 3, column: 5, path: 'app.url', message: 'is required' },
    { file: 'a.yaml', line: 1, column: 2, path: '', message: 'Map keys must be unique' },
  ]), 'a.yaml:3:5: app.url: is required\na.yaml:1:2: Map keys must be unique')
  t.equal(formatPath(['rules', 0, 'match', 'json', 'a.b']), 'rules[0].match.json["a.b"]')
  t.equal(formatPath(['rules', 2, 'match', 'headers', 'x-livewire']), 'rules[2].match.headers.x-livewire')
  t.equal(formatPath(['pools', '9x', 'env', 'A_B']), 'pools["9x"].env.A_B')
  t.equal(formatPath([]), '')
})

t.test('${VAR} expansion on scalars', async (t) => {
  const size = (yaml: string, env: NodeJS.ProcessEnv): unknown => parseConfig(APP + `pools:\n  t:\n    ${yaml}\n`, 'f.yaml', env).pools.t
  t.equal((size('size: ${N:-2}', {}) as { size: number }).size, 2, 'a plain scalar is re-read: the default is a number')
  t.equal((size('size: ${N:-2}', { N: '5' }) as { size: number }).size, 5)
  t.equal((size('size: ${N:-2}', { N: '' }) as { size: number }).size, 2, ':- also applies to an empty value')
  t.strictSame((size('env: { A: "${N:-2}", B: "$${HOME}", C: "a$b", D: "${X}${Y}" }', { X: 'x', Y: 'y' }) as { env: unknown }).env,
    { A: '2', B: '${HOME}', C: 'a$b', D: 'xy' }, 'quoted stays a string; $$ escapes; a lone $ stays')

  const c = parseConfig('app:\n  url: http://127.0.0.1:${APP_PORT:-8081}\n  ready-timeout: ${T:-5s}\nmetrics: ${M:-false}\nfly:\n  region: ${R}\n  image: ${IMG}\n',
    'f.yaml', { APP_PORT: '9001', IMG: '[a, b]' })
  t.equal(c.app.url, 'http://127.0.0.1:9001')
  t.equal(c.app.readyTimeoutMs, 5000)
  t.equal(c.metrics, null, 'false re-read as a boolean')
  t.equal(c.fly.region, undefined, 'unset without a default: empty, so not on Fly')
  t.equal(c.fly.image, '[a, b]', 'an env value cannot inject YAML structure')
  t.equal(parseConfig(APP + 'fly:\n  region: ${R}\n', 'f.yaml', { R: '# not a comment' }).fly.region, '# not a comment')
  const fly = (yaml: string, env: NodeJS.ProcessEnv): Config['fly'] => parseConfig(APP + `fly:\n  ${yaml}\n`, 'f.yaml', env).fly
  t.equal(fly('machine-id: ${ID}', { ID: '12345678901234' }).machineId, '12345678901234', 'where a string is wanted, a re-read value keeps its text')
  t.equal(fly('region: ${R}', { R: 'null' }).region, 'null')
  t.equal(fly('app: ${A}', { A: '1e3' }).app, '1e3')
  t.strictSame(problems(APP + 'fly:\n  region: 12\n'), ['4:11 fly.region: must be a string, got 12: quote it, e.g. "12"'],
    'a number written in the file is still a number')
  const json = parseConfig(APP + 'rules:\n  - to: app\n    match:\n      json:\n        n: ${N}\n        s: "${N}"\n', 'f.yaml', { N: '5' }).rules[0]?.match.json
  t.strictSame(json, { n: { kind: 'equals', value: 5 }, s: { kind: 'equals', value: '5' } }, 'a JSON condition keeps the re-read type')
  t.equal(parseConfig('app:\n  url: http://127.0.0.1:8081 # ${NOT_EXPANDED}\n', 'f.yaml', {}).app.url, 'http://127.0.0.1:8081', 'comments are not expanded')
})

t.test('expandEnv', async (t) => {
  const env = { A: 'a', E: '' }
  const cases: Array<[string, string | { error: string }]> = [
    ['${A}', 'a'], ['x${A}y', 'xay'], ['${B}', ''], ['${B:-d}', 'd'], ['${E:-d}', 'd'], ['${A:-d}', 'a'],
    ['${B:-}', ''], ['${B:-a b:c}', 'a b:c'], ['$$', '$'], ['$${A}', '${A}'], ['$$$${A}', '$${A}'], ['a$', 'a$'], ['$A', '$A'],
    ['${', { error: 'unterminated "${" in "${" (write $$ for a literal $)' }],
    ['${A B}', { error: 'invalid reference "${A B}": write ${NAME} or ${NAME:-default}' }],
    ['${A-d}', { error: 'invalid reference "${A-d}": write ${NAME} or ${NAME:-default}' }],
  ]
  for (const [text, want] of cases) t.strictSame(expandEnv(text, env), want, text)
})

t.test('the result is deep-frozen', async (t) => {
  const c = parseConfig(readFileSync(fixture('full.yaml'), 'utf8'), 'full.yaml', {})
  const objects: unknown[] = [c, c.listen, c.app, c.fly, c.pools, c.pools.tasker, c.pools.tasker?.env, c.pools.tasker?.guest, c.rules,
    c.rules[0], c.rules[0]?.match, c.rules[0]?.match.methods, c.rules[0]?.match.json, c.rules[0]?.match.json?.['["odd.key"][0]']]
  for (const [i, o] of objects.entries()) t.ok(Object.isFrozen(o), `object ${i} is frozen`)
  t.throws(() => { (c.listen as { port: number }).port = 1 }, TypeError)
  t.throws(() => { (c.rules as RuleLike[]).push({}) }, TypeError)
  t.equal(c.listen.port, 9000)
})
type RuleLike = object

t.test('keys are data: a __proto__ key is an own property, not a prototype', async (t) => {
  const c = parseConfig(APP + 'rules:\n  - to: app\n    match:\n      json:\n        __proto__: 1\n      query: { constructor: x }\n', 'f.yaml', {})
  const json = c.rules[0]?.match.json ?? {}
  t.equal(Object.getPrototypeOf(json), Object.prototype)
  t.strictSame(Object.keys(json), ['__proto__'])
  t.strictSame(Object.getOwnPropertyDescriptor(json, '__proto__')?.value, { kind: 'equals', value: 1 })
  t.strictSame(Object.keys(c.rules[0]?.match.query ?? {}), ['constructor'])
})

t.test('aliases are expanded, and a billion laughs is stopped', async (t) => {
  const c = parseConfig(APP + 'pools:\n  a: &p { size: 2 }\n  b: *p\n', 'f.yaml', {})
  t.equal(c.pools.b?.size, 2)
  let bomb = 'x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n'
  for (let i = 1; i < 8; i++) bomb += `x${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`
  const found = problems(APP + bomb)
  t.ok(found.some((p) => p.includes('more than 100000 values')), 'capped')
})

t.test('loadConfig: read errors keep the cause', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sidecar-config-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const missing = path.join(dir, 'nope.yaml')
  const err = await loadConfig(missing, {}).then(() => undefined, (e: unknown) => e)
  if (!isSidecarError(err)) throw new Error('expected a SidecarError')
  t.equal(err.code, 'SIDECAR_ERR_CONFIG_READ')
  t.equal(err.message, `cannot read config file ${missing} (ENOENT: no such file; name it with --config FILE or SIDECAR_CONFIG, else config/routes.yaml in the working directory is read)`)
  t.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT')
  const dirErr = await loadConfig(dir, {}).then(() => undefined, (e: unknown) => e)
  t.match(dirErr, { code: 'SIDECAR_ERR_CONFIG_READ', cause: { code: 'EISDIR' } })

  const good = path.join(dir, 'ok.yaml')
  await writeFile(good, APP)
  const c = await loadConfig(good, {})
  t.equal(c.file, good)
  t.equal(c.app.url, 'http://127.0.0.1:8081')
})

t.test('resolveConfigPath: argv, else SIDECAR_CONFIG, else config/routes.yaml', async (t) => {
  t.equal(DEFAULT_CONFIG_PATH, 'config/routes.yaml')
  t.equal(resolveConfigPath(undefined, {}), path.resolve('config/routes.yaml'))
  t.equal(resolveConfigPath(undefined, { SIDECAR_CONFIG: 'x/y.yaml' }), path.resolve('x/y.yaml'))
  t.equal(resolveConfigPath('a.yaml', { SIDECAR_CONFIG: 'x/y.yaml' }), path.resolve('a.yaml'))
  t.equal(resolveConfigPath('/abs/r.yaml', {}), '/abs/r.yaml')
  t.equal(resolveConfigPath(undefined, { SIDECAR_CONFIG: '' }), path.resolve('config/routes.yaml'))
})

t.test('the shipped config/routes.yaml loads with an empty env', async (t) => {
  const file = path.join(import.meta.dirname, '..', '..', 'config', 'routes.yaml')
  const text = readFileSync(file, 'utf8')
  t.equal(text.split('\n')[0], '# yaml-language-server: $schema=../schema/routes.schema.json')
  const c = await loadConfig(file, {})
  t.equal(c.app.url, 'http://127.0.0.1:8081')
  t.strictSame(c.pools, { tasker: { name: 'tasker', size: 1, autostop: 'stop', env: {}, guest: {}, oversize: 'forward', unavailable: 'local' } })
  t.strictSame(c.rules.map((r) => ({ ...r, line: 0 })), [{
    name: 'livewire-process',
    match: {
      methods: ['POST'],
      path: '/livewire/update',
      headers: { 'x-livewire': { kind: 'exists', value: true } },
      json: { 'components[*].calls[*].method': { kind: 'equals', value: 'process' } },
    },
    to: 'tasker',
    line: 0,
  }])
  t.equal(text.split('\n')[(c.rules[0]?.line ?? 0) - 1], '  - name: livewire-process        # sent as fly-replay `state`; shows in logs and metrics')
  t.equal((await loadConfig(file, { APP_PORT: '3000', SIDECAR_POOL: 'tasker' })).app.url, 'http://127.0.0.1:3000')
})

t.test('the commented app.env example of the shipped config/routes.yaml is valid once uncommented', async (t) => {
  const file = path.join(import.meta.dirname, '..', '..', 'config', 'routes.yaml')
  const text = readFileSync(file, 'utf8')
  const lines = text.split('\n')
  const at = lines.indexOf('  # env:                          # set over the app\'s env, which is the sidecar\'s with PORT =')
  t.ok(at > 0, 'the example is there, under app:')
  let i = at
  lines[i] = lines[i]!.replace('  # env:', '  env:')
  while (lines[++i]?.startsWith('  #   ') === true) lines[i] = lines[i]!.replace('  #   ', '    ')
  t.equal(i - at, 3, 'two variables')
  const c = parseConfig(lines.join('\n'), file, { FLY_API_TOKEN: 'FlyV1 fm2_x' })
  t.strictSame(c.app.env, { WEB_CONCURRENCY: '2', FLY_API_TOKEN: 'FlyV1 fm2_x' })
})
