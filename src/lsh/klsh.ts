/**
 * Kernelized LSH (Kulis & Grauman, ICCV 2009 / TPAMI 2012): random
 * hyperplanes built inside the feature space of any kernel from a sample of
 * the data.
 *
 * Fit: p distinct anchors x_1…x_p are sampled from the data; their kernel matrix K is
 * centred (K_c = HKH, H = I − 11ᵀ/p) and K_c^(-1/2) = U Θ^(-1/2) Uᵀ is taken
 * from a symmetric eigendecomposition (ml-matrix, in float64), eigenvalues
 * below `eigenvalueCutoff`·θ_max and negative ones treated as zero. Each bit
 * draws t of the p anchors, S, and weights w = K_c^(-1/2)·e_S.
 *
 * Hash: bit(x) = [Σ_i w_i·k_c(x, x_i) > 0], where
 * k_c(x, x_i) = k(x, x_i) − mean_j k(x, x_j) − mean_j k(x_j, x_i) + mean_jl k(x_j, x_l)
 * centres a query's kernel values exactly as the anchor matrix was centred.
 *
 * Legend: N vectors, D vector size, p anchors, t anchors per bit, L tables,
 * b bits per table.
 */
import * as tf from '@tensorflow/tfjs-core';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { assertSeed, uniformStream, type Seed, type Uniform } from '../random.js';
import { packSignBits } from '../hashing.js';
import { assertPositiveInteger, shapeString } from '../validate.js';
import {
  base64ToFloat32,
  describeValue,
  float32ToBase64,
  resolveSeed,
  sampleWithoutReplacement,
} from './encoding.js';
import {
  MAX_KEY_BITS,
  assertIntegerIn,
  assertSavedPositiveInteger,
  checkNotDisposed,
  checkSavedKind,
  checkSavedSeed,
  checkVectors,
  emptyRows,
  signDigitScores,
  type HashFamily,
  type KernelizedLSHJSON,
} from './family.js';
import {
  customKernel,
  kernelToJSON,
  loadKernel,
  rbfKernel,
  type Kernel,
  type KernelFunction,
} from './similarity.js';

/** Options of {@link KernelizedLSH.fit}. */
export interface KernelizedLSHOptions {
  /** The kernel, or a function [N, D] × [M, D] → [N, M]. Default rbfKernel() (γ = 1/D). */
  kernel?: Kernel | KernelFunction;
  /** b, bits per table key, 1 to 30. Default 16. */
  nBits?: number;
  /** L, tables. Default 1. */
  nTables?: number;
  /**
   * p, anchors sampled from the data to estimate the feature-space covariance:
   * distinct rows, so p ≤ the number of distinct rows of the data. Default 300.
   */
  nAnchors?: number;
  /** t, anchors summed per bit; t ≤ p. Default 30. */
  subsetSize?: number;
  /**
   * Relative cutoff: eigenvalues of the centred anchor kernel matrix below
   * cutoff·θ_max (and all negative ones) are treated as zero in K^(-1/2).
   * Default 1e-3.
   */
  eigenvalueCutoff?: number;
  /** Seed of the anchor sample and the per-bit subsets. Default: fresh entropy, recorded in `seed`. */
  seed?: Seed;
}

/** Options of {@link KernelizedLSH.fromJSON}. */
export interface KernelizedLSHLoadOptions {
  /** Custom kernels by the name they were saved under. Default {} (built-in kernels only). */
  kernels?: Readonly<Record<string, Kernel | KernelFunction>>;
}

/** Defaults of {@link KernelizedLSHOptions}. */
export const KLSH_DEFAULTS = {
  nBits: 16,
  nTables: 1,
  nAnchors: 300,
  subsetSize: 30,
  eigenvalueCutoff: 1e-3,
} as const;

/**
 * Relative rounding of the anchor kernel matrix: float32 values carry 2^-24
 * relative error each, so the centred matrix's eigenvalues are uncertain by
 * up to p · 2^-24 · max|K|; 2^-20 keeps a 16× margin. Eigenvalues below
 * p · KERNEL_ROUNDING · max|K| are rounding, not directions of the data.
 */
export const KERNEL_ROUNDING = 2 ** -20;

