// Which pages of a running Node binary (the sidecar's executable, or bare Node) are resident, and
// what they hold: reads /proc/<pid>/maps and /proc/<pid>/pagemap (root, or the process's owner with
// CAP_SYS_ADMIN, sees the flags) and names each resident page of the binary by its ELF section and
// the symbol it falls in, from the symbols of an unstripped Node binary of the same build (the
// executable is made from it: its sections keep their addresses, see `readelf -lW`).
//   node bench/resident-pages.ts [--symbols FILE] [--top N] PID [PID...]
// With two or more PIDs the symbol table is sorted by how much more the first has resident than
// the second: run it on the idle sidecar and on bare Node (bench/targets/bare-http.cjs).
import { execFileSync } from 'node:child_process'
import { closeSync, openSync, readFileSync, readSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from './_targets.ts'

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    symbols: { type: 'string', default: join(ROOT, 'node_modules', 'node', 'bin', 'node') },
    top: { type: 'string', default: '40' },
  },
})
if (positionals.length === 0) {
  process.stderr.write('usage: node bench/resident-pages.ts [--symbols UNSTRIPPED_NODE] [--top N] PID [PID...]\n')
  process.exit(2)
}
const PAGE = 4096
const MiB = 1024 * 1024
const TOP = Number(args.top)

interface Range { start: number, end: number, name: string }

/** Sections that occupy memory (SHF_ALLOC), from `readelf -SW`. */
function sections (file: string): Range[] {
  const out: Range[] = []
  for (const line of execFileSync('readelf', ['-SW', file], { encoding: 'utf8', maxBuffer: 64 * MiB }).split('\n')) {
    const m = /^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]{16})\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*A\S*)/.exec(line)
    if (m === null) continue
    const start = parseInt(m[2] as string, 16)
    if (start === 0) continue
    out.push({ start, end: start + parseInt(m[3] as string, 16), name: m[1] as string })
  }
  return out.sort((a, b) => a.start - b.start)
}

/**
 * Symbols by address, demangled. A symbol without a size (V8's embedded builtins, hand-written
 * assembly) reaches to the next one.
 */
function symbols (file: string): Range[] {
  const text = execFileSync('nm', ['-C', '-S', '--defined-only', file], { encoding: 'utf8', maxBuffer: 512 * MiB })
  const raw: Array<{ start: number, size: number | undefined, name: string }> = []
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{16}) (?:([0-9a-f]{16}) )?[a-zA-Z] (.+)$/.exec(line)
    if (m === null) continue
    raw.push({ start: parseInt(m[1] as string, 16), size: m[2] === undefined ? undefined : parseInt(m[2], 16), name: m[3] as string })
  }
  raw.sort((a, b) => a.start - b.start || (b.size ?? 0) - (a.size ?? 0))
  const out: Range[] = []
  for (let i = 0; i < raw.length; i++) {
    const s = raw[i] as (typeof raw)[number]
    if (out.length > 0 && (out[out.length - 1] as Range).start === s.start) continue
    let next = i + 1
    while (next < raw.length && (raw[next] as (typeof raw)[number]).start === s.start) next++
    const end = s.size !== undefined && s.size > 0 ? s.start + s.size : (raw[next]?.start ?? s.start + PAGE)
    out.push({ start: s.start, end, name: s.name })
  }
  return out
}

/** The range holding `addr`, by binary search over ranges sorted by start. */
function find (ranges: readonly Range[], addr: number): Range | undefined {
  let lo = 0
  let hi = ranges.length - 1
  let hit: Range | undefined
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const r = ranges[mid] as Range
    if (r.start <= addr) { hit = r; lo = mid + 1 } else hi = mid - 1
  }
  return hit !== undefined && addr < hit.end ? hit : undefined
}

/** What a symbol belongs to, for the summary: ICU, OpenSSL, V8, Node, or the symbol's own prefix. */
function area (symbol: string | undefined, section: string): string {
  if (symbol === undefined) return `${section} (no symbol)`
  if (/^icudt\d+_dat$/.test(symbol)) return 'ICU data (icudt*_dat)'
  if (/^(icu_\d+::|u[a-z]*_\w+_\d+$|U[A-Z])/.test(symbol) || /_\d{2}$/.test(symbol)) return 'ICU code'
  if (symbol === 'v8_Default_embedded_blob_code_') return 'V8 embedded builtins (code)'
  if (symbol === 'v8_Default_embedded_blob_data_') return 'V8 embedded builtins (data)'
  if (/^v8::internal::blob_data$/.test(symbol)) return 'V8 startup snapshot (blob_data)'
  if (symbol.startsWith('node::builtins::') || /^node::\w+_raw$/.test(symbol)) return 'Node built-in JS sources'
  if (/^(ossl_|OPENSSL_|EVP_|BN_|RSA_|EC_|SSL_|X509|ASN1_|CRYPTO_|OBJ_|ERR_|PEM_|BIO_|aesni_|sha\d+_|ecp_nistz|nid_objs|x25519|bn_)/.test(symbol)) return 'OpenSSL'
  if (symbol.startsWith('v8::') || symbol.startsWith('Builtins_') || symbol.startsWith('cppgc::')) return 'V8'
  if (symbol.startsWith('node::')) return 'Node'
  if (/^(uv_|uv__)/.test(symbol)) return 'libuv'
  if (/^(sqlite3|kStaticDictionary|kBrotli|Brotli|deflate|inflate|zstd|ZSTD|nghttp|llhttp|ada::|simdutf|cares|ares_)/.test(symbol)) return (/^\w+/.exec(symbol)?.[0] ?? symbol).replace(/^(sqlite3|kStaticDictionary|kBrotli|Brotli|deflate|inflate|zstd|ZSTD|nghttp|llhttp|ada|simdutf|cares|ares_).*/, '$1')
  const ns = /^([A-Za-z_][\w]*)::/.exec(symbol)
  return ns === null ? 'other C symbols' : `${ns[1] as string}::`
}

