/**
 * The attention sweep in headless Chromium, on each backend of a page:
 *
 *   flock /work/bench.lock npm run bench:browser      (a few minutes)
 *   npm run bench:browser -- webgl wasm-threads        (only these configurations)
 *   npm run bench:browser -- --tiny --out /tmp/x       (T = 128, one run: a check that it works)
 *   npm run bench:browser -- --webgpu-kernels-only     (webgpu: lshAttentionAsync and the WGSL kernels only)
 *
 * wasm with threads (the page cross-origin isolated), wasm on one thread (the
 * same page without the COOP/COEP headers), webgl and webgpu. Each writes
 * bench/results/browser-<name>.{md,json,svg} in the format of bench/run.ts.
 * On a machine without a GPU, Chromium's WebGL and WebGPU run in software
 * (SwiftShader): the reports say so, and their timings are not GPU timings.
 */
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { bundlePages, REPO } from '../../scripts/browser/bundle.js';
import { launchChromium } from '../../scripts/browser/chromium.js';
import { serveStatic } from '../../scripts/browser/server.js';
import type { SweepOptions } from '../attention_sweep.js';
import type { LayerSweepOptions } from '../layer_sweep.js';
import { writeReport, type SweepReport } from '../report.js';
import type { BenchResult } from './page.js';
import type { WebGPUBench } from './webgpu.js';

const settings: SweepOptions = {
  lengths: [256, 512, 1024, 2048],
  batch: 1,
  heads: 4,
  dim: 64,
  nHashes: [2],
  chunkLength: 64,
  numChunksBefore: 1,
  backward: false,
  runs: 2,
  budgetSeconds: 20,
  profile: true,
  full: true,
};

/** The whole layers at the same shapes (model size heads·dim), with tfjs-layers' MultiHeadAttention on its own budget. */
const layerSettings: LayerSweepOptions = {
  lengths: settings.lengths,
  batch: settings.batch,
  heads: settings.heads,
  dim: settings.dim,
  nHashes: settings.nHashes,
  chunkLength: settings.chunkLength,
  numChunksBefore: settings.numChunksBefore,
  backward: false,
  runs: settings.runs,
  budgetSeconds: settings.budgetSeconds,
  mhaBudgetSeconds: 60,
  profile: settings.profile,
};

const configurations = [
  { name: 'wasm-threads', backend: 'wasm', isolated: true },
  { name: 'wasm-1-thread', backend: 'wasm', isolated: false },
  { name: 'webgl', backend: 'webgl', isolated: true },
  { name: 'webgpu', backend: 'webgpu', isolated: true },
];

/** bench/results/browser-webgpu-kernels.{md,json}: lshAttentionAsync and the WGSL kernels, labelled. */
function writeWebGPUReport(bench: WebGPUBench, report: SweepReport, directory: string): string[] {
  const json = join(directory, 'browser-webgpu-kernels.json');
  const md = join(directory, 'browser-webgpu-kernels.md');
  writeFileSync(json, `${JSON.stringify({ date: report.date, backend: report.backend, versions: report.versions, machine: report.machine, settings, ...bench }, null, 2)}\n`);
  const { batch, heads, dim, chunkLength, numChunksBefore, runs } = settings;
  const lines = [
    `# WebGPU in the browser: ${bench.label}`,
    '',
    `${report.date}; ${report.backend}; adapter ${bench.adapter}; ${report.machine.cores} cores (${report.machine.cpu}).`,
    '',
    `**${bench.label}.** On this machine the WebGPU adapter is Chromium's SwiftShader, which runs the shaders on the CPU.`,
    '',
    `## LSH attention (lshAttentionAsync), B=${batch}, H=${heads}, D=${dim}, chunkLength ${chunkLength}, ${numChunksBefore} chunk(s) of look-back`,
    '',
    `Forward pass, result read back, median of ${runs} runs after a warm-up (lshAttention refuses on software WebGPU).`,
    '',
    '| T | R | median ms | runs ms |',
    '|---:|---:|---:|---|',
    ...bench.lsh.map((p) =>
      p.status === 'ok'
        ? `| ${p.length} | ${p.nHashes} | ${p.medianMs?.toFixed(0)} | ${p.runsMs?.map((x) => x.toFixed(0)).join(', ')} |`
        : `| ${p.length} | ${p.nHashes} | ${p.status} | ${p.reason ?? ''} |`,
    ),
    '',
    '## The WGSL kernels against the tf ops they replace, one block',
    '',
    `Block shape: ${bench.kernels[0]?.shape ?? '–'} (what lshAttention hands the kernels at T=${Math.max(...settings.lengths)}). ` +
      'Median ms per call over 3 timings of 4 queued calls, after a warm-up.',
    '',
    '| what | WGSL kernel ms | tf ops ms | ops / kernel | max abs difference |',
    '|---|---:|---:|---:|---:|',
    ...bench.kernels.map((k) => `| ${k.name} | ${k.kernelMs.toFixed(1)} | ${k.opsMs.toFixed(1)} | ${(k.opsMs / k.kernelMs).toFixed(2)}× | ${k.maxDiff.toExponential(1)} |`),
    '',
  ];
  writeFileSync(md, lines.join('\n'));
  return [md, json];
}

