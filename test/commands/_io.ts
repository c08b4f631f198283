// A command's stdout and stderr as strings, for asserting whole outputs.
import { Writable } from 'node:stream'

export interface CapturedIo {
  readonly io: { stdout: Writable, stderr: Writable }
  stdout: () => string
  stderr: () => string
}

export function captureIo (): CapturedIo {
  const out: string[] = []
  const err: string[] = []
  const sink = (into: string[]): Writable => new Writable({
    write (chunk: Buffer | string, _enc, cb) { into.push(chunk.toString()); cb() },
  })
  return { io: { stdout: sink(out), stderr: sink(err) }, stdout: () => out.join(''), stderr: () => err.join('') }
}