/** Rows hashed per kernel evaluation, so [N, p] kernel blocks stay bounded. */
export const KLSH_ROWS_PER_BLOCK = 16384;

interface KLSHState {
  kernel: Kernel;
  dim: number;
  nBits: number;
  nTables: number;
  nAnchors: number;
  subsetSize: number;
  eigenvalueCutoff: number;
  seed: Seed;
  rank: number;
  anchors: Float32Array;
  weights: Float32Array;
  anchorMeans: Float32Array;
  grandMean: number;
  bitScales: Float32Array;
}

/**
 * Kernelized LSH as a hash family. Build it with {@link KernelizedLSH.fit}.
 *
 * ```ts
 * const klsh = KernelizedLSH.fit(data, { kernel: rbfKernel({ gamma: medianGamma(data) }), nBits: 12, nTables: 8, seed: 1 });
 * const keys = klsh.hash(queries); // int32 [Q, 8]
 * ```
 */
export class KernelizedLSH implements HashFamily {
  readonly kind = 'klsh' as const;
  readonly kernel: Kernel;
  readonly dim: number;
  readonly nBits: number;
  readonly nTables: number;
  readonly nAnchors: number;
  readonly subsetSize: number;
  readonly eigenvalueCutoff: number;
  readonly seed: Seed;
  /** Eigenvalues kept in K^(-1/2) (at most p − 1: centring removes one direction). */
  readonly rank: number;
  /** float32 [p, D]: the anchor sample. */
  readonly anchors: tf.Tensor2D;
  /** float32 [p, L·b]: w = K_c^(-1/2)·e_S per bit. */
  readonly weights: tf.Tensor2D;
  /** float32 [1, p]: mean_j k(x_j, x_i), the anchors' column means. */
  readonly anchorMeans: tf.Tensor2D;
  /** Mean of the anchor kernel matrix. */
  readonly grandMean: number;
  /** float32 [L·b]: standard deviation of each bit's projection over the anchors (multi-probe scale). */
  readonly bitScales: tf.Tensor1D;

  private constructor(state: KLSHState) {
    this.kernel = state.kernel;
    this.dim = state.dim;
    this.nBits = state.nBits;
    this.nTables = state.nTables;
    this.nAnchors = state.nAnchors;
    this.subsetSize = state.subsetSize;
    this.eigenvalueCutoff = state.eigenvalueCutoff;
    this.seed = state.seed;
    this.rank = state.rank;
    this.grandMean = state.grandMean;
    this.anchors = tf.tensor2d(state.anchors, [state.nAnchors, state.dim], 'float32');
    this.weights = tf.tensor2d(state.weights, [state.nAnchors, state.nTables * state.nBits], 'float32');
    this.anchorMeans = tf.tensor2d(state.anchorMeans, [1, state.nAnchors], 'float32');
    this.bitScales = tf.tensor1d(state.bitScales, 'float32');
  }

