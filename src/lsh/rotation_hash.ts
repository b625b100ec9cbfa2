/**
 * The rotation (cross-polytope) hash that LSH attention uses, on its own: a
 * vector's bucket is argmax([x·R ; −x·R]) over K buckets, R a Gaussian
 * [D, K/2] matrix (design §1). A table's key concatenates m such hashes
 * (K^m keys) exactly as factorised buckets do (design §8), so hashing goes
 * through {@link hashBuckets} with nBuckets = [K, …, K].
 *
 * Legend: N vectors, D vector size, L tables, K buckets per hash, m hashes
 * per table key.
 */
import * as tf from '@tensorflow/tfjs-core';
import { hashBuckets, randomRotations } from '../hashing.js';
import { transposeAnyDtype } from '../ops.js';
import { assertSeed, type Seed } from '../random.js';
import { assertPositiveInteger } from '../validate.js';
import { describeValue, resolveSeed } from './encoding.js';
import {
  MAX_KEY_BITS,
  checkNotDisposed,
  assertSavedPositiveInteger,
  checkSavedKind,
  checkSavedSeed,
  checkVectors,
  emptyRows,
  type HashFamily,
  type RotationHashJSON,
} from './family.js';

/** Options of {@link RotationHash}. */
export interface RotationHashOptions {
  /** D, the size of the hashed vectors. Required. */
  dim: number;
  /** K, buckets of one cross-polytope hash: even, ≥ 2, K^m ≤ 2^30. Default 16. */
  nBuckets?: number;
  /** m, cross-polytope hashes concatenated into one table key (K^m keys). Default 1. */
  hashesPerTable?: number;
  /** L, tables. Default 1. */
  nTables?: number;
  /** Seed of the rotations. Default: a fresh seed from entropy, recorded in `seed`. */
  seed?: Seed;
}

/** Default K. */
export const ROTATION_DEFAULT_BUCKETS = 16;

/**
 * Cross-polytope LSH, batched. Orthogonal vectors land in the same bucket
 * with probability 1/K; near vectors collide more often than under SimHash
 * with the same number of buckets.
 *
 * ```ts
 * const rotation = new RotationHash({ dim: 64, nBuckets: 32, hashesPerTable: 2, nTables: 8, seed: 1 });
 * const keys = rotation.hash(x); // int32 [N, 8], each in [0, 32²)
 * ```
 */
export class RotationHash implements HashFamily {
  readonly kind = 'rotation' as const;
  readonly dim: number;
  readonly nBuckets: number;
  readonly hashesPerTable: number;
  readonly nTables: number;
  readonly seed: Seed;
  /** float32 [D, L, m·K/2]: one round of {@link hashBuckets} per table. */
  readonly rotations: tf.Tensor3D;

  constructor(options: RotationHashOptions) {
    const who = 'RotationHash';
    if (options === null || typeof options !== 'object') {
      throw new Error(`${who}: options must be an object with at least { dim }, got ${String(options)}`);
    }
    assertPositiveInteger(who, 'dim', options.dim);
    const nBuckets = options.nBuckets ?? ROTATION_DEFAULT_BUCKETS;
    const hashesPerTable = options.hashesPerTable ?? 1;
    checkBucketSettings(who, nBuckets, hashesPerTable);
    const nTables = options.nTables ?? 1;
    assertPositiveInteger(who, 'nTables', nTables);
    assertSeed(who, options.seed);
    this.dim = options.dim;
    this.nBuckets = nBuckets;
    this.hashesPerTable = hashesPerTable;
    this.nTables = nTables;
    this.seed = resolveSeed(options.seed);
    this.rotations = randomRotations({
      dim: this.dim,
      nHashes: nTables,
      nBuckets: this.bucketFactors(),
      seed: this.seed,
    });
  }

  /** M = m. */
  get digitsPerKey(): number {
    return this.hashesPerTable;
  }

  /** A = K. */
  get digitBase(): number {
    return this.nBuckets;
  }

  /** m · log2 K. */
  get keyBits(): number {
    return this.hashesPerTable * Math.log2(this.nBuckets);
  }

  private bucketFactors(): number | number[] {
    return this.hashesPerTable === 1 ? this.nBuckets : new Array<number>(this.hashesPerTable).fill(this.nBuckets);
  }

