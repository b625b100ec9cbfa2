/**
 * Builds dist/: the ES modules (dist/src, dist/layers) and a CommonJS copy
 * (dist/cjs/src, dist/cjs/layers), each with its own declarations.
 *
 *   npm run build        (also run by `prepare`, so `npm pack` and git installs have dist/)
 *
 * The package is "type": "module", so Node would read dist/cjs/**\/*.js as ES
 * modules; a package.json saying "commonjs" inside dist/cjs makes Node (and
 * TypeScript, for the .d.ts files there) read them as CommonJS. dist/ is
 * removed first so files of deleted sources never reach a tarball.
 *
 * The command package.json's "bin" names (dist/layers/testing/cli.js) keeps
 * its `#!/usr/bin/env node` line through tsc and is made executable here, so
 * it runs from the built tree as it does once npm has linked it.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// typescript's bin, found through its package.json (its exports give no path to the bin); run with this node.
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

rmSync(join(root, 'dist'), { recursive: true, force: true });
for (const project of ['tsconfig.build.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', join(root, project)], { cwd: root, stdio: 'inherit' });
}
writeFileSync(join(root, 'dist', 'cjs', 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);

const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
for (const [name, file] of Object.entries(packageJson.bin ?? {})) {
  const path = join(root, file);
  if (!readFileSync(path, 'utf8').startsWith('#!/usr/bin/env node\n')) {
    throw new Error(`build: the bin ${name} (${file}) must start with #!/usr/bin/env node`);
  }
  chmodSync(path, 0o755);
}