  /**
   * Samples p distinct anchors from `data` and builds the hash functions.
   * @param data float32 [N, D] with at least p distinct rows: the data (or a
   *   representative sample of it).
   * @throws on bad options; p > N; data with fewer than p distinct rows (all
   *   rows identical included: lower nAnchors or pass more varied data); t > p;
   *   a kernel returning non-finite values; or a kernel that sees all anchors
   *   as one point (no eigenvalue of the centred anchor kernel matrix above
   *   float32 rounding, {@link KERNEL_ROUNDING}: check its parameters).
   */
  static fit(data: tf.Tensor2D, options: KernelizedLSHOptions = {}): KernelizedLSH {
    const who = 'KernelizedLSH.fit';
    checkVectors(who, 'data', data);
    if (options === null || typeof options !== 'object') {
      throw new Error(`${who}: options must be an object, got ${describeValue(options)}`);
    }
    const [n, dim] = data.shape;
    const kernel = resolveKernel(who, options.kernel);
    const nBits = options.nBits ?? KLSH_DEFAULTS.nBits;
    assertIntegerIn(who, 'nBits', nBits, 1, MAX_KEY_BITS);
    const nTables = options.nTables ?? KLSH_DEFAULTS.nTables;
    assertPositiveInteger(who, 'nTables', nTables);
    const nAnchors = options.nAnchors ?? KLSH_DEFAULTS.nAnchors;
    assertPositiveInteger(who, 'nAnchors', nAnchors);
    if (nAnchors < 2) throw new Error(`${who}: nAnchors must be at least 2 (centring needs two points), got ${nAnchors}`);
    if (nAnchors > n) {
      throw new Error(
        `${who}: nAnchors (p = ${nAnchors}) must be at most the number of data rows, got data ${shapeString(data.shape)}; ` +
          `pass nAnchors ≤ ${n} or more data`,
      );
    }
    const subsetSize = options.subsetSize ?? Math.min(KLSH_DEFAULTS.subsetSize, nAnchors);
    assertPositiveInteger(who, 'subsetSize', subsetSize);
    if (subsetSize > nAnchors) {
      throw new Error(`${who}: subsetSize (t) must be at most nAnchors (p = ${nAnchors}), got t = ${subsetSize}; lower t or raise p`);
    }
    const cutoff = options.eigenvalueCutoff ?? KLSH_DEFAULTS.eigenvalueCutoff;
    if (typeof cutoff !== 'number' || !(cutoff > 0 && cutoff < 1)) {
      throw new Error(`${who}: eigenvalueCutoff must be a number in (0, 1), got ${describeValue(cutoff)}`);
    }
    assertSeed(who, options.seed);
    const seed = resolveSeed(options.seed);
    const random = uniformStream(seed);

    const anchorValues = sampleDistinctRows(who, data, nAnchors, random);
    const anchors = tf.tensor2d(anchorValues, [nAnchors, dim], 'float32');
    let gram: Float64Array;
    try {
      gram = anchorGram(who, kernel, anchors);
    } finally {
      anchors.dispose();
    }
    const { centred, means, grandMean } = centre(gram, nAnchors);

    // K_c = U Θ Uᵀ; keep θ > cutoff·θ_max.
    const evd = new EigenvalueDecomposition(Matrix.from1DArray(nAnchors, nAnchors, Array.from(centred)), {
      assumeSymmetric: true,
    });
    const eigenvalues = evd.realEigenvalues;
    const vectors = evd.eigenvectorMatrix;
    const largest = Math.max(...eigenvalues);
    let gramScale = 0;
    for (let i = 0; i < gram.length; i++) gramScale = Math.max(gramScale, Math.abs(gram[i]));
    const rounding = nAnchors * KERNEL_ROUNDING * gramScale;
    if (!(largest > rounding) || !Number.isFinite(largest)) {
      throw new Error(
        `${who}: the centred anchor kernel matrix has no positive eigenvalue above float32 rounding ` +
          `(largest ${largest.toExponential(2)}, rounding ${rounding.toExponential(2)}); ` +
          `the kernel '${kernel.name}' sees all ${nAnchors} anchors as the same point: check its parameters (e.g. gamma) or the data`,
      );
    }
    // Directions below the rounding level would be amplified noise in K^(-1/2).
    const keep = Math.max(cutoff * largest, rounding);
    const kept: number[] = [];
    for (let e = 0; e < eigenvalues.length; e++) if (eigenvalues[e] > keep) kept.push(e);
    const rank = kept.length;
    const u = new Float64Array(nAnchors * rank); // [p, rank]
    const invSqrt = new Float64Array(rank);
    kept.forEach((e, r) => {
      invSqrt[r] = 1 / Math.sqrt(eigenvalues[e]);
      for (let i = 0; i < nAnchors; i++) u[i * rank + r] = vectors.get(i, e);
    });

    // w = U Θ^(-1/2) Uᵀ e_S for each of the L·b bits.
    const columns = nTables * nBits;
    const weights64 = new Float64Array(nAnchors * columns); // [p, L·b]
    const coefficients = new Float64Array(rank);
    for (let c = 0; c < columns; c++) {
      const subset = sampleWithoutReplacement(nAnchors, subsetSize, random);
      coefficients.fill(0);
      for (const i of subset) for (let r = 0; r < rank; r++) coefficients[r] += u[i * rank + r];
      for (let r = 0; r < rank; r++) coefficients[r] *= invSqrt[r];
      for (let i = 0; i < nAnchors; i++) {
        let w = 0;
        for (let r = 0; r < rank; r++) w += u[i * rank + r] * coefficients[r];
        weights64[i * columns + c] = w;
      }
    }
    const weights = Float32Array.from(weights64);
    const projections = multiply(centred, nAnchors, nAnchors, Float64Array.from(weights), columns);
    const bitScales = new Float32Array(columns);
    for (let c = 0; c < columns; c++) {
      let mean = 0;
      for (let i = 0; i < nAnchors; i++) mean += projections[i * columns + c];
      mean /= nAnchors;
      let variance = 0;
      for (let i = 0; i < nAnchors; i++) variance += (projections[i * columns + c] - mean) ** 2;
      const std = Math.sqrt(variance / nAnchors);
      bitScales[c] = std > 0 && Number.isFinite(std) ? std : 1;
    }
    return new KernelizedLSH({
      kernel,
      dim,
      nBits,
      nTables,
      nAnchors,
      subsetSize,
      eigenvalueCutoff: cutoff,
      seed,
      rank,
      anchors: anchorValues,
      weights,
      anchorMeans: Float32Array.from(means),
      grandMean,
      bitScales,
    });
  }

