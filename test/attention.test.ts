/**
 * lshAttention against fullAttention (equivalence at small T, forward and
 * gradients), properties of the LSH computation, leaks, errors and the
 * memory guard.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  estimateFullAttentionBytes,
  fullAttention,
  hashBuckets,
  lshAttention,
  randomRotations,
  sortItems,
  sortItemsOnHost,
  type LSHAttentionOptions,
} from '../src/index.js';
import { describeBackends, expectNoLeaks, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';

const B = 2;
const H = 2;
const T = 16;
const D = 8;
const DV = 5;

/** A padding mask [B, T]: row 0 unpadded, row 1 padded after `keep` positions. */
function paddingMask(keep: number): tf.Tensor2D {
  const rows = [Array.from({ length: T }, () => 1), Array.from({ length: T }, (_, i) => (i < keep ? 1 : 0))];
  return tf.tensor2d(rows, [B, T], 'float32');
}

/** Weights that zero padded positions, [B, 1, T, 1] broadcast over H and Dv. */
function unpaddedWeights(mask: tf.Tensor2D | undefined): tf.Tensor {
  return mask === undefined ? tf.ones([B, 1, T, 1]) : tf.reshape(mask, [B, 1, T, 1]);
}

/** Outputs and gradients of sum(out · w) with w random and zero at padded positions. */
function valueAndGrads(
  attend: (qk: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D,
  qk: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor2D | undefined,
): { out: tf.Tensor; dqk: tf.Tensor; dv: tf.Tensor } {
  const weights = tf.mul(randomTensor([B, H, T, DV], 99), unpaddedWeights(mask));
  const out = tf.mul(attend(qk, v), unpaddedWeights(mask));
  const [dqk, dv] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(attend(a as tf.Tensor4D, b as tf.Tensor4D), weights)),
  )([qk, v]);
  return { out, dqk, dv };
}

const equivalenceCases: Array<[string, Partial<LSHAttentionOptions>]> = [
  ['one chunk (C = T, no neighbours)', { chunkLength: T, numChunksBefore: 0, numChunksAfter: 0 }],
  ['two chunks of T/2, one chunk of look-back', { chunkLength: T / 2, numChunksBefore: 1, numChunksAfter: 0 }],
];

describeBackends('lshAttention equals fullAttention at small T', () => {
  for (const [name, chunking] of equivalenceCases) {
    for (const causal of [false, true]) {
      for (const [padded, hashFamily] of [[false, 'rotation'], [true, 'rotation'], [false, 'simhash'], [true, 'simhash']] as const) {
        it(`${name}, causal ${causal}, padding ${padded}, ${hashFamily} hash: forward 1e-5, gradients 1e-4`, () => {
          tf.tidy(() => {
            const qk = randomTensor([B, H, T, D], 1) as tf.Tensor4D;
            const v = randomTensor([B, H, T, DV], 2) as tf.Tensor4D;
            const mask = padded ? paddingMask(11) : undefined;
            const lsh = valueAndGrads(
              (a, b) => lshAttention(a, b, { ...chunking, nHashes: 1, nBuckets: 8, seed: 5, causal, mask, hashFamily }),
              qk,
              v,
              mask,
            );
            const full = valueAndGrads((a, b) => fullAttention(a, b, { causal, mask }), qk, v, mask);
            expectTensorsClose(lsh.out, full.out, 1e-5);
            expectTensorsClose(lsh.dqk, full.dqk, 1e-4);
            expectTensorsClose(lsh.dv, full.dv, 1e-4);
            // The gradients are not trivially zero.
            expect(tf.max(tf.abs(full.dqk)).dataSync()[0]).toBeGreaterThan(1e-3);
          });
        });
      }
    }
  }

  it('holds for several rounds when every round is one chunk', () => {
    tf.tidy(() => {
      const qk = randomTensor([B, H, T, D], 3) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 4) as tf.Tensor4D;
      const lsh = lshAttention(qk, v, { nHashes: 4, chunkLength: T, numChunksBefore: 0, causal: true, seed: 1 });
      expectTensorsClose(lsh, fullAttention(qk, v, { causal: true }), 1e-5);
    });
  });
});

