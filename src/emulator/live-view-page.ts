// The live view's page: one self-contained HTML file (no build step, no dependency), kept in a
// module so that `dist/` and the bundle carry it like any other code. It reads /_dev/events
// (server-sent events: a snapshot, then `machine` and `request` updates) and only draws them.

export const LIVE_VIEW_HTML = String.raw`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>live view · fly-replay-sidecar dev</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%237b3fe4'/%3E%3Ccircle cx='8' cy='8' r='3' fill='%23fff'/%3E%3C/svg%3E">
<style>
:root{--bg:#f5f5f8;--card:#fff;--ink:#1d1d27;--muted:#6b6b7b;--line:#e2e2ea;--app:#2563eb;--pool:#7b3fe4;--ok:#15803d;--warn:#b45309;--bad:#b91c1c;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;align-items:center;gap:1rem;padding:.7rem 1.4rem;background:#1d1d27;color:#fff}
header h1{font-size:1rem;margin:0;font-weight:600}header h1 span{opacity:.6;font-weight:400}
header .grow{flex:1}header a{color:#c4b5fd}
#conn{font-size:.8rem;padding:.15rem .55rem;border-radius:1rem;background:#444}
#conn[data-state=live]{background:var(--ok)}#conn[data-state=lost]{background:var(--bad)}
main{padding:1rem 1.4rem 3rem;max-width:90rem;margin:0 auto}
h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:1.2rem 0 .6rem}
h2 small{text-transform:none;letter-spacing:0;font-weight:400}
#machines{display:grid;grid-template-columns:repeat(auto-fill,minmax(23rem,1fr));gap:.8rem}
.card{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--app);border-radius:8px;padding:.7rem .9rem;transition:opacity .3s}
.card[data-kind=pool]{border-left-color:var(--pool)}
.card[data-state=destroyed],.card[data-state=destroying]{opacity:.45}
.card .top{display:flex;align-items:center;gap:.5rem;margin-bottom:.35rem}
.card .id{font:600 13px var(--mono)}
.badge{font-size:.72rem;padding:.05rem .45rem;border-radius:1rem;background:#e8eefc;color:var(--app);font-weight:600}
.card[data-kind=pool] .badge{background:#efe7fd;color:var(--pool)}
.state{margin-left:auto;font-size:.75rem;font-weight:600;padding:.05rem .5rem;border-radius:1rem;background:#eee;color:#555}
.state[data-s=started]{background:#dcfce7;color:var(--ok)}
.state[data-s=starting],.state[data-s=created],.state[data-s=stopping]{background:#fef3c7;color:var(--warn)}
.state[data-s=failed],.state[data-s=destroyed],.state[data-s=destroying]{background:#fee2e2;color:var(--bad)}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:.1rem .7rem;margin:0;font-size:.82rem}
.card dt{color:var(--muted)}.card dd{margin:0;overflow-wrap:anywhere}
.mono{font-family:var(--mono);font-size:.8rem}
.countdown[data-live]{color:var(--warn);font-weight:600}
#requests{display:flex;flex-direction:column;gap:.5rem}
.req{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.55rem .8rem}
.req[data-phase=error]{border-color:#fca5a5}
.req .head{display:flex;gap:.7rem;align-items:baseline;font-size:.82rem;color:var(--muted)}
.req .head .what{font:600 13px var(--mono);color:var(--ink)}
.req .head .total{margin-left:auto}
.route{display:flex;flex-wrap:wrap;align-items:center;gap:.35rem;margin-top:.4rem}
.arrow{color:#9a9aab;font-size:.8rem;display:flex;flex-direction:column;align-items:center;line-height:1}
.arrow small{font-size:.65rem}
.node{border:1px solid var(--line);border-radius:6px;padding:.2rem .5rem;font-size:.8rem;background:#fafafc}
.node.edge{background:#1d1d27;color:#fff;border-color:#1d1d27}
.hop{border-left:3px solid var(--app)}.hop[data-kind=pool]{border-left-color:var(--pool)}
.hop .mono{font-weight:600}
.hop .note{display:block;font-size:.72rem;color:var(--muted)}
.hop .note.created{color:var(--pool);font-weight:600}.hop .note.woke{color:var(--warn);font-weight:600}
.hop[data-unreachable]{border-color:#fca5a5;background:#fff5f5}.hop[data-unreachable] .note{color:var(--bad)}
.node.creating{border-style:dashed;border-color:var(--pool);color:var(--pool);animation:blink 1s ease-in-out infinite}
@keyframes blink{50%{opacity:.45}}
.answer{border-radius:6px;padding:.2rem .5rem;font-size:.78rem;border:1px dashed var(--pool);background:#f7f2ff;color:#4c1d95}
.answer[data-kind=elsewhere]{border-color:var(--warn);background:#fffbeb;color:#78350f}
.answer code{display:block;font:11px var(--mono);opacity:.85;max-width:30rem;overflow-wrap:anywhere}
.back{color:var(--ok);font-size:1rem}
.fallback{border-radius:6px;padding:.2rem .5rem;font-size:.78rem;border:1px dashed var(--bad);background:#fff5f5;color:var(--bad)}
.stream{border-radius:6px;padding:.2rem .5rem;font-size:.8rem;background:#ecfdf5;color:var(--ok);border:1px solid #a7f3d0}
.stream[data-phase=streaming]{animation:pulse 1s ease-in-out infinite}
.stream[data-phase=error]{background:#fee2e2;color:var(--bad);border-color:#fca5a5}
@keyframes pulse{50%{background:#d1fae5}}
.empty{color:var(--muted);font-style:italic}
.legend{font-size:.78rem;color:var(--muted);margin:.2rem 0 0}
</style></head><body>
<header><h1>fly-replay-sidecar dev <span>· live view of app <b id="app">…</b></span></h1><span class="grow"></span>
<a href="/" target="_blank" rel="noopener">open the app ↗</a><span id="conn" data-state="connecting">connecting…</span></header>
<main>
<h2>Machines <small id="idle"></small></h2>
<div id="machines"><p class="empty">no Machine yet</p></div>
<h2>Requests <small>newest first, as the edge saw them</small></h2>
<p class="legend">edge → the Machine it routed to → what that Machine answered: <b>fly-replay</b> (the rule and the header) and the Machine the edge replayed to, an <b>elsewhere</b> bounce, a <b>fly-replay-failed</b> fallback back to the replayer, or the response streaming back.</p>
<div id="requests"><p class="empty">no request yet: open the app and use it</p></div>
</main>
<script>
'use strict'
const machines = new Map()
const requests = new Map()
let offset = 0
let idleMs = 0
const $ = (id) => document.getElementById(id)
function el (tag, cls, text) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text !== undefined && text !== null) e.textContent = text
  return e
}
const clock = (t) => new Date(t).toTimeString().slice(0, 8)
function dur (ms) {
  if (ms === null || ms === undefined) return '…'
  return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s'
}
function size (b) { return b < 1024 ? b + ' B' : b < 1048576 ? (b / 1024).toFixed(1) + ' KiB' : (b / 1048576).toFixed(1) + ' MiB' }
const poolOf = (id) => { const m = machines.get(id); return m ? m.pool : '?' }
const kindOf = (pool) => pool === 'app' ? 'app' : 'pool'

function countdown (m) {
  if (!m.autostop) return 'off'
  if (m.state !== 'started') return '—'
  if (m.idleAt === null) return m.inFlight > 0 ? 'paused: ' + m.inFlight + ' in flight' : '—'
  const left = Math.max(0, m.idleAt - (Date.now() + offset))
  return 'stops in ' + Math.ceil(left / 1000) + ' s'
}

function renderMachine (m) {
  let card = document.querySelector('.card[data-machine="' + m.id + '"]')
  if (!card) {
    const list = $('machines')
    const empty = list.querySelector('.empty')
    if (empty) empty.remove()
    card = el('div', 'card')
    card.dataset.machine = m.id
    list.append(card)
  }
  card.dataset.state = m.state
  card.dataset.pool = m.pool
  card.dataset.kind = kindOf(m.pool)
  card.replaceChildren()
  const top = el('div', 'top')
  top.append(el('span', 'badge', m.pool), el('span', 'id', m.id))
  const st = el('span', 'state', m.state)
  st.dataset.s = m.state
  top.append(st)
  const dl = el('dl')
  const row = (k, v, cls) => { dl.append(el('dt', '', k)); const d = el('dd', cls || '', v); dl.append(d); return d }
  row('image', m.image, 'mono').title = m.image
  const by = m.createdBy === 'dev' ? 'dev (as fly deploy)' : m.createdBy === 'Machines API' ? 'a Machines API call' : 'the sidecar of ' + m.createdBy + ' (' + poolOf(m.createdBy) + ')'
  row('created', clock(m.createdAt) + ' by ' + by, 'created-by').title = m.createdFor ? 'while request ' + m.createdFor + ' waited' : ''
  row('last start', m.startMs === null ? '—' : dur(m.startMs), 'start-ms')
  const inflight = row('in flight', String(m.inFlight), 'in-flight')
  inflight.dataset.n = String(m.inFlight)
  const cd = row('autostop', countdown(m), 'countdown')
  if (m.autostop && m.state === 'started' && m.idleAt !== null) cd.dataset.live = ''
  card.append(top, dl)
}

function arrow (label) {
  const a = el('span', 'arrow', '→')
  if (label) a.append(el('small', '', label))
  return a
}

function hopNode (h) {
  const pool = poolOf(h.machine)
  const n = el('span', 'node hop')
  n.dataset.machine = h.machine
  n.dataset.via = h.via
  n.dataset.pool = pool
  n.dataset.kind = kindOf(pool)
  n.append(el('span', 'mono', h.machine || '(none)'), document.createTextNode(' ' + pool))
  if (h.created) n.append(el('span', 'note created', 'created for this request · started in ' + dur(h.created.ms)))
  if (h.woke) n.append(el('span', 'note woke', 'woken from ' + h.woke.from + (h.woke.ms === null ? '…' : ' in ' + dur(h.woke.ms))))
  if (h.unreachable) { n.dataset.unreachable = h.unreachable.reason; n.append(el('span', 'note', 'unreachable: ' + h.unreachable.reason)) }
  return n
}

function renderRequest (r) {
  let row = document.querySelector('.req[data-request="' + r.id + '"]')
  if (!row) {
    const list = $('requests')
    const empty = list.querySelector('.empty')
    if (empty) empty.remove()
    row = el('div', 'req')
    row.dataset.request = r.id
    list.prepend(row)
    while (list.children.length > 100) list.lastElementChild.remove()
  }
  row.dataset.phase = r.phase
  row.replaceChildren()
  const head = el('div', 'head')
  head.append(el('span', '', clock(r.start)), el('span', 'what', r.method + ' ' + r.path), el('span', 'mono', r.id))
  head.append(el('span', 'total', r.ms === null ? 'open for ' + dur(Math.max(0, Date.now() + offset - r.start)) : dur(r.ms) + ' in all'))
  const route = el('div', 'route')
  route.append(el('span', 'node edge', 'edge'))
  for (const h of r.hops) {
    if (h.via === 'route') route.append(arrow('+' + dur(h.at)))
    if (h.via === 'fallback') {
      const f = el('span', 'fallback', 'fly-replay-failed: ' + h.reason + ' → back to the replayer')
      route.append(arrow(), f, arrow('+' + dur(h.at)))
    }
    route.append(hopNode(h))
    const a = h.answer
    if (a && a.kind !== 'served') {
      const box = el('span', 'answer')
      box.dataset.kind = a.kind
      box.dataset.rule = a.rule || ''
      box.append(a.kind === 'elsewhere'
        ? document.createTextNode('elsewhere bounce: not for this pool')
        : document.createTextNode('fly-replay' + (a.rule ? ' · rule ' + a.rule : '')))
      box.append(el('code', '', 'fly-replay: ' + a.header))
      route.append(arrow('+' + dur(a.at)), box, arrow('replayed'))
    }
  }
  if (r.phase === 'routing') {
    // The Machine a sidecar is creating while this request waits for its answer.
    for (const m of machines.values()) {
      if (m.createdFor !== r.id || r.hops.some((h) => h.machine === m.id)) continue
      const c = el('span', 'node creating')
      c.dataset.machine = m.id
      c.append(document.createTextNode('creating '), el('span', 'mono', m.id), document.createTextNode(' ' + m.pool + ' · ' + m.state + '…'))
      route.append(arrow('Machines API'), c)
    }
  }
  const s = el('span', 'stream')
  s.dataset.phase = r.phase
  if (r.phase === 'error') {
    s.textContent = String(r.status) + ' from the edge: ' + r.error
  } else if (r.phase === 'routing') {
    s.textContent = 'waiting for an answer…'
  } else {
    const c = el('b', 'chunks', String(r.chunks))
    c.dataset.chunks = String(r.chunks)
    s.append(document.createTextNode((r.phase === 'streaming' ? '⇠ streaming ' : '✓ ' + r.status + ' · ')), c,
      document.createTextNode(' chunk' + (r.chunks === 1 ? '' : 's') + ' · ' + size(r.bytes) + (r.phase === 'done' ? ' · ' + dur(r.ms) : '')))
  }
  route.append(el('span', 'back', '⇠'), s)
  row.append(head, route)
}

function snapshot (s) {
  // Only a real clock difference (a page on another computer) is corrected: on the same one the
  // difference is the snapshot's delivery time, which would make fresh requests look negative.
  const diff = s.now - Date.now()
  offset = Math.abs(diff) > 2000 ? diff : 0
  idleMs = s.idleMs
  $('app').textContent = s.app
  $('idle').textContent = 'autostop after ' + dur(idleMs) + ' without a connection'
  machines.clear(); requests.clear()
  $('machines').replaceChildren(el('p', 'empty', 'no Machine yet'))
  $('requests').replaceChildren(el('p', 'empty', 'no request yet: open the app and use it'))
  for (const m of s.machines) { machines.set(m.id, m); renderMachine(m) }
  for (const r of s.requests) { requests.set(r.id, r); renderRequest(r) }
}

const es = new EventSource('/_dev/events')
es.addEventListener('snapshot', (e) => { snapshot(JSON.parse(e.data)); $('conn').dataset.state = 'live'; $('conn').textContent = 'live' })
es.addEventListener('machine', (e) => {
  const m = JSON.parse(e.data)
  machines.set(m.id, m)
  renderMachine(m)
  // Routes name Machines by pool: redraw the ones that mention a Machine seen for the first time.
  for (const r of requests.values()) if (r.id === m.createdFor || r.hops.some((h) => h.machine === m.id)) renderRequest(r)
})
es.addEventListener('request', (e) => { const r = JSON.parse(e.data); requests.set(r.id, r); renderRequest(r) })
es.onerror = () => { $('conn').dataset.state = 'lost'; $('conn').textContent = 'reconnecting…' }
setInterval(() => {
  for (const m of machines.values()) {
    const cd = document.querySelector('.card[data-machine="' + m.id + '"] .countdown')
    if (cd) cd.textContent = countdown(m)
  }
  for (const r of requests.values()) if (r.ms === null) {
    const t = document.querySelector('.req[data-request="' + r.id + '"] .total')
    if (t) t.textContent = 'open for ' + dur(Math.max(0, Date.now() + offset - r.start))
  }
}, 500)
</script>
</body></html>
`
