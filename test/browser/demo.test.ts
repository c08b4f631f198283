// The demo and the live view in a real browser (Debian's Chromium driven by playwright-core),
// through `dev`: the live view draws the tasker being created and the process() call being
// replayed to it while its chunks stream; the demo page updates every row one after another while
// that one streamed call is still open. Screenshots go to test-output/.
import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import type { BrowserContext, Page } from 'playwright-core'
import { runDev } from '../../src/emulator/dev.ts'
import type { DevEmulator } from '../../src/emulator/dev.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url))
const STEP_MS = 300
const ROWS = 6
/** Livewire stream chunks the demo's process() sends: who serves it, then two per row; then the final payload. */
const CHUNKS_AT_LEAST = 1 + 2 * ROWS

interface DemoState {
  updates: { row: string, status: string, t: number }[]
  streams: { method: string, endedAt: number }[]
}

const skip = existsSync(CHROMIUM) || process.env.CI !== undefined ? false : `no Chromium at ${CHROMIUM}`
let dev: DevEmulator
let browser: BrowserContext

t.before(async () => {
  if (skip !== false) return
  mkdirSync(OUT, { recursive: true })
  dev = await runDev({ port: 0, idleMs: 60_000, env: { DEMO_STEP_MS: String(STEP_MS), DEMO_ROWS: String(ROWS) }, log: () => {} })
  const profile = mkdtempSync(join(tmpdir(), 'fly-replay-chromium-'))
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.teardown(async () => {
    await browser.close()
    await dev.close()
    rmSync(profile, { recursive: true, force: true })
  })
})

async function open (url: string, width = 1100, height = 760): Promise<Page> {
  const page = await browser.newPage()
  await page.setViewportSize({ width, height })
  await page.goto(url)
  return page
}

/** The chunk count the live view shows for the request in `row`, and its phase. */
async function progress (live: Page, row: string): Promise<{ chunks: number, phase: string }> {
  return await live.evaluate(`(() => {
    const r = document.querySelector('.req[data-request="${row}"]')
    const c = r && r.querySelector('.chunks')
    return { chunks: c ? Number(c.dataset.chunks) : 0, phase: r ? r.dataset.phase : '' }
  })()`) as { chunks: number, phase: string }
}

