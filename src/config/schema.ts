// The TypeBox schema of config/routes.yaml: the one source of the file's shape, its JSON Schema
// for editors and TypeBox's own check of a value. The validator that places every violation at
// its YAML position walks this schema's JSON (src/config/check.ts); the executable carries that
// JSON, made at build time, and not TypeBox (scripts/bundle.ts).
import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import { DEFAULTS } from './types.ts'
import { DURATION_PATTERN, HOST_PORT_PATTERN, SIZE_PATTERN, formatDuration, formatSize } from './units.ts'
import type { JsonSchema } from './check.ts'

/** Pool names: they go into metadata and env on Machines; `app` means the ordinary Machines. */
export const POOL_NAME_PATTERN = '^(?!app$)[a-z][a-z0-9-]*$'
/** A rule's `to`: a pool name, or `app`. */
export const POOL_REF_PATTERN = '^[a-z][a-z0-9-]*$'
/** Rule names are sent in the fly-replay `state` field, so they stay header-safe. */
export const RULE_NAME_PATTERN = '^[A-Za-z0-9._-]+$'
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$'
/** RFC 9110 §5.6.2 token: header field names and methods. */
export const TOKEN_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
export const URL_PATTERN = '^https?://'
/** A Fly app name. */
export const FLY_APP_PATTERN = '^[a-z0-9][a-z0-9-]*$'
export const ABSOLUTE_PATH_PATTERN = '^/'
export const RULE_PATH_PATTERN = '^[/~]'

const strict = { additionalProperties: false } as const

const Duration = (defaultMs: number, description: string) =>
  Type.String({ pattern: DURATION_PATTERN, default: formatDuration(defaultMs), description })

const HostPort = (host: string, port: number, description: string) =>
  Type.String({ pattern: HOST_PORT_PATTERN, default: `${host}:${port}`, description })

const ScalarSchema = Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()], { title: 'Scalar' })

/** A condition on a header, query parameter, JSON selector or form field. */
export const ConditionSchema = Type.Union([
  ScalarSchema,
  Type.Array(ScalarSchema, { minItems: 1, description: 'equals any of these' }),
  Type.Object({ equals: ScalarSchema }, { ...strict, description: 'equals this value' }),
  Type.Object({ in: Type.Array(ScalarSchema, { minItems: 1 }) }, { ...strict, description: 'equals any of these' }),
  Type.Object({ prefix: Type.String() }, { ...strict, description: 'a string starting with this' }),
  Type.Object({ matches: Type.String() }, { ...strict, description: 'a string matching this JavaScript regular expression (no slashes, no flags)' }),
  Type.Object({ exists: Type.Boolean() }, { ...strict, description: 'true: present (any value, even empty); false: absent' }),
], { title: 'Condition' })

const Conditions = (description: string, keyPattern = '^.*$') =>
  Type.Record(Type.String({ pattern: keyPattern }), ConditionSchema, { ...strict, description })

const MatchSchema = Type.Object({
  method: Type.Optional(Type.Union([
    Type.String({ pattern: TOKEN_PATTERN }),
    Type.Array(Type.String({ pattern: TOKEN_PATTERN }), { minItems: 1 }),
  ], { title: 'Methods', description: 'a method or a list of methods (any case); absent = any' })),
  path: Type.Optional(Type.String({
    pattern: RULE_PATH_PATTERN,
    description: 'exact path; `*` matches one segment, `**` any rest; `~^regex$` for a regular expression',
  })),
  headers: Type.Optional(Conditions('header name (any case) -> condition; `true` = present, `false` = absent', TOKEN_PATTERN)),
  query: Type.Optional(Conditions('query parameter -> condition')),
  json: Type.Optional(Conditions('selector (`a.b[*].c`, `[n]`, `["odd key"]`) -> condition on the JSON body')),
  form: Type.Optional(Conditions('application/x-www-form-urlencoded field -> condition')),
}, { ...strict, description: 'every condition must hold; an empty match matches every request' })

const RuleSchema = Type.Object({
  name: Type.Optional(Type.String({ pattern: RULE_NAME_PATTERN, description: 'sent as fly-replay `state`; default `rule-<n>`' })),
  match: Type.Optional(MatchSchema),
  to: Type.String({ pattern: POOL_REF_PATTERN, description: 'a pool defined under `pools`, or `app`' }),
}, strict)

