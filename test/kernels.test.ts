/**
 * The UnsortedSegmentSum kernel this library registers (wasm lacks one; cpu's
 * is quadratic) against a plain loop, including repeated and out-of-range ids.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { registerWasmKernels } from '../src/index.js';
import { describeBackends, randomTensor } from './helpers.js';

describeBackends('UnsortedSegmentSum', () => {
  it.each([
    [[7, 3], 4],
    [[50, 16], 9],
    [[6], 3],
  ])('x %j into %i segments equals a plain loop', (shape, numSegments) => {
    registerWasmKernels();
    tf.tidy(() => {
      const x = randomTensor(shape, 3);
      const rows = shape[0];
      const ids = Array.from({ length: rows }, (_, i) => ((i * 7) % (numSegments + 1)) - (i % 5 === 0 ? 1 : 0));
      const out = tf.unsortedSegmentSum(x, tf.tensor1d(ids, 'int32'), numSegments);
      const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
      const expected = new Float64Array(numSegments * rowSize);
      const xs = x.dataSync();
      ids.forEach((id, i) => {
        if (id < 0 || id >= numSegments) return;
        for (let j = 0; j < rowSize; j++) expected[id * rowSize + j] += xs[i * rowSize + j];
      });
      expect(out.shape).toEqual([numSegments, ...shape.slice(1)]);
      const actual = out.dataSync();
      expected.forEach((e, i) => expect(Math.abs(actual[i] - e)).toBeLessThan(1e-5));
    });
  });

  it('is the gradient of tf.gather (so embeddings train on wasm)', () => {
    registerWasmKernels();
    tf.tidy(() => {
      const table = randomTensor([5, 3], 4);
      const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([0, 2, 2, 4, 0, 0], 'int32'))))(table);
      expect(Array.from(grad.dataSync())).toEqual([3, 3, 3, 0, 0, 0, 2, 2, 2, 0, 0, 0, 1, 1, 1]);
    });
  });
});
