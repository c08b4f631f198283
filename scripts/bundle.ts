// Builds the sidecar's one executable file: a Node single executable application (SEA) holding
// src/executable.ts and every dependency bundled by esbuild, with its V8 flags baked in, beside
// the licence texts of what it contains, in one directory (default dist/bundle/) that a
// Dockerfile copies with `COPY --from=` into an app image that has no Node and no node_modules.
//   npm run bundle -- [--out DIR]        (or, with Node 24: node scripts/bundle.ts [--out DIR])
import { build, type Plugin } from 'esbuild'
import { execFile } from 'node:child_process'
import { chmod, copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { isDeepStrictEqual, promisify } from 'node:util'
import { inject } from 'postject'

const run = promisify(execFile)
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** File names inside the bundle directory; docs/deploying.md and the Dockerfile use them. */
export const BUNDLE_EXECUTABLE = 'fly-replay-sidecar'
export const BUNDLE_LICENSES = 'THIRD_PARTY_LICENSES.txt'
/** Kept for the docs and tests that name the executable as "the launcher". */
export const BUNDLE_LAUNCHER = BUNDLE_EXECUTABLE

/** Names Node's SEA loader looks for in the executable (node/src/node_sea.cc). */
const SEA_RESOURCE = 'NODE_SEA_BLOB'
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'

/**
 * V8 flags baked into the executable (the SEA config's execArgv). A young generation capped at
 * 4 MiB semi-spaces (V8 grows them to 16 MiB under load) lowers the RSS a busy proxy settles at
 * with no measurable cost per request; smaller is a trade-off, not a default (docs/performance.md,
 * "Memory and the V8 young generation"). The old generation grows by a fixed 20% between full
 * collections instead of V8's factor of up to 4x: under 64 connections, what survives two young
 * collections (requests in flight) otherwise grew it to 3x its live size, and the peak RSS of a
 * --quick bench fell from 137 to 112 MiB for about 10% more CPU per replay answer (the case that
 * allocates most) and none measurable per proxied GET or POST ("Peak memory and the old
 * generation"). NODE_OPTIONS, read after them, can change the first; the second is not a flag
 * Node accepts there.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--heap-growing-percent=20']

export interface BundleOptions {
  /** Output directory; default dist/bundle in the repository. It is emptied first. */
  outDir?: string
  /** Node binary the executable is made from; default the one running this script. */
  nodeBinary?: string
  /** Where the intermediate files go (the JavaScript, the SEA blob); default `<outDir>.build`. */
  workDir?: string
  /** Strip the binary's symbols and debug info when `strip` is installed; default true. */
  strip?: boolean
  /** Minify the JavaScript; default true (false keeps it readable for a CPU profile of start-up). */
  minify?: boolean
  /** Put V8's code cache in the blob; default true (false to measure what it costs or buys). */
  codeCache?: boolean
  /** V8 flags baked in; default NODE_FLAGS (bench experiments bake others). */
  nodeFlags?: readonly string[]
}

export interface BundleResult {
  readonly dir: string
  /** The single executable. */
  readonly executable: string
  /** The bundled JavaScript inside it (in workDir), runnable as `node NODE_FLAGS entry` too. */
  readonly entry: string
  readonly entryBytes: number
  /** The SEA blob: the JavaScript and its V8 code cache. */
  readonly blobBytes: number
  readonly nodeBytes: number
  readonly executableBytes: number
  /** Whether the Node binary was stripped before the blob went in. */
  readonly stripped: boolean
  readonly nodeVersion: string
  /** npm packages inlined into the entry file. */
  readonly packages: readonly string[]
  /** The repository's own files in the bundle, relative to the repository (a Docker build must copy them). */
  readonly sources: readonly string[]
  /** What the JavaScript still loads at run time (Node's built-ins only, or it cannot run). */
  readonly externals: readonly string[]
}

