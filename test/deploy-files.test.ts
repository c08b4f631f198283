// Docker cannot run here, so the deployment files are checked directly: the Dockerfile's stages
// and paths agree with the bundle script, fly.toml agrees with the sidecar's defaults, and every
// routes.yaml, fly.toml and Dockerfile shown in the docs is valid and wired the same way.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseConfig } from '../src/config/load.ts'
import { DEFAULTS } from '../src/config/types.ts'
import { BUNDLE_LAUNCHER } from '../scripts/bundle.ts'

const root = path.resolve(import.meta.dirname, '..')
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8')

type TomlValue = string | number | boolean
/** The subset of TOML fly.toml files use: [table], [[array.of.tables]], key = "string" | number | bool. */
function readToml (text: string): Map<string, TomlValue[]> {
  const out = new Map<string, TomlValue[]>()
  let table = ''
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const header = /^\[\[?([\w.]+)\]\]?$/.exec(line)
    if (header !== null) { table = header[1] as string; continue }
    const kv = /^([\w-]+)\s*=\s*(.+)$/.exec(line)
    if (kv === null) throw new Error(`not understood: ${line}`)
    const rawValue = kv[2] as string
    const value: TomlValue = rawValue.startsWith('"') ? JSON.parse(rawValue) as string : rawValue === 'true' ? true : rawValue === 'false' ? false : Number(rawValue)
    const key = table === '' ? kv[1] as string : `${table}.${kv[1] as string}`
    out.set(key, [...(out.get(key) ?? []), value])
  }
  return out
}

function seconds (v: TomlValue | undefined): number {
  if (typeof v === 'number') return v
  const m = /^(\d+)s$/.exec(String(v))
  if (m === null) throw new Error(`not a duration in seconds: ${String(v)}`)
  return Number(m[1])
}

/** What every fly.toml of ours must say about the sidecar. */
function checkFlyToml (t: Test, toml: Map<string, TomlValue[]>, name: string): void {
  t.strictSame(toml.get('http_service.internal_port'), [DEFAULTS.listenPort], `${name}: internal_port is the sidecar's`)
  t.strictSame(toml.get('http_service.checks.path'), [DEFAULTS.healthPath], `${name}: the check is on the health path`)
  t.strictSame(toml.get('http_service.checks.method'), ['GET'], `${name}: checks use GET`)
  t.strictSame(toml.get('metrics.port'), [DEFAULTS.metricsPort], `${name}: [metrics] port`)
  t.strictSame(toml.get('metrics.path'), [DEFAULTS.metricsPath], `${name}: [metrics] path`)
  t.strictSame(toml.get('kill_signal'), ['SIGTERM'], `${name}: kill_signal`)
  const kill = seconds(toml.get('kill_timeout')?.[0])
  t.ok(kill * 1000 > DEFAULTS.appDrainTimeoutMs + DEFAULTS.appStopTimeoutMs, `${name}: kill_timeout ${kill}s > drain + stop`)
  t.ok(kill <= 300, `${name}: kill_timeout within Fly's maximum`)
}

/** Fenced blocks of one language in a markdown page. */
function blocks (md: string, lang: string): string[] {
  return [...md.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1] as string)
}

/** `COPY <<'EOF' dest` ... `EOF` heredocs of a Dockerfile, by destination. */
function heredocs (dockerfile: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of dockerfile.matchAll(/^COPY <<'EOF' (\S+)\n([\s\S]*?)^EOF$/gm)) out.set(m[1] as string, m[2] as string)
  return out
}