describeBackends('LSH properties', () => {
  it('buckets are in [0, K), and K exactly at padded positions', () => {
    tf.tidy(() => {
      const x = randomTensor([B, H, T, D], 7) as tf.Tensor4D;
      for (const nBuckets of [2, 8, 64, [4, 6]]) {
        const rotations = randomRotations({ dim: D, nHashes: 3, nBuckets, seed: 11 });
        const mask = paddingMask(9);
        const buckets = hashBuckets(x, rotations, { nBuckets, mask });
        expect(buckets.dtype).toBe('int32');
        expect(buckets.shape).toEqual([B, H, 3, T]);
        const values = buckets.arraySync();
        const k = Array.isArray(nBuckets) ? nBuckets[0] * nBuckets[1] : nBuckets;
        const seen = new Set<number>();
        values.forEach((perBatch, b) =>
          perBatch.forEach((perHead) =>
            perHead.forEach((round) =>
              round.forEach((bucket, t) => {
                if (b === 1 && t >= 9) expect(bucket).toBe(k);
                else {
                  expect(bucket).toBeGreaterThanOrEqual(0);
                  expect(bucket).toBeLessThan(k);
                  seen.add(bucket);
                }
              }),
            ),
          ),
        );
        expect(seen.size).toBeGreaterThan(1);
      }
    });
  });

  it('SimHash buckets pack the sign bits of x·w_b', () => {
    tf.tidy(() => {
      const x = randomTensor([1, 2, T, D], 42) as tf.Tensor4D;
      const hyperplanes = randomRotations({ dim: D, nHashes: 2, nBuckets: 16, seed: 5, hashFamily: 'simhash' });
      expect(hyperplanes.shape).toEqual([D, 2, 4]);
      const buckets = hashBuckets(x, hyperplanes, { nBuckets: 16, hashFamily: 'simhash' }).arraySync();
      const xs = x.arraySync();
      const w = hyperplanes.arraySync();
      for (let h = 0; h < 2; h++) {
        for (let r = 0; r < 2; r++) {
          for (let t = 0; t < T; t++) {
            let expected = 0;
            for (let bit = 0; bit < 4; bit++) {
              let dot = 0;
              for (let d = 0; d < D; d++) dot += xs[0][h][t][d] * w[d][r][bit];
              if (dot > 0) expected += 2 ** bit;
            }
            expect(buckets[0][h][r][t]).toBe(expected);
          }
        }
      }
      expect(() => randomRotations({ dim: D, nHashes: 1, nBuckets: 12, hashFamily: 'simhash' })).toThrow(
        /with hashFamily 'simhash', nBuckets must be a power of two, got 12; use e.g. 16/,
      );
    });
  });

  it('scale does not change buckets', () => {
    tf.tidy(() => {
      const x = randomTensor([1, 2, T, D], 8) as tf.Tensor4D;
      const rotations = randomRotations({ dim: D, nHashes: 2, nBuckets: 16, seed: 3 });
      expect(Array.from(hashBuckets(tf.mul(x, 3.5) as tf.Tensor4D, rotations).dataSync())).toEqual(
        Array.from(hashBuckets(x, rotations).dataSync()),
      );
    });
  });

  it('the sort orders by (round, bucket, position) and un-sort inverts it', () => {
    tf.tidy(() => {
      const x = randomTensor([B, H, T, D], 9) as tf.Tensor4D;
      const rotations = randomRotations({ dim: D, nHashes: 3, nBuckets: 4, seed: 4 });
      const buckets = hashBuckets(x, rotations, { mask: paddingMask(5) });
      const { sortedItems, undoSort } = sortItems(buckets, 4);
      const bucketRows = tf.reshape(buckets, [B * H, 3 * T]).arraySync() as number[][];
      const sortedRows = tf.reshape(sortedItems, [B * H, 3 * T]).arraySync() as number[][];
      const undoRows = tf.reshape(undoSort, [B * H, 3 * T]).arraySync() as number[][];
      sortedRows.forEach((sorted, g) => {
        expect([...sorted].sort((a, b) => a - b)).toEqual(Array.from({ length: 3 * T }, (_, i) => i));
        const key = (item: number): number => Math.floor(item / T) * 5 + bucketRows[g][item];
        for (let j = 1; j < sorted.length; j++) {
          const [prev, next] = [sorted[j - 1], sorted[j]];
          expect(key(prev) < key(next) || (key(prev) === key(next) && prev < next)).toBe(true);
        }
        sorted.forEach((item, place) => expect(undoRows[g][item]).toBe(place));
      });
      // The host counting sort gives the same order.
      const host = sortItemsOnHost(buckets.dataSync() as Int32Array, B * H, 3, T, 4);
      expect(Array.from(host.sorted)).toEqual(sortedRows.flat());
      expect(Array.from(host.undo)).toEqual(undoRows.flat());
    });
  });

  it('changing future values leaves earlier outputs unchanged under causal', () => {
    tf.tidy(() => {
      const qk = randomTensor([B, H, T, D], 10) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 11) as tf.Tensor4D;
      const cut = 9;
      const future = tf.reshape(tf.cast(tf.greaterEqual(tf.range(0, T), cut), 'float32'), [1, 1, T, 1]);
      const v2 = tf.add(v, tf.mul(future, randomTensor([B, H, T, DV], 12, 10))) as tf.Tensor4D;
      const options: LSHAttentionOptions = { nHashes: 2, chunkLength: 4, nBuckets: 4, seed: 2, causal: true };
      const before = tf.slice(lshAttention(qk, v, options), [0, 0, 0, 0], [-1, -1, cut, -1]);
      const after = tf.slice(lshAttention(qk, v2, options), [0, 0, 0, 0], [-1, -1, cut, -1]);
      expect(maxAbsDiff(before.dataSync(), after.dataSync())).toBe(0);
      // ...and the change does reach the future outputs.
      const changed = tf.slice(lshAttention(qk, v2, options), [0, 0, cut, 0], [-1, -1, -1, -1]);
      const original = tf.slice(lshAttention(qk, v, options), [0, 0, cut, 0], [-1, -1, -1, -1]);
      expect(maxAbsDiff(changed.dataSync(), original.dataSync())).toBeGreaterThan(0.01);
    });
  });

  it('changing future tokens leaves earlier outputs unchanged under causal when each round is one chunk', () => {
    tf.tidy(() => {
      const qk = randomTensor([B, H, T, D], 13) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 14) as tf.Tensor4D;
      const cut = 7;
      const future = tf.reshape(tf.cast(tf.greaterEqual(tf.range(0, T), cut), 'float32'), [1, 1, T, 1]);
      const qk2 = tf.add(qk, tf.mul(future, randomTensor([B, H, T, D], 15, 3))) as tf.Tensor4D;
      const v2 = tf.add(v, tf.mul(future, randomTensor([B, H, T, DV], 16, 3))) as tf.Tensor4D;
      const options: LSHAttentionOptions = { nHashes: 4, chunkLength: T, numChunksBefore: 0, seed: 2, causal: true };
      const before = tf.slice(lshAttention(qk, v, options), [0, 0, 0, 0], [-1, -1, cut, -1]);
      const after = tf.slice(lshAttention(qk2, v2, options), [0, 0, 0, 0], [-1, -1, cut, -1]);
      expect(maxAbsDiff(before.dataSync(), after.dataSync())).toBeLessThan(1e-6);
    });
  });

  it('changing padded tokens leaves unpadded outputs unchanged', () => {
    tf.tidy(() => {
      const mask = paddingMask(10);
      const qk = randomTensor([B, H, T, D], 17) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 18) as tf.Tensor4D;
      const padded = tf.reshape(tf.sub(1, mask), [B, 1, T, 1]);
      const qk2 = tf.add(qk, tf.mul(padded, randomTensor([B, H, T, D], 19, 5))) as tf.Tensor4D;
      const v2 = tf.add(v, tf.mul(padded, randomTensor([B, H, T, DV], 20, 5))) as tf.Tensor4D;
      for (const causal of [false, true]) {
        const options: LSHAttentionOptions = { nHashes: 3, chunkLength: 8, nBuckets: 4, seed: 6, mask, causal };
        const keep = tf.reshape(mask, [B, 1, T, 1]);
        const a = tf.mul(lshAttention(qk, v, options), keep);
        const b = tf.mul(lshAttention(qk2, v2, options), keep);
        expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
      }
    });
  });

  it('same seed gives the same output; another seed another', () => {
    tf.tidy(() => {
      const qk = randomTensor([B, H, T, D], 21) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 22) as tf.Tensor4D;
      const run = (seed: number): Float32Array =>
        lshAttention(qk, v, { nHashes: 2, chunkLength: 4, nBuckets: 8, seed }).dataSync() as Float32Array;
      expect(maxAbsDiff(run(1), run(1))).toBe(0);
      expect(maxAbsDiff(run(1), run(2))).toBeGreaterThan(1e-3);
    });
  });

  it('cutting the chunks into small blocks changes nothing (forward and gradients)', () => {
    tf.tidy(() => {
      const qk = randomTensor([B, H, T, D], 40) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 41) as tf.Tensor4D;
      const mask = paddingMask(13);
      const options: LSHAttentionOptions = { nHashes: 3, chunkLength: 4, numChunksBefore: 1, numChunksAfter: 1, causal: true, mask, seed: 8 };
      const whole = valueAndGrads((a, b) => lshAttention(a, b, options), qk, v, mask);
      // 3 chunks of 4×12 logits per block: blocks split groups, and groups are processed one at a time.
      const blocked = valueAndGrads((a, b) => lshAttention(a, b, { ...options, blockLogits: 3 * 4 * 12 }), qk, v, mask);
      expectTensorsClose(blocked.out, whole.out, 1e-6);
      expectTensorsClose(blocked.dqk, whole.dqk, 1e-5);
      expectTensorsClose(blocked.dv, whole.dv, 1e-5);
    });
  });

  it('more rounds bring the output closer to full attention on average', () => {
    tf.tidy(() => {
      const length = 64;
      // Clustered shared-QK vectors, so attention is peaked and LSH has something to find.
      const centres = randomTensor([1, 1, 8, D], 23, 3);
      const assignment = tf.tensor1d(Array.from({ length }, (_, i) => (i * 5) % 8), 'int32');
      const qk = tf.add(tf.gather(centres, assignment, 2), randomTensor([1, 1, length, D], 24, 0.5)) as tf.Tensor4D;
      const v = randomTensor([1, 1, length, DV], 25) as tf.Tensor4D;
      const full = fullAttention(qk, v);
      const meanError = (nHashes: number): number => {
        let total = 0;
        const seeds = 12;
        for (let seed = 0; seed < seeds; seed++) {
          const out = lshAttention(qk, v, { nHashes, chunkLength: 8, nBuckets: 8, seed: 100 + seed });
          total += tf.mean(tf.abs(tf.sub(out, full))).dataSync()[0];
        }
        return total / seeds;
      };
      const errors = [1, 2, 4, 8].map(meanError);
      for (let i = 1; i < errors.length; i++) expect(errors[i]).toBeLessThan(errors[i - 1]);
    });
  });
});