t.test('the live view draws the tasker being created and process() replayed to it, counting chunks as they stream', { skip }, async (t) => {
  const live = await open(dev.liveUrl, 1280, 900)
  await live.waitForSelector('#conn[data-state=live]')
  const main = dev.mainMachineId
  t.equal(await live.getAttribute(`.card[data-machine="${main}"]`, 'data-state'), 'started', 'the first app Machine has its card')
  t.match(await live.textContent(`.card[data-machine="${main}"] .created-by`), /by dev/)
  t.equal(await live.locator('.card[data-pool=tasker]').count(), 0, 'no tasker before the first process()')

  const demo = await open(dev.url)
  t.equal(await demo.getAttribute('#live-link', 'href'), '/_dev/', 'the demo links to the live view')
  await demo.click('#process')

  // The tasker's card appears, created by the app Machine's sidecar for this request.
  const card = live.locator('.card[data-pool=tasker]')
  await card.waitFor({ timeout: 30_000 })
  const tasker = await card.getAttribute('data-machine') as string
  t.match(await card.locator('.created-by').textContent(), `the sidecar of ${main} (app)`)

  // The request's route: edge → app Machine → fly-replay (rule livewire-process) → the tasker, created for it.
  const row = live.locator('.req', { has: live.locator(`.hop[data-via=replay][data-machine="${tasker}"]`) })
  await row.waitFor({ timeout: 30_000 })
  const id = await row.getAttribute('data-request') as string
  const route = await live.evaluate(`[...document.querySelectorAll('.req[data-request="${id}"] .route > :is(.node, .answer)')].map((e) =>
    e.dataset.machine !== undefined ? e.dataset.via + ':' + e.dataset.machine + ':' + e.dataset.pool : e.dataset.kind !== undefined ? e.dataset.kind + ':' + e.dataset.rule : e.className)`)
  t.strictSame(route, ['node edge', `route:${main}:app`, 'replay:livewire-process', `replay:${tasker}:tasker`])
  t.match(await row.locator('.answer').textContent(), `fly-replay: instance=${tasker};`)
  t.match(await row.locator(`.hop[data-machine="${tasker}"] .note.created`).textContent(), /^created for this request · started in \d/)

  // Chunks are counted while the answer streams, not only at its end.
  await live.waitForFunction(`(() => { const c = document.querySelector('.req[data-request="${id}"][data-phase=streaming] .chunks'); return c && Number(c.dataset.chunks) >= 3 })()`, null, { timeout: 30_000 })
  const early = await progress(live, id)
  t.equal(await live.getAttribute(`.card[data-machine="${tasker}"] .in-flight`, 'data-n'), '1', 'the tasker has the request in flight')
  await live.screenshot({ path: `${OUT}live-view-streaming.png` })
  await live.waitForFunction(`(() => { const c = document.querySelector('.req[data-request="${id}"] .chunks'); return c && Number(c.dataset.chunks) >= ${early.chunks + 2} })()`, null, { timeout: 30_000 })
  const later = await progress(live, id)
  t.equal(early.phase, 'streaming')
  t.ok(later.chunks > early.chunks, `the count went on while it streamed (${early.chunks}, then ${later.chunks})`)
  await live.waitForSelector(`.req[data-request="${id}"][data-phase=done]`, { timeout: 30_000 })
  const end = await progress(live, id)
  t.ok(end.chunks >= CHUNKS_AT_LEAST, `${end.chunks} chunks in all`)
  t.match(await live.textContent(`.req[data-request="${id}"] .stream`), /^✓ 200 · \d+ chunks · [\d.]+ (B|KiB) · [\d.]+ (ms|s)$/)
  await demo.waitForFunction('window.__demo.streams.length === 1', null, { timeout: 30_000 })
  await live.waitForFunction(`document.querySelector('.card[data-machine="${tasker}"] .countdown').textContent.startsWith('stops in')`, null, { timeout: 10_000 })
  t.equal(await live.getAttribute(`.card[data-machine="${tasker}"] .in-flight`, 'data-n'), '0')
  await live.screenshot({ path: `${OUT}live-view.png` })

  // A tab opened now gets the current state and the recent history.
  const late = await open(dev.liveUrl, 1280, 900)
  await late.waitForSelector(`.req[data-request="${id}"][data-phase=done]`, { timeout: 10_000 })
  t.equal(await late.getAttribute(`.card[data-machine="${tasker}"]`, 'data-state'), 'started')
  t.equal((await progress(late, id)).chunks, end.chunks)

  // A call that lands on the tasker is bounced with elsewhere=true, and drawn as such.
  const bounced = await fetch(new URL('/livewire/update', dev.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-livewire': 'true', 'fly-force-instance-id': tasker },
    body: JSON.stringify({ components: [{ snapshot: '{}', calls: [{ method: 'ping' }] }] }),
  })
  t.equal(bounced.status, 200)
  await bounced.arrayBuffer()
  const bouncedId = bounced.headers.get('fly-request-id') as string
  await late.waitForSelector(`.req[data-request="${bouncedId}"][data-phase=done]`, { timeout: 10_000 })
  t.match(await late.textContent(`.req[data-request="${bouncedId}"] .answer[data-kind=elsewhere]`), 'elsewhere bounce')
  t.equal(await late.getAttribute(`.req[data-request="${bouncedId}"] .hop[data-via=elsewhere]`, 'data-machine'), main)
  await late.screenshot({ path: `${OUT}live-view-history.png` })
  await Promise.all([live.close(), late.close(), demo.close()])
})

