// Incremental framing of a chunked body (RFC 9112 §7.1): finds where the body ends in the bytes as
// they arrive, checks every chunk-size line, chunk extension and trailer field on the way, and hands
// out the spans of payload. It never copies or re-chunks: the proxy forwards the bytes it was fed,
// up to the index `feed` returns, as they are.
import { CR, FIELD_CHAR, HEX, HTAB, LF, TCHAR, bytes, equalsLower, fieldPos, scanFieldLine } from './fields.ts'

const CONTENT_LENGTH = bytes('content-length')
const TRANSFER_ENCODING = bytes('transfer-encoding')

const SIZE_START = 0
const SIZE = 1
const EXT_NAME_START = 2
const EXT_NAME = 3
const EXT_VALUE_START = 4
const EXT_TOKEN = 5
const EXT_QUOTED = 6
const EXT_ESCAPE = 7
const EXT_AFTER_QUOTED = 8
const SIZE_LF = 9
const DATA = 10
const DATA_CR = 11
const DATA_LF = 12
const TRAILER = 13
const DONE = 14
const FAILED = 15

/** qdtext (RFC 9110 §5.6.4): HTAB, SP, visible ASCII but '"' and '\', obs-text. */
const QDTEXT = (() => {
  const t = new Uint8Array(256)
  for (let c = 0; c < 256; c++) t[c] = c === HTAB || (c >= 0x20 && c !== 0x22 && c !== 0x5c && c !== 0x7f) ? 1 : 0
  return t
})()

export interface ChunkedDecoderOptions {
  /** Longest chunk-size line, extensions and CRLF included (default 16 KiB, Node's own limit). */
  maxLineBytes?: number
  /** Longest trailer section, its final CRLF included (default 16 KiB). */
  maxTrailerBytes?: number
}

export type OnData = (buf: Buffer, from: number, to: number) => void

export class ChunkedDecoder {
  #state = SIZE_START
  #size = 0
  #remaining = 0
  #lineBytes = 0
  #trailerBytes = 0
  #pending: Buffer | undefined = undefined
  #error: string | undefined = undefined
  #trailers: string[] = []
  readonly #maxLineBytes: number
  readonly #maxTrailerBytes: number

  constructor (options: ChunkedDecoderOptions = {}) {
    this.#maxLineBytes = options.maxLineBytes ?? 16 * 1024
    this.#maxTrailerBytes = options.maxTrailerBytes ?? 16 * 1024
  }

