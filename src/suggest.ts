// "Did you mean": the nearest known word for a mistyped config key or command.

/** ` (did you mean "ready-timeout"?)` for readyTimeout, ready_timeout or a small typo; else ''. */
export function suggest (word: string, known: readonly string[]): string {
  const norm = (k: string): string => k.toLowerCase().replace(/[-_]/g, '')
  const best = known.find((k) => norm(k) === norm(word)) ?? known.find((k) => distance(k, word) <= 2)
  return best === undefined ? '' : ` (did you mean ${JSON.stringify(best)}?)`
}

/** Levenshtein distance. */
function distance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length] ?? 0
}
