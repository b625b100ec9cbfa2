/**
 * Kernels for kernelized LSH and for re-ranking candidates: linear, RBF, χ²
 * (for histograms) and any user function, plus cosine similarity. A kernel
 * maps two batches of vectors to the matrix of their kernel values.
 *
 * Legend: N, M vectors, D vector size.
 */
import * as tf from '@tensorflow/tfjs-core';
import { uniformStream, type Seed } from '../random.js';
import { assertPositiveInteger, shapeString } from '../validate.js';
import { describeValue } from './encoding.js';
import { checkVectors } from './family.js';

/** A kernel as plain JSON: built-in ones rebuild from it, custom ones by name. */
export interface KernelJSON {
  name: string;
  params: Record<string, number>;
}

/** A user kernel: [N, D] and [M, D] → float32 [N, M] of kernel values. */
export type KernelFunction = (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * One pair's kernel value in plain JavaScript: the rows
 * x[xOffset, xOffset + dim) and y[yOffset, yOffset + dim).
 */
export type PairFunction = (x: Float32Array, xOffset: number, y: Float32Array, yOffset: number, dim: number) => number;

/** A kernel k(x, y), batched over tensors. */
export interface Kernel {
  /** 'linear', 'rbf', 'chi2', or a custom kernel's name. */
  readonly name: string;
  /** Its parameters (what `toJSON` saves). */
  readonly params: Readonly<Record<string, number>>;
  /**
   * All kernel values between two batches.
   * @param a float32 [N, D].
   * @param b float32 [M, D].
   * @returns float32 [N, M].
   */
  matrix(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D;
  /**
   * The same kernel on one pair of rows in JavaScript (optional: an index
   * re-ranks its candidates with it, much faster than gathering rows into
   * tensors; without it, re-ranking calls `matrix` once per query). Default: none.
   */
  pair?: PairFunction;
}

/** What candidates are ranked by: cosine similarity, or a kernel. */
export type Similarity = 'cosine' | Kernel;

/** Elements of the [n, M, D] intermediate the χ² kernel builds per chunk. */
export const CHI2_CHUNK_ELEMENTS = 2 ** 22;

/** Added to norms before dividing, so a zero vector has similarity 0 with everything. */
const NORM_FLOOR = 1e-30;

function checkPair(who: string, a: unknown, b: unknown): asserts a is tf.Tensor2D {
  checkVectors(who, 'a', a);
  checkVectors(who, 'b', b, a.shape[1]);
}

/** [N, D] → [N, M]-ready squared Euclidean distances, clamped at 0. */
function squaredDistances(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const aa = tf.sum(tf.square(a), 1, true); // [N, 1]
    const bb = tf.reshape(tf.sum(tf.square(b), 1), [1, b.shape[0]]); // [1, M]
    const ab = tf.matMul(a, tf.transpose(b)); // [N, M]; no transpose flag: the fast matMul on wasm
    return tf.relu(tf.sub(tf.add(aa, bb), tf.mul(ab, tf.scalar(2)))) as tf.Tensor2D;
  });
}

/**
 * The linear kernel k(x, y) = x·y.
 *
 * With KLSH on centred data it reproduces SimHash.
 */
export function linearKernel(): Kernel {
  return {
    name: 'linear',
    params: {},
    matrix(a, b) {
      checkPair('linearKernel', a, b);
      return tf.tidy(() => tf.matMul(a, tf.transpose(b)));
    },
    pair: dot,
  };
}

/** Options of {@link rbfKernel}. */
export interface RBFKernelOptions {
  /** γ > 0 in exp(−γ‖x − y‖²). Default 1/D (see {@link medianGamma} for a data-driven choice). */
  gamma?: number;
}

