/**
 * The attention-cost sweep: lshAttention against fullAttention over sequence
 * lengths, with time, peak memory, achieved GFLOP/s and a per-kernel
 * breakdown. Used by `bench/run.ts` (the CLI) and by a test that runs a tiny
 * sweep so the benchmark cannot rot.
 *
 * Legend: B batch, H heads, T length, D head size, R rounds, C chunk length,
 * L = C·(1 + before + after) keys per query.
 */
import * as tf from '@tensorflow/tfjs-core';
import { attentionThreads, limitThreads, parallelCalls } from '../src/parallel.js';
import {
  defaultNBuckets,
  fullAttention,
  hashBuckets,
  localAttention,
  lshAttention,
  randomRotations,
  sortItemsOnHost,
  totalBuckets,
  type LSHAttentionOptions,
} from '../src/index.js';

/** What to sweep. */
export interface SweepOptions {
  /** Sequence lengths. */
  lengths: number[];
  batch: number;
  heads: number;
  dim: number;
  /** Hash rounds to run LSH with: one series each. */
  nHashes: number[];
  chunkLength: number;
  numChunksBefore: number;
  /** Time forward + backward (gradients of qk and v) instead of forward only. */
  backward: boolean;
  /** Timed runs per point after one warm-up (the median is reported). */
  runs: number;
  /** Skip a variant at a length when its predicted time for warm-up plus runs exceeds this. */
  budgetSeconds: number;
  /** Per-kernel profile (peak memory, kernel breakdown): a separate run per point. */
  profile: boolean;
  /** Run full attention too. */
  full: boolean;
  /** Run local attention too (chunks of chunkLength in position order, numChunksBefore back). Default false. */
  local?: boolean;
  /** The attention functions' memoryLimitBytes. Default: the backend's. */
  memoryLimitBytes?: number;
  /**
   * Thread counts to run each variant with (a thread pool must run with at
   * least the largest: src/threads.ts). Default [the pool's threads].
   */
  threads?: number[];
}

/** One measured (or skipped) point. */
export interface SweepPoint {
  variant: 'lsh' | 'full' | 'local';
  /** R for LSH; null for full. */
  nHashes: number | null;
  length: number;
  /** Threads the sweep let the call use (1: the calling thread alone). */
  threads: number;
  /** With threads > 1: whether the timed calls really were split (small calls stay on one thread). */
  split?: boolean;
  status: 'ok' | 'out-of-memory' | 'over-budget' | 'failed';
  /** Why it did not run, when it did not. */
  reason?: string;
  /** Median wall time (ms), result read back. */
  medianMs?: number;
  /** All timed runs (ms). */
  runsMs?: number[];
  /** Peak bytes of tensors during the call (tf.profile). */
  peakBytes?: number;
  /** Process RSS after the call (bytes). */
  rssBytes?: number;
  /** Useful FLOPs: the QK and AV products of what is actually attended (×3 with backward). */
  usefulFlops: number;
  gflops?: number;
  /** Kernel name → total ms in the profiled run, largest first (custom-gradient scopes left out: their time is their kernels'). */
  kernels?: Array<{ name: string; ms: number; calls: number }>;
  /** Wall time of the profiled run (ms): kernels plus host work (sorting, index and mask building, dispatch). */
  profiledWallMs?: number;
  /** LSH only: ms in hashing + sorting (separate run of those stages). */
  hashSortMs?: number;
  /** With `backward`: the forward pass alone, timed in the same runs (alternating with forward + backward). */
  forwardMedianMs?: number;
  /** With `backward` and `profile`: peak bytes of the forward pass alone. */
  forwardPeakBytes?: number;
}

/** Useful FLOPs of LSH attention: each of R·T queries against L keys, for QK (D) and AV (Dv). */
export function lshUsefulFlops(o: { batch: number; heads: number; length: number; dim: number; nHashes: number; chunkLength: number; numChunksBefore: number }): number {
  const window = o.chunkLength * (1 + o.numChunksBefore);
  return 2 * o.batch * o.heads * o.nHashes * o.length * window * (o.dim + o.dim);
}

/** Useful FLOPs of local attention: T queries against L = C·(1 + before) keys, QK and AV. */
export function localUsefulFlops(o: { batch: number; heads: number; length: number; dim: number; chunkLength: number; numChunksBefore: number }): number {
  return lshUsefulFlops({ ...o, nHashes: 1 });
}

