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
  HASH_FAMILIES,
  bucketFactors,
  checkMask,
  defaultNBuckets,
  estimateHashBytes,
  hashBuckets,
  randomRotations,
  rotationColumns,
  totalBuckets,
  type HashFamilyName,
  type NBuckets,
} from './hashing.js';
import { batchMatMul } from './kernels/batch_matmul.js';
import { maskedSoftmax } from './kernels/masked_softmax.js';
import { formatBytes, guardMemory, recordingGradients } from './memory.js';
import { MAX_SORT_KEYS, sortItemsOnHost } from './sorting.js';
import { gatherRowsSummedUnchecked, permuteRowsUnchecked, untaped } from './ops.js';
import { assertSeed, type Seed } from './random.js';
import {
  assertBoolean,
  assertFinite,
  assertFloat,
  assertMemoryLimit,
  assertNonNegativeInteger,
  assertOneOf,
  assertPositiveInteger,
  assertRank,
  assertRate,
  describeValue,
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
  /**
   * [B, T] padding mask (float32, int32 or bool) of 1 (keep) and 0 (padding);
   * any other value is refused. Outputs at padded positions are unspecified.
   * Default: no padding.
   */
  mask?: tf.Tensor2D;
  /** Dropout rate on the attention weights, in [0, 1). Default 0 (none). */
  dropout?: number;
  /** Seed of the dropout mask (an integer in [0, 2^31 − 1]), so a recomputation can reproduce it. Default: random. */
  dropoutSeed?: Seed;
  /**
   * Refuse calls estimated to need more than this many bytes (what the call
   * allocates, on top of what is already in use). Default: 3.25 GiB on wasm
   * (its heap corrupts past ≈3.6 GiB), 16 GiB elsewhere.
   */
  memoryLimitBytes?: number;
  /**
   * Check that qk and v hold no NaN or ±Infinity before attending, and throw
   * naming the first one (one value of every output they reach would be
   * NaN). Costs one pass over the inputs and one read-back of a boolean.
   * Default false: non-finite inputs propagate, as in other tfjs ops.
   */
  checkFinite?: boolean;
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
  /**
   * Chunks before its own that a chunk attends to. Each chunk is attended to
   * at most once: when 1 + before + after exceeds the number of chunks
   * N = R·T/C, a chunk attends to all N (no key counted twice). Default 1.
   */
  numChunksBefore?: number;
  /** Chunks after its own that a chunk attends to (at most once each, as for numChunksBefore). Default 0. */
  numChunksAfter?: number;
  /** float32 [D, R, Σ Ki/2] rotations; wins over `seed`. Default: drawn from `seed`. */
  rotations?: tf.Tensor3D;
  /** Seed of the rotations (an integer in [0, 2^31 − 1]). Default: fresh randomness on every call. */
  seed?: Seed;
  /**
   * The hash family: 'rotation' (the Reformer's angular LSH) or 'simhash'
   * (log2 K random-hyperplane sign bits; K a power of two). Default 'rotation'.
   */
  hashFamily?: HashFamilyName;
  /**
   * Logit elements per block of chunks: bounds the memory of a call (the
   * result does not depend on it; the memory guard counts it). Default
   * {@link BLOCK_LOGITS} (1M, 4 MiB per tensor).
   */
  blockLogits?: number;
}

/** The settings {@link lshAttention} resolves from its options and input shape. */
export interface ResolvedLSHSettings {
  nHashes: number;
  nBuckets: NBuckets;
  chunkLength: number;
  /** The chunks before, after clamping to the number of chunks (see {@link LSHAttentionOptions.numChunksBefore}). */
  numChunksBefore: number;
  /** The chunks after, after clamping. */
  numChunksAfter: number;
  hashFamily: HashFamilyName;
  blockLogits: number;
}

/** Default chunk length (design §9). */
export const DEFAULT_CHUNK_LENGTH = 64;

/**
 * The smallest length ≥ `length` for which R·T is a multiple of C: what the
 * layers pad to.
 */
export function validLength(length: number, nHashes: number, chunkLength: number): number {
  assertNonNegativeInteger('validLength', 'length', length);
  assertPositiveInteger('validLength', 'nHashes', nHashes);
  assertPositiveInteger('validLength', 'chunkLength', chunkLength);
  const step = chunkLength / gcd(nHashes, chunkLength);
  return Math.ceil(length / step) * step;
}

