// The plain peer: Fastify + @fastify/http-proxy with default options in front of the app.
// Run as a child: PORT=n APP_PORT=m. Plain JavaScript, so it pays no TypeScript stripping at
// start-up (the sidecar runs as its bundled JS too) and memory compares like with like.
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'

const port = Number(process.env.PORT)
const appPort = Number(process.env.APP_PORT)
if (!Number.isInteger(port) || !Number.isInteger(appPort)) throw new Error('PORT and APP_PORT must name ports')

const app = Fastify()
await app.register(httpProxy, { upstream: `http://127.0.0.1:${appPort}` })
await app.listen({ host: '127.0.0.1', port })

process.on('SIGTERM', () => { void app.close() })
