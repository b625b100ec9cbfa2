/**
 * maskedSoftmax against a float64 loop (weights and logSum within 1e-6, rowMax
 * exact) on random, masked, all-masked, self-only, large-logit and odd-length
 * rows, several kernel chunks and one very long row; its gradients against
 * the plain-tf chain (logits·keep + fill, max, exp, sum, div, log) on the cpu
 * backend within 1e-5; leaks, inputs from another backend, empty shapes and
 * errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { MASKED_SOFTMAX_KERNEL_NAME, canMaskAtPositions, maskedSoftmax, maskedSoftmaxAtPositions } from '../../src/kernels/masked_softmax.js';
import { initBackend } from '../../src/backend.js';
import { MASKED_LOGIT, SELF_ATTENTION_LOGIT } from '../../src/attention.js';
import { stopGradient } from '../../src/ops.js';
import { describeBackends, expectNoLeaks, maxAbsDiff, randomTensor } from '../helpers.js';

type Shape = [number, number, number];

/** A seeded uniform [0, 1) sequence. */
function uniforms(seed: number): () => number {
  let state = seed * 2654435761 + 777;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/** How the fill of a case is made. */
type FillKind =
  | 'none' // every logit kept
  | 'random' // ~30% masked (−1e9), the "self" key of row c (key c mod L) at −1e5
  | 'self-only' // every key masked but the self key (−1e5)
  | 'all-masked' // every key at −1e9
  | 'mixed'; // rows cycle through the kinds above

function makeFill([n, c, l]: Shape, kind: FillKind, seed: number): Float32Array {
  const fill = new Float32Array(n * c * l);
  const next = uniforms(seed);
  const kinds: FillKind[] = ['none', 'random', 'self-only', 'all-masked'];
  for (let row = 0; row < n * c; row++) {
    const rowKind = kind === 'mixed' ? kinds[row % kinds.length] : kind;
    const self = (row % c) % l;
    for (let k = 0; k < l; k++) {
      const i = row * l + k;
      if (rowKind === 'none') fill[i] = 0;
      else if (rowKind === 'all-masked') fill[i] = MASKED_LOGIT;
      else if (k === self) fill[i] = SELF_ATTENTION_LOGIT;
      else if (rowKind === 'self-only' || next() < 0.3) fill[i] = MASKED_LOGIT;
    }
  }
  return fill;
}

/** Logits: N(0, scale²), or uniform in [−scale, scale] when `uniform`. */
function makeLogits(shape: Shape, seed: number, scale: number, uniform = false): Float32Array {
  if (!uniform) return randomTensorValues(shape, seed, scale);
  const next = uniforms(seed);
  return Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, () => scale * (2 * next() - 1));
}

function randomTensorValues(shape: number[], seed: number, scale: number): Float32Array {
  const t = randomTensor(shape, seed, scale);
  const values = t.dataSync() as Float32Array;
  t.dispose();
  return values;
}

/** The definition in float64 with plain loops. */
function reference(logits: Float32Array, fill: Float32Array, length: number): {
  weights: Float64Array;
  rowMax: Float64Array;
  logSum: Float64Array;
} {
  const rows = logits.length / length;
  const weights = new Float64Array(logits.length);
  const rowMax = new Float64Array(rows);
  const logSum = new Float64Array(rows);
  const masked = new Float64Array(length);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let k = 0; k < length; k++) {
      const i = r * length + k;
      masked[k] = fill[i] === 0 ? logits[i] : fill[i];
      max = Math.max(max, masked[k]);
    }
    let sum = 0;
    for (let k = 0; k < length; k++) sum += Math.exp(masked[k] - max);
    for (let k = 0; k < length; k++) weights[r * length + k] = Math.exp(masked[k] - max) / sum;
    rowMax[r] = max;
    logSum[r] = Math.log(sum);
  }
  return { weights, rowMax, logSum };
}

