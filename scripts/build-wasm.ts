/**
 * Writes src/kernels/*_wasm.ts from src/kernels/*.wat (see wasm_sources.ts).
 *
 *   npm run build:wasm        (or: npx tsx scripts/build-wasm.ts)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, assembleKernels } from './wasm_sources.js';

for (const { kernel, bytes, source } of await assembleKernels()) {
  writeFileSync(join(ROOT, kernel.out), source);
  console.log(`${kernel.wat} -> ${kernel.out} (${bytes.length} bytes)`);
}