  /**
   * Table keys: Σ_j bucket_j · K^j over the m hashes of each table.
   * @param x float32 [N, D].
   * @returns int32 [N, L], each in [0, K^m).
   */
  hash(x: tf.Tensor2D): tf.Tensor2D {
    checkVectors('RotationHash.hash', 'x', x, this.dim);
    checkNotDisposed('RotationHash.hash', 'RotationHash', this.rotations);
    const n = x.shape[0];
    if (n === 0) return emptyRows([0, this.nTables], 'int32');
    return tf.tidy(() => {
      const buckets = hashBuckets(tf.reshape(x, [1, 1, n, this.dim]), this.rotations, {
        nBuckets: this.bucketFactors(),
      }); // [1, 1, L, N]
      return transposeAnyDtype(tf.reshape(buckets, [this.nTables, n])) as tf.Tensor2D;
    });
  }

  /**
   * The scores [x·R ; −x·R] of every hash: the bucket is their argmax.
   * @param x float32 [N, D].
   * @returns float32 [N, L, m, K].
   */
  digitScores(x: tf.Tensor2D): tf.Tensor4D {
    checkVectors('RotationHash.digitScores', 'x', x, this.dim);
    checkNotDisposed('RotationHash.digitScores', 'RotationHash', this.rotations);
    const n = x.shape[0];
    const { nTables, hashesPerTable, nBuckets } = this;
    if (n === 0) return emptyRows([0, nTables, hashesPerTable, nBuckets], 'float32');
    return tf.tidy(() => {
      const columns = nTables * hashesPerTable * (nBuckets / 2);
      const projected = tf.matMul(x, tf.reshape(this.rotations, [this.dim, columns]));
      const blocks = tf.reshape(projected, [n, nTables, hashesPerTable, nBuckets / 2]);
      return tf.concat([blocks, tf.neg(blocks)], 3) as tf.Tensor4D;
    });
  }

  /** Settings and seed: the rotations are redrawn from the seed on load. */
  toJSON(): RotationHashJSON {
    return {
      kind: 'rotation',
      dim: this.dim,
      nBuckets: this.nBuckets,
      hashesPerTable: this.hashesPerTable,
      nTables: this.nTables,
      seed: this.seed,
    };
  }

  /**
   * Rebuilds a saved RotationHash (same seed, same rotations).
   * @throws naming the field when one is missing, of the wrong type or out of range.
   */
  static fromJSON(json: RotationHashJSON): RotationHash {
    const who = 'RotationHash.fromJSON';
    checkSavedKind(who, json, 'rotation', 'RotationHash');
    assertSavedPositiveInteger(who, 'dim', json.dim);
    checkBucketSettings(who, json.nBuckets, json.hashesPerTable);
    assertSavedPositiveInteger(who, 'nTables', json.nTables);
    checkSavedSeed(who, json.seed);
    return new RotationHash({
      dim: json.dim,
      nBuckets: json.nBuckets,
      hashesPerTable: json.hashesPerTable,
      nTables: json.nTables,
      seed: json.seed,
    });
  }

  /** Frees the rotations. */
  dispose(): void {
    this.rotations.dispose();
  }
}

/** K even and ≥ 2, m a positive integer, K^m ≤ 2^30. */
function checkBucketSettings(who: string, nBuckets: unknown, hashesPerTable: unknown): asserts nBuckets is number {
  if (typeof nBuckets !== 'number' || !Number.isInteger(nBuckets) || nBuckets < 2 || nBuckets % 2 !== 0) {
    const got = typeof nBuckets === 'number' ? String(nBuckets) : describeValue(nBuckets);
    throw new Error(`${who}: nBuckets must be an even integer ≥ 2, got ${got}`);
  }
  assertSavedPositiveInteger(who, 'hashesPerTable', hashesPerTable);
  const keyBits = hashesPerTable * Math.log2(nBuckets);
  if (keyBits > MAX_KEY_BITS) {
    throw new Error(
      `${who}: nBuckets^hashesPerTable must be at most 2^${MAX_KEY_BITS} (keys are int32), got ` +
        `${nBuckets}^${hashesPerTable} ≈ 2^${keyBits.toFixed(1)}; use fewer hashesPerTable or fewer buckets`,
    );
  }
}
