/**
 * Angular (cross-polytope) LSH as the Reformer uses it: a vector's bucket in
 * round r is argmax([x·R_r ; −x·R_r]) over K buckets. With a list of bucket
 * counts [K1, K2, …] (factorised buckets), each factor hashes with its own
 * block of K_i/2 columns and the bucket is the mixed-radix number
 * Σ_i b_i · Π_{m<i} K_m, for K = Π K_i buckets at the cost of Σ K_i/2 columns.
 *
 * Legend: B batch, H heads, T length, D head size, R rounds (nHashes),
 * K buckets.
 */
import * as tf from '@tensorflow/tfjs-core';
import { rotationBuckets } from './kernels/rotation_bucket.js';
import { guardMemory } from './memory.js';
import { transposeAnyDtype } from './ops.js';
import { assertSeed, gaussianArray, uniformStream, type Seed } from './random.js';
import {
  assertBinaryMask,
  assertDtype,
  assertFloat,
  assertMemoryLimit,
  assertOneOf,
  assertPositiveInteger,
  assertRank,
  describeValue,
  shapeString,
} from './validate.js';

/** Above this many buckets the default bucket count is factorised (as in trax). */
export const FACTORISE_BUCKETS_ABOVE = 128;

/** The most buckets K = Π Ki: bucket ids are int32, and K itself marks padding. */
export const MAX_BUCKETS = 2 ** 30;

/** The hash families, for validation. */
export const HASH_FAMILIES: readonly HashFamilyName[] = ['rotation', 'simhash'];

/** Bucket count(s): one even number K, or even factors [K1, K2, …] with K = Π Ki. */
export type NBuckets = number | number[];

/**
 * How vectors are hashed to buckets:
 * - 'rotation' (default, the Reformer's): argmax([x·R ; −x·R]) over K/2 random directions.
 * - 'simhash' (Charikar's random hyperplanes): log2 K sign bits of x·w_b, packed into an integer;
 *   K must be a power of two.
 */
export type HashFamilyName = 'rotation' | 'simhash';

/** Checks that K = Π Ki is a power of two, as SimHash needs; returns log2 K. */
function simHashBits(who: string, nBuckets: NBuckets): number {
  const k = totalBuckets(nBuckets);
  const bits = Math.round(Math.log2(k));
  if (2 ** bits !== k) {
    throw new Error(`${who}: with hashFamily 'simhash', nBuckets must be a power of two, got ${JSON.stringify(nBuckets)}; use e.g. ${2 ** Math.ceil(Math.log2(k))}`);
  }
  return bits;
}

/**
 * Checks and normalises a bucket specification to its list of factors.
 * @throws when a factor is not an even integer ≥ 2.
 */
export function bucketFactors(who: string, nBuckets: NBuckets): number[] {
  const factors: unknown[] = Array.isArray(nBuckets) ? nBuckets : [nBuckets];
  if (factors.length === 0) {
    throw new Error(`${who}: nBuckets must be an even number or a non-empty list of even numbers, got []`);
  }
  for (const k of factors) {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 2 || k % 2 !== 0) {
      throw new Error(
        `${who}: nBuckets must be even (each factor an even integer ≥ 2), got ${describeValue(nBuckets)}`,
      );
    }
  }
  const total = totalBuckets(factors as number[]);
  if (total > MAX_BUCKETS) {
    throw new Error(
      `${who}: nBuckets ${describeValue(nBuckets)} makes K = ${total} buckets, more than 2^30 (bucket ids are int32); ` +
        `use fewer buckets`,
    );
  }
  return factors as number[];
}

/** Total number of buckets K = Π Ki. */
export function totalBuckets(nBuckets: NBuckets): number {
  return (Array.isArray(nBuckets) ? nBuckets : [nBuckets]).reduce((a, b) => a * b, 1);
}

/** Rotation columns per round: Σ Ki/2 (rotation hash), or log2 K (SimHash). */
export function rotationColumns(nBuckets: NBuckets, hashFamily: HashFamilyName = 'rotation'): number {
  if (hashFamily === 'simhash') return simHashBits('rotationColumns', nBuckets);
  return (Array.isArray(nBuckets) ? nBuckets : [nBuckets]).reduce((a, b) => a + b / 2, 0);
}

/**
 * The default bucket count for a length and chunk length (design §9):
 * K = 2·T/C rounded to an even number (at least 2). Above
 * {@link FACTORISE_BUCKETS_ABOVE} it is returned as two even factors as close
 * to √K as possible, so the hashing matMul stays small.
 *
 * @param length T, the (padded) sequence length.
 * @param chunkLength C.
 */
