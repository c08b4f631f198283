// Micro-benchmark of body inspection, in process: what deciding a body rule costs per request,
// before (matchBody on the old parseBody, test/helpers/legacy-parse-body.ts) and after (matchBodyRules).
//   node bench/micro-body.ts
// Bodies: the 16 KiB Livewire payload of the benchmark (bench/_config.ts), whose `process` call
// the rule of bench/config/sidecar.yaml matches and whose `refresh` call it does not; and a
// 16 KiB form body, without and with %-escapes (only the first can be pre-filtered).
import { compileRules, type CompiledRule } from '../src/rules/compile.ts'
import { matchBody, matchBodyRules } from '../src/rules/match.ts'
import { parseBody } from '../src/body/parse.ts'
import type { BufferedBody } from '../src/body/inspect.ts'
import { FORM_CT, JSON_CT, legacyParseBody } from '../test/helpers/legacy-parse-body.ts'
import { livewireBody } from './_config.ts'

// The body conditions of bench/config/sidecar.yaml's rule (its head conditions are matchHead's).
const compiled = compileRules([
  { name: 'livewire-process', match: { json: { 'components[*].calls[*].method': { kind: 'equals', value: 'process' } } }, to: 'tasker', line: 1 },
  { name: 'form-process', match: { form: { action: { kind: 'equals', value: 'process' } } }, to: 'tasker', line: 2 },
])
const [jsonRule, formRule] = compiled.rules as [CompiledRule, CompiledRule]

function formBody (action: string, escaped: boolean): Buffer {
  const fields: string[] = []
  for (let i = 0; fields.join('&').length < 16 * 1024 - 200; i++) fields.push(`field${i}=${escaped ? 'a%20b' : 'value'}${i}`)
  return Buffer.from(`${fields.join('&')}&action=${action}`)
}

/**
 * A Livewire payload whose snapshot holds 16 KiB of table rows: JSON inside a JSON string, so
 * `\"` everywhere, the worst realistic case for the native searches of the pre-filter.
 */
function dataHeavyLivewireBody (method: string): Buffer {
  const rows = Array.from({ length: 190 }, (_, i) => ({ id: i, name: `user ${i}`, email: `u${i}@example.com`, state: 'active' }))
  const snapshot = JSON.stringify({ data: { rows }, memo: { id: 'bench', name: 'jobs' }, checksum: 'c0ffee' })
  return Buffer.from(JSON.stringify({ _token: 'bench', components: [{ snapshot, updates: {}, calls: [{ path: '', method, params: [] }] }] }))
}

const cases: Array<{ name: string, rule: CompiledRule, ct: string, body: BufferedBody }> = [
  { name: 'Livewire JSON 16 KiB, matches', rule: jsonRule, ct: JSON_CT, body: { bytes: livewireBody('process'), complete: true } },
  { name: 'Livewire JSON 16 KiB, no match', rule: jsonRule, ct: JSON_CT, body: { bytes: livewireBody('refresh'), complete: true } },
  { name: 'Livewire data-heavy 16 KiB, matches', rule: jsonRule, ct: JSON_CT, body: { bytes: dataHeavyLivewireBody('process'), complete: true } },
  { name: 'Livewire data-heavy 16 KiB, no match', rule: jsonRule, ct: JSON_CT, body: { bytes: dataHeavyLivewireBody('refresh'), complete: true } },
  { name: 'form 16 KiB, matches', rule: formRule, ct: FORM_CT, body: { bytes: formBody('process', false), complete: true } },
  { name: 'form 16 KiB, no match', rule: formRule, ct: FORM_CT, body: { bytes: formBody('refresh', false), complete: true } },
  { name: 'form 16 KiB %-escaped, no match', rule: formRule, ct: FORM_CT, body: { bytes: formBody('refresh', true), complete: true } },
]

/**
 * Median ns per call of `before` and of `after`, over 7 interleaved timed runs of about 30 ms
 * each (so a busy neighbour on the machine slows both alike), after a warm-up.
 */
function nsPerOp (before: () => unknown, after: () => unknown): [number, number] {
  let sink = 0
  const timed = (f: () => unknown, n: number): number => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) if (f() !== undefined) sink++
    return Number(process.hrtime.bigint() - t0) / n
  }
  const calls = (f: () => unknown): number => {
    const t0 = process.hrtime.bigint()
    let n = 0
    while (process.hrtime.bigint() - t0 < 30_000_000n) { if (f() !== undefined) sink++; n++ }
    return n
  }
  const nb = calls(before)
  const na = calls(after)
  const b: number[] = []
  const a: number[] = []
  for (let r = 0; r < 7; r++) {
    b.push(timed(before, nb))
    a.push(timed(after, na))
  }
  if (sink < 0) console.log(sink)
  const median = (xs: number[]): number => xs.sort((x, y) => x - y)[3] ?? 0
  return [median(b), median(a)]
}

const row = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(48) : c.padStart(12)).join('')

function main (): void {
  console.log(row(['ns/op', 'before', 'after', 'speed-up']))
  for (const c of cases) {
    const candidates = [c.rule]
    const [before, after] = nsPerOp(() => matchBody(candidates, legacyParseBody(c.ct, c.body)), () => matchBodyRules(candidates, c.ct, c.body))
    const same = matchBody(candidates, legacyParseBody(c.ct, c.body)) === matchBodyRules(candidates, c.ct, c.body)
    console.log(row([`match: ${c.name}`, before.toFixed(0), after.toFixed(0), `${(before / after).toFixed(1)}x`]) + (same ? '' : '  DIFFERENT RESULT'))
  }
  for (const c of cases.filter((x) => x.name.endsWith('matches'))) {
    const [before, after] = nsPerOp(() => legacyParseBody(c.ct, c.body), () => parseBody(c.ct, c.body))
    console.log(row([`parseBody: ${c.name}`, before.toFixed(0), after.toFixed(0), `${(before / after).toFixed(1)}x`]))
  }
}

main()
