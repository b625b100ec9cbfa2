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
import { KEY_NORM_EPSILON, chunkLogits, chunkOutputs, normaliseKeyRows } from './kernels/chunk_products.js';
import { canMaskAtPositions, maskedSoftmax, maskedSoftmaxAtPositions, type MaskedSoftmaxResult } from './kernels/masked_softmax.js';
import { assertHostReadable, softwareWebGPU } from './host_reads.js';
import { formatBytes, guardMemory, recordingGradients } from './memory.js';
import { runInParallel } from './parallel.js';
import { MAX_SORT_KEYS, sortItemsOnHost } from './sorting.js';
import { gatherRowsUnchecked, matMulTransposeA } from './ops.js';
import { assertSeed, freshSeed, type Seed } from './random.js';
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
  nonFiniteError,
  shapeString,
} from './validate.js';

/** Logit of a masked key (causal or padding): replaces the logit. */
export const MASKED_LOGIT = -1e9;
/** Logit of a query's own key: used only when nothing else is allowed. */
export const SELF_ATTENTION_LOGIT = -1e5;
export { KEY_NORM_EPSILON };

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
   * At or below this length T, compute exact attention ({@link fullAttention}:
   * the same logits and masks over all T keys) instead, where it is the
   * faster of the two. 0 turns it off. Default 0 here (the function computes
   * what it is asked); the LSHSelfAttention layer's default is
   * {@link DEFAULT_FULL_ATTENTION_THRESHOLD}.
   */
  fullAttentionThreshold?: number;
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
  /**
   * false: a key that a query sees several times is counted once, by
   * subtracting log(count + 1e-9) from every logit of it (after the masks),
   * as reformer-pytorch's and trax's `allow_duplicate_attention=False` do.
   * The count of (query position q, key position k) is, as there, the number
   * of rounds r in which k's round-r item lies in the window of q's round-r
   * item (the same chunk, or one of the chunks the window reaches; with
   * `attendAcrossBuckets: false` also in the same bucket). An appearance
   * across a round boundary (a chunk's look-back reaching the previous
   * round's last chunk) is counted only through that rule, so when the pair
   * never meets within one round its count is 0 and its logit is raised by
   * log(1e9) ≈ 20.7: reformer-pytorch's and trax's behaviour, kept so results
   * compare. Costs an extra [n, C, L] tensor per block and O(R) host work
   * per logit. Default true (the design's default: duplicates count).
   */
  allowDuplicateAttention?: boolean;
  /**
   * false: a query attends only to keys of its own bucket in the same round
   * (other keys of its window are masked as padding is, −1e9, which also
   * masks its own position's item of another round), as reformer-pytorch's
   * `attend_across_buckets=False`. Default true.
   */
  attendAcrossBuckets?: boolean;
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
  /** See {@link LSHAttentionOptions.allowDuplicateAttention}. */
  allowDuplicateAttention: boolean;
  /** See {@link LSHAttentionOptions.attendAcrossBuckets}. */
  attendAcrossBuckets: boolean;
}

/**
 * The LSHSelfAttention layer's default `fullAttentionThreshold`: at or below
 * this length it computes exact attention. The forward crossover measured on
 * wasm with `npm run bench:crossover` (B=1, H=8, D=64, R=4, C=64): full
 * attention faster up to T=1024, LSH from 1088; with the backward pass the
 * crossover is lower, between 768 and 832, so training at 832 < T ≤ 1024 is
 * faster with a threshold of 768 (README, "Exact attention when short";
 * bench/results/crossover-wasm*.md).
 */
export const DEFAULT_FULL_ATTENTION_THRESHOLD = 1024;

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
    | 'nBuckets'
    | 'nHashes'
    | 'chunkLength'
    | 'numChunksBefore'
    | 'numChunksAfter'
    | 'rotations'
    | 'hashFamily'
    | 'blockLogits'
    | 'allowDuplicateAttention'
    | 'attendAcrossBuckets'
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
  const allowDuplicateAttention = options.allowDuplicateAttention ?? true;
  assertBoolean(who, 'allowDuplicateAttention', allowDuplicateAttention);
  const attendAcrossBuckets = options.attendAcrossBuckets ?? true;
  assertBoolean(who, 'attendAcrossBuckets', attendAcrossBuckets);
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
  return { nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter, hashFamily, blockLogits, allowDuplicateAttention, attendAcrossBuckets };
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
const normaliseKeys = normaliseKeyRows;


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
 * A block's backward pass holds about twice what its forward pass does
 * (the recomputed block, and the gradients of its logits, queries, keys and
 * values).
 */
const LSH_BACKWARD_BLOCK_FACTOR = 2;

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
  // Dropout's scales; the duplicate correction's bias and biased logits.
  const dropoutExtra = 4 + (settings.allowDuplicateAttention === false ? 2 : 0);
  const hashing =
    4 * shape.dim * settings.nHashes * rotationColumns(settings.nBuckets, settings.hashFamily) + // rotations
    estimateHashBytes(groups * shape.length, shape.dim, settings.nHashes, settings.nBuckets, settings.hashFamily);
  const block = blockBytes(blockChunks * chunkLength * window, blockChunks * chunkLength, blockChunks * window, shape, softmaxExtra + dropoutExtra);
  // A batch of groups: its blocks' outputs and statistics [items, Dv + 2], then un-sorted (concatenated,
  // permuted) and combined (per-round weights [items], weighted outputs): ≈ 5 copies and 10 floats per item.
  const batchItems = batchGroups * items;
  const batch = 4 * batchItems * (5 * (shape.valueDim + 2) + 10);
  const attention = recording ? LSH_BACKWARD_BLOCK_FACTOR * block + batch : block + batch;
  // Buckets, input views, outputs; under a tape also what it keeps (inputs, output, round weights) and the
  // backward pass's dy, dqk, dv.
  const kept =
    4 * (2 * groups * items + groups * shape.length * (shape.dim + 4 * shape.valueDim)) +
    (recording ? 4 * groups * shape.length * (3 * shape.dim + 4 * shape.valueDim + settings.nHashes) : 0);
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

/**
 * Bytes estimate of a fullAttention call that runs `rows` query rows at a
 * time: forward, or with its backward pass when `recording` (the tape keeps
 * only the inputs; the backward pass rebuilds each block and sums key and
 * value gradients per head).
 */
export function estimateFullAttentionBytes(
  shape: AttentionShape,
  recording = false,
  rows = Math.max(1, Math.min(shape.length, Math.floor(FULL_BLOCK_LOGITS / shape.length))),
): number {
  const groups = shape.batch * shape.heads;
  const perHead = shape.length * (3 * shape.dim + 3 * shape.valueDim); // queries, keys (and transposed), values, outputs
  // One block's [rows, T] logits, mask, weights and the softmax's working copies (+ slack).
  const block = 8 * rows * shape.length;
  if (recording) {
    // Saved inputs, dy, and per head the inputs, transposes and the summed gradients; a block's backward holds about twice the forward's.
    return 4 * (2 * block + 3 * groups * perHead + 2 * groups * shape.length * (shape.dim + shape.valueDim));
  }
  return 4 * (block + 2 * groups * perHead);
}

/** The host-side sort of one call: what the blocks are built from. */
interface HostSort {
  /** sorted[g·R·T + p] = the item (r·T + i) at sorted place p of group g. */
  sorted: Int32Array;
  /** undo[g·R·T + t] = the sorted place of item t of group g (the inverse of `sorted`). */
  undo: Int32Array;
  /** buckets[g·R·T + t] = the bucket of item t (padding: K); kept only when `attendAcrossBuckets` is false. */
  buckets: Int32Array | null;
  /** [B·T] padding mask (1 keep, 0 pad), or null. */
  padding: Float32Array | Int32Array | Uint8Array | null;
}

/** Sizes a block of chunks is built from, and the rules of its masks. */
interface BlockDims {
  heads: number;
  length: number;
  nHashes: number;
  items: number;
  numChunks: number;
  chunkLength: number;
  before: number;
  after: number;
  /**
   * Local attention: chunks are positions in order and a window does not
   * roll over the ends (a neighbour outside [0, N) is masked), instead of
   * LSH's rolling over the whole flattened axis.
   */
  local: boolean;
  /** See {@link LSHAttentionOptions.allowDuplicateAttention}. */
  allowDuplicates: boolean;
  /** See {@link LSHAttentionOptions.attendAcrossBuckets}. */
  acrossBuckets: boolean;
}

/** Index and mask arrays of one block of chunks (see {@link buildBlock}). */
interface Block {
  /** [n·C] rows of the [G·T, ·] inputs the queries come from (g·T + i). */
  queryRows: Int32Array;
  /** [n·C] rows of the position-major round weights [G·T·R] of the queries ((g·T + i)·R + r). */
  queryItems: Int32Array;
  /** [n·L] rows of the inputs the keys (and values) come from. */
  keyRows: Int32Array;
  /** [n·C·L]: 0 where a logit is kept, else the logit that replaces it; null when the masks are given by {@link Block.positions}. */
  fill: Float32Array | null;
  /**
   * The masks as positions, for the wasm kernel that writes the fill itself
   * ({@link maskedSoftmaxAtPositions}): each query's and key's position and
   * −1 where the key is padding. Null when {@link Block.fill} is built.
   */
  positions: { queryPositions: Int32Array; keyPositions: Int32Array; keyMasked: Int32Array } | null;
  /** [n·C·L]: added to the kept logits (the duplicate correction, −log count), or null when there is none. */
  bias: Float32Array | null;
  /** [n·C]: 1 where the query keeps at least one logit, else 0 (every logit of its row replaced). */
  queryKept: Float32Array;
  /** [n·L]: 1 where the key slot is in the sequence, 0 for local attention's neighbours past the ends; null when all are. */
  keyInside: Uint8Array | null;
}

/** Added to a duplicate count before its log, as reformer-pytorch and trax do (a count of 0 gives +20.7). */
const DUPLICATE_COUNT_EPSILON = 1e-9;

