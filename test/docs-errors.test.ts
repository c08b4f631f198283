// docs/errors.md and src/errors.ts name the same codes, both ways, and the page shows each
// code's HTTP status and message exactly as the code has them (fastify's docs-sync test).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { codes } from '../src/errors.ts'
import type { ErrorSpec } from '../src/errors.ts'

const page = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')

/** `### \`CODE\`` → the text up to the next heading. */
function sections (md: string): Map<string, string> {
  const out = new Map<string, string>()
  const parts = md.split(/^### /m).slice(1)
  for (const part of parts) {
    const m = /^`(SIDECAR_ERR_[A-Z0-9_]+)`\n/.exec(part)
    if (m === null) continue
    out.set(m[1] as string, part.split(/^## /m)[0] as string)
  }
  return out
}

const documented = sections(page)
const defined = Object.keys(codes)

t.test('every code in src/errors.ts has a section in docs/errors.md', async (t) => {
  t.strictSame(defined.filter((c) => !documented.has(c)), [], 'codes without a section')
})

t.test('every code docs/errors.md mentions exists in src/errors.ts', async (t) => {
  const mentioned = new Set(page.match(/SIDECAR_ERR_[A-Z0-9_]*[A-Z0-9]/g) ?? [])
  // `SIDECAR_ERR_MACHINES_*` names a family, not a code.
  const unknown = [...mentioned].filter((c) => !(c in codes) && !page.includes(`${c}_*`))
  t.strictSame(unknown, [], 'codes the page names that the code does not have')
})

t.test('each section gives the status, the message, when, and what to do', async (t) => {
  for (const [code, text] of documented) {
    const spec: ErrorSpec | undefined = (codes as Record<string, ErrorSpec>)[code]
    if (spec === undefined) continue
    const status = /^- \*\*HTTP status:\*\* (\d{3}|none)\b/m.exec(text)?.[1]
    t.equal(status, spec.status === undefined ? 'none' : String(spec.status), `${code} status`)
    const message = /^- \*\*Message:\*\* `(.*)`$/m.exec(text)?.[1]
    t.equal(message, spec.message, `${code} message`)
    t.match(text, /\*\*When:\*\* \S/, `${code} says when`)
    t.match(text, /\*\*What to do:\*\* \S/, `${code} says what to do`)
  }
})

t.test('sections sit under the banner of their area, in the order of src/errors.ts', async (t) => {
  const order = [...documented.keys()]
  t.strictSame(order, defined.filter((c) => documented.has(c)), 'same order as the codes object')
  for (const code of order) {
    const area = code.split('_')[2] as string
    const before = page.slice(0, page.indexOf(`### \`${code}\``))
    const lastBanner = [...before.matchAll(/^## ([A-Z]+):/gm)].pop()?.[1]
    t.equal(lastBanner, area, `${code} is under ## ${area}`)
  }
})
