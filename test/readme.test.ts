/**
 * The README runs as written. Every ```ts block is extracted into a
 * temporary project laid out as a reader's would be (an ES module package,
 * our node_modules), whose tsconfig maps the package's names to the sources
 * through package.json's `exports` (so no build is needed), then
 * type-checked and run, each block in its own process and working
 * directory, with TFJS_BACKEND unset so initBackend chooses. A block passes
 * when it exits cleanly, did not end up on the cpu backend, and printed what
 * its `// prints:` comments say.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BACKEND_MARKER,
  blocksTsconfig,
  expectedOutputs,
  firstStatement,
  importedModules,
  sourceMapping,
  typeScriptBlocks,
  type CodeBlock,
} from './readme/blocks.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const blocks = typeScriptBlocks(readme);
const mapping = sourceMapping(packageJson, root);

/** The README's TypeScript blocks when this test was written: finding fewer means blocks were lost. */
const BLOCKS_WHEN_WRITTEN = 6;
/** Seconds one block may take: each runs in a few on wasm, this only stops a hang (a busy machine can take 5× longer). */
const BLOCK_TIMEOUT_SECONDS = 90;

const project = mkdtempSync(join(tmpdir(), 'readme-blocks-'));
const tsconfigPath = join(project, 'tsconfig.json');
const blockFile = (block: CodeBlock) => join(project, `block-${block.number}.ts`);

beforeAll(() => {
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'readme-reader', private: true, type: 'module' }));
  writeFileSync(tsconfigPath, JSON.stringify(blocksTsconfig(mapping), null, 2));
  symlinkSync(join(root, 'node_modules'), join(project, 'node_modules'), 'dir');
  for (const block of blocks) writeFileSync(blockFile(block), block.code);
});
afterAll(() => rmSync(project, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutSeconds: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, timeout: timeoutSeconds * 1000, maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr: error?.killed ? `${stderr}\n(killed after ${timeoutSeconds} s)` : stderr });
    });
  });
}

/** Block processes at a time: each is one single-threaded wasm process, and this machine has two cores. */
const PARALLEL_BLOCKS = 2;
let running = 0;
const waiting: Array<() => void> = [];

