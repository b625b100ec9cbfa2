/**
 * Small differentiable building blocks the attention functions share: row
 * gathers with gradients that work on every backend, stopGradient, detach.
 */
import * as tf from '@tensorflow/tfjs-core';
import { segmentSum } from './kernels/segment_sum.js';
import { assertRank, multiIndex, shapeString } from './validate.js';

/**
 * Checks x [N, X] and int32 indices [M] with values in [0, N), reading the
 * indices' minimum and maximum back: wasm's gatherND does not check them and
 * returns whatever memory holds for an index out of range.
 */
function checkRowIndices(who: string, x: unknown, indices: unknown, what = 'indices'): void {
  assertRank(who, 'x', x, 2, '[N, X]');
  assertRank(who, what, indices, 1, '[M]');
  if (indices.dtype !== 'int32') {
    throw new Error(`${who}: ${what} must be int32, got ${indices.dtype}; cast it with tf.cast(${what}, 'int32')`);
  }
  const rows = x.shape[0];
  if (indices.size === 0) return;
  const range = tf.tidy(() => tf.stack([tf.min(indices), tf.max(indices)]));
  const [lowest, highest] = range.dataSync();
  range.dispose();
  if (lowest < 0 || highest >= rows) {
    const values = indices.dataSync();
    const at = values.findIndex((i) => i < 0 || i >= rows);
    throw new Error(
      `${who}: ${what} must be row numbers in [0, N) = [0, ${rows}) for x ${shapeString(x.shape)}, ` +
        `got ${values[at]} at [${multiIndex(at, indices.shape).join(', ')}]`,
    );
  }
}

/**
 * aᵀ·b of a [r, m] and b [r, n] → [m, n]. On wasm as plain matMuls with
 * explicit transposes of whatever is smaller: a, or b and the result
 * ((bᵀ·a)ᵀ). wasm's transposed matMul is a naive loop, its Transpose of a
 * [4096, 4096] block takes ≈190 ms, and the batched kernel of src/kernels is
 * made for many small matrices (it ran full attention's
 * [4096, 4096]ᵀ·[4096, 64] at 2.9 GFLOP/s).
 */
export function matMulTransposeA(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (tf.getBackend() !== 'wasm') return tf.matMul(a, b, true, false);
  const [r, m] = a.shape;
  const n = b.shape[1];
  return r * n + n * m < r * m ? tf.transpose(tf.matMul(tf.transpose(b), a)) : tf.matMul(tf.transpose(a), b);
}

/** a [N, K]·b [K, M] with the gradient's products un-transposed (explicit transposes, then plain matMuls). */
const matMulPlainGradient = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    // In a scope of its own: the engine keeps a gradient function's leftovers (the transposes) until the backward pass ends.
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [x, w] = saved as [tf.Tensor2D, tf.Tensor2D];
        const g = dy as tf.Tensor2D;
        return [tf.matMul(g, tf.transpose(w)), matMulTransposeA(x, g)];
      }),
  };
});

/**
 * a [N, K] · b [K, M] → [N, M], as `tf.matMul(a, b)` in value and gradient.
 * On wasm the gradient's two products (dy·bᵀ and aᵀ·dy) run as explicit
 * transposes followed by plain matMuls: wasm runs a transposed matMul as a
 * naive loop, 7–14× slower than its plain one on a layer's shapes (measured
 * on the dense maps of a reformerLM training step). Other backends: tf.matMul.
 */
export function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return (tf.getBackend() === 'wasm' ? matMulPlainGradient(a, b) : tf.matMul(a, b)) as tf.Tensor2D;
}

/** {@link gatherRows} without the checks (no read-back): for indices the library built itself. */
export function gatherRowsUnchecked(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  return tf.gatherND(x, tf.reshape(indices, [indices.shape[0], 1])) as tf.Tensor2D;
}