/** Greatest common divisor of two positive integers. */
function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Resolves and validates the LSH settings for an input of length T and head
 * size D (exported so the layers and benchmark resolve them the same way).
 */
export function resolveLSHSettings(
  who: string,
  length: number,
  dim: number,
  options: Pick<
    LSHAttentionOptions,
    'nBuckets' | 'nHashes' | 'chunkLength' | 'numChunksBefore' | 'numChunksAfter' | 'rotations' | 'hashFamily' | 'blockLogits'
  >,
): ResolvedLSHSettings {
  if (options === null || typeof options !== 'object') {
    throw new Error(`${who}: options must be an object, got ${describeValue(options)}`);
  }
  const chunkLength = options.chunkLength ?? DEFAULT_CHUNK_LENGTH;
  assertPositiveInteger(who, 'chunkLength', chunkLength);
  let numChunksBefore = options.numChunksBefore ?? 1;
  let numChunksAfter = options.numChunksAfter ?? 0;
  assertNonNegativeInteger(who, 'numChunksBefore', numChunksBefore);
  assertNonNegativeInteger(who, 'numChunksAfter', numChunksAfter);
  const hashFamily = options.hashFamily ?? 'rotation';
  assertOneOf(who, 'hashFamily', hashFamily, HASH_FAMILIES);
  const blockLogits = options.blockLogits ?? BLOCK_LOGITS;
  assertPositiveInteger(who, 'blockLogits', blockLogits);
  const rotations = options.rotations;
  if (rotations !== undefined) {
    assertRank(who, 'rotations', rotations, 3, '[D, R, K/2]');
    assertFloat(who, 'rotations', rotations);
  }
  let nHashes = options.nHashes ?? (rotations ? rotations.shape[1] : 1);
  assertPositiveInteger(who, 'nHashes', nHashes);
  let nBuckets: NBuckets;
  if (options.nBuckets !== undefined) {
    nBuckets = options.nBuckets;
  } else if (rotations) {
    nBuckets = hashFamily === 'simhash' ? 2 ** rotations.shape[2] : 2 * rotations.shape[2];
  } else if (hashFamily === 'simhash') {
    // The default count rounded up to a power of two (SimHash packs log2 K bits).
    nBuckets = 2 ** Math.ceil(Math.log2(totalBuckets(defaultNBuckets(Math.max(length, 1), chunkLength))));
  } else {
    nBuckets = defaultNBuckets(Math.max(length, 1), chunkLength);
  }
  bucketFactors(who, nBuckets);
  if (hashFamily === 'simhash') rotationColumns(nBuckets, 'simhash'); // validates a power of two
  if (rotations) {
    const expected = [dim, nHashes, rotationColumns(nBuckets, hashFamily)];
    if (rotations.shape.some((d, i) => d !== expected[i])) {
      throw new Error(
        `${who}: rotations must have shape [D, nHashes, ${hashFamily === 'simhash' ? 'log2 K' : 'ΣK/2'}] = ${shapeString(expected)} for D=${dim}, ` +
          `nHashes=${nHashes}, nBuckets=${JSON.stringify(nBuckets)}, got ${shapeString(rotations.shape)}`,
      );
    }
    nHashes = rotations.shape[1];
  }
  const sortKeys = nHashes * (totalBuckets(nBuckets) + 1);
  if (sortKeys > MAX_SORT_KEYS) {
    throw new Error(
      `${who}: nHashes·(K+1) = ${nHashes}·${totalBuckets(nBuckets) + 1} = ${sortKeys} sort keys, more than 2^24 ` +
        `(the bucket sort counts every key); use fewer buckets: the default K = 2·T/C is what chunks of C need`,
    );
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
  // Each chunk at most once: a window of more chunks than there are would count keys twice
  // (rolled copies of the same chunk), changing the softmax. It covers all N chunks instead.
  const numChunks = (nHashes * length) / chunkLength;
  if (numChunks > 0 && numChunksBefore + numChunksAfter + 1 > numChunks) {
    numChunksBefore = Math.min(numChunksBefore, numChunks - 1);
    numChunksAfter = numChunks - 1 - numChunksBefore;
  }
  return { nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter, hashFamily, blockLogits };
}

/** What {@link checkInputs} returns: the sizes and the mask's values (read once). */
interface CheckedInputs {
  batch: number;
  heads: number;
  length: number;
  dim: number;
  valueDim: number;
  /** The padding mask's values [B·T], or null. */
  padding: Float32Array | Int32Array | Uint8Array | null;
}

/**
 * Checks qk, v, the mask and the options both attention functions take.
 * B and T may be 0 (an empty result); H, D and Dv may not.
 */
function checkInputs(who: string, qk: unknown, v: unknown, options: AttentionOptions): CheckedInputs {
  if (options === null || typeof options !== 'object') {
    throw new Error(`${who}: options must be an object, got ${describeValue(options)}`);
  }
  assertRank(who, 'qk', qk, 4, '[B, H, T, D]');
  assertRank(who, 'v', v, 4, '[B, H, T, Dv]');
  assertFloat(who, 'qk', qk);
  assertFloat(who, 'v', v);
  const [batch, heads, length, dim] = qk.shape;
  if (v.shape[0] !== batch || v.shape[1] !== heads || v.shape[2] !== length) {
    throw new Error(
      `${who}: v must match qk in B, H and T: qk is ${shapeString(qk.shape)} [B, H, T, D], ` +
        `v is ${shapeString(v.shape)}, expected [${batch}, ${heads}, ${length}, Dv]`,
    );
  }
  for (const [what, size] of [
    ['H', heads],
    ['D', dim],
    ['Dv', v.shape[3]],
  ] as const) {
    assertPositiveInteger(who, `the size ${what} of the inputs`, size);
  }
  if (options.causal !== undefined) assertBoolean(who, 'causal', options.causal);
  if (options.dropout !== undefined) assertRate(who, 'dropout', options.dropout);
  assertSeed(who, options.dropoutSeed, 'dropoutSeed');
  if (options.memoryLimitBytes !== undefined) assertMemoryLimit(who, options.memoryLimitBytes);
  if (options.checkFinite !== undefined) assertBoolean(who, 'checkFinite', options.checkFinite);
  const padding = options.mask !== undefined ? checkMask(who, options.mask, batch, length) : null;
  if (options.checkFinite === true) {
    const fix =
      'every output that attends to it would be NaN (a padded position too: 0 · NaN is NaN); ' +
      'find where it comes from, or replace it, e.g. tf.where(tf.isFinite(x), x, tf.zerosLike(x))';
    assertFinite(who, 'qk', qk, fix);
    assertFinite(who, 'v', v, fix);
  }
  return { batch, heads, length, dim, valueDim: v.shape[3] as number, padding };
}

/** Unit-length keys: k = x / sqrt(mean(x²) + ε) / sqrt(D). Shape preserved. */
function normaliseKeys(x: tf.Tensor): tf.Tensor {
  const dim = x.shape[x.rank - 1];
  const meanSquare = tf.mean(tf.square(x), -1, true);
  return tf.mul(x, tf.mul(tf.rsqrt(tf.add(meanSquare, KEY_NORM_EPSILON)), 1 / Math.sqrt(dim)));
}


/**
 * Logit elements per block: the chunk attention runs on blocks of chunks of
 * about this many [C × L] logits, so memory stays bounded at any length.
 */
export const BLOCK_LOGITS = 1 << 20;

/** How the R·T/C chunks of the G = B·H groups are cut into blocks. */
interface BlockPlan {
  /** Groups handled together (un-sorted and combined together). */
  groupsPerBatch: number;
  /** Chunks per block within one group (all of them when whole groups fit). */
  chunksPerBlock: number;
}

function planBlocks(numChunks: number, chunkLength: number, window: number, blockLogits: number): BlockPlan {
  const perGroup = numChunks * chunkLength * window;
  if (perGroup <= blockLogits) return { groupsPerBatch: Math.max(1, Math.floor(blockLogits / perGroup)), chunksPerBlock: numChunks };
  return { groupsPerBatch: 1, chunksPerBlock: Math.max(1, Math.floor(blockLogits / (chunkLength * window))) };
}

/** The sizes an estimate needs. */
export interface AttentionShape {
  batch: number;
  heads: number;
  length: number;
  dim: number;
  valueDim: number;
}

/**
 * Bytes one block of attended logits allocates, as tfjs counts them
 * (`tf.memory().numBytes` counts a reshape's bytes again): per logit, the
 * logits, the fill mask and the weights (3 floats; the cpu backend's softmax
 * runs as tf ops, 4 floats more; dropout 4 more); per gathered key row its
 * vector (gather, reshape and 4 normalisation steps) and value (gather,
 * reshape); per query row its vector and output (gather or product, reshape).
 */
function blockBytes(logits: number, queryRows: number, keyRows: number, shape: AttentionShape, extraPerLogit: number): number {
  return 4 * ((3 + extraPerLogit) * logits + keyRows * (6 * shape.dim + 2 * shape.valueDim) + 2 * queryRows * (shape.dim + shape.valueDim));
}

/**
 * Under a gradient tape every block's intermediates are kept for the backward
 * pass, which adds its own (gradients of each): the peak is about 2–2.3 times
 * the blocks' bytes (measured on wasm, T = 1024–2048, D/C from 1/8 to 4:
 * test/hardening/measure_memory.ts); 3 leaves a margin.
 */
const LSH_TAPE_FACTOR = 3;
/** Bytes per B·H·T² element of full attention under a tape (measured 64–69 on wasm), with a margin. */
const FULL_TAPE_BYTES_PER_LOGIT = 80;

/** What an lshAttention call allocates, by step (bytes, as `tf.memory().numBytes` counts them). */
export interface LSHAttentionMemory {
  /** The hashing step (rotations, projections, argmax temporaries): freed before the blocks run. */
  hashing: number;
  /** The chunk attention: the largest block and a batch's outputs, or all blocks under a tape. */
  attention: number;
  /** What lives through the call: bucket ids, views of the inputs, the output. */
  kept: number;
  /** The estimate: kept + max(hashing, attention). */
  total: number;
}

/**
 * What an lshAttention call allocates, by step: forward, or forward with its
 * backward pass when `recording` (a gradient tape keeps every block). An upper
 * bound of the peak of `tf.memory().numBytes` above its value before the call
 * (measured on wasm: test/hardening/measure_memory.ts).
 */
export function lshAttentionMemory(shape: AttentionShape, settings: ResolvedLSHSettings, recording = false): LSHAttentionMemory {
  const groups = shape.batch * shape.heads;
  const items = settings.nHashes * shape.length;
  const { chunkLength } = settings;
  const window = chunkLength * (1 + settings.numChunksBefore + settings.numChunksAfter);
  const numChunks = items / chunkLength;
  const plan = planBlocks(numChunks, chunkLength, window, settings.blockLogits);
  const batchGroups = Math.min(plan.groupsPerBatch, groups);
  const blockChunks = Math.min(plan.chunksPerBlock, numChunks) * batchGroups;
  const softmaxExtra = tf.getBackend() === 'wasm' ? 0 : 4;
  const dropoutExtra = 4;
  const hashing =
    4 * shape.dim * settings.nHashes * rotationColumns(settings.nBuckets, settings.hashFamily) + // rotations
    estimateHashBytes(groups * shape.length, shape.dim, settings.nHashes, settings.nBuckets, settings.hashFamily);
  const block = blockBytes(blockChunks * chunkLength * window, blockChunks * chunkLength, blockChunks * window, shape, softmaxExtra + dropoutExtra);
  // A batch of groups: its blocks' outputs and statistics [items, Dv + 2], then un-sorted (concatenated,
  // permuted) and combined (per-round weights [items], weighted outputs): ≈ 5 copies and 10 floats per item.
  const batchItems = batchGroups * items;
  const batch = 4 * batchItems * (5 * (shape.valueDim + 2) + 10);
  const allBlocks = blockBytes(groups * items * window, groups * items, groups * numChunks * window, shape, softmaxExtra + dropoutExtra);
  const attention = recording ? LSH_TAPE_FACTOR * allBlocks + batch : block + batch;
  const kept = 4 * (2 * groups * items + groups * shape.length * (shape.dim + 4 * shape.valueDim)); // buckets, input views, outputs
  return { hashing, attention, kept, total: kept + Math.max(hashing, attention) };
}

/**
 * Bytes estimate of an lshAttention call: forward, or forward with its
 * backward pass when `recording` (a gradient tape keeps every block).
 * See {@link lshAttentionMemory} for the parts.
 */
export function estimateLSHAttentionBytes(shape: AttentionShape, settings: ResolvedLSHSettings, recording = false): number {
  return lshAttentionMemory(shape, settings, recording).total;
}

/** Bytes estimate of a fullAttention call: forward (heads one at a time), or with its backward pass when `recording`. */
export function estimateFullAttentionBytes(shape: AttentionShape, recording = false): number {
  const groups = shape.batch * shape.heads;
  if (recording) {
    return FULL_TAPE_BYTES_PER_LOGIT * groups * shape.length * shape.length + 16 * groups * shape.length * (shape.dim + shape.valueDim);
  }
  // [T, T]: the mask, and one head's logits and weights, with the softmax's working copies (+ slack); the cpu
  // backend's softmax runs as tf ops (more copies: measured 5.1 floats per T² element at T = 1024; wasm 3–4.3).
  const perLogit = tf.getBackend() === 'wasm' ? 5 : 7;
  return 4 * (perLogit * shape.length * shape.length + 4 * groups * shape.length * (shape.dim + shape.valueDim));
}

/** The host-side sort of one call: what the blocks are built from. */
interface HostSort {
  /** sorted[g·R·T + p] = the item (r·T + i) at sorted place p of group g. */
  sorted: Int32Array;
  /** [B·T] padding mask (1 keep, 0 pad), or null. */
  padding: Float32Array | Int32Array | Uint8Array | null;
}

/**
 * Index and mask arrays of one block of chunks (built on the host: integer
 * work, no gradient, and much cheaper there than as broadcast tensor ops).
 * fill is 0 where a logit is kept, else the logit that replaces it.
 */
function buildBlock(
  host: HostSort,
  dims: { heads: number; length: number; items: number; numChunks: number; chunkLength: number; before: number; after: number },
  chunks: Array<[number, number]>,
  causal: boolean,
): { queryRows: Int32Array; keyRows: Int32Array; fill: Float32Array } {
  const { heads, length, items, numChunks, chunkLength, before, after } = dims;
  const window = chunkLength * (1 + before + after);
  const count = chunks.length;
  const queryRows = new Int32Array(count * chunkLength);
  const keyRows = new Int32Array(count * window);
  const fill = new Float32Array(count * chunkLength * window);
  const queryPositions = new Int32Array(chunkLength);
  const keyPositions = new Int32Array(window);
  const keyPadded = new Uint8Array(window);
  for (let n = 0; n < count; n++) {
    const [group, chunk] = chunks[n];
    const sortedBase = group * items;
    const rowBase = group * length;
    const maskBase = Math.floor(group / heads) * length;
    for (let c = 0; c < chunkLength; c++) {
      const position = host.sorted[sortedBase + chunk * chunkLength + c] % length;
      queryPositions[c] = position;
      queryRows[n * chunkLength + c] = rowBase + position;
    }
    let l = 0;
    for (let shift = -before; shift <= after; shift++) {
      const neighbour = (((chunk + shift) % numChunks) + numChunks) % numChunks;
      for (let c = 0; c < chunkLength; c++, l++) {
        const position = host.sorted[sortedBase + neighbour * chunkLength + c] % length;
        keyPositions[l] = position;
        keyPadded[l] = host.padding !== null && host.padding[maskBase + position] === 0 ? 1 : 0;
        keyRows[n * window + l] = rowBase + position;
      }
    }
    let offset = n * chunkLength * window;
    for (let c = 0; c < chunkLength; c++) {
      const query = queryPositions[c];
      for (let k = 0; k < window; k++, offset++) {
        const key = keyPositions[k];
        if (key === query) {
          fill[offset] = SELF_ATTENTION_LOGIT;
        } else if (keyPadded[k] === 1 || (causal && key > query)) {
          fill[offset] = MASKED_LOGIT;
        }
      }
    }
  }
  return { queryRows, keyRows, fill };
}

/**
 * Reformer LSH attention with shared queries and keys.
 *
 * Every (round, position) item is hashed with random rotations, the R·T items
 * are sorted by (round, bucket, position) and cut into chunks of C, and each
 * chunk attends to itself and its `numChunksBefore`/`numChunksAfter`
 * neighbours. Rounds are combined by their log-sum-exp weights. The chunks
 * are processed in blocks, so memory stays bounded at any length.
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
  const { batch, heads, length, dim, valueDim, padding } = checkInputs(who, qk, v, options);
  assertSeed(who, options.seed);
  const settings = resolveLSHSettings(who, length, dim, options);
  const { nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter, hashFamily } = settings;
  const memory = lshAttentionMemory({ batch, heads, length, dim, valueDim }, settings, recordingGradients());
  const window = chunkLength * (1 + numChunksBefore + numChunksAfter); // L
  const queries = batch * heads * nHashes * length;
  const hashingDominates = memory.hashing >= memory.attention;
  guardMemory(
    who,
    memory.total,
    `hashing ${formatBytes(memory.hashing)}: B·H·R·T = ${queries} vectors × ${rotationColumns(nBuckets, hashFamily)} projections; ` +
      `attention ${formatBytes(memory.attention)}: ${queries} queries × ${window} keys` +
      (recordingGradients() ? ', all kept by the gradient tape' : `, in blocks of ≤ ${settings.blockLogits} logits`),
    hashingDominates
      ? `Use fewer buckets (nBuckets), or factorise them (nBuckets [K1, K2] costs (K1 + K2)/2 projections for K1·K2 buckets), ` +
          `fewer rounds (nHashes), or fewer heads or a smaller batch per call`
      : `Use fewer heads or a smaller batch per call, fewer rounds (nHashes), or a smaller chunkLength` +
          (recordingGradients() ? '' : `, or a smaller blockLogits (default ${BLOCK_LOGITS})`),
    options.memoryLimitBytes,
  );
  const dropout = options.dropout ?? 0;
  if (batch === 0 || length === 0) return tf.zeros([batch, heads, length, valueDim]) as tf.Tensor4D;
  return tf.tidy(() => {
    const groups = batch * heads; // G = B·H
    const items = nHashes * length; // R·T
    const numChunks = items / chunkLength; // N

    // 1–2. Hash (int32 [B, H, R, T], padding → bucket K) and sort; the sort goes to the host.
    // Integer work, off the gradient tape (which would keep every projection until the backward pass).
    const buckets = untaped(() => {
      const rotations = options.rotations ?? randomRotations({ dim, nHashes, nBuckets, seed: options.seed, hashFamily });
      return hashBuckets(qk, rotations, { nBuckets, mask: options.mask, hashFamily, memoryLimitBytes: options.memoryLimitBytes });
    });
    // The sort is integer work: a counting sort on the host (the same order as sortItems).
    const host: HostSort = {
      sorted: sortItemsOnHost(buckets.dataSync() as Int32Array, groups, nHashes, length, totalBuckets(nBuckets)).sorted,
      padding,
    };
    const dims = { heads, length, items, numChunks, chunkLength, before: numChunksBefore, after: numChunksAfter };
    const qkRows = tf.reshape(qk, [groups * length, dim]) as tf.Tensor2D;
    const vRows = tf.reshape(v, [groups * length, valueDim]) as tf.Tensor2D;
    const plan = planBlocks(numChunks, chunkLength, window, settings.blockLogits);

    // 3–5. Per batch of groups: blocks of chunks attend; un-sort; combine rounds.
    const outputs: tf.Tensor[] = [];
    let blockIndex = 0;
    for (let g0 = 0; g0 < groups; g0 += plan.groupsPerBatch) {
      const g1 = Math.min(groups, g0 + plan.groupsPerBatch);
      const blockOutputs: tf.Tensor[] = []; // [n·C, Dv] per block, sorted order
      const blockStats: tf.Tensor[] = []; // [n·C, 2]: row maximum, log-sum
      for (let g = g0; g < g1; g += plan.chunksPerBlock === numChunks ? g1 - g0 : 1) {
        const blockGroups = plan.chunksPerBlock === numChunks ? [g0, g1] : [g, g + 1];
        for (let j0 = 0; j0 < numChunks; j0 += plan.chunksPerBlock) {
          const chunks: Array<[number, number]> = [];
          for (let bg = blockGroups[0]; bg < blockGroups[1]; bg++) {
            for (let j = j0; j < Math.min(numChunks, j0 + plan.chunksPerBlock); j++) chunks.push([bg, j]);
          }
          const block = buildBlock(host, dims, chunks, options.causal === true);
          const seed = options.dropoutSeed === undefined ? undefined : options.dropoutSeed + blockIndex;
          // Each block in its own scope: its intermediates are freed as soon as it is done
          // (under a gradient tape, what the backward pass needs is kept by the tape).
          const [blockOut, blockStat] = tf.tidy(() => {
            const count = chunks.length;
            const queryRows = tf.tensor1d(block.queryRows, 'int32');
            const keyRows = tf.tensor1d(block.keyRows, 'int32');
            const queries = tf.reshape(gatherRowsSummedUnchecked(qkRows, queryRows), [count, chunkLength, dim]);
            const keys = normaliseKeys(tf.reshape(gatherRowsSummedUnchecked(qkRows, keyRows), [count, window, dim]));
            const values = tf.reshape(gatherRowsSummedUnchecked(vRows, keyRows), [count, window, valueDim]) as tf.Tensor3D;
            // Many small products: batchMatMul (our SIMD kernel on wasm, tf.matMul elsewhere).
            const logits = batchMatMul(queries as tf.Tensor3D, keys as tf.Tensor3D, false, true); // [n, C, L]
            // Masks and softmax in one kernel on wasm (plain tf ops elsewhere): fill replaces masked logits.
            const softmax = maskedSoftmax(logits, tf.tensor3d(block.fill, [count, chunkLength, window]));
            const { rowMax, logSum } = softmax;
            const weights = dropout > 0 ? (tf.dropout(softmax.weights, dropout, undefined, seed) as tf.Tensor3D) : softmax.weights;
            const out = batchMatMul(weights, values);
            return [
              tf.reshape(out, [count * chunkLength, valueDim]),
              tf.reshape(tf.concat([rowMax, logSum], 2), [count * chunkLength, 2]),
            ];
          });
          blockOutputs.push(blockOut);
          blockStats.push(blockStat);
          blockIndex++;
        }
      }
      // Sorted order of groups g0..g1 → position-major item order (g, i, r), so rounds are
      // combined along the last axis.
      const batchGroups = g1 - g0;
      const toItems = new Int32Array(batchGroups * items); // row (g, i, r) ← sorted row
      const toSorted = new Int32Array(batchGroups * items); // sorted row ← row (g, i, r) (the inverse)
      for (let g = 0; g < batchGroups; g++) {
        const base = g * items;
        for (let p = 0; p < items; p++) {
          const item = host.sorted[(g0 + g) * items + p]; // r·T + i
          const target = base + (item % length) * nHashes + Math.floor(item / length);
          toItems[target] = base + p;
          toSorted[base + p] = target;
        }
      }
      outputs.push(
        tf.tidy(() => {
          const toItemsT = tf.tensor1d(toItems, 'int32');
          const toSortedT = tf.tensor1d(toSorted, 'int32');
          const unsort = (blocks: tf.Tensor[]) =>
            permuteRowsUnchecked((blocks.length === 1 ? blocks[0] : concatMany(blocks)) as tf.Tensor2D, toItemsT, toSortedT);
          return combineRounds(unsort(blockOutputs), unsort(blockStats), batchGroups * length, nHashes, valueDim);
        }),
      );
      tf.dispose([...blockOutputs, ...blockStats]);
    }
    const combined = outputs.length === 1 ? outputs[0] : concatMany(outputs);
    return tf.reshape(combined, [batch, heads, length, valueDim]) as tf.Tensor4D;
  });
}

/**
 * Combines rounds: outputs [P·R, Dv] and (row maximum, log-sum) [P·R, 2] of
 * P = G·T positions, rounds last → [P, Dv], weighting round r by
 * exp(lse_r − logsumexp_r(lse)), computed on differences of the maxima so
 * float32 keeps its precision (design §5).
 */
function combineRounds(outputs: tf.Tensor2D, stats: tf.Tensor2D, positions: number, nHashes: number, valueDim: number): tf.Tensor {
  if (nHashes === 1) return outputs;
  const [roundMax, roundLogSum] = tf.split(tf.reshape(stats, [positions, nHashes, 2]), 2, 2).map((t) => tf.reshape(t, [positions, nHashes]));
  const relative = tf.add(tf.sub(roundMax, tf.max(roundMax, 1, true)), roundLogSum); // [P, R]
  const roundWeights = tf.exp(tf.sub(relative, tf.logSumExp(relative, 1, true)));
  // [P, 1, R]·[P, R, Dv] → [P, 1, Dv]: the weighted sum as many small products.
  const weighted = batchMatMul(
    tf.reshape(roundWeights, [positions, 1, nHashes]) as tf.Tensor3D,
    tf.reshape(outputs, [positions, nHashes, valueDim]) as tf.Tensor3D,
  );
  return tf.reshape(weighted, [positions, valueDim]);
}

/** Concatenates many tensors along axis 0 in groups (one concat of thousands overflows the call stack). */
function concatMany(tensors: tf.Tensor[]): tf.Tensor {
  let level = tensors;
  while (level.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < level.length; i += 256) next.push(level.length - i === 1 ? level[i] : tf.concat(level.slice(i, i + 256), 0));
    level = next;
  }
  return level[0];
}

