// The app's environment, from config/routes.yaml to the variables: PORT is app.url's port, the
// API token is not passed on unless app.env says so, app.env wins. Table-driven over parseConfig,
// so the YAML a user writes is what is tested.
import t from 'tap'
import { parseConfig } from '../src/config/load.ts'
import { appEnvironment } from '../src/app-env.ts'

const TOKEN = 'FlyV1 fm2_secret'
const BASE = { PATH: '/usr/bin', PORT: '8080', FLY_APP_NAME: 'shop', FLY_API_TOKEN: TOKEN, SECRET_KEY_BASE: 'k' }

const cases: Array<{ name: string, yaml: string, env?: NodeJS.ProcessEnv, want: Record<string, string> }> = [
  {
    name: 'defaults: PORT is app.url\'s port, FLY_API_TOKEN removed, the rest passed on',
    yaml: 'app:\n  url: http://127.0.0.1:8081\n',
    want: { PATH: '/usr/bin', PORT: '8081', FLY_APP_NAME: 'shop', SECRET_KEY_BASE: 'k' },
  },
  {
    name: 'no port in app.url: the scheme\'s',
    yaml: 'app:\n  url: http://127.0.0.1\n',
    want: { PATH: '/usr/bin', PORT: '80', FLY_APP_NAME: 'shop', SECRET_KEY_BASE: 'k' },
  },
  {
    name: 'https without a port: 443',
    yaml: 'app:\n  url: https://app.internal\n',
    want: { PATH: '/usr/bin', PORT: '443', FLY_APP_NAME: 'shop', SECRET_KEY_BASE: 'k' },
  },
  {
    name: 'app.env passes the token on and sets variables',
    yaml: 'app:\n  url: http://127.0.0.1:8081\n  env:\n    FLY_API_TOKEN: ${FLY_API_TOKEN}\n    RAILS_MAX_THREADS: "5"\n',
    want: { PATH: '/usr/bin', PORT: '8081', FLY_APP_NAME: 'shop', SECRET_KEY_BASE: 'k', FLY_API_TOKEN: TOKEN, RAILS_MAX_THREADS: '5' },
  },
  {
    name: 'app.env overrides PORT',
    yaml: 'app:\n  url: http://127.0.0.1:8081\n  env: { PORT: "3000" }\n',
    want: { PATH: '/usr/bin', PORT: '3000', FLY_APP_NAME: 'shop', SECRET_KEY_BASE: 'k' },
  },
  {
    name: 'a token taken from another variable (fly.api-token) is removed too',
    yaml: 'app:\n  url: http://127.0.0.1:8081\nfly:\n  api-token: ${DEPLOY_TOKEN}\n',
    env: { PATH: '/usr/bin', DEPLOY_TOKEN: 'other-secret', COPY: 'other-secret' },
    want: { PATH: '/usr/bin', PORT: '8081' },
  },
  {
    name: 'no token at all: nothing else is removed, even empty values',
    yaml: 'app:\n  url: http://127.0.0.1:8081\n',
    env: { PATH: '/usr/bin', EMPTY: '' },
    want: { PATH: '/usr/bin', EMPTY: '', PORT: '8081' },
  },
]

for (const c of cases) {
  const env = c.env ?? BASE
  const config = parseConfig(c.yaml, '/app/config/routes.yaml', env)
  t.strictSame(appEnvironment(env, config), c.want, c.name)
}

t.test('app.env is checked like any other key', async (t) => {
  const bad = (yaml: string): string => {
    try {
      parseConfig(yaml, 'routes.yaml', {})
      return 'accepted'
    } catch (err) {
      return (err as Error).message
    }
  }
  t.match(bad('app:\n  url: http://127.0.0.1:8081\n  env: { PORT: 3000 }\n'), /app\.env\.PORT: must be a string, got 3000: quote it/)
  t.match(bad('app:\n  url: http://127.0.0.1:8081\n  env: { 1X: a }\n'), /app\.env\["1X"\]: "1X" is not an environment variable name/)
  t.match(bad('app:\n  url: http://127.0.0.1:8081\n  env: [PORT]\n'), /app\.env: must be a map/)
  t.equal(bad('app:\n  url: http://127.0.0.1:8081\n  env: {}\n'), 'accepted')
})