/** The npm package directory (node_modules/[@scope/]name) an input path belongs to, if any. */
function packageDirOf (input: string): string | undefined {
  const parts = input.split(/[/\\]/)
  const at = parts.lastIndexOf('node_modules')
  if (at === -1) return undefined
  const name = parts[at + 1]
  if (name === undefined) return undefined
  const len = name.startsWith('@') ? 3 : 2
  return parts.slice(0, at + len).join(sep)
}

/**
 * MIT and friends ask that their notices travel with copies of the code: every package inlined
 * into the bundle, and Node itself, gets its licence text in one file beside the executable.
 */
async function thirdPartyLicenses (packageDirs: readonly string[], nodeVersion: string, nodeLicense: string | undefined): Promise<{ text: string, names: string[] }> {
  const sections: string[] = [`Node.js ${nodeVersion} (MIT and the licences of its dependencies)\n\n${nodeLicense?.trim() ?? 'The executable is the Node.js binary: its licence is the LICENSE file of the Node.js release of this version.'}`]
  const names: string[] = []
  for (const dir of packageDirs) {
    const pkg = JSON.parse(await readFile(join(ROOT, dir, 'package.json'), 'utf8')) as { name: string, version: string, license?: string }
    names.push(`${pkg.name}@${pkg.version}`)
    const files = (await readdir(join(ROOT, dir))).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort()
    const texts = await Promise.all(files.map((f) => readFile(join(ROOT, dir, f), 'utf8')))
    sections.push(`${pkg.name}@${pkg.version} (${pkg.license ?? 'see package'})\n\n${texts.join('\n').trim() || '(no license file in the package)'}`)
  }
  const rule = `\n\n${'-'.repeat(78)}\n\n`
  return { text: `Third-party software in ${BUNDLE_EXECUTABLE}:${rule}${sections.join(rule)}\n`, names }
}

/** Node's LICENSE where a release keeps it beside its binary (bin/node → ../LICENSE), if there. */
async function nodeLicenseText (nodeBinary: string): Promise<string | undefined> {
  for (const candidate of [join(dirname(nodeBinary), '..', 'LICENSE'), join(dirname(nodeBinary), '..', 'share', 'doc', 'node', 'LICENSE')]) {
    try { return await readFile(candidate, 'utf8') } catch { /* not in this layout */ }
  }
  return undefined
}

/**
 * `dev` runs the emulator from a checkout (it starts the demo app and src/cli.ts): in the
 * executable it would only fail later and less clearly, so the executable says so at once.
 */
const devOnlyInCheckout: Plugin = {
  name: 'dev-only-in-checkout',
  setup (b) {
    b.onResolve({ filter: /\/emulator\/dev\.ts$/ }, () => ({ path: 'dev', namespace: 'dev-only-in-checkout' }))
    b.onLoad({ filter: /.*/, namespace: 'dev-only-in-checkout' }, () => ({
      resolveDir: join(ROOT, 'src'),
      loader: 'ts',
      contents: `import { SidecarError } from './errors.ts'
export async function main (): Promise<number> {
  throw new SidecarError('SIDECAR_ERR_EMULATOR_SETUP', ['dev runs from a checkout of fly-replay-sidecar (npm start), not from the executable'])
}`,
    }))
  },
}

/**
 * pino loads its transport code (worker threads, thread-stream, node:worker_threads and node:module)
 * when it is loaded, for `pino.transport()` and the `transport` option, which run a log pipeline in
 * a worker thread. The sidecar never uses them (it logs to stdout, src/log.ts): in the executable
 * the transport entry is one that says so, and the rest is never loaded; nor is node:worker_threads.
 */