/** Runs `work` when one of the PARALLEL_BLOCKS slots is free. */
async function inTurn<T>(work: () => Promise<T>): Promise<T> {
  if (running < PARALLEL_BLOCKS) running++;
  else await new Promise<void>((resolve) => waiting.push(resolve)); // a finishing run hands its slot over
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

/** The end of a long output (a wasm error prints a whole minified file first). */
const tail = (text: string, characters = 3000) => (text.length > characters ? `…${text.slice(-characters)}` : text);

/** Where block-N.ts(line,col) is in the README. */
function readmeLocation(file: string, line: number): string {
  const block = blocks.find((b) => b.number === Number(/block-(\d+)\.ts$/.exec(file)?.[1]));
  return block ? `README.md:${block.firstLine + line - 1}` : file;
}

const usesTf = (block: CodeBlock) => importedModules(block.code).some((name) => name.startsWith('@tensorflow/') || name in mapping);

describe('README', () => {
  it(`finds every TypeScript block (at least the ${BLOCKS_WHEN_WRITTEN} it had when this test was written)`, () => {
    const fences = readme.split('\n').filter((line) => /^```(ts|typescript)\b/.test(line)).length;
    expect(blocks).toHaveLength(fences);
    expect(blocks.length).toBeGreaterThanOrEqual(BLOCKS_WHEN_WRITTEN);
  });

  it('traces package.json exports to the sources, whatever conditions they nest', () => {
    expect(mapping).toMatchObject({
      'tfjs-lsh-attention': join(root, 'src/index.ts'),
      'tfjs-lsh-attention/layers': join(root, 'layers/index.ts'),
      'tfjs-lsh-attention/backend': join(root, 'src/backend.ts'),
      'tfjs-lsh-attention/node': join(root, 'layers/file_io.ts'),
      'tfjs-lsh-attention/lsh': join(root, 'src/lsh/index.ts'),
    });
    const withRequire = {
      name: 'p',
      exports: {
        '.': {
          require: { types: './dist/cjs/src/index.d.cts', default: './dist/cjs/src/index.cjs' },
          import: { types: './dist/src/index.d.ts', default: './dist/src/index.js' },
        },
        './layers': { types: './dist/layers/index.d.ts', require: './dist/cjs/layers/index.cjs', import: './dist/layers/index.js' },
        './package.json': './package.json',
      },
    };
    expect(sourceMapping(withRequire, root)).toEqual({ p: join(root, 'src/index.ts'), 'p/layers': join(root, 'layers/index.ts') });
    expect(() => sourceMapping({ name: 'p', exports: { './gone': { types: './dist/src/gone.d.ts' } } }, root)).toThrow(
      /exports\["\.\/gone"\]: expected a "types" path/,
    );
  });

  it('maps every package name the blocks import to a source file', () => {
    const own = blocks.flatMap((b) => importedModules(b.code)).filter((name) => name.split('/')[0] === packageJson.name);
    for (const name of own) expect(mapping, `README imports ${name}, which package.json does not export`).toHaveProperty([name]);
  });

  it.each(blocks.map((b) => [b.number, b.firstLine, b] as const))(
    'block %i (line %i) calls initBackend first and says what it prints',
    (_number, line, block) => {
      if (usesTf(block)) {
        expect(block.code, `README.md:${line}: import initBackend from 'tfjs-lsh-attention/backend'`).toMatch(
          /^import \{[^}]*\binitBackend\b[^}]*\} from 'tfjs-lsh-attention\/backend';$/m,
        );
        expect(firstStatement(block.code), `README.md:${line}: the first statement after the imports must be await initBackend()`).toMatch(
          /^await initBackend\(/,
        );
      }
      expect(expectedOutputs(block.code).length, `README.md:${line}: print something checkable, with a // prints: comment`).toBeGreaterThan(0);
    },
  );

  it('type-checks every block against the sources', async () => {
    const tsc = join(root, 'node_modules', '.bin', 'tsc');
    const result = await run(tsc, ['--noEmit', '-p', tsconfigPath], project, process.env, 120);
    const errors = (result.stdout + result.stderr).replace(/(block-\d+\.ts)\((\d+),(\d+)\)/g, (_m, file: string, l: string, c: string) =>
      `${readmeLocation(file, Number(l))}:${c}`,
    );
    expect(result.code, errors).toBe(0);
  });

  it.concurrent.for(blocks.map((b) => [b.number, b.firstLine, b] as const))(
    'block %i (line %i) runs, on the backend initBackend chose, and prints what it says',
    // Its turn may come only after the others: the wait counts against the test's time.
    { timeout: (Math.ceil(blocks.length / PARALLEL_BLOCKS) * BLOCK_TIMEOUT_SECONDS + 30) * 1000 },
    async ([number, line, block], { expect }) => {
      const cwd = join(project, `run-${number}`);
      mkdirSync(cwd);
      const env: NodeJS.ProcessEnv = { ...process.env, TSX_TSCONFIG_PATH: tsconfigPath };
      delete env.TFJS_BACKEND;
      const probe = join(root, 'test', 'readme', 'backend_probe.ts');
      const args = ['--import', 'tsx', '--import', probe, blockFile(block)];
      const result = await inTurn(() => run(process.execPath, args, cwd, env, BLOCK_TIMEOUT_SECONDS));
      const where = `README.md:${line} (block ${number})`;
      expect(result.code, `${where} failed:\n${tail(result.stderr)}`).toBe(0);

      const backend = [...result.stderr.matchAll(new RegExp(`${BACKEND_MARKER}(\\S+)`, 'g'))].at(-1)?.[1];
      expect(backend, `${where} ran on ${backend}: tfjs chose the backend, not initBackend (or wasm did not load)`).toMatch(/^(tensorflow|wasm)$/);

      // Each expectation in order, whitespace ignored (console.log lays arrays out its own way).
      const printed = result.stdout.replace(/\s+/g, '');
      let from = 0;
      for (const expected of expectedOutputs(block.code)) {
        const at = printed.indexOf(expected.replace(/\s+/g, ''), from);
        expect(at, `${where} should print ${expected}; it printed:\n${tail(result.stdout)}`).toBeGreaterThanOrEqual(0);
        from = at + expected.replace(/\s+/g, '').length;
      }
    },
  );
});
