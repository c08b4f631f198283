// The config as an emulated Machine's sidecar runs it. On Fly every Machine has its own network,
// so a config can name fixed ports (8080, 9091, the app's 8081) and the Machines API at
// _api.internal; under `dev` every Machine shares this computer's loopback. `dev` starts each
// Machine's sidecar with the ports and the API URL it gave that Machine (env PORT, METRICS_PORT,
// APP_PORT, FLY_API_URL), and this puts them in place of the file's, so any config that is right
// on Fly runs unchanged under `dev`. Everything else (rules, pools, timeouts) is the file's.
import type { Config, HostPort } from '../config/types.ts'
import { SidecarError } from '../errors.ts'

/** The emulator's Machines bind loopback only, whatever address the file gives (often 0.0.0.0). */
export const EMULATED_HOST = '127.0.0.1'

/**
 * The first argument of `dev` that makes it run one emulated Machine's sidecar instead of the
 * emulator: how `dev` starts its Machines, not a user-facing option.
 */
export const MACHINE_ARG = '--emulated-machine'

function portFrom (env: NodeJS.ProcessEnv, name: string): number {
  const text = env[name]
  const port = Number(text)
  if (text === undefined || !/^[0-9]+$/.test(text) || port < 1 || port > 65_535) {
    throw new SidecarError('SIDECAR_ERR_EMULATOR_SETUP', [`an emulated Machine needs ${name} (a port), got ${JSON.stringify(text ?? null)}`])
  }
  return port
}

/**
 * `config` with this Machine's ports and the emulator's Machines API: `listen` and
 * `metrics.listen` on loopback at $PORT and $METRICS_PORT, `fly.api-url` = $FLY_API_URL, and,
 * when the sidecar starts the app (`runsApp`), `app.url`'s port = $APP_PORT, where the app must
 * listen. Without an app command every Machine proxies to the one app the user runs at app.url.
 */
export function emulatedConfig (config: Config, env: NodeJS.ProcessEnv, runsApp: boolean): Config {
  const apiUrl = env.FLY_API_URL
  if (apiUrl === undefined || apiUrl === '') throw new SidecarError('SIDECAR_ERR_EMULATOR_SETUP', ['an emulated Machine needs FLY_API_URL'])
  const listen: HostPort = Object.freeze({ host: EMULATED_HOST, port: portFrom(env, 'PORT') })
  const metrics = config.metrics === null ? null : Object.freeze({ ...config.metrics, host: EMULATED_HOST, port: portFrom(env, 'METRICS_PORT') })
  let app = config.app
  if (runsApp) {
    const url = new URL(config.app.url)
    url.port = String(portFrom(env, 'APP_PORT'))
    app = Object.freeze({ ...config.app, url: url.origin })
  }
  return Object.freeze({ ...config, listen, metrics, app, fly: Object.freeze({ ...config.fly, apiUrl }) })
}
