// What `npm pack` would publish: the built dist/ with types, the JSON Schema, README, LICENSE and
// CHANGELOG, every file package.json points at, and no tests, sources or tooling.
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = new URL('..', import.meta.url)
const rootDir = root.pathname

interface PackFile { path: string, size: number }

t.test('npm pack contents', async (t) => {
  // A fresh clone has no dist/: build it as `npm pack` would (prepack), then list without scripts.
  await run('npm', ['run', 'build'], { cwd: rootDir, timeout: 120_000 })
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: rootDir, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })
  const [pack] = JSON.parse(stdout) as { files: PackFile[] }[]
  const files = new Set(pack!.files.map((f) => f.path))

  for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'schema/routes.schema.json', 'config/routes.yaml', 'dist/cli.js', 'dist/cli.d.ts', 'dist/errors.js', 'dist/errors.d.ts']) {
    t.ok(files.has(f), `packs ${f}`)
  }

  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
    main: string, types: string, bin: Record<string, string>, exports: Record<string, string | Record<string, string>>
  }
  const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin)]
  for (const e of Object.values(pkg.exports)) targets.push(...(typeof e === 'string' ? [e] : Object.values(e)))
  for (const target of targets) t.ok(files.has(target.replace(/^\.\//, '')), `package.json points at a packed file: ${target}`)

  const unwanted = [...files].filter((f) =>
    /^(test|src|bench|scripts|docs|examples|\.tap|\.ci|node_modules)\//.test(f) ||
    /\.test\.[cm]?[jt]s$/.test(f) ||
    (/\.[cm]?ts$/.test(f) && !/\.d\.[cm]?ts$/.test(f))
  )
  t.strictSame(unwanted, [], 'no tests, sources or tooling')

  const cli = readFileSync(new URL('dist/cli.js', root), 'utf8')
  t.ok(cli.startsWith('#!/usr/bin/env node\n'), 'the bin keeps its shebang')
})