/** Useful FLOPs of full attention: T queries against T keys, QK and AV. */
export function fullUsefulFlops(o: { batch: number; heads: number; length: number; dim: number }): number {
  return 2 * o.batch * o.heads * o.length * o.length * (o.dim + o.dim);
}

/** Best GFLOP/s of a 2-D matMul of size n³ on the current backend (best of `runs`). */
export async function matMulPeakGflops(n = 1024, runs = 3): Promise<number> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  let best = 0;
  for (let i = 0; i <= runs; i++) {
    const start = performance.now();
    const c = tf.matMul(a, b);
    await c.data();
    const ms = performance.now() - start;
    c.dispose();
    if (i > 0) best = Math.max(best, (2 * n ** 3) / (ms * 1e6));
  }
  tf.dispose([a, b]);
  return best;
}

/** Runs `fn` once (result read back and disposed); returns ms. */
export async function timeOnce(fn: () => tf.Tensor | tf.Tensor[]): Promise<number> {
  const start = performance.now();
  const result = fn();
  const outputs = Array.isArray(result) ? result : [result];
  for (const t of outputs) await t.data();
  const ms = performance.now() - start;
  tf.dispose(outputs);
  return ms;
}

/** Progress callback: (what is running, seconds since the sweep started). */
export type Progress = (message: string) => void;

/**
 * Runs the sweep on the current backend.
 *
 * @returns every point, LSH series first at each length.
 */
