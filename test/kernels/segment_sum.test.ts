/**
 * The library's segment-sum kernel (wasm lacks one; cpu's is quadratic)
 * against a plain loop, including repeated and out-of-range ids; and the rule
 * that tfjs's own `UnsortedSegmentSum` kernels change only when the user asks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { SEGMENT_SUM_KERNEL_NAME, gatherRowsSummed, registerSegmentSumKernels, segmentSum } from '../../src/index.js';
import { initBackend } from '../../src/backend.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';

/** Segment sums in float64 with plain loops. */
function referenceSegmentSum(x: ArrayLike<number>, shape: number[], ids: number[], numSegments: number): Float64Array {
  const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
  const expected = new Float64Array(numSegments * rowSize);
  ids.forEach((id, i) => {
    if (id < 0 || id >= numSegments) return;
    for (let j = 0; j < rowSize; j++) expected[id * rowSize + j] += x[i * rowSize + j];
  });
  return expected;
}

describeBackends('segmentSum', (backend) => {
  it.each([
    [[7, 3], 4],
    [[50, 16], 9],
    [[6], 3],
  ])('x %j into %i segments equals a plain loop', (shape, numSegments) => {
    tf.tidy(() => {
      const x = randomTensor(shape, 3);
      const rows = shape[0];
      const ids = Array.from({ length: rows }, (_, i) => ((i * 7) % (numSegments + 1)) - (i % 5 === 0 ? 1 : 0));
      const out = segmentSum(x, tf.tensor1d(ids, 'int32'), numSegments);
      expect(out.shape).toEqual([numSegments, ...shape.slice(1)]);
      const expected = referenceSegmentSum(x.dataSync(), shape, ids, numSegments);
      const actual = out.dataSync();
      expected.forEach((e, i) => expect(Math.abs(actual[i] - e)).toBeLessThan(1e-5));
    });
  });

  it('runs under the library kernel name, and is the gradient of gatherRowsSummed', async () => {
    await expectNoLeaks(() => {
      const [grad] = tf.tidy(() => {
        const table = randomTensor([5, 3], 4) as tf.Tensor2D;
        const indices = tf.tensor1d([0, 2, 2, 4, 0, 0], 'int32');
        return [tf.grad((t: tf.Tensor) => tf.sum(gatherRowsSummed(t as tf.Tensor2D, indices)))(table)];
      });
      expect(Array.from(grad.dataSync())).toEqual([3, 3, 3, 0, 0, 0, 2, 2, 2, 0, 0, 0, 1, 1, 1]);
      expect(tf.getKernel(SEGMENT_SUM_KERNEL_NAME, backend)).toBeDefined();
      return grad;
    });
  });

  it("leaves tfjs's UnsortedSegmentSum alone unless asked", async () => {
    // The test process set its backends up with initBackend's defaults: cpu's kernel is still tfjs's.
    const cpuKernel = tf.getKernel('UnsortedSegmentSum', 'cpu');
    expect(cpuKernel).toBeDefined();
    const ours = tf.getKernel(SEGMENT_SUM_KERNEL_NAME, backend)?.kernelFunc;
    expect(ours).toBeDefined();
    expect(cpuKernel?.kernelFunc).not.toBe(ours);
    // initBackend's default fills wasm's gap (tfjs-backend-wasm has no UnsortedSegmentSum) with our kernel.
    expect(tf.getKernel('UnsortedSegmentSum', 'wasm')?.kernelFunc).toBe(ours);
  });
});

describeBackends('UnsortedSegmentSum registration', (backend) => {
  it('is the gradient of tf.gather (so embeddings train on wasm)', () => {
    tf.tidy(() => {
      const table = randomTensor([5, 3], 4);
      const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([0, 2, 2, 4, 0, 0], 'int32'))))(table);
      expect(Array.from(grad.dataSync())).toEqual([3, 3, 3, 0, 0, 0, 2, 2, 2, 0, 0, 0, 1, 1, 1]);
    });
  });

  it.runIf(backend === 'cpu')('replaces the cpu kernel only on request, and then gives the same sums', async () => {
    const original = tf.getKernel('UnsortedSegmentSum', 'cpu')!;
    try {
      await initBackend({ backend: 'cpu', replaceCpuSegmentSum: true });
      const replaced = tf.getKernel('UnsortedSegmentSum', 'cpu')!;
      expect(replaced.kernelFunc).not.toBe(original.kernelFunc);
      tf.tidy(() => {
        const x = randomTensor([40, 5], 9);
        const ids = Array.from({ length: 40 }, (_, i) => (i * 11) % 13);
        const out = tf.unsortedSegmentSum(x, tf.tensor1d(ids, 'int32'), 13);
        const expected = referenceSegmentSum(x.dataSync(), [40, 5], ids, 13);
        const actual = out.dataSync();
        expected.forEach((e, i) => expect(Math.abs(actual[i] - e)).toBeLessThan(1e-5));
      });
      registerSegmentSumKernels({ replaceCpu: true }); // again: no error, still ours
      expect(tf.getKernel('UnsortedSegmentSum', 'cpu')!.kernelFunc).toBe(replaced.kernelFunc);
    } finally {
      tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
      tf.registerKernel(original);
    }
  });
});