/**
 * Index and mask arrays of one block of chunks (built on the host: integer
 * work, no gradient, and much cheaper there than as broadcast tensor ops).
 * Masks, in the order reformer-pytorch applies them (a later rule wins):
 * padded key or causal future → −1e9; the query's own position → −1e5;
 * with `acrossBuckets` false, a key of another (round, bucket) → −1e9; with
 * `allowDuplicates` false, −log(count + 1e-9) is then added to every logit;
 * with `local`, a neighbour chunk outside the sequence → −1e9.
 */
function buildBlock(host: HostSort, dims: BlockDims, chunks: Array<[number, number]>, causal: boolean): Block {
  const { heads, length, nHashes, items, numChunks, chunkLength, before, after, local, allowDuplicates, acrossBuckets } = dims;
  const window = chunkLength * (1 + before + after);
  const count = chunks.length;
  const queryRows = new Int32Array(count * chunkLength);
  const queryItems = new Int32Array(count * chunkLength);
  const keyRows = new Int32Array(count * window);
  // The plain masks (own position, padding, causal) as positions when the wasm kernel can write the fill
  // itself: a dense fill is n·C·L floats built here and copied to the heap, the positions n·(C + 2L) ints.
  const atPositions = !local && allowDuplicates && acrossBuckets && canMaskAtPositions(window);
  const positions = atPositions
    ? { queryPositions: new Int32Array(count * chunkLength), keyPositions: new Int32Array(count * window), keyMasked: new Int32Array(count * window) }
    : null;
  const fill = new Float32Array(atPositions ? 0 : count * chunkLength * window);
  const bias = allowDuplicates ? null : new Float32Array(count * chunkLength * window);
  const queryKept = new Float32Array(count * chunkLength);
  const queryPositions = new Int32Array(chunkLength);
  const queryItemIds = new Int32Array(chunkLength);
  const keyPositions = new Int32Array(window);
  const keyItemIds = new Int32Array(window);
  const keyPadded = new Uint8Array(window);
  const keyOutside = new Uint8Array(window);
  const keyInside = local ? new Uint8Array(count * window) : null;
  // Which chunk distances (query chunk − key chunk, mod N) a window spans, for the duplicate counts.
  const inWindow = new Uint8Array(Math.max(1, numChunks));
  for (let shift = -before; shift <= after; shift++) inWindow[(((-shift) % numChunks) + numChunks) % numChunks] = 1;
  for (let n = 0; n < count; n++) {
    const [group, chunk] = chunks[n];
    const sortedBase = group * items;
    const rowBase = group * length;
    const maskBase = Math.floor(group / heads) * length;
    for (let c = 0; c < chunkLength; c++) {
      const item = host.sorted[sortedBase + chunk * chunkLength + c]; // r·T + i
      const position = item % length;
      queryPositions[c] = position;
      queryItemIds[c] = item;
      queryRows[n * chunkLength + c] = rowBase + position;
      queryItems[n * chunkLength + c] = (rowBase + position) * nHashes + Math.floor(item / length);
    }
    let l = 0;
    for (let shift = -before; shift <= after; shift++) {
      const outside = local && (chunk + shift < 0 || chunk + shift >= numChunks);
      const neighbour = (((chunk + shift) % numChunks) + numChunks) % numChunks;
      for (let c = 0; c < chunkLength; c++, l++) {
        const item = host.sorted[sortedBase + neighbour * chunkLength + c];
        const position = item % length;
        keyPositions[l] = position;
        keyItemIds[l] = item;
        keyOutside[l] = outside ? 1 : 0;
        if (keyInside !== null) keyInside[n * window + l] = outside ? 0 : 1;
        keyPadded[l] = host.padding !== null && host.padding[maskBase + position] === 0 ? 1 : 0;
        keyRows[n * window + l] = rowBase + position;
      }
    }
    if (positions !== null) {
      // Which queries keep a logit, from the unpadded keys' lowest and highest position: a key is kept when it
      // is not the query's own position (and, causal, before it).
      let lowest = Number.POSITIVE_INFINITY;
      let highest = Number.NEGATIVE_INFINITY;
      for (let k = 0; k < window; k++) {
        positions.keyPositions[n * window + k] = keyPositions[k];
        positions.keyMasked[n * window + k] = -keyPadded[k];
        if (keyPadded[k] === 0) {
          if (keyPositions[k] < lowest) lowest = keyPositions[k];
          if (keyPositions[k] > highest) highest = keyPositions[k];
        }
      }
      for (let c = 0; c < chunkLength; c++) {
        const query = queryPositions[c];
        positions.queryPositions[n * chunkLength + c] = query;
        const kept = lowest > highest ? false : causal ? lowest < query : lowest !== highest || lowest !== query;
        queryKept[n * chunkLength + c] = kept ? 1 : 0;
      }
      continue;
    }
    let offset = n * chunkLength * window;
    for (let c = 0; c < chunkLength; c++) {
      const query = queryPositions[c];
      const queryItem = queryItemIds[c];
      let kept = 0;
      for (let k = 0; k < window; k++, offset++) {
        const key = keyPositions[k];
        if (keyOutside[k] === 1) {
          fill[offset] = MASKED_LOGIT;
        } else if (
          !acrossBuckets &&
          (Math.floor(keyItemIds[k] / length) !== Math.floor(queryItem / length) ||
            (host.buckets as Int32Array)[sortedBase + keyItemIds[k]] !== (host.buckets as Int32Array)[sortedBase + queryItem])
        ) {
          fill[offset] = MASKED_LOGIT;
        } else if (key === query) {
          fill[offset] = SELF_ATTENTION_LOGIT;
        } else if (keyPadded[k] === 1 || (causal && key > query)) {
          fill[offset] = MASKED_LOGIT;
        } else {
          kept = 1;
        }
        if (bias !== null) {
          // The rounds in which the key's item lies in the window of the query's item (and its bucket).
          let seen = 0;
          for (let r = 0; r < nHashes; r++) {
            const queryAt = host.undo[sortedBase + r * length + query];
            const keyAt = host.undo[sortedBase + r * length + key];
            const distance = (((Math.floor(queryAt / chunkLength) - Math.floor(keyAt / chunkLength)) % numChunks) + numChunks) % numChunks;
            if (inWindow[distance] === 1 && (acrossBuckets || (host.buckets as Int32Array)[sortedBase + r * length + query] === (host.buckets as Int32Array)[sortedBase + r * length + key])) seen++;
          }
          const correction = Math.log(seen + DUPLICATE_COUNT_EPSILON);
          if (fill[offset] === 0) bias[offset] = -correction;
          else fill[offset] -= correction; // still not 0: a replaced logit stays replaced
        }
      }
      queryKept[n * chunkLength + c] = kept;
    }
  }
  return { queryRows, queryItems, keyRows, fill: positions === null ? fill : null, bias, queryKept, keyInside, positions };
}

/** A block's masked softmax: from positions in the wasm kernel when the block has them, else with its dense fill. */
function blockSoftmax(block: Block, logits: tf.Tensor3D, causal: boolean): MaskedSoftmaxResult {
  if (block.positions !== null) return maskedSoftmaxAtPositions(logits, { ...block.positions, causal });
  return maskedSoftmax(logits, tf.tensor3d(block.fill as Float32Array, logits.shape));
}

/**
 * The blocks of one call, in the order both passes visit them: batches of
 * groups (un-sorted and combined together), and within a batch, blocks of
 * chunks. `index` numbers the blocks (it seeds each block's dropout).
 */
interface BlockVisit {
  index: number;
  chunks: Array<[number, number]>;
}

function* visitBlocks(groups: [number, number], numChunks: number, plan: BlockPlan, firstIndex: number): Generator<BlockVisit> {
  let index = firstIndex;
  // Whole groups fit in a block: one block per batch. Otherwise a group at a time, chunksPerBlock chunks per block.
  const wholeGroups = plan.chunksPerBlock === numChunks;
  const spans: Array<[number, number]> = wholeGroups
    ? [groups]
    : Array.from({ length: groups[1] - groups[0] }, (_, i) => [groups[0] + i, groups[0] + i + 1]);
  for (const [first, end] of spans) {
    for (let j0 = 0; j0 < numChunks; j0 += plan.chunksPerBlock) {
      const chunks: Array<[number, number]> = [];
      for (let group = first; group < end; group++) {
        for (let j = j0; j < Math.min(numChunks, j0 + plan.chunksPerBlock); j++) chunks.push([group, j]);
      }
      yield { index: index++, chunks };
    }
  }
}

/** Everything both passes of one lshAttention call share. */
interface LSHPass {
  host: HostSort;
  dims: BlockDims;
  plan: BlockPlan;
  groups: number;
  window: number;
  dim: number;
  valueDim: number;
  causal: boolean;
  dropout: number;
  /** Seed of block 0's dropout mask (block b uses dropoutSeed + b). */
  dropoutSeed: number;
  /** With `returnAttention`: every block's weights (before dropout), collected in the forward pass. */
  collect: { read: CollectRead; blocks: CollectedBlock[] } | null;
}

/** The dropout scales of a block (0 or 1 / (1 − rate)), the same in both passes. */
function dropoutScales(pass: LSHPass, blockIndex: number, shape: [number, number, number]): tf.Tensor3D {
  return tf.dropout(tf.ones(shape), pass.dropout, undefined, pass.dropoutSeed + blockIndex) as tf.Tensor3D;
}

/** A block's logits Q·Kᵀ [n, C, L], plus the duplicate correction when there is one (a constant: no gradient of its own). */
function blockLogits(block: Block, queries: tf.Tensor3D, keys: tf.Tensor3D, count: number, chunkLength: number, window: number): tf.Tensor3D {
  // Many small products: batchMatMul (our SIMD kernel on wasm, tf.matMul elsewhere).
  const logits = batchMatMul(queries, keys, false, true);
  return block.bias === null ? logits : (tf.add(logits, tf.tensor3d(block.bias, [count, chunkLength, window])) as tf.Tensor3D);
}

