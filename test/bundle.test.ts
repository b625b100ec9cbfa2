/**
 * Every entry point but `/node` bundles for the browser: esbuild (platform
 * browser, so package.json's "browser" condition) from the sources, and Vite's
 * default set-up (no config file) from the built package, as an app gets it.
 * The bundles hold no dynamic `import(...)` (a page could not resolve a bare
 * package name at run time) and no Node built-in; `/node` is Node-only and
 * must say so by failing to bundle on its `node:` imports.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { entryPoints, REPO, sourcesPlugin } from '../scripts/browser/bundle.js';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'bundle-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const specifier = (entry: string): string => (entry === '.' ? 'tfjs-lsh-attention' : `tfjs-lsh-attention${entry.slice(1)}`);
const browserEntries = entryPoints().filter((entry) => entry !== './node');

/** What a page cannot load: dynamic imports and Node built-ins. */
function pageProblems(code: string): string[] {
  const problems: string[] = [];
  for (const match of code.matchAll(/\bimport\s*\(([^)]*)\)/g)) problems.push(`dynamic import(${match[1]})`);
  for (const match of code.matchAll(/["'](node:[\w/]+)["']/g)) problems.push(`Node built-in ${match[1]}`);
  for (const match of code.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)) problems.push(`require("${match[1]}")`);
  return problems;
}

async function esbuildEntry(entry: string): Promise<string> {
  const file = join(work, `entry-${browserEntries.indexOf(entry)}.mjs`);
  writeFileSync(file, `import * as lib from '${specifier(entry)}';\nconsole.log(Object.keys(lib).length);\n`);
  const result = await build({
    entryPoints: [file],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
    plugins: [sourcesPlugin()],
    nodePaths: [join(REPO, 'node_modules')],
  });
  expect(result.warnings.map((w) => w.text)).toEqual([]);
  return result.outputFiles[0].text;
}

describe('esbuild, platform browser', () => {
  it('the entry points are the ones this test knows', () => {
    expect(entryPoints().sort()).toEqual(['.', './backend', './layers', './lsh', './node', './testing'].sort());
  });

  it.each(browserEntries)('%s bundles with no dynamic import and no Node built-in', async (entry) => {
    const code = await esbuildEntry(entry);
    expect(code.length).toBeGreaterThan(10_000); // tfjs-core is in it
    expect(pageProblems(code)).toEqual([]);
  });

  it('./backend resolves to the browser build, which imports no backend and registers the gradients', async () => {
    const code = await esbuildEntry('./backend');
    expect(code).toContain('BACKEND_PREFERENCE');
    expect(code).not.toMatch(/class (BackendWasm|MathBackendCPU|MathBackendWebGL|WebGPUBackend)\b/); // the app registers the backends it wants
    expect(code).toMatch(/registerGradient/);
  });

  it('./node does not bundle for the browser: it needs Node built-ins', async () => {
    await expect(esbuildEntry('./node')).rejects.toThrow(/node:(fs|crypto|path)/);
  });

  it('the checker sees what it must refuse', () => {
    expect(pageProblems('await import(name); import("node:fs"); require("x")')).toHaveLength(4);
  });
});

/** dist/ older than a source file means a stale build: rebuild it (npm ci's prepare builds it in CI). */
function distIsStale(): boolean {
  const built = join(REPO, 'dist', 'src', 'backend.browser.js');
  if (!existsSync(built)) return true;
  const builtAt = statSync(built).mtimeMs;
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : e.name.endsWith('.ts') ? statSync(join(dir, e.name)).mtimeMs : 0,
      ),
    );
  return Math.max(newest(join(REPO, 'src')), newest(join(REPO, 'layers'))) > builtAt;
}

describe("Vite's default set-up", () => {
  it('an app importing every browser entry point builds with `vite build` and no config', async () => {
    if (distIsStale()) await run(process.execPath, [join(REPO, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(REPO, 'scripts', 'build.ts')], { cwd: REPO });
    const app = join(work, 'vite-app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    // The app's node_modules: the package (its built dist/) and what it resolves from ours.
    symlinkSync(REPO, join(app, 'node_modules', 'tfjs-lsh-attention'), 'dir');
    for (const name of readdirSync(join(REPO, 'node_modules'))) {
      if (name !== '.bin' && name !== 'tfjs-lsh-attention') symlinkSync(join(REPO, 'node_modules', name), join(app, 'node_modules', name), 'dir');
    }
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'vite-app', private: true, type: 'module' }));
    writeFileSync(join(app, 'index.html'), '<!doctype html><script type="module" src="./main.js"></script>\n');
    const imports = browserEntries.map((entry, i) => `import * as m${i} from '${specifier(entry)}';`).join('\n');
    writeFileSync(join(app, 'main.js'), `${imports}\nconsole.log(${browserEntries.map((_, i) => `Object.keys(m${i}).length`).join(' + ')});\n`);
    const vite = join(REPO, 'node_modules', 'vite', 'bin', 'vite.js');
    const { stdout, stderr } = await run(process.execPath, [vite, 'build', '--logLevel', 'warn'], { cwd: app, maxBuffer: 16 * 2 ** 20 });
    const assets = join(app, 'dist', 'assets');
    const code = readdirSync(assets).filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(assets, f), 'utf8')).join('\n');
    expect(code.length).toBeGreaterThan(10_000);
    expect(pageProblems(code)).toEqual([]);
    // Vite warns of what it cannot analyse or externalises for the browser (a Node built-in, say).
    expect(`${stdout}${stderr}`).not.toMatch(/externalized for browser compatibility|cannot be analyzed|could not resolve/i);
  }, 180_000);
});