describeBackends('no leaks', () => {
  it('lshAttention and fullAttention, forward and backward', async () => {
    const qk = randomTensor([B, H, T, D], 30) as tf.Tensor4D;
    const v = randomTensor([B, H, T, DV], 31) as tf.Tensor4D;
    const mask = paddingMask(12);
    const options: LSHAttentionOptions = { nHashes: 3, chunkLength: 8, causal: true, mask, seed: 1, dropout: 0.1 };
    await expectNoLeaks(() => lshAttention(qk, v, options));
    await expectNoLeaks(() => fullAttention(qk, v, { mask, causal: true }));
    await expectNoLeaks(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, options)))([qk, v]));
    await expectNoLeaks(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(fullAttention(a as tf.Tensor4D, b as tf.Tensor4D, { mask })))([qk, v]));
    await expectNoLeaks(() => {
      const rotations = randomRotations({ dim: D, nHashes: 2, nBuckets: [4, 4], seed: 1 });
      const buckets = hashBuckets(qk, rotations, { nBuckets: [4, 4], mask });
      const sort = sortItems(buckets, 16);
      return [rotations, buckets, sort];
    });
    tf.dispose([qk, v, mask]);
  });
});

describeBackends('errors say what was expected, what came, and the fix', () => {
  const call = (options: LSHAttentionOptions, qkShape: number[] = [1, 2, 16, 8], vShape: number[] = [1, 2, 16, 4]) => () =>
    tf.tidy(() => {
      lshAttention(tf.zeros<tf.Rank>(qkShape) as tf.Tensor4D, tf.zeros<tf.Rank>(vShape) as tf.Tensor4D, options);
    });

  it.each<[string, () => void, RegExp]>([
    ['odd nBuckets', call({ nBuckets: 7, chunkLength: 8 }), /lshAttention: nBuckets must be even.*got 7/],
    ['odd bucket factor', call({ nBuckets: [4, 3], chunkLength: 8 }), /nBuckets must be even.*\[4,3\]/],
    ['wrong rank of qk', call({ chunkLength: 8 }, [2, 16, 8]), /qk must have rank 4 \[B, H, T, D\], got rank 3/],
    ['wrong rank of v', call({ chunkLength: 8 }, [1, 2, 16, 8], [2, 16, 4]), /v must have rank 4 \[B, H, T, Dv\], got rank 3/],
    ['B mismatch', call({ chunkLength: 8 }, [1, 2, 16, 8], [2, 2, 16, 4]), /v must match qk in B, H and T/],
    ['H mismatch', call({ chunkLength: 8 }, [1, 2, 16, 8], [1, 3, 16, 4]), /v must match qk in B, H and T/],
    ['T mismatch', call({ chunkLength: 8 }, [1, 2, 16, 8], [1, 2, 15, 4]), /v must match qk in B, H and T/],
    ['zero chunkLength', call({ chunkLength: 0 }), /chunkLength must be a positive integer, got 0/],
    ['negative nHashes', call({ nHashes: -1, chunkLength: 8 }), /nHashes must be a positive integer, got -1/],
    ['fractional numChunksBefore', call({ numChunksBefore: 0.5, chunkLength: 8 }), /numChunksBefore must be a non-negative integer, got 0.5/],
    // T = 0 (like B = 0) gives an empty result now: test/hardening/core.test.ts. H, D and Dv must be positive.
    ['no heads', call({ chunkLength: 8 }, [1, 0, 16, 8], [1, 0, 16, 4]), /the size H of the inputs must be a positive integer, got 0/],
    [
      'R·T not a multiple of C',
      call({ nHashes: 1, chunkLength: 12 }),
      /nHashes·T = 1·16 = 16 must be a multiple of chunkLength 12; pad T to a multiple of 12.*LSHSelfAttention/,
    ],
    ['dropout out of range', call({ chunkLength: 8, dropout: 1 }), /dropout must be a number in \[0, 1\), got 1/],
  ])('%s', (_name, fn, message) => {
    expect(fn).toThrow(message);
  });

  it('rotations of the wrong shape', () => {
    const rotations = tf.zeros([8, 2, 3]) as tf.Tensor3D;
    expect(call({ rotations, nBuckets: 8, chunkLength: 8 })).toThrow(
      /rotations must have shape \[D, nHashes, ΣK\/2\] = \[8, 2, 4\].*got \[8, 2, 3\]/,
    );
    const wrongDepth = tf.zeros([6, 1, 4]) as tf.Tensor3D;
    expect(call({ rotations: wrongDepth, chunkLength: 8 })).toThrow(/rotations must have shape .*= \[8, 1, 4\].*got \[6, 1, 4\]/);
    expect(call({ rotations, nHashes: 3, chunkLength: 8 })).toThrow(/rotations must have shape .*= \[8, 3, 3\].*got \[8, 2, 3\]/);
    tf.dispose([rotations, wrongDepth]);
  });

  it('mask of the wrong shape', () => {
    const mask = tf.ones([1, 15]) as tf.Tensor2D;
    expect(call({ mask, chunkLength: 8 })).toThrow(/mask must have shape \[B, T\] = \[1, 16\].*got \[1, 15\]/);
    expect(() =>
      tf.tidy(() => {
        fullAttention(tf.zeros([1, 2, 16, 8]) as tf.Tensor4D, tf.zeros([1, 2, 16, 4]) as tf.Tensor4D, { mask });
      }),
    ).toThrow(/fullAttention: mask must have shape \[B, T\] = \[1, 16\]/);
    mask.dispose();
  });

  it('integer inputs', () => {
    expect(() =>
      tf.tidy(() => {
        lshAttention(tf.zeros([1, 1, 8, 4], 'int32') as tf.Tensor4D, tf.zeros([1, 1, 8, 4]) as tf.Tensor4D, { chunkLength: 8 });
      }),
    ).toThrow(/qk must be float32, got int32/);
  });
});