  /** The last chunk and the trailer section are complete. */
  get done (): boolean { return this.#state === DONE }
  /** Why the body was refused, once `feed` returned -1. */
  get error (): string | undefined { return this.#error }
  /** The trailer fields as received: [name, value, ...]. */
  get trailers (): string[] { return this.#trailers }

  #fail (reason: string): number {
    this.#state = FAILED
    this.#error = reason
    return -1
  }

  /**
   * Consumes `buf` from `start`. Returns the index just past the last byte of this body (`buf.length`
   * while the body goes on), or -1 on a framing error (see `error`). `onData` gets every span of
   * decoded payload.
   */
  feed (buf: Buffer, start: number, onData?: OnData): number {
    let state = this.#state
    if (state === DONE) return start
    if (state === FAILED) return -1
    const len = buf.length
    let i = start
    let size = this.#size
    let lineBytes = this.#lineBytes
    while (i < len) {
      if (state === DATA) {
        const left = len - i
        const n = this.#remaining < left ? this.#remaining : left
        if (onData !== undefined) onData(buf, i, i + n)
        i += n
        this.#remaining -= n
        if (this.#remaining === 0) state = DATA_CR
        continue
      }
      if (state === TRAILER) {
        this.#state = state
        const end = this.#trailer(buf, i)
        if (end === -1) return -1
        if (this.#state === DONE) return end
        i = end
        continue
      }
      const c = buf[i] as number
      i++
      if (state <= SIZE_LF) {
        // One chunk-size line: count it so a client cannot stream an endless extension.
        if (++lineBytes > this.#maxLineBytes) return this.#fail('chunk-size line too long')
      }
      switch (state) {
        case SIZE_START: {
          const h = HEX[c] as number
          if (h === 0) return this.#fail('invalid chunk size')
          size = h - 1
          state = SIZE
          break
        }
        case SIZE: {
          const h = HEX[c] as number
          if (h !== 0) {
            size = size * 16 + (h - 1)
            if (size > Number.MAX_SAFE_INTEGER) return this.#fail('chunk size too large')
          } else if (c === CR) state = SIZE_LF
          else if (c === 0x3b) state = EXT_NAME_START
          // Whitespace after the size is refused too, as llhttp refuses it.
          else return this.#fail('invalid chunk size')
          break
        }
        case EXT_NAME_START:
          if (TCHAR[c] !== 1) return this.#fail('invalid chunk extension')
          state = EXT_NAME
          break
        case EXT_NAME:
          if (TCHAR[c] === 1) break
          if (c === 0x3d) state = EXT_VALUE_START
          else if (c === 0x3b) state = EXT_NAME_START
          else if (c === CR) state = SIZE_LF
          else return this.#fail('invalid chunk extension')
          break
        case EXT_VALUE_START:
          if (c === 0x22) state = EXT_QUOTED
          else if (TCHAR[c] === 1) state = EXT_TOKEN
          else return this.#fail('invalid chunk extension')
          break
        case EXT_TOKEN:
          if (TCHAR[c] === 1) break
          if (c === 0x3b) state = EXT_NAME_START
          else if (c === CR) state = SIZE_LF
          else return this.#fail('invalid chunk extension')
          break
        case EXT_QUOTED:
          if (c === 0x22) state = EXT_AFTER_QUOTED
          else if (c === 0x5c) state = EXT_ESCAPE
          else if (QDTEXT[c] !== 1) return this.#fail('invalid chunk extension')
          break
        case EXT_ESCAPE:
          if (FIELD_CHAR[c] !== 1) return this.#fail('invalid chunk extension')
          state = EXT_QUOTED
          break
        case EXT_AFTER_QUOTED:
          if (c === 0x3b) state = EXT_NAME_START
          else if (c === CR) state = SIZE_LF
          else return this.#fail('invalid chunk extension')
          break
        case SIZE_LF:
          if (c !== LF) return this.#fail('bare CR in a chunk-size line')
          lineBytes = 0
          if (size === 0) {
            state = TRAILER
          } else {
            this.#remaining = size
            state = DATA
          }
          break
        case DATA_CR:
          if (c !== CR) return this.#fail('chunk data longer than its size')
          state = DATA_LF
          break
        case DATA_LF:
          if (c !== LF) return this.#fail('bare CR after chunk data')
          state = SIZE_START
          break
      }
    }
    this.#state = state
    this.#size = size
    this.#lineBytes = lineBytes
    return len
  }

  /** Reads trailer lines from `i`; returns where it stopped (after the section when done) or -1. */
  #trailer (buf: Buffer, i: number): number {
    const len = buf.length
    while (i < len) {
      const lf = buf.indexOf(LF, i)
      const stop = lf === -1 ? len : lf + 1
      this.#trailerBytes += stop - i
      if (this.#trailerBytes > this.#maxTrailerBytes) return this.#fail('trailer section too large')
      if (lf === -1) {
        // A trailer line split across reads: keep its start (trailers are rare and small).
        const part = buf.subarray(i, len)
        this.#pending = this.#pending === undefined ? Buffer.from(part) : Buffer.concat([this.#pending, part])
        return len
      }
      let line = buf
      let from = i
      let to = stop
      if (this.#pending !== undefined) {
        line = Buffer.concat([this.#pending, buf.subarray(i, stop)])
        from = 0
        to = line.length
        this.#pending = undefined
      }
      // The LF is at to - 1; it must follow a CR, and a CR may not appear alone.
      if (to - from < 2 || line[to - 2] !== CR) return this.#fail('bare LF in the trailer section')
      i = stop
      if (to - from === 2) {
        this.#state = DONE
        return i
      }
      const bad = scanFieldLine(line, from, to - 2)
      if (bad !== undefined) return this.#fail(bad)
      // RFC 9110 §6.5.1: framing fields are not allowed in trailers (llhttp refuses them too).
      if (equalsLower(line, from, fieldPos.nameEnd, CONTENT_LENGTH) || equalsLower(line, from, fieldPos.nameEnd, TRANSFER_ENCODING)) return this.#fail('framing field in the trailer section')
      this.#trailers.push(line.toString('latin1', from, fieldPos.nameEnd), line.toString('latin1', fieldPos.valueStart, fieldPos.valueEnd))
    }
    return len
  }
}