const args = process.argv.slice(2);
const tiny = args.includes('--tiny');
const webgpuKernelsOnly = args.includes('--webgpu-kernels-only');
const outIndex = args.indexOf('--out');
const resultsDir = outIndex >= 0 ? args[outIndex + 1] : join(REPO, 'bench', 'results');
const only = args.filter((a, i) => !a.startsWith('--') && (outIndex < 0 || i !== outIndex + 1));
if (tiny) {
  Object.assign(settings, { lengths: [128], runs: 1, profile: false });
  Object.assign(layerSettings, { lengths: [128], runs: 1, profile: false });
}
const out = mkdtempSync(join(tmpdir(), 'bench-browser-'));
await bundlePages({ bench: join(REPO, 'bench', 'browser', 'page.ts') }, out);
writeFileSync(join(out, 'index.html'), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="./bench.js"></script>\n');
const isolated = await serveStatic(out);
const plain = await serveStatic(out, { isolate: false });
const browser = await launchChromium();
try {
  for (const configuration of configurations) {
    if (only.length > 0 && !only.includes(configuration.name)) continue;
    if (webgpuKernelsOnly && configuration.backend !== 'webgpu') continue;
    const page = await browser.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') console.error(`[${configuration.name}] console: ${message.text()}`);
    });
    const server = configuration.isolated ? isolated : plain;
    const url =
      `${server.url}index.html?backend=${configuration.backend}&settings=${encodeURIComponent(JSON.stringify(settings))}` +
      `&layers=${encodeURIComponent(JSON.stringify(layerSettings))}${webgpuKernelsOnly ? '&kernelsOnly=1' : ''}`;
    console.error(`${configuration.name}: running…`);
    await page.goto(url);
    await page.waitForFunction(() => window.benchResult !== undefined, null, { timeout: 30 * 60_000, polling: 1000 });
    const result = (await page.evaluate(() => window.benchResult)) as BenchResult;
    await page.close();
    if (result.error !== undefined || result.points === undefined) {
      console.error(`${configuration.name}: failed: ${result.error}`);
      continue;
    }
    const software = /swiftshader|SwiftShader/.test(result.description ?? '') || configuration.backend === 'webgl' || configuration.backend === 'webgpu';
    const report: SweepReport = {
      date: new Date().toISOString(),
      backend:
        `${result.description} in headless Chromium ${browser.version()}` +
        (configuration.backend === 'wasm' ? `, ${result.crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated'}` : '') +
        (software && configuration.backend !== 'wasm' ? '; SOFTWARE rendering (SwiftShader, no GPU on this machine): not GPU timings' : ''),
      versions: { tfjs: tf.version_core, node: process.version },
      machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30) },
      settings,
      matMulPeakGflops: result.matMulPeakGflops ?? 0,
      points: result.points,
      ...(result.layers ? { layers: result.layers } : {}),
    };
    const paths = webgpuKernelsOnly ? [] : await writeReport(report, resultsDir, `browser-${configuration.name}`);
    if (result.webgpu !== undefined) paths.push(...writeWebGPUReport(result.webgpu, report, resultsDir));
    console.error(`${configuration.name}: ${result.description}; wrote ${paths.join(', ')}`);
  }
} finally {
  await browser.close();
  await isolated.close();
  await plain.close();
  rmSync(out, { recursive: true, force: true });
}
