// The floor of a Node proxy: node:http in, one undici Pool dispatch out, nothing else. No routing,
// no logging, no header rewriting, so what it costs per request is what any proxy built on
// node:http + undici pays before doing anything of its own. Run as a child: PORT=n APP_PORT=m.
// Plain JavaScript like http-proxy.js, so it pays no TypeScript stripping either.
import http from 'node:http'
import { Pool } from 'undici'

const port = Number(process.env.PORT)
const appPort = Number(process.env.APP_PORT)
if (!Number.isInteger(port) || !Number.isInteger(appPort)) throw new Error('PORT and APP_PORT must name ports')

const pool = new Pool(`http://127.0.0.1:${appPort}`, { pipelining: 1 })

/** One response's undici 7 dispatch handler: writes what the app sends to `res` as it arrives. */
function handler (res) {
  let controller = null
  let gone = false
  // The client left early (an idle stream closed): stop the upstream request too, or the app
  // keeps the connection open for nobody.
  res.once('close', () => {
    if (res.writableFinished) return
    gone = true
    controller?.abort(new Error('client closed'))
  })
  return {
    onRequestStart (c) {
      controller = c
      if (gone) c.abort(new Error('client closed'))
    },
    onResponseStart (c, status, headers) {
      res.writeHead(status, headers)
      // Node holds back the head until the first write; a stream's head must reach the client
      // now, not with its first chunk.
      if (headers['content-length'] === undefined) res.flushHeaders()
    },
    onResponseData (c, chunk) {
      if (!res.write(chunk)) {
        c.pause()
        res.once('drain', () => { c.resume() })
      }
    },
    onResponseEnd () {
      res.end()
    },
    onResponseError (c, err) {
      if (res.headersSent) res.destroy(err)
      else {
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end('bad gateway\n')
      }
    },
  }
}

const server = http.createServer((req, res) => {
  const h = req.headers
  // Hop-by-hop headers undici refuses (transfer-encoding, keep-alive, upgrade, expect) or that
  // are the client connection's business (connection); wrk sends none of them.
  if (h.connection !== undefined) delete h.connection
  if (h['keep-alive'] !== undefined) delete h['keep-alive']
  if (h.upgrade !== undefined) delete h.upgrade
  if (h.expect !== undefined) delete h.expect
  const chunked = h['transfer-encoding'] !== undefined
  if (chunked) delete h['transfer-encoding']
  const bodyless = (req.method === 'GET' || req.method === 'HEAD') && h['content-length'] === undefined && !chunked
  pool.dispatch({ path: req.url, method: req.method, headers: h, body: bodyless ? null : req }, handler(res))
})
server.listen(port, '127.0.0.1')

process.on('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
  void pool.destroy()
})