  /** M = b. */
  get digitsPerKey(): number {
    return this.nBits;
  }

  /** A = 2. */
  get digitBase(): number {
    return 2;
  }

  /** b. */
  get keyBits(): number {
    return this.nBits;
  }

  /**
   * Kernel values to the anchors, centred as the anchor matrix was.
   * @param x float32 [N, D].
   * @returns float32 [N, p].
   * @throws when the kernel returns NaN or ±Infinity.
   */
  centredKernel(x: tf.Tensor2D): tf.Tensor2D {
    const who = 'KernelizedLSH.centredKernel';
    checkVectors(who, 'x', x, this.dim);
    checkNotDisposed(who, 'KernelizedLSH', this.weights);
    const k = this.kernel.matrix(x, this.anchors);
    try {
      assertFinite(who, this.kernel, k);
      return tf.tidy(() => {
        const rowMeans = tf.mean(k, 1, true); // [N, 1]
        return tf.add(tf.sub(tf.sub(k, rowMeans), this.anchorMeans), tf.scalar(this.grandMean)) as tf.Tensor2D;
      });
    } finally {
      k.dispose();
    }
  }

  /**
   * Σ_i w_i·k_c(x, x_i) for every bit: the query path.
   * @param x float32 [N, D].
   * @returns float32 [N, L·b].
   */
  project(x: tf.Tensor2D): tf.Tensor2D {
    checkVectors('KernelizedLSH.project', 'x', x, this.dim);
    checkNotDisposed('KernelizedLSH.project', 'KernelizedLSH', this.weights);
    const n = x.shape[0];
    const columns = this.nTables * this.nBits;
    if (n === 0) return emptyRows([0, columns], 'float32');
    if (n <= KLSH_ROWS_PER_BLOCK) return this.projectBlock(x);
    const blocks: tf.Tensor2D[] = [];
    try {
      for (let start = 0; start < n; start += KLSH_ROWS_PER_BLOCK) {
        const rows = Math.min(KLSH_ROWS_PER_BLOCK, n - start);
        const block = tf.slice(x, [start, 0], [rows, this.dim]);
        try {
          blocks.push(this.projectBlock(block));
        } finally {
          block.dispose();
        }
      }
      return tf.concat(blocks, 0);
    } finally {
      blocks.forEach((b) => b.dispose());
    }
  }

  private projectBlock(x: tf.Tensor2D): tf.Tensor2D {
    const centred = this.centredKernel(x);
    try {
      return tf.matMul(centred, this.weights);
    } finally {
      centred.dispose();
    }
  }