/**
 * Gathers rows of a 2-D tensor: out[i] = x[indices[i]]. gatherND is used
 * rather than gather: it is correct on every backend and much faster on wasm.
 *
 * @param x [N, X]
 * @param indices int32 [M], values in [0, N) (checked)
 * @returns [M, X]
 */
export function gatherRows(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  checkRowIndices('gatherRows', x, indices);
  return gatherRowsUnchecked(x, indices);
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
 * @throws when the shapes or dtypes are wrong, or `inverse` is not the inverse of `permutation`.
 */
export function permuteRows(x: tf.Tensor2D, permutation: tf.Tensor1D, inverse: tf.Tensor1D): tf.Tensor2D {
  const who = 'permuteRows';
  checkRowIndices(who, x, permutation, 'permutation');
  checkRowIndices(who, x, inverse, 'inverse');
  const rows = x.shape[0];
  if (permutation.size !== rows || inverse.size !== rows) {
    throw new Error(
      `${who}: permutation and inverse must have N = ${rows} entries (the rows of x), got ${permutation.size} and ${inverse.size}`,
    );
  }
  const forward = permutation.dataSync();
  const backward = inverse.dataSync();
  for (let i = 0; i < rows; i++) {
    if (backward[forward[i]] !== i) {
      throw new Error(
        `${who}: inverse must be the inverse of permutation (inverse[permutation[i]] = i), but inverse[permutation[${i}]] = ` +
          `inverse[${forward[i]}] = ${backward[forward[i]]}; make it with tf.topk(tf.neg(tf.cast(permutation, 'float32')), N).indices`,
      );
    }
  }
  return withGradient(x, (input, save) => {
    save([permutation, inverse]);
    return {
      value: gatherRowsUnchecked(input as tf.Tensor2D, permutation),
      gradFunc: (dy, saved) => gatherRowsUnchecked(dy as tf.Tensor2D, saved[1] as tf.Tensor1D),
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
 * @param indices int32 [M], values in [0, N) (checked)
 * @returns [M, X]
 */
export function gatherRowsSummed(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  checkRowIndices('gatherRowsSummed', x, indices);
  return withGradient(x, (input, save) => {
    save([indices]);
    const rows = input.shape[0];
    return {
      value: gatherRowsUnchecked(input as tf.Tensor2D, indices),
      gradFunc: (dy, saved) => segmentSum(dy, saved[0] as tf.Tensor1D, rows),
    };
  }) as tf.Tensor2D;
}

/**
 * A float32 tensor with float32 storage. On webgpu, `tf.cast` of int32 or
 * bool to float32 keeps the int32 buffer (tfjs sees no loss, so it relabels);
 * a multiplication by one writes a real float32 buffer.
 */
function floatStorage(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.cast(x, 'float32'), tf.scalar(1, 'float32'));
}

/**
 * `tf.transpose(x, perm)` for every dtype on every backend.
 *
 * Works around tfjs-backend-webgpu 4.22: its general transpose shader
 * (every transpose but a 2-D `[1, 0]` one) hands an element of an int32
 * buffer (int32 and bool tensors, and float32 ones cast from them) to a
 * function taking an f32, so the WGSL does not compile; the failed pipeline
 * invalidates the command buffer it was recorded in, the result is never
 * written, and later reads give wrong values far from the transpose
 * (test/browser/repro/webgpu.ts has a minimal reproduction). On webgpu an
 * int32 or bool tensor is therefore transposed as float32: exact for
 * integers of magnitude up to 2^24, which is also where tfjs-webgpu's own
 * int32 kernels stay exact (they compute in f32). Elsewhere: plain
 * `tf.transpose`.
 *
 * @param x any shape and dtype.
 * @param perm as in tf.transpose (default: reverse the axes).
 */
export function transposeAnyDtype<T extends tf.Tensor>(x: T, perm?: number[]): T {
  if (x.dtype === 'float32' || tf.getBackend() !== 'webgpu') return tf.transpose(x, perm);
  return tf.tidy(() => tf.cast(tf.transpose(floatStorage(x), perm), x.dtype) as T);
}
