/**
 * Assembles src/kernels/*.wat into the base64 TypeScript modules the library
 * embeds (so it needs no assembler at runtime). Used by scripts/build-wasm.ts,
 * which writes them, and by test/kernels/wasm_sources.test.ts, which checks
 * that the committed modules are exactly what the sources assemble to.
 * wabt is a devDependency used only here.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';

/** The repository's root folder. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** One kernel: its WAT source, the generated module, and the name of the exported constant. */
export interface KernelSource {
  wat: string;
  out: string;
  constName: string;
}

export const KERNELS: readonly KernelSource[] = [
  { wat: 'src/kernels/batch_matmul.wat', out: 'src/kernels/batch_matmul_wasm.ts', constName: 'BATCH_MATMUL_WASM_BASE64' },
  { wat: 'src/kernels/masked_softmax.wat', out: 'src/kernels/masked_softmax_wasm.ts', constName: 'MASKED_SOFTMAX_WASM_BASE64' },
  { wat: 'src/kernels/rerank.wat', out: 'src/kernels/rerank_wasm.ts', constName: 'RERANK_WASM_BASE64' },
  { wat: 'src/kernels/rotation_bucket.wat', out: 'src/kernels/rotation_bucket_wasm.ts', constName: 'ROTATION_BUCKET_WASM_BASE64' },
];

/** Base64 split in lines of this many characters, so diffs of the generated file stay readable. */
const LINE_LENGTH = 100;

/** A kernel assembled: its bytes and the text of its generated module. */
export interface AssembledKernel {
  kernel: KernelSource;
  bytes: Uint8Array;
  source: string;
}

/** Assembles every kernel's .wat (validated, and compiled once by this Node as the library will). */
export async function assembleKernels(): Promise<AssembledKernel[]> {
  const wabt = await wabtInit();
  const assembled: AssembledKernel[] = [];
  for (const kernel of KERNELS) {
    const text = readFileSync(join(ROOT, kernel.wat), 'utf8');
    const module = wabt.parseWat(kernel.wat, text, { simd: true });
    try {
      module.resolveNames();
      module.validate();
      const { buffer } = module.toBinary({ canonicalize_lebs: true, write_debug_names: false });
      const bytes = new Uint8Array(buffer);
      new WebAssembly.Module(bytes);
      const base64 = Buffer.from(bytes).toString('base64');
      const lines: string[] = [];
      for (let i = 0; i < base64.length; i += LINE_LENGTH) lines.push(`  '${base64.slice(i, i + LINE_LENGTH)}',`);
      const source = [
        '// GENERATED FILE, do not edit.',
        `// The WebAssembly bytes of ${kernel.wat}, ${bytes.length} bytes, base64.`,
        '// Regenerate after editing the .wat: npm run build:wasm (npx tsx scripts/build-wasm.ts).',
        '',
        `export const ${kernel.constName} = [`,
        ...lines,
        "].join('');",
        '',
      ].join('\n');
      assembled.push({ kernel, bytes, source });
    } finally {
      module.destroy();
    }
  }
  return assembled;
}