export function defaultNBuckets(length: number, chunkLength: number): NBuckets {
  assertPositiveInteger('defaultNBuckets', 'length', length);
  assertPositiveInteger('defaultNBuckets', 'chunkLength', chunkLength);
  const k = Math.max(2, 2 * Math.round(length / chunkLength));
  if (k <= FACTORISE_BUCKETS_ABOVE) return k;
  // Largest even k1 ≤ √k with k / k1 even too.
  for (let k1 = Math.floor(Math.sqrt(k)); k1 >= 2; k1--) {
    if (k1 % 2 === 0 && k % k1 === 0 && (k / k1) % 2 === 0) return [k1, k / k1];
  }
  return k;
}

/** Options of {@link randomRotations}. */
export interface RandomRotationsOptions {
  /** D, the size of the hashed vectors. */
  dim: number;
  /** R, the number of hash rounds. */
  nHashes: number;
  /** K, or its factors [K1, K2, …]. */
  nBuckets: NBuckets;
  /** Seed of the Gaussian draw. Default: fresh entropy (not reproducible). */
  seed?: Seed;
  /** The hash family the rotations are for. Default 'rotation'. */
  hashFamily?: HashFamilyName;
  /** Refuse draws needing more than this many bytes. Default: the backend's (see `guardMemory`). */
  memoryLimitBytes?: number;
}

/**
 * I.i.d. N(0, 1) rotations (or SimHash hyperplanes) for {@link hashBuckets},
 * drawn in JavaScript from a seed so they are the same on every backend.
 * SimHash hyperplanes are {@link simHashHyperplanes} (unit normals).
 *
 * @returns float32 [D, R, Σ Ki/2] (rotation), or [D, R, log2 K] (SimHash).
 */
export function randomRotations(options: RandomRotationsOptions): tf.Tensor3D {
  const who = 'randomRotations';
  if (options === null || typeof options !== 'object') {
    throw new Error(`${who}: options must be an object { dim, nHashes, nBuckets }, got ${describeValue(options)}`);
  }
  assertPositiveInteger(who, 'dim', options.dim);
  assertPositiveInteger(who, 'nHashes', options.nHashes);
  bucketFactors(who, options.nBuckets);
  assertSeed(who, options.seed);
  const family = options.hashFamily ?? 'rotation';
  assertOneOf(who, 'hashFamily', family, HASH_FAMILIES);
  if (options.memoryLimitBytes !== undefined) assertMemoryLimit(who, options.memoryLimitBytes);
  const columns = family === 'simhash' ? simHashBits(who, options.nBuckets) : rotationColumns(options.nBuckets);
  const bytes = 4 * options.dim * options.nHashes * columns;
  guardMemory(
    who,
    bytes,
    `[D, R, ${family === 'simhash' ? 'log2 K' : 'ΣK/2'}] = ${shapeString([options.dim, options.nHashes, columns])} floats`,
    `Use fewer buckets (nBuckets), or factorise them: nBuckets [K1, K2] costs (K1 + K2)/2 columns for K1·K2 buckets`,
    options.memoryLimitBytes,
  );
  const values =
    family === 'simhash'
      ? simHashHyperplanes(options.dim, options.nHashes * columns, options.seed)
      : gaussianArray(options.dim * options.nHashes * columns, uniformStream(options.seed));
  return tf.tensor3d(values, [options.dim, options.nHashes, columns], 'float32');
}

/**
 * SimHash's random hyperplanes (Charikar): Gaussian directions scaled to unit
 * length, so a projection x·w is the signed distance of x to the hyperplane
 * (its sign, the bit, does not depend on the scale). Drawn in JavaScript from
 * the seed; the attention functions and the hashing library's `SimHash` use
 * the same draw.
 *
 * @param dim D, the size of the hashed vectors.
 * @param count how many hyperplanes.
 * @returns [D, count] row-major: column c is hyperplane c's unit normal.
 */
export function simHashHyperplanes(dim: number, count: number, seed?: Seed): Float32Array {
  const values = gaussianArray(dim * count, uniformStream(seed));
  for (let c = 0; c < count; c++) {
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += values[d * count + c] ** 2;
    norm = Math.sqrt(norm);
    for (let d = 0; d < dim; d++) values[d * count + c] /= norm;
  }
  return values;
}

