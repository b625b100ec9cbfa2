/**
 * Kernelized LSH: with the linear kernel on centred data it is SimHash (same
 * collision curve, rank D); queries are centred as the anchor matrix was
 * (anchors hash the same through both paths, projections average to zero
 * over the anchors); indefinite kernels do not blow up; non-finite kernels,
 * bad sizes and bad inputs fail clearly; save/load is exact; no leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { expect, it } from 'vitest';
import {
  KernelizedLSH,
  SimHash,
  customKernel,
  familyFromJSON,
  linearKernel,
  rbfKernel,
  type KernelFunction,
} from '../../src/lsh/index.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';
import { agreement, pairsAtAngle, readKeys, standardError, toTensor } from './lsh_helpers.js';

const DEG = Math.PI / 180;

/** `n` rows N(0, I) with their mean subtracted exactly (in float64, then rounded). */
function centredGaussian(n: number, dim: number, seed: number): tf.Tensor2D {
  const x = randomTensor([n, dim], seed);
  const values = Float64Array.from(x.dataSync());
  x.dispose();
  for (let d = 0; d < dim; d++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += values[i * dim + d] / n;
    for (let i = 0; i < n; i++) values[i * dim + d] -= mean;
  }
  return tf.tensor2d(Float32Array.from(values), [n, dim], 'float32');
}

/** tanh(0.5·x·y − 1): a sigmoid kernel, not positive definite. */
const sigmoidKernel: KernelFunction = (a, b) =>
  tf.tidy(() => tf.tanh(tf.sub(tf.mul(tf.matMul(a, tf.transpose(b)), tf.scalar(0.5)), tf.scalar(1))) as tf.Tensor2D);

