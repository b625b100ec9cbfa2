/**
 * Small differentiable building blocks the attention functions share: row
 * gathers with gradients that work on every backend, stopGradient, detach.
 */
import * as tf from '@tensorflow/tfjs-core';
import { segmentSum } from './kernels/segment_sum.js';

/**
 * Gathers rows of a 2-D tensor: out[i] = x[indices[i]]. gatherND is used
 * rather than gather: it is correct on every backend and much faster on wasm.
 *
 * @param x [N, X]
 * @param indices int32 [M]
 * @returns [M, X]
 */
export function gatherRows(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  return tf.gatherND(x, tf.reshape(indices, [indices.shape[0], 1])) as tf.Tensor2D;
}

/**
 * Identity in the forward pass, zero gradient in the backward pass: for
 * values (like a softmax's row maximum) that must not carry gradient.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return withGradient(x, (input) => ({ value: tf.clone(input), gradFunc: (dy) => tf.zerosLike(dy) })) as T;
}

/**
 * The same values, cut off from the gradient tape: nothing computed from the
 * result is recorded as depending on `x`. Integer work (hashing, sorting,
 * masks from positions) must run on detached inputs, since its ops have no
 * gradients and would otherwise break backpropagation.
 */
export function detach<T extends tf.Tensor>(x: T): T {
  // Ops inside a customGrad's forward pass are not taped, and this customGrad
  // has no tensor inputs, so its output has no path back to x.
  const f = tf.customGrad(() => ({ value: tf.clone(x), gradFunc: () => [] }));
  return f() as T;
}

/**
 * Runs `f` (in a tidy) with the gradient tape paused, and returns its
 * result, which is cut off from the tape as {@link detach}'s is. For integer
 * work (hashing, sorting): under a tape, every op's inputs and outputs would
 * otherwise be kept until the backward pass, which never needs them (hashing
 * with many buckets kept ≈6 copies of its projections).
 */
export function untaped<T extends tf.Tensor>(f: () => T): T {
  // A customGrad's forward pass is not taped; with no tensor inputs, nothing flows back.
  const run = tf.customGrad(() => ({ value: tf.tidy(f), gradFunc: () => [] }));
  return run() as T;
}

/**
 * tf.customGrad for one input tensor, typed: `body(input, save)` returns the
 * value and the gradient function (which receives the saved tensors).
 */
export function withGradient(
  x: tf.Tensor,
  body: (
    input: tf.Tensor,
    save: tf.GradSaveFunc,
  ) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor },
): tf.Tensor {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) =>
    body(args[0] as tf.Tensor, args[1] as tf.GradSaveFunc),
  );
  return f(x);
}

/**
 * Gathers rows by a permutation, with the gather by the inverse permutation
 * as its gradient.
 *
 * @param x [N, X]
 * @param permutation int32 [N]: out[i] = x[permutation[i]].
 * @param inverse int32 [N]: inverse[permutation[i]] = i.
 * @returns [N, X]
 */
export function permuteRows(x: tf.Tensor2D, permutation: tf.Tensor1D, inverse: tf.Tensor1D): tf.Tensor2D {
  return withGradient(x, (input, save) => {
    save([permutation, inverse]);
    return {
      value: gatherRows(input as tf.Tensor2D, permutation),
      gradFunc: (dy, saved) => gatherRows(dy as tf.Tensor2D, saved[1] as tf.Tensor1D),
    };
  }) as tf.Tensor2D;
}

/**
 * Gathers rows, out[i] = x[indices[i]], for any indices (repeats allowed);
 * the gradient sums the rows' contributions ({@link segmentSum}: the
 * library's own linear-time kernel on cpu and wasm, tf.unsortedSegmentSum
 * elsewhere).
 *
 * @param x [N, X]
 * @param indices int32 [M], values in [0, N)
 * @returns [M, X]
 */
export function gatherRowsSummed(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  return withGradient(x, (input, save) => {
    save([indices]);
    const rows = input.shape[0];
    return {
      value: gatherRows(input as tf.Tensor2D, indices),
      gradFunc: (dy, saved) => segmentSum(dy, saved[0] as tf.Tensor1D, rows),
    };
  }) as tf.Tensor2D;
}