/** The Gaussian RBF kernel k(x, y) = exp(−γ‖x − y‖²). */
export function rbfKernel(options: RBFKernelOptions = {}): Kernel {
  const gamma = options.gamma;
  if (gamma !== undefined) assertPositiveNumber('rbfKernel', 'gamma', gamma);
  const gammaFor = (dim: number): number => gamma ?? 1 / dim;
  const kernel: Kernel = {
    name: 'rbf',
    params: gamma === undefined ? {} : { gamma },
    matrix(a, b) {
      checkPair('rbfKernel', a, b);
      return tf.tidy(() => tf.exp(tf.mul(squaredDistances(a, b), tf.scalar(-gammaFor(a.shape[1])))) as tf.Tensor2D);
    },
    pair(x, xOffset, y, yOffset, dim) {
      let sum = 0;
      for (let i = 0; i < dim; i++) sum += (x[xOffset + i] - y[yOffset + i]) ** 2;
      return Math.exp(-gammaFor(dim) * sum);
    },
  };
  RBF_GAMMAS.set(kernel, { gammaFor, pair: kernel.pair as PairFunction });
  return kernel;
}

/** The γ of kernels made by {@link rbfKernel} (as made: a copied or edited object is not listed). */
const RBF_GAMMAS = new WeakMap<Kernel, { gammaFor: (dim: number) => number; pair: PairFunction }>();

/**
 * γ(D) of a kernel made by {@link rbfKernel} and not altered since, so its
 * `pair` may be computed as exp(−γ·‖x − y‖²) elsewhere; undefined otherwise.
 */
export function builtInRbfGamma(kernel: Kernel): ((dim: number) => number) | undefined {
  const made = RBF_GAMMAS.get(kernel);
  return made !== undefined && kernel.pair === made.pair ? made.gammaFor : undefined;
}

/** Options of {@link chiSquaredKernel}. */
export interface ChiSquaredKernelOptions {
  /** γ > 0 in exp(−γ Σ (x_i − y_i)² / (x_i + y_i)). Default 1. */
  gamma?: number;
}

/**
 * The exponential χ² kernel for histograms (non-negative vectors):
 * k(x, y) = exp(−γ Σ_i (x_i − y_i)² / (x_i + y_i)), terms with
 * x_i + y_i = 0 counting 0. The matrix is built in chunks of rows so the
 * [n, M, D] intermediate stays under {@link CHI2_CHUNK_ELEMENTS}.
 */
export function chiSquaredKernel(options: ChiSquaredKernelOptions = {}): Kernel {
  const gamma = options.gamma ?? 1;
  assertPositiveNumber('chiSquaredKernel', 'gamma', gamma);
  const who = 'chiSquaredKernel';
  return {
    name: 'chi2',
    params: { gamma },
    matrix(a, b) {
      checkPair(who, a, b);
      const [n, dim] = a.shape;
      const m = b.shape[0];
      const aValues = a.dataSync() as Float32Array;
      assertNonNegative(who, 'a', aValues);
      assertNonNegative(who, 'b', b.dataSync() as Float32Array);
      const rowsPerChunk = Math.max(1, Math.floor(CHI2_CHUNK_ELEMENTS / Math.max(1, m * dim)));
      const out = new Float32Array(n * m);
      const b3 = tf.reshape(b, [1, m, dim]);
      try {
        // Rows come from JavaScript: tf.slice of a big tensor copies it whole on wasm.
        for (let start = 0; start < n; start += rowsPerChunk) {
          const rows = Math.min(rowsPerChunk, n - start);
          const chunk = tf.tidy(() => {
            const aChunk = tf.tensor3d(aValues.subarray(start * dim, (start + rows) * dim), [rows, 1, dim]);
            const terms = tf.divNoNan(tf.squaredDifference(aChunk, b3), tf.add(aChunk, b3)); // [rows, M, D]
            return tf.exp(tf.mul(tf.sum(terms, 2), tf.scalar(-gamma)));
          });
          out.set(chunk.dataSync() as Float32Array, start * m);
          chunk.dispose();
        }
      } finally {
        b3.dispose();
      }
      return tf.tensor2d(out, [n, m], 'float32');
    },
    pair(x, xOffset, y, yOffset, dim) {
      let sum = 0;
      for (let i = 0; i < dim; i++) {
        const a = x[xOffset + i];
        const b = y[yOffset + i];
        if (a < 0 || b < 0) return NaN; // not a histogram: the caller reports the non-finite value
        if (a + b > 0) sum += (a - b) ** 2 / (a + b);
      }
      return Math.exp(-gamma * sum);
    },
  };
}