interface Pages { exe: string, resident: Map<number, number>, fileRss: number, anonRss: number, byMapping: Map<string, number> }

/** Resident pages of the process's own binary (address → pagemap flags), and its other file mappings. */
function residentPages (pid: number): Pages {
  const exe = readlinkSync(`/proc/${pid}/exe`)
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n')
  const fd = openSync(`/proc/${pid}/pagemap`, 'r')
  const resident = new Map<number, number>()
  const byMapping = new Map<string, number>()
  try {
    for (const line of maps) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
      if (m === null) continue
      const start = parseInt(m[1] as string, 16)
      const end = parseInt(m[2] as string, 16)
      const path = m[3] as string
      if (!path.startsWith('/')) continue
      const n = (end - start) / PAGE
      const buf = Buffer.alloc(n * 8)
      readSync(fd, buf, 0, buf.length, (start / PAGE) * 8)
      let count = 0
      for (let i = 0; i < n; i++) {
        const flags = buf.readBigUInt64LE(i * 8)
        if ((flags >> 63n) === 0n) continue
        count++
        if (path === exe) resident.set(start + i * PAGE, Number(flags >> 55n))
      }
      byMapping.set(path, (byMapping.get(path) ?? 0) + count * PAGE)
    }
  } finally {
    closeSync(fd)
  }
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN) * 1024
  return { exe, resident, fileRss: kib('Rss') - kib('Anonymous'), anonRss: kib('Anonymous'), byMapping }
}

const secs = sections(args.symbols as string)
const syms = symbols(args.symbols as string)
const procs = positionals.map(Number).map(residentPages)
const mib = (bytes: number | undefined): string => ((bytes ?? 0) / MiB).toFixed(2)

// Pagemap bit 61 (flags >> 55 bit 6): a file page or shared anonymous; unset in a private mapping
// of the binary, the page is a private copy (relocations, the .data written to).
const FILE_BIT = 1 << 6
type Tally = Map<string, number>
const add = (t: Tally, key: string, bytes: number): void => { t.set(key, (t.get(key) ?? 0) + bytes) }
const bySection: Tally[] = []
const byArea: Tally[] = []
const bySymbol: Tally[] = []
for (const p of procs) {
  const s: Tally = new Map()
  const a: Tally = new Map()
  const y: Tally = new Map()
  for (const [addr, flags] of p.resident) {
    const section = find(secs, addr)?.name ?? '(outside the sections: headers, padding, the SEA note)'
    const sym = find(syms, addr)?.name
    const copy = (flags & FILE_BIT) === 0 ? ' [private copy]' : ''
    add(s, section + copy, PAGE)
    add(a, area(sym, section), PAGE)
    add(y, `${section}: ${sym ?? '(no symbol)'}`, PAGE)
  }
  bySection.push(s); byArea.push(a); bySymbol.push(y)
}

const out: string[] = []
const head = (cols: string[]): void => { out.push(`| ${cols.join(' | ')} |`, `| ${cols.map(() => '---').join(' | ')} |`) }
const table = (title: string, tallies: Tally[], sortByDiff: boolean, limit: number): void => {
  const keys = [...new Set(tallies.flatMap((t) => [...t.keys()]))]
  const diff = (k: string): number => (tallies[0]?.get(k) ?? 0) - (tallies[1]?.get(k) ?? 0)
  const score = (k: string): number => sortByDiff && tallies.length > 1 ? diff(k) : (tallies[0]?.get(k) ?? 0)
  keys.sort((x, y) => score(y) - score(x))
  out.push('', `${title}, MiB`, '')
  head(['', ...procs.map((p, i) => `${positionals[i] as string} ${p.exe.split('/').pop() as string}`), ...(tallies.length > 1 ? ['first − second'] : [])])
  for (const k of keys.slice(0, limit)) out.push(`| ${k.replaceAll('|', '\\|').slice(0, 140)} | ${tallies.map((t) => mib(t.get(k))).join(' | ')}${tallies.length > 1 ? ` | ${mib(diff(k))}` : ''} |`)
  out.push(`| all | ${tallies.map((t) => mib([...t.values()].reduce((x, y) => x + y, 0))).join(' | ')}${tallies.length > 1 ? ' |' : ''} |`)
}
out.push('Process totals (smaps_rollup), MiB', '')
head(['', ...positionals])
out.push(`| file-backed RSS | ${procs.map((p) => mib(p.fileRss)).join(' | ')} |`)
out.push(`| anonymous RSS | ${procs.map((p) => mib(p.anonRss)).join(' | ')} |`)
const paths = [...new Set(procs.flatMap((p) => [...p.byMapping.keys()]))]
for (const path of paths) out.push(`| resident of ${path} | ${procs.map((p) => mib(p.byMapping.get(path))).join(' | ')} |`)
table('The binary by section', bySection, false, 50)
table('The binary by area (symbol families)', byArea, true, 30)
table(`The binary by symbol (top ${TOP}${procs.length > 1 ? ', by difference' : ''})`, bySymbol, true, TOP)
process.stdout.write(`${out.join('\n')}\n`)
