/**
 * lshAttention's opt-in reformer-pytorch options (allowDuplicateAttention:
 * false, attendAcrossBuckets: false) and returnAttention, against the
 * independent float64 plain-loop reference (test/reference.ts): outputs,
 * gradients (directional derivatives against central differences of the
 * reference), the attention weights, causal and padded inputs.
 *
 * Legend: B batch, H heads, T length, D head size, Dv value size, R rounds,
 * K buckets, C chunkLength, L keys per query.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { denseAttention, fullAttention, lshAttention, type LSHAttentionOptions } from '../src/index.js';
import { describeBackends, expectNoLeaks } from './helpers.js';
import {
  referenceBandAttention,
  referenceBuckets,
  referenceFullAttention,
  referenceHashMargin,
  referenceLSHAttentionWithWeights,
  type ReferenceLSHInput,
} from './reference.js';

/** A small seeded generator of N(0, 1) float32 numbers. */
function gaussians(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
  return Float32Array.from({ length: count }, () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()));
}

function nest(flat: ArrayLike<number>, b: number, h: number, t: number, d: number): number[][][][] {
  return Array.from({ length: b }, (_, i) =>
    Array.from({ length: h }, (_, j) => Array.from({ length: t }, (_, k) => Array.from({ length: d }, (_, e) => flat[((i * h + j) * t + k) * d + e]))),
  );
}

interface Case {
  name: string;
  shape: [number, number, number, number]; // B, H, T, D
  nHashes: number;
  nBuckets: number;
  chunkLength: number;
  before: number;
  after: number;
  causal: boolean;
  padded: boolean;
  allowDuplicateAttention: boolean;
  attendAcrossBuckets: boolean;
}

const base = { shape: [1, 2, 16, 4] as [number, number, number, number], nHashes: 3, nBuckets: 4, chunkLength: 4, before: 1, after: 0, causal: false, padded: false };
const CASES: Case[] = [
  { ...base, name: 'no duplicates, R=3', allowDuplicateAttention: false, attendAcrossBuckets: true },
  { ...base, name: 'own bucket only, R=3', allowDuplicateAttention: true, attendAcrossBuckets: false },
  { ...base, name: 'both, causal, padded, B=2', shape: [2, 1, 16, 4], causal: true, padded: true, allowDuplicateAttention: false, attendAcrossBuckets: false },
  { ...base, name: 'no duplicates, causal, padded, look-ahead', shape: [1, 1, 32, 4], nHashes: 2, chunkLength: 4, before: 1, after: 1, causal: true, padded: true, allowDuplicateAttention: false, attendAcrossBuckets: true },
  { ...base, name: 'own bucket only, causal, padded, R=2', nHashes: 2, nBuckets: 8, causal: true, padded: true, allowDuplicateAttention: true, attendAcrossBuckets: false },
];

/** Inputs of one case, drawn until no hash is near a tie (float32 could then pick the other bucket). */
function inputsOf(c: Case, salt = 0) {
  const [B, H, T, D] = c.shape;
  const Dv = D + 1;
  const columns = c.nBuckets / 2;
  for (let attempt = 0; ; attempt++) {
    const seed = 100 * attempt + salt;
    const qk = gaussians(B * H * T * D, seed + 1);
    const v = gaussians(B * H * T * Dv, seed + 2);
    const rotations = gaussians(D * c.nHashes * columns, seed + 3);
    const mask = c.padded ? Float32Array.from({ length: B * T }, (_, i) => (i % T >= T - 3 ? 0 : 1)) : null;
    const rotationsNested = Array.from({ length: D }, (_, d) => Array.from({ length: c.nHashes }, (_, r) => Array.from(rotations.subarray((d * c.nHashes + r) * columns, (d * c.nHashes + r + 1) * columns))));
    const maskNested = mask ? Array.from({ length: B }, (_, b) => Array.from(mask.subarray(b * T, (b + 1) * T))) : null;
    if (referenceHashMargin(nest(qk, B, H, T, D), rotationsNested, c.nBuckets, maskNested) < 1e-3) continue;
    const input = (qkFlat: ArrayLike<number>, vFlat: ArrayLike<number>, options: Partial<ReferenceLSHInput> = {}): ReferenceLSHInput => ({
      qk: nest(qkFlat, B, H, T, D), v: nest(vFlat, B, H, T, Dv), causal: c.causal, mask: maskNested, rotations: rotationsNested,
      nBuckets: c.nBuckets, chunkLength: c.chunkLength, numChunksBefore: c.before, numChunksAfter: c.after,
      allowDuplicateAttention: c.allowDuplicateAttention, attendAcrossBuckets: c.attendAcrossBuckets, ...options,
    });
    const options = (maskT?: tf.Tensor2D): LSHAttentionOptions => ({
      rotations: tf.tensor3d(rotations, [D, c.nHashes, columns]), nBuckets: c.nBuckets, chunkLength: c.chunkLength,
      numChunksBefore: c.before, numChunksAfter: c.after, causal: c.causal, mask: maskT,
      allowDuplicateAttention: c.allowDuplicateAttention, attendAcrossBuckets: c.attendAcrossBuckets,
    });
    return { B, H, T, D, Dv, qk, v, mask, maskNested, rotationsNested, input, options };
  }
}