/** Runs maskedSoftmax on the current backend and checks it against the float64 loop. */
function checkForward(shape: Shape, logits: Float32Array, fill: Float32Array): void {
  const [n, c, l] = shape;
  tf.tidy(() => {
    const result = maskedSoftmax(tf.tensor3d(logits, shape), tf.tensor3d(fill, shape));
    expect(result.weights.shape).toEqual(shape);
    expect(result.rowMax.shape).toEqual([n, c, 1]);
    expect(result.logSum.shape).toEqual([n, c, 1]);
    for (const t of [result.weights, result.rowMax, result.logSum]) expect(t.dtype).toBe('float32');
    const expected = reference(logits, fill, l);
    const weights = result.weights.dataSync();
    const logSum = result.logSum.dataSync();
    expect(weights.every(Number.isFinite)).toBe(true);
    expect(logSum.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(weights, expected.weights)).toBeLessThan(1e-6);
    expect(maxAbsDiff(logSum, expected.logSum)).toBeLessThan(1e-6);
    // The maximum of float32 values is one of them: exact.
    expect(Array.from(result.rowMax.dataSync())).toEqual(Array.from(expected.rowMax));
  });
}

describeBackends('maskedSoftmax equals a float64 loop (weights, logSum within 1e-6; rowMax exact)', () => {
  const cases: Array<[string, Shape, FillKind, number, boolean]> = [
    // name, shape, fill, logit scale, uniform logits
    ['attention shape, random masks', [8, 64, 128], 'random', 3, false],
    ['attention shape, no masks', [4, 64, 128], 'none', 3, false],
    ['rows all masked but the self key (−1e5)', [3, 64, 128], 'self-only', 3, false],
    ['rows entirely at −1e9', [3, 64, 128], 'all-masked', 3, false],
    ['large logits (uniform ±80)', [4, 64, 128], 'random', 80, true],
    ['large logits (uniform ±80), every kind of row', [3, 64, 128], 'mixed', 80, true],
    ['L = 13 (not a multiple of 4), every kind of row', [7, 9, 13], 'mixed', 3, false],
    ['L = 130, every kind of row', [5, 16, 130], 'mixed', 3, false],
    ['n = 1, C = 1, L = 1', [1, 1, 1], 'none', 3, false],
    ['n = 1, L = 1, masked', [1, 4, 1], 'mixed', 3, false],
    ['n = 1, L = 3', [1, 5, 3], 'mixed', 3, false],
    ['n = 1, attention shape', [1, 64, 128], 'mixed', 3, false],
    // 1500 rows of 77: the kernel takes them in two chunks of 851 and 649.
    ['several kernel chunks, L = 77', [5, 300, 77], 'random', 3, false],
  ];
  it.each(cases)('%s [%j]', (_, shape, kind, scale, uniform) => {
    checkForward(shape, makeLogits(shape, 10 + shape[2], scale, uniform), makeFill(shape, kind, 20 + shape[0]));
  });

  it('every L from 1 to 17', () => {
    for (let l = 1; l <= 17; l++) {
      const shape: Shape = [2, 5, l];
      checkForward(shape, makeLogits(shape, 30 + l, 4), makeFill(shape, 'mixed', 40 + l));
    }
  });

  it('one very long row (L = 2^20 + 3, larger than a kernel chunk)', () => {
    const shape: Shape = [1, 1, (1 << 20) + 3];
    checkForward(shape, makeLogits(shape, 50, 2), makeFill(shape, 'random', 51));
    const small: Shape = [2, 3, 5];
    checkForward(small, makeLogits(small, 52, 2), makeFill(small, 'mixed', 53)); // and the next call still works
  });

  it('exp of every difference in [−100, 0]: weights of [0, x, …] within 1e-6, the ratio within 1e-6 relative', () => {
    // Rows [0, x, x, x, x] (L = 5: a vector and a scalar tail), x from 0 to −100.
    const rows = 40000;
    const l = 5;
    const logits = new Float32Array(rows * l);
    for (let r = 0; r < rows; r++) for (let k = 1; k < l; k++) logits[r * l + k] = (-100 * r) / rows;
    const shape: Shape = [1, rows, l];
    const fill = new Float32Array(rows * l);
    checkForward(shape, logits, fill);
    tf.tidy(() => {
      const weights = maskedSoftmax(tf.tensor3d(logits, shape), tf.tensor3d(fill, shape)).weights.dataSync();
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        const x = logits[r * l + 1];
        if (x < -80) {
          expect(weights[r * l + 1]).toBeLessThan(1e-34);
          continue;
        }
        for (let k = 1; k < l; k++) {
          worst = Math.max(worst, Math.abs(weights[r * l + k] / weights[r * l] / Math.exp(x) - 1));
        }
      }
      expect(worst).toBeLessThan(1e-6);
    });
  });

  it('masks replace logits: huge or infinite logits under a mask do not matter', () => {
    const shape: Shape = [1, 2, 6];
    const logits = new Float32Array([1e30, -Infinity, Infinity, 2, 3, 4, Infinity, 5, 6, 7, 8, -1e30]);
    const fill = new Float32Array([MASKED_LOGIT, MASKED_LOGIT, MASKED_LOGIT, 0, 0, SELF_ATTENTION_LOGIT, MASKED_LOGIT, 0, 0, 0, 0, MASKED_LOGIT]);
    checkForward(shape, logits, fill);
  });
});

