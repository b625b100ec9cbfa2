/**
 * Kernels and the exact scan: values against plain-JavaScript formulas,
 * the JavaScript `pair` forms against the matrices, χ² chunking, JSON,
 * the median heuristic, exactSearch against brute force, recall@k, errors
 * and leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  CHI2_CHUNK_ELEMENTS,
  chiSquaredKernel,
  cosineMatrix,
  customKernel,
  exactSearch,
  kernelFromJSON,
  kernelToJSON,
  linearKernel,
  medianGamma,
  rbfKernel,
  recallAtK,
  type Kernel,
} from '../../src/lsh/index.js';
import { describeBackends, expectNoLeaks, expectTensorsClose, randomTensor } from '../helpers.js';
import { cosineJS } from './lsh_helpers.js';

type Formula = (x: number[], y: number[]) => number;

const formulas: Record<string, { kernel: () => Kernel; formula: Formula; positive: boolean }> = {
  linear: { kernel: linearKernel, formula: (x, y) => x.reduce((s, xi, i) => s + xi * y[i], 0), positive: false },
  rbf: {
    kernel: () => rbfKernel({ gamma: 0.3 }),
    formula: (x, y) => Math.exp(-0.3 * x.reduce((s, xi, i) => s + (xi - y[i]) ** 2, 0)),
    positive: false,
  },
  'rbf (default γ = 1/D)': {
    kernel: () => rbfKernel(),
    formula: (x, y) => Math.exp((-1 / x.length) * x.reduce((s, xi, i) => s + (xi - y[i]) ** 2, 0)),
    positive: false,
  },
  chi2: {
    kernel: () => chiSquaredKernel({ gamma: 0.7 }),
    formula: (x, y) => Math.exp(-0.7 * x.reduce((s, xi, i) => s + (xi + y[i] > 0 ? (xi - y[i]) ** 2 / (xi + y[i]) : 0), 0)),
    positive: true,
  },
};

/** Random rows; for histograms, absolute values with about a third exact zeros. */
function rows(n: number, dim: number, seed: number, positive: boolean): tf.Tensor2D {
  const x = randomTensor([n, dim], seed);
  if (!positive) return x as tf.Tensor2D;
  const out = tf.tidy(() => tf.relu(tf.sub(tf.abs(x), tf.scalar(0.4))));
  x.dispose();
  return out as tf.Tensor2D;
}