t.test('click Process: rows update one after another from the tasker, before the stream ends', { skip }, async (t) => {
  const page = await open(dev.url)
  t.equal(await page.textContent('#page-machine'), dev.mainMachineId, 'the page came from the main Machine')
  t.equal(await page.locator('.status[data-status=pending]').count(), ROWS)

  // Taken while every row says 'pending', the narrowest text: the column must not widen later.
  const widths = await page.evaluate('[...document.querySelectorAll(".status")].map((el) => el.getBoundingClientRect().width)') as number[]
  await page.click('#process')
  // Mid-stream: some rows are done while others have not started yet.
  await page.waitForFunction('document.querySelectorAll(".status[data-status=done]").length >= 2', null, { timeout: 30_000 })
  const midDone = await page.locator('.status[data-status=done]').count()
  const midPending = await page.locator('.status[data-status=pending]').count()
  t.equal(await page.isDisabled('#process'), true, 'Process is disabled while its stream runs')
  await page.screenshot({ path: `${OUT}demo-streaming.png` })
  t.ok(midDone >= 2 && midPending >= 1, `mid-stream ${midDone} rows done, ${midPending} pending`)

  // The page records each row update and the end of each stream (window.__demo); strings keep DOM types out of the typecheck.
  await page.waitForFunction('window.__demo.streams.length === 1', null, { timeout: 30_000 })
  await page.waitForFunction('!document.getElementById("process").disabled', null, { timeout: 10_000 })
  t.strictSame(await page.evaluate('[...document.querySelectorAll(".status")].map((el) => el.getBoundingClientRect().width)'), widths, 'the status column kept its width')
  const state = await page.evaluate('window.__demo') as DemoState
  const done = state.updates.filter((u) => u.status === 'done')
  t.strictSame(done.map((u) => u.row), Array.from({ length: ROWS }, (_, i) => `row-${i + 1}`), 'every row, in order')
  const gaps = done.slice(1).map((u, i) => Math.round(u.t - (done[i] as { t: number }).t))
  const endedAt = state.streams[0]?.endedAt ?? 0
  t.comment(`rows turned done ${gaps.join(', ')} ms apart (app step ${STEP_MS} ms); first one ${Math.round(endedAt - (done[0]?.t ?? 0))} ms before the stream ended`)
  t.ok(gaps.every((g) => g >= STEP_MS / 3), 'one after another, not all at once')
  t.ok((done.at(-1)?.t ?? 0) - (done[0]?.t ?? 0) >= (ROWS - 1) * STEP_MS * 0.75, 'spread over the time the app took')
  t.ok((done[0]?.t ?? 0) < endedAt - (ROWS - 1) * STEP_MS * 0.5, 'the first row changed long before the stream ended')

  const tasker = [...dev.api.machines.values()].find((m) => m.metadata.sidecar_pool === 'tasker')
  t.ok(tasker !== undefined, 'the tasker was created')
  t.equal(await page.textContent(`#row-${ROWS}`), 'done')
  t.strictSame(await page.evaluate('[...document.querySelectorAll(".machine")].map((el) => el.textContent)'), Array(ROWS).fill(`${tasker?.id ?? '?'} · tasker`), 'beside each row, the Machine that streamed it')
  t.equal(await page.textContent('#done-count'), String(ROWS))
  // The tasker runs now, so the edge may route this call to it directly (its sidecar then serves
  // it there) or to the app Machine, which replays it: the first test saw the replay.
  t.match(await page.textContent('#calls'), new RegExp(`^process\\(\\)  200  served by ${tasker?.id ?? '?'} \\(tasker\\)(, replayed from ${dev.mainMachineId} \\(rule livewire-process\\))?  in \\d+ ms`))
  const icon = await fetch(new URL('/favicon.ico', dev.url))
  t.equal(icon.status, 200, '/favicon.ico is not a 404')
  t.equal(icon.headers.get('content-type'), 'image/svg+xml')
  await icon.arrayBuffer()

  await page.click('#ping')
  await page.waitForFunction('document.getElementById("calls").textContent.startsWith("ping()")', null, { timeout: 10_000 })
  t.match(await page.textContent('#calls'), new RegExp(`^ping\\(\\)  200  served by ${dev.mainMachineId} \\(app\\)`), 'other calls stay on the main Machine')
  await page.screenshot({ path: `${OUT}demo.png` })
  t.ok(existsSync(`${OUT}demo.png`))
  await page.close()
})

t.test('a replay whose target is gone is drawn as a fly-replay-failed fallback to the replayer', { skip }, async (t) => {
  const main = dev.mainMachineId
  const tasker = [...dev.api.machines.values()].find((m) => m.metadata.sidecar_pool === 'tasker')?.id as string
  const live = await open(dev.liveUrl, 1280, 900)
  await live.waitForSelector('#conn[data-state=live]')
  // Gone behind the sidecar's back: its cached pick names a Machine the edge cannot find.
  await dev.runtime.destroy(tasker)
  dev.api.setState(tasker, 'destroyed')
  await live.waitForSelector(`.card[data-machine="${tasker}"][data-state=destroyed]`, { timeout: 10_000 })
  const res = await fetch(new URL('/livewire/update', dev.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-livewire': 'true', 'fly-force-instance-id': main },
    body: JSON.stringify({ components: [{ snapshot: '{}', calls: [{ method: 'process' }] }] }),
  })
  t.equal(res.status, 200)
  await res.arrayBuffer()
  const id = res.headers.get('fly-request-id') as string
  const row = `.req[data-request="${id}"]`
  await live.waitForSelector(`${row}[data-phase=done]`, { timeout: 30_000 })
  const route = await live.evaluate(`[...document.querySelectorAll('${row} .route > :is(.node, .answer, .fallback)')].map((e) =>
    e.dataset.machine !== undefined ? e.dataset.via + ':' + e.dataset.machine + (e.dataset.unreachable ? ':unreachable ' + e.dataset.unreachable : '') : e.dataset.kind !== undefined ? e.dataset.kind + ':' + e.dataset.rule : e.className + ' ' + e.textContent)`)
  t.strictSame(route, [
    'node edge edge',
    `route:${main}`,
    'replay:livewire-process',
    `replay:${tasker}:unreachable no_candidate`,
    'fallback fly-replay-failed: no_candidate → back to the replayer',
    `fallback:${main}`,
  ])
  await live.screenshot({ path: `${OUT}live-view-fallback.png` })
  await live.close()
})