/** One block's queries, normalised keys and values, gathered from the input rows. */
function gatherBlock(pass: LSHPass, block: Block, count: number, qkRows: tf.Tensor2D, vRows: tf.Tensor2D) {
  const { chunkLength } = pass.dims;
  const keyRows = tf.tensor1d(block.keyRows, 'int32');
  const queries = tf.reshape(gatherRowsUnchecked(qkRows, tf.tensor1d(block.queryRows, 'int32')), [count, chunkLength, pass.dim]) as tf.Tensor3D;
  const rawKeys = tf.reshape(gatherRowsUnchecked(qkRows, keyRows), [count, pass.window, pass.dim]) as tf.Tensor3D;
  const values = tf.reshape(gatherRowsUnchecked(vRows, keyRows), [count, pass.window, pass.valueDim]) as tf.Tensor3D;
  return { queries, rawKeys, keys: normaliseKeys(rawKeys) as tf.Tensor3D, values };
}

/**
 * The forward pass (no gradient tape inside): every block attends, each
 * batch of groups is un-sorted and its rounds combined.
 *
 * @returns output [G·T, Dv] and the round weights [G·T·R] (position-major),
 *   which the backward pass needs.
 */
function lshForward(pass: LSHPass, qkRows: tf.Tensor2D, vRows: tf.Tensor2D): { output: tf.Tensor2D; roundWeights: tf.Tensor2D } {
  const { host, dims, plan, groups, valueDim } = pass;
  const { length, nHashes, items, numChunks, chunkLength } = dims;
  const outputs: tf.Tensor[] = [];
  const weights: tf.Tensor[] = [];
  let firstIndex = 0; // block numbers run on across batches of groups (they seed dropout)
  let nextIndex = 0;
  for (let g0 = 0; g0 < groups; g0 += plan.groupsPerBatch) {
    const g1 = Math.min(groups, g0 + plan.groupsPerBatch);
    const blockOutputs: tf.Tensor[] = []; // [n·C, Dv] per block, sorted order
    const blockStats: tf.Tensor[] = []; // [n·C, 2]: row maximum, log-sum
    for (const { index, chunks } of visitBlocks([g0, g1], numChunks, plan, firstIndex)) {
      nextIndex = index + 1;
      const block = buildBlock(host, dims, chunks, pass.causal);
      // Each block in its own scope: its intermediates are freed as soon as it is done.
      const [blockOut, blockStat] = tf.tidy(() => {
        const count = chunks.length;
        // The chunk products read the rows by index (one fused kernel each on webgpu; gathers and batchMatMul elsewhere).
        const keyRows = tf.tensor1d(block.keyRows, 'int32');
        let logits = chunkLogits(qkRows, tf.tensor1d(block.queryRows, 'int32'), keyRows, chunkLength, pass.window); // [n, C, L]
        if (block.bias !== null) logits = tf.add(logits, tf.tensor3d(block.bias, [count, chunkLength, pass.window]));
        // Masks and softmax in one kernel on wasm and webgpu (plain tf ops elsewhere): fill replaces masked logits.
        const softmax = blockSoftmax(block, logits, pass.causal);
        if (pass.collect) {
          // Read now (synchronously), or kept as a tensor to be read after the pass (lshAttentionAsync).
          const collected = pass.collect.read === 'now' ? (softmax.weights.dataSync() as Float32Array) : tf.keep(softmax.weights);
          pass.collect.blocks.push({ block, weights: collected });
        }
        const attended = pass.dropout > 0 ? (tf.mul(softmax.weights, dropoutScales(pass, index, [count, chunkLength, pass.window])) as tf.Tensor3D) : softmax.weights;
        const out = chunkOutputs(attended, vRows, keyRows); // [n, C, Dv]
        return [
          tf.reshape(out, [count * chunkLength, valueDim]),
          tf.reshape(tf.concat([softmax.rowMax, softmax.logSum], 2), [count * chunkLength, 2]),
        ];
      });
      blockOutputs.push(blockOut);
      blockStats.push(blockStat);
    }
    firstIndex = nextIndex;
    // Sorted order of groups g0..g1 → position-major item order (g, i, r), so rounds are
    // combined along the last axis.
    const batchGroups = g1 - g0;
    const toItems = new Int32Array(batchGroups * items); // row (g, i, r) ← sorted row
    for (let g = 0; g < batchGroups; g++) {
      const base = g * items;
      for (let p = 0; p < items; p++) {
        const item = host.sorted[(g0 + g) * items + p]; // r·T + i
        toItems[base + (item % length) * nHashes + Math.floor(item / length)] = base + p;
      }
    }
    const combined = tf.tidy(() => {
      const toItemsT = tf.tensor1d(toItems, 'int32');
      const unsort = (blocks: tf.Tensor[]) => gatherRowsUnchecked((blocks.length === 1 ? blocks[0] : concatMany(blocks)) as tf.Tensor2D, toItemsT);
      return combineRounds(unsort(blockOutputs), unsort(blockStats), batchGroups * length, nHashes, valueDim);
    });
    outputs.push(combined.output);
    weights.push(combined.roundWeights);
    tf.dispose([...blockOutputs, ...blockStats]);
  }
  const output = (outputs.length === 1 ? outputs[0] : concatMany(outputs)) as tf.Tensor2D;
  const roundWeights = (weights.length === 1 ? weights[0] : concatMany(weights)) as tf.Tensor2D;
  if (outputs.length > 1) tf.dispose([...outputs, ...weights]);
  return { output, roundWeights };
}

/**
 * The backward pass: recomputes each block's logits and weights (the forward
 * pass kept none of them) and turns the output's gradient into gradients of
 * the input rows. With o = Σ_r w_r·o_r and w = softmax_r(lse):
 * do_r = w_r·do, dlse_r = w_r·do·(o_r − o); then per block dV = Aᵀ·do_r,
 * dA = do_r·Vᵀ (A the weights after dropout), dLogits = W ⊙ (dW − Σ dW ⊙ W)
 * + dlse·W where kept, dQ = dLogits·K, dK = dLogitsᵀ·Q through the key
 * normalisation. Gradients of the gathered rows are summed on the host.
 *
 * @param dy [G·T, Dv], output [G·T, Dv], roundWeights [G·T·R, 1].
 * @returns dqk [G·T, D] and dv [G·T, Dv].
 */
function lshBackward(
  pass: LSHPass,
  qkRows: tf.Tensor2D,
  vRows: tf.Tensor2D,
  dy: tf.Tensor2D,
  output: tf.Tensor2D,
  roundWeights: tf.Tensor2D,
): { dqk: tf.Tensor2D; dv: tf.Tensor2D } {
  const { dims, plan, groups, dim, valueDim, window } = pass;
  const { length, nHashes, numChunks, chunkLength } = dims;
  const dqkSum = new Float32Array(groups * length * dim);
  const dvSum = new Float32Array(groups * length * valueDim);
  const addRows = (sum: Float32Array, rows: Int32Array, values: Float32Array, width: number): void => {
    for (let r = 0; r < rows.length; r++) {
      const to = rows[r] * width;
      const from = r * width;
      for (let d = 0; d < width; d++) sum[to + d] += values[from + d];
    }
  };
  // do·o per position, for every block's log-sum-exp gradient (one [G·T, 1] gather per block, not [G·T, Dv]).
  const dyDotOutput = nHashes > 1 ? (tf.tidy(() => tf.sum(tf.mul(dy, output), 1, true)) as tf.Tensor2D) : null;
  let firstIndex = 0; // block numbers run on across batches of groups (they seed dropout)
  let nextIndex = 0;
  for (let g0 = 0; g0 < groups; g0 += plan.groupsPerBatch) {
    const g1 = Math.min(groups, g0 + plan.groupsPerBatch);
    for (const { index, chunks } of visitBlocks([g0, g1], numChunks, plan, firstIndex)) {
      nextIndex = index + 1;
      const block = buildBlock(pass.host, dims, chunks, pass.causal);
      const count = chunks.length;
      const [dQueries, dKeys, dValues] = tf.tidy(() => {
        const { queries, rawKeys, keys, values } = gatherBlock(pass, block, count, qkRows, vRows);
        const { weights } = blockSoftmax(block, blockLogits(block, queries, keys, count, chunkLength, window), pass.causal); // W [n, C, L]
        const scales = pass.dropout > 0 ? dropoutScales(pass, index, [count, chunkLength, window]) : null;
        const attended = scales ? (tf.mul(weights, scales) as tf.Tensor3D) : weights; // A
        const queryRows = tf.tensor1d(block.queryRows, 'int32');
        const dOut = tf.reshape(gatherRowsUnchecked(dy, queryRows), [count, chunkLength, valueDim]) as tf.Tensor3D;
        let dRound = dOut; // do_r
        let dLse: tf.Tensor | null = null;
        if (dyDotOutput !== null) {
          const w = tf.reshape(gatherRowsUnchecked(roundWeights, tf.tensor1d(block.queryItems, 'int32')), [count, chunkLength, 1]);
          const roundOut = batchMatMul(attended, values); // o_r
          const dyDotFinal = tf.reshape(gatherRowsUnchecked(dyDotOutput, queryRows), [count, chunkLength, 1]); // do·o
          dRound = tf.mul(dOut, w) as tf.Tensor3D;
          dLse = tf.mul(w, tf.sub(tf.sum(tf.mul(dOut, roundOut), 2, true), dyDotFinal)); // w_r·do·(o_r − o) [n, C, 1]
        }
        const dValues = batchMatMul(attended, dRound, true, false); // [n, L, Dv]
        let dWeights = batchMatMul(dRound, values, false, true) as tf.Tensor; // dA [n, C, L]
        if (scales) dWeights = tf.mul(dWeights, scales);
        const inner = tf.sub(dWeights, tf.sum(tf.mul(dWeights, weights), 2, true));
        const dLogitsAll = dLse === null ? tf.mul(weights, inner) : tf.mul(weights, tf.add(inner, dLse)); // [n, C, L]
        // A replaced logit gets no gradient. Its weight is exactly 0 in float32 (exp(−1e5 − max) and
        // exp(−1e9 − max) underflow) whenever a logit of its row is kept and above −99 896, that is for any
        // row the float32 forward pass resolves, so zeroing the rows that keep none (by scaling the queries'
        // side of both products, [n, C, D], instead of masking [n, C, L]) is the whole mask.
        const kept = tf.tensor3d(block.queryKept, [count, chunkLength, 1]);
        const dQueries = tf.mul(batchMatMul(dLogitsAll as tf.Tensor3D, keys), kept); // [n, C, D]
        const dKeys = normaliseKeysBackward(rawKeys, batchMatMul(dLogitsAll as tf.Tensor3D, tf.mul(queries, kept) as tf.Tensor3D, true, false)); // [n, L, D]
        return [dQueries, dKeys, dValues];
      });
      addRows(dqkSum, block.queryRows, readValues(dQueries), dim);
      addRows(dqkSum, block.keyRows, readValues(dKeys), dim);
      addRows(dvSum, block.keyRows, readValues(dValues), valueDim);
      tf.dispose([dQueries, dKeys, dValues]);
    }
    firstIndex = nextIndex;
  }
  dyDotOutput?.dispose();
  return {
    dqk: tf.tensor2d(dqkSum, [groups * length, dim]),
    dv: tf.tensor2d(dvSum, [groups * length, valueDim]),
  };
}