describeBackends('kernels', () => {
  it.each(Object.keys(formulas))('%s: matrix and pair match the formula', (name) => {
    const { kernel: make, formula, positive } = formulas[name];
    const kernel = make();
    const a = rows(7, 6, 1, positive);
    const b = rows(5, 6, 2, positive);
    const av = a.arraySync();
    const bv = b.arraySync();
    const expected = av.map((x) => bv.map((y) => formula(x, y)));
    const matrix = kernel.matrix(a, b);
    expectTensorsClose(matrix, expected, 1e-4);
    const af = a.dataSync() as Float32Array;
    const bf = b.dataSync() as Float32Array;
    for (let i = 0; i < 7; i++) {
      for (let j = 0; j < 5; j++) expect(kernel.pair!(af, i * 6, bf, j * 6, 6)).toBeCloseTo(expected[i][j], 5);
    }
    tf.dispose([a, b, matrix]);
  });

  it('χ² builds large matrices in chunks with the same values', () => {
    const [n, m, dim] = [300, 300, 64];
    expect(n * m * dim).toBeGreaterThan(CHI2_CHUNK_ELEMENTS); // at least two chunks
    const kernel = chiSquaredKernel({ gamma: 0.05 });
    const a = rows(n, dim, 3, true);
    const b = rows(m, dim, 4, true);
    const matrix = kernel.matrix(a, b);
    const values = matrix.dataSync();
    const af = a.dataSync() as Float32Array;
    const bf = b.dataSync() as Float32Array;
    for (const i of [0, 1, 150, 299]) {
      for (const j of [0, 77, 299]) expect(values[i * m + j]).toBeCloseTo(kernel.pair!(af, i * dim, bf, j * dim, dim), 5);
    }
    tf.dispose([a, b, matrix]);
  });

  it('cosine: matches the formula, 0 for a zero vector', () => {
    const a = tf.concat([randomTensor([4, 5], 6), tf.zeros([1, 5])]) as tf.Tensor2D;
    const b = randomTensor([3, 5], 7) as tf.Tensor2D;
    const af = a.dataSync();
    const bf = b.dataSync();
    const expected = [0, 1, 2, 3, 4].map((i) => [0, 1, 2].map((j) => cosineJS(af, i * 5, bf, j * 5, 5)));
    const matrix = cosineMatrix(a, b);
    expectTensorsClose(matrix, expected, 1e-5);
    expect(expected[4]).toEqual([0, 0, 0]);
    tf.dispose([a, b, matrix]);
  });

  it('kernels round-trip through JSON; custom ones need their function back', () => {
    const x = rows(4, 3, 8, true);
    const custom = customKernel((a, b) => tf.tidy(() => tf.square(tf.matMul(a, tf.transpose(b)))), {
      name: 'poly2',
      params: { degree: 2 },
    });
    for (const kernel of [linearKernel(), rbfKernel({ gamma: 2 }), rbfKernel(), chiSquaredKernel({ gamma: 3 }), custom]) {
      const json = JSON.parse(JSON.stringify(kernelToJSON(kernel)));
      const loaded = kernelFromJSON(json, { poly2: (a, b) => tf.tidy(() => tf.square(tf.matMul(a, tf.transpose(b)))) });
      expect(loaded.name).toBe(kernel.name);
      expect(loaded.params).toEqual(kernel.params);
      const before = kernel.matrix(x, x);
      const after = loaded.matrix(x, x);
      expectTensorsClose(after, before, 0);
      tf.dispose([before, after]);
    }
    expect(() => kernelFromJSON({ name: 'poly2', params: {} })).toThrow(
      /kernelFromJSON: kernel 'poly2' is not built in \(linear, rbf, chi2\); pass it when loading/,
    );
    x.dispose();
  });

  it('rejects bad kernels and inputs', () => {
    expect(() => rbfKernel({ gamma: -1 })).toThrow(/rbfKernel: gamma must be a finite number > 0, got number -1/);
    expect(() => chiSquaredKernel({ gamma: 0 })).toThrow(/chiSquaredKernel: gamma must be a finite number > 0/);
    expect(() => customKernel(42 as unknown as () => tf.Tensor2D)).toThrow(/customKernel: fn must be a function/);
    const a = randomTensor([3, 4], 1) as tf.Tensor2D;
    const b = randomTensor([2, 5], 2) as tf.Tensor2D;
    expect(() => linearKernel().matrix(a, b)).toThrow(/linearKernel: b must have D = 4 columns/);
    expect(() => chiSquaredKernel().matrix(a, a)).toThrow(
      /chiSquaredKernel: a must be non-negative histograms .* got -?[0-9.e-]+ at flat index \d+; use rbfKernel for signed data/,
    );
    const wrongShape = customKernel((x) => tf.tidy(() => tf.sum(x, 1)) as unknown as tf.Tensor2D, { name: 'bad' });
    expect(() => wrongShape.matrix(a, a)).toThrow(/kernel 'bad': the kernel function must return a tensor \[N, M\] = \[3, 3\]/);
    const ints = customKernel((x, y) => tf.tidy(() => tf.cast(tf.matMul(x, tf.transpose(y)), 'int32')) as tf.Tensor2D, {
      name: 'ints',
    });
    expect(() => ints.matrix(a, a)).toThrow(/kernel 'ints': the kernel function must return float32, got int32/);
    tf.dispose([a, b]);
  });

  it('medianGamma gives e^(−1) at the median pair and scales as 1/c² with the data', () => {
    const x = randomTensor([200, 10], 9) as tf.Tensor2D;
    const doubled = tf.mul(x, tf.scalar(2)) as tf.Tensor2D;
    const gamma = medianGamma(x, { seed: 1 });
    expect(medianGamma(doubled, { seed: 1 })).toBeCloseTo(gamma / 4, 12);
    // About half of all pairs lie within the median distance.
    const k = rbfKernel({ gamma }).matrix(x, x);
    const values = k.dataSync();
    let above = 0;
    let pairs = 0;
    for (let i = 0; i < 200; i++) {
      for (let j = i + 1; j < 200; j++) {
        pairs++;
        if (values[i * 200 + j] > Math.exp(-1)) above++;
      }
    }
    expect(above / pairs).toBeGreaterThan(0.45);
    expect(above / pairs).toBeLessThan(0.55);
    expect(() => medianGamma(x, { kernel: 'chi2' })).toThrow(/medianGamma: data must be non-negative histograms/);
    tf.dispose([x, doubled, k]);
  });

  it('leaks no tensors', async () => {
    const a = rows(30, 8, 1, true);
    const b = rows(20, 8, 2, true);
    await expectNoLeaks(() => [
      linearKernel().matrix(a, b),
      rbfKernel().matrix(a, b),
      chiSquaredKernel().matrix(a, b),
      cosineMatrix(a, b),
    ]);
    tf.dispose([a, b]);
  });
});