export async function runSweep(options: SweepOptions, progress: Progress = () => {}): Promise<SweepPoint[]> {
  const points: SweepPoint[] = [];
  const { batch, heads, dim } = options;
  // Predicted time from the previous length of the same series (scaled by the variant's complexity).
  const previous = new Map<string, { length: number; ms: number }>();
  const started = performance.now();
  const say = (message: string) => progress(`${message} (elapsed ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  const threadLimit = limitThreads(Number.POSITIVE_INFINITY); // restored at the end; each variant sets its own
  try {
    await sweepLengths();
  } finally {
    limitThreads(threadLimit);
  }
  return points;

  async function sweepLengths(): Promise<void> {
    for (const length of options.lengths) {
      const qk = tf.randomNormal([batch, heads, length, dim], 0, 1, 'float32', 1) as tf.Tensor4D;
      const v = tf.randomNormal([batch, heads, length, dim], 0, 1, 'float32', 2) as tf.Tensor4D;
      const threadCounts = options.threads ?? [attentionThreads()];
      const variants: Array<{ variant: 'lsh' | 'full' | 'local'; nHashes: number | null; threads: number }> = [
        ...options.nHashes.map((r) => ({ variant: 'lsh' as const, nHashes: r })),
        ...(options.local ? [{ variant: 'local' as const, nHashes: null }] : []),
        ...(options.full ? [{ variant: 'full' as const, nHashes: null }] : []),
      ].flatMap((v) => threadCounts.map((threads) => ({ ...v, threads })));
      for (const { variant, nHashes, threads } of variants) {
        const key = `${variant}:${nHashes}:${threads}`;
        const label = `${variant === 'lsh' ? `lsh R=${nHashes}` : variant}${threadCounts.length > 1 ? `, ${threads} thread${threads === 1 ? '' : 's'}` : ''}`;
        limitThreads(threads);
        const flopsForward =
          variant === 'lsh'
            ? lshUsefulFlops({ batch, heads, length, dim, nHashes: nHashes as number, chunkLength: options.chunkLength, numChunksBefore: options.numChunksBefore })
            : variant === 'local'
              ? localUsefulFlops({ batch, heads, length, dim, chunkLength: options.chunkLength, numChunksBefore: options.numChunksBefore })
              : fullUsefulFlops({ batch, heads, length, dim });
        const point: SweepPoint = { variant, nHashes, length, threads, status: 'ok', usefulFlops: flopsForward * (options.backward ? 3 : 1) };
        const lshOptions: LSHAttentionOptions = {
          nHashes: nHashes ?? 1,
          chunkLength: options.chunkLength,
          numChunksBefore: options.numChunksBefore,
          seed: 1,
          memoryLimitBytes: options.memoryLimitBytes,
        };
        const forward = (a: tf.Tensor4D, b: tf.Tensor4D): tf.Tensor4D =>
          variant === 'lsh'
            ? lshAttention(a, b, lshOptions)
            : variant === 'local'
              ? localAttention(a, b, { chunkLength: options.chunkLength, numChunksBefore: options.numChunksBefore, memoryLimitBytes: options.memoryLimitBytes })
              : fullAttention(a, b, { memoryLimitBytes: options.memoryLimitBytes });
        const call = (): tf.Tensor | tf.Tensor[] =>
          options.backward
            ? tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(forward(a as tf.Tensor4D, b as tf.Tensor4D)))([qk, v])
            : forward(qk, v);

        const last = previous.get(key);
        if (last) {
          const growth = variant === 'full' ? (length / last.length) ** 2 : length / last.length;
          // With backward, each run also times the forward pass (about a third of a forward + backward call).
          const predictedSeconds = (last.ms * growth * (options.runs + 1) * (options.backward ? 4 / 3 : 1)) / 1000;
          if (predictedSeconds > options.budgetSeconds) {
            point.status = 'over-budget';
            point.reason = `predicted ${predictedSeconds.toFixed(0)} s for ${options.runs + 1} runs > budget ${options.budgetSeconds} s`;
            points.push(point);
            say(`T=${length} ${label}: skipped, ${point.reason}`);
            continue;
          }
        }
        try {
          const runs: number[] = [];
          const forwardRuns: number[] = [];
          const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
          const splitBefore = parallelCalls();
          for (let i = 0; i <= options.runs; i++) {
            say(`T=${length} ${label}: ${i === 0 ? 'warm-up' : `run ${i}/${options.runs}`}`);
            const ms = await timeOnce(call);
            if (i > 0) runs.push(ms);
            if (options.backward) {
              // The forward pass alone in the same run, so the ratio of the two sees the same machine.
              const forwardMs = await timeOnce(() => forward(qk, v));
              if (i > 0) forwardRuns.push(forwardMs);
            }
          }
          if (threads > 1) point.split = parallelCalls() > splitBefore;
          point.runsMs = runs;
          point.medianMs = median(runs);
          if (options.backward) point.forwardMedianMs = median(forwardRuns);
          point.gflops = point.usefulFlops / (point.medianMs * 1e6);
          if (typeof process !== 'undefined' && typeof process.memoryUsage === 'function') point.rssBytes = process.memoryUsage().rss; // not in a page
          previous.set(key, { length, ms: point.medianMs });
          if (variant === 'lsh') {
            // The hashing and sorting stages alone (the rest is gathers, chunk attention and combining rounds).
            const nBuckets = defaultNBuckets(length, options.chunkLength);
            const rotations = randomRotations({ dim, nHashes: nHashes as number, nBuckets, seed: 1 });
            const stage = (): tf.Tensor[] => {
              // As lshAttention does it: hash on the backend, counting sort on the host.
              const buckets = hashBuckets(qk, rotations, { nBuckets });
              sortItemsOnHost(buckets.dataSync() as Int32Array, batch * heads, nHashes as number, length, totalBuckets(nBuckets));
              return [buckets];
            };
            await timeOnce(stage);
            point.hashSortMs = await timeOnce(stage);
            rotations.dispose();
          }
          if (options.profile) {
            say(`T=${length} ${label}: profiling`);
            const profileStart = performance.now();
            const info = await tf.profile(() => {
              const result = call();
              tf.dispose(result);
            });
            point.profiledWallMs = performance.now() - profileStart;
            point.peakBytes = info.peakBytes;
            const byName = new Map<string, { ms: number; calls: number }>();
            for (const kernel of info.kernels) {
              if (kernel.name === 'unnamed scope') continue; // a tf.customGrad op: its inner kernels are listed themselves
              const ms = typeof kernel.kernelTimeMs === 'number' ? kernel.kernelTimeMs : 0;
              const entry = byName.get(kernel.name) ?? { ms: 0, calls: 0 };
              entry.ms += ms;
              entry.calls += 1;
              byName.set(kernel.name, entry);
            }
            point.kernels = [...byName.entries()]
              .map(([name, e]) => ({ name, ms: e.ms, calls: e.calls }))
              .sort((a, b) => b.ms - a.ms);
            if (options.backward) {
              // After the breakdown above: tf.profile returns the engine's one profile object, which the next call refills.
              const forwardInfo = await tf.profile(() => {
                tf.dispose(forward(qk, v));
              });
              point.forwardPeakBytes = forwardInfo.peakBytes;
            }
          }
        } catch (error) {
          const message = (error as Error).message;
          point.status = /needs about/.test(message) ? 'out-of-memory' : 'failed';
          point.reason = message.split(';')[0];
          say(`T=${length} ${label}: ${point.status}: ${point.reason}`);
        }
        points.push(point);
      }
      tf.dispose([qk, v]);
    }
  }
}