/** A tensor's values (synchronously: a gradient function cannot await). */
function readValues(x: tf.Tensor): Float32Array {
  return x.dataSync() as Float32Array;
}

/**
 * The gradient of {@link normaliseKeys}: with s = 1/sqrt(mean(x²) + ε)/sqrt(D)
 * and k = s·x, dx = s·dk − s·x·(dk·x)/(D·(mean(x²) + ε)).
 *
 * @param x [..., D] the raw keys; dk [..., D] the gradient of the normalised keys.
 */
function normaliseKeysBackward(x: tf.Tensor, dk: tf.Tensor): tf.Tensor {
  const dim = x.shape[x.rank - 1];
  const meanSquarePlus = tf.add(tf.mean(tf.square(x), -1, true), KEY_NORM_EPSILON);
  const scale = tf.mul(tf.rsqrt(meanSquarePlus), 1 / Math.sqrt(dim));
  const projection = tf.div(tf.sum(tf.mul(dk, x), -1, true), tf.mul(meanSquarePlus, dim));
  return tf.mul(scale, tf.sub(dk, tf.mul(x, projection)));
}

/** What the attention functions return next to their output with `returnAttention: true`. */
export interface AttentionWeights {
  /**
   * int32 [B, H, T, S]: per query, the distinct key positions it saw (in any
   * round's window, masked ones included), ascending; −1 fills unused slots.
   * S = min(T, R·L) for LSH attention, min(T, L) for local attention, T for
   * full attention.
   */
  positions: tf.Tensor4D;
  /**
   * float32 [B, H, T, S]: the weight of each, summed over its appearances and
   * combined over rounds by the round weights; 0 in unused slots and for
   * masked keys. Before dropout. A query's weights sum to 1.
   */
  weights: tf.Tensor4D;
}

/** The result of an attention function called with `returnAttention: true`. */
export interface AttentionResult {
  /** float32 [B, H, T, Dv]: what the call returns without `returnAttention`. */
  output: tf.Tensor4D;
  /** Which keys each query attended to, and with what weight. */
  attention: AttentionWeights;
}

/** The option both kinds of call take to return the weights. */
export interface ReturnAttentionOption {
  /**
   * Also return which keys each query attended to and with what weight
   * ({@link AttentionWeights}): the call then returns `{ output, attention }`.
   * The weights are read back to the host (one read per block) and carry no
   * gradient; the output's gradient is as without. For inspection at
   * moderate T. Default false.
   */
  returnAttention?: boolean;
}

/** Backend bytes of the returned attention weights: positions and weights [B·H·T, S] (int32, float32). */
function attentionWeightsBytes(queries: number, slots: number): number {
  return 8 * queries * slots;
}

/** The bytes above which {@link denseAttention} refuses (4 GiB would not fit wasm anyway). */
const DENSE_ATTENTION_LIMIT_BYTES = 1 << 30;

/**
 * The dense form of attention weights: [B, H, T, T], row i holding query i's
 * weight on every key position (0 where it did not attend). For small T: it
 * allocates B·H·T² floats (refused above 1 GiB).
 *
 * @param attention what a call with `returnAttention: true` returned.
 * @returns float32 [B, H, T, T]; each row of an unpadded query sums to 1.
 *
 * ```ts
 * const { output, attention } = lshAttention(qk, v, { seed: 1, returnAttention: true });
 * const matrix = denseAttention(attention); // [B, H, T, T]
 * ```
 */
export function denseAttention(attention: AttentionWeights): tf.Tensor4D {
  const who = 'denseAttention';
  if (attention === null || typeof attention !== 'object') {
    throw new Error(`${who}: expected { positions, weights } from a call with returnAttention: true, got ${describeValue(attention)}`);
  }
  const { positions, weights } = attention;
  assertRank(who, 'attention.positions', positions, 4, '[B, H, T, S]');
  assertRank(who, 'attention.weights', weights, 4, '[B, H, T, S]');
  if (positions.dtype !== 'int32') throw new Error(`${who}: attention.positions must be int32, got ${positions.dtype}`);
  if (positions.shape.some((d, i) => d !== weights.shape[i])) {
    throw new Error(`${who}: attention.positions ${shapeString(positions.shape)} and attention.weights ${shapeString(weights.shape)} must have the same shape`);
  }
  const [batch, heads, length, slots] = positions.shape;
  const bytes = 4 * batch * heads * length * length;
  if (bytes > DENSE_ATTENTION_LIMIT_BYTES) {
    throw new Error(
      `${who}: a dense [B, H, T, T] = [${batch}, ${heads}, ${length}, ${length}] matrix needs ${formatBytes(bytes)}, more than ` +
        `${formatBytes(DENSE_ATTENTION_LIMIT_BYTES)}; read the sparse positions and weights instead, or slice a batch element and head first`,
    );
  }
  const at = positions.dataSync();
  const w = weights.dataSync();
  const dense = new Float32Array(batch * heads * length * length);
  for (let q = 0; q < batch * heads * length; q++) {
    for (let s = 0; s < slots; s++) {
      const key = at[q * slots + s];
      if (key < 0) continue;
      if (key >= length) throw new Error(`${who}: attention.positions holds ${key}, outside [0, T) = [0, ${length}); pass a call's attention unchanged`);
      dense[q * length + key] += w[q * slots + s];
    }
  }
  return tf.tensor4d(dense, [batch, heads, length, length]);
}

/**
 * Turns the collected block weights and round weights into the sparse form:
 * per query, its distinct keys ascending, weights summed over appearances
 * and rounds.
 */
function assembleAttention(
  collected: Array<{ block: Block; weights: ArrayLike<number> }>,
  roundWeights: ArrayLike<number>,
  shape: { batch: number; heads: number; length: number; nHashes: number; chunkLength: number; window: number },
  slots: number,
): AttentionWeights {
  const { batch, heads, length, nHashes, chunkLength, window } = shape;
  const queries = batch * heads * length;
  const perQuery = nHashes * window; // every query's R items, each with L keys
  const keyAt = new Int32Array(queries * perQuery);
  const weightAt = new Float32Array(queries * perQuery);
  for (const { block, weights } of collected) {
    for (let row = 0; row < block.queryItems.length; row++) {
      const queryItem = block.queryItems[row]; // (g·T + i)·R + r
      const roundWeight = roundWeights[queryItem];
      const n = Math.floor(row / chunkLength);
      const base = queryItem * window;
      for (let k = 0; k < window; k++) {
        // A local window's slots past the sequence's ends are no keys (their rows are stand-ins).
        const inside = block.keyInside === null || block.keyInside[n * window + k] === 1;
        keyAt[base + k] = inside ? block.keyRows[n * window + k] % length : -1;
        weightAt[base + k] = weights[row * window + k] * roundWeight;
      }
    }
  }
  const positions = new Int32Array(queries * slots).fill(-1);
  const summed = new Float32Array(queries * slots);
  const slotOf = new Int32Array(length).fill(-1);
  const seen: number[] = [];
  const sums = new Float64Array(slots);
  for (let q = 0; q < queries; q++) {
    seen.length = 0;
    for (let e = q * perQuery; e < (q + 1) * perQuery; e++) {
      const key = keyAt[e];
      if (key < 0) continue;
      if (slotOf[key] < 0) {
        slotOf[key] = seen.length;
        sums[seen.length] = 0;
        seen.push(key);
      }
      sums[slotOf[key]] += weightAt[e];
    }
    const order = seen.map((key, slot) => [key, sums[slot]] as const).sort((a, b) => a[0] - b[0]);
    order.forEach(([key, weight], s) => {
      positions[q * slots + s] = key;
      summed[q * slots + s] = weight;
    });
    for (const key of seen) slotOf[key] = -1;
  }
  return {
    positions: tf.tensor4d(positions, [batch, heads, length, slots], 'int32'),
    weights: tf.tensor4d(summed, [batch, heads, length, slots]),
  };
}

/** What one chunked-attention call (LSH or local) runs with. */
interface ChunkedCall {
  shape: AttentionShape;
  dims: BlockDims;
  blockLogits: number;
  causal: boolean;
  dropout: number;
  dropoutSeed: number;
  returnAttention: boolean;
  /** With returnAttention: read each block's weights as the forward pass makes them ('now'), or keep them to read after it ('later'). */
  collectRead: CollectRead;
  /** The sort of a call's items (hashing for LSH, positions in order for local attention). */
  hostSort: (qk: tf.Tensor4D) => HostSort;
}

/** How a forward pass with returnAttention reads its block weights: at once (dataSync), or after the pass. */
type CollectRead = 'now' | 'later';