/** Options of {@link customKernel}. */
export interface CustomKernelOptions {
  /** The name saved with an index; pass the function under this name when loading. Default 'custom'. */
  name?: string;
  /** Parameters saved with the name (for your own bookkeeping). Default {}. */
  params?: Record<string, number>;
  /** The kernel on one pair of rows in JavaScript (see {@link Kernel.pair}). Default: none (re-ranking calls fn once per query). */
  pair?: PairFunction;
}

/**
 * Wraps any function of two batches as a kernel. The function must return
 * float32 [N, M]; shapes and dtype are checked on every call. It need not be
 * positive definite: KLSH drops the negative part of its spectrum.
 */
export function customKernel(fn: KernelFunction, options: CustomKernelOptions = {}): Kernel {
  if (typeof fn !== 'function') {
    throw new Error(`customKernel: fn must be a function (a [N, D], b [M, D]) → [N, M], got ${describeValue(fn)}`);
  }
  const name = options.name ?? 'custom';
  if (typeof name !== 'string' || name === '') {
    throw new Error(`customKernel: name must be a non-empty string, got ${describeValue(name)}`);
  }
  const who = `kernel '${name}'`;
  const kernel: Kernel = {
    name,
    params: { ...(options.params ?? {}) },
    matrix(a, b) {
      checkPair(who, a, b);
      const out: unknown = fn(a, b);
      if (!(out instanceof tf.Tensor) || out.rank !== 2 || out.shape[0] !== a.shape[0] || out.shape[1] !== b.shape[0]) {
        const got = out instanceof tf.Tensor ? shapeString(out.shape) : describeValue(out);
        throw new Error(
          `${who}: the kernel function must return a tensor [N, M] = [${a.shape[0]}, ${b.shape[0]}] for a ${shapeString(a.shape)} ` +
            `and b ${shapeString(b.shape)}, got ${got}`,
        );
      }
      if (out.dtype !== 'float32') {
        throw new Error(`${who}: the kernel function must return float32, got ${out.dtype}; end it with tf.cast(…, 'float32')`);
      }
      return out as tf.Tensor2D;
    },
  };
  if (options.pair !== undefined) {
    if (typeof options.pair !== 'function') {
      throw new Error(`${who}: pair must be a function (x, xOffset, y, yOffset, dim) → number, got ${describeValue(options.pair)}`);
    }
    return { ...kernel, pair: options.pair };
  }
  return kernel;
}

/** A kernel as JSON (its name and parameters). */
export function kernelToJSON(kernel: Kernel): KernelJSON {
  return { name: kernel.name, params: { ...kernel.params } };
}

/** The parameters each built-in kernel takes. */
const BUILT_IN_PARAMS: Readonly<Record<string, readonly string[]>> = { linear: [], rbf: ['gamma'], chi2: ['gamma'] };

/**
 * Rebuilds a kernel from JSON: built-in names directly, others from
 * `custom[name]`.
 * @throws when the JSON is malformed (name, params), a built-in kernel's
 *   parameters are unknown or out of range, or a custom kernel is not supplied.
 */
export function kernelFromJSON(
  json: KernelJSON,
  custom: Readonly<Record<string, Kernel | KernelFunction>> = {},
): Kernel {
  return loadKernel('kernelFromJSON', 'kernel', json, custom);
}

/**
 * {@link kernelFromJSON} for a loader: `who` and `what` (the field, e.g.
 * 'family.kernel') name the place in errors.
 */
