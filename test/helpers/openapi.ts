// Checks calls recorded by the fake Machines API against Fly's OpenAPI spec
// (spec/fly/machines-api-openapi3.json, vendored; see spec/fly/README.md): operation, path and query parameters, headers, the
// request body (strictly: unknown fields are errors) and the fake's JSON answer.
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import type { ValidateFunction } from 'ajv'
import type { RecordedCall } from '../../src/emulator/machines-api.ts'

type Json = Record<string, unknown>

const SPEC_URL = new URL('../../spec/fly/machines-api-openapi3.json', import.meta.url)
/** The one list filter Fly documents (machines-resource page) but the spec leaves out. */
const UNLISTED_QUERY = /^metadata\.[A-Za-z0-9_.-]+$/

interface Operation {
  readonly method: string
  readonly template: string
  readonly pattern: RegExp
  readonly op: Json
  readonly params: Json[]
}

/** Adds additionalProperties: false to every object schema that lists its properties. */
function strictCopy (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strictCopy)
  if (typeof value !== 'object' || value === null) return value
  const out: Json = {}
  for (const [k, v] of Object.entries(value)) out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v as Json).map(([p, s]) => [p, strictCopy(s)])) : strictCopy(v)
  if (out.properties !== undefined && out.additionalProperties === undefined) out.additionalProperties = false
  return out
}

/** Points local refs at the registered spec so inline schemas compile on their own. */
function rebase (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(rebase)
  if (typeof schema !== 'object' || schema === null) return schema
  const out: Json = {}
  for (const [k, v] of Object.entries(schema)) out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `spec.json${v}` : rebase(v)
  return out
}

export interface SpecValidator {
  /** Problems with one call; empty when it follows the spec. `operationId` is the matched operation. */
  check (call: RecordedCall): { operationId: string | undefined, problems: string[] }
  /** Problems of every call, prefixed with the call's method and path. */
  checkAll (calls: readonly RecordedCall[]): string[]
}

/** Loads the spec once per test file. */
export function loadMachinesSpec (): SpecValidator {
  const spec = JSON.parse(readFileSync(SPEC_URL, 'utf8')) as Json
  const base = new URL(((spec.servers as Json[])[0] as Json).url as string).pathname.replace(/\/$/, '')
  const loose = new Ajv({ strict: false, allErrors: true })
  const strict = new Ajv({ strict: false, allErrors: true })
  loose.addSchema(spec, 'spec.json')
  strict.addSchema(strictCopy(spec) as Json, 'spec.json')
  const compiled = new Map<Ajv, Map<unknown, ValidateFunction>>([[loose, new Map()], [strict, new Map()]])
  const compile = (ajv: Ajv, schema: unknown): ValidateFunction => {
    const cache = compiled.get(ajv) as Map<unknown, ValidateFunction>
    let fn = cache.get(schema)
    if (fn === undefined) {
      fn = ajv.compile(rebase(ajv === strict ? strictCopy(schema) : schema) as Json)
      cache.set(schema, fn)
    }
    return fn
  }
  const operations: Operation[] = []
  for (const [template, item] of Object.entries(spec.paths as Record<string, Json>)) {
    const pattern = new RegExp(`^${base}${template.replace(/\{[^}]+\}/g, '([^/]+)')}$`)
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      const op = item[method] as Json | undefined
      if (op === undefined) continue
      operations.push({ method: method.toUpperCase(), template, pattern, op, params: [...(item.parameters as Json[] ?? []), ...(op.parameters as Json[] ?? [])] })
    }
  }
  const errorsOf = (fn: ValidateFunction): string => (fn.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}${e.params !== undefined && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`).join('; ')

  function coerce (raw: string, schema: Json): unknown {
    if (schema.type === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw
    if (schema.type === 'integer' || schema.type === 'number') return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw
    return raw
  }

  function check (call: RecordedCall): { operationId: string | undefined, problems: string[] } {
    const problems: string[] = []
    const operation = operations.find((o) => o.method === call.method && o.pattern.test(call.path))
    if (operation === undefined) return { operationId: undefined, problems: [`no operation ${call.method} ${call.path} in the spec`] }
    const operationId = operation.op.operationId as string
    const pathValues = operation.pattern.exec(call.path)?.slice(1) ?? []
    const pathNames = [...operation.template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])
    for (const param of operation.params) {
      const name = param.name as string
      const schema = (param.schema ?? {}) as Json
      const values: string[] = param.in === 'path'
        ? [decodeURIComponent(pathValues[pathNames.indexOf(name)] ?? '')]
        : param.in === 'query' ? [call.query[name] ?? []].flat() : []
      if (param.required === true && values.length === 0) problems.push(`missing ${String(param.in)} parameter ${name}`)
      for (const raw of values) {
        const fn = compile(loose, schema)
        if (!fn(coerce(raw, schema))) problems.push(`${String(param.in)} parameter ${name}=${raw}: ${errorsOf(fn)}`)
      }
    }
    for (const [key, value] of Object.entries(call.query)) {
      if (operation.params.some((p) => p.in === 'query' && p.name === key)) {
        if (Array.isArray(value) && key !== 'state') problems.push(`query parameter ${key} repeated`)
        continue
      }
      if (!(operationId === 'Machines_list' && UNLISTED_QUERY.test(key))) problems.push(`query parameter ${key} is not in the spec`)
    }
    if (typeof call.headers.authorization !== 'string' || !/^(Bearer|FlyV1) \S/.test(call.headers.authorization)) problems.push('no Authorization: Bearer/FlyV1 header')
    const requestBody = operation.op.requestBody as Json | undefined
    if (call.body === undefined) {
      if (requestBody?.required === true) problems.push('request body required')
    } else if (requestBody === undefined) {
      problems.push('request body sent to an operation that takes none')
    } else {
      if (!String(call.headers['content-type']).startsWith('application/json')) problems.push(`content-type ${String(call.headers['content-type'])}`)
      const schema = ((requestBody.content as Json)['application/json'] as Json).schema
      const fn = compile(strict, schema)
      if (!fn(call.body)) problems.push(`request body: ${errorsOf(fn)}`)
    }
    const response = ((operation.op.responses as Json)[String(call.status)] as Json | undefined)?.content as Json | undefined
    const responseSchema = (response?.['application/json'] as Json | undefined)?.schema
    if (responseSchema !== undefined && call.response !== undefined) {
      const fn = compile(loose, responseSchema)
      if (!fn(call.response)) problems.push(`response ${call.status}: ${errorsOf(fn)}`)
    }
    return { operationId, problems }
  }

  return {
    check,
    checkAll (calls) {
      return calls.flatMap((call) => check(call).problems.map((p) => `${call.method} ${call.path}: ${p}`))
    },
  }
}