/**
 * keep and fill [T, T] of full attention (logits·keep + fill replaces masked
 * logits), for batch element `b`'s padding; built on the host.
 */
function fullMasks(length: number, causal: boolean, padding: ArrayLike<number> | null, b: number): tf.Tensor3D {
  const fill = new Float32Array(length * length);
  for (let i = 0, offset = 0; i < length; i++) {
    for (let j = 0; j < length; j++, offset++) {
      if (i === j) fill[offset] = SELF_ATTENTION_LOGIT;
      else if ((causal && j > i) || (padding !== null && padding[b * length + j] === 0)) fill[offset] = MASKED_LOGIT;
    }
  }
  return tf.tensor3d(fill, [1, length, length]);
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
  const { batch, heads, length, dim, valueDim, padding } = checkInputs(who, qk, v, options);
  guardMemory(
    who,
    estimateFullAttentionBytes({ batch, heads, length, dim, valueDim }, recordingGradients()),
    `B·H·T² = ${(batch * heads * length * length).toExponential(2)} attention logits`,
    'Use lshAttention, a shorter T, or fewer heads or a smaller batch per call',
    options.memoryLimitBytes,
  );
  const dropout = options.dropout ?? 0;
  if (batch === 0 || length === 0) return tf.zeros([batch, heads, length, valueDim]) as tf.Tensor4D;
  const groups = batch * heads;
  const perHead: tf.Tensor[] = [];
  let maskBatch = -1;
  let fill: tf.Tensor3D | null = null;
  const qkHeads = tf.reshape(qk, [groups, length * dim]) as tf.Tensor2D;
  const vHeads = tf.reshape(v, [groups, length * valueDim]) as tf.Tensor2D;
  try {
    for (let g = 0; g < groups; g++) {
      // One head at a time, each in its own scope, with 2-D matMuls (the fast kind on wasm).
      const b = Math.floor(g / heads);
      if (fill === null || (padding !== null && b !== maskBatch)) {
        fill?.dispose();
        fill = fullMasks(length, options.causal === true, padding, b);
        maskBatch = b;
      }
      const headFill = fill;
      perHead.push(
        tf.tidy(() => {
          const index = tf.tensor1d([g], 'int32');
          const query = tf.reshape(gatherRowsSummedUnchecked(qkHeads, index), [length, dim]) as tf.Tensor2D;
          const value = tf.reshape(gatherRowsSummedUnchecked(vHeads, index), [length, valueDim]) as tf.Tensor2D;
          const keysT = tf.transpose(normaliseKeys(query)) as tf.Tensor2D; // [D, T]
          const logits = tf.reshape(tf.matMul(query, keysT), [1, length, length]) as tf.Tensor3D;
          // The same fused masked softmax as LSH attention (a wasm kernel; tf ops elsewhere).
          let { weights } = maskedSoftmax(logits, headFill);
          if (dropout > 0) {
            const seed = options.dropoutSeed === undefined ? undefined : options.dropoutSeed + g;
            weights = tf.dropout(weights, dropout, undefined, seed) as tf.Tensor3D;
          }
          return tf.matMul(tf.reshape(weights, [length, length]), value);
        }),
      );
    }
    return tf.tidy(() => tf.reshape(tf.concat(perHead, 0), [batch, heads, length, valueDim]) as tf.Tensor4D);
  } finally {
    tf.dispose([...perHead, qkHeads, vHeads]);
    fill?.dispose();
  }
}
