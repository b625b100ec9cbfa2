/**
 * lshAttention's recomputing gradient against the independent float64
 * reference (test/reference.ts): directional derivatives of
 * sum(out · upstream) by central differences of the reference, for several
 * rounds, chunks, look-back/ahead, causal and padded inputs and factorised
 * buckets; with dropout, against central differences of lshAttention itself
 * (the same dropout seed gives the same masks). Also: what a gradient tape
 * keeps does not grow with the attended logits.
 *
 * Legend: B batch, H heads, T length, D head size, Dv value size, R rounds.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { hashBuckets, lshAttention, randomRotations, type NBuckets } from '../src/index.js';
import { initBackend } from '../src/backend.js';
import { describeBackends } from './helpers.js';
import { referenceBuckets, referenceHashMargin, referenceLSHAttention, type ReferenceLSHInput } from './reference.js';

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

type Case = {
  name: string;
  shape: [number, number, number, number]; // B, H, T, D
  nHashes: number;
  nBuckets: NBuckets;
  chunkLength: number;
  before: number;
  after: number;
  causal: boolean;
  padded: boolean;
};

const CASES: Case[] = [
  { name: 'R=2, 4 chunks a round', shape: [1, 2, 16, 4], nHashes: 2, nBuckets: 4, chunkLength: 4, before: 1, after: 0, causal: false, padded: false },
  { name: 'R=3, causal, padded', shape: [2, 1, 12, 5], nHashes: 3, nBuckets: 4, chunkLength: 6, before: 1, after: 0, causal: true, padded: true },
  { name: 'R=2, look-ahead, factorised buckets', shape: [1, 2, 16, 4], nHashes: 2, nBuckets: [2, 4], chunkLength: 8, before: 1, after: 1, causal: false, padded: true },
  { name: 'R=1, no neighbours', shape: [1, 1, 16, 3], nHashes: 1, nBuckets: 4, chunkLength: 4, before: 0, after: 0, causal: true, padded: false },
  // Chunks of 2 without neighbours, causal: many queries keep only their own (replaced) logit in one round
  // and attend to others in the other, so their log-sum-exp gradient is not 0 while no logit of the row is kept.
  { name: 'R=2, causal, chunks of 2, no neighbours', shape: [1, 1, 16, 4], nHashes: 2, nBuckets: 8, chunkLength: 2, before: 0, after: 0, causal: true, padded: true },
];

/** Nested [B][H][T] float64 vectors of a flat array. */
function nest(flat: ArrayLike<number>, b: number, h: number, t: number, d: number): number[][][][] {
  return Array.from({ length: b }, (_, i) =>
    Array.from({ length: h }, (_, j) => Array.from({ length: t }, (_, k) => Array.from({ length: d }, (_, e) => flat[((i * h + j) * t + k) * d + e]))),
  );
}

