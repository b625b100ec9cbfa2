/**
 * The webgpu part of the browser benchmark (runs in the page, on the webgpu
 * backend): LSH attention through lshAttentionAsync (lshAttention refuses on
 * Chromium's software adapter), and the library's WGSL kernels against the
 * tf ops they replace, on one block of the shape LSH attention gives them.
 * On a machine without a GPU the adapter is SwiftShader: the GPU runs in
 * software on the CPU, and these are not GPU timings.
 */
import * as tf from '@tensorflow/tfjs-core';
import { lshAttentionAsync } from '../../src/index.js';
import { chunkLogits, chunkLogitsWithOps, chunkOutputs, chunkOutputsWithOps } from '../../src/kernels/chunk_products.js';
import { maskedSoftmax, maskedSoftmaxWithOps } from '../../src/kernels/masked_softmax.js';
import { softwareWebGPU } from '../../src/host_reads.js';
import type { SweepOptions } from '../attention_sweep.js';

/** The label every webgpu figure carries. */
export function webgpuLabel(): string {
  return softwareWebGPU() ? 'software WebGPU (SwiftShader): not GPU timings' : 'WebGPU (hardware adapter)';
}

export interface AsyncLSHPoint {
  length: number;
  nHashes: number;
  status: 'ok' | 'over-budget' | 'failed';
  reason?: string;
  /** Median ms of the timed runs, result read back. */
  medianMs?: number;
  runsMs?: number[];
}

export interface KernelPoint {
  /** What is computed, e.g. "chunk logits". */
  name: string;
  /** The block's shape, e.g. "n=128, C=64, L=128, D=64". */
  shape: string;
  /** Median ms per call: the library's WGSL kernel. */
  kernelMs: number;
  /** Median ms per call: the tf ops it replaces (what runs on webgpu without it). */
  opsMs: number;
  /** Largest |kernel − ops| over the outputs. */
  maxDiff: number;
}

export interface WebGPUBench {
  label: string;
  adapter: string;
  lsh: AsyncLSHPoint[];
  kernels: KernelPoint[];
}

/** Median ms per call of `fn`, `calls` calls per timing (the queue runs them in order), `trials` timings, after a warm-up. */
async function timePerCall(fn: () => tf.Tensor | tf.Tensor[], calls: number, trials: number): Promise<number> {
  const once = async (): Promise<number> => {
    const start = performance.now();
    let last: tf.Tensor[] = [];
    for (let i = 0; i < calls; i++) {
      tf.dispose(last);
      const result = fn();
      last = Array.isArray(result) ? result : [result];
    }
    await Promise.all(last.map((t) => t.data()));
    tf.dispose(last);
    return (performance.now() - start) / calls;
  };
  await once();
  const times: number[] = [];
  for (let t = 0; t < trials; t++) times.push(await once());
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

/** Largest |a − b| of two tensors, read back. */
async function maxDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [x, y] = await Promise.all([a.data(), b.data()]);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  return worst;
}

/** LSH attention (lshAttentionAsync) at the sweep's lengths and rounds, as the sweep times lshAttention. */
async function asyncLSHSeries(settings: SweepOptions, progress: (message: string) => void): Promise<AsyncLSHPoint[]> {
  const points: AsyncLSHPoint[] = [];
  const { batch, heads, dim } = settings;
  for (const nHashes of settings.nHashes) {
    let previous: { length: number; ms: number } | null = null;
    for (const length of settings.lengths) {
      const point: AsyncLSHPoint = { length, nHashes, status: 'ok' };
      points.push(point);
      if (previous !== null) {
        const predicted = (previous.ms * (length / previous.length) * (settings.runs + 1)) / 1000;
        if (predicted > settings.budgetSeconds) {
          point.status = 'over-budget';
          point.reason = `predicted ${predicted.toFixed(0)} s for ${settings.runs + 1} runs > budget ${settings.budgetSeconds} s`;
          continue;
        }
      }
      const qk = tf.randomNormal([batch, heads, length, dim], 0, 1, 'float32', 1) as tf.Tensor4D;
      const v = tf.randomNormal([batch, heads, length, dim], 0, 1, 'float32', 2) as tf.Tensor4D;
      try {
        const runs: number[] = [];
        for (let i = 0; i <= settings.runs; i++) {
          progress(`webgpu lshAttentionAsync T=${length} R=${nHashes}: ${i === 0 ? 'warm-up' : `run ${i}/${settings.runs}`}`);
          const start = performance.now();
          const out = await lshAttentionAsync(qk, v, { nHashes, chunkLength: settings.chunkLength, numChunksBefore: settings.numChunksBefore, seed: 1 });
          await out.data();
          if (i > 0) runs.push(performance.now() - start);
          out.dispose();
        }
        point.runsMs = runs;
        point.medianMs = [...runs].sort((a, b) => a - b)[Math.floor(runs.length / 2)];
        previous = { length, ms: point.medianMs };
      } catch (error) {
        point.status = 'failed';
        point.reason = (error as Error).message.split(';')[0];
      } finally {
        tf.dispose([qk, v]);
      }
    }
  }
  return points;
}

