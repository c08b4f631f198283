// The live view of `dev`: what the emulated Fly is doing, as a page. It keeps a card per Machine
// and the route of each recent request (folded from the edge's events by `applyEdgeEvent`), and
// pushes every change to open pages with server-sent events. The edge serves it under /_dev/.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { EdgeEvent } from './edge.ts'
import { LIVE_VIEW_HTML } from './live-view-page.ts'

/** The edge answers these paths itself (the rest goes to the app's Machines). */
export const LIVE_VIEW_PREFIX = '/_dev/'
/** Requests kept for a page opened later. */
export const DEFAULT_HISTORY = 100
const HEARTBEAT_MS = 15_000
const STATE_POLL_MS = 200
/** A page that reads slower than this much queued output is dropped (it reconnects and gets a snapshot). */
const MAX_QUEUED_BYTES = 1024 * 1024

/** One emulated Machine as its card shows it. */
export interface LiveMachine {
  readonly id: string
  /** `sidecar_pool` metadata, else the process group (`app`). */
  readonly pool: string
  /** Fly Machine state: created, starting, started, stopping, stopped, suspended, destroying, destroyed, failed. */
  readonly state: string
  readonly image: string
  readonly region: string
  /** ms since the epoch. */
  readonly createdAt: number
  /** `dev` (the first Machine, as `fly deploy` makes it), the id of the Machine whose sidecar created it, or `Machines API` when that is not known. */
  readonly createdBy: string
  /** The request that was waiting on its creator when it was created. */
  readonly createdFor: string | null
  /** How long its last start took, from `starting` to accepting connections. */
  readonly startMs: number | null
  /** Requests the edge has open with it now. */
  readonly inFlight: number
  /** Its services have autostop on. */
  readonly autostop: boolean
  /** When autostop stops it if nothing arrives (ms since the epoch); null when not counting down. */
  readonly idleAt: number | null
}

/** One Machine on a request's way, and what it answered. */
export interface LiveHop {
  readonly machine: string
  /** How the request got here: routed by the edge, replayed (`fly-replay`), bounced (`elsewhere=true`), or sent back after a failed replay. */
  readonly via: 'route' | 'replay' | 'elsewhere' | 'fallback'
  /** ms after the request arrived. */
  readonly at: number
  /** The Machine was started for the request: the state it was in and how long that took. */
  readonly woke?: { readonly from: string, readonly ms: number | null }
  /** The Machine was created while the request waited, and took `ms` to start. */
  readonly created?: { readonly ms: number | null }
  /** fallback: why the replay target could not be reached (timeout, no_candidate). */
  readonly reason?: string
  /** What it answered: a replay instruction, or the response that went to the client. */
  readonly answer?:
  | { readonly kind: 'replay' | 'elsewhere', readonly header: string, readonly rule: string | null, readonly at: number }
  | { readonly kind: 'served', readonly status: number, readonly at: number }
  /** It was a replay target that could not be reached. */
  readonly unreachable?: { readonly reason: string, readonly at: number }
}

/** A request as the live view draws it. */
export interface LiveRequest {
  readonly id: string
  readonly method: string
  readonly path: string
  /** ms since the epoch. */
  readonly start: number
  readonly hops: readonly LiveHop[]
  /** routing: no answer yet; streaming: the answer started; done; error: the edge answered an error. */
  readonly phase: 'routing' | 'streaming' | 'done' | 'error'
  readonly status: number | null
  readonly chunks: number
  readonly bytes: number
  /** done/error: ms from arrival to the end. */
  readonly ms: number | null
  readonly error: string | null
}

export interface LiveSnapshot {
  readonly app: string
  readonly idleMs: number
  /** The server's clock (ms since the epoch), for countdowns. */
  readonly now: number
  readonly machines: readonly LiveMachine[]
  /** Oldest first. */
  readonly requests: readonly LiveRequest[]
}

function withLastHop (req: LiveRequest, machine: string | undefined, change: (hop: LiveHop) => LiveHop): LiveRequest {
  for (let i = req.hops.length - 1; i >= 0; i--) {
    const hop = req.hops[i] as LiveHop
    if (machine === undefined || hop.machine === machine) {
      const hops = req.hops.slice()
      hops[i] = change(hop)
      return { ...req, hops }
    }
  }
  return req
}

