/**
 * tfjs-lsh-attention: the functional core (pure tensor functions).
 * Layers live in `tfjs-lsh-attention/layers`, backend selection in
 * `tfjs-lsh-attention/backend`.
 */
export {
  BLOCK_LOGITS,
  DEFAULT_CHUNK_LENGTH,
  DEFAULT_FULL_ATTENTION_THRESHOLD,
  KEY_NORM_EPSILON,
  MASKED_LOGIT,
  SELF_ATTENTION_LOGIT,
  estimateFullAttentionBytes,
  estimateLSHAttentionBytes,
  denseAttention,
  fullAttention,
  localAttention,
  lshAttention,
  lshAttentionAsync,
  lshAttentionMemory,
  resolveLSHSettings,
  validLength,
  type AttentionOptions,
  type AttentionResult,
  type AttentionWeights,
  type LocalAttentionOptions,
  type ReturnAttentionOption,
  type FullAttentionOptions,
  type AttentionShape,
  type LSHAttentionMemory,
  type LSHAttentionOptions,
  type ResolvedLSHSettings,
} from './attention.js';
export {
  FACTORISE_BUCKETS_ABOVE,
  MAX_BUCKETS,
  bucketFactors,
  estimateHashBytes,
  defaultNBuckets,
  hashBuckets,
  randomRotations,
  rotationColumns,
  totalBuckets,
  packSignBits,
  simHashHyperplanes,
  type HashBucketsOptions,
  type HashFamilyName,
  type NBuckets,
  type RandomRotationsOptions,
} from './hashing.js';
export {
  FullAttentionCache,
  LSHAttentionCache,
  type AttentionCacheOptions,
  type LSHAttentionCacheOptions,
} from './cached_attention.js';
export { availableBytes, formatBytes, guardMemory, recordingGradients, WASM_HEAP_LIMIT_BYTES, DEFAULT_LIMIT_BYTES, GPU_LIMIT_BYTES, backendLimitBytes } from './memory.js';
export { MAX_SEED, gaussianArray, nextSeed, purposeSeed, uniformStream, type Seed, type Uniform } from './random.js';
export { MAX_SORT_KEYS, sortItems, sortItemsOnHost, type ItemSort } from './sorting.js';
export { detach, gatherRows, gatherRowsSummed, permuteRows, stopGradient } from './ops.js';
export { SEGMENT_SUM_KERNEL_NAME, registerSegmentSumKernels, segmentSum, type RegisterSegmentSumOptions } from './kernels/segment_sum.js';
export { BATCH_MATMUL_KERNEL_NAME, batchMatMul, registerBatchMatMulKernel } from './kernels/batch_matmul.js';
export { MASKED_SOFTMAX_KERNEL_NAME, maskedSoftmax, registerMaskedSoftmaxKernel, type MaskedSoftmaxResult } from './kernels/masked_softmax.js';