const PoolSchema = Type.Object({
  size: Type.Optional(Type.Integer({ minimum: 1, default: DEFAULTS.poolSize, description: 'exactly this many Machines, created on demand, used in turn (not with min/max)' })),
  min: Type.Optional(Type.Integer({ minimum: 0, default: DEFAULTS.poolMin, description: 'Machines kept even when idle (stopped ones count); needs max' })),
  max: Type.Optional(Type.Integer({ minimum: 1, description: 'never more Machines than this; makes the pool elastic (placement by load)' })),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, description: 'requests one Machine takes before the next is used or created; default no limit' })),
  'destroy-after': Type.Optional(Duration(DEFAULTS.poolDestroyAfterMs, 'a Machine beyond min that has been stopped this long is destroyed')),
  app: Type.Optional(Type.String({ pattern: FLY_APP_PATTERN, description: 'the pool is this other Fly app: requests get fly-replay app=<name>, no token needed' })),
  autostop: Type.Optional(Type.Enum(['stop', 'suspend', 'off'], { default: DEFAULTS.poolAutostop, description: "the created Machines' services autostop" })),
  env: Type.Optional(Type.Record(Type.String({ pattern: ENV_NAME_PATTERN }), Type.String(), {
    ...strict,
    description: "extra env for created Machines, merged over the clone of this Machine's env",
  })),
  guest: Type.Optional(Type.Object({
    cpu_kind: Type.Optional(Type.Enum(['shared', 'performance'])),
    cpus: Type.Optional(Type.Integer({ minimum: 1 })),
    memory_mb: Type.Optional(Type.Integer({ minimum: 256, multipleOf: 256 })),
  }, { ...strict, description: 'override of the cloned guest' })),
  oversize: Type.Optional(Type.Enum(['forward', 'local', 'reject'], {
    default: DEFAULTS.poolOversize,
    description: 'a body too large to replay: forward it over the private network, serve it here, or answer 503',
  })),
  unavailable: Type.Optional(Type.Enum(['local', 'reject'], {
    default: DEFAULTS.poolUnavailable,
    description: 'no pool Machine can be had: serve it here, or answer 503',
  })),
}, strict)

/** The whole file, as written (kebab-case keys, durations and sizes as strings). */
export const ConfigFileSchema = Type.Object({
  listen: Type.Optional(Type.String({
    pattern: HOST_PORT_PATTERN,
    default: `${DEFAULTS.listenHost}:${DEFAULTS.listenPort}`,
    description: 'where the sidecar listens; default 0.0.0.0:${PORT:-8080}',
  })),
  app: Type.Object({
    url: Type.String({ pattern: URL_PATTERN, description: 'where the app listens, e.g. http://127.0.0.1:8081 (no path)' }),
    'ready-timeout': Type.Optional(Duration(DEFAULTS.appReadyTimeoutMs, 'early requests wait up to this long for the app port')),
    'drain-timeout': Type.Optional(Duration(DEFAULTS.appDrainTimeoutMs, 'on SIGTERM/SIGINT, in-flight requests get this long before the app is signalled')),
    'stop-timeout': Type.Optional(Duration(DEFAULTS.appStopTimeoutMs, 'after forwarding a stop signal, SIGKILL the app group after this long')),
    env: Type.Optional(Type.Record(Type.String({ pattern: ENV_NAME_PATTERN }), Type.String(), {
      ...strict,
      description: "env for the app started after `--`, over the sidecar's env with PORT set to app.url's port and FLY_API_TOKEN removed",
    })),
  }, strict),
  health: Type.Optional(Type.Object({
    path: Type.Optional(Type.String({ pattern: ABSOLUTE_PATH_PATTERN, default: DEFAULTS.healthPath, description: 'always answered by the sidecar itself' })),
  }, strict)),
  metrics: Type.Optional(Type.Union([
    Type.Boolean(),
    Type.Object({
      listen: Type.Optional(HostPort(DEFAULTS.metricsHost, DEFAULTS.metricsPort, 'where the Prometheus metrics server listens')),
      path: Type.Optional(Type.String({ pattern: ABSOLUTE_PATH_PATTERN, default: DEFAULTS.metricsPath })),
    }, strict),
  ], { title: 'Metrics', description: 'Prometheus metrics on a separate port; false turns them off' })),
  inspect: Type.Optional(Type.Object({
    'max-body': Type.Optional(Type.String({
      pattern: SIZE_PATTERN,
      default: formatSize(DEFAULTS.inspectMaxBodyBytes),
      description: 'largest request body buffered for body rules',
    })),
  }, strict)),
  fly: Type.Optional(Type.Object({
    app: Type.Optional(Type.String({ description: 'default: env FLY_APP_NAME' })),
    'machine-id': Type.Optional(Type.String({ description: 'default: env FLY_MACHINE_ID' })),
    region: Type.Optional(Type.String({ description: 'default: env FLY_REGION' })),
    image: Type.Optional(Type.String({ description: 'default: env FLY_IMAGE_REF' })),
    'api-url': Type.Optional(Type.String({ pattern: URL_PATTERN, default: DEFAULTS.flyApiUrl, description: 'the Machines API base URL' })),
    'api-token': Type.Optional(Type.String({ description: 'default: env FLY_API_TOKEN; a secret, never logged' })),
    'replay-timeout': Type.Optional(Duration(DEFAULTS.flyReplayTimeoutMs, 'the `timeout` sent in fly-replay (must cover a cold start)')),
    'private-url': Type.Optional(Type.String({
      pattern: URL_PATTERN,
      default: DEFAULTS.flyPrivateUrl,
      description: 'where `oversize: forward` sends a request; {id}, {app} and {port} are filled in',
    })),
  }, strict)),
  pools: Type.Optional(Type.Record(Type.String({ pattern: POOL_NAME_PATTERN }), PoolSchema, {
    ...strict,
    description: 'named pools of Machines that rules can send requests to',
  })),
  rules: Type.Optional(Type.Array(RuleSchema, { description: 'first match wins; no match means the `app` pool' })),
}, { ...strict, title: 'fly-replay-sidecar config (config/routes.yaml)' })

