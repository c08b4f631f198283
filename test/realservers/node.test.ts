// A Node app behind the sidecar, started with `npm run start` as the CMD of
// examples/node/Dockerfile says: npm, its shell and node, with examples/node/config/routes.yaml.
// The app (apps/node/server.mjs) binds $PORT, which the sidecar sets to app.url's port, and
// speaks WebSocket with `ws`.
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import WebSocket from 'ws'
import { patternBytes } from '../helpers/apps.ts'
import {
  APPS, EXAMPLES, TOKEN, appProcesses, checkBodies, checkKeepAlive, checkStream, fetchAll, gone, startStack, waitHealthy,
} from './harness.ts'

t.test('npm run start (npm → sh → node) behind the sidecar', async (t) => {
  const cmd = readFileSync(path.join(EXAMPLES, 'node/Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('CMD ['))
  t.equal(cmd, 'CMD ["npm", "run", "start"]', 'the Dockerfile\'s CMD is the one run here')
  const stack = await startStack(t, {
    config: 'node/config/routes.yaml',
    command: ['npm', 'run', 'start'],
    cwd: path.join(APPS, 'node'),
    env: { FLY_API_TOKEN: TOKEN },
  })
  const seen = await waitHealthy(stack)
  t.equal(seen.at(-1), '200 ok', `health: ${seen.join(' → ')}`)
  const procs = appProcesses(stack.pid)
  t.teardown(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } })
  t.strictSame(procs.map((p) => p.cmd.split(' ')[0]?.split('/').at(-1)), ['npm', 'sh', 'node'], 'npm, its shell, the server')

  await t.test('the app bound PORT = app.url\'s port, without the API token', async (t) => {
    const env = JSON.parse((await fetchAll(stack.url('/env'))).body.toString()) as { port: string, token: string | null }
    t.strictSame({ port: env.port, token: env.token }, { port: String(stack.appPort), token: null })
  })

  await checkBodies(t, stack)
  await checkStream(t, stack, 'res.write')
  // Node's server announces `Keep-Alive: timeout=5`, so the sidecar's pool keeps an idle
  // connection to it 4 s (a second less): these gaps reuse connections.
  await checkKeepAlive(t, stack, [1400, 1500, 1600], 'connections reused, within Node\'s announced 5 s')

  await t.test('the sidecar reuses its connections to the app', async (t) => {
    const seen = JSON.parse((await fetchAll(stack.url('/env'))).body.toString()) as { connections: number, requests: number }
    t.ok(seen.requests >= 20, `${seen.requests} requests`)
    t.ok(seen.connections * 2 <= seen.requests, `over ${seen.connections} connections`)
  })

  await t.test('a WebSocket through the sidecar: text and a 1 MiB binary message echoed', async (t) => {
    const ws = new WebSocket(stack.url('/ws').replace('http:', 'ws:'))
    t.teardown(() => ws.terminate())
    const messages: Array<{ data: Buffer, binary: boolean }> = []
    ws.on('message', (data, binary) => { messages.push({ data: data as Buffer, binary }) })
    await new Promise<void>((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const big = patternBytes(1024 * 1024)
    ws.send('hello through the sidecar')
    ws.send(big)
    for (let i = 0; i < 200 && messages.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 25))
    t.strictSame(messages.map((m) => m.binary), [false, true])
    t.equal(messages[0]?.data.toString(), 'hello through the sidecar')
    t.ok(messages[1]?.data.equals(big), '1 MiB back byte for byte')
    ws.close()
  })

  await t.test('SIGTERM: npm, its shell and node are gone; the exit code is npm\'s', async (t) => {
    stack.child.kill('SIGTERM')
    const exit = await stack.exit
    t.comment(`the sidecar exited with ${JSON.stringify(exit)}`)
    t.strictSame(exit, { code: 143, signal: null }, 'npm died of SIGTERM: 143')
    t.strictSame(procs.filter((p) => !gone(p.pid)).map((p) => p.cmd), [], 'nothing of the app is left')
  })
})