const pinoWithoutTransports: Plugin = {
  name: 'pino-without-transports',
  setup (b) {
    b.onResolve({ filter: /^\.\.?\/(?:lib\/)?transport$/ }, (a) => /[/\\]node_modules[/\\]pino[/\\]/.test(a.importer) ? { path: 'transport', namespace: 'pino-without-transports' } : undefined)
    // pino reads isMainThread only for a destination with sync: false (to flush it at exit in a
    // worker); the sidecar's is sync (src/log.ts), so it never decides anything there.
    b.onResolve({ filter: /^(?:node:)?worker_threads$/ }, (a) => /[/\\]node_modules[/\\]pino[/\\]lib[/\\]tools\.js$/.test(a.importer) ? { path: 'worker_threads', namespace: 'pino-without-transports' } : undefined)
    b.onLoad({ filter: /^transport$/, namespace: 'pino-without-transports' }, () => ({
      loader: 'js',
      contents: `module.exports = function transport () {
  throw new Error('pino transports are not in the fly-replay-sidecar executable: it logs to stdout')
}`,
    }))
    b.onLoad({ filter: /^worker_threads$/, namespace: 'pino-without-transports' }, () => ({ loader: 'js', contents: 'module.exports = { isMainThread: true }' }))
  },
}

/**
 * The config's schema as the JSON TypeBox builds, made at build time: the executable checks
 * configs by walking that JSON (src/config/check.ts) and never loads TypeBox, whose builders were
 * 190 KiB of the bundle and about 15 ms of every start. What src/config/schema.ts exports as data
 * goes in as literals; its functions (TypeBox's own check, the editor's JSON Schema) are for the
 * tests and scripts, and say so if called. An export that is not plain JSON fails the build.
 */
const configSchemaAsJson: Plugin = {
  name: 'config-schema-as-json',
  setup (b) {
    const schemaFile = join(ROOT, 'src', 'config', 'schema.ts')
    b.onLoad({ filter: /[/\\]src[/\\]config[/\\]schema\.ts$/ }, async (a) => {
      if (resolve(a.path) !== schemaFile) return undefined
      const mod = await import(pathToFileURL(schemaFile).href) as Record<string, unknown>
      const lines: string[] = []
      for (const [name, value] of Object.entries(mod)) {
        if (typeof value === 'function') {
          lines.push(`export function ${name} () { throw new Error(${JSON.stringify(`${name}() is not in the fly-replay-sidecar executable (it leaves TypeBox out)`)}) }`)
          continue
        }
        const json = JSON.stringify(value)
        if (json === undefined || !isDeepStrictEqual(JSON.parse(json), value)) throw new Error(`src/config/schema.ts: the export ${name} is not plain JSON, so the executable cannot carry it as data`)
        lines.push(`export const ${name} = ${json}`)
      }
      return { contents: lines.join('\n'), loader: 'js' }
    })
  },
}

/** The SEA asset holding undici, and its file beside the entry (for `node <entry>`). */
const UNDICI_ASSET = 'undici.cjs'

/**
 * undici (the Machines API client's HTTP) is loaded on the first API call, and many sidecars never
 * make one. Inlined, its 540 KiB were still part of the one script the executable compiles at
 * start and keeps as a string in the V8 heap, for every sidecar. So it is built on its own and
 * carried as a SEA asset, read and compiled by `import('undici')` when first called.
 */
const undiciFromAsset: Plugin = {
  name: 'undici-from-asset',
  setup (b) {
    b.onResolve({ filter: /^undici$/ }, (a) => a.kind === 'dynamic-import' ? { path: 'undici', namespace: 'undici-from-asset' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'undici-from-asset' }, () => ({
      loader: 'js',
      contents: `const { isSea, getAsset } = require('node:sea')
const { compileFunction } = require('node:vm')
const source = isSea()
  ? getAsset(${JSON.stringify(UNDICI_ASSET)}, 'utf8')
  : require('node:fs').readFileSync(require('node:path').join(__dirname, ${JSON.stringify(UNDICI_ASSET)}), 'utf8')
const undici = { exports: {} }
compileFunction(source, ['exports', 'require', 'module'], { filename: ${JSON.stringify(UNDICI_ASSET)} })(undici.exports, require, undici)
module.exports = undici.exports`,
    }))
  },
}

