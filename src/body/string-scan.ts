// Where a JSON string's text stops being plain: the next `"`, `\` or control byte (below 0x20),
// found 16 bytes at a time by a WebAssembly SIMD function. JavaScript has no vector operations,
// and the native searches it has find one byte value per call: a 16 KiB string checked for all
// 34 of them took more instructions in JavaScript (four bytes per word, V8 checking the array
// on every round) than all the rest of reading the body.

export interface StringScanner {
  /** Copies `bytes` into the scanner's memory; next() then searches them (until the next load). */
  load (bytes: Uint8Array): void
  /** The index of the first `"`, `\` or byte below 0x20 in [from, end) of the loaded bytes, else `end`. */
  next (from: number, end: number): number
}

const PAGE = 65536

// The little of WebAssembly used here (the DOM lib, which types it, is not in this project's).
interface WasmMemory { readonly buffer: ArrayBuffer, grow (pages: number): number }
interface WasmApi {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { readonly exports: Record<string, unknown> }
}

// (func (param $i i32) (param $end i32) (result i32) (local $v v128) (local $m i32)
//   (loop
//     (if (i32.ge_u $i $end) (return $end))
//     (local.set $v (v128.load $i))
//     (local.set $m (i8x16.bitmask (v128.or (v128.or (i8x16.lt_u $v (splat 0x20))
//                                                    (i8x16.eq $v (splat 0x22)))
//                                           (i8x16.eq $v (splat 0x5c)))))
//     (if $m (return (select (local.tee $i (i32.add $i (i32.ctz $m))) $end (i32.lt_u $i $end))))
//     (local.set $i (i32.add $i 16)) (br 0))
//   unreachable)
// Bytes past `end` are read (up to 15), never reported: the memory keeps 16 spare bytes.
const splat = (b: number): number[] => [0xfd, 0x0c, ...new Array<number>(16).fill(b)]
const CODE = [
  0x02, 0x01, 0x7b, 0x01, 0x7f,
  0x03, 0x40,
  0x20, 0x00, 0x20, 0x01, 0x4f, 0x04, 0x40, 0x20, 0x01, 0x0f, 0x0b,
  0x20, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x22, 0x02,
  ...splat(0x20), 0xfd, 0x26,
  0x20, 0x02, ...splat(0x22), 0xfd, 0x23, 0xfd, 0x50,
  0x20, 0x02, ...splat(0x5c), 0xfd, 0x23, 0xfd, 0x50,
  0xfd, 0x64, 0x22, 0x03,
  0x04, 0x40,
  0x20, 0x00, 0x20, 0x03, 0x68, 0x6a, 0x22, 0x00,
  0x20, 0x01, 0x20, 0x00, 0x20, 0x01, 0x49, 0x1b, 0x0f,
  0x0b,
  0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00,
  0x0c, 0x00,
  0x0b,
  0x00,
  0x0b,
]

function leb (n: number): number[] {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}

const section = (id: number, bytes: readonly number[]): number[] => [id, ...leb(bytes.length), ...bytes]

/** The module: one memory `m` (one page to start), one function `s` (above). */
const MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]),
  ...section(3, [0x01, 0x00]),
  ...section(5, [0x01, 0x00, 0x01]),
  ...section(7, [0x02, 0x01, 0x6d, 0x02, 0x00, 0x01, 0x73, 0x00, 0x00]),
  ...section(10, [0x01, ...leb(CODE.length), ...CODE]),
])

/**
 * The SIMD scanner, or undefined where this Node runs no WebAssembly SIMD (`--jitless`, a build
 * without it): callers then search in JavaScript.
 */
export function simdStringScanner (): StringScanner | undefined {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly
  if (wasm === undefined) return undefined
  let memory: WasmMemory
  let scan: (from: number, end: number) => number
  try {
    const exports = new wasm.Instance(new wasm.Module(MODULE)).exports
    memory = exports.m as WasmMemory
    scan = exports.s as (from: number, end: number) => number
  } catch {
    return undefined
  }
  let heap = new Uint8Array(memory.buffer)
  return {
    load (bytes) {
      const need = bytes.length + 16
      if (need > heap.length) {
        memory.grow(Math.ceil((need - heap.length) / PAGE))
        heap = new Uint8Array(memory.buffer)
      }
      heap.set(bytes)
    },
    next: scan,
  }
}
