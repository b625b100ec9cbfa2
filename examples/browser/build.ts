/**
 * Builds the demo page into a folder: demo.ts bundled with esbuild (the
 * package's browser build), index.html, and the wasm backend's .wasm files.
 */
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundlePages } from '../../scripts/browser/bundle.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Writes the page into `outDir` (created if missing). */
export async function buildDemo(outDir: string): Promise<void> {
  await bundlePages({ demo: join(here, 'demo.ts') }, outDir, { minify: true });
  copyFileSync(join(here, 'index.html'), join(outDir, 'index.html'));
}
