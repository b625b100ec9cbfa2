/**
 * The committed WebAssembly modules are exactly what their .wat sources
 * assemble to, so nobody edits one without the other.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BATCH_MATMUL_WASM_BASE64 } from '../../src/kernels/batch_matmul_wasm.js';
import { MASKED_SOFTMAX_WASM_BASE64 } from '../../src/kernels/masked_softmax_wasm.js';
import { RERANK_WASM_BASE64 } from '../../src/kernels/rerank_wasm.js';
import { ROTATION_BUCKET_WASM_BASE64 } from '../../src/kernels/rotation_bucket_wasm.js';
import { KERNELS, ROOT, assembleKernels } from '../../scripts/wasm_sources.js';

const EMBEDDED: Record<string, string> = { BATCH_MATMUL_WASM_BASE64, MASKED_SOFTMAX_WASM_BASE64, RERANK_WASM_BASE64, ROTATION_BUCKET_WASM_BASE64 };

describe('wasm kernel sources', () => {
  it('every .wat in src/kernels is assembled', async () => {
    const { readdirSync } = await import('node:fs');
    const wats = readdirSync(join(ROOT, 'src/kernels')).filter((name) => name.endsWith('.wat')).map((name) => `src/kernels/${name}`);
    expect(KERNELS.map((k) => k.wat).sort()).toEqual(wats.sort());
  });

  it('the committed modules equal the assembled .wat, byte for byte', async () => {
    for (const { kernel, bytes, source } of await assembleKernels()) {
      const embedded = Buffer.from(EMBEDDED[kernel.constName], 'base64');
      expect(embedded.length, kernel.wat).toBe(bytes.length);
      expect(embedded.equals(Buffer.from(bytes)), `${kernel.out} is stale: run npm run build:wasm`).toBe(true);
      expect(readFileSync(join(ROOT, kernel.out), 'utf8')).toBe(source);
    }
  });
});