/**
 * sonic-boom (pino's destination) requires node:assert for one argument check, and node:assert
 * brings 7 of Node's built-in modules (its diff and colour machinery). In the executable its
 * `assert` is a plain check that throws the same message.
 */
const sonicBoomPlainAssert: Plugin = {
  name: 'sonic-boom-plain-assert',
  setup (b) {
    b.onResolve({ filter: /^(?:node:)?assert$/ }, (a) => /[/\\]node_modules[/\\]sonic-boom[/\\]/.test(a.importer) ? { path: 'assert', namespace: 'sonic-boom-plain-assert' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'sonic-boom-plain-assert' }, () => ({
      loader: 'js',
      contents: `module.exports = function assert (value, message) {
  if (!value) throw Object.assign(new Error(message), { code: 'ERR_ASSERTION' })
}`,
    }))
  },
}

/**
 * prom-client's process CPU metric requires @opentelemetry/api at load, to label exemplars with
 * the active trace span. The sidecar enables no exemplars, and the executable can hold no
 * OpenTelemetry SDK, without which the API finds no span anyway: in the executable the API is a
 * stub that finds none, and the 24 KiB package (its global registration at load) is left out.
 */
const promClientWithoutOtel: Plugin = {
  name: 'prom-client-without-otel',
  setup (b) {
    b.onResolve({ filter: /^@opentelemetry\/api$/ }, (a) => /[/\\]node_modules[/\\]prom-client[/\\]/.test(a.importer) ? { path: 'otel', namespace: 'prom-client-without-otel' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'prom-client-without-otel' }, () => ({
      loader: 'js',
      contents: 'module.exports = { trace: { getSpan: () => undefined }, context: { active: () => undefined } }',
    }))
  },
}