/** The largest difference over unpadded query positions of two flat [B, H, T, X] arrays. */
function maxDiffUnpadded(a: ArrayLike<number>, b: ArrayLike<number>, mask: Float32Array | null, H: number, T: number, X: number): number {
  let worst = 0;
  for (let n = 0; n < a.length; n++) {
    const position = Math.floor(n / X) % T;
    const batch = Math.floor(n / (H * T * X));
    if (mask && mask[batch * T + position] === 0) continue;
    worst = Math.max(worst, Math.abs(a[n] - b[n]));
  }
  return worst;
}

describeBackends('lshAttention reformer-pytorch options', () => {
  it.each(CASES)('$name: output and attention weights match the reference', async (c) => {
    const { H, T, Dv, qk, v, mask, input, options, B, D } = inputsOf(c);
    const expected = referenceLSHAttentionWithWeights(input(qk, v));
    // The option changes the result (so matching it is a real check).
    const plain = referenceLSHAttentionWithWeights(input(qk, v, { allowDuplicateAttention: true, attendAcrossBuckets: true }));
    const expectedFlat = expected.output.flat(3) as unknown as number[];
    expect(maxDiffUnpadded(expectedFlat, plain.output.flat(3) as unknown as number[], mask, H, T, Dv)).toBeGreaterThan(1e-2);
    await expectNoLeaks(() => {
      const { output, dense, sums } = tf.tidy(() => {
        const maskT = mask ? tf.tensor2d(mask, [B, T]) : undefined;
        const result = lshAttention(tf.tensor4d(qk, [B, H, T, D]), tf.tensor4d(v, [B, H, T, Dv]), { ...options(maskT), returnAttention: true });
        const dense = denseAttention(result.attention);
        return { output: result.output, dense, sums: tf.sum(result.attention.weights, -1) };
      });
      expect(maxDiffUnpadded(output.dataSync(), expectedFlat, mask, H, T, Dv)).toBeLessThan(1e-4);
      expect(maxDiffUnpadded(dense.dataSync(), expected.weights.flat(3) as unknown as number[], mask, H, T, T)).toBeLessThan(1e-5);
      const sumValues = sums.dataSync();
      for (let q = 0; q < sumValues.length; q++) {
        if (!mask || mask[Math.floor(q / (H * T)) * T + (q % T)] === 1) expect(Math.abs(sumValues[q] - 1)).toBeLessThan(1e-5);
      }
      return [output, dense, sums];
    });
  });

  it.each(CASES.slice(2, 4))('$name: directional derivatives equal central differences of the reference', (c) => {
    const { B, H, T, D, Dv, qk, v, mask, maskNested, rotationsNested, input, options } = inputsOf(c, 7);
    const upstream = gaussians(B * H * T * Dv, 99);
    if (mask) for (let i = 0; i < upstream.length; i++) if (mask[Math.floor(i / (H * T * Dv)) * T + (Math.floor(i / Dv) % T)] === 0) upstream[i] = 0;
    const loss = (qkFlat: ArrayLike<number>, vFlat: ArrayLike<number>): number =>
      (referenceLSHAttentionWithWeights(input(qkFlat, vFlat)).output.flat(3) as unknown as number[]).reduce((s, x, i) => s + x * upstream[i], 0);
    const [dqk, dv] = tf.tidy(() => {
      const maskT = mask ? tf.tensor2d(mask, [B, T]) : undefined;
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, options(maskT)), tf.tensor4d(upstream, [B, H, T, Dv])));
      return tf.grads(f)([tf.tensor4d(qk, [B, H, T, D]), tf.tensor4d(v, [B, H, T, Dv])]).map((g) => Array.from(g.dataSync()));
    });
    const step = 1e-6;
    const buckets = JSON.stringify(referenceBuckets(nest(qk, B, H, T, D), rotationsNested, c.nBuckets, maskNested));
    for (let trial = 0; trial < 2; trial++) {
      const dirQk = gaussians(qk.length, 10 + trial);
      const dirV = gaussians(v.length, 20 + trial);
      const plus = Float64Array.from(qk, (x, i) => x + step * dirQk[i]);
      const minus = Float64Array.from(qk, (x, i) => x - step * dirQk[i]);
      expect(JSON.stringify(referenceBuckets(nest(plus, B, H, T, D), rotationsNested, c.nBuckets, maskNested))).toBe(buckets);
      expect(JSON.stringify(referenceBuckets(nest(minus, B, H, T, D), rotationsNested, c.nBuckets, maskNested))).toBe(buckets);
      const numericQk = (loss(plus, v) - loss(minus, v)) / (2 * step);
      const numericV = (loss(qk, Float64Array.from(v, (x, i) => x + step * dirV[i])) - loss(qk, Float64Array.from(v, (x, i) => x - step * dirV[i]))) / (2 * step);
      const analyticQk = dqk.reduce((s, g, i) => s + g * dirQk[i], 0);
      const analyticV = dv.reduce((s, g, i) => s + g * dirV[i], 0);
      expect(Math.abs(numericQk)).toBeGreaterThan(1e-3);
      expect(Math.abs(analyticQk - numericQk)).toBeLessThan(1e-4 * Math.max(1, Math.abs(numericQk)));
      expect(Math.abs(analyticV - numericV)).toBeLessThan(1e-4 * Math.max(1, Math.abs(numericV)));
    }
  });

  it('returnAttention leaves the output and its gradient unchanged; fullAttention returns every key', async () => {
    const c = { ...CASES[0], allowDuplicateAttention: true, causal: true, padded: true };
    const { B, H, T, D, Dv, qk, v, mask, options } = inputsOf(c, 3);
    await expectNoLeaks(() =>
      tf.tidy(() => {
        const maskT = tf.tensor2d(mask as Float32Array, [B, T]);
        const [q, val] = [tf.tensor4d(qk, [B, H, T, D]), tf.tensor4d(v, [B, H, T, Dv])];
        const plain = lshAttention(q, val, options(maskT));
        const withWeights = lshAttention(q, val, { ...options(maskT), returnAttention: true });
        expect(Array.from(withWeights.output.dataSync())).toEqual(Array.from(plain.dataSync()));
        expect(withWeights.attention.positions.shape).toEqual([B, H, T, Math.min(T, c.nHashes * c.chunkLength * 2)]);
        const gradOf = (f: (a: tf.Tensor) => tf.Tensor) => tf.grad(f)(q).dataSync();
        expect(Array.from(gradOf((a) => tf.sum(lshAttention(a as tf.Tensor4D, val, { ...options(maskT), returnAttention: true }).output)))).toEqual(
          Array.from(gradOf((a) => tf.sum(lshAttention(a as tf.Tensor4D, val, options(maskT))))),
        );
        const full = fullAttention(q, val, { causal: true, mask: maskT, returnAttention: true });
        const reference = referenceFullAttention({ qk: nest(qk, B, H, T, D), v: nest(v, B, H, T, Dv), causal: true, mask: [Array.from(mask as Float32Array)] });
        expect(maxDiffUnpadded(full.output.dataSync(), reference.flat(3) as unknown as number[], mask, H, T, Dv)).toBeLessThan(1e-4);
        // Full attention's weights: the band reference with a band over every chunk.
        const band = referenceBandAttention({ qk: nest(qk, B, H, T, D), v: nest(v, B, H, T, Dv), causal: true, mask: [Array.from(mask as Float32Array)], chunkLength: T, numChunksBefore: 0, numChunksAfter: 0 });
        expect(maxDiffUnpadded(denseAttention(full.attention).dataSync(), band.weights.flat(3) as unknown as number[], mask, H, T, T)).toBeLessThan(1e-5);
        const sums = tf.sum(full.attention.weights, -1).dataSync();
        sums.forEach((s) => expect(Math.abs(s - 1)).toBeLessThan(1e-5));
        // Causal: no weight on a later key.
        const dense = denseAttention(full.attention).dataSync();
        for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) expect(dense[i * T + j]).toBe(0);
        expect(Array.from(full.attention.positions.dataSync().slice(0, T))).toEqual(Array.from({ length: T }, (_, j) => j));
      }),
    );
  });

  it('refuses bad options and malformed attention with a clear message', () => {
    const qk = tf.zeros([1, 1, 8, 4]) as tf.Tensor4D;
    expect(() => lshAttention(qk, qk, { chunkLength: 4, allowDuplicateAttention: 'no' as unknown as boolean })).toThrow(/lshAttention: allowDuplicateAttention must be/);
    expect(() => lshAttention(qk, qk, { chunkLength: 4, attendAcrossBuckets: 1 as unknown as boolean })).toThrow(/lshAttention: attendAcrossBuckets must be/);
    expect(() => lshAttention(qk, qk, { chunkLength: 4, fullAttentionThreshold: -1 })).toThrow(/lshAttention: fullAttentionThreshold/);
    expect(() => denseAttention({ positions: qk, weights: qk } as never)).toThrow(/denseAttention: attention.positions must be int32/);
    expect(() => denseAttention(null as never)).toThrow(/denseAttention: expected \{ positions, weights \}/);
    qk.dispose();
  });
});