export function loadKernel(
  who: string,
  what: string,
  json: unknown,
  custom: Readonly<Record<string, Kernel | KernelFunction>> | undefined = {},
): Kernel {
  if (custom === null || typeof custom !== 'object') {
    throw new Error(`${who}: kernels must be an object { name: kernel }, got ${describeValue(custom)}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${who}: ${what} must be a saved kernel { name, params }, got ${describeValue(json)}`);
  }
  const { name, params = {} } = json as { name?: unknown; params?: unknown };
  if (typeof name !== 'string' || name === '') {
    throw new Error(`${who}: ${what}.name must be a non-empty string, got ${describeValue(name)}`);
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new Error(`${who}: ${what}.params must be an object of numbers, got ${describeValue(params)}`);
  }
  for (const [key, value] of Object.entries(params)) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new Error(`${who}: ${what}.params.${key} must be a finite number, got ${describeValue(value)}`);
    }
  }
  const numbers = params as Record<string, number>;
  // Own properties only: a kernel saved as 'constructor' must not find Object.prototype.constructor.
  const supplied = Object.hasOwn(custom, name) ? custom[name] : undefined;
  if (supplied !== undefined) {
    if (typeof supplied === 'function') return customKernel(supplied, { name, params: numbers });
    const kernel = supplied as Partial<Kernel> | null;
    if (kernel === null || typeof kernel !== 'object' || typeof kernel.matrix !== 'function' || typeof kernel.name !== 'string') {
      throw new Error(`${who}: kernels['${name}'] must be a Kernel (e.g. customKernel(fn)) or a kernel function, got ${describeValue(supplied)}`);
    }
    return supplied;
  }
  const allowed = Object.hasOwn(BUILT_IN_PARAMS, name) ? BUILT_IN_PARAMS[name] : undefined;
  if (allowed === undefined) {
    throw new Error(
      `${who}: kernel '${name}' is not built in (linear, rbf, chi2); pass it when loading, ` +
        `e.g. { kernels: { '${name}': yourKernelFunction } }`,
    );
  }
  for (const key of Object.keys(numbers)) {
    if (!allowed.includes(key)) {
      const takes = allowed.length === 0 ? 'no parameters' : `only ${allowed.join(', ')}`;
      throw new Error(`${who}: ${what}: kernel '${name}' takes ${takes}, got params.${key}; the saved JSON is edited`);
    }
  }
  const where = `${who} (${what}.params)`;
  switch (name) {
    case 'linear':
      return linearKernel();
    case 'rbf':
      if (numbers.gamma !== undefined) assertPositiveNumber(where, 'gamma', numbers.gamma);
      return rbfKernel(numbers.gamma === undefined ? {} : { gamma: numbers.gamma });
    default:
      if (numbers.gamma !== undefined) assertPositiveNumber(where, 'gamma', numbers.gamma);
      return chiSquaredKernel(numbers.gamma === undefined ? {} : { gamma: numbers.gamma });
  }
}

/**
 * Cosine similarities x·y / (‖x‖‖y‖) between two batches (0 for a zero vector).
 * @param a float32 [N, D].
 * @param b float32 [M, D].
 * @returns float32 [N, M].
 */
export function cosineMatrix(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  checkPair('cosineMatrix', a, b);
  return tf.tidy(() => tf.matMul(unitRows(a), tf.transpose(unitRows(b))));
}

/** x·y of one pair of rows in JavaScript (four accumulators; float64 sums). */
export function dot(x: Float32Array, xOffset: number, y: Float32Array, yOffset: number, dim: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < dim; i += 4) {
    s0 += x[xOffset + i] * y[yOffset + i];
    s1 += x[xOffset + i + 1] * y[yOffset + i + 1];
    s2 += x[xOffset + i + 2] * y[yOffset + i + 2];
    s3 += x[xOffset + i + 3] * y[yOffset + i + 3];
  }
  for (; i < dim; i++) s0 += x[xOffset + i] * y[yOffset + i];
  return s0 + s1 + s2 + s3;
}