describeBackends('memory guard', () => {
  it('refuses, before running, a full attention that cannot fit, saying what it needs and what to change', () => {
    const qk = tf.zeros([1, 4, 65536, 1]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    expect(() => fullAttention(qk, qk, { memoryLimitBytes: 8 * 2 ** 20 })).toThrow(
      /fullAttention: this call needs about [\d.]+ MiB \(B·H·T = 262144 queries × 65536 keys, 256 query rows at a time\), but the \w+ backend has [\d.]+ MiB free.*Use lshAttention/,
    );
    expect(tf.memory().numTensors).toBe(before);
    qk.dispose();
  });

  it('counts what a backward pass needs: refuses one that cannot fit where the forward pass fits', () => {
    const qk = tf.zeros([1, 8, 256, 8]) as tf.Tensor4D;
    const shape = { batch: 1, heads: 8, length: 256, dim: 8, valueDim: 8 };
    const forwardBytes = estimateFullAttentionBytes(shape, false);
    const backwardBytes = estimateFullAttentionBytes(shape, true);
    expect(backwardBytes).toBeGreaterThan(forwardBytes);
    const limit = tf.memory().numBytes + (forwardBytes + backwardBytes) / 2;
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      expect(fullAttention(qk, qk, { memoryLimitBytes: limit }).shape).toEqual([1, 8, 256, 8]);
    });
    expect(() => tf.grads((a: tf.Tensor) => tf.sum(fullAttention(a as tf.Tensor4D, qk, { memoryLimitBytes: limit })))([qk])).toThrow(
      /fullAttention: this call needs about [\d.]+ MiB/,
    );
    expect(tf.memory().numTensors).toBe(before); // refused before anything ran
    qk.dispose();
  });

  it('refuses an LSH attention that cannot fit, and accepts it under a raised limit estimate', () => {
    const qk = tf.zeros([1, 1, 64, 1]) as tf.Tensor4D;
    expect(() => lshAttention(qk, qk, { chunkLength: 8, memoryLimitBytes: 1024 })).toThrow(
      /lshAttention: this call needs about [\d.]+ MiB .*fewer rounds \(nHashes\)/,
    );
    tf.tidy(() => {
      expect(lshAttention(qk, qk, { chunkLength: 8, seed: 1 }).shape).toEqual([1, 1, 64, 1]);
    });
    qk.dispose();
  });
});
