// The demo app: a dependency-free Node server that mimics a Livewire page. `process()` streams one
// chunk per row status update (Livewire's wire:stream shape); other calls answer at once. Every
// answer says which Machine (FLY_MACHINE_ID) served it.
//
//   APP_PORT      where it listens (default 8081; the sidecar in front listens on PORT)
//   DEMO_ROWS     how many rows the page has (default 6)
//   DEMO_STEP_MS  time each row takes to "process" (default 700)

import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'

const port = Number(process.env.APP_PORT ?? 8081)
const host = process.env.APP_HOST ?? '127.0.0.1'
const rows = Math.max(1, Number(process.env.DEMO_ROWS ?? 6))
const stepMs = Math.max(0, Number(process.env.DEMO_STEP_MS ?? 700))
const machine = process.env.FLY_MACHINE_ID ?? 'local'
const pool = process.env.SIDECAR_POOL ?? 'app'

interface LivewireCall { path?: string, method?: string, params?: unknown[] }
interface LivewireRequest { components?: { snapshot?: string, calls?: LivewireCall[] }[] }

/** Who served the call and how it got here: shown on the page next to each call. */
function servedBy (req: IncomingMessage): Record<string, string | null> {
  const h = (name: string): string | null => {
    const v = req.headers[name]
    return typeof v === 'string' ? v : null
  }
  return { machine, pool, replaySrc: h('fly-replay-src'), replayFailed: h('fly-replay-failed'), requestId: h('fly-request-id') }
}

/** Livewire's stream chunk (SupportStreaming::streamContent): one JSON object per flush. */
function streamChunk (name: string, content: string): string {
  return JSON.stringify({ stream: true, body: { name, content, replace: true }, endStream: true })
}

function finalPayload (snapshot: string, returns: unknown[]): string {
  return JSON.stringify({ components: [{ snapshot, effects: { returns } }], assets: [] })
}

async function readBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c)
  return Buffer.concat(chunks).toString('utf8')
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function livewireUpdate (req: IncomingMessage, res: ServerResponse): Promise<void> {
  let payload: LivewireRequest
  try {
    payload = JSON.parse(await readBody(req)) as LivewireRequest
  } catch {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end('{"message":"the body is not JSON"}')
    return
  }
  const component = payload.components?.[0]
  const snapshot = component?.snapshot ?? '{}'
  const calls = component?.calls ?? []
  const who = servedBy(req)
  if (!calls.some((c) => c.method === 'process')) {
    const returns = calls.map((c) => ({ method: c.method ?? '', ...who, at: new Date().toISOString() }))
    const body = finalPayload(snapshot, returns)
    res.writeHead(200, { 'content-type': 'application/json', 'x-demo-machine': machine, 'content-length': Buffer.byteLength(body) })
    res.end(body)
    return
  }
  // wire:stream: headers first, then one flushed chunk per status change, then the final payload.
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'x-livewire-stream': 'true',
    'x-demo-machine': machine,
  })
  // The client (or the sidecar draining) may go away mid-stream: stop working then.
  const client = { gone: false }
  res.on('close', () => { client.gone = !res.writableFinished })
  res.write(streamChunk('served-by', `${machine} (${pool})`))
  for (let i = 1; i <= rows && !client.gone; i++) {
    res.write(streamChunk(`row-${i}`, 'processing…'))
    await sleep(stepMs)
    if (client.gone) break
    res.write(streamChunk(`row-${i}`, `done by ${machine}`))
  }
  if (!client.gone) res.end(finalPayload(snapshot, [{ method: 'process', ...who, rows, at: new Date().toISOString() }]))
}

// Browsers ask for /favicon.ico on every page; answer with a small icon rather than a 404.
const favicon = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#7b3fe4"/><path d="M4 8h6l-2-2m2 2-2 2" stroke="#fff" stroke-width="1.5" fill="none"/></svg>'