/** Rows scaled to unit length (zero rows stay zero). [N, D] → [N, D]. */
export function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.div(x, tf.maximum(tf.norm(x, 'euclidean', 1, true), tf.scalar(NORM_FLOOR))) as tf.Tensor2D;
}

/**
 * Similarity matrix for a {@link Similarity}.
 * @param a float32 [N, D].
 * @param b float32 [M, D].
 * @returns float32 [N, M].
 */
export function similarityMatrix(a: tf.Tensor2D, b: tf.Tensor2D, similarity: Similarity): tf.Tensor2D {
  return similarity === 'cosine' ? cosineMatrix(a, b) : similarity.matrix(a, b);
}

/** Checks a {@link Similarity} argument. */
export function checkSimilarity(who: string, similarity: unknown): asserts similarity is Similarity {
  if (similarity === 'cosine') return;
  if (
    similarity === null ||
    typeof similarity !== 'object' ||
    typeof (similarity as Kernel).matrix !== 'function' ||
    typeof (similarity as Kernel).name !== 'string'
  ) {
    throw new Error(
      `${who}: similarity must be 'cosine' or a Kernel (rbfKernel(), chiSquaredKernel(), customKernel(fn), …), got ${describeValue(similarity)}`,
    );
  }
}

/** Options of {@link medianGamma}. */
export interface MedianGammaOptions {
  /** Which distance γ scales: squared Euclidean ('rbf') or χ² ('chi2'). Default 'rbf'. */
  kernel?: 'rbf' | 'chi2';
  /** Random pairs the median is taken over. Default 2000. */
  pairs?: number;
  /** Seed of the pair sample. Default 0. */
  seed?: Seed;
}

/**
 * The median heuristic: γ = 1 / median distance over random pairs of rows,
 * so a typical pair has kernel value e^(−1).
 * @param data float32 [N, D], N ≥ 2.
 */
export function medianGamma(data: tf.Tensor2D, options: MedianGammaOptions = {}): number {
  const who = 'medianGamma';
  checkVectors(who, 'data', data);
  const [n, dim] = data.shape;
  if (n < 2) throw new Error(`${who}: data must have at least 2 rows, got ${n}`);
  const kind = options.kernel ?? 'rbf';
  if (kind !== 'rbf' && kind !== 'chi2') throw new Error(`${who}: kernel must be 'rbf' or 'chi2', got ${describeValue(kind)}`);
  const pairs = options.pairs ?? 2000;
  assertPositiveInteger(who, 'pairs', pairs);
  const values = data.dataSync() as Float32Array;
  if (kind === 'chi2') assertNonNegative(who, 'data', values);
  const random = uniformStream(options.seed ?? 0);
  const distances: number[] = [];
  for (let p = 0; p < pairs; p++) {
    const i = Math.floor(random() * n);
    let j = Math.floor(random() * (n - 1));
    if (j >= i) j++;
    let d = 0;
    for (let c = 0; c < dim; c++) {
      const x = values[i * dim + c];
      const y = values[j * dim + c];
      if (kind === 'rbf') d += (x - y) ** 2;
      else if (x + y > 0) d += (x - y) ** 2 / (x + y);
    }
    if (d > 0) distances.push(d);
  }
  if (distances.length === 0) {
    throw new Error(`${who}: all ${pairs} sampled pairs of rows are identical (distance 0); the data has no spread: pass varied data or choose gamma yourself`);
  }
  distances.sort((x, y) => x - y);
  return 1 / distances[Math.floor(distances.length / 2)];
}

function assertPositiveNumber(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new Error(`${who}: ${what} must be a finite number > 0, got ${describeValue(value)}`);
  }
}

function assertNonNegative(who: string, what: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    if (!(values[i] >= 0)) {
      throw new Error(
        `${who}: ${what} must be non-negative histograms (χ² is defined for them), got ${values[i]} at flat index ${i}; ` +
          'use rbfKernel for signed data',
      );
    }
  }
}
