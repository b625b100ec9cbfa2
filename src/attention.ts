/**
 * Shared-QK attention, as `shared/design/lsh-attention.md` specifies it:
 * {@link lshAttention} (Reformer LSH attention over sorted chunks) and
 * {@link fullAttention} (the same logits and masks over all T keys).
 *
 * Legend: B batch, H heads, T length, D head size, Dv value size, R hash
 * rounds (nHashes), K buckets, C chunk length, L = C·(1 + before + after)
 * keys per query, N = R·T/C chunks per head.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  bucketFactors,
  checkMask,
  defaultNBuckets,
  hashBuckets,
  randomRotations,
  rotationColumns,
  totalBuckets,
  type NBuckets,
} from './hashing.js';
import { guardMemory } from './memory.js';
import { sortItems } from './sorting.js';
import { detach, gatherCopies, gatherRows, permuteRows, stopGradient } from './ops.js';
import type { Seed } from './random.js';
import {
  assertFloat,
  assertNonNegativeInteger,
  assertPositiveInteger,
  assertRank,
  assertRate,
  shapeString,
} from './validate.js';

/** Logit of a masked key (causal or padding): replaces the logit. */
export const MASKED_LOGIT = -1e9;
/** Logit of a query's own key: used only when nothing else is allowed. */
export const SELF_ATTENTION_LOGIT = -1e5;
/** Added to the mean square before normalising keys. */
export const KEY_NORM_EPSILON = 1e-6;

/** Options both attention functions take. */
export interface AttentionOptions {
  /** Mask keys after the query's position. Default false. */
  causal?: boolean;
  /** [B, T], 1 keep, 0 padding. Outputs at padded positions are unspecified. Default: no padding. */
  mask?: tf.Tensor2D;
  /** Dropout rate on the attention weights, in [0, 1). Default 0 (none). */
  dropout?: number;
  /** Seed of the dropout mask, so a recomputation can reproduce it. Default: random. */
  dropoutSeed?: number;
  /**
   * Refuse calls estimated to need more than this many bytes. Default: 3.25
   * GiB on wasm (its heap corrupts past ≈3.6 GiB), 16 GiB elsewhere.
   */
  memoryLimitBytes?: number;
}

/** Options of {@link lshAttention}. */
export interface LSHAttentionOptions extends AttentionOptions {
  /**
   * K buckets (even), or factors [K1, K2, …] with K = Π Ki. Default: from
   * `rotations` when given, else 2·T/C rounded to even, factorised above 128.
   */
  nBuckets?: NBuckets;
  /** R hash rounds. Default: rotations.shape[1] when given, else 1. */
  nHashes?: number;
  /** C, the chunk length; R·T must be a multiple of it. Default 64. */
  chunkLength?: number;
  /** Chunks before its own that a chunk attends to. Default 1. */
  numChunksBefore?: number;
  /** Chunks after its own that a chunk attends to. Default 0. */
  numChunksAfter?: number;
  /** float32 [D, R, Σ Ki/2] rotations; wins over `seed`. Default: drawn from `seed`. */
  rotations?: tf.Tensor3D;
  /** Seed of the rotations. Default: fresh randomness on every call. */
  seed?: Seed;
}

/** The settings {@link lshAttention} resolves from its options and input shape. */
export interface ResolvedLSHSettings {
  nHashes: number;
  nBuckets: NBuckets;
  chunkLength: number;
  numChunksBefore: number;
  numChunksAfter: number;
}

/** Default chunk length (design §9). */
export const DEFAULT_CHUNK_LENGTH = 64;

/**
 * The smallest length ≥ `length` for which R·T is a multiple of C: what the
 * layers pad to.
 */