/** One block's weights (before dropout) as collected: values, or a kept tensor still to be read. */
interface CollectedBlock {
  block: Block;
  weights: Float32Array | tf.Tensor;
}

/** What a forward pass with returnAttention collected, for {@link assembleCollected}. */
interface CollectedAttention {
  blocks: CollectedBlock[];
  /** [G·T, R] round weights (position-major), kept. */
  roundWeights: tf.Tensor;
  shape: { batch: number; heads: number; length: number; nHashes: number; chunkLength: number; window: number };
  slots: number;
}

/** The values of everything collected, read synchronously; the tensors are disposed. */
function readCollectedSync(collected: CollectedAttention): { blocks: Float32Array[]; roundWeights: Float32Array } {
  try {
    return {
      blocks: collected.blocks.map(({ weights }) => (weights instanceof tf.Tensor ? (weights.dataSync() as Float32Array) : weights)),
      roundWeights: collected.roundWeights.dataSync() as Float32Array,
    };
  } finally {
    disposeCollected(collected);
  }
}

/** The values of everything collected, read with `await data()`; the tensors are disposed. */
async function readCollectedAsync(collected: CollectedAttention): Promise<{ blocks: Float32Array[]; roundWeights: Float32Array }> {
  try {
    const [roundWeights, ...blocks] = await Promise.all([
      collected.roundWeights.data() as Promise<Float32Array>,
      ...collected.blocks.map(({ weights }) => (weights instanceof tf.Tensor ? (weights.data() as Promise<Float32Array>) : Promise.resolve(weights))),
    ]);
    return { blocks, roundWeights };
  } finally {
    disposeCollected(collected);
  }
}

function disposeCollected(collected: CollectedAttention): void {
  collected.roundWeights.dispose();
  for (const { weights } of collected.blocks) if (weights instanceof tf.Tensor) weights.dispose();
}

/** The sparse attention weights from what was collected and its values. */
function assembleCollected(collected: CollectedAttention, values: { blocks: Float32Array[]; roundWeights: Float32Array }): AttentionWeights {
  const blocks = collected.blocks.map(({ block }, i) => ({ block, weights: values.blocks[i] }));
  return assembleAttention(blocks, values.roundWeights, collected.shape, collected.slots);
}

/**
 * The chunk attention both LSH and local attention run: blocks of chunks
 * attend, un-sort, combine rounds, with the recomputing gradient. With
 * returnAttention it also returns what it collected for the weights (read
 * them with readCollectedSync or readCollectedAsync).
 */
function runChunkedAttention(qk: tf.Tensor4D, v: tf.Tensor4D, call: ChunkedCall): { output: tf.Tensor4D; collected: CollectedAttention | null } {
  const { batch, heads, length, dim, valueDim } = call.shape;
  const { nHashes, numChunks, chunkLength, before, after } = call.dims;
  const window = chunkLength * (1 + before + after); // L
  const groups = batch * heads; // G = B·H
  let pass: LSHPass | null = null;
  let keptRoundWeights: tf.Tensor | null = null;

  // Blocks of chunks attend; un-sort; combine rounds — with the recomputing gradient. Inside a
  // customGrad's forward function nothing is taped: the hashing's matMul keeps nothing either.
  const attend = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [qkIn, vIn, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    pass = {
      host: call.hostSort(qkIn),
      dims: call.dims,
      plan: planBlocks(numChunks, chunkLength, window, call.blockLogits),
      groups,
      window,
      dim,
      valueDim,
      causal: call.causal,
      dropout: call.dropout,
      dropoutSeed: call.dropoutSeed,
      collect: call.returnAttention ? { read: call.collectRead, blocks: [] } : null,
    };
    const qkRows = tf.reshape(qkIn, [groups * length, dim]) as tf.Tensor2D;
    const vRows = tf.reshape(vIn, [groups * length, valueDim]) as tf.Tensor2D;
    const { output, roundWeights } = lshForward(pass, qkRows, vRows);
    if (call.returnAttention) keptRoundWeights = tf.keep(tf.clone(roundWeights));
    save([qkRows, vRows, output, tf.reshape(roundWeights, [groups * length * nHashes, 1])]);
    return {
      value: tf.reshape(output, [batch, heads, length, valueDim]),
      // In a scope of its own: the engine keeps a gradient function's leftovers until the whole backward pass ends.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [savedQk, savedV, savedOut, savedWeights] = saved as tf.Tensor2D[];
          const dyRows = tf.reshape(dy, [groups * length, valueDim]) as tf.Tensor2D;
          const { dqk, dv } = lshBackward(pass!, savedQk, savedV, dyRows, savedOut, savedWeights);
          return [tf.reshape(dqk, [batch, heads, length, dim]), tf.reshape(dv, [batch, heads, length, valueDim])];
        }),
    };
  });
  // The scope frees the forward pass's intermediates; what the backward pass needs was saved (kept) by the tape.
  const output = tf.tidy(() => attend(qk, v) as tf.Tensor4D);
  if (!call.returnAttention) return { output, collected: null };
  const blocks = (pass as LSHPass | null)?.collect?.blocks ?? [];
  // A later backward pass recomputes its blocks: nothing collected needs to live on.
  if (pass !== null) (pass as LSHPass).collect = null;
  return {
    output,
    collected: {
      blocks,
      roundWeights: keptRoundWeights as unknown as tf.Tensor,
      shape: { batch, heads, length, nHashes, chunkLength, window },
      slots: Math.min(length, nHashes * window),
    },
  };
}

/** An empty call's attention (B or T is 0). */
function emptyAttention(batch: number, heads: number, length: number, slots: number): AttentionWeights {
  return {
    positions: tf.zeros([batch, heads, length, slots], 'int32') as tf.Tensor4D,
    weights: tf.zeros([batch, heads, length, slots]) as tf.Tensor4D,
  };
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
 * Differentiable in `qk` and `v` with a recomputing gradient: under a
 * gradient tape the call keeps only its inputs, its output and the round
 * weights (O(B·H·T·(D + Dv + R))), and the backward pass rebuilds each
 * block's logits and weights.
 *
 * @param qk float32 [B, H, T, D]: shared queries/keys (keys are normalised inside).
 * @param v float32 [B, H, T, Dv]: values.
 * @returns float32 [B, H, T, Dv]; with `returnAttention: true`,
 *   `{ output, attention }` ({@link AttentionResult}).
 * @throws when shapes disagree, options are out of range, R·T is not a
 *   multiple of C, or the call would not fit in the backend's memory.
 *
 * ```ts
 * const out = lshAttention(qk, v, { nHashes: 4, chunkLength: 64, causal: true, seed: 1 });
 * ```
 */
export function lshAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: LSHAttentionOptions & { returnAttention: true }): AttentionResult;
export function lshAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options?: LSHAttentionOptions & { returnAttention?: false }): tf.Tensor4D;
export function lshAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: LSHAttentionOptions & ReturnAttentionOption = {}): tf.Tensor4D | AttentionResult {
  const who = 'lshAttention';
  assertHostReadable(
    who,
    'the hash buckets (for the sort)',
    [],
    'use lshAttentionAsync (the same computation, reading them with `await data()`), or the webgl or wasm backend ' +
      "(initBackend({ backend: ['webgl', 'wasm'] }))",
  );
  const plan = planLSHAttention(who, qk, v, options);
  if (plan.kind === 'done') return plan.result;
  if (!plan.returnAttention) {
    // Split across the thread pool when one runs (src/threads.ts): fresh rotations are drawn from one seed for every thread.
    const split = runInParallel('lsh', qk, v, withSplitSeed(options), plan.keysPerQuery, (a, b, o) => lshAttention(a, b, o as LSHAttentionOptions));
    if (split) return split;
  }
  // 1–2. Hash (inside the forward pass: nothing is taped there) and sort on the host (integer work, no gradient).
  const hostSort = (x: tf.Tensor4D): HostSort => {
    const buckets = hashForSort(x, plan, options);
    try {
      return sortOnHost(buckets.dataSync() as Int32Array, plan);
    } finally {
      buckets.dispose();
    }
  };
  const result = runChunkedAttention(qk, v, chunkedLSHCall(plan, options, hostSort, 'now'));
  if (result.collected === null) return result.output;
  return { output: result.output, attention: assembleCollected(result.collected, readCollectedSync(result.collected)) };
}

/**
 * {@link lshAttention} for backends that cannot read results back
 * synchronously: the same options, computation and result, but the values it
 * reads on the host (the padding mask, the hash buckets for the sort, with
 * `checkFinite` the inputs, with `returnAttention` the weights) are read with
 * `await data()` instead of `dataSync()`. Use it on the webgpu backend, where
 * a synchronous read stalls the page and, on Chromium's software adapter
 * (SwiftShader), gives zeros and destroys the device, so lshAttention refuses
 * to run there. On other backends it gives what lshAttention gives.
 *
 * Forward only: an async function cannot be differentiated (tf.grads needs
 * the output synchronously); train with lshAttention on a backend that reads
 * synchronously. With `fullAttentionThreshold` and `returnAttention` on
 * software WebGPU it refuses (fullAttention's weights are read synchronously).
 *
 * @param qk float32 [B, H, T, D]: shared queries/keys (keys are normalised inside).
 * @param v float32 [B, H, T, Dv]: values.
 * @returns a promise of float32 [B, H, T, Dv]; with `returnAttention: true`,
 *   of `{ output, attention }` ({@link AttentionResult}).
 * @throws (the promise rejects) as lshAttention throws.
 *
 * ```ts
 * const out = await lshAttentionAsync(qk, v, { nHashes: 4, chunkLength: 64, causal: true, seed: 1 });
 * ```
 */
