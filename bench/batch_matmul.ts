// Run: npx tsx bench/batch_matmul.ts [flags]
//
// GFLOP/s of tf.matMul against batchMatMul (our wasm SIMD kernel) on the wasm
// backend, for LSH attention's chunk products. Each point: one warm-up run,
// then the median of --runs runs; a run's clock stops after `await
// result.data()`. Also times a 2-D 1024³ tf.matMul (XNNPACK) as the machine's
// reference peak. Writes <out>/<name>.json, .md and .svg (vega-lite).
//
// Flags (defaults in brackets):
//   --sizes 1024,8192   batch sizes N          --runs 3
//   --with-transpose-a  also the backward pass's transposeA products
//   --no-tf             skip tf.matMul (it takes ~5 s per run at N = 8192)
//   --out bench/out --name batch_matmul
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { initBackend } from '../src/backend.js';
import { batchMatMul } from '../src/kernels/batch_matmul.js';

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1024,8192' },
    runs: { type: 'string', default: '3' },
    'with-transpose-a': { type: 'boolean', default: false },
    'no-tf': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/out' },
    name: { type: 'string', default: 'batch_matmul' },
  },
});

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`bench: --${name} must be a positive integer, got "${value}"`);
  return n;
}

const sizes = flags.sizes.split(',').map((s) => positiveInteger('sizes', s));
const runs = positiveInteger('runs', flags.runs);

