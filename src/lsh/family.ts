/**
 * What every hash family gives an {@link LSHIndex}, and the checks they share.
 *
 * Legend (hashing library): N vectors, D vector size, L tables, b bits per
 * key, M digits per key, A values per digit, p anchors, Q queries, k
 * neighbours. A table's key is M digits in base A, key = Σ_j digit_j · A^j:
 * SimHash and KLSH keys are b bits (M = b, A = 2); a rotation-hash key is m
 * cross-polytope buckets (M = m, A = K).
 */
import * as tf from '@tensorflow/tfjs-core';
import { MAX_SEED, assertSeed, type Seed } from '../random.js';
import { assertRank, shapeString } from '../validate.js';
import { describeValue } from './encoding.js';
import type { KernelJSON } from './similarity.js';

/** The hash families of this library. */
export type FamilyKind = 'simhash' | 'rotation' | 'klsh';

/** Largest key width: keys are int32 tensors and JavaScript integers. */
export const MAX_KEY_BITS = 30;

/**
 * A family of L hash functions (one per table) over D-dimensional vectors,
 * batched over tensors. Implemented by {@link SimHash}, {@link RotationHash}
 * and {@link KernelizedLSH}.
 */
export interface HashFamily {
  /** Which family (for saving and loading). */
  readonly kind: FamilyKind;
  /** D, the size of the hashed vectors. */
  readonly dim: number;
  /** L, the number of tables (independent keys per vector). */
  readonly nTables: number;
  /** M, digits per key. */
  readonly digitsPerKey: number;
  /** A, values per digit (2 for sign bits, K for a rotation hash). */
  readonly digitBase: number;
  /** log2 of the number of possible keys per table (M · log2 A). */
  readonly keyBits: number;
  /** The seed everything random in the family was drawn from. */
  readonly seed: Seed;
  /**
   * Keys of the vectors in every table.
   * @param x float32 [N, D].
   * @returns int32 [N, L], each in [0, A^M).
   */
  hash(x: tf.Tensor2D): tf.Tensor2D;
  /**
   * Per-digit scores for multi-probe: a digit is the argmax of its A scores,
   * and the cost of moving it to another value a is (max − score_a)². Scores
   * are on one scale within a family, so costs compare across tables.
   * @param x float32 [N, D].
   * @returns float32 [N, L, M, A].
   */
  digitScores(x: tf.Tensor2D): tf.Tensor4D;
  /** The family as plain JSON (with its seed and any fitted arrays). */
  toJSON(): HashFamilyJSON;
  /** Frees the family's tensors. */
  dispose(): void;
}

/** Saved {@link SimHash}. */
export interface SimHashJSON {
  kind: 'simhash';
  dim: number;
  nBits: number;
  nTables: number;
  seed: Seed;
}

/** Saved {@link RotationHash}. */
export interface RotationHashJSON {
  kind: 'rotation';
  dim: number;
  nBuckets: number;
  hashesPerTable: number;
  nTables: number;
  seed: Seed;
}

/** Saved {@link KernelizedLSH}: its settings and fitted arrays (base64 float32, little-endian). */
export interface KernelizedLSHJSON {
  kind: 'klsh';
  dim: number;
  nBits: number;
  nTables: number;
  nAnchors: number;
  subsetSize: number;
  eigenvalueCutoff: number;
  seed: Seed;
  kernel: KernelJSON;
  /** Eigenvalues kept in K^(-1/2). */
  rank: number;
  /** [p, D] */
  anchors: string;
  /** [p, L·b] */
  weights: string;
  /** [p]: mean over anchors j of k(x_j, x_i). */
  anchorMeans: string;
  /** Mean of the anchor kernel matrix. */
  grandMean: number;
  /** [L·b]: standard deviation of each bit's projection over the anchors. */
  bitScales: string;
}

/** Any saved family. */
export type HashFamilyJSON = SimHashJSON | RotationHashJSON | KernelizedLSHJSON;

