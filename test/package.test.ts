// What `npm pack` would publish: the built dist/ with types, the JSON Schema, README, LICENSE and
// CHANGELOG, every file package.json points at, and no tests, sources or tooling.
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = new URL('..', import.meta.url)
const rootDir = root.pathname

interface PackFile { path: string, size: number }

// A fresh clone has no dist/: build it once as `npm pack` would (prepack), then pack without scripts.
const built = run('npm', ['run', 'build'], { cwd: rootDir, timeout: 120_000 })

t.test('npm pack contents', async (t) => {
  await built
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

  t.ok(files.has('bin/fly-replay-sidecar.js'), 'packs the command')
  t.ok(readFileSync(new URL('bin/fly-replay-sidecar.js', root), 'utf8').startsWith('#!/usr/bin/env node\n'), 'the bin has its shebang')
})

t.test('the packed package\'s command runs dist/ (no sources in it)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pack-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await built
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: rootDir, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })
  const [packed] = JSON.parse(stdout) as { filename: string }[]
  await run('tar', ['-xzf', path.join(dir, packed!.filename), '-C', dir])
  const pkg = path.join(dir, 'package')
  // Its dependencies, as npm would install them beside it.
  symlinkSync(path.join(rootDir, 'node_modules'), path.join(pkg, 'node_modules'))
  const bin = path.join(pkg, 'bin/fly-replay-sidecar.js')
  const version = await run(process.execPath, [bin, '--version'], { cwd: pkg })
  t.equal(version.stdout, `${(JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string }).version}\n`)
  const check = await run(process.execPath, [bin, 'check'], { cwd: pkg })
  t.match(check.stdout, /^config\/routes\.yaml: ok\n/, 'checks the packed example config')
})

t.test('the version in package.json has its CHANGELOG section, under Unreleased', async (t) => {
  const { version } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string }
  const changelog = readFileSync(new URL('CHANGELOG.md', root), 'utf8')
  const sections = [...changelog.matchAll(/^## (.+)$/gm)].map((m) => m[1])
  t.equal(sections[0], 'Unreleased')
  t.match(sections[1], new RegExp(`^${version.replaceAll('.', '\\.')} - \\d{4}-\\d{2}-\\d{2}$`), 'the released version comes next, dated (docs/releasing.md)')
})
