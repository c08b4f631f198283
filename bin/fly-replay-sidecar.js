#!/usr/bin/env node
// The package's command. Plain JavaScript that any Node runs, because it is what `npx
// fly-replay-sidecar` starts right after `npm ci`, often under an old system Node:
// - in a checkout (src/ present, not under node_modules) it runs the TypeScript source, in this
//   process when this Node strips types, else with the Node 24 that `npm ci` brought
//   (node_modules/.bin/node, the `node` dev dependency): no build step, never a stale dist/;
// - in the published package (no src/) it runs the compiled dist/cli.js.
import { existsSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = new URL('../', import.meta.url)
const source = new URL('src/cli.ts', root)
const dist = new URL('dist/cli.js', root)
// Node refuses to strip types under node_modules (a git dependency): those use dist/ instead.
const checkout = existsSync(source) && !fileURLToPath(root).split(/[/\\]/).includes('node_modules')

function fail (message) {
  process.stderr.write(`fly-replay-sidecar: ${message}\n`)
  process.exitCode = 1
}

const [major, minor] = process.versions.node.split('.').map(Number)
const modern = major > 22 || (major === 22 && minor >= 18)

if (checkout && process.features.typescript) {
  await import(source.href)
} else if (checkout) {
  const node24 = fileURLToPath(new URL('node_modules/.bin/node', root))
  if (existsSync(node24)) runChild(node24, [fileURLToPath(source), ...process.argv.slice(2)])
  else fail(`this Node (${process.version}) cannot run the TypeScript source: run \`npm ci\` in ${fileURLToPath(root)} (it brings Node 24), or use Node >= 22.18`)
} else if (existsSync(dist)) {
  if (modern) await import(dist.href)
  else fail(`needs Node >= 22.18 (this is ${process.version})`)
} else {
  fail(`neither src/cli.ts nor dist/cli.js in ${fileURLToPath(root)}: run \`npm run build\``)
}

/**
 * Runs the CLI as a child and ends as it ends. The child gets its own process group so that a
 * Ctrl-C reaches it once, from here: npm (`npx`, `npm run`) forwards SIGINT and SIGTERM to us on
 * top of the terminal's, so a repeat within a moment is the same signal twice and is dropped.
 */
function runChild (node, args) {
  const child = spawn(node, args, { stdio: 'inherit', detached: true })
  const last = new Map()
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']) {
    process.on(signal, () => {
      const now = Date.now()
      if (now - (last.get(signal) ?? 0) < 300) return
      last.set(signal, now)
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    })
  }
  child.once('error', (err) => fail(`cannot start ${node}: ${err.message}`))
  child.once('exit', (code, signal) => {
    if (signal === null) { process.exitCode = code ?? 1; return }
    // Die of the same signal, so a caller sees what the CLI saw.
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  })
}