/** What every Dockerfile of ours must do with the bundle. */
function checkDockerfile (t: Test, text: string, name: string, appInCmd = true): void {
  const stages = [...text.matchAll(/^FROM \S+(?: AS (\S+))?$/gm)].map((m) => m[1]).filter((s): s is string => s !== undefined)
  for (const m of text.matchAll(/^COPY --from=(\S+)/gm)) {
    const from = m[1] as string
    t.ok(stages.includes(from) || from.includes(':'), `${name}: COPY --from=${from} names a stage or an image`)
  }
  t.match(text, /^FROM node:24-bookworm-slim AS \w+$/m, `${name}: the bundle is built on node:24-bookworm-slim`)
  t.match(text, /node scripts\/bundle\.ts --out \/fly-replay-sidecar\b/, `${name}: runs the bundle script into /fly-replay-sidecar`)
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(text)
  t.ok(entrypoint, `${name}: has an exec-form ENTRYPOINT`)
  const argv = JSON.parse(entrypoint?.[1] ?? '[]') as string[]
  t.equal(argv[0], `/opt/fly-replay-sidecar/${BUNDLE_LAUNCHER}`, `${name}: the sidecar is the entrypoint`)
  t.equal(argv[argv.length - 1] === '--' || argv.includes('--'), true, `${name}: the app command follows --`)
  t.match(text, /^COPY --from=\S+ \/fly-replay-sidecar \/opt\/fly-replay-sidecar$/m, `${name}: copies the bundle to /opt/fly-replay-sidecar`)
  const cmd = /^CMD (\[.*\])$/m.exec(text)
  t.ok(cmd, `${name}: has an exec-form CMD (the app)`)
  // On loopback by its own arguments, by a start script, or by binding $PORT, which the sidecar
  // sets to app.url's port (Puma's config, Thruster's HTTP_PORT from app.env, npm start).
  if (appInCmd) t.match(cmd?.[1] ?? '', /127\.0\.0\.1|start-app|"\.\/bin\/rails", "server"|"npm", "run", "start"/, `${name}: the app listens on loopback`)
}

t.test('Dockerfile: build stage, scratch bundle stage, demo stage', async (t) => {
  const text = read('Dockerfile')
  t.match(text, /^# syntax=docker\/dockerfile:1\n/, 'heredocs need the dockerfile:1 syntax')
  t.match(text, /^FROM node:24-bookworm-slim AS build$/m)
  t.match(text, /^FROM scratch AS sidecar\nCOPY --from=build \/fly-replay-sidecar \/fly-replay-sidecar$/m)
  t.match(text, /^RUN npm ci --no-audit --no-fund --ignore-scripts$/m)
  // The build stage copies only what .dockerignore lets in.
  const ignore = read('.dockerignore')
  for (const m of text.matchAll(/^COPY (?!--from|<<)(.+) \S+$/gm)) {
    for (const src of (m[1] as string).split(' ')) t.match(ignore, new RegExp(`^!${src.replace(/\/$/, '')}$`, 'm'), `.dockerignore lets ${src} in`)
  }
  // The demo app's address is in its own source, checked below.
  checkDockerfile(t, text, 'Dockerfile', false)
  const demoConfig = heredocs(text).get('/app/config/routes.yaml')
  t.ok(demoConfig, 'the demo config is in the Dockerfile')
  const config = parseConfig(demoConfig ?? '', 'Dockerfile:/app/config/routes.yaml', {})
  t.equal(config.app.url, 'http://127.0.0.1:8081')
  t.match(heredocs(text).get('/app/app.py') ?? '', "ThreadingHTTPServer(('127.0.0.1', 8081)", 'the demo app listens where app.url says')
})

t.test('fly.toml for the demo agrees with the sidecar defaults', async (t) => {
  const toml = readToml(read('fly.toml'))
  checkFlyToml(t, toml, 'fly.toml')
  t.strictSame(toml.get('build.dockerfile'), ['Dockerfile'])
})

for (const page of ['docs/deploying.md', 'docs/getting-started.md']) {
  t.test(`${page}: every config, fly.toml and Dockerfile shown is valid`, async (t) => {
    const md = read(page)
    const yamls = blocks(md, 'yaml').filter((y) => /^app:/m.test(y))
    t.ok(yamls.length > 0, 'has a config')
    for (const y of yamls) t.doesNotThrow(() => parseConfig(y, page, {}), 'the config is valid')
    const tomls = blocks(md, 'toml').filter((b) => b.includes('[http_service]'))
    t.ok(tomls.length > 0, 'has a fly.toml')
    for (const b of tomls) checkFlyToml(t, readToml(b), page)
    // Whole Dockerfiles; a lone ENTRYPOINT line shown as a change to make is not one.
    const dockerfiles = blocks(md, 'dockerfile').filter((d) => d.includes('ENTRYPOINT') && /^FROM /m.test(d))
    t.ok(dockerfiles.length > 0, 'has Dockerfiles')
    for (const d of dockerfiles) checkDockerfile(t, d, `${page} (${/^FROM (\S+)$/m.exec(d.split('\n').filter((l) => l.startsWith('FROM')).pop() ?? '')?.[1] ?? 'app'})`)
    t.match(md, 'fly secrets set FLY_API_TOKEN="$(fly tokens create deploy)"', 'the token step')
  })
}
