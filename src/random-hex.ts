// Random hex for ids and file names, from node:crypto loaded on first use: loading it at start is
// 20 of Node's built-in modules, and a sidecar that starts no app and creates no Machine never
// needs it.

/** `bytes` random bytes from node:crypto, as hex. */
export function randomHex (bytes: number): string {
  return process.getBuiltinModule('node:crypto').randomBytes(bytes).toString('hex')
}
