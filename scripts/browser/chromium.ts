/**
 * Launches Debian's Chromium (/usr/bin/chromium, `apt-get install -y
 * chromium`) headless through playwright-core, with WebGPU enabled. On a
 * machine without a GPU, Chromium gives both WebGPU and WebGL2 in software
 * (SwiftShader): right for correctness, not for GPU timings.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Where the browser is looked for: CHROMIUM_PATH, else Debian's path. */
export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
}

/** Flags: WebGPU on (Linux ships it behind this flag), no sandbox (CI runs as root). */
export const CHROMIUM_ARGS: readonly string[] = ['--enable-unsafe-webgpu', '--no-sandbox', '--ignore-gpu-blocklist'];

/** Starts headless Chromium, or throws saying how to install it. */
export async function launchChromium(): Promise<Browser> {
  const path = chromiumPath();
  if (!existsSync(path)) {
    throw new Error(
      `no Chromium at ${path}: install it with \`apt-get install -y chromium\` (Debian/Ubuntu; .ci/run does this), or set CHROMIUM_PATH to a Chromium or Chrome binary`,
    );
  }
  return chromium.launch({ executablePath: path, headless: true, args: [...CHROMIUM_ARGS] });
}
