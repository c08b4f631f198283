// The environment of the app started after `--` (docs/supervision.md#environment). Pure.
// - PORT is app.url's port: the sidecar's own PORT is the port the sidecar listens on, and
//   `rails server`, Puma's generated config/puma.rb and many Node servers bind $PORT.
// - The Machines API token is removed: the app needs it for nothing the sidecar does, and a
//   compromised app would otherwise hold a deploy token for the whole Fly app. That is
//   FLY_API_TOKEN, and any variable holding the token the sidecar uses (`fly.api-token:
//   ${MY_TOKEN}`).
// - `app.env` is applied last, over both: `FLY_API_TOKEN: ${FLY_API_TOKEN}` passes the token on,
//   `PORT: "3000"` sets another.
import type { Config } from './config/types.ts'

export const TOKEN_VARIABLE = 'FLY_API_TOKEN'

/** The port of an http(s) URL, its scheme's default when it names none. */
function portOf (url: string): string {
  const u = new URL(url)
  return u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80'
}

export function appEnvironment (sidecarEnv: NodeJS.ProcessEnv, config: Pick<Config, 'app' | 'fly'>): Record<string, string> {
  const token = config.fly.apiToken
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(sidecarEnv)) {
    if (value === undefined || name === TOKEN_VARIABLE) continue
    if (token !== undefined && token !== '' && value === token) continue
    env[name] = value
  }
  env.PORT = portOf(config.app.url)
  for (const [name, value] of Object.entries(config.app.env)) env[name] = value
  return env
}