/**
 * SimHash bits and keys from projections: bit j is 1 where projection j > 0,
 * and each group's `bits` bits pack into one key, Σ_j bit_j · 2^j.
 *
 * @param projections float32 [N, G·bits]: group g's bits are columns g·bits … g·bits + bits − 1.
 * @returns bits int32 [N, G, bits] and keys int32 [N, G], each in [0, 2^bits).
 */
export function packSignBits(projections: tf.Tensor2D, groups: number, bits: number): { bits: tf.Tensor3D; keys: tf.Tensor2D } {
  return tf.tidy(() => {
    const rows = projections.shape[0];
    const signBits = tf.reshape(tf.cast(tf.greater(projections, 0), 'int32'), [rows, groups, bits]) as tf.Tensor3D;
    const powers = tf.tensor1d(Array.from({ length: bits }, (_, j) => 2 ** j), 'int32');
    return { bits: signBits, keys: tf.sum(tf.mul(signBits, powers), 2) as tf.Tensor2D };
  });
}

/** Options of {@link hashBuckets}. */
export interface HashBucketsOptions {
  /**
   * Bucket factors when `rotations` holds factorised blocks. Default: one
   * factor, K = 2 · rotations.shape[2].
   */
  nBuckets?: NBuckets;
  /** [B, T] of 0 (padding) and 1 (keep): padded positions get the extra bucket K. Default: none. */
  mask?: tf.Tensor2D;
  /** The hash family. Default 'rotation'. */
  hashFamily?: HashFamilyName;
  /** Refuse calls estimated to need more than this many bytes. Default: the backend's (see `guardMemory`). */
  memoryLimitBytes?: number;
}

/**
 * Bytes the hashing of `rows` vectors allocates while it runs (freed when it
 * returns, but for the int32 [rows, R] buckets): the projections
 * [rows·R, Σ Ki/2] (rotation) or [rows, R·log2 K] (SimHash) dominate. tfjs
 * counts a reshape's bytes again (`tf.memory().numBytes` is per tensor), so
 * the projections count twice (measured: 2.0–2.05×; counted 2.25× here, a
 * margin). Per-row temporaries (maxima, argmaxes, bucket sums, padding): ≈ 40
 * bytes per factor and round, 24 more per round.
 */
export function estimateHashBytes(rows: number, dim: number, nHashes: number, nBuckets: NBuckets, hashFamily: HashFamilyName = 'rotation'): number {
  const factors = Array.isArray(nBuckets) ? nBuckets : [nBuckets];
  const items = rows * nHashes;
  const input = 4 * rows * dim; // the [rows, D] view of x
  if (hashFamily === 'simhash') {
    const bits = Math.round(Math.log2(totalBuckets(nBuckets)));
    // projections (float32), sign bits (bool, then int32), weighted bits (int32): 17 bytes per bit.
    return input + 8 * dim * nHashes * bits + 19 * items * bits + 28 * items;
  }
  const columns = rotationColumns(nBuckets);
  return input + 8 * dim * nHashes * columns + 9 * items * columns + items * (40 * factors.length + 24);
}

/**
 * Buckets of every vector in every round.
 *
 * @param x float32 [B, H, T, D]: the vectors (scale does not matter).
 * @param rotations float32 [D, R, Σ Ki/2].
 * @returns int32 [B, H, R, T], values in [0, K), or K at padded positions.
 * @throws when shapes or options are invalid, the mask is not binary, or the
 *   projections would not fit in the backend's memory.
 */
