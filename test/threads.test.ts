/**
 * Attention on every core: with the thread pool running, lshAttention and
 * fullAttention split calls across worker threads (by heads, or batch rows)
 * and give bitwise the same output as one thread; calls that cannot be
 * split run on one thread, and a worker's error comes back as an error.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend.js';
import { fullAttention, lshAttention, type LSHAttentionOptions } from '../src/index.js';
import * as tfl from '@tensorflow/tfjs-layers';
import { lshSelfAttention } from '../layers/index.js';
import { attentionThreads, limitThreads, parallelCalls, parallelRunner, setParallelMinimumWork, type ParallelFunction } from '../src/parallel.js';
import { startThreads, stopThreads } from '../src/threads.js';
import { runSweep, type SweepOptions } from '../bench/attention_sweep.js';
import { makeReport, markdown } from '../bench/report.js';

/** Bitwise comparison of two outputs: the index of the first differing value, or -1. */
function firstDifference(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return i;
  return -1;
}

describe('attention threads [wasm]', () => {
  let previousMinimum = 0;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    previousMinimum = setParallelMinimumWork(0); // split even tiny calls
  });
  afterAll(async () => {
    setParallelMinimumWork(previousMinimum);
    await stopThreads();
  });

  /** Runs `call` on one thread, then on `threads`, and returns both outputs. */
  async function both(threads: number, call: () => tf.Tensor): Promise<[tf.Tensor, tf.Tensor]> {
    expect(await startThreads(threads)).toBe(threads);
    expect(attentionThreads()).toBe(threads);
    // One thread: the same pool, with every call below the size it splits.
    const minimum = setParallelMinimumWork(Number.POSITIVE_INFINITY);
    const splitAtFirst = parallelCalls();
    const one = call();
    setParallelMinimumWork(minimum);
    expect(parallelCalls()).toBe(splitAtFirst);
    const splitBefore = parallelCalls();
    const many = call();
    expect(parallelCalls()).toBe(splitBefore + 1); // it really ran split
    return [one, many];
  }

  const B = 2;
  const H = 3;
  const T = 32;
  const D = 8;
  const qk = () => tf.randomNormal([B, H, T, D], 0, 1, 'float32', 11) as tf.Tensor4D;
  const v = () => tf.randomNormal([B, H, T, D], 0, 1, 'float32', 12) as tf.Tensor4D;
  const padding = () => tf.tensor2d([[...Array(T - 5).fill(1), ...Array(5).fill(0)], Array(T).fill(1)]);

  const cases: Array<[string, (x: tf.Tensor4D, y: tf.Tensor4D) => tf.Tensor]> = [
    ['lshAttention, causal, padded, 3 rounds', (x, y) => lshAttention(x, y, { nHashes: 3, chunkLength: 8, causal: true, mask: padding(), seed: 5 })],
    ['lshAttention, given rotations, numChunksAfter', (x, y) => lshAttention(x, y, { nHashes: 2, chunkLength: 8, numChunksAfter: 1, seed: 6 })],
    ['fullAttention, causal, padded', (x, y) => fullAttention(x, y, { causal: true, mask: padding() })],
    ['lshAttention, no duplicates, own buckets only', (x, y) => lshAttention(x, y, { nHashes: 2, chunkLength: 8, causal: true, allowDuplicateAttention: false, attendAcrossBuckets: false, seed: 7 })],
  ];
  for (const threads of [2, 3]) {
    for (const [name, call] of cases) {
      it(`${name}: ${threads} threads give bitwise the one-thread output`, async () => {
        const [x, y] = [qk(), v()];
        const before = tf.memory().numTensors;
        const [one, many] = await both(threads, () => tf.tidy(() => call(x, y)));
        expect(many.shape).toEqual(one.shape);
        expect(firstDifference(one, many)).toBe(-1);
        tf.dispose([one, many]);
        expect(tf.memory().numTensors).toBe(before);
        tf.dispose([x, y]);
      });
    }
  }

  it('splits by batch rows when there is one head', async () => {
    const x = tf.randomNormal([4, 1, T, D], 0, 1, 'float32', 3) as tf.Tensor4D;
    const y = tf.randomNormal([4, 1, T, D], 0, 1, 'float32', 4) as tf.Tensor4D;
    const [one, many] = await both(2, () => lshAttention(x, y, { nHashes: 2, chunkLength: 8, seed: 9 }));
    expect(firstDifference(one, many)).toBe(-1);
    tf.dispose([x, y, one, many]);
  });

  it('keeps its shared buffers between calls: a smaller call after a larger one, then a larger one again, are each bitwise one thread', async () => {
    await startThreads(2);
    for (const length of [64, 16, 48, 96]) {
      const x = tf.randomNormal([2, 4, length, D], 0, 1, 'float32', length) as tf.Tensor4D;
      const y = tf.randomNormal([2, 4, length, D], 0, 1, 'float32', length + 1) as tf.Tensor4D;
      const before = tf.memory().numTensors;
      const [one, many] = await both(2, () => lshAttention(x, y, { nHashes: 2, chunkLength: 8, causal: true, seed: 4 }));
      expect(firstDifference(one, many)).toBe(-1);
      tf.dispose([one, many]);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, y]);
    }
  });

  it('without a seed, every thread hashes with the same fresh rotations (heads stay consistent with one call)', async () => {
    // The same head twice: a split that drew rotations per thread would give the two copies different outputs.
    const head = tf.randomNormal([1, 1, T, D], 0, 1, 'float32', 21);
    const x = tf.concat([head, head], 1) as tf.Tensor4D;
    await startThreads(2);
    const out = lshAttention(x, x, { nHashes: 1, chunkLength: 8 });
    const [a, b] = tf.split(out, 2, 1);
    expect(firstDifference(a, b)).toBe(-1);
    tf.dispose([head, x, out, a, b]);
  });

  for (const [name, attend] of [
    ['lshAttention, causal, padded', (a: tf.Tensor, b: tf.Tensor) => lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, { nHashes: 2, chunkLength: 8, causal: true, mask: padding(), seed: 2 })],
    ['fullAttention, causal', (a: tf.Tensor, b: tf.Tensor) => fullAttention(a as tf.Tensor4D, b as tf.Tensor4D, { causal: true })],
  ] as const) {
    it(`${name}: under a tape the call and its gradient are split too, and the gradients are bitwise one thread's`, async () => {
      const [x, y] = [qk(), v()];
      const weights = tf.reshape(tf.range(0, B * H * T * D), [B, H, T, D]);
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(attend(a, b), weights));
      await startThreads(2);
      const before = tf.memory().numTensors;
      const minimum = setParallelMinimumWork(Number.POSITIVE_INFINITY);
      const one = tf.grads(f)([x, y]);
      setParallelMinimumWork(minimum);
      const splitBefore = parallelCalls();
      const many = tf.grads(f)([x, y]);
      expect(parallelCalls()).toBe(splitBefore + 2); // the forward pass and the gradient
      for (let i = 0; i < 2; i++) {
        expect(many[i].shape).toEqual(one[i].shape);
        expect(firstDifference(one[i], many[i])).toBe(-1);
      }
      tf.dispose([...one, ...many]);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, y, weights]);
    });
  }

  it('training a model: a fit step on 2 threads leaves bitwise the weights of one thread', async () => {
    await startThreads(2);
    const step = async (threads: number) => {
      const previous = limitThreads(threads);
      try {
        const model = tfl.sequential({
          layers: [
            lshSelfAttention({ inputShape: [T, 16], numHeads: 2, headDim: 8, nHashes: 2, chunkLength: 8, causal: true, seed: 4 }),
            tfl.layers.dense({ units: 4, kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
          ],
        });
        model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
        const x = tf.randomNormal([2, T, 16], 0, 1, 'float32', 6);
        const y = tf.randomNormal([2, T, 4], 0, 1, 'float32', 7);
        const splitBefore = parallelCalls();
        await model.fit(x, y, { epochs: 1, batchSize: 2, shuffle: false, verbose: 0 });
        const split = parallelCalls() - splitBefore;
        const weights = model.getWeights().map((w) => w.dataSync().slice());
        tf.dispose([x, y]);
        model.dispose();
        return { weights, split };
      } finally {
        limitThreads(previous);
      }
    };
    const one = await step(1);
    const again = await step(1);
    // The set-up is deterministic (same seeds and data; no shuffling: fit shuffles a batch's rows by default, which
    // changes the summation order), so a difference below is the threads'.
    again.weights.forEach((w, i) => expect(firstDifference(tf.tensor(w), tf.tensor(one.weights[i])), `weight ${i} on one thread twice`).toBe(-1));
    const two = await step(2);
    expect(one.split).toBe(0);
    expect(two.split).toBe(2); // the attention's forward and its gradient
    expect(two.weights.length).toBe(one.weights.length);
    two.weights.forEach((w, i) => expect(firstDifference(tf.tensor(w), tf.tensor(one.weights[i])), `weight ${i}`).toBe(-1));
  });

  it('a worker’s error comes back as an error of the call, and the pool still works after it', async () => {
    await startThreads(2);
    const runner = parallelRunner();
    if (runner === undefined) throw new Error('no runner after startThreads(2)');
    const x = tf.randomNormal([1, 2, T, D], 0, 1, 'float32', 8) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const slices = [{ start: 0, end: 1 }, { start: 1, end: 2 }];
    // A function name only the worker checks: the calling thread's slice runs, the worker's fails.
    const shapes = (s: { start: number; end: number }) => [[1, s.end - s.start, T, D]];
    expect(() => runner.run('nope' as ParallelFunction, 'forward', [x, x], shapes, {}, 1, slices, ([a]) => [tf.clone(a)])).toThrow(
      /^attention thread 1 failed: thread_worker: unknown function "nope", expected "lsh" or "full"$/,
    );
    expect(tf.memory().numTensors).toBe(before);
    const out = lshAttention(x, x, { nHashes: 1, chunkLength: 8, seed: 1 });
    expect(out.shape).toEqual([1, 2, T, D]);
    tf.dispose([x, out]);
  });

  it('calls it cannot split run on one thread: dropout, an option it does not know, too little work', async () => {
    await startThreads(2);
    const [x, y] = [qk(), v()];
    const before = parallelCalls();
    tf.dispose(lshAttention(x, y, { nHashes: 1, chunkLength: 8, seed: 1, dropout: 0.1, dropoutSeed: 3 }));
    tf.dispose(lshAttention(x, y, { nHashes: 1, chunkLength: 8, seed: 1, futureOption: true } as LSHAttentionOptions));
    const minimum = setParallelMinimumWork(1 << 30);
    tf.dispose(lshAttention(x, y, { nHashes: 1, chunkLength: 8, seed: 1 }));
    setParallelMinimumWork(minimum);
    expect(parallelCalls()).toBe(before);
    tf.dispose(lshAttention(x, y, { nHashes: 1, chunkLength: 8, seed: 1 }));
    expect(parallelCalls()).toBe(before + 1);
    tf.dispose([x, y]);
  });

  it('the benchmark runs each variant with each thread count and tables the speed-up over one thread', async () => {
    await startThreads(2);
    const options: SweepOptions = {
      lengths: [32], batch: 1, heads: 2, dim: 8, nHashes: [2], chunkLength: 8, numChunksBefore: 1,
      backward: false, runs: 1, budgetSeconds: 600, profile: false, full: true, threads: [1, 2],
    };
    const points = await runSweep(options);
    expect(points.map((p) => `${p.variant}:${p.threads}:${p.split ?? '-'}`)).toEqual(['lsh:1:-', 'lsh:2:true', 'full:1:-', 'full:2:true']);
    expect(attentionThreads()).toBe(2); // the sweep gives the pool back whole
    const md = markdown(makeReport(options, 1, points));
    for (const p of points) expect(md).toContain(`| 32 | ${p.variant === 'lsh' ? 'lsh R=2' : 'full'} | ${p.threads} | ${(p.medianMs as number).toFixed(1)} |`);
    const [lsh1, lsh2] = points;
    expect(md).toContain(`| 32 | lsh R=2 | 2 | ${((lsh1.medianMs as number) / (lsh2.medianMs as number)).toFixed(2)}× |`);
  });

  it('stops, and reads TFJS_THREADS', async () => {
    await stopThreads();
    expect(attentionThreads()).toBe(1);
    const saved = process.env.TFJS_THREADS;
    try {
      process.env.TFJS_THREADS = '2';
      expect(await startThreads()).toBe(2);
      process.env.TFJS_THREADS = 'many';
      await expect(startThreads()).rejects.toThrow(/startThreads: TFJS_THREADS must be a positive integer, got "many"; unset it/);
    } finally {
      process.env.TFJS_THREADS = saved;
    }
  });

  it('refuses a bad thread count with the fix', async () => {
    await expect(startThreads(0)).rejects.toThrow(/startThreads: threads must be a positive integer, got 0; give 1 for one thread/);
    await expect(startThreads(1.5)).rejects.toThrow(/got 1.5/);
  });
});
