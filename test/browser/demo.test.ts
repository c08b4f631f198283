// The demo in a real browser (Debian's Chromium driven by playwright-core): open the page through
// the emulator, click Process, and see every row change status one after another while the one
// streamed call to the tasker is still open. Screenshots go to test-output/.
import t from 'tap'
import { mkdirSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import type { Browser } from 'playwright-core'
import { runDev } from '../../src/emulator/dev.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url))
const STEP_MS = 300
const ROWS = 6

interface DemoState {
  updates: { row: string, status: string, t: number }[]
  streams: { method: string, endedAt: number }[]
}

t.test('click Process: rows update one after another from the tasker, before the stream ends', { skip: existsSync(CHROMIUM) || process.env.CI !== undefined ? false : `no Chromium at ${CHROMIUM}` }, async (t) => {
  mkdirSync(OUT, { recursive: true })
  const dev = await runDev({ port: 0, idleMs: 60_000, env: { DEMO_STEP_MS: String(STEP_MS), DEMO_ROWS: String(ROWS) }, log: () => {} })
  t.teardown(() => dev.close())
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } })
  await page.goto(dev.url)
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
  t.equal(await page.textContent(`#row-${ROWS}`), `done by ${tasker?.id ?? '?'}`)
  t.match(await page.textContent('#calls'), new RegExp(`process\\(\\)  200  served by ${tasker?.id ?? '?'} \\(tasker\\), replayed from ${dev.mainMachineId} \\(rule livewire-process\\)`))
  const icon = await fetch(new URL('/favicon.ico', dev.url))
  t.equal(icon.status, 200, '/favicon.ico is not a 404')
  t.equal(icon.headers.get('content-type'), 'image/svg+xml')
  await icon.arrayBuffer()

  await page.click('#ping')
  await page.waitForFunction('document.getElementById("calls").textContent.startsWith("ping()")', null, { timeout: 10_000 })
  t.match(await page.textContent('#calls'), new RegExp(`^ping\\(\\)  200  served by ${dev.mainMachineId} \\(app\\)`), 'other calls stay on the main Machine')
  await page.screenshot({ path: `${OUT}demo.png` })
  t.ok(existsSync(`${OUT}demo.png`))
})
