// The tools the benchmark needs (wrk, nginx: from the distribution, installed with apt-get when
// missing and root) and the versions the report names.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './_targets.ts'

/** The path of an executable on PATH or in the sbin directories, or null. */
export function which (cmd: string): string | null {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    if (d !== '' && existsSync(join(d, cmd))) return join(d, cmd)
  }
  return null
}

/** wrk and nginx from Debian; installed with apt-get when missing and we are root. */
export function ensureTools (): { nginx: string | null } {
  if (which('wrk') === null || which('nginx') === null) {
    if (process.getuid?.() === 0 && which('apt-get') !== null) {
      console.error('installing nginx and wrk with apt-get ...')
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
      spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
      spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nginx', 'wrk'], { stdio: 'inherit', env })
    }
  }
  if (which('wrk') === null) throw new Error('wrk is needed (Debian: apt-get install wrk); run as root to install it automatically')
  return { nginx: which('nginx') }
}

/** `name version` from a tool's version output (`nginx -v`, `wrk -v`). */
export function toolVersion (name: string, cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8' })
  const m = /(\d+\.\d+\.\d+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)
  return `${name} ${m?.[1] ?? '?'}`
}

export function pkgVersion (name: string): string {
  try { return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version } catch { return '?' }
}