export function hashBuckets(x: tf.Tensor4D, rotations: tf.Tensor3D, options: HashBucketsOptions = {}): tf.Tensor4D {
  const who = 'hashBuckets';
  assertRank(who, 'x', x, 4, '[B, H, T, D]');
  assertFloat(who, 'x', x);
  assertRank(who, 'rotations', rotations, 3, '[D, R, K/2]');
  assertFloat(who, 'rotations', rotations);
  const [batch, heads, length, dim] = x.shape;
  assertPositiveInteger(who, 'the size D of x', dim);
  const [rotationsDim, nHashes, columns] = rotations.shape;
  const family = options.hashFamily ?? 'rotation';
  assertOneOf(who, 'hashFamily', family, HASH_FAMILIES);
  if (options.memoryLimitBytes !== undefined) assertMemoryLimit(who, options.memoryLimitBytes);
  const defaultBuckets = family === 'simhash' ? 2 ** columns : 2 * columns;
  const factors = bucketFactors(who, options.nBuckets ?? defaultBuckets);
  const expectedColumns = family === 'simhash' ? simHashBits(who, factors) : rotationColumns(factors);
  if (rotationsDim !== dim || expectedColumns !== columns) {
    throw new Error(
      `${who}: rotations must have shape [D, R, ${family === 'simhash' ? 'log2 K' : 'ΣK/2'}] = [${dim}, R, ${expectedColumns}] for ` +
        `x ${shapeString(x.shape)} and nBuckets ${JSON.stringify(options.nBuckets ?? defaultBuckets)}, ` +
        `got ${shapeString(rotations.shape)}`,
    );
  }
  if (options.mask !== undefined) checkMask(who, options.mask, batch, length);
  const rows = batch * heads * length;
  guardMemory(
    who,
    estimateHashBytes(rows, dim, nHashes, factors, family),
    `B·H·T·R = ${rows * nHashes} vectors × ${columns} projections`,
    'Use fewer buckets (nBuckets) or factorise them (nBuckets [K1, K2] costs (K1 + K2)/2 columns for K1·K2 buckets), or hash fewer vectors per call',
    options.memoryLimitBytes,
  );
  if (rows === 0) return tf.zeros([batch, heads, nHashes, length], 'int32') as tf.Tensor4D;
  return tf.tidy(() => {
    const x2d = tf.reshape(x, [rows, dim]);
    let buckets: tf.Tensor | null = null;
    let radix = 1;
    if (family === 'simhash') {
      // [B·H·T, R·bits]: one 2-D matMul; each round's bits pack into its bucket.
      const projected = tf.matMul(x2d, tf.reshape(rotations, [dim, nHashes * columns])) as tf.Tensor2D;
      buckets = packSignBits(projected, nHashes, columns).keys; // [B·H·T, R]
      radix = 2 ** columns;
    } else {
      let offset = 0;
      for (const k of factors) {
        // This factor's block of rotations (a small slice), one 2-D matMul: [B·H·T·R, K/2].
        const block = factors.length === 1 ? rotations : tf.slice(rotations, [0, 0, offset], [-1, -1, k / 2]);
        const projected = tf.reshape(tf.matMul(x2d, tf.reshape(block, [dim, nHashes * (k / 2)])), [rows * nHashes, k / 2]);
        // argmax over [p ; −p] (one wasm pass on wasm, tf ops elsewhere).
        const factorBucket = rotationBuckets(projected as tf.Tensor2D);
        const term = radix === 1 ? factorBucket : tf.mul(factorBucket, tf.scalar(radix, 'int32'));
        buckets = buckets === null ? term : tf.add(buckets, term);
        offset += k / 2;
        radix *= k;
      }
    }
    // [B, H, T, R] → [B, H, R, T]
    // (not tf.transpose: tfjs-backend-webgpu 4.22 cannot transpose int32 tensors of rank > 2; see transposeAnyDtype)
    let result = transposeAnyDtype(tf.reshape(buckets as tf.Tensor, [batch, heads, length, nHashes]), [0, 1, 3, 2]);
    if (options.mask !== undefined) {
      const padded = tf.reshape(tf.equal(options.mask, 0), [batch, 1, 1, length]);
      const paddedFull = tf.logicalAnd(padded, tf.cast(tf.onesLike(result), 'bool'));
      result = tf.where(paddedFull, tf.fill(result.shape, radix, 'int32'), result);
    }
    return result as tf.Tensor4D;
  });
}

/** The dtypes a padding mask may have. */
const MASK_DTYPES = ['float32', 'int32', 'bool'] as const;

/**
 * Checks a padding mask: a live tensor [B, T] matching the inputs, float32,
 * int32 or bool, holding only 0 (padding) and 1 (keep). Reads it back once
 * (B·T values) and returns its values.
 */
export function checkMask(
  who: string,
  mask: unknown,
  batch: number,
  length: number,
  what = 'mask',
): Float32Array | Int32Array | Uint8Array {
  assertRank(who, what, mask, 2, '[B, T]');
  if (mask.shape[0] !== batch || mask.shape[1] !== length) {
    throw new Error(
      `${who}: ${what} must have shape [B, T] = [${batch}, ${length}] to match the inputs, got ${shapeString(mask.shape)}`,
    );
  }
  assertDtype(who, what, mask, MASK_DTYPES, "cast it with tf.cast(mask, 'float32')");
  const values = mask.dataSync() as Float32Array | Int32Array | Uint8Array;
  assertBinaryMask(who, what, values, mask.shape);
  return values;
}
