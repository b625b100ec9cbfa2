/**
 * lshAttentionAsync: the same options and results as lshAttention, with the
 * host reads done by `await data()`. On cpu and wasm in Node it must give
 * exactly what lshAttention gives (the same code after the reads); in
 * Chromium's WebGPU it is checked by test/browser.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { lshAttention, lshAttentionAsync, type LSHAttentionOptions } from '../src/index.js';
import { describeBackends, expectNoLeaks, maxAbsDiff, randomTensor } from './helpers.js';

const B = 2;
const H = 2;
const T = 32;
const D = 8;
const DV = 6;

function inputs(seed: number): { qk: tf.Tensor4D; v: tf.Tensor4D } {
  return { qk: randomTensor([B, H, T, D], seed) as tf.Tensor4D, v: randomTensor([B, H, T, DV], seed + 1) as tf.Tensor4D };
}

/** [B, T] mask: batch 0 keeps everything, batch 1 the first `keep` positions. */
function paddingMask(keep: number, dtype: 'float32' | 'int32' | 'bool' = 'float32'): tf.Tensor2D {
  const values = [...Array.from({ length: T }, () => 1), ...Array.from({ length: T }, (_, i) => (i < keep ? 1 : 0))];
  return tf.tensor2d(values, [B, T], dtype);
}

const CONFIGURATIONS: Array<[string, LSHAttentionOptions]> = [
  ['one round', { nHashes: 1, nBuckets: 4, chunkLength: 8, seed: 3 }],
  ['three rounds, causal', { nHashes: 3, nBuckets: 4, chunkLength: 8, causal: true, seed: 4 }],
  ['two rounds, look-ahead, across-bucket mask, no duplicates', {
    nHashes: 2, nBuckets: 8, chunkLength: 8, numChunksAfter: 1, attendAcrossBuckets: false, allowDuplicateAttention: false, seed: 5,
  }],
  ['factorised buckets, simhash rounds, small blocks', { nHashes: 2, nBuckets: 8, chunkLength: 16, hashFamily: 'simhash', blockLogits: 512, seed: 6 }],
  ['dropout with a seed', { nHashes: 2, nBuckets: 4, chunkLength: 8, dropout: 0.25, dropoutSeed: 11, seed: 7 }],
];

