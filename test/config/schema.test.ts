// The schema is the one source: the committed JSON Schema, TypeBox's verdicts and the docs all
// follow it.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { Compile } from 'typebox/compile'
import { parse } from 'yaml'
import { parseConfig } from '../../src/config/load.ts'
import { ConfigFileSchema, isConfigFile, renderJsonSchema } from '../../src/config/schema.ts'
import { describe } from '../../src/config/check.ts'

const root = path.join(import.meta.dirname, '..', '..')
const read = (p: string): string => readFileSync(path.join(root, p), 'utf8')

t.test('schema/routes.schema.json is up to date (regenerate with npm run schema)', async (t) => {
  t.equal(read('schema/routes.schema.json'), renderJsonSchema())
})

t.test('the published schema checks files as editors see them, before expansion', async (t) => {
  const published = Compile(JSON.parse(read('schema/routes.schema.json')) as Parameters<typeof Compile>[0])
  for (const file of ['config/routes.yaml', 'test/fixtures/config/full.yaml']) {
    t.ok(published.Check(parse(read(file))), `${file} passes`)
  }
  t.ok(published.Check(parse('app:\n  url: http://127.0.0.1:${P:-1}\n  ready-timeout: ${T:-30s}\npools:\n  t:\n    size: ${N:-1}\n')),
    'a ${VAR} reference is accepted wherever a typed value goes')
  t.notOk(published.Check(parse(read('test/fixtures/config/invalid-many.yaml'))), 'invalid-many.yaml fails')
  t.notOk(published.Check(parse('app:\n  url: http://x\n  ready-timeout: 30\n')), 'a bare-number duration fails')
})

t.test('TypeBox agrees: structurally invalid values fail isConfigFile()', async (t) => {
  const app = 'app:\n  url: http://127.0.0.1:8081\n'
  const invalid = [
    '', 'listen: :80\n', app + 'x: 1\n', app + 'listen: 8080\n', app + 'metrics: 1\n', app + 'pools:\n  Big: {}\n',
    app + 'pools:\n  app: {}\n', app + 'pools:\n  t: { size: 0 }\n', app + 'pools:\n  t: { guest: { memory_mb: 300 } }\n',
    app + 'pools:\n  t: { env: { A: 1 } }\n', app + 'rules:\n  - name: a\n', app + 'rules:\n  - { to: app, match: { method: [] } }\n',
    app + 'rules:\n  - { to: app, match: { json: { a: { equals: 1, in: [1] } } } }\n',
    app + 'rules:\n  - { to: app, match: { headers: { "x y": true } } }\n',
    app + 'rules:\n  - { to: app, match: { path: x } }\n', app + 'inspect: { max-body: 1 MiB }\n',
  ]
  for (const text of invalid) t.notOk(isConfigFile(parse(text)), JSON.stringify(text))
  t.ok(isConfigFile(parse(read('test/fixtures/config/full.yaml'))), 'full.yaml passes')
})

t.test('describe() words each schema', async (t) => {
  t.equal(describe(ConfigFileSchema.properties.listen), 'host:port like "0.0.0.0:8080"')
  t.equal(describe(ConfigFileSchema.properties.metrics), 'false (off), true (defaults) or a map')
  t.equal(describe(ConfigFileSchema.properties.rules), 'a list')
})

/** Every key path of the schema: `app.ready-timeout`, `pools.<name>.size`, `rules[].match.json`. */
function keyPaths (s: Record<string, unknown>, prefix: string, out: Set<string>, conditionKeys: Set<string>): void {
  if (s.title === 'Condition') {
    for (const b of s.anyOf as Array<Record<string, unknown>>) {
      for (const k of Object.keys((b.properties ?? {}) as object)) conditionKeys.add(k)
    }
    return
  }
  for (const b of (s.anyOf ?? []) as Array<Record<string, unknown>>) keyPaths(b, prefix, out, conditionKeys)
  for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Record<string, unknown>>)) {
    const p = prefix === '' ? k : `${prefix}.${k}`
    out.add(p)
    keyPaths(v, p, out, conditionKeys)
  }
  for (const v of Object.values((s.patternProperties ?? {}) as Record<string, Record<string, unknown>>)) keyPaths(v, `${prefix}.<name>`, out, conditionKeys)
  if (s.items !== undefined) keyPaths(s.items as Record<string, unknown>, `${prefix}[]`, out, conditionKeys)
}

t.test('docs/configuration.md names every key of the schema', async (t) => {
  const docs = read('docs/configuration.md')
  const paths = new Set<string>()
  const conditionKeys = new Set<string>()
  keyPaths(ConfigFileSchema as unknown as Record<string, unknown>, '', paths, conditionKeys)
  t.ok(paths.has('pools.<name>.guest.memory_mb') && paths.has('rules[].match.json') && paths.has('metrics.listen'), 'the walk reaches nested keys')
  t.strictSame([...conditionKeys].sort(), ['equals', 'exists', 'in', 'matches', 'prefix'])
  for (const p of paths) t.ok(docs.includes(`\`${p}\``), `\`${p}\` is documented`)
  for (const k of conditionKeys) t.ok(docs.includes(`\`${k}\``), `condition \`${k}\` is documented`)
})

t.test('the error example in docs/configuration.md is what the loader prints', async (t) => {
  const errors = read('docs/configuration.md').split('## Errors')[1] ?? ''
  const [, yaml, printed] = /```yaml\n([\s\S]*?)```[\s\S]*?```\n([\s\S]*?)\n```/.exec(errors) ?? []
  t.ok(yaml !== undefined && printed !== undefined, 'the example is there')
  t.throws(() => parseConfig(yaml ?? '', 'config/routes.yaml', {}), { code: 'SIDECAR_ERR_CONFIG_INVALID', message: printed })
})
