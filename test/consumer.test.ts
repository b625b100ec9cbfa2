/**
 * The package as an app gets it. `npm pack` (which builds dist/ through
 * `prepare`) into a temporary directory; two fresh projects there install the
 * tarball from the npm registry; plain `node` (no tsx) runs the fixtures in
 * test/consumer/ in each:
 *
 * - an ES-module app on @tensorflow/tfjs 4.21.0, older than the repo's 4.22.0,
 *   with the wasm backend at the same version;
 * - a CommonJS app on @tensorflow/tfjs 4.22.0 without the wasm backend (an
 *   optional peer: initBackend must fall back to cpu).
 *
 * Each app also lists @tensorflow/tfjs-node at its tfjs version as an optional
 * dependency, as the README advises; the library's own optional `^4` range
 * must reuse that copy (tfjs-node pins @tensorflow/tfjs exactly, so a second
 * tfjs-node would bring a second tfjs-core). Where tfjs-node cannot install
 * (as on our CI machine) npm drops it, and the apps run on wasm and cpu.
 *
 * Each app also checks its model against its full-attention twin
 * (`tfjs-lsh-attention/testing`) and saves it; the package's command then
 * runs on the saved model through `npx tfjs-lsh-attention check`, as a user
 * would run it, and refuses a folder that does not exist with one line.
 *
 * Then the repo's tsc type-checks test/consumer/types.ts in the installed
 * projects with moduleResolution node16 (as ESM and as CommonJS) and bundler.
 *
 * Needs the npm registry; about a minute, most of it `npm install`.
 */
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(repo, 'test', 'consumer');
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const INSTALL_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];
const INSTALL_TIMEOUT_MS = 240_000;
const TEMP_PREFIX = 'tfjs-lsh-consumer-';

/** One consumer project. */
interface App {
  name: 'esm' | 'commonjs';
  tfjsVersion: string;
  /** The backend initBackend should pick when tfjs-node is not installed. */
  backendWithoutTfjsNode: 'wasm' | 'cpu';
  /** The fixture `node` runs. */
  main: string;
  dependencies: Record<string, string>;
}

const APPS: App[] = [
  {
    name: 'esm',
    tfjsVersion: '4.21.0',
    backendWithoutTfjsNode: 'wasm',
    main: 'app.mjs',
    dependencies: { '@tensorflow/tfjs': '4.21.0', '@tensorflow/tfjs-backend-wasm': '4.21.0' },
  },
  {
    name: 'commonjs',
    tfjsVersion: '4.22.0',
    backendWithoutTfjsNode: 'cpu',
    main: 'app.cjs',
    dependencies: { '@tensorflow/tfjs': '4.22.0' },
  },
];

/** What test/consumer/run.cjs prints. */
interface Report {
  format: string;
  subpaths: Record<string, string>;
  backend: string;
  appTfjsVersion: string;
  appCoreVersion: string;
  coreSeenByLibrary: string;
  coreSeenByTfjs: string;
  loss: number;
  attentionWeightsChanged: boolean;
  predictionShape: number[];
  worstRowSumError: number;
  rebuiltLayerClasses: string[];
  equivalent: boolean;
  maxOutputDifference: number;
  twinLayerClasses: string[];
  savedModel: string;
}

let root = '';
let packed: { filename: string; files: { path: string; mode: number }[] } = { filename: '', files: [] };
const installSeconds: Record<string, number> = {};

function projectDir(app: App): string {
  return join(root, app.name);
}

/** The environment for child processes: without what `npm test` and vitest set for this process. */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key.startsWith('npm_package_') || key.startsWith('npm_lifecycle_') || key === 'npm_config_local_prefix') delete env[key];
  }
  delete env.NODE_OPTIONS;
  delete env.TFJS_BACKEND;
  return env;
}

