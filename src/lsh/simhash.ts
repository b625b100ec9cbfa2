/**
 * SimHash (Charikar, STOC 2002): one sign bit per random hyperplane. Two
 * vectors at angle θ agree on a bit with probability 1 − θ/π, so b-bit keys
 * collide with probability (1 − θ/π)^b.
 *
 * Legend: N vectors, D vector size, L tables, b bits per table.
 */
import * as tf from '@tensorflow/tfjs-core';
import { packSignBits, simHashHyperplanes } from '../hashing.js';
import { assertSeed, type Seed } from '../random.js';
import { assertPositiveInteger } from '../validate.js';
import { resolveSeed } from './encoding.js';
import {
  MAX_KEY_BITS,
  assertIntegerIn,
  checkNotDisposed,
  assertSavedPositiveInteger,
  checkSavedKind,
  checkSavedSeed,
  checkVectors,
  emptyRows,
  signDigitScores,
  type HashFamily,
  type SimHashJSON,
} from './family.js';

/** Options of {@link SimHash}. */
export interface SimHashOptions {
  /** D, the size of the hashed vectors. Required. */
  dim: number;
  /** b, bits (hyperplanes) per table key, 1 to 30. Default 16. */
  nBits?: number;
  /** L, tables: independent keys per vector, each from its own b hyperplanes. Default 1. */
  nTables?: number;
  /** Seed of the hyperplanes. Default: a fresh seed from entropy, recorded in `seed`. */
  seed?: Seed;
}

/** Default b. */
export const SIMHASH_DEFAULT_BITS = 16;

/**
 * Random-hyperplane hashing, batched: L·b hyperplanes with directions
 * uniform on the sphere (Gaussian columns scaled to unit length, so a
 * projection is the signed distance to the hyperplane).
 *
 * ```ts
 * const simhash = new SimHash({ dim: 64, nBits: 12, nTables: 8, seed: 1 });
 * const keys = simhash.hash(x); // int32 [N, 8]
 * ```
 */
export class SimHash implements HashFamily {
  readonly kind = 'simhash' as const;
  readonly dim: number;
  readonly nBits: number;
  readonly nTables: number;
  readonly seed: Seed;
  /** float32 [D, L·b]: unit normals; column l·b + j is bit j of table l. */
  readonly hyperplanes: tf.Tensor2D;

  constructor(options: SimHashOptions) {
    const who = 'SimHash';
    if (options === null || typeof options !== 'object') {
      throw new Error(`${who}: options must be an object with at least { dim }, got ${String(options)}`);
    }
    assertPositiveInteger(who, 'dim', options.dim);
    const nBits = options.nBits ?? SIMHASH_DEFAULT_BITS;
    assertIntegerIn(who, 'nBits', nBits, 1, MAX_KEY_BITS);
    const nTables = options.nTables ?? 1;
    assertPositiveInteger(who, 'nTables', nTables);
    assertSeed(who, options.seed);
    this.dim = options.dim;
    this.nBits = nBits;
    this.nTables = nTables;
    this.seed = resolveSeed(options.seed);
    const columns = nTables * nBits;
    this.hyperplanes = tf.tensor2d(simHashHyperplanes(this.dim, columns, this.seed), [this.dim, columns], 'float32');
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
   * Signed distances of the vectors to every hyperplane.
   * @param x float32 [N, D].
   * @returns float32 [N, L·b].
   */
  project(x: tf.Tensor2D): tf.Tensor2D {
    checkVectors('SimHash.project', 'x', x, this.dim);
    checkNotDisposed('SimHash.project', 'SimHash', this.hyperplanes);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables * this.nBits], 'float32');
    return tf.matMul(x, this.hyperplanes);
  }

  /**
   * The bits: 1 where x·r > 0, else 0.
   * @param x float32 [N, D].
   * @returns int32 [N, L, b].
   */
  bits(x: tf.Tensor2D): tf.Tensor3D {
    checkVectors('SimHash.bits', 'x', x, this.dim);
    checkNotDisposed('SimHash.bits', 'SimHash', this.hyperplanes);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables, this.nBits], 'int32');
    return tf.tidy(() => {
      const { bits } = packSignBits(this.project(x), this.nTables, this.nBits);
      return bits;
    });
  }

  /**
   * Each table's b bits packed into one key, Σ_j bit_j · 2^j.
   * @param x float32 [N, D].
   * @returns int32 [N, L], each in [0, 2^b).
   */
  hash(x: tf.Tensor2D): tf.Tensor2D {
    checkVectors('SimHash.hash', 'x', x, this.dim);
    checkNotDisposed('SimHash.hash', 'SimHash', this.hyperplanes);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables], 'int32');
    return tf.tidy(() => packSignBits(this.project(x), this.nTables, this.nBits).keys);
  }

  /**
   * Multi-probe scores: [−d, d] per bit, d the signed distance to the
   * hyperplane (the bit least certain is the one nearest its hyperplane).
   * @param x float32 [N, D].
   * @returns float32 [N, L, b, 2].
   */
  digitScores(x: tf.Tensor2D): tf.Tensor4D {
    checkVectors('SimHash.digitScores', 'x', x, this.dim);
    checkNotDisposed('SimHash.digitScores', 'SimHash', this.hyperplanes);
    if (x.shape[0] === 0) return emptyRows([0, this.nTables, this.nBits, 2], 'float32');
    return tf.tidy(() => signDigitScores(this.project(x), this.nTables, this.nBits));
  }

  /** Settings and seed: the hyperplanes are redrawn from the seed on load. */
  toJSON(): SimHashJSON {
    return { kind: 'simhash', dim: this.dim, nBits: this.nBits, nTables: this.nTables, seed: this.seed };
  }

  /**
   * Rebuilds a saved SimHash (same seed, same hyperplanes).
   * @throws naming the field when one is missing, of the wrong type or out of range.
   */
  static fromJSON(json: SimHashJSON): SimHash {
    const who = 'SimHash.fromJSON';
    checkSavedKind(who, json, 'simhash', 'SimHash');
    assertSavedPositiveInteger(who, 'dim', json.dim);
    assertIntegerIn(who, 'nBits', json.nBits, 1, MAX_KEY_BITS);
    assertSavedPositiveInteger(who, 'nTables', json.nTables);
    checkSavedSeed(who, json.seed);
    return new SimHash({ dim: json.dim, nBits: json.nBits, nTables: json.nTables, seed: json.seed });
  }

  /** Frees the hyperplanes. */
  dispose(): void {
    this.hyperplanes.dispose();
  }
}