export function lshAttentionAsync(qk: tf.Tensor4D, v: tf.Tensor4D, options: LSHAttentionOptions & { returnAttention: true }): Promise<AttentionResult>;
export function lshAttentionAsync(qk: tf.Tensor4D, v: tf.Tensor4D, options?: LSHAttentionOptions & { returnAttention?: false }): Promise<tf.Tensor4D>;
export async function lshAttentionAsync(
  qk: tf.Tensor4D,
  v: tf.Tensor4D,
  options: LSHAttentionOptions & ReturnAttentionOption = {},
): Promise<tf.Tensor4D | AttentionResult> {
  const who = 'lshAttentionAsync';
  if (options === null || typeof options !== 'object') {
    throw new Error(`${who}: options must be an object, got ${describeValue(options)}`);
  }
  // The mask's values, read now and put in a tensor made from host values (which every backend reads back
  // synchronously without touching the device), so the checks and the chunk masks below can read it.
  const hostMask = await hostCopy(options.mask);
  try {
    const hostOptions = { ...options, mask: (hostMask as tf.Tensor2D | undefined) ?? options.mask, checkFinite: false };
    if (options.checkFinite !== undefined) assertBoolean(who, 'checkFinite', options.checkFinite);
    if (options.checkFinite === true) {
      const fix =
        'every output that attends to it would be NaN (a padded position too: 0 · NaN is NaN); ' +
        'find where it comes from, or replace it, e.g. tf.where(tf.isFinite(x), x, tf.zerosLike(x))';
      assertRank(who, 'qk', qk, 4, '[B, H, T, D]');
      assertRank(who, 'v', v, 4, '[B, H, T, Dv]');
      await assertFiniteAsync(who, 'qk', qk, fix);
      await assertFiniteAsync(who, 'v', v, fix);
    }
    const settings = planLSHAttention(who, qk, v, hostOptions, true);
    if (settings.kind === 'done') return settings.result;
    const plan = settings;
    if (!plan.returnAttention) {
      const split = runInParallel('lsh', qk, v, withSplitSeed(hostOptions), plan.keysPerQuery, (a, b, o) => lshAttention(a, b, o as LSHAttentionOptions));
      if (split) return split;
    }
    // 1–2. Hash on the device, read the buckets without blocking, sort on the host.
    const buckets = hashForSort(qk, plan, hostOptions);
    let ids: Int32Array;
    try {
      ids = (await buckets.data()) as Int32Array;
    } finally {
      buckets.dispose();
    }
    const sort = sortOnHost(ids, plan);
    const result = runChunkedAttention(qk, v, chunkedLSHCall(plan, hostOptions, () => sort, 'later'));
    if (result.collected === null) return result.output;
    return { output: result.output, attention: assembleCollected(result.collected, await readCollectedAsync(result.collected)) };
  } finally {
    hostMask?.dispose();
  }
}

/** The options with a fixed seed when the rotations would be fresh: every thread of a split must draw the same ones. */
function withSplitSeed(options: LSHAttentionOptions): LSHAttentionOptions {
  return options.rotations === undefined && options.seed === undefined ? { ...options, seed: freshSeed() } : options;
}

/** A copy of a live tensor made from its values, read with `await data()`; anything else: undefined. */
async function hostCopy(x: unknown): Promise<tf.Tensor | undefined> {
  if (!(x instanceof tf.Tensor) || x.isDisposed) return undefined;
  return tf.tensor(await x.data(), x.shape, x.dtype);
}

/** {@link assertFinite}, reading the values with `await data()`. */
async function assertFiniteAsync(who: string, what: string, x: tf.Tensor, fix: string): Promise<void> {
  if (x.dtype !== 'float32' || x.size === 0) return;
  const allFinite = tf.tidy(() => tf.all(tf.isFinite(x)));
  const ok = (await allFinite.data())[0] === 1;
  allFinite.dispose();
  if (!ok) throw nonFiniteError(who, what, await x.data(), x.shape, fix);
}

/** What {@link planLSHAttention} resolves: a finished result, or the settings of the chunked LSH call. */
type LSHPlan =
  | { kind: 'done'; result: tf.Tensor4D | AttentionResult }
  | {
      kind: 'chunked';
      shape: AttentionShape;
      settings: ResolvedLSHSettings;
      padding: Float32Array | Int32Array | Uint8Array | null;
      returnAttention: boolean;
      dropout: number;
      /** R·L: the keys each query sees over all rounds. */
      keysPerQuery: number;
    };

/**
 * Everything lshAttention does before it hashes: checks the inputs and
 * options, guards the memory, and answers at once when exact attention is
 * asked for (`fullAttentionThreshold`) or the input is empty.
 *
 * @param noSyncReads the caller cannot read device results synchronously
 *   (lshAttentionAsync): refuse what would.
 */
function planLSHAttention(
  who: string,
  qk: tf.Tensor4D,
  v: tf.Tensor4D,
  options: LSHAttentionOptions & ReturnAttentionOption,
  noSyncReads = false,
): LSHPlan {
  const { batch, heads, length, dim, valueDim, padding } = checkInputs(who, qk, v, options);
  assertSeed(who, options.seed);
  const returnAttention = options.returnAttention ?? false;
  assertBoolean(who, 'returnAttention', returnAttention);
  const threshold = options.fullAttentionThreshold ?? 0;
  assertNonNegativeInteger(who, 'fullAttentionThreshold', threshold);
  const settings = resolveLSHSettings(who, length, dim, options);
  if (length > 0 && length <= threshold) {
    if (noSyncReads && returnAttention && softwareWebGPU()) {
      throw new Error(
        `${who}: with returnAttention, T = ${length} at or below fullAttentionThreshold ${threshold} needs fullAttention's weights, ` +
          "which it reads back synchronously, and the webgpu backend on Chromium's software adapter (SwiftShader) cannot; " +
          'pass fullAttentionThreshold: 0 to get the LSH weights, or use the webgl or wasm backend',
      );
    }
    // Exact attention: at this length it is the faster of the two (the same logits and masks over all T keys).
    const full = { causal: options.causal, mask: options.mask, dropout: options.dropout, dropoutSeed: options.dropoutSeed, memoryLimitBytes: options.memoryLimitBytes };
    return { kind: 'done', result: returnAttention ? fullAttention(qk, v, { ...full, returnAttention: true }) : fullAttention(qk, v, full) };
  }
  const { nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter, hashFamily } = settings;
  const memory = lshAttentionMemory({ batch, heads, length, dim, valueDim }, settings, recordingGradients());
  const window = chunkLength * (1 + numChunksBefore + numChunksAfter); // L
  const queries = batch * heads * nHashes * length;
  const hashingDominates = memory.hashing >= memory.attention;
  guardMemory(
    who,
    memory.total + (returnAttention ? attentionWeightsBytes(batch * heads * length, Math.min(length, nHashes * window)) : 0),
    `hashing ${formatBytes(memory.hashing)}: B·H·R·T = ${queries} vectors × ${rotationColumns(nBuckets, hashFamily)} projections; ` +
      `attention ${formatBytes(memory.attention)}: ${queries} queries × ${window} keys` +
      `, in blocks of ≤ ${settings.blockLogits} logits`,
    hashingDominates
      ? `Use fewer buckets (nBuckets), or factorise them (nBuckets [K1, K2] costs (K1 + K2)/2 projections for K1·K2 buckets), ` +
          `fewer rounds (nHashes), or fewer heads or a smaller batch per call`
      : `Use fewer heads or a smaller batch per call, fewer rounds (nHashes), a smaller chunkLength, ` +
          `or a smaller blockLogits (default ${BLOCK_LOGITS})`,
    options.memoryLimitBytes,
  );
  const dropout = options.dropout ?? 0;
  if (batch === 0 || length === 0) {
    const output = tf.zeros([batch, heads, length, valueDim]) as tf.Tensor4D;
    return { kind: 'done', result: returnAttention ? { output, attention: emptyAttention(batch, heads, length, Math.min(length, nHashes * window)) } : output };
  }
  return { kind: 'chunked', shape: { batch, heads, length, dim, valueDim }, settings, padding, returnAttention, dropout, keysPerQuery: nHashes * window };
}

type ChunkedLSHPlan = Extract<LSHPlan, { kind: 'chunked' }>;

/** int32 [B, H, R, T] bucket ids of qk (padding → K), in a scope of their own. */
function hashForSort(qk: tf.Tensor4D, plan: ChunkedLSHPlan, options: LSHAttentionOptions): tf.Tensor4D {
  const { dim } = plan.shape;
  const { nHashes, nBuckets, hashFamily } = plan.settings;
  return tf.tidy(() => {
    const rotations = options.rotations ?? randomRotations({ dim, nHashes, nBuckets, seed: options.seed, hashFamily });
    return hashBuckets(qk, rotations, { nBuckets, mask: options.mask, hashFamily, memoryLimitBytes: options.memoryLimitBytes });
  });
}

/** The host sort of bucket ids [B·H·R·T] (a counting sort: the same order as sortItems). */
function sortOnHost(ids: Int32Array, plan: ChunkedLSHPlan): HostSort {
  const { batch, heads, length } = plan.shape;
  const { nHashes, nBuckets, attendAcrossBuckets } = plan.settings;
  const { sorted, undo } = sortItemsOnHost(ids, batch * heads, nHashes, length, totalBuckets(nBuckets));
  return { sorted, undo, buckets: attendAcrossBuckets ? null : ids.slice(), padding: plan.padding };
}

/** The chunked call of an LSH plan, sorting with `hostSort`. */
function chunkedLSHCall(plan: ChunkedLSHPlan, options: LSHAttentionOptions, hostSort: (qk: tf.Tensor4D) => HostSort, read: CollectRead): ChunkedCall {
  const { heads, length } = plan.shape;
  const { nHashes, chunkLength, numChunksBefore, numChunksAfter } = plan.settings;
  const items = nHashes * length; // R·T
  return {
    shape: plan.shape,
    dims: {
      heads, length, nHashes, items, numChunks: items / chunkLength, chunkLength, before: numChunksBefore, after: numChunksAfter,
      local: false, allowDuplicates: plan.settings.allowDuplicateAttention, acrossBuckets: plan.settings.attendAcrossBuckets,
    },
    blockLogits: plan.settings.blockLogits,
    causal: options.causal === true,
    dropout: plan.dropout,
    // One seed per call, so the backward pass redraws the forward pass's dropout masks.
    dropoutSeed: plan.dropout > 0 ? (options.dropoutSeed ?? freshSeed()) : 0,
    returnAttention: plan.returnAttention,
    collectRead: read,
    hostSort,
  };
}