export function validLength(length: number, nHashes: number, chunkLength: number): number {
  const step = chunkLength / gcd(nHashes, chunkLength);
  return Math.ceil(length / step) * step;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Resolves and validates the LSH settings for an input of length T and head
 * size D (exported so the layers and benchmark resolve them the same way).
 */
export function resolveLSHSettings(
  who: string,
  length: number,
  depth: number,
  options: Pick<
    LSHAttentionOptions,
    'nBuckets' | 'nHashes' | 'chunkLength' | 'numChunksBefore' | 'numChunksAfter' | 'rotations'
  >,
): ResolvedLSHSettings {
  const chunkLength = options.chunkLength ?? DEFAULT_CHUNK_LENGTH;
  assertPositiveInteger(who, 'chunkLength', chunkLength);
  const numChunksBefore = options.numChunksBefore ?? 1;
  const numChunksAfter = options.numChunksAfter ?? 0;
  assertNonNegativeInteger(who, 'numChunksBefore', numChunksBefore);
  assertNonNegativeInteger(who, 'numChunksAfter', numChunksAfter);
  const rotations = options.rotations;
  let nHashes = options.nHashes ?? (rotations ? rotations.shape[1] : 1);
  assertPositiveInteger(who, 'nHashes', nHashes);
  let nBuckets: NBuckets;
  if (options.nBuckets !== undefined) {
    nBuckets = options.nBuckets;
    bucketFactors(who, nBuckets);
  } else if (rotations) {
    nBuckets = 2 * rotations.shape[2];
  } else {
    nBuckets = defaultNBuckets(length, chunkLength);
  }
  if (rotations) {
    assertRank(who, 'rotations', rotations, 3, '[D, R, K/2]');
    const expected = [depth, nHashes, rotationColumns(nBuckets)];
    if (rotations.shape.some((d, i) => d !== expected[i])) {
      throw new Error(
        `${who}: rotations must have shape [D, nHashes, ΣK/2] = ${shapeString(expected)} for D=${depth}, ` +
          `nHashes=${nHashes}, nBuckets=${JSON.stringify(nBuckets)}, got ${shapeString(rotations.shape)}`,
      );
    }
    nHashes = rotations.shape[1];
  }
  if ((nHashes * length) % chunkLength !== 0) {
    const step = validLength(1, nHashes, chunkLength);
    throw new Error(
      `${who}: nHashes·T = ${nHashes}·${length} = ${nHashes * length} must be a multiple of chunkLength ` +
        `${chunkLength}; pad T to a multiple of ${step} (e.g. ${validLength(length, nHashes, chunkLength)}) and ` +
        `mask the padding, choose a chunkLength that divides ${nHashes * length}, or use the LSHSelfAttention ` +
        `layer, which pads for you`,
    );
  }
  return { nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter };
}

/** Checks qk, v and mask together; returns [B, H, T, D, Dv]. */
function checkInputs(
  who: string,
  qk: tf.Tensor,
  v: tf.Tensor,
  options: AttentionOptions,
): [number, number, number, number, number] {
  assertRank(who, 'qk', qk, 4, '[B, H, T, D]');
  assertRank(who, 'v', v, 4, '[B, H, T, Dv]');
  assertFloat(who, 'qk', qk);
  assertFloat(who, 'v', v);
  const [batch, heads, length, depth] = qk.shape;
  if (v.shape[0] !== batch || v.shape[1] !== heads || v.shape[2] !== length) {
    throw new Error(
      `${who}: v must match qk in B, H and T: qk is ${shapeString(qk.shape)} [B, H, T, D], ` +
        `v is ${shapeString(v.shape)}, expected [${batch}, ${heads}, ${length}, Dv]`,
    );
  }
  for (const [what, size] of [
    ['B', batch],
    ['H', heads],
    ['T', length],
    ['D', depth],
    ['Dv', v.shape[3]],
  ] as const) {
    assertPositiveInteger(who, `the size ${what} of the inputs`, size);
  }
  if (options.mask !== undefined) checkMask(who, options.mask, batch, length);
  if (options.dropout !== undefined) assertRate(who, 'dropout', options.dropout);
  return [batch, heads, length, depth, v.shape[3] as number];
}

/** Unit-length keys: k = x / sqrt(mean(x²) + ε) / sqrt(D). Shape preserved. */
function normaliseKeys(x: tf.Tensor): tf.Tensor {
  const depth = x.shape[x.rank - 1];
  const meanSquare = tf.mean(tf.square(x), -1, true);
  return tf.mul(x, tf.mul(tf.rsqrt(tf.add(meanSquare, KEY_NORM_EPSILON)), 1 / Math.sqrt(depth)));
}

/**
 * Each chunk followed by its neighbours: for chunk j, chunks j−before … j+after
 * (rolling over the chunk axis), concatenated along the row axis.
 *
 * @param x [G, N, C, X]
 * @returns [G, N, (1 + before + after)·C, X]
 */
function lookAround(x: tf.Tensor4D, before: number, after: number): tf.Tensor4D {
  if (before === 0 && after === 0) return x;
  const numChunks = x.shape[1];
  const parts: tf.Tensor4D[] = [];
  for (let shift = -before; shift <= after; shift++) {
    // part[j] = x[(j + shift) mod N]
    const s = ((shift % numChunks) + numChunks) % numChunks;
    parts.push(
      s === 0
        ? x
        : tf.concat([tf.slice(x, [0, s, 0, 0], [-1, -1, -1, -1]), tf.slice(x, [0, 0, 0, 0], [-1, s, -1, -1])], 1),
    );
  }
  return tf.concat(parts, 2);
}

/**
 * Masks logits by replacing them (not adding): keys where `blocked` → −1e9,
 * the query's own key → −1e5. Written as logits·keep + fill, which is exact
 * replacement and has the replacement's gradient.
 *
 * @param logits [..., Q, L]
 * @param self float 0/1, broadcastable to logits: key position == query position.
 * @param blocked float 0/1 or null, broadcastable: causal or padded key.
 */
function replaceMasked(logits: tf.Tensor, self: tf.Tensor, blocked: tf.Tensor | null): tf.Tensor {
  const notSelf = tf.sub(1, self);
  let keep = notSelf;
  let fill = tf.mul(self, SELF_ATTENTION_LOGIT);
  if (blocked !== null) {
    keep = tf.mul(notSelf, tf.sub(1, blocked));
    fill = tf.add(fill, tf.mul(tf.mul(notSelf, blocked), MASKED_LOGIT));
  }
  return tf.add(tf.mul(logits, keep), fill);
}

/**
 * Softmax attention of masked logits, with the log-sum-exp kept as two parts
 * (row maximum, log of the shifted sum) so rounds can be combined without the
 * float32 trap (design §5).
 *
 * @param masked [G, Q, L]
 * @param values [G, L, Dv]
 * @returns out [G, Q, Dv], rowMax [G, Q, 1] (no gradient), logSum [G, Q, 1]
 */
function softmaxAttend(
  masked: tf.Tensor3D,
  values: tf.Tensor3D,
  dropout: number,
  dropoutSeed: number | undefined,
): { out: tf.Tensor3D; rowMax: tf.Tensor3D; logSum: tf.Tensor3D } {
  const rowMax = stopGradient(tf.max(masked, -1, true)) as tf.Tensor3D;
  const exps = tf.exp(tf.sub(masked, rowMax));
  const sums = tf.sum(exps, -1, true);
  let weights: tf.Tensor3D = tf.div(exps, sums);
  if (dropout > 0) weights = tf.dropout(weights, dropout, undefined, dropoutSeed) as tf.Tensor3D;
  return { out: tf.matMul(weights, values), rowMax, logSum: tf.log(sums) as tf.Tensor3D };
}

/** Bytes estimate of an lshAttention call (forward; gradients keep about as much again). */
export function estimateLSHAttentionBytes(
  shape: { batch: number; heads: number; length: number; depth: number; valueDepth: number },
  settings: ResolvedLSHSettings,
): number {
  const items = shape.batch * shape.heads * settings.nHashes * shape.length;
  const window = settings.chunkLength * (1 + settings.numChunksBefore + settings.numChunksAfter);
  // Per query: ~10 [L]-sized logit/mask/softmax tensors; windows of keys and values; sorted copies.
  return 4 * items * (10 * window + (window / settings.chunkLength + 3) * (shape.depth + shape.valueDepth) + 16);
}

/** Bytes estimate of a fullAttention call (forward). */
export function estimateFullAttentionBytes(shape: {
  batch: number;
  heads: number;
  length: number;
  depth: number;
  valueDepth: number;
}): number {
  const rows = shape.batch * shape.heads * shape.length;
  return 4 * rows * (8 * shape.length + 3 * (shape.depth + shape.valueDepth));
}

/**
 * Reformer LSH attention with shared queries and keys.
 *
 * Every (round, position) item is hashed with random rotations, the R·T items
 * are sorted by (round, bucket, position) and cut into chunks of C, and each
 * chunk attends to itself and its `numChunksBefore`/`numChunksAfter`
 * neighbours. Rounds are combined by their log-sum-exp weights.
 *
 * @param qk float32 [B, H, T, D]: shared queries/keys (keys are normalised inside).
 * @param v float32 [B, H, T, Dv]: values.
 * @returns float32 [B, H, T, Dv].
 * @throws when shapes disagree, options are out of range, R·T is not a
 *   multiple of C, or the call would not fit in the backend's memory.
 *
 * ```ts
 * const out = lshAttention(qk, v, { nHashes: 4, chunkLength: 64, causal: true, seed: 1 });
 * ```
 */
export function lshAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: LSHAttentionOptions = {}): tf.Tensor4D {
  const who = 'lshAttention';
  const [batch, heads, length, depth, valueDepth] = checkInputs(who, qk, v, options);
  const settings = resolveLSHSettings(who, length, depth, options);
  const { nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter } = settings;
  guardMemory(
    who,
    estimateLSHAttentionBytes({ batch, heads, length, depth, valueDepth }, settings),
    `B·H·R·T = ${batch * heads * nHashes * length} queries × ${chunkLength * (1 + numChunksBefore + numChunksAfter)} keys`,
    'Use fewer heads or a smaller batch per call, fewer rounds (nHashes), or a smaller chunkLength',
    options.memoryLimitBytes,
  );
  const dropout = options.dropout ?? 0;
  return tf.tidy(() => {
    const groups = batch * heads; // G = B·H
    const items = nHashes * length; // R·T
    const numChunks = items / chunkLength;
    const window = chunkLength * (1 + numChunksBefore + numChunksAfter);
    const numBuckets = totalBuckets(nBuckets);

    // 1. Hash: int32 [B, H, R, T]; padded positions get bucket K.
    const rotations =
      options.rotations ?? randomRotations({ depth, nHashes, nBuckets, seed: options.seed });
    // Hashing sees a detached copy: bucket ids carry no gradient (design §1).
    const buckets = hashBuckets(detach(qk), rotations, { nBuckets, mask: options.mask });

    // 2. Sort items t = r·T + i by (round, bucket, position).
    const sort = sortItems(buckets, numBuckets);
    const sortedItems = tf.reshape(sort.sortedItems, [groups, items]); // [G, R·T]
    const undoSort = tf.reshape(sort.undoSort, [groups, items]);
    const sortedPositions = tf.mod(sortedItems, tf.scalar(length, 'int32')); // [G, R·T]
    const groupRowsT = tf.reshape(tf.mul(tf.range(0, groups, 1, 'int32'), tf.scalar(length, 'int32')), [groups, 1]);
    const groupRowsRT = tf.reshape(tf.mul(tf.range(0, groups, 1, 'int32'), tf.scalar(items, 'int32')), [groups, 1]);
    const sortedSource = tf.reshape(tf.add(sortedPositions, groupRowsT), [-1]) as tf.Tensor1D;
    const undoFlat = tf.reshape(tf.add(undoSort, groupRowsRT), [-1]) as tf.Tensor1D;
    const sortedFlat = tf.reshape(tf.add(sortedItems, groupRowsRT), [-1]) as tf.Tensor1D;

    // 3. Gather sorted queries and values; chunk; keys are normalised and looked around.
    const sortedQK = gatherCopies(tf.reshape(qk, [groups * length, depth]), sortedSource, undoFlat, groups, nHashes);
    const sortedV = gatherCopies(tf.reshape(v, [groups * length, valueDepth]), sortedSource, undoFlat, groups, nHashes);
    const queries = tf.reshape(sortedQK, [groups, numChunks, chunkLength, depth]);
    const keys = lookAround(normaliseKeys(queries) as tf.Tensor4D, numChunksBefore, numChunksAfter);
    const values = lookAround(
      tf.reshape(sortedV, [groups, numChunks, chunkLength, valueDepth]),
      numChunksBefore,
      numChunksAfter,
    );

    // 4. Logits [G·N, C, L] and masks from the items' positions.
    const logits = tf.matMul(
      tf.reshape(queries, [groups * numChunks, chunkLength, depth]),
      tf.reshape(keys, [groups * numChunks, window, depth]),
      false,
      true,
    );
    const queryPositions = tf.reshape(sortedPositions, [groups * numChunks, chunkLength, 1]);
    const keyPositions = tf.reshape(
      lookAround(tf.reshape(sortedPositions, [groups, numChunks, chunkLength, 1]), numChunksBefore, numChunksAfter),
      [groups * numChunks, 1, window],
    );
    const self = tf.cast(tf.equal(queryPositions, keyPositions), 'float32');
    let blocked: tf.Tensor | null = null;
    if (options.causal) blocked = tf.cast(tf.greater(keyPositions, queryPositions), 'float32');
    if (options.mask !== undefined) {
      // Padding of each sorted item, looked around like the keys: [G·N, 1, L].
      const maskRows = tf.reshape(
        tf.tile(tf.reshape(tf.cast(options.mask, 'float32'), [batch, 1, length]), [1, heads, 1]),
        [groups * length, 1],
      ) as tf.Tensor2D;
      const sortedPadding = tf.sub(1, tf.reshape(gatherRows(maskRows, sortedSource), [groups, numChunks, chunkLength, 1]));
      const keyPadding = tf.reshape(
        lookAround(sortedPadding as tf.Tensor4D, numChunksBefore, numChunksAfter),
        [groups * numChunks, 1, window],
      );
      blocked = blocked === null ? keyPadding : tf.maximum(blocked, keyPadding);
    }
    const masked = replaceMasked(logits, self, blocked) as tf.Tensor3D;

    // 5. Attend within chunks, un-sort, combine rounds.
    const { out, rowMax, logSum } = softmaxAttend(
      masked,
      tf.reshape(values, [groups * numChunks, window, valueDepth]),
      dropout,
      options.dropoutSeed,
    );
    const packed = tf.concat(
      [
        tf.reshape(out, [groups * items, valueDepth]),
        tf.reshape(rowMax, [groups * items, 1]),
        tf.reshape(logSum, [groups * items, 1]),
      ],
      1,
    ) as tf.Tensor2D;
    const unsorted = tf.reshape(permuteRows(packed, undoFlat, sortedFlat), [groups, nHashes, length, valueDepth + 2]);
    let combined: tf.Tensor;
    if (nHashes === 1) {
      combined = tf.slice(unsorted, [0, 0, 0, 0], [-1, -1, -1, valueDepth]);
    } else {
      const roundOut = tf.slice(unsorted, [0, 0, 0, 0], [-1, -1, -1, valueDepth]);
      const roundMax = tf.slice(unsorted, [0, 0, 0, valueDepth], [-1, -1, -1, 1]);
      const roundLogSum = tf.slice(unsorted, [0, 0, 0, valueDepth + 1], [-1, -1, -1, 1]);
      // lse_r − max_r(lse) computed on differences of maxima (exact) plus the log-sums.
      const relative = tf.add(tf.sub(roundMax, tf.max(roundMax, 1, true)), roundLogSum);
      const roundWeights = tf.exp(tf.sub(relative, tf.logSumExp(relative, 1, true)));
      combined = tf.sum(tf.mul(roundOut, roundWeights), 1);
    }
    return tf.reshape(combined, [batch, heads, length, valueDepth]) as tf.Tensor4D;
  });
}