describeBackends('KernelizedLSH', () => {
  it('with the linear kernel on centred data it has the SimHash collision curve 1 − θ/π (and rank D)', () => {
    const [dim, p, pairs] = [16, 400, 300];
    const data = centredGaussian(p, dim, 1);
    const klsh = KernelizedLSH.fit(data, { kernel: linearKernel(), nAnchors: p, nBits: 16, nTables: 16, seed: 2 });
    const simhash = new SimHash({ dim, nBits: 16, nTables: 16, seed: 3 });
    expect(klsh.rank).toBe(dim);
    const n = pairs * 256;
    for (const degrees of [15, 45, 90, 135]) {
      const { x, y } = pairsAtAngle(pairs, dim, degrees * DEG, degrees, 4);
      const xs = toTensor(x);
      const ys = toTensor(y);
      const rates = [klsh, simhash].map((family) => {
        const bx = family.bits(xs);
        const by = family.bits(ys);
        const rate = agreement(bx.dataSync(), by.dataSync());
        tf.dispose([bx, by]);
        return rate;
      });
      tf.dispose([xs, ys]);
      const expected = 1 - degrees / 180;
      expect(Math.abs(rates[0] - expected), `KLSH at ${degrees}°: ${rates[0]}`).toBeLessThan(3 * standardError(expected, n));
      expect(Math.abs(rates[0] - rates[1]), `KLSH ${rates[0]} vs SimHash ${rates[1]}`).toBeLessThan(
        3 * Math.SQRT2 * standardError(expected, n),
      );
    }
    tf.dispose(data);
    klsh.dispose();
    simhash.dispose();
  });

  it('whitens: with the linear kernel on anisotropic data its hyperplanes are isotropic, as SimHash needs', () => {
    // Standard deviations from 0.3 to 3 across the 8 dimensions (variances within the eigenvalue cutoff).
    const [dim, p] = [8, 300];
    const scales = Array.from({ length: dim }, (_, d) => 0.3 * 10 ** (d / (dim - 1)));
    const raw = centredGaussian(p, dim, 13);
    const data = tf.tidy(() => tf.mul(raw, tf.tensor1d(scales))) as tf.Tensor2D;
    const klsh = KernelizedLSH.fit(data, { kernel: linearKernel(), nAnchors: p, nBits: 16, nTables: 16, seed: 14 });
    expect(klsh.rank).toBe(dim);
    // The projection is (x − μ)·r, so the hyperplane normals are r_d = proj(e_d) − proj(0).
    const basis = tf.concat([tf.eye(dim), tf.zeros([1, dim])]) as tf.Tensor2D;
    const projections = klsh.project(basis);
    const values = projections.dataSync();
    const columns = 256;
    const meanSquare = scales.map((_, d) => {
      let sum = 0;
      for (let c = 0; c < columns; c++) sum += (values[d * columns + c] - values[dim * columns + c]) ** 2;
      return sum / columns;
    });
    // Unwhitened (w = e_S) the ratio would be about (3 / 0.3)² = 100; a mean of 256 squares varies by ±9%.
    expect(Math.max(...meanSquare) / Math.min(...meanSquare)).toBeLessThan(1.6);
    tf.dispose([raw, data, basis, projections]);
    klsh.dispose();
  });

  it('anchors hash the same through the anchor matrix and through the query path', () => {
    // Far from centred, so wrong centring would show.
    const data = tf.tidy(() => tf.add(randomTensor([300, 8], 4), tf.scalar(3))) as tf.Tensor2D;
    const klsh = KernelizedLSH.fit(data, { kernel: rbfKernel({ gamma: 0.05 }), nAnchors: 120, nBits: 10, nTables: 6, seed: 5 });
    const tablePath = klsh.anchorProjections();
    const queryPath = klsh.project(klsh.anchors);
    const table = tablePath.dataSync();
    const query = queryPath.dataSync();
    const scale = Math.max(...Array.from(table, Math.abs));
    let worst = 0;
    for (let i = 0; i < table.length; i++) worst = Math.max(worst, Math.abs(table[i] - query[i]));
    expect(worst / scale).toBeLessThan(1e-4);
    // Same bits, hence the same keys.
    const keys = readKeys(klsh, klsh.anchors);
    const columns = 60;
    for (let i = 0; i < 120; i++) {
      for (let t = 0; t < 6; t++) {
        let key = 0;
        for (let j = 0; j < 10; j++) if (table[i * columns + t * 10 + j] > 0) key += 2 ** j;
        expect(keys[i * 6 + t]).toBe(key);
      }
    }
    // Centred projections average to zero over the anchors, through both paths.
    for (let c = 0; c < columns; c++) {
      let sumTable = 0;
      let sumQuery = 0;
      for (let i = 0; i < 120; i++) {
        sumTable += table[i * columns + c];
        sumQuery += query[i * columns + c];
      }
      expect(Math.abs(sumTable / 120)).toBeLessThan(1e-5 * scale);
      expect(Math.abs(sumQuery / 120)).toBeLessThan(1e-4 * scale);
    }
    tf.dispose([data, tablePath, queryPath]);
    klsh.dispose();
  });

  it('an indefinite kernel (tanh) does not blow up: finite weights, varied bits, still locality-sensitive', () => {
    const data = randomTensor([250, 6], 6) as tf.Tensor2D;
    // The centred anchor matrix really has negative eigenvalues.
    const gram = sigmoidKernel(data, data);
    const g = gram.arraySync();
    gram.dispose();
    const mean = g.map((row) => row.reduce((s, v) => s + v, 0) / 250);
    const all = mean.reduce((s, v) => s + v, 0) / 250;
    const centred = g.map((row, i) => row.map((v, j) => v - mean[i] - mean[j] + all));
    const eigenvalues = new EigenvalueDecomposition(new Matrix(centred), { assumeSymmetric: true }).realEigenvalues;
    expect(Math.min(...eigenvalues)).toBeLessThan(-1e-3 * Math.max(...eigenvalues));

    const klsh = KernelizedLSH.fit(data, { kernel: customKernel(sigmoidKernel, { name: 'tanh' }), nAnchors: 250, nBits: 8, nTables: 8, seed: 7 });
    expect(klsh.rank).toBeLessThan(250);
    expect(Array.from(klsh.weights.dataSync()).every(Number.isFinite)).toBe(true);
    const projections = klsh.project(data);
    const values = projections.dataSync();
    expect(Array.from(values).every(Number.isFinite)).toBe(true);
    for (let c = 0; c < 64; c++) {
      let ones = 0;
      for (let i = 0; i < 250; i++) if (values[i * 64 + c] > 0) ones++;
      expect(ones).toBeGreaterThan(10);
      expect(ones).toBeLessThan(240);
    }
    const near = pairsAtAngle(200, 6, 10 * DEG, 1, 2);
    const far = pairsAtAngle(200, 6, 120 * DEG, 2, 2);
    const rate = ({ x, y }: typeof near): number => {
      const [xs, ys] = [toTensor(x), toTensor(y)];
      const [bx, by] = [klsh.bits(xs), klsh.bits(ys)];
      const r = agreement(bx.dataSync(), by.dataSync());
      tf.dispose([xs, ys, bx, by]);
      return r;
    };
    expect(rate(near) - rate(far)).toBeGreaterThan(0.3);
    tf.dispose([data, projections]);
    klsh.dispose();
  });

  it('a kernel returning non-finite values fails clearly, on the anchors and on queries', () => {
    const data = tf.tidy(() => tf.abs(randomTensor([50, 4], 8))) as tf.Tensor2D;
    const nanKernel = customKernel((a, b) => tf.tidy(() => tf.div(tf.matMul(a, tf.transpose(b)), tf.scalar(0))) as tf.Tensor2D, {
      name: 'divByZero',
    });
    expect(() => KernelizedLSH.fit(data, { kernel: nanKernel, nAnchors: 20 })).toThrow(
      /KernelizedLSH.fit: kernel 'divByZero' returned a non-finite value \((Infinity|NaN)\) on the anchors at \[\d+, \d+\]; fix the kernel/,
    );
    // sqrt(x·y): finite on non-negative data, NaN for a query with negative entries.
    const sqrtKernel = customKernel((a, b) => tf.tidy(() => tf.sqrt(tf.matMul(a, tf.transpose(b)))) as tf.Tensor2D, { name: 'sqrtDot' });
    const klsh = KernelizedLSH.fit(data, { kernel: sqrtKernel, nAnchors: 20, nBits: 4, seed: 1 });
    const negative = tf.neg(data) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    expect(() => klsh.hash(negative)).toThrow(
      /KernelizedLSH.centredKernel: kernel 'sqrtDot' returned \d+ non-finite value\(s\) \(NaN or ±Infinity\)/,
    );
    expect(tf.memory().numTensors).toBe(before);
    const constant = customKernel((a, b) => tf.tidy(() => tf.ones([a.shape[0], b.shape[0]])) as tf.Tensor2D, { name: 'one' });
    expect(() => KernelizedLSH.fit(data, { kernel: constant, nAnchors: 20 })).toThrow(
      /the centred anchor kernel matrix has no positive eigenvalue .* kernel 'one' sees all 20 anchors as the same point/,
    );
    tf.dispose([data, negative]);
    klsh.dispose();
  });

  it('rejects bad sizes and inputs', () => {
    const data = randomTensor([40, 3], 9) as tf.Tensor2D;
    expect(() => KernelizedLSH.fit(data)).toThrow(
      /KernelizedLSH.fit: nAnchors \(p = 300\) must be at most the number of data rows, got data \[40, 3\]; pass nAnchors ≤ 40/,
    );
    expect(() => KernelizedLSH.fit(data, { nAnchors: 20, subsetSize: 21 })).toThrow(
      /subsetSize \(t\) must be at most nAnchors \(p = 20\), got t = 21; lower t or raise p/,
    );
    expect(() => KernelizedLSH.fit(data, { nAnchors: 1 })).toThrow(/nAnchors must be at least 2/);
    expect(() => KernelizedLSH.fit(data, { nAnchors: 20, eigenvalueCutoff: 0 })).toThrow(/eigenvalueCutoff must be a number in \(0, 1\), got number 0/);
    expect(() => KernelizedLSH.fit(data, { nAnchors: 20, nBits: 40 })).toThrow(/nBits must be an integer in \[1, 30\]/);
    expect(() => KernelizedLSH.fit(data, { nAnchors: 20, kernel: 'rbf' as unknown as KernelFunction })).toThrow(
      /kernel must be a Kernel \(linearKernel\(\), rbfKernel\(\), chiSquaredKernel\(\), customKernel\(fn\)\) or a function, got "rbf"/,
    );
    const klsh = KernelizedLSH.fit(data, { nAnchors: 20, nBits: 4, seed: 1 });
    expect(klsh.subsetSize).toBe(20); // default t = min(30, p)
    const wrong = randomTensor([2, 4], 1) as tf.Tensor2D;
    expect(() => klsh.hash(wrong)).toThrow(/KernelizedLSH.hash: x must have D = 3 columns/);
    tf.dispose([data, wrong]);
    klsh.dispose();
  });

  it('reloads from JSON with identical projections; custom kernels must be passed back', () => {
    const data = randomTensor([150, 5], 10) as tf.Tensor2D;
    const queries = randomTensor([40, 5], 11) as tf.Tensor2D;
    const klsh = KernelizedLSH.fit(data, { kernel: rbfKernel({ gamma: 0.2 }), nAnchors: 60, nBits: 12, nTables: 3, seed: 3 });
    const loaded = familyFromJSON(JSON.parse(JSON.stringify(klsh.toJSON()))) as KernelizedLSH;
    const [a, b] = [klsh.project(queries), loaded.project(queries)];
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    expect(readKeys(loaded, queries)).toEqual(readKeys(klsh, queries));
    const refit = KernelizedLSH.fit(data, { kernel: rbfKernel({ gamma: 0.2 }), nAnchors: 60, nBits: 12, nTables: 3, seed: 3 });
    expect(readKeys(refit, queries)).toEqual(readKeys(klsh, queries));

    const custom = KernelizedLSH.fit(data, { kernel: customKernel(sigmoidKernel, { name: 'tanh' }), nAnchors: 60, nBits: 4, seed: 1 });
    const json = custom.toJSON();
    expect(() => familyFromJSON(json)).toThrow(/kernel 'tanh' is not built in .* \{ kernels: \{ 'tanh': yourKernelFunction \} \}/);
    const back = familyFromJSON(json, { kernels: { tanh: sigmoidKernel } });
    expect(readKeys(back, queries)).toEqual(readKeys(custom, queries));
    tf.dispose([data, queries, a, b]);
    [klsh, loaded, refit, custom, back].forEach((f) => f.dispose());
  });

  it('leaks no tensors (fit, hash, bits, scores, anchor path, dispose)', async () => {
    const data = randomTensor([60, 4], 12) as tf.Tensor2D;
    await expectNoLeaks(() => {
      const klsh = KernelizedLSH.fit(data, { nAnchors: 30, nBits: 6, nTables: 2, seed: 1 });
      const out = [klsh.hash(data), klsh.bits(data), klsh.digitScores(data), klsh.anchorProjections(), klsh.centredKernel(data)];
      klsh.dispose();
      return out;
    });
    data.dispose();
  });
});