/** One product: op(a) is [N, m, k], op(b) is [N, k, n]. */
interface Shape {
  label: string;
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

const SHAPES: Shape[] = [
  { label: '[N,64,64]·[N,64,128]', m: 64, k: 64, n: 128, transposeA: false, transposeB: false },
  { label: '[N,64,128]·[N,128,64]', m: 64, k: 128, n: 64, transposeA: false, transposeB: false },
  { label: '[N,64,64]·[N,128,64]ᵀ', m: 64, k: 64, n: 128, transposeA: false, transposeB: true },
  { label: '[N,64,128]·[N,64,128]ᵀ', m: 64, k: 128, n: 64, transposeA: false, transposeB: true },
];
if (flags['with-transpose-a']) {
  SHAPES.push(
    { label: '[N,64,64]ᵀ·[N,64,128]', m: 64, k: 64, n: 128, transposeA: true, transposeB: false },
    { label: '[N,128,64]ᵀ·[N,128,64]', m: 64, k: 128, n: 64, transposeA: true, transposeB: false },
  );
}

/** One timed run: total ms (call + readback), ms until the call returned, process CPU ms. */
interface Run {
  totalMs: number;
  callMs: number;
  cpuMs: number;
}

async function timeRun(fn: () => tf.Tensor): Promise<Run> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const result = fn();
  const called = performance.now();
  await result.data();
  const end = performance.now();
  const used = process.cpuUsage(cpu);
  result.dispose();
  return { totalMs: end - start, callMs: called - start, cpuMs: (used.user + used.system) / 1000 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Warm-up, then `runs` timed runs; medians. */
async function measure(fn: () => tf.Tensor): Promise<Run> {
  await timeRun(fn);
  const timed: Run[] = [];
  for (let i = 0; i < runs; i++) timed.push(await timeRun(fn));
  return {
    totalMs: median(timed.map((r) => r.totalMs)),
    callMs: median(timed.map((r) => r.callMs)),
    cpuMs: median(timed.map((r) => r.cpuMs)),
  };
}

interface Point {
  shape: string;
  batch: number;
  implementation: 'tf.matMul' | 'batchMatMul';
  gflops: number;
  totalMs: number;
  /** Until the op returned (the wasm kernels run synchronously): compute and copies, no readback. */
  callMs: number;
  /** CPU time of the process over the run; above totalMs when other threads worked, below when the CPU was shared. */
  cpuMs: number;
}

function gflops(shape: Shape, batch: number, ms: number): number {
  return (2 * batch * shape.m * shape.k * shape.n) / (ms * 1e6);
}

async function matMulPeakGflops(size = 1024): Promise<number> {
  const a = tf.randomNormal([size, size]);
  const b = tf.randomNormal([size, size]);
  const run = await measure(() => tf.matMul(a, b));
  tf.dispose([a, b]);
  return (2 * size ** 3) / (run.totalMs * 1e6);
}

await initBackend({ backend: 'wasm' });
const environment = {
  backend: tf.getBackend(),
  tfjsCore: tf.version_core,
  node: process.version,
  cpu: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
  date: new Date().toISOString(),
  runs,
  /** 1-minute load average before and after: on a shared 2-core machine the figures move with it. */
  loadAverage: [loadavg()[0]],
};
console.error(`backend ${environment.backend}, tfjs-core ${environment.tfjsCore}, node ${environment.node}, ${environment.cpu}`);
const peak = await matMulPeakGflops();
console.error(`2-D matMul 1024³ (XNNPACK): ${peak.toFixed(1)} GFLOP/s`);

const points: Point[] = [];
let peakRssBytes = process.memoryUsage().rss;
for (const batch of sizes) {
  for (const shape of SHAPES) {
    const a = tf.randomNormal(shape.transposeA ? [batch, shape.k, shape.m] : [batch, shape.m, shape.k]) as tf.Tensor3D;
    const b = tf.randomNormal(shape.transposeB ? [batch, shape.n, shape.k] : [batch, shape.k, shape.n]) as tf.Tensor3D;
    const implementations: Array<[Point['implementation'], () => tf.Tensor]> = [
      ['batchMatMul', () => batchMatMul(a, b, shape.transposeA, shape.transposeB)],
    ];
    if (!flags['no-tf']) implementations.push(['tf.matMul', () => tf.matMul(a, b, shape.transposeA, shape.transposeB)]);
    for (const [implementation, fn] of implementations) {
      const run = await measure(fn);
      peakRssBytes = Math.max(peakRssBytes, process.memoryUsage().rss);
      const point: Point = { shape: shape.label, batch, implementation, gflops: gflops(shape, batch, run.totalMs), ...run };
      points.push(point);
      console.error(
        `N=${batch} ${shape.label} ${implementation}: ${point.gflops.toFixed(2)} GFLOP/s, ` +
          `${run.totalMs.toFixed(1)} ms (call ${run.callMs.toFixed(1)}, cpu ${run.cpuMs.toFixed(1)})`,
      );
    }
    tf.dispose([a, b]);
  }
}

environment.loadAverage.push(loadavg()[0]);

function find(shape: string, batch: number, implementation: Point['implementation']): Point | undefined {
  return points.find((p) => p.shape === shape && p.batch === batch && p.implementation === implementation);
}

const rows = [
  '| N | product | tf.matMul GFLOP/s | batchMatMul GFLOP/s | speed-up | batchMatMul ms (call / readback) |',
  '|---|---|---|---|---|---|',
];
for (const batch of sizes) {
  for (const shape of SHAPES) {
    const ours = find(shape.label, batch, 'batchMatMul');
    const theirs = find(shape.label, batch, 'tf.matMul');
    if (ours === undefined) continue;
    rows.push(
      `| ${batch} | ${shape.label} | ${theirs ? theirs.gflops.toFixed(2) : '–'} | ${ours.gflops.toFixed(2)} | ` +
        `${theirs ? `${(ours.gflops / theirs.gflops).toFixed(1)}×` : '–'} | ` +
        `${ours.totalMs.toFixed(1)} (${ours.callMs.toFixed(1)} / ${(ours.totalMs - ours.callMs).toFixed(1)}) |`,
    );
  }
}
const table = [
  `wasm backend, tfjs-core ${environment.tfjsCore}, node ${environment.node}, ${environment.cpu}; ` +
    `median of ${runs} runs after a warm-up, each timed until \`await result.data()\`.`,
  `2-D matMul 1024³ (XNNPACK) on the same machine: ${peak.toFixed(1)} GFLOP/s. Peak RSS ${(peakRssBytes / 2 ** 20).toFixed(0)} MiB. ` +
    `Load average ${environment.loadAverage.map((l) => l.toFixed(1)).join(' → ')} (2 cores).`,
  '',
  ...rows,
  '',
].join('\n');
console.log(table);

const spec: vl.TopLevelSpec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: `Batched small matMuls on wasm (2-D XNNPACK peak ${peak.toFixed(0)} GFLOP/s)`,
  data: { values: points.map((p) => ({ ...p, batchLabel: `N = ${p.batch}` })) },
  mark: 'bar',
  encoding: {
    row: { field: 'batchLabel', type: 'nominal', title: null },
    y: { field: 'shape', type: 'nominal', title: null },
    yOffset: { field: 'implementation' },
    x: { field: 'gflops', type: 'quantitative', title: 'GFLOP/s (incl. readback)' },
    color: { field: 'implementation', type: 'nominal', title: null },
  },
};
const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
const svg = await view.toSVG();

mkdirSync(flags.out, { recursive: true });
const base = join(flags.out, flags.name);
writeFileSync(`${base}.json`, `${JSON.stringify({ environment, matMul2dPeakGflops: peak, peakRssBytes, points }, null, 2)}\n`);
writeFileSync(`${base}.md`, table);
writeFileSync(`${base}.svg`, svg);
console.error(`wrote ${base}.json, .md, .svg`);