function page (): string {
  const rowHtml = Array.from({ length: rows }, (_, i) =>
    `<tr><td>Invoice #${1001 + i}</td><td class="status" id="row-${i + 1}" data-status="pending">pending</td></tr>`).join('\n')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="/favicon.ico"><title>fly-replay-sidecar demo</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:1rem 0}td{border-bottom:1px solid #ddd;padding:.4rem .6rem}
.status{width:14rem;white-space:nowrap;font-variant-numeric:tabular-nums}.status[data-status=processing]{color:#a60}.status[data-status=done]{color:#080;font-weight:600}
button:disabled{cursor:wait;opacity:.5}button{font:inherit;padding:.4rem 1rem;margin-right:.5rem;cursor:pointer}
#calls{font:13px/1.5 ui-monospace,monospace;background:#f6f6f6;padding:.6rem;white-space:pre-wrap;min-height:4rem}
.muted{color:#777}
</style></head><body>
<h1>Livewire-style demo</h1>
<p class="muted">This page was served by Machine <b id="page-machine">${machine}</b> (pool <b>${pool}</b>).
<b>Process</b> sends one <code>POST /livewire/update</code> calling <code>process()</code>: the sidecar
replays it to the <i>tasker</i> Machine, whose answer streams back one row at a time.
<b>Refresh</b> and <b>Ping</b> call other methods and stay on the app Machines.</p>
<div><button id="process">Process</button><button id="refresh">Refresh</button><button id="ping">Ping</button>
<span id="stream-state" class="muted"></span></div>
<table><tbody>
${rowHtml}
</tbody></table>
<h3>Calls</h3>
<div id="calls"></div>
<script>
// What the browser test reads: each row update with its time, and when the stream ended.
window.__demo = { updates: [], streams: [] }
const snapshot = JSON.stringify({ data: { rows: ${rows} }, memo: { id: 'demo-rows', name: 'rows' }, checksum: 'demo' })
const log = (line) => { const el = document.getElementById('calls'); el.textContent = line + '\\n' + el.textContent }
const short = (id) => id ?? '-'
function describe (r) {
  let s = 'served by ' + r.machine + ' (' + r.pool + ')'
  if (r.replaySrc) {
    const from = (/instance=([^;]+)/.exec(r.replaySrc) || [])[1]
    const state = (/state=([^;]+)/.exec(r.replaySrc) || [])[1]
    // state=default is the sidecar's elsewhere bounce: the edge sent the call to a Machine of the
    // wrong pool first (here the tasker), whose sidecar answered fly-replay: elsewhere=true.
    s += state === 'default'
      ? ', bounced: it landed on ' + from + ' first, which only takes process(), so that Machine answered elsewhere=true and the edge replayed it here'
      : ', replayed from ' + from + ' (rule ' + state + ')'
  }
  if (r.replayFailed) s += ', fallback after ' + (/reason=([^;]+)/.exec(r.replayFailed) || [])[1]
  return s
}
function apply (chunk) {
  const b = chunk.body
  const el = document.getElementById(b.name)
  if (!el) { if (b.name === 'served-by') document.getElementById('stream-state').textContent = 'streaming from ' + b.content; return }
  el.textContent = b.content
  el.dataset.status = b.content.startsWith('done') ? 'done' : 'processing'
  window.__demo.updates.push({ row: b.name, status: el.dataset.status, t: performance.now() })
}
async function call (method) {
  const started = performance.now()
  const res = await fetch('/livewire/update', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-livewire': 'true' },
    body: JSON.stringify({ _token: 'demo', components: [{ snapshot, updates: {}, calls: [{ path: '', method, params: [] }] }] }),
  })
  let final = ''
  if (res.headers.get('x-livewire-stream') === 'true') {
    // Livewire's client does the same: pull complete stream chunks out as they arrive; what is left is the final payload.
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += decoder.decode(value, { stream: true })
      for (const m of buf.match(/({"stream":true.*?"endStream":true})/g) || []) apply(JSON.parse(m))
      buf = buf.replace(/({"stream":true.*?"endStream":true})/g, '')
    }
    final = buf
    window.__demo.streams.push({ method, endedAt: performance.now() })
    document.getElementById('stream-state').textContent = ''
  } else {
    final = await res.text()
  }
  const ms = Math.round(performance.now() - started)
  try {
    const r = JSON.parse(final).components[0].effects.returns[0]
    log(method + '()  ' + res.status + '  ' + describe(r) + '  in ' + ms + ' ms')
  } catch { log(method + '()  ' + res.status + '  ' + final.slice(0, 200)) }
}
// One stream at a time: a second click while rows stream would reset them and interleave two streams.
document.getElementById('process').onclick = async () => {
  const button = document.getElementById('process')
  if (button.disabled) return
  button.disabled = true
  for (const el of document.querySelectorAll('.status')) { el.textContent = 'pending'; el.dataset.status = 'pending' }
  try { await call('process') } finally { button.disabled = false }
}
document.getElementById('refresh').onclick = () => call('$refresh')
document.getElementById('ping').onclick = () => call('ping')
</script>
</body></html>
`
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]
  if (req.method === 'GET' && path === '/') {
    const html = page()
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-demo-machine': machine, 'content-length': Buffer.byteLength(html) })
    res.end(html)
  } else if (req.method === 'POST' && path === '/livewire/update') {
    livewireUpdate(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500)
      res.end(String(err))
    })
  } else if (path === '/favicon.ico') {
    res.writeHead(200, { 'content-type': 'image/svg+xml', 'cache-control': 'max-age=86400', 'content-length': Buffer.byteLength(favicon) })
    res.end(favicon)
  } else if (path === '/_demo/whoami') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(servedBy(req)))
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' })
    res.end('not found')
  }
})

server.listen(port, host, () => {
  process.stdout.write(`demo app (${pool}) on ${host}:${port}, machine ${machine}\n`)
})
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  })
}
