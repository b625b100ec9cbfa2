/**
 * tfjs-lsh-attention/lsh: locality-sensitive hashing over TF.js tensors.
 * SimHash, the rotation (cross-polytope) hash of LSH attention, kernelized
 * LSH with built-in and custom kernels, and an approximate nearest-neighbour
 * index with multi-probe, removal, occupancy statistics and JSON save/load.
 */
export {
  MAX_KEY_BITS,
  type FamilyKind,
  type HashFamily,
  type HashFamilyJSON,
  type KernelizedLSHJSON,
  type RotationHashJSON,
  type SimHashJSON,
} from './family.js';
export { SIMHASH_DEFAULT_BITS, SimHash, type SimHashOptions } from './simhash.js';
export { ROTATION_DEFAULT_BUCKETS, RotationHash, type RotationHashOptions } from './rotation_hash.js';
export {
  CHI2_CHUNK_ELEMENTS,
  chiSquaredKernel,
  cosineMatrix,
  dot,
  customKernel,
  kernelFromJSON,
  kernelToJSON,
  linearKernel,
  medianGamma,
  rbfKernel,
  similarityMatrix,
  type ChiSquaredKernelOptions,
  type CustomKernelOptions,
  type Kernel,
  type KernelFunction,
  type KernelJSON,
  type MedianGammaOptions,
  type PairFunction,
  type RBFKernelOptions,
  type Similarity,
} from './similarity.js';
export {
  KERNEL_ROUNDING,
  KLSH_DEFAULTS,
  KLSH_ROWS_PER_BLOCK,
  KernelizedLSH,
  type KernelizedLSHLoadOptions,
  type KernelizedLSHOptions,
} from './klsh.js';
export { exactSearch, recallAtK, type ExactSearchOptions, type SearchResult } from './exact.js';
export { MAX_PROBES, probeSequence, type Probe } from './probe.js';
export { familyFromJSON, type FamilyLoadOptions } from './serialize.js';
export { tuneIndex, type TuneOptions, type TuneResult, type TuneTrial } from './tune.js';
export { BINARY_CHUNK_BYTES, BINARY_MAGIC, type BinarySource } from './binary.js';
export {
  INDEX_FORMAT,
  LOAD_CHECK_ROUNDING,
  LOAD_CHECK_ROWS,
  LSHIndex,
  type IndexMemory,
  type IndexStats,
  type LSHId,
  type LSHIndexJSON,
  type LSHIndexLoadOptions,
  type LSHIndexOptions,
  type QueryOptions,
  type QueryResult,
  type TableStats,
} from './lsh_index.js';
