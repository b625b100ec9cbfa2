/**
 * Builds the demo page into a folder: demo.ts bundled with esbuild (the
 * package's browser build), index.html, the wasm backend's .wasm files and
 * the trained model.
 */
import { copyFileSync, cpSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundlePages } from '../../scripts/browser/bundle.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Writes the page into `outDir` (created if missing). */
export async function buildDemo(outDir: string): Promise<void> {
  await bundlePages({ demo: join(here, 'demo.ts') }, outDir, { minify: true });
  copyFileSync(join(here, 'index.html'), join(outDir, 'index.html'));
  // The trained duplication-task model (model.json + weights.bin), loaded by the page over HTTP.
  cpSync(join(here, 'model'), join(outDir, 'model'), { recursive: true });
}