describeBackends('lshAttention gradient', () => {
  it.each(CASES)('$name: directional derivatives equal central differences of the float64 reference', (c) => {
    const [B, H, T, D] = c.shape;
    const Dv = D + 1;
    const columns = (Array.isArray(c.nBuckets) ? c.nBuckets : [c.nBuckets]).reduce((a, k) => a + k / 2, 0);
    const qk = gaussians(B * H * T * D, 1);
    const v = gaussians(B * H * T * Dv, 2);
    const rotations = gaussians(D * c.nHashes * columns, 3);
    const upstream = gaussians(B * H * T * Dv, 4);
    const mask = c.padded ? Float32Array.from({ length: B * T }, (_, i) => (i % T >= T - 2 ? 0 : 1)) : null;
    if (mask) for (let i = 0; i < upstream.length; i++) if (mask[Math.floor(i / (H * T * Dv)) * T + (Math.floor(i / Dv) % T)] === 0) upstream[i] = 0;
    const rotationsNested = Array.from({ length: D }, (_, d) => Array.from({ length: c.nHashes }, (_, r) => rotations.subarray((d * c.nHashes + r) * columns, (d * c.nHashes + r + 1) * columns)));
    const maskNested = mask ? Array.from({ length: B }, (_, b) => mask.subarray(b * T, (b + 1) * T)) : null;
    const reference = (qkFlat: ArrayLike<number>, vFlat: ArrayLike<number>): number => {
      const input: ReferenceLSHInput = {
        qk: nest(qkFlat, B, H, T, D), v: nest(vFlat, B, H, T, Dv), causal: c.causal, mask: maskNested,
        rotations: rotationsNested, nBuckets: c.nBuckets, chunkLength: c.chunkLength, numChunksBefore: c.before, numChunksAfter: c.after,
      };
      const out = referenceLSHAttention(input).flat(3) as unknown as number[]; // [B·H·T·Dv]
      return out.reduce((sum, x, i) => sum + x * upstream[i], 0);
    };
    expect(referenceHashMargin(nest(qk, B, H, T, D), rotationsNested, c.nBuckets, maskNested)).toBeGreaterThan(1e-3);

    const [dqk, dv] = tf.tidy(() => {
      const rotationsT = tf.tensor3d(rotations, [D, c.nHashes, columns]);
      const maskT = mask ? tf.tensor2d(mask, [B, T]) : undefined;
      const f = (a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, {
          rotations: rotationsT, nBuckets: c.nBuckets, chunkLength: c.chunkLength, numChunksBefore: c.before,
          numChunksAfter: c.after, causal: c.causal, mask: maskT,
        }), tf.tensor4d(upstream, [B, H, T, Dv])));
      return tf.grads(f)([tf.tensor4d(qk, [B, H, T, D]), tf.tensor4d(v, [B, H, T, Dv])]).map((g) => Array.from(g.dataSync()));
    });

    const step = 1e-6;
    for (let trial = 0; trial < 3; trial++) {
      const dirQk = gaussians(qk.length, 10 + trial);
      const dirV = gaussians(v.length, 20 + trial);
      const plusQk = Float64Array.from(qk, (x, i) => x + step * dirQk[i]);
      const minusQk = Float64Array.from(qk, (x, i) => x - step * dirQk[i]);
      // The gradient holds buckets fixed: the perturbation must not move any.
      const buckets = JSON.stringify(referenceBuckets(nest(qk, B, H, T, D), rotationsNested, c.nBuckets, maskNested));
      expect(JSON.stringify(referenceBuckets(nest(plusQk, B, H, T, D), rotationsNested, c.nBuckets, maskNested))).toBe(buckets);
      expect(JSON.stringify(referenceBuckets(nest(minusQk, B, H, T, D), rotationsNested, c.nBuckets, maskNested))).toBe(buckets);
      const numericQk = (reference(plusQk, v) - reference(minusQk, v)) / (2 * step);
      const numericV = (reference(qk, Float64Array.from(v, (x, i) => x + step * dirV[i])) - reference(qk, Float64Array.from(v, (x, i) => x - step * dirV[i]))) / (2 * step);
      const analyticQk = dqk.reduce((s, g, i) => s + g * dirQk[i], 0);
      const analyticV = dv.reduce((s, g, i) => s + g * dirV[i], 0);
      expect(Math.abs(numericQk)).toBeGreaterThan(1e-3); // not trivially zero
      expect(Math.abs(analyticQk - numericQk)).toBeLessThan(1e-4 * Math.max(1, Math.abs(numericQk)));
      expect(Math.abs(analyticV - numericV)).toBeLessThan(1e-4 * Math.max(1, Math.abs(numericV)));
    }
  });

  it('with dropout: directional derivatives equal central differences of the same seeded call', () => {
    const [B, H, T, D] = [1, 2, 16, 4];
    const values = [gaussians(B * H * T * D, 5), gaussians(B * H * T * D, 6), gaussians(B * H * T * D, 7)];
    const options = { nHashes: 2, chunkLength: 4, nBuckets: 4, seed: 3, dropout: 0.3, dropoutSeed: 11 };
    tf.tidy(() => {
      const [qk, v, upstream] = values.map((x) => tf.tensor4d(x, [B, H, T, D]));
      const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, options), upstream));
      const [dqk, dv] = tf.grads(loss)([qk, v]);
      const step = 1e-3;
      const rotations = randomRotations({ dim: D, nHashes: options.nHashes, nBuckets: options.nBuckets, seed: options.seed });
      const bucketsOf = (x: tf.Tensor) => Array.from(hashBuckets(x as tf.Tensor4D, rotations).dataSync());
      for (const [x, grad, other, first] of [[qk, dqk, v, true], [v, dv, qk, false]] as const) {
        const direction = tf.tensor4d(gaussians(B * H * T * D, first ? 30 : 31), [B, H, T, D]);
        if (first) {
          // The gradient holds buckets fixed: the perturbation must not move any.
          expect(bucketsOf(tf.add(qk, tf.mul(direction, step)))).toEqual(bucketsOf(qk));
          expect(bucketsOf(tf.sub(qk, tf.mul(direction, step)))).toEqual(bucketsOf(qk));
        }
        const at = (sign: number) => {
          const moved = tf.add(x, tf.mul(direction, sign * step));
          return (first ? loss(moved, other) : loss(other, moved)).dataSync()[0];
        };
        const numeric = (at(1) - at(-1)) / (2 * step);
        const analytic = tf.sum(tf.mul(grad, direction)).dataSync()[0];
        expect(Math.abs(numeric)).toBeGreaterThan(1e-2);
        expect(Math.abs(analytic - numeric)).toBeLessThan(1e-2 * Math.abs(numeric));
      }
      // Another dropout seed, another gradient: the masks are part of it.
      const [otherDv] = tf.grads((b: tf.Tensor) =>
        tf.sum(tf.mul(lshAttention(qk as tf.Tensor4D, b as tf.Tensor4D, { ...options, dropoutSeed: 12 }), upstream)))([v]);
      expect(tf.max(tf.abs(tf.sub(otherDv, dv))).dataSync()[0]).toBeGreaterThan(1e-3);
    });
  });

  it('causal with dropout: directional derivatives along the first position, which keeps no logit in any round', () => {
    // Position 0 attends only to itself (its self logit replaced) in every round; with dropout its rounds'
    // outputs differ, so the log-sum-exp gradient of each of its rows is not 0 (it must reach no logit).
    const [B, H, T, D] = [1, 1, 16, 4];
    const values = [gaussians(B * H * T * D, 8), gaussians(B * H * T * D, 9), gaussians(B * H * T * D, 10)];
    for (const dropoutSeed of [11, 12, 13]) {
      const options = { nHashes: 2, chunkLength: 4, nBuckets: 4, seed: 3, causal: true, dropout: 0.5, dropoutSeed };
      tf.tidy(() => {
        const [qk, v, upstream] = values.map((x) => tf.tensor4d(x, [B, H, T, D]));
        const loss = (a: tf.Tensor) => tf.sum(tf.mul(lshAttention(a as tf.Tensor4D, v as tf.Tensor4D, options), upstream));
        const [dqk] = tf.grads(loss)([qk]);
        // Move position 0's vector only (small enough to keep every bucket).
        const direction = tf.tensor4d(Float32Array.from({ length: B * H * T * D }, (_, i) => (i < D ? [0.6, -0.3, 0.5, 0.55][i] : 0)), [B, H, T, D]);
        const step = 1e-3;
        const at = (sign: number) => loss(tf.add(qk, tf.mul(direction, sign * step))).dataSync()[0];
        const numeric = (at(1) - at(-1)) / (2 * step);
        const analytic = tf.sum(tf.mul(dqk, direction)).dataSync()[0];
        expect(Math.abs(analytic - numeric)).toBeLessThan(1e-2 * Math.max(1e-2, Math.abs(numeric)));
      });
    }
  });

  it('a gradient tape keeps O(B·H·T·(D + Dv + R)) bytes, not O(attended logits)', () => {
    const [B, H, D] = [1, 2, 8];
    const kept = (T: number, chunkLength: number): number => {
      const qk = tf.tensor4d(gaussians(B * H * T * D, 8), [B, H, T, D]);
      const before = tf.memory().numBytes;
      let during = 0;
      const [grad] = tf.grads((a: tf.Tensor) => {
        const out = lshAttention(a as tf.Tensor4D, a as tf.Tensor4D, { nHashes: 4, chunkLength, seed: 1 });
        during = tf.memory().numBytes - before; // after the forward pass: what the tape holds, and the output
        return tf.sum(out);
      })([qk]);
      tf.dispose([qk, grad]);
      return during;
    };
    // Four times the attended logits per query (C = 64 vs 16) at the same length: the same kept bytes.
    const small = kept(256, 16);
    const large = kept(256, 64);
    expect(large).toBe(small);
    // Inputs, output and round weights: a small multiple of B·H·T·(D + Dv + R) floats.
    expect(large).toBeLessThan(4 * 4 * B * H * 256 * (D + D + 4));
  });
});