  /**
   * The anchors' projections through the table path: rows of the centred
   * anchor kernel matrix K_c (float64) times the weights. An anchor hashed
   * with {@link project} gives the same values up to float32 rounding.
   * @returns float32 [p, L·b].
   */
  anchorProjections(): tf.Tensor2D {
    checkNotDisposed('KernelizedLSH.anchorProjections', 'KernelizedLSH', this.weights);
    const gram = anchorGram('KernelizedLSH.anchorProjections', this.kernel, this.anchors);
    const { centred } = centre(gram, this.nAnchors);
    const columns = this.nTables * this.nBits;
    const weights = Float64Array.from(this.weights.dataSync());
    const out = multiply(centred, this.nAnchors, this.nAnchors, weights, columns);
    return tf.tensor2d(Float32Array.from(out), [this.nAnchors, columns], 'float32');
  }

  /**
   * The bits: 1 where the projection is > 0.
   * @param x float32 [N, D].
   * @returns int32 [N, L, b].
   */
  bits(x: tf.Tensor2D): tf.Tensor3D {
    checkVectors('KernelizedLSH.bits', 'x', x, this.dim);
    checkNotDisposed('KernelizedLSH.bits', 'KernelizedLSH', this.weights);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables, this.nBits], 'int32');
    const projections = this.project(x);
    try {
      return tf.tidy(() => packSignBits(projections, this.nTables, this.nBits).bits);
    } finally {
      projections.dispose();
    }
  }

  /**
   * Each table's b bits packed into one key, Σ_j bit_j · 2^j.
   * @param x float32 [N, D].
   * @returns int32 [N, L], each in [0, 2^b).
   */
  hash(x: tf.Tensor2D): tf.Tensor2D {
    checkVectors('KernelizedLSH.hash', 'x', x, this.dim);
    checkNotDisposed('KernelizedLSH.hash', 'KernelizedLSH', this.weights);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables], 'int32');
    const projections = this.project(x);
    try {
      return tf.tidy(() => packSignBits(projections, this.nTables, this.nBits).keys);
    } finally {
      projections.dispose();
    }
  }

  /**
   * Multi-probe scores: [−z, z] per bit, z the projection in units of that
   * bit's standard deviation over the anchors.
   * @param x float32 [N, D].
   * @returns float32 [N, L, b, 2].
   */
  digitScores(x: tf.Tensor2D): tf.Tensor4D {
    checkVectors('KernelizedLSH.digitScores', 'x', x, this.dim);
    checkNotDisposed('KernelizedLSH.digitScores', 'KernelizedLSH', this.weights);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables, this.nBits, 2], 'float32');
    const projections = this.project(x);
    try {
      return tf.tidy(() =>
        signDigitScores(tf.div(projections, this.bitScales) as tf.Tensor2D, this.nTables, this.nBits),
      );
    } finally {
      projections.dispose();
    }
  }

  /** Settings, seed, kernel and fitted arrays (base64 float32). */
  toJSON(): KernelizedLSHJSON {
    checkNotDisposed('KernelizedLSH.toJSON', 'KernelizedLSH', this.weights);
    return {
      kind: 'klsh',
      dim: this.dim,
      nBits: this.nBits,
      nTables: this.nTables,
      nAnchors: this.nAnchors,
      subsetSize: this.subsetSize,
      eigenvalueCutoff: this.eigenvalueCutoff,
      seed: this.seed,
      kernel: kernelToJSON(this.kernel),
      rank: this.rank,
      anchors: float32ToBase64(this.anchors.dataSync() as Float32Array),
      weights: float32ToBase64(this.weights.dataSync() as Float32Array),
      anchorMeans: float32ToBase64(this.anchorMeans.dataSync() as Float32Array),
      grandMean: this.grandMean,
      bitScales: float32ToBase64(this.bitScales.dataSync() as Float32Array),
    };
  }

  /**
   * Rebuilds a saved KernelizedLSH from its arrays (no refit, so it hashes
   * exactly as before).
   * @throws naming the field when one is missing, of the wrong type, out of
   *   range, an array of the wrong length or with non-finite values.
   */
  static fromJSON(json: KernelizedLSHJSON, options: KernelizedLSHLoadOptions = {}): KernelizedLSH {
    const who = 'KernelizedLSH.fromJSON';
    checkSavedKind(who, json, 'klsh', 'KernelizedLSH');
    if (options === null || typeof options !== 'object') {
      throw new Error(`${who}: options must be an object like { kernels: { name: fn } }, got ${describeValue(options)}`);
    }
    assertSavedPositiveInteger(who, 'dim', json.dim);
    assertIntegerIn(who, 'nBits', json.nBits, 1, MAX_KEY_BITS);
    assertSavedPositiveInteger(who, 'nTables', json.nTables);
    assertSavedPositiveInteger(who, 'nAnchors', json.nAnchors);
    if (json.nAnchors < 2) throw new Error(`${who}: nAnchors must be at least 2 (centring needs two points), got ${json.nAnchors}`);
    assertIntegerIn(who, 'subsetSize', json.subsetSize, 1, json.nAnchors);
    assertIntegerIn(who, 'rank', json.rank, 1, json.nAnchors);
    if (typeof json.eigenvalueCutoff !== 'number' || !(json.eigenvalueCutoff > 0 && json.eigenvalueCutoff < 1)) {
      throw new Error(`${who}: eigenvalueCutoff must be a number in (0, 1), got ${describeValue(json.eigenvalueCutoff)}`);
    }
    checkSavedSeed(who, json.seed);
    if (typeof json.grandMean !== 'number' || !Number.isFinite(json.grandMean)) {
      throw new Error(`${who}: grandMean must be a finite number (the mean of the anchor kernel matrix), got ${describeValue(json.grandMean)}`);
    }
    const { nAnchors: p, dim } = json;
    const columns = json.nTables * json.nBits;
    const array = (what: keyof KernelizedLSHJSON, shape: string, length: number): Float32Array => {
      const values = base64ToFloat32(who, what, json[what], length, shape);
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new Error(`${who}: ${what} must hold finite numbers, got ${values[bad]} at ${bad}; the saved JSON is corrupted`);
      return values;
    };
    const anchors = array('anchors', `[p, D] = [${p}, ${dim}]`, p * dim);
    const weights = array('weights', `[p, L·b] = [${p}, ${columns}]`, p * columns);
    const anchorMeans = array('anchorMeans', `[p] = [${p}]`, p);
    const bitScales = array('bitScales', `[L·b] = [${columns}]`, columns);
    const badScale = bitScales.findIndex((v) => !(v > 0));
    if (badScale >= 0) {
      throw new Error(`${who}: bitScales must be positive (standard deviations), got ${bitScales[badScale]} at ${badScale}; the saved JSON is corrupted`);
    }
    return new KernelizedLSH({
      kernel: loadKernel(who, 'kernel', json.kernel, options.kernels),
      dim,
      nBits: json.nBits,
      nTables: json.nTables,
      nAnchors: p,
      subsetSize: json.subsetSize,
      eigenvalueCutoff: json.eigenvalueCutoff,
      seed: json.seed,
      rank: json.rank,
      anchors,
      weights,
      anchorMeans,
      grandMean: json.grandMean,
      bitScales,
    });
  }

  /** Frees the anchors, weights and centring tensors. */
  dispose(): void {
    this.anchors.dispose();
    this.weights.dispose();
    this.anchorMeans.dispose();
    this.bitScales.dispose();
  }
}

