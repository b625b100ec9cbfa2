/**
 * Bundles page scripts with esbuild as an app's bundler would (platform
 * browser: package.json's "browser" condition, no Node built-ins), with the
 * package's own names (`tfjs-lsh-attention/...`) resolved through its
 * `exports` map to the sources (dist/x.js → x.ts), so no build is needed.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildResult, type Plugin } from 'esbuild';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

type ExportTarget = string | { [condition: string]: ExportTarget };

/** The file an `exports` entry gives under these conditions (first match in the map's order, as bundlers read it). */
export function exportTarget(target: ExportTarget, conditions: readonly string[]): string | undefined {
  if (typeof target === 'string') return target;
  for (const [condition, next] of Object.entries(target)) {
    if (condition === 'default' || conditions.includes(condition)) {
      const found = exportTarget(next, conditions);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** The package's entry points other than ./package.json, e.g. ['.', './layers', './node', …]. */
export function entryPoints(): string[] {
  const exports = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).exports as Record<string, ExportTarget>;
  return Object.keys(exports).filter((key) => key !== './package.json');
}

/** Resolves `tfjs-lsh-attention[/sub]` through the exports map (browser conditions) to the TypeScript source. */
export function sourcesPlugin(conditions: readonly string[] = ['browser', 'import']): Plugin {
  const exports = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).exports as Record<string, ExportTarget>;
  return {
    name: 'tfjs-lsh-attention-sources',
    setup(builder) {
      builder.onResolve({ filter: /^tfjs-lsh-attention(\/.*)?$/ }, (args) => {
        const key = args.path === 'tfjs-lsh-attention' ? '.' : `.${args.path.slice('tfjs-lsh-attention'.length)}`;
        const target = exports[key] === undefined ? undefined : exportTarget(exports[key], conditions);
        if (target === undefined) return { errors: [{ text: `tfjs-lsh-attention has no export ${key}` }] };
        const source = target.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts');
        return { path: join(REPO, source) };
      });
    },
  };
}

/** Bundles `entries` (name → file) into `outDir` as ES modules for the browser; the wasm backend's .wasm files are copied beside them. */
export async function bundlePages(entries: Record<string, string>, outDir: string, options: { minify?: boolean } = {}): Promise<BuildResult> {
  mkdirSync(outDir, { recursive: true });
  const result = await build({
    entryPoints: entries,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir: outDir,
    minify: options.minify ?? false,
    sourcemap: false,
    logLevel: 'silent',
    plugins: [sourcesPlugin()],
    nodePaths: [join(REPO, 'node_modules')],
    loader: { '.json': 'json' },
    metafile: true,
  });
  copyWasmFiles(outDir);
  return result;
}

/** Copies tfjs-backend-wasm's .wasm files into `dir` (a page then calls setWasmPaths with that folder's URL). */
export function copyWasmFiles(dir: string): void {
  const wasmDist = join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const file of readdirSync(wasmDist)) if (file.endsWith('.wasm')) copyFileSync(join(wasmDist, file), join(dir, file));
}
