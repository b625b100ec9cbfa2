/**
 * Assembles src/kernels/*.wat into base64 TypeScript modules, so the library
 * needs no assembler at runtime.
 *
 *   npm run build:wasm        (or: npx tsx scripts/build-wasm.ts)
 *
 * Reads src/kernels/batch_matmul.wat and src/kernels/masked_softmax.wat, writes
 * src/kernels/batch_matmul_wasm.ts and src/kernels/masked_softmax_wasm.ts.
 * wabt is a devDependency used only here.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** One kernel: its WAT source, the generated module, and the name of the exported constant. */
interface KernelSource {
  wat: string;
  out: string;
  constName: string;
}

const KERNELS: KernelSource[] = [
  {
    wat: 'src/kernels/batch_matmul.wat',
    out: 'src/kernels/batch_matmul_wasm.ts',
    constName: 'BATCH_MATMUL_WASM_BASE64',
  },
  {
    wat: 'src/kernels/masked_softmax.wat',
    out: 'src/kernels/masked_softmax_wasm.ts',
    constName: 'MASKED_SOFTMAX_WASM_BASE64',
  },
];

/** Base64 split in lines of this many characters, so diffs of the generated file stay readable. */
const LINE_LENGTH = 100;

async function main(): Promise<void> {
  const wabt = await wabtInit();
  for (const kernel of KERNELS) {
    const watPath = join(root, kernel.wat);
    const text = readFileSync(watPath, 'utf8');
    const module = wabt.parseWat(kernel.wat, text, { simd: true });
    try {
      module.resolveNames();
      module.validate();
      const { buffer } = module.toBinary({ canonicalize_lebs: true, write_debug_names: false });
      // Checks that this Node can compile it too (it is what the library will do).
      new WebAssembly.Module(new Uint8Array(buffer));
      const base64 = Buffer.from(buffer).toString('base64');
      const lines: string[] = [];
      for (let i = 0; i < base64.length; i += LINE_LENGTH) lines.push(`  '${base64.slice(i, i + LINE_LENGTH)}',`);
      const source = [
        '// GENERATED FILE, do not edit.',
        `// The WebAssembly bytes of ${kernel.wat}, ${buffer.length} bytes, base64.`,
        '// Regenerate after editing the .wat: npm run build:wasm (npx tsx scripts/build-wasm.ts).',
        '',
        `export const ${kernel.constName} = [`,
        ...lines,
        "].join('');",
        '',
      ].join('\n');
      const outPath = join(root, kernel.out);
      writeFileSync(outPath, source);
      console.log(`${relative(root, watPath)} -> ${relative(root, outPath)} (${buffer.length} bytes)`);
    } finally {
      module.destroy();
    }
  }
}

await main();
