/**
 * The six golden cases of shared/design/golden-cases.json (expected outputs
 * from an independent float64 reference) against lshAttention and
 * fullAttention.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { fullAttention, lshAttention } from '../src/index.js';
import { GOLDEN_CONFIGURATIONS, goldenConfiguration, hasShape, loadGoldenCases } from './golden_cases.js';
import { describeBackends } from './helpers.js';

const cases = loadGoldenCases();

/** Largest difference over unpadded query positions. */
function maxDiffUnpadded(actual: tf.Tensor4D, expected: number[][][][], mask: number[][] | null): number {
  const values = actual.arraySync();
  let worst = 0;
  values.forEach((perBatch, b) =>
    perBatch.forEach((perHead, h) =>
      perHead.forEach((row, t) => {
        if (mask !== null && mask[b][t] === 0) return;
        row.forEach((x, d) => {
          worst = Math.max(worst, Math.abs(x - expected[b][h][t][d]));
        });
      }),
    ),
  );
  return worst;
}

describe('golden fixture', () => {
  it('the fixture holds the six configurations of the design, with arrays of the declared shapes', () => {
    expect(cases.map(goldenConfiguration)).toEqual(GOLDEN_CONFIGURATIONS);
    for (const c of cases) {
      expect(hasShape(c.qk, [c.B, c.H, c.T, c.D])).toBe(true);
      expect(hasShape(c.v, [c.B, c.H, c.T, c.Dv])).toBe(true);
      expect(hasShape(c.rotations, [c.D, c.nHashes, c.nBuckets / 2])).toBe(true);
      if (c.mask !== null) expect(hasShape(c.mask, [c.B, c.T])).toBe(true);
      expect(hasShape(c.expected, [c.B, c.H, c.T, c.Dv])).toBe(true);
      expect(hasShape(c.expectedFull, [c.B, c.H, c.T, c.Dv])).toBe(true);
    }
  });

  it.each(cases.map((c, i) => [i, c] as const))(
    'case %i: the expected outputs are averages of values (inside their range); with causal, position 0 is its own value',
    (_i, c) => {
      let checked = 0;
      for (let b = 0; b < c.B; b++) {
        for (let h = 0; h < c.H; h++) {
          for (let d = 0; d < c.Dv; d++) {
            const column = c.v[b][h].map((row) => row[d]);
            const [low, high] = [Math.min(...column) - 1e-6, Math.max(...column) + 1e-6];
            for (let t = 0; t < c.T; t++) {
              if (c.mask !== null && c.mask[b][t] === 0) continue;
              for (const expected of [c.expected, c.expectedFull]) {
                expect(expected[b][h][t][d]).toBeGreaterThanOrEqual(low);
                expect(expected[b][h][t][d]).toBeLessThanOrEqual(high);
              }
            }
            if (c.causal && (c.mask === null || c.mask[b][0] === 1)) {
              // The first query may attend only to itself.
              expect(Math.abs(c.expected[b][h][0][d] - c.v[b][h][0][d])).toBeLessThan(1e-6);
              expect(Math.abs(c.expectedFull[b][h][0][d] - c.v[b][h][0][d])).toBeLessThan(1e-6);
              checked++;
            }
          }
        }
      }
      expect(checked).toBe(c.causal ? c.B * c.H * c.Dv : 0);
    },
  );
});

describeBackends('golden cases', () => {
  it.each(cases.map((c, i) => [i, c] as const))('case %i: lshAttention and fullAttention match', (_i, c) => {
    tf.tidy(() => {
      const qk = tf.tensor4d(c.qk);
      const v = tf.tensor4d(c.v);
      const mask = c.mask === null ? undefined : tf.tensor2d(c.mask);
      const rotations = tf.tensor3d(c.rotations);
      const out = lshAttention(qk, v, {
        rotations,
        nBuckets: c.nBuckets,
        chunkLength: c.chunkLength,
        numChunksBefore: c.numChunksBefore,
        numChunksAfter: c.numChunksAfter,
        causal: c.causal,
        mask,
      });
      expect(out.shape).toEqual([c.B, c.H, c.T, c.Dv]);
      expect(maxDiffUnpadded(out, c.expected, c.mask)).toBeLessThan(1e-4);
      const full = fullAttention(qk, v, { causal: c.causal, mask });
      expect(maxDiffUnpadded(full, c.expectedFull, c.mask)).toBeLessThan(1e-4);
    });
  });
});