/** Options of {@link localAttention}. */
export interface LocalAttentionOptions extends AttentionOptions {
  /** C, the chunk length; T must be a multiple of it (the LocalSelfAttention layer pads for you). Default 64. */
  chunkLength?: number;
  /** Chunks before its own that a chunk attends to (fewer at the start of the sequence: no rolling over). Default 1. */
  numChunksBefore?: number;
  /** Chunks after its own that a chunk attends to (fewer at the end). Default 0. */
  numChunksAfter?: number;
  /** Logit elements per block of chunks: bounds the memory of a call (the result does not depend on it). Default {@link BLOCK_LOGITS}. */
  blockLogits?: number;
}

/**
 * Local attention with shared queries and keys: the positions, in order, are
 * cut into chunks of C, and each chunk attends to itself and its
 * `numChunksBefore`/`numChunksAfter` neighbours — no hashing, no rounds, and
 * no rolling over the ends (chunk 0 has no chunk before it). Query i thus
 * sees key j exactly when chunk(j) is in [chunk(i) − before, chunk(i) +
 * after]: full attention with that band mask, at O(T·L) cost. The logits and
 * masks are full attention's (normalised keys, −1e5 for a query's own key,
 * causal and padding masks), and it runs LSH attention's block kernels, with
 * the same bounded memory and recomputing gradient.
 *
 * @param qk float32 [B, H, T, D]: shared queries/keys (keys are normalised inside).
 * @param v float32 [B, H, T, Dv]: values.
 * @returns float32 [B, H, T, Dv]; with `returnAttention: true`, `{ output, attention }`.
 * @throws when shapes disagree, options are out of range, T is not a
 *   multiple of C, or the call would not fit in the backend's memory.
 *
 * ```ts
 * const out = localAttention(qk, v, { chunkLength: 64, numChunksBefore: 1, causal: true });
 * ```
 */
export function localAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: LocalAttentionOptions & { returnAttention: true }): AttentionResult;
export function localAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options?: LocalAttentionOptions & { returnAttention?: false }): tf.Tensor4D;
export function localAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: LocalAttentionOptions & ReturnAttentionOption = {}): tf.Tensor4D | AttentionResult {
  const who = 'localAttention';
  const { batch, heads, length, dim, valueDim, padding } = checkInputs(who, qk, v, options);
  const returnAttention = options.returnAttention ?? false;
  assertBoolean(who, 'returnAttention', returnAttention);
  const chunkLength = options.chunkLength ?? DEFAULT_CHUNK_LENGTH;
  assertPositiveInteger(who, 'chunkLength', chunkLength);
  let before = options.numChunksBefore ?? 1;
  let after = options.numChunksAfter ?? 0;
  assertNonNegativeInteger(who, 'numChunksBefore', before);
  assertNonNegativeInteger(who, 'numChunksAfter', after);
  const blockLogits = options.blockLogits ?? BLOCK_LOGITS;
  assertPositiveInteger(who, 'blockLogits', blockLogits);
  if (length % chunkLength !== 0) {
    throw new Error(
      `${who}: T = ${length} must be a multiple of chunkLength ${chunkLength}; pad T to ${Math.ceil(length / chunkLength) * chunkLength} ` +
        `and mask the padding, choose a chunkLength that divides ${length}, or use the LocalSelfAttention layer, which pads for you`,
    );
  }
  const numChunks = length / chunkLength; // N
  // No rolling over: neighbours past the ends are masked, so a window wider than the sequence only wastes work.
  before = Math.min(before, Math.max(0, numChunks - 1));
  after = Math.min(after, Math.max(0, numChunks - 1));
  const window = chunkLength * (1 + before + after); // L
  const settings: ResolvedLSHSettings = {
    nHashes: 1, nBuckets: 2, chunkLength, numChunksBefore: before, numChunksAfter: after, hashFamily: 'rotation', blockLogits,
    allowDuplicateAttention: true, attendAcrossBuckets: true,
  };
  const memory = lshAttentionMemory({ batch, heads, length, dim, valueDim }, settings, recordingGradients());
  guardMemory(
    who,
    memory.kept + memory.attention + (returnAttention ? attentionWeightsBytes(batch * heads * length, Math.min(length, window)) : 0), // no hashing
    `B·H·T = ${batch * heads * length} queries × ${window} keys, in blocks of ≤ ${blockLogits} logits`,
    `Use fewer heads or a smaller batch per call, a smaller chunkLength or fewer neighbour chunks, or a smaller blockLogits (default ${BLOCK_LOGITS})`,
    options.memoryLimitBytes,
  );
  const dropout = options.dropout ?? 0;
  if (batch === 0 || length === 0) {
    const output = tf.zeros([batch, heads, length, valueDim]) as tf.Tensor4D;
    return returnAttention ? { output, attention: emptyAttention(batch, heads, length, Math.min(length, window)) } : output;
  }
  const groups = batch * heads;
  const hostSort = (): HostSort => {
    // Positions in order: the identity permutation for every group.
    const sorted = new Int32Array(groups * length);
    for (let g = 0; g < groups; g++) for (let i = 0; i < length; i++) sorted[g * length + i] = i;
    return { sorted, undo: sorted, buckets: null, padding };
  };
  const result = runChunkedAttention(qk, v, {
    shape: { batch, heads, length, dim, valueDim },
    dims: { heads, length, nHashes: 1, items: length, numChunks, chunkLength, before, after, local: true, allowDuplicates: true, acrossBuckets: true },
    blockLogits,
    causal: options.causal === true,
    dropout,
    dropoutSeed: dropout > 0 ? (options.dropoutSeed ?? freshSeed()) : 0,
    returnAttention,
    collectRead: 'now',
    hostSort,
  });
  if (result.collected === null) return result.output;
  return { output: result.output, attention: assembleCollected(result.collected, readCollectedSync(result.collected)) };
}

/**
 * Combines rounds: outputs [P·R, Dv] and (row maximum, log-sum) [P·R, 2] of
 * P = G·T positions, rounds last → output [P, Dv], weighting round r by
 * w_r = exp(lse_r − logsumexp_r(lse)), computed on differences of the maxima
 * so float32 keeps its precision (design §5); also returns w [P, R].
 */