describeBackends('lshAttentionAsync gives what lshAttention gives', () => {
  it.each(CONFIGURATIONS)('%s', async (_, options) => {
    const { qk, v } = inputs(1);
    const expected = lshAttention(qk, v, options);
    const actual = await lshAttentionAsync(qk, v, options);
    expect(actual.shape).toEqual([B, H, T, DV]);
    expect(maxAbsDiff(await actual.data(), await expected.data())).toBe(0);
    tf.dispose([qk, v, expected, actual]);
  });

  it.each(['float32', 'int32', 'bool'] as const)('with a %s padding mask', async (dtype) => {
    const { qk, v } = inputs(2);
    const mask = paddingMask(21, dtype);
    const options: LSHAttentionOptions = { nHashes: 2, nBuckets: 4, chunkLength: 8, causal: true, seed: 8, mask };
    const expected = lshAttention(qk, v, options);
    const actual = await lshAttentionAsync(qk, v, options);
    // Padded query positions are unspecified; compare them all anyway: the same code gives the same numbers.
    expect(maxAbsDiff(await actual.data(), await expected.data())).toBe(0);
    // The mask stays the caller's: not disposed, not changed.
    expect(mask.isDisposed).toBe(false);
    tf.dispose([qk, v, mask, expected, actual]);
  });

  it('with returnAttention: the same output and weights', async () => {
    const { qk, v } = inputs(3);
    const mask = paddingMask(27);
    const options = { nHashes: 2, nBuckets: 4, chunkLength: 8, seed: 9, mask, returnAttention: true } as const;
    const expected = lshAttention(qk, v, options);
    const actual = await lshAttentionAsync(qk, v, options);
    expect(maxAbsDiff(await actual.output.data(), await expected.output.data())).toBe(0);
    expect(Array.from(await actual.attention.positions.data())).toEqual(Array.from(await expected.attention.positions.data()));
    expect(maxAbsDiff(await actual.attention.weights.data(), await expected.attention.weights.data())).toBe(0);
    // Weights sum to 1 per query (a wrong assembly would break it).
    const sums = tf.sum(actual.attention.weights, -1);
    expect(maxAbsDiff(await sums.data(), new Float32Array(B * H * T).fill(1))).toBeLessThan(1e-5);
    tf.dispose([qk, v, mask, sums, expected.output, expected.attention.positions, expected.attention.weights]);
    tf.dispose([actual.output, actual.attention.positions, actual.attention.weights]);
  });

  it('at or below fullAttentionThreshold: exact attention, as lshAttention', async () => {
    const { qk, v } = inputs(4);
    const mask = paddingMask(17);
    const options: LSHAttentionOptions = { fullAttentionThreshold: T, chunkLength: 8, causal: true, mask, seed: 1 };
    const expected = lshAttention(qk, v, options);
    const actual = await lshAttentionAsync(qk, v, options);
    expect(maxAbsDiff(await actual.data(), await expected.data())).toBe(0);
    tf.dispose([qk, v, mask, expected, actual]);
  });

  it('empty inputs give an empty result', async () => {
    const qk = tf.zeros([0, H, T, D]) as tf.Tensor4D;
    const v = tf.zeros([0, H, T, DV]) as tf.Tensor4D;
    const out = await lshAttentionAsync(qk, v, { chunkLength: 8 });
    expect(out.shape).toEqual([0, H, T, DV]);
    tf.dispose([qk, v, out]);
  });

  it('leaks no tensor (with mask, returnAttention, checkFinite)', async () => {
    const { qk, v } = inputs(5);
    const mask = paddingMask(30);
    await expectNoLeaks(() => lshAttentionAsync(qk, v, { nHashes: 2, nBuckets: 4, chunkLength: 8, seed: 2, mask, checkFinite: true }));
    await expectNoLeaks(() => lshAttentionAsync(qk, v, { nHashes: 2, nBuckets: 4, chunkLength: 8, seed: 2, mask, returnAttention: true }));
    tf.dispose([qk, v, mask]);
  });

  it('rejects what lshAttention rejects, naming itself', async () => {
    const { qk, v } = inputs(6);
    await expect(lshAttentionAsync(qk, v, { chunkLength: 7 })).rejects.toThrow(/^lshAttentionAsync: .*chunkLength/);
    const badMask = tf.tensor2d(Array.from({ length: B * T }, (_, i) => (i === 5 ? 2 : 1)), [B, T]);
    await expect(lshAttentionAsync(qk, v, { chunkLength: 8, mask: badMask })).rejects.toThrow(/^lshAttentionAsync: mask .*2/);
    const wrongShape = tf.ones([B, T + 1]) as tf.Tensor2D;
    await expect(lshAttentionAsync(qk, v, { chunkLength: 8, mask: wrongShape })).rejects.toThrow(
      /^lshAttentionAsync: mask must have shape \[B, T\] = \[2, 32\]/,
    );
    const withNaN = tf.where(tf.equal(tf.range(0, B * H * T * D).reshape([B, H, T, D]), 3), tf.fill([B, H, T, D], NaN), qk) as tf.Tensor4D;
    await expect(lshAttentionAsync(withNaN, v, { chunkLength: 8, checkFinite: true })).rejects.toThrow(
      /^lshAttentionAsync: qk has 1 non-finite value \(NaN at \[0, 0, 0, 3\]\)/,
    );
    await expect(lshAttentionAsync(qk, v, null as unknown as LSHAttentionOptions)).rejects.toThrow(/^lshAttentionAsync: options must be an object/);
    tf.dispose([qk, v, badMask, wrongShape, withNaN]);
  });
});