/**
 * The kernels on one block as lshAttention makes them at the sweep's largest
 * length (blocks of about 1M logits: n chunks of C queries × L keys, rows of
 * B·H·T), against the tf ops they replace.
 */
async function kernelSeries(settings: SweepOptions, progress: (message: string) => void): Promise<KernelPoint[]> {
  const { batch, heads, dim, chunkLength } = settings;
  const length = Math.max(...settings.lengths);
  const window = chunkLength * (1 + settings.numChunksBefore);
  const count = Math.max(1, Math.floor((1 << 20) / (chunkLength * window))); // chunks per block (BLOCK_LOGITS)
  const rowCount = batch * heads * length;
  const shape = `n=${count}, C=${chunkLength}, L=${window}, D=${dim}, rows=${rowCount}`;
  const points: KernelPoint[] = [];
  const rows = tf.randomNormal([rowCount, dim], 0, 1, 'float32', 3) as tf.Tensor2D;
  const valueRows = tf.randomNormal([rowCount, dim], 0, 1, 'float32', 4) as tf.Tensor2D;
  const queryRows = tf.randomUniformInt([count * chunkLength], 0, rowCount, 5) as tf.Tensor1D;
  const keyRows = tf.randomUniformInt([count * window], 0, rowCount, 6) as tf.Tensor1D;
  const logits = tf.mul(tf.randomNormal([count, chunkLength, window], 0, 1, 'float32', 7), 4) as tf.Tensor3D;
  // Fill as the masks make it: most logits kept, some causal/padding (−1e9), one self logit (−1e5) per row.
  const fill = tf.tidy(() => {
    const masked = tf.mul(tf.cast(tf.greater(tf.randomUniform([count, chunkLength, window], 0, 1, 'float32', 8), 0.7), 'float32'), -1e9);
    const self = tf.mul(tf.reshape(tf.oneHot(tf.range(0, chunkLength, 1, 'int32'), window), [1, chunkLength, window]), -1e5);
    return tf.add(tf.mul(masked, tf.sub(1, tf.cast(tf.notEqual(self, 0), 'float32'))), self);
  }) as tf.Tensor3D;
  const weights = maskedSoftmaxWithOps(logits, fill).weights;
  const calls = 4;
  const trials = 3;
  const cases: Array<[string, () => tf.Tensor | tf.Tensor[], () => tf.Tensor | tf.Tensor[]]> = [
    ['chunk logits (queries · normalised keys, rows by index)', () => chunkLogits(rows, queryRows, keyRows, chunkLength, window), () => chunkLogitsWithOps(rows, queryRows, keyRows, chunkLength, window)],
    ['masked softmax (weights, rowMax, logSum)', () => Object.values(maskedSoftmax(logits, fill)), () => Object.values(maskedSoftmaxWithOps(logits, fill))],
    ['chunk outputs (weights · value rows by index)', () => chunkOutputs(weights, valueRows, keyRows), () => chunkOutputsWithOps(weights, valueRows, keyRows)],
  ];
  try {
    for (const [name, kernel, ops] of cases) {
      progress(`webgpu kernels: ${name}`);
      const kernelMs = await timePerCall(kernel, calls, trials);
      const opsMs = await timePerCall(ops, calls, trials);
      const a = kernel();
      const b = ops();
      const [first, second] = [Array.isArray(a) ? a[0] : a, Array.isArray(b) ? b[0] : b];
      const diff = await maxDiff(first, second);
      tf.dispose([a, b]);
      points.push({ name, shape, kernelMs, opsMs, maxDiff: diff });
    }
  } finally {
    tf.dispose([rows, valueRows, queryRows, keyRows, logits, fill, weights]);
  }
  return points;
}

/** The whole webgpu part; call with the webgpu backend set. */
export async function runWebGPUBench(settings: SweepOptions, progress: (message: string) => void): Promise<WebGPUBench> {
  const adapter = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
  return {
    label: webgpuLabel(),
    adapter: `${adapter?.vendor ?? 'unknown vendor'} / ${adapter?.architecture ?? 'unknown architecture'}`,
    lsh: await asyncLSHSeries(settings, progress),
    kernels: await kernelSeries(settings, progress),
  };
}