/** The file as written, after env expansion (what the schema accepts). */
export type ConfigFile = Static<typeof ConfigFileSchema>

let compiled: { Check: (value: unknown) => boolean } | undefined

/**
 * TypeBox's own verdict on a plain value; the tests assert it agrees with checkNode(). Compiled on
 * first use: the sidecar never calls it, so the executable leaves TypeBox's compiler out.
 */
export function isConfigFile (value: unknown): value is ConfigFile {
  compiled ??= Compile(ConfigFileSchema)
  return compiled.Check(value)
}

/** A value an editor sees before `${VAR}` expansion: any string with a reference in it. */
const ENV_REFERENCE = { type: 'string', pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}' }

/**
 * The JSON Schema published with the package (schema/routes.schema.json), as text. Editors check
 * the file as written, before expansion, so every value that is not a free string also accepts a
 * string holding a `${VAR}` reference (the loader checks the expanded value).
 */
export function renderJsonSchema (): string {
  const schema = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://unpkg.com/fly-replay-sidecar/schema/routes.schema.json',
    ...forEditors(JSON.parse(JSON.stringify(ConfigFileSchema)) as JsonSchema),
  }
  return JSON.stringify(schema, null, 2) + '\n'
}

function forEditors (s: JsonSchema): JsonSchema {
  const out: JsonSchema = { ...s }
  if (s.properties !== undefined) out.properties = mapValues(s.properties, forEditors)
  if (s.patternProperties !== undefined) out.patternProperties = mapValues(s.patternProperties, forEditors)
  if (s.items !== undefined) out.items = forEditors(s.items)
  if (s.anyOf !== undefined) {
    out.anyOf = s.anyOf.map(forEditors)
    return out
  }
  const freeString = s.type === 'string' && s.pattern === undefined && s.minLength === undefined
  if (s.properties !== undefined || s.patternProperties !== undefined || s.items !== undefined || freeString) return out
  // A leaf that rejects some strings: keep its annotations outside so hovers still show them.
  const { description, default: def, title, ...rule } = out as JsonSchema & { description?: string, default?: unknown }
  return { ...(title === undefined ? {} : { title }), ...(description === undefined ? {} : { description }), ...(def === undefined ? {} : { default: def }), anyOf: [rule, ENV_REFERENCE] } as JsonSchema
}

function mapValues<T> (o: Record<string, T>, f: (v: T) => T): Record<string, T> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]))
}
