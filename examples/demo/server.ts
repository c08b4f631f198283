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

const CUSTOMERS = ['Northwind Traders', 'Blue Heron Bakery', 'Kestrel Logistics', 'Umbra Studio', 'Fjord Outfitters', 'Copperleaf Dental', 'Harbor & Pine', 'Quill Analytics', 'Saffron Kitchen', 'Tern Robotics']

function page (): string {
  const rowHtml = Array.from({ length: rows }, (_, i) => {
    const amount = (((i * 7919) % 4200) + 180).toLocaleString('en-US', { minimumFractionDigits: 2 })
    return `<tr><td class="num">INV-${1001 + i}</td><td>${CUSTOMERS[i % CUSTOMERS.length] ?? ''}</td><td class="amount">$${amount}</td>` +
      `<td class="status" id="row-${i + 1}" data-status="pending">pending</td><td class="machine" id="row-${i + 1}-machine">—</td></tr>`
  }).join('\n')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="/favicon.ico"><title>Invoices · Ledgerly (fly-replay-sidecar demo)</title>
<style>
:root{--ink:#1d1d27;--muted:#6b6b7b;--line:#e6e6ee;--brand:#7b3fe4;--ok:#15803d;--warn:#b45309}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:var(--ink);background:#f6f6f9}
nav{display:flex;align-items:center;gap:1.4rem;padding:.8rem 2rem;background:#fff;border-bottom:1px solid var(--line)}
nav .logo{font-weight:700;color:var(--brand);font-size:1.1rem;margin-right:1rem}
nav a{color:var(--muted);text-decoration:none}nav a.here{color:var(--ink);font-weight:600}
nav .grow{flex:1}
nav a.live{color:#fff;background:var(--brand);padding:.3rem .8rem;border-radius:6px;font-weight:600}
main{max-width:64rem;margin:1.6rem auto;padding:0 1.5rem}
h1{margin:0 0 .2rem;font-size:1.6rem}
.sub{color:var(--muted);margin:0 0 1.2rem}
.tiles{display:grid;grid-template-columns:repeat(3,1fr);gap:1rem;margin-bottom:1.2rem}
.tile{background:#fff;border:1px solid var(--line);border-radius:10px;padding:.8rem 1rem}
.tile b{display:block;font-size:1.3rem}.tile span{color:var(--muted);font-size:.85rem}
.panel{background:#fff;border:1px solid var(--line);border-radius:10px;padding:1rem 1.2rem}
.toolbar{display:flex;align-items:center;gap:.5rem;margin-bottom:.6rem}
button{font:inherit;padding:.45rem 1rem;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
button.primary{background:var(--brand);border-color:var(--brand);color:#fff;font-weight:600}
button:disabled{cursor:wait;opacity:.5}
#stream-state{color:var(--muted);font-size:.85rem;margin-left:.5rem}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th{text-align:left;font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);font-weight:600;padding:.5rem .6rem;border-bottom:1px solid var(--line)}
td{border-bottom:1px solid var(--line);padding:.55rem .6rem}
.num{font-family:ui-monospace,monospace;font-size:.88rem}.amount{text-align:right;font-variant-numeric:tabular-nums}
.status{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-variant-numeric:tabular-nums}
.status[data-status=processing]{color:var(--warn)}.status[data-status=done]{color:var(--ok);font-weight:600}
.machine{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font:13px ui-monospace,monospace;color:var(--muted)}
.machine[data-pool=tasker]{color:var(--brand);font-weight:600}
h2{font-size:.9rem;margin:1.4rem 0 .4rem}
#calls{font:13px/1.5 ui-monospace,monospace;background:#fff;border:1px solid var(--line);border-radius:10px;padding:.7rem .9rem;white-space:pre-wrap;min-height:3.5rem;color:#333}
.how{color:var(--muted);font-size:.88rem}
footer{color:var(--muted);font-size:.82rem;max-width:64rem;margin:1.5rem auto 2rem;padding:0 1.5rem}
</style></head><body>
<nav><span class="logo">Ledgerly</span><a href="#">Dashboard</a><a class="here" href="#">Invoices</a><a href="#">Customers</a><a href="#">Reports</a>
<span class="grow"></span><a class="live" id="live-link" href="/_dev/" target="_blank" rel="noopener">Live view ↗</a></nav>
<main>
<h1>Invoices</h1>
<p class="sub">Processing renders each invoice's PDF and emails it: heavy work that runs on a <i>tasker</i> Machine, not on the one serving this page.</p>
<div class="tiles"><div class="tile"><span>Waiting to be processed</span><b id="pending-count">${rows}</b></div>
<div class="tile"><span>Processed in this session</span><b id="done-count">0</b></div>
<div class="tile"><span>Page served by</span><b class="num" id="page-machine-tile">${machine}</b></div></div>
<div class="panel">
<div class="toolbar"><button class="primary" id="process">Process invoices</button><button id="refresh">Refresh</button><button id="ping">Ping</button>
<span id="stream-state"></span></div>
<table><colgroup><col style="width:7rem"><col><col style="width:8rem"><col style="width:13rem"><col style="width:14rem"></colgroup>
<thead><tr><th>Invoice</th><th>Customer</th><th class="amount">Amount</th><th>Status</th><th>Streamed by Machine</th></tr></thead><tbody>
${rowHtml}
</tbody></table>
</div>
<h2>Calls</h2>
<div id="calls"></div>
<p class="how"><b>Process invoices</b> sends one Livewire <code>POST /livewire/update</code> calling <code>process()</code>: the
sidecar answers <code>fly-replay</code> and the edge replays it to the <i>tasker</i> Machine, whose answer streams back one
row at a time. <b>Refresh</b> and <b>Ping</b> call other methods and stay on the app Machines. The
<a href="/_dev/" target="_blank" rel="noopener">live view</a> draws each request's way through the Machines as it happens.</p>
</main>
<footer>This page was served by Machine <b id="page-machine">${machine}</b> (pool <b>${pool}</b>). A demo of fly-replay-sidecar; run with <code>npm start</code>.</footer>
<script>
// What the browser test reads: each row update with its time, and when the stream ended.
window.__demo = { updates: [], streams: [] }
const snapshot = JSON.stringify({ data: { rows: ${rows} }, memo: { id: 'demo-rows', name: 'rows' }, checksum: 'demo' })
const log = (line) => { const el = document.getElementById('calls'); el.textContent = line + '\\n' + el.textContent }
let streamer = null
let processed = 0
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
  if (!el) {
    if (b.name === 'served-by') {
      // "<id> (<pool>)": the Machine streaming this answer.
      const m = /^(\\S+) \\((.+)\\)$/.exec(b.content) || [null, b.content, '']
      streamer = { id: m[1], pool: m[2] }
      document.getElementById('stream-state').textContent = 'streaming from ' + b.content
    }
    return
  }
  el.dataset.status = b.content.startsWith('done') ? 'done' : 'processing'
  // "done by <id>": the Machine goes in its own column.
  el.textContent = el.dataset.status === 'done' ? 'done' : b.content
  const cell = document.getElementById(b.name + '-machine')
  if (cell && streamer) { cell.textContent = streamer.id + ' · ' + streamer.pool; cell.dataset.pool = streamer.pool; cell.dataset.machine = streamer.id }
  if (el.dataset.status === 'done') {
    processed++
    document.getElementById('done-count').textContent = String(processed)
    document.getElementById('pending-count').textContent = String(document.querySelectorAll('.status:not([data-status=done])').length)
  }
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
  streamer = null
  for (const el of document.querySelectorAll('.status')) { el.textContent = 'pending'; el.dataset.status = 'pending' }
  for (const el of document.querySelectorAll('.machine')) { el.textContent = '—'; delete el.dataset.pool; delete el.dataset.machine }
  document.getElementById('pending-count').textContent = String(${rows})
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
