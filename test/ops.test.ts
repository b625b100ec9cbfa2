/**
 * matMul2d (the layers' dense maps): value and gradients against plain loops
 * in float64, on every test backend (on wasm its gradient runs explicit
 * transposes and plain matMuls instead of transposed matMuls).
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { matMul2d } from '../src/ops.js';
import { describeBackends, expectNoLeaks, randomTensor } from './helpers.js';

/** a [n, k] · b [k, m] in float64. */
function product(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, m: number, transposeA = false, transposeB = false): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += (transposeA ? a[p * n + i] : a[i * k + p]) * (transposeB ? b[j * k + p] : b[p * m + j]);
      out[i * m + j] = sum;
    }
  }
  return out;
}

describeBackends('matMul2d', () => {
  it.each([
    [5, 3, 4],
    [33, 17, 9],
  ])('[%i, %i] · [%i, …]: value, d/da = dy·bᵀ and d/db = aᵀ·dy as plain loops', (n, k, m) => {
    expectNoLeaks(() =>
      tf.tidy(() => {
        const a = randomTensor([n, k], 1) as tf.Tensor2D;
        const b = randomTensor([k, m], 2) as tf.Tensor2D;
        const dy = randomTensor([n, m], 3) as tf.Tensor2D;
        const [av, bv, dyv] = [a.dataSync(), b.dataSync(), dy.dataSync()];
        const close = (actual: ArrayLike<number>, expected: Float64Array) =>
          expected.forEach((e, i) => expect(Math.abs(actual[i] - e)).toBeLessThan(1e-4 * Math.max(1, Math.abs(e))));
        close(matMul2d(a, b).dataSync(), product(av, bv, n, k, m));
        const [da, db] = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(matMul2d(x as tf.Tensor2D, w as tf.Tensor2D), dy)))([a, b]);
        close(da.dataSync(), product(dyv, bv, n, m, k, false, true)); // [n, m]·[m, k]
        close(db.dataSync(), product(av, dyv, k, n, m, true, false)); // [k, n]·[n, m]
      }),
    );
  });
});
