// examples/ holds the start scripts, server configs, sidecar configs and Dockerfiles that
// docs/deploying.md shows and test/realservers/ runs: the page must show each file exactly as it
// is, and show all of them; README's short Dockerfile must agree with the page.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseConfig } from '../src/config/load.ts'

const root = path.resolve(import.meta.dirname, '..')
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8')
const FRAMEWORKS = ['laravel', 'rails', 'django', 'node']

function filesUnder (dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)])
}

/** `<!-- example: examples/x -->` followed by a fenced block: file → the block's text. */
function shown (md: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of md.matchAll(/^<!-- example: (\S+) -->\n```[a-z]*\n([\s\S]*?)^```$/gm)) out.set(m[1] as string, m[2] as string)
  return out
}

const page = read('docs/deploying.md')
const blocks = shown(page)

t.test('docs/deploying.md shows every example file exactly as it is', async (t) => {
  const files = FRAMEWORKS.flatMap((f) => filesUnder(path.join('examples', f))).sort()
  t.strictSame([...blocks.keys()].sort(), files, 'each file once, and nothing that is not a file')
  for (const file of files) t.equal(blocks.get(file), read(file), file)
})

t.test('the example configs are valid and point at 127.0.0.1:8081', async (t) => {
  for (const file of [...blocks.keys()].filter((f) => /config\/(routes|sidecar)\.yaml$/.test(f))) {
    const config = parseConfig(read(file), file, {})
    t.equal(config.app.url, 'http://127.0.0.1:8081', file)
  }
})

t.test('the start script is executable', async (t) => {
  t.equal(statSync(path.join(root, 'examples/laravel/docker/start-app')).mode & 0o111, 0o111)
})

t.test('README\'s short Dockerfile agrees with docs/deploying.md', async (t) => {
  const readme = /## Laravel on Fly, in short[\s\S]*?```dockerfile\n([\s\S]*?)```/.exec(read('README.md'))?.[1] ?? ''
  const stage = (text: string): string => /FROM node:24-bookworm-slim AS sidecar\n[\s\S]*?\n\n/.exec(text)?.[0] ?? 'none'
  const sidecarStage = /```dockerfile\n(# syntax=docker\/dockerfile:1\nFROM node:24-bookworm-slim AS sidecar\n[\s\S]*?)```/.exec(page)?.[1] ?? ''
  t.match(stage(readme), /RUN node scripts\/bundle\.ts --out \/fly-replay-sidecar\n/, 'README has the sidecar stage')
  t.equal(stage(readme), stage(`${sidecarStage}\n`), 'the sidecar build stage of section 1, line for line')
  const artisan = /### Laravel with `php artisan serve`[\s\S]*?```dockerfile\n([\s\S]*?)```/.exec(page)?.[1] ?? ''
  for (const prefix of ['COPY --from=sidecar', 'ENTRYPOINT', 'CMD', 'EXPOSE', 'ENV PHP_CLI_SERVER_WORKERS', 'RUN composer install', 'RUN composer dump-autoload']) {
    const line = (text: string): string | undefined => text.split('\n').find((l) => l.startsWith(prefix))
    t.equal(line(readme), line(artisan), `${prefix} as in the php artisan serve Dockerfile`)
  }
})