/** The chain LSH attention used before this kernel, differentiated by tf on any backend. */
function plainChain(logits: tf.Tensor3D, fill: tf.Tensor3D): { weights: tf.Tensor; rowMax: tf.Tensor; logSum: tf.Tensor } {
  const keep = tf.cast(tf.equal(fill, 0), 'float32');
  const masked = tf.add(tf.mul(logits, keep), fill);
  const rowMax = stopGradient(tf.max(masked, -1, true));
  const exps = tf.exp(tf.sub(masked, rowMax));
  const sums = tf.sum(exps, -1, true);
  return { weights: tf.div(exps, sums), rowMax, logSum: tf.log(sums) };
}

/** Which outputs the loss Σ weights·a + Σ logSum·b + Σ rowMax·c uses. */
type LossKind = 'weights' | 'logSum' | 'all';

function loss(
  result: { weights: tf.Tensor; rowMax: tf.Tensor; logSum: tf.Tensor },
  kind: LossKind,
  a: tf.Tensor,
  b: tf.Tensor,
  c: tf.Tensor,
): tf.Scalar {
  const terms: tf.Tensor[] = [];
  if (kind !== 'logSum') terms.push(tf.sum(tf.mul(result.weights, a)));
  if (kind !== 'weights') terms.push(tf.sum(tf.mul(result.logSum, b)), tf.sum(tf.mul(result.rowMax, c)));
  return (terms.length === 1 ? terms[0] : tf.addN(terms)) as tf.Scalar;
}

/** Seeds of the loss weights a [n, C, L], b and c [n, C, 1]. */
function lossWeights(shape: Shape): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return [randomTensor(shape, 71), randomTensor([shape[0], shape[1], 1], 72), randomTensor([shape[0], shape[1], 1], 73)];
}

/** dLoss/dLogits of the plain chain on the cpu backend, then back to `backend`. */
async function cpuChainGradient(
  logits: Float32Array, fill: Float32Array, shape: Shape, kind: LossKind, backend: string,
): Promise<Float32Array> {
  await tf.setBackend('cpu');
  try {
    return tf.tidy(() => {
      const fillT = tf.tensor3d(fill, shape);
      const [a, b, c] = lossWeights(shape);
      const grad = tf.grad((x: tf.Tensor) => loss(plainChain(x as tf.Tensor3D, fillT), kind, a, b, c))(tf.tensor3d(logits, shape));
      return grad.dataSync() as Float32Array;
    });
  } finally {
    await tf.setBackend(backend);
  }
}