describeBackends('exactSearch and recallAtK', () => {
  it.each([
    ['cosine', 'cosine' as const],
    ['rbf', rbfKernel({ gamma: 0.1 })],
  ])('exactSearch (%s) finds the brute-force k best, in blocks of queries', (_, similarity) => {
    const [q, n, dim, k] = [23, 150, 6, 5];
    const queries = randomTensor([q, dim], 10) as tf.Tensor2D;
    const database = randomTensor([n, dim], 11) as tf.Tensor2D;
    const qv = queries.dataSync();
    const dv = database.dataSync();
    const { indices, scores } = exactSearch(queries, database, k, { similarity, batchSize: 4 });
    expect(indices.dtype).toBe('int32');
    expect(indices.shape).toEqual([q, k]);
    const got = indices.arraySync();
    const gotScores = scores.arraySync();
    for (let i = 0; i < q; i++) {
      const all = Array.from({ length: n }, (_, j) => {
        if (similarity === 'cosine') return cosineJS(qv, i * dim, dv, j * dim, dim);
        let d = 0;
        for (let c = 0; c < dim; c++) d += (qv[i * dim + c] - dv[j * dim + c]) ** 2;
        return Math.exp(-0.1 * d);
      });
      const order = all.map((_, j) => j).sort((a, b) => all[b] - all[a]);
      expect(got[i]).toEqual(order.slice(0, k));
      gotScores[i].forEach((s, r) => expect(s).toBeCloseTo(all[order[r]], 5));
    }
    tf.dispose([queries, database, indices, scores]);
  });

  it('recallAtK counts the true k best among the first k found', () => {
    expect(recallAtK([[1, 2, 3], [4, 5, 6]], [[3, 2, 1], [7, 8, 9]], 3)).toBeCloseTo(0.5, 12);
    expect(recallAtK([[1, 9, 2]], [[1, 2, 3]], 2)).toBeCloseTo(0.5, 12);
    expect(recallAtK([['a', 'b']], [['b', 'a']], 2)).toBe(1);
    expect(() => recallAtK([[1]], [[1], [2]], 1)).toThrow(/recallAtK: found and truth must list the same number of queries, got 1 and 2/);
    expect(() => recallAtK([[1]], [[1]], 2)).toThrow(/recallAtK: truth\[0\] must list at least k = 2 ids, got 1/);
  });

  it('exactSearch rejects k larger than the database and leaks nothing', async () => {
    const x = randomTensor([5, 3], 1) as tf.Tensor2D;
    expect(() => exactSearch(x, x, 6)).toThrow(/exactSearch: k must be at most the database size 5, got 6/);
    await expectNoLeaks(() => exactSearch(x, x, 2, { batchSize: 2 }));
    x.dispose();
  });
});