/** Runs `strip` on `file`; false when the tool is not installed. */
async function stripBinary (file: string): Promise<boolean> {
  try {
    await run('strip', ['--strip-all', file])
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

/** Builds the bundle directory and returns what is in it. */
export async function bundle (options: BundleOptions = {}): Promise<BundleResult> {
  const dir = resolve(options.outDir ?? join(ROOT, 'dist', 'bundle'))
  const work = resolve(options.workDir ?? join(dirname(dir), `${basename(dir)}.build`))
  const nodeBinary = options.nodeBinary ?? process.execPath
  await Promise.all([rm(dir, { recursive: true, force: true }), rm(work, { recursive: true, force: true })])
  await Promise.all([mkdir(dir, { recursive: true }), mkdir(work, { recursive: true })])
  const nodeVersion = (await run(nodeBinary, ['--version'])).stdout.trim()

  // CommonJS: the format a SEA's main script runs in (require is Node's built-ins only).
  const entry = join(work, `${BUNDLE_EXECUTABLE}.cjs`)
  // Both scripts: the main one and undici's, which the Machines API client loads on first use.
  const common = {
    absWorkingDir: ROOT,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    // The source stays in the V8 heap beside its code cache: 1.7 MiB minified against 3.7 MiB.
    // Functions keep their own names (stack traces name them); only local names are shortened.
    minify: options.minify !== false,
    keepNames: true,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  } as const
  const result = await build({
    ...common,
    entryPoints: [join(ROOT, 'src', 'executable.ts')],
    outfile: entry,
    // cli.ts reads package.json through import.meta.url only when __SIDECAR_VERSION__ is unset.
    logOverride: { 'empty-import-meta': 'silent' },
    plugins: [devOnlyInCheckout, pinoWithoutTransports, sonicBoomPlainAssert, promClientWithoutOtel, configSchemaAsJson, undiciFromAsset],
    // The executable has no package.json beside it: the CLI's --version reads this instead.
    define: { 'globalThis.__SIDECAR_VERSION__': JSON.stringify(JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version) },
  })

  const undiciFile = join(work, UNDICI_ASSET)
  const undici = await build({
    ...common,
    stdin: { contents: "module.exports = require('undici')", resolveDir: ROOT, loader: 'js', sourcefile: 'undici-asset.cjs' },
    outfile: undiciFile,
  })
  const inputs = [...Object.keys(result.metafile.inputs), ...Object.keys(undici.metafile.inputs)]
  const outputs = [...Object.values(result.metafile.outputs), ...Object.values(undici.metafile.outputs)]
  const packageDirs = [...new Set(inputs.map(packageDirOf).filter((d): d is string => d !== undefined))].sort()
  const licenses = await thirdPartyLicenses(packageDirs, nodeVersion, await nodeLicenseText(nodeBinary))
  await writeFile(join(dir, BUNDLE_LICENSES), licenses.text)

  // The blob must come from the same Node as the binary it goes into: that Node writes it.
  const blob = join(work, 'sea.blob')
  const seaConfig = join(work, 'sea-config.json')
  await writeFile(seaConfig, JSON.stringify({
    main: entry,
    output: blob,
    disableExperimentalSEAWarning: true,
    // V8's compiled code for the bundle, made at build time: start-up skips parsing and compiling,
    // and the idle heap is smaller (1.8 MiB less anonymous memory, docs/performance.md).
    useCodeCache: options.codeCache !== false,
    assets: { [UNDICI_ASSET]: undiciFile },
    execArgv: options.nodeFlags ?? NODE_FLAGS,
    // NODE_OPTIONS may add flags after these (a later value of a V8 flag wins).
    execArgvExtension: 'env',
  }, null, 2))
  // The code cache is made by this Node process, and V8 accepts it only where its flags hash the
  // same: a flag that changes the hash (--heap-growing-percent does) must be given here too, or
  // the executable rejects the cache and compiles everything at start, with a warning.
  await run(nodeBinary, [...(options.nodeFlags ?? NODE_FLAGS), '--experimental-sea-config', seaConfig], { cwd: work })

  const executable = join(dir, BUNDLE_EXECUTABLE)
  await copyFile(nodeBinary, executable)
  await chmod(executable, 0o755)
  // Symbols and debug info are not needed to run (a crash's native stack loses its names). Strip
  // before the blob goes in: strip rewrites the ELF file and keeps its notes, among them the blob's.
  const stripped = options.strip !== false && await stripBinary(executable)
  const nodeBytes = (await stat(executable)).size
  await inject(executable, SEA_RESOURCE, await readFile(blob), { sentinelFuse: SEA_FUSE })

  return {
    dir,
    executable,
    entry,
    entryBytes: (await stat(entry)).size,
    blobBytes: (await stat(blob)).size,
    nodeBytes,
    executableBytes: (await stat(executable)).size,
    stripped,
    nodeVersion,
    packages: licenses.names,
    sources: inputs.filter((i) => packageDirOf(i) === undefined && !i.includes(':') && i !== 'undici-asset.cjs').sort(),
    externals: [...new Set(outputs.flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path)))].sort(),
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2)
  const outAt = args.indexOf('--out')
  const outDir = outAt === -1 ? undefined : args[outAt + 1]
  const r = await bundle(outDir === undefined ? {} : { outDir })
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
  process.stdout.write([
    r.dir,
    `  ${BUNDLE_EXECUTABLE} ${mb(r.executableBytes)}: Node ${r.nodeVersion} ${mb(r.nodeBytes)}${r.stripped ? ' (stripped)' : ' (not stripped: no strip command)'} + blob ${mb(r.blobBytes)} (${mb(r.entryBytes)} of JavaScript, ${r.packages.length} packages, and its code cache)`,
    `  ${BUNDLE_LICENSES}`,
    '',
  ].join('\n'))
}