describeBackends('maskedSoftmax gradients equal the plain-tf chain on cpu (1e-5)', (backend) => {
  const cases: Array<[string, Shape, FillKind, number]> = [
    ['random masks, L = 13', [3, 7, 13], 'random', 2],
    ['every kind of row, attention shape', [2, 64, 128], 'mixed', 3],
    ['every kind of row, large logits', [2, 16, 20], 'mixed', 40],
  ];
  for (const [name, shape, kind, scale] of cases) {
    it.each(['weights', 'logSum', 'all'] as LossKind[])(`${name}: loss on %s`, async (lossKind) => {
      const logitValues = makeLogits(shape, 60 + shape[2], scale);
      const fillValues = makeFill(shape, kind, 61);
      const expected = await cpuChainGradient(logitValues, fillValues, shape, lossKind, backend);
      const before = tf.memory().numTensors;
      const actual = tf.tidy(() => {
        const fill = tf.tensor3d(fillValues, shape);
        const [a, b, c] = lossWeights(shape);
        const grad = tf.grad((x: tf.Tensor) => loss(maskedSoftmax(x as tf.Tensor3D, fill), lossKind, a, b, c))(
          tf.tensor3d(logitValues, shape),
        );
        expect(grad.shape).toEqual(shape);
        return grad.dataSync();
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
      // Masked logits get exactly zero gradient.
      let maskedNonZero = 0;
      for (let i = 0; i < fillValues.length; i++) if (fillValues[i] !== 0 && actual[i] !== 0) maskedNonZero++;
      expect(maskedNonZero).toBe(0);
    });
  }

  it('rowMax has no gradient: a loss on rowMax alone does not reach the logits', () => {
    tf.tidy(() => {
      const shape: Shape = [1, 2, 3];
      const fill = tf.zeros(shape) as tf.Tensor3D;
      const [a, b, c] = lossWeights(shape);
      const withRowMax = tf.grad((x: tf.Tensor) => loss(maskedSoftmax(x as tf.Tensor3D, fill), 'all', a, b, c))(randomTensor(shape, 1));
      const withoutRowMax = tf.grad((x: tf.Tensor) => loss(maskedSoftmax(x as tf.Tensor3D, fill), 'all', a, b, tf.zerosLike(c)))(
        randomTensor(shape, 1),
      );
      expect(maxAbsDiff(withRowMax.dataSync(), withoutRowMax.dataSync())).toBe(0);
    });
  });

  it('through tf.dropout and a matMul, as LSH attention uses it', async () => {
    const shape: Shape = [2, 8, 16];
    const logitValues = makeLogits(shape, 80, 2);
    const fillValues = makeFill(shape, 'mixed', 81);
    const values = randomTensorValues([2, 16, 5], 82, 1);
    const gradient = (softmax: (x: tf.Tensor3D, f: tf.Tensor3D) => { weights: tf.Tensor }): Float32Array =>
      tf.tidy(() => {
        const fill = tf.tensor3d(fillValues, shape);
        const v = tf.tensor3d(values, [2, 16, 5]);
        const w = randomTensor([2, 8, 5], 83);
        return tf.grad((x: tf.Tensor) => {
          const dropped = tf.dropout(softmax(x as tf.Tensor3D, fill).weights, 0.25, undefined, 7) as tf.Tensor3D;
          return tf.sum(tf.mul(tf.matMul(dropped, v), w));
        })(tf.tensor3d(logitValues, shape)).dataSync() as Float32Array;
      });
    const actual = gradient(maskedSoftmax);
    await tf.setBackend('cpu');
    let expected: Float32Array;
    try {
      expected = gradient(plainChain);
    } finally {
      await tf.setBackend(backend);
    }
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
  });
});

describeBackends('maskedSoftmax resources', (backend) => {
  it('leaks no tensors, forward or backward', async () => {
    const shape: Shape = [3, 16, 24];
    const logits = tf.tensor3d(makeLogits(shape, 90, 2), shape);
    const fill = tf.tensor3d(makeFill(shape, 'mixed', 91), shape);
    await expectNoLeaks(() => maskedSoftmax(logits, fill));
    await expectNoLeaks(() => tf.tidy(() => maskedSoftmax(logits, fill)));
    await expectNoLeaks(() =>
      tf.grads((x: tf.Tensor) => {
        const { weights, rowMax, logSum } = maskedSoftmax(x as tf.Tensor3D, fill);
        return tf.addN([tf.sum(tf.square(weights)), tf.sum(logSum), tf.sum(rowMax)]);
      })([logits]),
    );
    await expectNoLeaks(() => tf.grad((x: tf.Tensor) => tf.sum(maskedSoftmax(x as tf.Tensor3D, fill).weights))(logits));
    tf.dispose([logits, fill]);
  });

  it.runIf(backend === 'wasm')('takes inputs that live on the cpu backend', async () => {
    const shape: Shape = [2, 10, 19];
    const logitValues = makeLogits(shape, 92, 2);
    const fillValues = makeFill(shape, 'mixed', 93);
    await tf.setBackend('cpu');
    const logits = tf.tensor3d(logitValues, shape);
    const fill = tf.tensor3d(fillValues, shape);
    await tf.setBackend(backend);
    const { weights, rowMax, logSum } = maskedSoftmax(logits, fill);
    const expected = reference(logitValues, fillValues, shape[2]);
    expect(maxAbsDiff(weights.dataSync(), expected.weights)).toBeLessThan(1e-6);
    expect(maxAbsDiff(logSum.dataSync(), expected.logSum)).toBeLessThan(1e-6);
    tf.dispose([logits, fill, weights, rowMax, logSum]);
  });

  it(`runs ${backend === 'wasm' ? `the ${MASKED_SOFTMAX_KERNEL_NAME} kernel` : 'plain tf ops'}`, async () => {
    const shape: Shape = [2, 4, 8];
    const logits = tf.tensor3d(makeLogits(shape, 94, 2), shape);
    const fill = tf.tensor3d(makeFill(shape, 'random', 95), shape);
    const info = await tf.profile(() => maskedSoftmax(logits, fill).weights);
    if (backend === 'wasm') {
      expect(info.kernelNames).toContain(MASKED_SOFTMAX_KERNEL_NAME);
      expect(info.kernelNames).not.toContain('Exp');
    } else {
      expect(info.kernelNames).toContain('Exp');
    }
    tf.dispose([logits, fill, info.result as tf.Tensor]);
  });

  it('empty shapes: n = 0 or C = 0 give empty results', () => {
    tf.tidy(() => {
      for (const shape of [[0, 4, 5], [3, 0, 5]] as Shape[]) {
        const { weights, rowMax, logSum } = maskedSoftmax(tf.zeros(shape) as tf.Tensor3D, tf.zeros(shape) as tf.Tensor3D);
        expect(weights.shape).toEqual(shape);
        expect(rowMax.shape).toEqual([shape[0], shape[1], 1]);
        expect(logSum.shape).toEqual([shape[0], shape[1], 1]);
      }
    });
  });

  it('fill is not differentiable', () => {
    tf.tidy(() => {
      const logits = randomTensor([1, 2, 3], 96) as tf.Tensor3D;
      expect(() => tf.grad((f: tf.Tensor) => tf.sum(maskedSoftmax(logits, f as tf.Tensor3D).weights))(tf.zeros([1, 2, 3]))).toThrow(
        /Cannot compute gradient/,
      );
    });
  });
});

describeBackends('maskedSoftmax errors', () => {
  /** Typed as rank 3 whatever its rank, to reach the runtime checks. */
  const zeros = (shape: number[], dtype: tf.DataType = 'float32'): tf.Tensor3D => tf.zeros<tf.Rank>(shape, dtype) as tf.Tensor3D;
  it.each([
    ['rank 2 logits', () => maskedSoftmax(zeros([3, 4]), zeros([3, 4])), /maskedSoftmax: logits expected rank 3 .*got rank 2 \(shape \[3, 4\]\)/],
    ['rank 4 fill', () => maskedSoftmax(zeros([2, 3, 4]), zeros([1, 2, 3, 4])), /maskedSoftmax: fill expected rank 3 .*got rank 4/],
    ['int32 fill', () => maskedSoftmax(zeros([2, 3, 4]), zeros([2, 3, 4], 'int32')), /maskedSoftmax: fill expected dtype float32, got int32/],
    ['shapes', () => maskedSoftmax(zeros([2, 3, 4]), zeros([2, 3, 5])), /maskedSoftmax: logits and fill expected equal shapes, got \[2, 3, 4\] and \[2, 3, 5\]/],
    ['L = 0', () => maskedSoftmax(zeros([2, 3, 0]), zeros([2, 3, 0])), /maskedSoftmax: expected at least one logit per row, got shape \[2, 3, 0\]/],
  ] as Array<[string, () => unknown, RegExp]>)('%s', (_, call, message) => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      expect(call).toThrow(message);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('maskedSoftmaxAtPositions [wasm]: the kernel writes the masks from positions', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  /** The dense fill the positions stand for, written from the rule (own position −1e5, masked or causal future −1e9). */
  function denseFill(n: number, c: number, l: number, qpos: Int32Array, kpos: Int32Array, kmask: Int32Array, causal: boolean): Float32Array {
    const fill = new Float32Array(n * c * l);
    for (let m = 0; m < n; m++) {
      for (let q = 0; q < c; q++) {
        for (let k = 0; k < l; k++) {
          const query = qpos[m * c + q];
          const key = kpos[m * l + k];
          fill[(m * c + q) * l + k] =
            key === query ? SELF_ATTENTION_LOGIT : kmask[m * l + k] !== 0 || (causal && key > query) ? MASKED_LOGIT : 0;
        }
      }
    }
    return fill;
  }

  // Shapes with more rows than one kernel chunk (2^19 bytes of logits and fill: 512 rows of 128) and several matrices.
  for (const [n, c, l] of [[3, 4, 8], [40, 64, 128], [7, 5, 12]] as Shape[]) {
    for (const causal of [false, true]) {
      it(`[${n}, ${c}, ${l}]${causal ? ' causal' : ''}: the weights, rowMax and logSum of maskedSoftmax with the dense fill`, () => {
        const next = uniforms(n * 100 + l + (causal ? 1 : 0));
        const span = 3 * c; // positions repeat within a window, as keys of several rounds do
        const qpos = Int32Array.from({ length: n * c }, () => Math.floor(next() * span));
        const kpos = Int32Array.from({ length: n * l }, () => Math.floor(next() * span));
        const kmask = Int32Array.from({ length: n * l }, () => (next() < 0.3 ? -1 : 0));
        // Some queries whose own position is among the keys, for the −1e5 case.
        for (let m = 0; m < n; m++) qpos[m * c] = kpos[m * l + 1];
        const logits = randomTensor([n, c, l], n + l, 4) as tf.Tensor3D;
        const before = tf.memory().numTensors;
        const fast = maskedSoftmaxAtPositions(logits, { queryPositions: qpos, keyPositions: kpos, keyMasked: kmask, causal });
        const dense = tf.tidy(() => maskedSoftmax(logits, tf.tensor3d(denseFill(n, c, l, qpos, kpos, kmask, causal), [n, c, l])));
        expect(maxAbsDiff(fast.weights.dataSync(), dense.weights.dataSync())).toBe(0);
        expect(maxAbsDiff(fast.rowMax.dataSync(), dense.rowMax.dataSync())).toBe(0);
        expect(maxAbsDiff(fast.logSum.dataSync(), dense.logSum.dataSync())).toBe(0);
        tf.dispose([fast.weights, fast.rowMax, fast.logSum, dense.weights, dense.rowMax, dense.logSum]);
        expect(tf.memory().numTensors).toBe(before);
        logits.dispose();
      });
    }
  }

  it('refuses rows that are not a multiple of 4 keys and position arrays of the wrong size, with the fix', () => {
    expect(canMaskAtPositions(8)).toBe(true);
    expect(canMaskAtPositions(6)).toBe(false);
    const logits = tf.zeros([2, 3, 6]) as tf.Tensor3D;
    const masks = { queryPositions: new Int32Array(6), keyPositions: new Int32Array(12), keyMasked: new Int32Array(12), causal: false };
    expect(() => maskedSoftmaxAtPositions(logits, masks)).toThrow(/multiple of 4 keys.*got backend wasm and 6 keys; use maskedSoftmax with a dense fill/);
    const eight = tf.zeros([2, 3, 8]) as tf.Tensor3D;
    expect(() => maskedSoftmaxAtPositions(eight, masks)).toThrow(/expected 6 query positions and 16 key positions and masks for logits \[2, 3, 8\], got 6, 12 and 12/);
    tf.dispose([logits, eight]);
  });
});
