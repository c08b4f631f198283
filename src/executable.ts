// Entry of the single executable that scripts/bundle.ts builds: runs the CLI.
//
// It once re-executed itself (process.execve) to set glibc's MALLOC_ARENA_MAX and
// MALLOC_MMAP_THRESHOLD_, which glibc reads only at exec. Measured again on the byte-level data
// path, neither setting changed the memory left 30 s after a load beyond the spread of the runs,
// and the re-exec was a second Node start before the sidecar's own: about 110 ms of CPU, a third
// of the start (docs/performance.md, "Memory and start-up"). Users who want them set them in the
// environment, where glibc reads them at the one exec.
import { isSea } from 'node:sea'

// The executable; or its JavaScript run by a plain `node` (bench/run.ts), where the user's
// command line decides the environment and flags. Imported by tests, it does nothing.
const asBundle = /(?:^|[/\\])fly-replay-sidecar\.cjs$/.test(process.argv[1] ?? '')
if (isSea() || asBundle) {
  void import('./cli.ts').then(({ runCli }) => { runCli(process.argv.slice(2)) })
}