/**
 * Pure: the request after one more edge event. `created` tells whether the event's replay target
 * was created for this request (and how long it took to start).
 */
export function applyEdgeEvent (req: LiveRequest | undefined, e: EdgeEvent, created?: { ms: number | null }): LiveRequest {
  const r: LiveRequest = req ?? { id: e.requestId, method: e.method, path: e.path, start: e.at, hops: [], phase: 'routing', status: null, chunks: 0, bytes: 0, ms: null, error: null }
  const at = e.at - r.start
  const machine = e.machine ?? ''
  switch (e.type) {
    case 'route':
      return { ...r, hops: [...r.hops, { machine, via: 'route', at }] }
    case 'wake':
      return withLastHop(r, machine, (h) => ({ ...h, woke: { from: e.reason ?? '', ms: null } }))
    case 'ready':
      return withLastHop(r, machine, (h) => ({ ...h, woke: { from: h.woke?.from ?? '', ms: e.ms ?? null } }))
    case 'replay': {
      const elsewhere = e.reason === 'elsewhere'
      const answered = withLastHop(r, machine, (h) => ({ ...h, answer: { kind: elsewhere ? 'elsewhere' : 'replay', header: e.header ?? '', rule: e.state ?? null, at } }))
      const next: LiveHop = { machine: e.target ?? '', via: elsewhere ? 'elsewhere' : 'replay', at, ...(created === undefined ? {} : { created }) }
      return { ...answered, hops: [...answered.hops, next] }
    }
    case 'fallback': {
      const failed = withLastHop(r, e.target ?? '', (h) => ({ ...h, unreachable: { reason: e.reason ?? '', at } }))
      return { ...failed, hops: [...failed.hops, { machine, via: 'fallback', at, reason: e.reason ?? '' }] }
    }
    case 'served':
      return { ...withLastHop(r, machine, (h) => ({ ...h, answer: { kind: 'served', status: e.status ?? 0, at } })), phase: 'streaming', status: e.status ?? null }
    case 'chunk':
      return { ...r, chunks: e.chunks ?? r.chunks, bytes: e.bytes ?? r.bytes }
    case 'done':
      return { ...r, phase: 'done', status: e.status ?? r.status, chunks: e.chunks ?? r.chunks, bytes: e.bytes ?? r.bytes, ms: e.ms ?? at }
    case 'error':
      return { ...r, phase: 'error', status: e.status ?? null, error: e.reason ?? '', ms: at }
  }
}

export interface LiveViewOptions {
  readonly app: string
  /** The autostop idle time, shown on the page. */
  readonly idleMs: number
  /** Requests kept for pages opened later; default 100. */
  readonly history?: number
  /** Current state of every Machine, polled so that every state change reaches the page. */
  readonly states?: () => Iterable<{ readonly id: string, readonly state: string }>
}

/** What `dev` tells the live view about a Machine; unset fields keep their value. */
export type MachineUpdate = { readonly id: string } & Partial<Omit<LiveMachine, 'id'>>

export interface LiveView {
  /** The edge's `onEvent`. */
  edgeEvent (e: EdgeEvent): void
  /** A Machine was created. Without `createdBy`, its creator is inferred: the one Machine a request was waiting on. */
  created (m: Omit<LiveMachine, 'createdBy' | 'createdFor' | 'startMs' | 'inFlight' | 'idleAt'> & { createdBy?: string }): void
  machine (update: MachineUpdate): void
  snapshot (): LiveSnapshot
  /** The edge's `intercept`: answers GET /_dev/ (the page), /_dev/events (SSE) and /_dev/state (JSON). */
  handle (req: IncomingMessage, res: ServerResponse): boolean
  close (): void
}

