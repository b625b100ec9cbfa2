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
 * thread's. Under a gradient tape the gradient is split the same way: each
 * thread recomputes its slice's forward pass and takes its gradient, so the
 * gradients are bitwise one thread's too, and the tape keeps only the
 * inputs. Calls that cannot be split that way run on one thread: with
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

/** What a thread computes for its slice: the output, or (given dy) the gradients of qk and v. */
export type ParallelMode = 'forward' | 'gradient';

/**
 * What a thread pool provides: how many threads (the calling one included)
 * and a synchronous `run` that computes the slices after the first on the
 * other threads while the caller computes the first itself.
 */
export interface ParallelRunner {
  threads: number;
  /**
   * Runs `fn` with `options` on each slice of the inputs ([B, H, T, X]; axis
   * 1 = heads, or 0 = batch rows): the attention's output ('forward';
   * inputs qk, v) or the gradients of qk and v ('gradient'; inputs qk, v,
   * dy). `local` computes a slice on the calling thread. Returns the
   * outputs, whole (the slices put back together).
   */
  run(
    fn: ParallelFunction,
    mode: ParallelMode,
    inputs: tf.Tensor4D[],
    outputShapes: (slice: ParallelSlice) => number[][],
    options: Record<string, unknown>,
    axis: 0 | 1,
    slices: ParallelSlice[],
    local: (inputs: tf.Tensor4D[], options: Record<string, unknown>) => tf.Tensor4D[],
  ): tf.Tensor4D[];
}

/** A tensor option read back to the host (it may be disposed before a split call's gradient runs). */
export class HostTensor {
  constructor(
    readonly values: Float32Array | Int32Array | Uint8Array,
    readonly shape: number[],
    readonly dtype: tf.DataType,
  ) {}
}

/** The options with tensors in place of {@link HostTensor}s (call inside a tidy: the tensors are new). */
export function materialize(options: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    out[key] = value instanceof HostTensor ? tf.tensor(value.values, value.shape, value.dtype) : value;
  }
  return out;
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
    'causal', 'dropout', 'dropoutSeed', 'nBuckets', 'nHashes', 'chunkLength', 'numChunksBefore', 'numChunksAfter',
    'seed', 'hashFamily', 'blockLogits', 'memoryLimitBytes', 'checkFinite',
    // Per-head settings (a call that returns its attention weights is not split).
    'allowDuplicateAttention', 'attendAcrossBuckets', 'fullAttentionThreshold', 'returnAttention',
  ]),
  full: new Set(['causal', 'dropout', 'dropoutSeed', 'blockLogits', 'memoryLimitBytes', 'checkFinite', 'returnAttention']),
};
/** Tensor options, sent as data: the padding mask (whole: it is per batch row), LSH's rotations (whole: shared by all heads). */
const TENSOR_OPTIONS = new Set(['mask', 'rotations']);

/**
 * Runs an attention call split across the pool's threads and returns its
 * output (differentiable: under a tape its gradient is split too), or
 * returns undefined when the call should run on one thread (no pool, a
 * backend other than wasm, too small, dropout, an option the split does not
 * know, nothing to split).
 *
 * @param keysPerQuery keys each query attends to (T for full attention, R·L for LSH): sizes the work.
 */
export function runInParallel(
  fn: ParallelFunction,
  qk: tf.Tensor4D,
  v: tf.Tensor4D,
  options: object,
  keysPerQuery: number,
  attend: (qk: tf.Tensor4D, v: tf.Tensor4D, options: Record<string, unknown>) => tf.Tensor4D,
): tf.Tensor4D | undefined {
  if (runner === undefined || running || attentionThreads() < 2 || tf.getBackend() !== 'wasm') return undefined;
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
  const pool = runner;
  // Tensor options (mask, rotations) as host data, read now: under a tape they may be gone by the backward pass.
  const hostOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(given)) {
    hostOptions[key] = value instanceof tf.Tensor ? new HostTensor(value.dataSync() as Float32Array, value.shape, value.dtype) : value;
  }
  const sliced = (shape: number[], slice: ParallelSlice) => shape.map((n, i) => (i === axis ? slice.end - slice.start : n));
  /** Runs every slice (the first here, the others on the pool) and joins each output along the split axis. */
  const split = (mode: ParallelMode, inputs: tf.Tensor4D[], outputs: number[][], local: (inputs: tf.Tensor4D[], o: Record<string, unknown>) => tf.Tensor4D[]) => {
    running = true; // the calling thread's own slice runs on it alone
    try {
      const whole = pool.run(fn, mode, inputs, (s) => outputs.map((shape) => sliced(shape, s)), hostOptions, axis, slices, local);
      splitCalls++;
      return whole;
    } finally {
      running = false;
    }
  };
  const forward = (a: tf.Tensor4D, b: tf.Tensor4D) => split('forward', [a, b], [[...b.shape]], ([x, y], o) => [attend(x, y, o)])[0];
  if (!recordingGradients()) return forward(qk, v);
  // Under a tape: the output from the split, and a gradient split the same way. Each thread recomputes
  // its slice's forward pass inside tf.grads (the function's own recomputing gradient), so nothing but
  // the inputs is kept between the passes.
  const attendSplit = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [qkIn, vIn, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    save([qkIn, vIn]);
    return {
      value: forward(qkIn, vIn),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedQk, savedV] = saved as tf.Tensor4D[];
        return split('gradient', [savedQk, savedV, dy as tf.Tensor4D], [[...savedQk.shape], [...savedV.shape]], ([x, y, d], o) => {
          // tf.grads inside a gradient function: when it finishes it drops the engine's tape, which the backward pass
          // running this function still needs at its end, so the tape is put back.
          const engine = tf.engine();
          const outerTape = engine.state.activeTape;
          try {
            return tf.grads((a: tf.Tensor, b: tf.Tensor) => attend(a as tf.Tensor4D, b as tf.Tensor4D, o))([x, y], d) as tf.Tensor4D[];
          } finally {
            engine.state.activeTape = outerTape;
          }
        });
      },
    };
  });
  return attendSplit(qk, v) as tf.Tensor4D;
}
