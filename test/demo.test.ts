/**
 * The demo page (examples/browser/, `npm run demo`) in headless Chromium:
 * built and served as `npm run demo` does, it runs a small configuration on
 * wasm, webgl and webgpu; the chart and the heat maps must be drawn
 * (non-empty), the console must stay free of errors, and a screenshot is
 * taken (after the wasm run, the last; saved as examples/results/browser-demo.png
 * when UPDATE_SCREENSHOT=1).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemo } from '../examples/browser/build.js';
import { launchChromium } from '../scripts/browser/chromium.js';
import { REPO } from '../scripts/browser/bundle.js';
import { serveStatic, type StaticServer } from '../scripts/browser/server.js';

const out = mkdtempSync(join(tmpdir(), 'demo-test-'));
let server: StaticServer | undefined;
let browser: Browser | undefined;
let page: Page | undefined;
const consoleErrors: string[] = [];

beforeAll(async () => {
  await buildDemo(out);
  server = await serveStatic(out);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 1100 } });
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(error.message));
  await page.goto(server.url);
  await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('Pick'), null, { timeout: 60_000 });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(out, { recursive: true, force: true });
});

/** Number of pixels of a canvas that are not blank (transparent or white). */
function inkedPixels(p: Page, id: string): Promise<number> {
  return p.evaluate((canvasId) => {
    const canvas = document.getElementById(canvasId) as HTMLCanvasElement;
    const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && (data[i] < 250 || data[i + 1] < 250 || data[i + 2] < 250)) inked++;
    return inked;
  }, id);
}

describe('the demo page in Chromium', () => {
  it.each(['webgpu', 'webgl', 'wasm'])('runs T=128, 2 rounds, chunks of 32 on %s: chart and heat maps drawn, no console errors', async (backend) => {
    const p = page!;
    const before = await p.evaluate(() => window.demoState.runs);
    // Clear the maps, so each backend must draw them again.
    await p.evaluate(() => {
      for (const id of ['heat-lsh', 'heat-full', 'buckets']) {
        const canvas = document.getElementById(id) as HTMLCanvasElement;
        canvas.getContext('2d')!.clearRect(0, 0, canvas.width, canvas.height);
      }
    });
    await p.fill('#length', '128');
    await p.fill('#rounds', '2');
    await p.fill('#chunk', '32');
    await p.selectOption('#backend', backend);
    await p.click('#run');
    await p.waitForFunction((n) => window.demoState.runs > n || window.demoState.errors.length > 0, before, { timeout: 150_000, polling: 250 });
    const state = await p.evaluate(() => window.demoState);
    expect(state.errors).toEqual([]);
    expect(state.description).toMatch(new RegExp(`^${backend} `));
    const points = state.points.filter((point) => point.backend === backend && point.T === 128);
    expect(await inkedPixels(p, 'heat-full')).toBeGreaterThan(1000);
    expect(await inkedPixels(p, 'buckets')).toBeGreaterThan(1000);
    if (state.lshRefused !== undefined) {
      // Only software WebGPU refuses LSH attention (README, In the browser); the page says why.
      expect(backend).toBe('webgpu');
      expect(state.description).toContain('software');
      expect(await p.textContent('#lsh-refused')).toMatch(/software adapter/);
      expect(points.map((point) => point.method)).toEqual(['full']);
    } else {
      expect(await inkedPixels(p, 'heat-lsh')).toBeGreaterThan(1000);
      expect(points.map((point) => point.method)).toEqual(['LSH', 'full']);
    }
    for (const point of points) {
      expect(point.ms).toBeGreaterThan(0);
      expect(point.MiB).toBeGreaterThan(0);
    }
    // The chart: one mark per point at least (vega draws the points as paths in the SVG).
    expect(await p.locator('#chart svg .mark-symbol path').count()).toBeGreaterThanOrEqual(state.points.length);
    expect(consoleErrors).toEqual([]);
  }, 180_000);

  it('loads the trained duplication-task model over HTTP and evaluates it with 1, 2, 4 and 8 rounds (wasm)', async () => {
    const p = page!;
    await p.selectOption('#backend', 'wasm');
    await p.click('#model-run');
    await p.waitForFunction(() => window.demoState.modelAccuracy !== undefined || window.demoState.errors.length > 0, null, { timeout: 120_000 });
    const state = await p.evaluate(() => window.demoState);
    expect(state.errors).toEqual([]);
    const accuracy = state.modelAccuracy!;
    expect(Object.keys(accuracy).map(Number)).toEqual([1, 2, 4, 8]);
    // Chance is 1 in 5; in Node the model scored 94–100% at every round count on held-out sequences.
    for (const rounds of [1, 2, 4, 8]) expect(accuracy[rounds]).toBeGreaterThan(0.6);
    expect(await p.locator('#model-result tr').count()).toBe(5);
    expect(consoleErrors).toEqual([]);
  }, 150_000);

  it('takes a screenshot of the page after the runs (saved as examples/results/browser-demo.png with UPDATE_SCREENSHOT=1)', async () => {
    // Only on request: a test run should not rewrite a tracked file (the PNG differs from run to run).
    const save = process.env.UPDATE_SCREENSHOT === '1';
    if (save) mkdirSync(join(REPO, 'examples', 'results'), { recursive: true });
    const path = save ? join(REPO, 'examples', 'results', 'browser-demo.png') : undefined;
    const image = await page!.screenshot({ path, fullPage: true });
    expect(image.length).toBeGreaterThan(10_000);
  });
});
