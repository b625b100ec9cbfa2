/**
 * rotationBuckets: the wasm kernel against a plain loop of the rule (argmax
 * over [p ; −p], first index on ties, the first half winning a tie between
 * max p and −min p), and against the tf-ops path on cpu; ties made on
 * purpose, rows of 1 to 33 projections, more rows than one kernel chunk.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { rotationBuckets, ROTATION_BUCKET_KERNEL_NAME } from '../../src/kernels/rotation_bucket.js';

/** The rule written out: the index of the largest of [p ; −p], the first on ties. */
function loopBuckets(values: Float32Array, rows: number, m: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -Infinity;
    let at = -1;
    for (let j = 0; j < 2 * m; j++) {
      const x = j < m ? values[r * m + j] : -values[r * m + j - m];
      if (x > best) {
        best = x;
        at = j;
      }
    }
    out[r] = at;
  }
  return out;
}

/** Rows of small integers (many ties, and max p = −min p in some rows). */
function tiedValues(rows: number, m: number, seed: number): Float32Array {
  let state = seed;
  return Float32Array.from({ length: rows * m }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return (state % 7) - 3;
  });
}

describe('rotationBuckets', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  for (const [rows, m] of [[1, 1], [9, 2], [50, 3], [200, 16], [5000, 32], [70, 33]] as Array<[number, number]>) {
    it(`[${rows}, ${m}]: the wasm kernel and the cpu ops give the plain loop's buckets, ties included`, async () => {
      for (const values of [tiedValues(rows, m, rows + m), Float32Array.from({ length: rows * m }, (_, i) => Math.sin(i * 12.9898) * 43758.5453 % 1)]) {
        const expected = loopBuckets(values, rows, m);
        for (const backend of ['wasm', 'cpu'] as const) {
          await initBackend({ backend });
          const before = tf.memory().numTensors;
          const projected = tf.tensor2d(values, [rows, m]);
          const buckets = rotationBuckets(projected);
          expect(buckets.dtype).toBe('int32');
          expect(Array.from(buckets.dataSync())).toEqual(Array.from(expected));
          tf.dispose([projected, buckets]);
          expect(tf.memory().numTensors).toBe(before);
        }
        await initBackend({ backend: 'wasm' });
      }
    });
  }

  it('runs as one kernel on wasm', () => {
    const projected = tf.tensor2d([1, -2, 3, 0.5], [2, 2]);
    expect(tf.getBackend()).toBe('wasm');
    const buckets = rotationBuckets(projected);
    expect(tf.getKernel(ROTATION_BUCKET_KERNEL_NAME, 'wasm')).toBeDefined();
    expect(Array.from(buckets.dataSync())).toEqual([3, 0]);
    tf.dispose([projected, buckets]);
  });
});