function combineRounds(
  outputs: tf.Tensor2D,
  stats: tf.Tensor2D,
  positions: number,
  nHashes: number,
  valueDim: number,
): { output: tf.Tensor2D; roundWeights: tf.Tensor2D } {
  if (nHashes === 1) return { output: outputs, roundWeights: tf.ones([positions, 1]) };
  const [roundMax, roundLogSum] = tf.split(tf.reshape(stats, [positions, nHashes, 2]), 2, 2).map((t) => tf.reshape(t, [positions, nHashes]));
  const relative = tf.add(tf.sub(roundMax, tf.max(roundMax, 1, true)), roundLogSum); // [P, R]
  const roundWeights = tf.exp(tf.sub(relative, tf.logSumExp(relative, 1, true))) as tf.Tensor2D;
  // [P, 1, R]·[P, R, Dv] → [P, 1, Dv]: the weighted sum as many small products.
  const weighted = batchMatMul(
    tf.reshape(roundWeights, [positions, 1, nHashes]) as tf.Tensor3D,
    tf.reshape(outputs, [positions, nHashes, valueDim]) as tf.Tensor3D,
  );
  return { output: tf.reshape(weighted, [positions, valueDim]) as tf.Tensor2D, roundWeights };
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
 * The fill mask of a block of query rows of full attention for batch element
 * `b` (0 keeps the logit, else the logit that replaces it), built on the host.
 *
 * @returns float32 [1, rows, T] for queries firstRow … firstRow + rows − 1.
 */
function fullMaskRows(length: number, firstRow: number, rows: number, causal: boolean, padding: ArrayLike<number> | null, b: number): tf.Tensor3D {
  const fill = new Float32Array(rows * length);
  for (let r = 0, offset = 0; r < rows; r++) {
    const i = firstRow + r;
    for (let j = 0; j < length; j++, offset++) {
      if (i === j) fill[offset] = SELF_ATTENTION_LOGIT;
      else if ((causal && j > i) || (padding !== null && padding[b * length + j] === 0)) fill[offset] = MASKED_LOGIT;
    }
  }
  return tf.tensor3d(fill, [1, rows, length]);
}

/**
 * Logit elements per block of query rows of full attention by default (16M,
 * 64 MiB per tensor): larger than LSH attention's blocks, since each block
 * pays for operator set-ups and a slice of the queries (measured on wasm, B=1
 * H=8 D=64: 4M-logit blocks were 20–35% slower than whole heads at T=4096 and
 * 8192; 16M-logit blocks are as fast).
 */
export const FULL_BLOCK_LOGITS = 1 << 24;

/** Options of {@link fullAttention}. */
export interface FullAttentionOptions extends AttentionOptions {
  /**
   * Logit elements per block of query rows (rows = blockLogits / T, at least
   * one): bounds the memory of a call; the result does not depend on it
   * (without dropout). Default {@link FULL_BLOCK_LOGITS} (16M).
   */
  blockLogits?: number;
}

/**
 * Full O(T²) shared-QK attention: the same logits and masks as
 * {@link lshAttention}, over all T keys. The baseline and the reference.
 *
 * It runs one head and one block of query rows at a time (2-D matMuls, the
 * fast kind on wasm), so its memory is O(T · rows), not O(T²), and it is
 * differentiable with a recomputing gradient: under a gradient tape it keeps
 * only its inputs, and the backward pass rebuilds each block's weights.
 *
 * @param qk float32 [B, H, T, D]
 * @param v float32 [B, H, T, Dv]
 * @returns float32 [B, H, T, Dv]
 */
export function fullAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: FullAttentionOptions & { returnAttention: true }): AttentionResult;
export function fullAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options?: FullAttentionOptions & { returnAttention?: false }): tf.Tensor4D;
export function fullAttention(qk: tf.Tensor4D, v: tf.Tensor4D, options: FullAttentionOptions & ReturnAttentionOption = {}): tf.Tensor4D | AttentionResult {
  const who = 'fullAttention';
  if (options.mask instanceof tf.Tensor) {
    assertHostReadable(
      who,
      'the padding mask',
      [options.mask],
      'pass a mask made from host values (tf.tensor2d(await mask.data(), mask.shape)), or use the webgl or wasm backend',
    );
  }
  const { batch, heads, length, dim, valueDim, padding } = checkInputs(who, qk, v, options);
  const returnAttention = options.returnAttention ?? false;
  assertBoolean(who, 'returnAttention', returnAttention);
  if (options.blockLogits !== undefined) assertPositiveInteger(who, 'blockLogits', options.blockLogits);
  const rowsPerBlock = Math.max(1, Math.min(length, Math.floor((options.blockLogits ?? FULL_BLOCK_LOGITS) / Math.max(1, length))));
  guardMemory(
    who,
    estimateFullAttentionBytes({ batch, heads, length, dim, valueDim }, recordingGradients(), rowsPerBlock) +
      (returnAttention ? attentionWeightsBytes(batch * heads * length, length) : 0),
    `B·H·T = ${batch * heads * length} queries × ${length} keys, ${rowsPerBlock} query rows at a time`,
    'Use lshAttention, a shorter T, a smaller blockLogits, or fewer heads or a smaller batch per call',
    options.memoryLimitBytes,
  );
  const dropout = options.dropout ?? 0;
  if (batch === 0 || length === 0) {
    const output = tf.zeros([batch, heads, length, valueDim]) as tf.Tensor4D;
    return returnAttention ? { output, attention: emptyAttention(batch, heads, length, length) } : output;
  }
  if (!returnAttention) {
    const split = runInParallel('full', qk, v, options, length, (a, b, o) => fullAttention(a, b, o as FullAttentionOptions));
    if (split) return split;
  }
  const dropoutSeed = dropout > 0 ? (options.dropoutSeed ?? freshSeed()) : 0;
  const causal = options.causal === true;
  const groups = batch * heads;
  const blocksPerHead = Math.ceil(length / rowsPerBlock);

  /** Visits every (head, block of rows) with the block's fill mask, built once per batch element and block. */
  const visit = (body: (g: number, firstRow: number, rows: number, fill: tf.Tensor3D) => void): void => {
    for (let b = 0; b < batch; b++) {
      for (let firstRow = 0; firstRow < length; firstRow += rowsPerBlock) {
        const rows = Math.min(rowsPerBlock, length - firstRow);
        const fill = fullMaskRows(length, firstRow, rows, causal, padding, b);
        try {
          for (let h = 0; h < heads; h++) body(b * heads + h, firstRow, rows, fill);
        } finally {
          fill.dispose();
        }
      }
    }
  };
  /** One head's queries [T, D], normalised keys transposed [D, T] and values [T, Dv]. */
  const headInputs = (qkRows: tf.Tensor2D, vRows: tf.Tensor2D, g: number) => {
    const index = tf.tensor1d([g], 'int32');
    const query = tf.reshape(gatherRowsUnchecked(qkRows, index), [length, dim]) as tf.Tensor2D;
    const value = tf.reshape(gatherRowsUnchecked(vRows, index), [length, valueDim]) as tf.Tensor2D;
    return { query, keysT: tf.transpose(normaliseKeys(query)) as tf.Tensor2D, value };
  };
  /** A block's weights W [rows, T] and, with dropout, the scales A = W ⊙ scales. */
  const blockWeights = (query: tf.Tensor2D, keysT: tf.Tensor2D, g: number, firstRow: number, rows: number, fill: tf.Tensor3D) => {
    const queries = tf.slice(query, [firstRow, 0], [rows, dim]);
    const logits = tf.reshape(tf.matMul(queries, keysT), [1, rows, length]) as tf.Tensor3D;
    // The same fused masked softmax as LSH attention (a wasm kernel; tf ops elsewhere).
    const weights = tf.reshape(maskedSoftmax(logits, fill).weights, [rows, length]) as tf.Tensor2D;
    const scales = dropout > 0
      ? (tf.dropout(tf.ones([rows, length]), dropout, undefined, dropoutSeed + g * blocksPerHead + firstRow / rowsPerBlock) as tf.Tensor2D)
      : null;
    return { queries, weights, scales, attended: scales ? (tf.mul(weights, scales) as tf.Tensor2D) : weights };
  };

  const attend = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [qkIn, vIn, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    const qkRows = tf.reshape(qkIn, [groups, length * dim]) as tf.Tensor2D;
    const vRows = tf.reshape(vIn, [groups, length * valueDim]) as tf.Tensor2D;
    const perBlock: tf.Tensor[][] = Array.from({ length: groups }, () => []);
    const inputs = Array.from({ length: groups }, (_, g) => tf.tidy(() => headInputs(qkRows, vRows, g)));
    visit((g, firstRow, rows, fill) => {
      const { query, keysT, value } = inputs[g];
      perBlock[g].push(tf.tidy(() => tf.matMul(blockWeights(query, keysT, g, firstRow, rows, fill).attended, value)));
    });
    const output = tf.reshape(tf.concat(perBlock.map((blocks) => concatMany(blocks)), 0), [batch, heads, length, valueDim]);
    tf.dispose([...perBlock.flat(), ...inputs.flatMap((i) => [i.query, i.keysT, i.value])]);
    save([qkRows, vRows]);
    return {
      value: output,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => {
        const [savedQk, savedV] = saved as tf.Tensor2D[];
        const dyRows = tf.reshape(dy, [groups, length * valueDim]) as tf.Tensor2D;
        const dQueries: tf.Tensor[][] = Array.from({ length: groups }, () => []);
        const dKeys: Array<tf.Tensor | null> = Array.from({ length: groups }, () => null); // Σ over blocks, [T, D]
        const dValues: Array<tf.Tensor | null> = Array.from({ length: groups }, () => null); // [T, Dv]
        const heads3 = Array.from({ length: groups }, (_, g) =>
          tf.tidy(() => {
            const inputs = headInputs(savedQk, savedV, g);
            return { ...inputs, keys: tf.transpose(inputs.keysT) as tf.Tensor2D, valueT: tf.transpose(inputs.value) as tf.Tensor2D,
              dOut: tf.reshape(gatherRowsUnchecked(dyRows, tf.tensor1d([g], 'int32')), [length, valueDim]) as tf.Tensor2D };
          }),
        );
        visit((g, firstRow, rows, fill) => {
          const { query, keysT, keys, valueT, dOut } = heads3[g];
          const [dQuery, dKey, dValue] = tf.tidy(() => {
            const { queries, weights, scales, attended } = blockWeights(query, keysT, g, firstRow, rows, fill);
            const dOutRows = tf.slice(dOut, [firstRow, 0], [rows, valueDim]);
            const dValue = matMulTransposeA(attended as tf.Tensor2D, dOutRows as tf.Tensor2D); // [T, Dv]
            let dWeights = tf.matMul(dOutRows, valueT) as tf.Tensor; // [rows, T]
            if (scales) dWeights = tf.mul(dWeights, scales);
            const keep = tf.cast(tf.equal(tf.reshape(fill, [rows, length]), 0), 'float32');
            const dLogits = tf.mul(tf.mul(weights, tf.sub(dWeights, tf.sum(tf.mul(dWeights, weights), 1, true))), keep) as tf.Tensor2D;
            const dKey = matMulTransposeA(dLogits, queries as tf.Tensor2D); // [T, D]
            return [tf.matMul(dLogits, keys), dKey, dValue];
          });
          dQueries[g].push(dQuery);
          const accumulate = (sum: tf.Tensor | null, part: tf.Tensor): tf.Tensor => {
            if (sum === null) return part;
            const next = tf.add(sum, part);
            tf.dispose([sum, part]);
            return next;
          };
          dKeys[g] = accumulate(dKeys[g], dKey);
          dValues[g] = accumulate(dValues[g], dValue);
        });
        const dqk = tf.stack(heads3.map((inputs, g) =>
          tf.add(concatMany(dQueries[g]), normaliseKeysBackward(inputs.query, dKeys[g] as tf.Tensor))));
        const dv = tf.stack(dValues as tf.Tensor[]);
        return [tf.reshape(dqk, [batch, heads, length, dim]), tf.reshape(dv, [batch, heads, length, valueDim])];
      }),
    };
  });
  const output = tf.tidy(() => attend(qk, v) as tf.Tensor4D);
  if (!returnAttention) return output;
  // The weights (before dropout), block by block, read back: every key is a position of every query.
  const weights = new Float32Array(groups * length * length);
  tf.tidy(() => {
    const qkRows = tf.reshape(qk, [groups, length * dim]) as tf.Tensor2D;
    const vRows = tf.reshape(v, [groups, length * valueDim]) as tf.Tensor2D;
    const inputs = Array.from({ length: groups }, (_, g) => headInputs(qkRows, vRows, g));
    visit((g, firstRow, rows, fill) => {
      const { query, keysT } = inputs[g];
      const block = tf.tidy(() => blockWeights(query, keysT, g, firstRow, rows, fill).weights);
      weights.set(block.dataSync(), (g * length + firstRow) * length);
      block.dispose();
    });
  });
  const positions = new Int32Array(groups * length * length);
  for (let q = 0; q < groups * length; q++) for (let j = 0; j < length; j++) positions[q * length + j] = j;
  return {
    output,
    attention: {
      positions: tf.tensor4d(positions, [batch, heads, length, length], 'int32'),
      weights: tf.tensor4d(weights, [batch, heads, length, length]),
    },
  };
}
