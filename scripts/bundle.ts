// Builds the self-contained sidecar: src/cli.ts and every dependency in one ESM file, next to a
// copy of the Node binary running this script, in one directory (default dist/bundle/) that a
// Dockerfile copies with `COPY --from=` into an app image that has no Node and no node_modules.
//   node scripts/bundle.ts [--out DIR]
import { build } from 'esbuild'
import { chmod, copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** File names inside the bundle directory; docs/deploying.md and the Dockerfile use them. */
export const BUNDLE_ENTRY = 'fly-replay-sidecar.mjs'
export const BUNDLE_NODE = 'node'
export const BUNDLE_LAUNCHER = 'fly-replay-sidecar'
export const BUNDLE_LICENSES = 'THIRD_PARTY_LICENSES.txt'

// Bundled CommonJS packages call require() on Node built-ins and read __dirname; an ESM file
// has neither, so the bundle defines them first from its own location.
const BANNER = [
  "import { createRequire as __sidecarCreateRequire } from 'node:module';",
  "import { fileURLToPath as __sidecarFileURLToPath } from 'node:url';",
  "import { dirname as __sidecarDirname } from 'node:path';",
  'const require = __sidecarCreateRequire(import.meta.url);',
  'const __filename = __sidecarFileURLToPath(import.meta.url);',
  'const __dirname = __sidecarDirname(__filename);',
].join('\n')

/**
 * V8 flags the launcher runs the sidecar with (SIDECAR_NODE_FLAGS replaces them). A young
 * generation capped at 4 MiB semi-spaces (V8 grows them to 16 MiB under load) lowers the RSS a
 * busy proxy settles at with no measurable cost per request. Smaller is a trade-off, not a
 * default: at 1 MiB, 16 MiB responses ran 2.5x faster with a third less peak RSS, but a small
 * proxied GET cost about 30% more CPU (docs/performance.md, "Memory and the V8 young generation").
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4']

// A POSIX sh launcher, for images that have /bin/sh (all the Debian/Ubuntu based PHP, Ruby and
// Python images do); distroless images call the node binary directly.
const LAUNCHER = `#!/bin/sh
# fly-replay-sidecar: runs the bundled sidecar with the Node binary next to it.
# SIDECAR_NODE_FLAGS replaces the default V8 flags (set it empty for V8's defaults).
dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# shellcheck disable=SC2086 # the flags are words
exec "$dir/${BUNDLE_NODE}" \${SIDECAR_NODE_FLAGS-${NODE_FLAGS.join(' ')}} "$dir/${BUNDLE_ENTRY}" "$@"
`

export interface BundleOptions {
  /** Output directory; default dist/bundle in the repository. It is emptied first. */
  outDir?: string
  /** Node binary to copy; default the one running this script. */
  nodeBinary?: string
}

export interface BundleResult {
  readonly dir: string
  readonly entry: string
  readonly node: string
  readonly launcher: string
  readonly entryBytes: number
  readonly nodeBytes: number
  /** npm packages inlined into the entry file. */
  readonly packages: readonly string[]
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
 * into the bundle gets its license text in one file beside it.
 */
async function thirdPartyLicenses (packageDirs: readonly string[]): Promise<{ text: string, names: string[] }> {
  const sections: string[] = []
  const names: string[] = []
  for (const dir of packageDirs) {
    const pkg = JSON.parse(await readFile(join(ROOT, dir, 'package.json'), 'utf8')) as { name: string, version: string, license?: string }
    names.push(`${pkg.name}@${pkg.version}`)
    const files = (await readdir(join(ROOT, dir))).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort()
    const texts = await Promise.all(files.map((f) => readFile(join(ROOT, dir, f), 'utf8')))
    sections.push(`${pkg.name}@${pkg.version} (${pkg.license ?? 'see package'})\n\n${texts.join('\n').trim() || '(no license file in the package)'}`)
  }
  const rule = `\n\n${'-'.repeat(78)}\n\n`
  return { text: `Third-party software inlined into ${BUNDLE_ENTRY}:${rule}${sections.join(rule)}\n`, names }
}

/** Builds the bundle directory and returns what is in it. */
export async function bundle (options: BundleOptions = {}): Promise<BundleResult> {
  const dir = resolve(options.outDir ?? join(ROOT, 'dist', 'bundle'))
  const nodeBinary = options.nodeBinary ?? process.execPath
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })

  const entry = join(dir, BUNDLE_ENTRY)
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [join(ROOT, 'src', 'cli.ts')],
    outfile: entry,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    banner: { js: BANNER },
    // Readable stack traces matter more in a sidecar's logs than a smaller file.
    minify: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
    // The bundle has no package.json beside it: the CLI's --version reads this instead.
    define: { 'globalThis.__SIDECAR_VERSION__': JSON.stringify(JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version) },
  })

  const packageDirs = [...new Set(Object.keys(result.metafile.inputs).map(packageDirOf).filter((d): d is string => d !== undefined))].sort()
  const licenses = await thirdPartyLicenses(packageDirs)
  await writeFile(join(dir, BUNDLE_LICENSES), licenses.text)

  const node = join(dir, BUNDLE_NODE)
  await copyFile(nodeBinary, node)
  await chmod(node, 0o755)
  const launcher = join(dir, BUNDLE_LAUNCHER)
  await writeFile(launcher, LAUNCHER, { mode: 0o755 })
  await chmod(entry, 0o755)

  return {
    dir,
    entry,
    node,
    launcher,
    entryBytes: (await stat(entry)).size,
    nodeBytes: (await stat(node)).size,
    packages: licenses.names,
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2)
  const outAt = args.indexOf('--out')
  const outDir = outAt === -1 ? undefined : args[outAt + 1]
  const r = await bundle(outDir === undefined ? {} : { outDir })
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
  process.stdout.write(`${r.dir}\n  ${BUNDLE_ENTRY} ${mb(r.entryBytes)} (${r.packages.length} packages inlined)\n  ${BUNDLE_NODE} ${mb(r.nodeBytes)} (${process.version})\n  ${BUNDLE_LAUNCHER}, ${BUNDLE_LICENSES}\n`)
}