function resolveKernel(who: string, kernel: Kernel | KernelFunction | undefined): Kernel {
  if (kernel === undefined) return rbfKernel();
  if (typeof kernel === 'function') return customKernel(kernel);
  if (kernel === null || typeof kernel !== 'object' || typeof kernel.matrix !== 'function') {
    throw new Error(
      `${who}: kernel must be a Kernel (linearKernel(), rbfKernel(), chiSquaredKernel(), customKernel(fn)) or a function, got ${describeValue(kernel)}`,
    );
  }
  return kernel;
}

/** Rows gathered per batch once the first p draws held repeated rows. */
const DISTINCT_BATCH = 256;

/**
 * `count` distinct rows of `data` (as row-major values), drawn as
 * {@link sampleWithoutReplacement} draws, rows equal to one already taken
 * skipped: data without repeated rows gets exactly the rows that sampler
 * picks. Only the drawn rows are read back, in batches.
 * @throws when the data has fewer than `count` distinct rows.
 */
function sampleDistinctRows(who: string, data: tf.Tensor2D, count: number, random: Uniform): Float32Array {
  const [n, dim] = data.shape;
  const pool = new Int32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  const seen = new Set<string>();
  const out = new Float32Array(count * dim);
  let found = 0;
  let drawn = 0;
  while (found < count && drawn < n) {
    const batch = drawn === 0 ? count : Math.min(n - drawn, Math.max(count - found, DISTINCT_BATCH));
    const picked = new Int32Array(batch);
    for (let b = 0; b < batch; b++, drawn++) {
      const j = drawn + Math.floor(random() * (n - drawn));
      picked[b] = pool[j];
      pool[j] = pool[drawn];
      pool[drawn] = picked[b];
    }
    const rows = tf.tidy(() => tf.gather(data, tf.tensor1d(picked, 'int32')));
    const values = rows.dataSync() as Float32Array;
    rows.dispose();
    for (let b = 0; b < batch && found < count; b++) {
      const row = values.subarray(b * dim, (b + 1) * dim);
      const key = row.join(',');
      if (seen.has(key)) continue;
      seen.add(key);
      out.set(row, found * dim);
      found++;
    }
  }
  if (found < count) {
    const distinct = seen.size;
    throw new Error(
      distinct === 1
        ? `${who}: all ${n} rows of data are identical; kernelized LSH needs at least 2 distinct rows (and nAnchors of them): pass varied data`
        : `${who}: data has only ${distinct} distinct rows, fewer than nAnchors (p = ${count}); ` +
            `pass nAnchors ≤ ${distinct} or more varied data`,
    );
  }
  return out;
}

