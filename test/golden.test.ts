/**
 * The six golden cases of shared/design/golden-cases.json (expected outputs
 * from an independent float64 reference) against lshAttention and
 * fullAttention.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { fullAttention, lshAttention } from '../src/index.js';
import { describeBackends } from './helpers.js';

interface GoldenCase {
  B: number;
  H: number;
  T: number;
  D: number;
  Dv: number;
  nHashes: number;
  nBuckets: number;
  chunkLength: number;
  numChunksBefore: number;
  numChunksAfter: number;
  causal: boolean;
  qk: number[][][][];
  v: number[][][][];
  rotations: number[][][];
  mask: number[][] | null;
  expected: number[][][][];
  expectedFull: number[][][][];
}

const here = dirname(fileURLToPath(import.meta.url));
const goldenPath = join(here, 'data', 'golden-cases.json');
const cases = (JSON.parse(readFileSync(goldenPath, 'utf8')) as { cases: GoldenCase[] }).cases;

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

describeBackends('golden cases', () => {
  it('has six cases', () => {
    expect(cases.length).toBe(6);
  });
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
