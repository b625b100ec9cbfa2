/**
 * batchMatMul against a plain-loop float64 product (odd and attention-sized
 * shapes, every transpose combination, several kernel chunks), its gradients
 * against tf.matMul's on the cpu backend, leaks, empty shapes and errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { BATCH_MATMUL_KERNEL_NAME, batchMatMul } from '../../src/kernels/batch_matmul.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';

/** [N, M, K, P]: op(a) is [N, M, K], op(b) is [N, K, P]. */
type Dims = [number, number, number, number];

const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

function shapeA([n, m, k]: Dims, transposeA: boolean): [number, number, number] {
  return transposeA ? [n, k, m] : [n, m, k];
}

function shapeB([n, , k, p]: Dims, transposeB: boolean): [number, number, number] {
  return transposeB ? [n, p, k] : [n, k, p];
}

/** The product in float64 with plain loops, and Σₖ|a·b| per element (the scale of its rounding error). */
function referenceProduct(
  a: ArrayLike<number>, b: ArrayLike<number>, [n, m, k, p]: Dims, transposeA: boolean, transposeB: boolean,
): { product: Float64Array; scale: Float64Array } {
  const product = new Float64Array(n * m * p);
  const scale = new Float64Array(n * m * p);
  for (let x = 0; x < n; x++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < p; j++) {
        let sum = 0;
        let absSum = 0;
        for (let l = 0; l < k; l++) {
          const av = transposeA ? a[(x * k + l) * m + i] : a[(x * m + i) * k + l];
          const bv = transposeB ? b[(x * p + j) * k + l] : b[(x * k + l) * p + j];
          sum += av * bv;
          absSum += Math.abs(av * bv);
        }
        product[(x * m + i) * p + j] = sum;
        scale[(x * m + i) * p + j] = absSum;
      }
    }
  }
  return { product, scale };
}

/** Largest |actual − expected| / (Σₖ|a·b| + tiny) over all elements. */
function worstRelativeError(actual: ArrayLike<number>, expected: Float64Array, scale: Float64Array): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / (scale[i] + 1e-30));
  }
  return worst;
}

/** Largest |actual − expected| relative to the largest |expected| (at least 1). */
function relativeMaxDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let largest = 1;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    largest = Math.max(largest, Math.abs(expected[i]));
  }
  return worst / largest;
}

function checkForward(dims: Dims, transposeA: boolean, transposeB: boolean, seed: number): void {
  tf.tidy(() => {
    const a = randomTensor(shapeA(dims, transposeA), seed) as tf.Tensor3D;
    const b = randomTensor(shapeB(dims, transposeB), seed + 1) as tf.Tensor3D;
    const c = batchMatMul(a, b, transposeA, transposeB);
    expect(c.dtype).toBe('float32');
    expect(c.shape).toEqual([dims[0], dims[1], dims[3]]);
    const { product, scale } = referenceProduct(a.dataSync(), b.dataSync(), dims, transposeA, transposeB);
    expect(worstRelativeError(c.dataSync(), product, scale)).toBeLessThan(1e-4);
  });
}

/** Odd sizes (not multiples of the 4×8 tile or of the 4-wide packing), tiny ones, and round ones. */
const ODD_SHAPES: Dims[] = [
  [1, 1, 1, 1],
  [1, 5, 3, 7],
  [3, 5, 3, 7],
  [5, 13, 9, 17],
  [2, 4, 4, 8],
  [4, 8, 12, 16],
  [2, 12, 20, 24],
  [2, 3, 5, 9],
  [1, 33, 65, 31],
];

/** LSH attention's chunk products; N = 30 runs the kernel in three chunks (13 + 13 + 4 matrices). */
const ATTENTION_SHAPES: Dims[] = [
  [30, 64, 64, 128],
  [4, 64, 128, 64],
  [3, 128, 64, 64],
];

/** A seeded pseudo-random sequence of shapes: dims in [1, 20], batch in [1, 5]. */
function randomShapes(count: number, seed: number): Array<[Dims, boolean, boolean]> {
  let state = seed;
  const next = (below: number): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return 1 + Math.floor((state / 2147483648) * below);
  };
  return Array.from({ length: count }, () => [[next(5), next(20), next(20), next(20)], next(2) === 2, next(2) === 2]);
}