export function createLiveView (options: LiveViewOptions): LiveView {
  const history = options.history ?? DEFAULT_HISTORY
  const machines = new Map<string, LiveMachine>()
  const requests = new Map<string, LiveRequest>()
  const clients = new Set<ServerResponse>()
  let closed = false

  function send (event: string, data: unknown): void {
    if (clients.size === 0) return
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    for (const res of clients) {
      if (res.writableLength > MAX_QUEUED_BYTES) { res.destroy(); clients.delete(res); continue }
      res.write(frame)
    }
  }

  function putMachine (m: LiveMachine): void {
    machines.set(m.id, m)
    send('machine', m)
  }

  function putRequest (r: LiveRequest): void {
    // An update keeps the request's place: the history stays in order of arrival.
    requests.set(r.id, r)
    if (requests.size > history) requests.delete(requests.keys().next().value as string)
    send('request', r)
  }

  function snapshot (): LiveSnapshot {
    return { app: options.app, idleMs: options.idleMs, now: Date.now(), machines: [...machines.values()], requests: [...requests.values()] }
  }

  // The Machines API changes some states after the hooks `dev` sees (e.g. `stopped` once a stop
  // ends, `failed`): a light poll of a handful of Machines catches every change.
  const poll = options.states === undefined
    ? undefined
    : setInterval(() => {
      for (const { id, state } of options.states?.() ?? []) {
        const m = machines.get(id)
        if (m !== undefined && m.state !== state) putMachine({ ...m, state, ...(state === 'started' ? {} : { idleAt: null }) })
      }
    }, STATE_POLL_MS)
  poll?.unref()

  const heartbeat = setInterval(() => { for (const res of clients) res.write(': ping\n\n') }, HEARTBEAT_MS)
  heartbeat.unref()

  function openStream (req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' })
    // A reconnecting page gets the whole state again rather than replayed deltas.
    res.write(`retry: 1000\nevent: snapshot\ndata: ${JSON.stringify(snapshot())}\n\n`)
    clients.add(res)
    req.socket.setNoDelay(true)
    res.on('close', () => clients.delete(res))
  }

  return {
    edgeEvent (e) {
      if (closed) return
      const before = requests.get(e.requestId)
      let created: { ms: number | null } | undefined
      if (e.type === 'replay' && e.target !== undefined) {
        const target = machines.get(e.target)
        if (target !== undefined && target.createdFor === e.requestId) created = { ms: target.startMs }
      }
      putRequest(applyEdgeEvent(before, e, created))
    },
    created (m) {
      let createdBy = m.createdBy
      let createdFor: string | null = null
      if (createdBy === undefined) {
        // The sidecar that creates a pool Machine does it while a request waits on it for its answer.
        const waiting = [...requests.values()].filter((r) => r.phase === 'routing' && r.hops.at(-1)?.answer === undefined && r.hops.length > 0)
        const on = new Set(waiting.map((r) => r.hops.at(-1)?.machine))
        if (on.size === 1) {
          createdBy = [...on][0] as string
          createdFor = waiting[0]?.id ?? null
        } else {
          createdBy = 'Machines API'
        }
      }
      putMachine({ ...m, createdBy, createdFor, startMs: null, inFlight: 0, idleAt: null })
    },
    machine (update) {
      const m = machines.get(update.id)
      if (m === undefined) return
      putMachine({ ...m, ...update })
    },
    snapshot,
    handle (req, res) {
      const path = (req.url ?? '/').split('?', 1)[0] as string
      if (path !== '/_dev' && !path.startsWith(LIVE_VIEW_PREFIX)) return false
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
      } else if (path === '/_dev' || path === LIVE_VIEW_PREFIX) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(LIVE_VIEW_HTML) })
        res.end(req.method === 'HEAD' ? undefined : LIVE_VIEW_HTML)
      } else if (path === `${LIVE_VIEW_PREFIX}events` && !closed) {
        if (req.method === 'HEAD') res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' }).end()
        else openStream(req, res)
      } else if (path === `${LIVE_VIEW_PREFIX}state`) {
        const body = JSON.stringify(snapshot())
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) })
        res.end(req.method === 'HEAD' ? undefined : body)
      } else {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the live view is at /_dev/\n')
      }
      return true
    },
    close () {
      closed = true
      clearInterval(poll)
      clearInterval(heartbeat)
      for (const res of clients) res.end()
      clients.clear()
    },
  }
}