// On wasm, blocks whose windows are a multiple of 4 keys give the masked-softmax kernel positions instead of a
// dense mask (the kernel writes the masks itself); cpu always builds the dense mask. Heavy padding and causal
// masks make rows that keep no logit (their queries must get no gradient through the products).
it('wasm with masks from positions gives the gradients of cpu with dense masks: heavy padding, causal and not, padded rows get dy too', async () => {
  const [B, H, T, D] = [2, 2, 32, 8];
  const inputs = [gaussians(B * H * T * D, 31), gaussians(B * H * T * D, 32), gaussians(B * H * T * D, 33)];
  const mask = Float32Array.from({ length: B * T }, (_, i) => (i % T < (i < T ? 6 : 20) ? 1 : 0));
  const run = (causal: boolean) =>
    tf.tidy(() => {
      const [qk, v, upstream] = inputs.map((x) => tf.tensor4d(x, [B, H, T, D]));
      const options = { nHashes: 3, nBuckets: 8, chunkLength: 4, numChunksBefore: 1, numChunksAfter: 1, seed: 5, causal, mask: tf.tensor2d(mask, [B, T]) };
      const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, options), upstream));
      return tf.grads(loss)([qk, v]).map((g) => g.dataSync() as Float32Array);
    });
  await initBackend({ backend: 'wasm' }); // registers the wasm backend and its kernels
  const previous = tf.getBackend();
  try {
    for (const causal of [false, true]) {
      await initBackend({ backend: 'cpu' });
      const dense = run(causal);
      await initBackend({ backend: 'wasm' });
      const before = tf.memory().numTensors;
      const fromPositions = run(causal);
      expect(tf.memory().numTensors).toBe(before);
      for (let k = 0; k < 2; k++) {
        let worst = 0;
        for (let i = 0; i < dense[k].length; i++) worst = Math.max(worst, Math.abs(dense[k][i] - fromPositions[k][i]));
        expect(worst).toBeLessThan(1e-5);
      }
    }
  } finally {
    await initBackend({ backend: previous as 'cpu' | 'wasm' });
  }
});