/**
 * Full O(T²) shared-QK attention: the same logits and masks as
 * {@link lshAttention}, over all T keys. The baseline and the reference.
 *
 * @param qk float32 [B, H, T, D]
 * @param v float32 [B, H, T, Dv]
 * @returns float32 [B, H, T, Dv]
 */
export function fullAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: AttentionOptions = {}): tf.Tensor4D {
  const who = 'fullAttention';
  const [batch, heads, length, depth, valueDepth] = checkInputs(who, qk, v, options);
  guardMemory(
    who,
    estimateFullAttentionBytes({ batch, heads, length, depth, valueDepth }),
    `B·H·T² = ${(batch * heads * length * length).toExponential(2)} attention logits`,
    'Use lshAttention, a shorter T, or fewer heads or a smaller batch per call',
    options.memoryLimitBytes,
  );
  return tf.tidy(() => {
    const groups = batch * heads;
    const queries = tf.reshape(qk, [groups, length, depth]);
    const keys = normaliseKeys(queries) as tf.Tensor3D;
    const logits = tf.reshape(tf.matMul(queries, keys, false, true), [batch, heads, length, length]);
    const positions = tf.range(0, length, 1, 'int32');
    const queryPositions = tf.reshape(positions, [length, 1]);
    const keyPositions = tf.reshape(positions, [1, length]);
    const self = tf.reshape(tf.cast(tf.equal(queryPositions, keyPositions), 'float32'), [1, 1, length, length]);
    let blocked: tf.Tensor | null = null;
    if (options.causal) {
      blocked = tf.reshape(tf.cast(tf.greater(keyPositions, queryPositions), 'float32'), [1, 1, length, length]);
    }
    if (options.mask !== undefined) {
      const keyPadding = tf.reshape(tf.sub(1, tf.cast(options.mask, 'float32')), [batch, 1, 1, length]);
      blocked = blocked === null ? keyPadding : tf.maximum(blocked, keyPadding);
    }
    const masked = tf.reshape(replaceMasked(logits, self, blocked), [groups, length, length]) as tf.Tensor3D;
    const { out } = softmaxAttend(
      masked,
      tf.reshape(v, [groups, length, valueDepth]),
      options.dropout ?? 0,
      options.dropoutSeed,
    );
    return tf.reshape(out, [batch, heads, length, valueDepth]) as tf.Tensor4D;
  });
}