/**
 * Checks a batch of vectors: a float32 tensor of rank 2 with D columns.
 * @throws `${who}: ${what} must …, got …` with the fix.
 */
export function checkVectors(who: string, what: string, x: unknown, dim?: number): asserts x is tf.Tensor2D {
  if (!(x instanceof tf.Tensor)) {
    throw new Error(
      `${who}: ${what} must be a float32 tf.Tensor2D [N, D], got ${describeValue(x)}; wrap rows with tf.tensor2d(rows)`,
    );
  }
  if (x.isDisposed) {
    throw new Error(`${who}: ${what} was disposed before this call; keep it until the call returns (await it first)`);
  }
  assertRank(who, what, x, 2, '[N, D]');
  if (x.dtype !== 'float32') {
    throw new Error(`${who}: ${what} must be float32, got ${x.dtype}; cast it with tf.cast(x, 'float32')`);
  }
  if (dim !== undefined && x.shape[1] !== dim) {
    throw new Error(
      `${who}: ${what} must have D = ${dim} columns (the size the family was built for), got shape ${shapeString(x.shape)}`,
    );
  }
}

/**
 * Throws when a family's tensor was freed: a disposed family cannot hash.
 * @param family the family's name, e.g. 'SimHash'.
 */
export function checkNotDisposed(who: string, family: string, tensor: tf.Tensor): void {
  if (tensor.isDisposed) {
    throw new Error(`${who}: this ${family} was disposed (its tensors are freed); build or load a new one`);
  }
}

/**
 * Checks that a saved family is an object of the given kind.
 * @param who e.g. 'SimHash.fromJSON'.
 */
export function checkSavedKind(who: string, json: unknown, kind: FamilyKind, name: string): asserts json is Record<string, unknown> {
  if (json === null || typeof json !== 'object' || Array.isArray(json) || (json as { kind?: unknown }).kind !== kind) {
    const found = json !== null && typeof json === 'object' && !Array.isArray(json) ? `kind ${describeValue((json as { kind?: unknown }).kind)}` : describeValue(json);
    throw new Error(`${who}: expected a saved ${name} ({ kind: '${kind}', … } from toJSON()), got ${found}`);
  }
}

/** Throws unless a saved seed is present and a {@link Seed}: a saved family must redraw exactly what it drew. */
export function checkSavedSeed(who: string, seed: unknown): asserts seed is Seed {
  if (seed === undefined) {
    throw new Error(`${who}: seed must be an integer in [0, ${MAX_SEED}], got nothing; the saved JSON is incomplete (without its seed a family hashes differently)`);
  }
  assertSeed(who, seed);
}

/** Throws unless `value` is a positive integer; shows a string as a string (a saved file may hold "4"). */
export function assertSavedPositiveInteger(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    const got = typeof value === 'number' ? String(value) : describeValue(value);
    throw new Error(`${who}: ${what} must be a positive integer, got ${got}`);
  }
}

/** Throws unless `value` is an integer in [min, max]. */
export function assertIntegerIn(who: string, what: string, value: unknown, min: number, max: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${who}: ${what} must be an integer in [${min}, ${max}], got ${describeValue(value)}`);
  }
}

/**
 * Sign-bit digit scores for multi-probe: [−s, s] per bit, so the argmax is
 * the bit and flipping it costs (2s)².
 * @param scaled float32 [N, L·b]: projections on a common scale.
 * @returns float32 [N, L, b, 2].
 */
export function signDigitScores(scaled: tf.Tensor2D, nTables: number, nBits: number): tf.Tensor4D {
  return tf.tidy(() => {
    const s = tf.reshape(scaled, [scaled.shape[0], nTables, nBits, 1]);
    return tf.concat([tf.neg(s), s], 3) as tf.Tensor4D;
  });
}

/** An empty int32 [0, L] or float32 [0, …] result for an empty batch. */
export function emptyRows<R extends tf.Rank>(shape: number[], dtype: 'int32' | 'float32'): tf.Tensor<R> {
  return tf.zeros(shape as tf.ShapeMap[R], dtype);
}
