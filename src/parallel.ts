/**
 * Splitting an attention call across threads: the part the attention
 * functions see. It imports nothing from Node: the thread pool itself
 * (`src/threads.ts`, Node's worker_threads) registers a runner here when it
 * starts, and the attention functions ask {@link runInParallel} whether to
 * hand a call to it.
 *
 * A call is split by heads (or, with one head, by batch rows): each thread
 * runs the same function on its slice, and the slices are put back together.
 * Every head's result is computed by the same code on the same numbers
 * whichever thread runs it, so the output is bitwise the same as one
 * thread's. Calls that cannot be split that way run on one thread: under a
 * gradient tape (the gradient is recorded on the calling thread), with
 * dropout (its masks are drawn per block of the whole call), or with an
 * option the split does not know.
 */
import * as tf from '@tensorflow/tfjs-core';
import { recordingGradients } from './memory.js';

/** The attention functions a runner can split. */
export type ParallelFunction = 'lsh' | 'full';

/** One slice of a call, as the runner hands it to a thread. */
export interface ParallelSlice {
  /** The slice's first and last+1 head (when split by heads) or batch row (by batch). */
  start: number;
  end: number;
}

/**
 * What a thread pool provides: how many threads (the calling one included)
 * and a synchronous `run` that computes the slices after the first on the
 * other threads while the caller computes the first itself.
 */
export interface ParallelRunner {
  threads: number;
  /**
   * Runs `fn` with `options` on each slice of qk and v (axis 1 = heads, or 0
   * = batch): `local` computes a slice on the calling thread. Returns the
   * slices' outputs in order.
   */
  run(
    fn: ParallelFunction,
    qk: tf.Tensor4D,
    v: tf.Tensor4D,
    options: Record<string, unknown>,
    axis: 0 | 1,
    slices: ParallelSlice[],
    local: (qk: tf.Tensor4D, v: tf.Tensor4D, options: Record<string, unknown>) => tf.Tensor4D,
  ): tf.Tensor4D[];
}

let runner: ParallelRunner | undefined;
/** True while a split call runs (its slices must not split again). */
let running = false;

let splitCalls = 0;

/** How many calls have been split across threads in this process (to check that a set-up really uses them). */
export function parallelCalls(): number {
  return splitCalls;
}

/** The runner in use (internal: the thread pool's tests call it directly). */
export function parallelRunner(): ParallelRunner | undefined {
  return runner;
}

/** Installs (or, with undefined, removes) the runner; used by the thread pool. */
export function setParallelRunner(next: ParallelRunner | undefined): void {
  runner = next;
}

let limit = Number.POSITIVE_INFINITY;

/** Threads the attention functions use for a call they can split (1 when no pool runs). */
export function attentionThreads(): number {
  return Math.min(runner?.threads ?? 1, limit);
}

/**
 * Uses at most `threads` of the pool's threads (Infinity: all); returns the
 * previous limit. For comparing thread counts in one process (the
 * benchmark's --threads) without restarting the pool.
 */
export function limitThreads(threads: number): number {
  if (!(threads >= 1)) throw new Error(`limitThreads: threads must be at least 1, got ${threads}`);
  const previous = limit;
  limit = threads;
  return previous;
}

/**
 * Calls smaller than this many logit elements (B·H·T·keys per query) stay on
 * one thread: handing a slice to another thread costs copies and a message
 * (≈ milliseconds). Changeable for tests with {@link setParallelMinimumWork}.
 */
export const PARALLEL_MINIMUM_WORK = 1 << 22;
let minimumWork = PARALLEL_MINIMUM_WORK;

/** Sets the smallest call (in logit elements) that is split; returns the previous value. */
export function setParallelMinimumWork(logits: number): number {
  const previous = minimumWork;
  minimumWork = logits;
  return previous;
}

/** The options each function can split with (values copied to the other threads as they are). */
const PLAIN_OPTIONS: Record<ParallelFunction, ReadonlySet<string>> = {
  lsh: new Set([
    'causal', 'dropout', 'nBuckets', 'nHashes', 'chunkLength', 'numChunksBefore', 'numChunksAfter',
    'seed', 'hashFamily', 'blockLogits', 'memoryLimitBytes', 'checkFinite',
    // Per-head settings (a call that returns its attention weights is not split).
    'allowDuplicateAttention', 'attendAcrossBuckets', 'fullAttentionThreshold', 'returnAttention',
  ]),
  full: new Set(['causal', 'dropout', 'blockLogits', 'memoryLimitBytes', 'checkFinite', 'returnAttention']),
};
/** Tensor options, sent as data: the padding mask (whole: it is per batch row), LSH's rotations (whole: shared by all heads). */
const TENSOR_OPTIONS = new Set(['mask', 'rotations']);

/**
 * Runs an attention call split across the pool's threads and returns its
 * output, or returns undefined when the call should run on one thread (no
 * pool, a backend other than wasm, too small, under a gradient tape,
 * dropout, an option the split does not know, nothing to split).
 *
 * @param keysPerQuery keys each query attends to (T for full attention, R·L for LSH): sizes the work.
 */
export function runInParallel(
  fn: ParallelFunction,
  qk: tf.Tensor4D,
  v: tf.Tensor4D,
  options: object,
  keysPerQuery: number,
  local: (qk: tf.Tensor4D, v: tf.Tensor4D, options: Record<string, unknown>) => tf.Tensor4D,
): tf.Tensor4D | undefined {
  if (runner === undefined || running || attentionThreads() < 2 || tf.getBackend() !== 'wasm' || recordingGradients()) return undefined;
  const [batch, heads, length] = qk.shape;
  if (batch * heads * length * keysPerQuery < minimumWork) return undefined;
  const given = options as Record<string, unknown>;
  if ((given.dropout as number | undefined ?? 0) > 0) return undefined;
  for (const [key, value] of Object.entries(given)) {
    if (value === undefined) continue;
    if (!PLAIN_OPTIONS[fn].has(key) && !TENSOR_OPTIONS.has(key)) return undefined;
  }
  const axis: 0 | 1 = heads >= 2 ? 1 : 0;
  const size = axis === 1 ? heads : batch;
  if (size < 2) return undefined;
  // With the batch split, each slice needs its rows of the padding mask: not split that way (one head is rare).
  if (axis === 0 && given.mask !== undefined) return undefined;
  const threads = Math.min(attentionThreads(), size);
  const slices: ParallelSlice[] = [];
  for (let t = 0; t < threads; t++) {
    slices.push({ start: Math.floor((t * size) / threads), end: Math.floor(((t + 1) * size) / threads) });
  }
  let parts: tf.Tensor4D[];
  running = true; // the calling thread's own slice runs on it alone
  try {
    parts = runner.run(fn, qk, v, given, axis, slices, local);
    splitCalls++;
  } finally {
    running = false;
  }
  try {
    return tf.concat(parts, axis) as tf.Tensor4D;
  } finally {
    tf.dispose(parts);
  }
}
