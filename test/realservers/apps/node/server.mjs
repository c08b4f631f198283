// A Node app for the real-servers suite, started with `npm run start` as a `fly launch` Node
// Dockerfile does. It binds $PORT, as most Node apps do. Routes: / (hello), POST /echo (length
// and sha256), GET /bytes?n=, GET /stream?n=&ms=, GET /env (also how many connections and requests it has had), and a WebSocket echo on /ws (`ws`).
import http from 'node:http'
import { createHash, randomBytes } from 'node:crypto'
import { WebSocketServer } from 'ws'

let connections = 0
let requests = 0
const server = http.createServer((req, res) => {
  requests++
  const url = new URL(req.url ?? '/', 'http://app')
  const key = `${req.method} ${url.pathname}`
  if (key === 'GET /') {
    res.end(`hello from node ${process.version}`)
  } else if (key === 'POST /echo') {
    const hash = createHash('sha256')
    let bytes = 0
    req.on('data', (c) => { hash.update(c); bytes += c.length })
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }))
    })
  } else if (key === 'GET /bytes') {
    const body = randomBytes(Number(url.searchParams.get('n') ?? 0))
    res.setHeader('x-sha256', createHash('sha256').update(body).digest('hex'))
    res.end(body)
  } else if (key === 'GET /stream') {
    const n = Number(url.searchParams.get('n') ?? 5)
    const ms = Number(url.searchParams.get('ms') ?? 100)
    let i = 0
    const write = () => {
      res.write(`chunk ${i} ${(Date.now() / 1000).toFixed(3)}\n`)
      if (++i === n) res.end()
      else timer = setTimeout(write, ms)
    }
    let timer = setTimeout(write, 0)
    res.on('close', () => clearTimeout(timer))
  } else if (key === 'GET /env') {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ port: process.env.PORT ?? null, token: process.env.FLY_API_TOKEN ?? null, pid: process.pid, connections, requests }))
  } else {
    res.statusCode = 404
    res.end('not found')
  }
})
server.on('connection', () => { connections++ })
const wss = new WebSocketServer({ server, path: '/ws' })
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => { ws.send(data, { binary: isBinary }) })
})
server.listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1')
