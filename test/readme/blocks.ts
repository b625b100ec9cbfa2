/**
 * What the README test needs to run the README's TypeScript blocks as a
 * reader would, against the sources instead of a build: the blocks
 * themselves, what each says it prints, and a TypeScript `paths` mapping of
 * the package's names (`tfjs-lsh-attention`, `…/layers`, …) to the source
 * files, derived from package.json's `exports` so it follows that map.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** One fenced TypeScript block. */
export interface CodeBlock {
  /** 1-based position among the TypeScript blocks. */
  number: number;
  /** README line of the block's first code line (the one after the fence). */
  firstLine: number;
  code: string;
}

const TS_FENCE = /^```(ts|typescript)\s*$/;
const CLOSING_FENCE = /^```\s*$/;

/** The ```ts (or ```typescript) blocks of a markdown text, in order. */
export function typeScriptBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!TS_FENCE.test(lines[i])) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !CLOSING_FENCE.test(lines[end])) end++;
    if (end === lines.length) throw new Error(`README: the TypeScript block opened at line ${i + 1} is never closed`);
    blocks.push({ number: blocks.length + 1, firstLine: start + 1, code: lines.slice(start, end).join('\n') + '\n' });
    i = end;
  }
  return blocks;
}

/**
 * What a block says it prints: the text after `// prints:` on each line, in
 * order. Compared without whitespace, since console.log lays arrays out in
 * its own way (`[ 1, 8, 4096, 64 ]`).
 */
export function expectedOutputs(code: string): string[] {
  return [...code.matchAll(/\/\/ prints: (.+)$/gm)].map((m) => m[1].trim());
}

/** The module names a block imports. */
export function importedModules(code: string): string[] {
  return [...code.matchAll(/^import\s[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1]);
}

/**
 * The first statement after the imports (comments and blank lines skipped):
 * where `await initBackend()` has to be, so nothing runs on a backend tfjs
 * picked by itself (cpu in Node, 30-100× slower than wasm).
 */
export function firstStatement(code: string): string | undefined {
  const withoutImports = code.replace(/^import\s[^;]*;/gm, '');
  return withoutImports
    .split('\n')
    .map((line) => line.trim())
    .find((line) => line !== '' && !line.startsWith('//'));
}

/** What package.json says about itself, as far as the mapping needs it. */
interface PackageJson {
  name: string;
  exports: Record<string, unknown>;
}

/**
 * The `types` files of an exports entry, in order: its own, then those of its
 * conditions (`import`, `require`, …), leaving out `browser` (the blocks run
 * in Node, which does not read it; bundlers for a page do).
 */
function typesOf(entry: unknown): string[] {
  if (entry === null || typeof entry !== 'object') return [];
  const conditions = entry as Record<string, unknown>;
  const own = typeof conditions.types === 'string' ? [conditions.types] : [];
  return [...own, ...Object.entries(conditions).filter(([condition]) => condition !== 'browser').flatMap(([, value]) => typesOf(value))];
}

/** Where the build puts its output (tsconfig.build.json, by way of tsconfig.json's `outDir`). */
const BUILD_DIRECTORY = 'dist';

/** `./dist/layers/index.d.ts` → `<root>/layers/index.ts` (`.d.mts` → `.mts`, `.d.cts` → `.cts`), or undefined when that is not the shape. */
function sourceOfTypes(types: string, root: string): string | undefined {
  const prefix = `./${BUILD_DIRECTORY}/`;
  if (!types.startsWith(prefix) || !/\.d\.[cm]?ts$/.test(types)) return undefined;
  return join(root, types.slice(prefix.length).replace(/\.d\.([cm]?)ts$/, '.$1ts'));
}

/**
 * `{ 'tfjs-lsh-attention/layers': '<root>/layers/index.ts', … }`: each
 * export's `types` file (`./dist/layers/index.d.ts`) traced back to the
 * source it is built from (the first of its `types` whose source exists).
 */
export function sourceMapping(packageJson: PackageJson, root: string): Record<string, string> {
  const mapping: Record<string, string> = {};
  for (const [subpath, entry] of Object.entries(packageJson.exports)) {
    const specifier = subpath === '.' ? packageJson.name : `${packageJson.name}${subpath.slice(1)}`;
    const candidates = typesOf(entry);
    if (candidates.length === 0) continue; // not a module with types (say "./package.json"): nothing a block imports
    const source = candidates.map((types) => sourceOfTypes(types, root)).find((file) => file !== undefined && existsSync(file));
    if (source === undefined) {
      throw new Error(
        `package.json exports["${subpath}"]: expected a "types" path ./${BUILD_DIRECTORY}/….d.ts built from a source file here, ` +
          `got ${JSON.stringify(candidates)}`,
      );
    }
    mapping[specifier] = source;
  }
  return mapping;
}

/** The tsconfig the blocks are type-checked and run with (tsx reads its `paths`). */
export function blocksTsconfig(mapping: Record<string, string>): object {
  return {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noUnusedLocals: true,
      skipLibCheck: true,
      noEmit: true,
      types: ['node'],
      paths: Object.fromEntries(Object.entries(mapping).map(([name, file]) => [name, [file]])),
    },
    include: ['*.ts'],
  };
}

/** Written to stderr by `backend_probe.ts` as a block's process exits, followed by the backend's name. */
export const BACKEND_MARKER = 'readme-test: backend in use at exit: ';