/** dL/da and dL/db of L = Σ C·w with C = tf.matMul(a, b, …) on the cpu backend, then back to `backend`. */
async function cpuMatMulGrads(
  a: Float32Array, b: Float32Array, weights: Float32Array, dims: Dims,
  transposeA: boolean, transposeB: boolean, backend: string,
): Promise<{ dA: Float32Array; dB: Float32Array }> {
  await tf.setBackend('cpu');
  try {
    return tf.tidy(() => {
      const aT = tf.tensor3d(a, shapeA(dims, transposeA));
      const bT = tf.tensor3d(b, shapeB(dims, transposeB));
      const w = tf.tensor3d(weights, [dims[0], dims[1], dims[3]]);
      const [dA, dB] = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
        tf.sum(tf.mul(tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D, transposeA, transposeB), w)),
      )([aT, bT]);
      return { dA: dA.dataSync() as Float32Array, dB: dB.dataSync() as Float32Array };
    });
  } finally {
    await tf.setBackend(backend);
  }
}

describeBackends('batchMatMul equals a float64 loop product (relative error < 1e-4)', () => {
  it.each(ODD_SHAPES)('odd shape N=%i M=%i K=%i P=%i, all transposes', (...dims) => {
    TRANSPOSES.forEach(([transposeA, transposeB], t) => checkForward(dims, transposeA, transposeB, 10 + t));
  });

  it.each(ATTENTION_SHAPES)('attention shape N=%i M=%i K=%i P=%i, all transposes', (...dims) => {
    TRANSPOSES.forEach(([transposeA, transposeB], t) => checkForward(dims, transposeA, transposeB, 20 + t));
  });

  it('24 random shapes and transposes', () => {
    randomShapes(24, 7).forEach(([dims, transposeA, transposeB], s) => checkForward(dims, transposeA, transposeB, 30 + s));
  });

  it('one matrix larger than the kernel keeps between calls (K = 2^21)', () => {
    checkForward([1, 1, 1 << 21, 1], false, false, 40);
    checkForward([2, 3, 5, 7], false, true, 41); // and the next call still works
  });

  it('empty shapes: K = 0 gives zeros, N = 0 or M = 0 gives an empty result', () => {
    tf.tidy(() => {
      const zeroK = batchMatMul(tf.zeros([2, 3, 0]) as tf.Tensor3D, tf.zeros([2, 0, 4]) as tf.Tensor3D);
      expect(zeroK.shape).toEqual([2, 3, 4]);
      expect(Array.from(zeroK.dataSync())).toEqual(new Array(24).fill(0));
      expect(batchMatMul(tf.zeros([0, 3, 5]) as tf.Tensor3D, tf.zeros([0, 5, 4]) as tf.Tensor3D).shape).toEqual([0, 3, 4]);
      expect(batchMatMul(tf.zeros([2, 0, 5]) as tf.Tensor3D, tf.zeros([2, 4, 5]) as tf.Tensor3D, false, true).shape).toEqual([2, 0, 4]);
    });
  });
});

describeBackends('batchMatMul gradients equal tf.matMul gradients on cpu (1e-4)', (backend) => {
  const gradientCases: Dims[] = [
    [3, 5, 3, 7],
    [2, 64, 64, 128],
  ];
  for (const dims of gradientCases) {
    it.each(TRANSPOSES)(`[${dims.join(', ')}], transposeA %s, transposeB %s`, async (transposeA, transposeB) => {
      const a = randomTensor(shapeA(dims, transposeA), 50) as tf.Tensor3D;
      const b = randomTensor(shapeB(dims, transposeB), 51) as tf.Tensor3D;
      const w = randomTensor([dims[0], dims[1], dims[3]], 52) as tf.Tensor3D;
      const [dA, dB] = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
        tf.sum(tf.mul(batchMatMul(x as tf.Tensor3D, y as tf.Tensor3D, transposeA, transposeB), w)),
      )([a, b]);
      expect(dA.shape).toEqual(a.shape);
      expect(dB.shape).toEqual(b.shape);
      const expected = await cpuMatMulGrads(
        a.dataSync() as Float32Array, b.dataSync() as Float32Array, w.dataSync() as Float32Array,
        dims, transposeA, transposeB, backend,
      );
      expect(relativeMaxDiff(dA.dataSync(), expected.dA)).toBeLessThan(1e-4);
      expect(relativeMaxDiff(dB.dataSync(), expected.dB)).toBeLessThan(1e-4);
      tf.dispose([a, b, w, dA, dB]);
    });
  }
});