/** Runs a command; on failure, the error carries its output. */
async function runOrExplain(command: string, args: string[], cwd: string, timeout: number): Promise<string> {
  try {
    const { stdout } = await run(command, args, { cwd, env: childEnv(), timeout, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr, message } = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} in ${cwd} failed: ${message}\n${stdout ?? ''}\n${stderr ?? ''}`);
  }
}

/** Every installed copy of `name` under `dir`'s node_modules (nested ones included), as "path@version". */
function installedCopies(dir: string, name: string): string[] {
  const found: string[] = [];
  const modules = join(dir, 'node_modules');
  if (!existsSync(modules)) return found;
  const packageDirs: string[] = [];
  for (const entry of readdirSync(modules)) {
    if (entry.startsWith('.')) continue;
    if (entry.startsWith('@')) {
      for (const scoped of readdirSync(join(modules, entry))) packageDirs.push(join(modules, entry, scoped));
    } else packageDirs.push(join(modules, entry));
  }
  for (const packageDir of packageDirs) {
    const manifest = join(packageDir, 'package.json');
    if (packageDir.endsWith(join('node_modules', name)) && existsSync(manifest)) {
      found.push(`${packageDir.slice(root.length)}@${JSON.parse(readFileSync(manifest, 'utf8')).version}`);
    }
    found.push(...installedCopies(packageDir, name));
  }
  return found;
}

/** The lockfile's entries for `name` (optional ones too: what npm would install where it can), as "path@version". */
function lockedCopies(dir: string, name: string): string[] {
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> };
  return Object.entries(lock.packages)
    .filter(([path]) => path === `node_modules/${name}` || path.endsWith(`/node_modules/${name}`))
    .map(([path, entry]) => `${path}@${entry.version}`);
}

/**
 * Deletes the temporary directory without waiting for it: its ~600 MB of
 * node_modules took 20-45 s to delete here (a slow disk), longer than the
 * installs. A detached `rm -rf` finishes after the test.
 */
function removeInBackground(dir: string): void {
  if (!dir.startsWith(join(tmpdir(), TEMP_PREFIX))) throw new Error(`consumer test: refusing to delete ${dir}`);
  if (process.platform === 'win32') rmSync(dir, { recursive: true, force: true });
  else spawn('rm', ['-rf', dir], { detached: true, stdio: 'ignore' }).unref();
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), TEMP_PREFIX));
  const packStart = performance.now();
  // `npm pack` runs `prepare`, which builds dist/ (with --json, its output goes to stderr).
  const packOutput = await runOrExplain(NPM, ['pack', '--json', '--pack-destination', root], repo, 120_000);
  packed = (JSON.parse(packOutput) as (typeof packed)[])[0];
  const tarball = join(root, packed.filename);
  const packSeconds = (performance.now() - packStart) / 1000;

  await Promise.all(
    APPS.map(async (app) => {
      const dir = projectDir(app);
      mkdirSync(dir);
      const manifest = {
        name: `consumer-${app.name}`,
        private: true,
        type: app.name === 'esm' ? 'module' : 'commonjs',
        dependencies: { ...app.dependencies, 'tfjs-lsh-attention': `file:${tarball}` },
        optionalDependencies: { '@tensorflow/tfjs-node': app.tfjsVersion },
      };
      writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      for (const file of [app.main, 'run.cjs', 'types.ts']) copyFileSync(join(fixtures, file), join(dir, file));
      const start = performance.now();
      await runOrExplain(NPM, ['install', ...INSTALL_FLAGS], dir, INSTALL_TIMEOUT_MS);
      installSeconds[app.name] = (performance.now() - start) / 1000;
    }),
  );
  const installs = APPS.map((app) => `${app.name} ${installSeconds[app.name].toFixed(0)} s`).join(', ');
  console.log(`consumer test: npm pack ${packSeconds.toFixed(0)} s; npm install (in parallel) ${installs}`);
}, INSTALL_TIMEOUT_MS + 120_000);

afterAll(() => {
  if (root !== '') removeInBackground(root);
});

it('the tarball holds both builds, their declarations and nothing of the repo besides', () => {
  const paths = packed.files.map((file) => file.path);
  for (const path of ['package.json', 'README.md', 'dist/cjs/package.json']) expect(paths).toContain(path);
  for (const entry of ['src/index', 'src/backend', 'src/lsh/index', 'layers/index', 'layers/file_io', 'layers/testing/index']) {
    for (const build of ['dist', 'dist/cjs']) {
      expect(paths).toContain(`${build}/${entry}.js`);
      expect(paths).toContain(`${build}/${entry}.d.ts`);
    }
  }
  expect(paths.filter((path) => !path.startsWith('dist/') && path !== 'package.json' && path !== 'README.md')).toEqual([]);
  expect(paths.filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'))).toEqual([]);
  expect(JSON.parse(readFileSync(join(repo, 'dist', 'cjs', 'package.json'), 'utf8'))).toEqual({ type: 'commonjs' });
  // The command: executable, and a script node runs.
  const bin = packed.files.find((file) => file.path === 'dist/layers/testing/cli.js');
  expect(bin, 'the bin is in the tarball').toBeDefined();
  expect((bin as { mode: number }).mode & 0o111).not.toBe(0);
  expect(readFileSync(join(repo, 'dist', 'layers', 'testing', 'cli.js'), 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  expect(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).bin).toEqual({ 'tfjs-lsh-attention': 'dist/layers/testing/cli.js' });
});

/** Runs a command expected to fail; returns its exit status and output. */
async function runFailing(command: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd, env: childEnv(), timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

describe.each(APPS)('$name app on @tensorflow/tfjs $tfjsVersion', (app) => {
  it('has one tfjs-core and one tfjs-layers, the app\'s, installed and in its lockfile (tfjs-node\'s subtree included)', () => {
    const dir = projectDir(app);
    for (const name of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers']) {
      expect(installedCopies(dir, name)).toEqual([`/${app.name}/node_modules/${name}@${app.tfjsVersion}`]);
      expect(lockedCopies(dir, name)).toEqual([`node_modules/${name}@${app.tfjsVersion}`]);
    }
    // The library's optional tfjs-node (^4) is the app's copy, not a second one of its own.
    expect(lockedCopies(dir, '@tensorflow/tfjs-node')).toEqual([`node_modules/@tensorflow/tfjs-node@${app.tfjsVersion}`]);
  });

  it.concurrent('loads every subpath, trains one step in the app\'s tf.sequential, predicts, rebuilds and checks the model, with plain node; npx tfjs-lsh-attention check runs on it', async ({ expect }) => {
    const dir = projectDir(app);
    const output = await runOrExplain(process.execPath, [app.main], dir, 120_000);
    const report = JSON.parse(output.trim().split('\n').at(-1) ?? '') as Report;
    expect(report.format).toBe(app.name);
    expect(report.subpaths).toEqual({
      '.': 'function',
      './layers': 'function',
      './backend': 'function',
      './node': 'function',
      './lsh': 'function',
      './testing': 'function',
    });
    const tfjsNodeInstalled = installedCopies(dir, '@tensorflow/tfjs-node').length > 0;
    expect(report.backend).toBe(tfjsNodeInstalled ? 'tensorflow' : app.backendWithoutTfjsNode);
    expect(report.appTfjsVersion).toBe(app.tfjsVersion);
    expect(report.appCoreVersion).toBe(app.tfjsVersion);
    // The library's code and the app's tfjs resolve the same tfjs-core file.
    expect(report.coreSeenByLibrary).toBe(report.coreSeenByTfjs);
    expect(report.coreSeenByLibrary.startsWith(join(dir, 'node_modules', '@tensorflow', 'tfjs-core'))).toBe(true);
    expect(Number.isFinite(report.loss)).toBe(true);
    expect(report.loss).toBeGreaterThan(0);
    expect(report.attentionWeightsChanged).toBe(true);
    expect(report.predictionShape).toEqual([4, 16, 8]);
    expect(report.worstRowSumError).toBeLessThan(1e-5);
    expect(report.rebuiltLayerClasses).toEqual(['Embedding', 'LSHSelfAttention', 'Dense']);
    expect(report.equivalent).toBe(true);
    expect(report.maxOutputDifference).toBeLessThan(1e-4);
    expect(report.twinLayerClasses).toEqual(['Embedding', 'FullSelfAttention', 'Dense']);

    // The command on the saved model, as a user runs it (the npm-linked bin, through npx).
    const command = await runOrExplain(NPM, ['exec', '--no', '--', 'tfjs-lsh-attention', 'check', report.savedModel, '--hashes', '1,2', '--runs', '1'], dir, 120_000);
    expect(command).toMatch(/\| exact LSH ✓ \(T = 16\) \|/);
    expect(command).toMatch(/\| lsh \| 1 \|/);
    expect(command).toMatch(/\| lsh \| 2 \|/);
    expect(command).toMatch(/^verdict: equivalent to full attention at T=16 /m);
    // Bad input: one line on stderr, exit status 1, no stack trace.
    const missing = await runFailing(NPM, ['exec', '--no', '--', 'tfjs-lsh-attention', 'check', 'no-such-folder'], dir);
    expect(missing.code).toBe(1);
    const lines = missing.stderr.trim().split('\n').filter((line) => line.startsWith('tfjs-lsh-attention') || /^\s+at /.test(line));
    expect(lines).toEqual([expect.stringMatching(/^tfjs-lsh-attention: no folder at .*no-such-folder; pass the folder/)]);
  });
});

/** Type-checks types.ts in an installed project; returns the errors in it or in the library's declarations. */
async function typeCheck(dir: string, configName: string, moduleKind: string, moduleResolution: string): Promise<string[]> {
  const config = {
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: 'ES2022',
      module: moduleKind,
      moduleResolution,
      lib: ['ES2022', 'DOM'],
      types: [],
      // Checked, so errors in the library's .d.ts show; tfjs's own .d.ts have errors under strict (apps set skipLibCheck).
      skipLibCheck: false,
    },
    files: ['types.ts'],
  };
  writeFileSync(join(dir, configName), JSON.stringify(config, null, 2));
  let output: string;
  try {
    output = (await run(process.execPath, [tsc, '-p', configName], { cwd: dir, env: childEnv(), timeout: 120_000, maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (error) {
    // tsc exits non-zero for the errors in tfjs's declarations; a crash prints no diagnostics.
    output = (error as { stdout?: string }).stdout ?? '';
    if (!/error TS\d+/.test(output)) throw error;
  }
  return output.split('\n').filter((line) => /^(types\.ts|node_modules\/tfjs-lsh-attention\/|error )/.test(line));
}

it.concurrent.for([
  ['esm', 'tsconfig.node16.json', 'Node16', 'Node16'],
  ['commonjs', 'tsconfig.node16.json', 'Node16', 'Node16'],
  ['esm', 'tsconfig.bundler.json', 'ESNext', 'Bundler'],
])('types: the %s app type-checks against the package with %s', async ([appName, configName, moduleKind, moduleResolution], { expect }) => {
  const app = APPS.find((candidate) => candidate.name === appName) as App;
  expect(await typeCheck(projectDir(app), configName, moduleKind, moduleResolution)).toEqual([]);
});