/** The anchors' kernel matrix in float64, checked finite and symmetrised. */
function anchorGram(who: string, kernel: Kernel, anchors: tf.Tensor2D): Float64Array {
  const p = anchors.shape[0];
  const k = kernel.matrix(anchors, anchors);
  let values: Float32Array;
  try {
    if (k.rank !== 2 || k.shape[0] !== p || k.shape[1] !== p) {
      throw new Error(`${who}: kernel '${kernel.name}' must return [p, p] = [${p}, ${p}] on the anchors, got ${shapeString(k.shape)}`);
    }
    values = k.dataSync() as Float32Array;
  } finally {
    k.dispose();
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new Error(
        `${who}: kernel '${kernel.name}' returned a non-finite value (${values[i]}) on the anchors at ` +
          `[${Math.floor(i / p)}, ${i % p}]; fix the kernel (or its parameters) so it is finite on the data`,
      );
    }
  }
  const gram = new Float64Array(p * p);
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < p; j++) gram[i * p + j] = 0.5 * (values[i * p + j] + values[j * p + i]);
  }
  return gram;
}

/** K_c = HKH with the column means and grand mean it subtracted. */
function centre(gram: Float64Array, p: number): { centred: Float64Array; means: Float64Array; grandMean: number } {
  const means = new Float64Array(p);
  for (let i = 0; i < p; i++) for (let j = 0; j < p; j++) means[j] += gram[i * p + j] / p;
  let grandMean = 0;
  for (let j = 0; j < p; j++) grandMean += means[j] / p;
  const centred = new Float64Array(p * p);
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < p; j++) centred[i * p + j] = gram[i * p + j] - means[i] - means[j] + grandMean;
  }
  return { centred, means, grandMean };
}

/** [rows, inner] · [inner, cols] in float64. */
function multiply(a: Float64Array, rows: number, inner: number, b: Float64Array, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let k = 0; k < inner; k++) {
      const aik = a[i * inner + k];
      if (aik === 0) continue;
      for (let j = 0; j < cols; j++) out[i * cols + j] += aik * b[k * cols + j];
    }
  }
  return out;
}

/** Throws when a kernel block holds NaN or ±Infinity (one scalar read back). */
function assertFinite(who: string, kernel: Kernel, k: tf.Tensor2D): void {
  const bad = tf.tidy(() => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(k)), 'int32')));
  const count = bad.dataSync()[0];
  bad.dispose();
  if (count > 0) {
    throw new Error(
      `${who}: kernel '${kernel.name}' returned ${count} non-finite value(s) (NaN or ±Infinity) for these inputs; ` +
        'check the inputs (e.g. negative values for χ²) or the kernel function',
    );
  }
}