describeBackends('batchMatMul resources', (backend) => {
  it('leaks no tensors, forward or backward', async () => {
    const a = randomTensor([3, 16, 8], 60) as tf.Tensor3D;
    const b = randomTensor([3, 12, 8], 61) as tf.Tensor3D;
    await expectNoLeaks(() => batchMatMul(a, b, false, true));
    await expectNoLeaks(() =>
      tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(batchMatMul(x as tf.Tensor3D, y as tf.Tensor3D, false, true)))([a, b]),
    );
    tf.dispose([a, b]);
  });

  it.runIf(backend === 'wasm')('takes inputs that live on the cpu backend', async () => {
    const dims: Dims = [3, 20, 12, 24];
    await tf.setBackend('cpu');
    const a = randomTensor(shapeA(dims, false), 64) as tf.Tensor3D;
    const b = randomTensor(shapeB(dims, true), 65) as tf.Tensor3D;
    await tf.setBackend(backend);
    const c = batchMatMul(a, b, false, true);
    const { product, scale } = referenceProduct(a.dataSync(), b.dataSync(), dims, false, true);
    expect(worstRelativeError(c.dataSync(), product, scale)).toBeLessThan(1e-4);
    tf.dispose([a, b, c]);
  });

  it(`runs ${backend === 'wasm' ? `the ${BATCH_MATMUL_KERNEL_NAME} kernel` : 'tf.matMul (BatchMatMul)'}`, async () => {
    const a = randomTensor([2, 4, 8], 62) as tf.Tensor3D;
    const b = randomTensor([2, 8, 8], 63) as tf.Tensor3D;
    const info = await tf.profile(() => batchMatMul(a, b));
    expect(info.kernelNames).toContain(backend === 'wasm' ? BATCH_MATMUL_KERNEL_NAME : 'BatchMatMul');
    tf.dispose([a, b, info.result as tf.Tensor]);
  });
});

describeBackends('batchMatMul errors', () => {
  /** Typed as rank 3 whatever its rank, to reach the runtime checks. */
  const zeros = (shape: number[], dtype: tf.DataType = 'float32'): tf.Tensor3D =>
    tf.zeros<tf.Rank>(shape, dtype) as tf.Tensor3D;
  it.each([
    ['rank 2 a', () => batchMatMul(zeros([3, 4]), zeros([2, 4, 5])), /batchMatMul: a expected rank 3 .*got rank 2 \(shape \[3, 4\]\)/],
    ['rank 4 b', () => batchMatMul(zeros([2, 3, 4]), zeros([1, 2, 4, 5])), /batchMatMul: b expected rank 3 .*got rank 4/],
    ['int32 b', () => batchMatMul(zeros([2, 3, 4]), zeros([2, 4, 5], 'int32')), /batchMatMul: b expected dtype float32, got int32/],
    ['batch sizes', () => batchMatMul(zeros([2, 3, 4]), zeros([3, 4, 5])), /batchMatMul: a and b expected equal batch sizes, got 2 and 3/],
    ['inner dims', () => batchMatMul(zeros([2, 3, 4]), zeros([2, 5, 6])), /batchMatMul: inner dimensions expected to match, got 4 \(a \[2, 3, 4\]\) and 5 \(b \[2, 5, 6\]\)/],
    [
      'inner dims, transposed',
      () => batchMatMul(zeros([2, 3, 4]), zeros([2, 5, 6]), true, true),
      /got 3 \(a \[2, 3, 4\] \(transposeA\)\) and 6 \(b \[2, 5, 6\] \(transposeB\)\)/,
    ],
  ] as Array<[string, () => unknown, RegExp]>)('%s', (_, call, message) => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      expect(call).toThrow(message);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});
