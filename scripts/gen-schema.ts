// Writes schema/routes.schema.json from the TypeBox schema in src/config/schema.ts
// (test/config/schema.test.ts fails when the committed file is stale).
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { renderJsonSchema } from '../src/config/schema.ts'

const out = fileURLToPath(new URL('../schema/routes.schema.json', import.meta.url))
await writeFile(out, renderJsonSchema())
console.log(`wrote ${out}`)
