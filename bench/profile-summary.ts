// Summarizes a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): where the sidecar's CPU time
// goes, by area (sidecar module, package, Node internals, GC) and by function, self and total.
//   node bench/profile-summary.ts bench/.out/prof/<file>.cpuprofile [--top N]
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

/** Where a frame's code lives: `src/proxy/forward.ts`, `undici`, `node:internal/...`, `(gc)`. */
export function areaOf (url: string, functionName: string): string {
  if (url === '') return `(${functionName.replace(/[()]/g, '') || 'native'})`
  const nm = url.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : rest[0] ?? url
  }
  const src = url.indexOf('/src/')
  if (src !== -1) return url.slice(src + 1)
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  return url.replace(/^file:\/\//, '')
}

/** Self and total microseconds per area and per function of a profile. */
export function summarizeProfile (p: CpuProfile): {
  totalUs: number
  areas: Map<string, { self: number, total: number }>
  functions: Map<string, { self: number, total: number }>
} {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of p.nodes) byId.set(n.id, n)
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const areas = new Map<string, { self: number, total: number }>()
  const functions = new Map<string, { self: number, total: number }>()
  const add = (m: Map<string, { self: number, total: number }>, k: string, self: number, total: number): void => {
    const e = m.get(k) ?? { self: 0, total: 0 }
    e.self += self
    e.total += total
    m.set(k, e)
  }
  let totalUs = 0
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0
    totalUs += dt
    let id: number | undefined = p.samples[i]
    const seenA = new Set<string>()
    const seenF = new Set<string>()
    let first = true
    while (id !== undefined) {
      const n = byId.get(id)
      if (n === undefined) break
      const cf = n.callFrame
      const area = areaOf(cf.url, cf.functionName)
      const fn = `${cf.functionName || '(anonymous)'} ${area}${cf.url === '' ? '' : `:${cf.lineNumber + 1}`}`
      // Total counts a sample once per area/function, however often it recurses.
      if (!seenA.has(area)) { seenA.add(area); add(areas, area, first ? dt : 0, dt) } else if (first) add(areas, area, dt, 0)
      if (!seenF.has(fn)) { seenF.add(fn); add(functions, fn, first ? dt : 0, dt) } else if (first) add(functions, fn, dt, 0)
      first = false
      id = parent.get(id)
    }
  }
  return { totalUs, areas, functions }
}

function table (title: string, m: Map<string, { self: number, total: number }>, totalUs: number, top: number, by: 'self' | 'total'): string {
  const rows = [...m.entries()].sort((a, b) => b[1][by] - a[1][by]).slice(0, top)
  const pct = (us: number): string => `${(us / totalUs * 100).toFixed(1)}%`
  return [`## ${title}`, '', '| | self | total |', '|---|---|---|',
    ...rows.map(([k, v]) => `| \`${k}\` | ${pct(v.self)} | ${pct(v.total)} |`), ''].join('\n')
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } })
  const file = positionals[0]
  if (file === undefined) {
    console.error('usage: node bench/profile-summary.ts FILE.cpuprofile [--top N]')
    process.exitCode = 2
  } else {
    const s = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile)
    const top = Number(values.top)
    const idle = s.areas.get('(idle)')?.self ?? 0
    const busy = s.totalUs - idle
    console.log(`# ${file}\n\nsampled ${(s.totalUs / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s; percentages are of busy time.\n`)
    s.areas.delete('(idle)')
    s.functions.delete('(idle) (idle)')
    s.functions.delete('(root) (root)')
    console.log(table('By area (self)', s.areas, busy, top, 'self'))
    console.log(table('By function (self)', s.functions, busy, top, 'self'))
    console.log(table('By function (total)', s.functions, busy, top, 'total'))
  }
}
