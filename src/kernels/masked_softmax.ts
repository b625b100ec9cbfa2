/**
 * Masked softmax of attention logits in one pass, fast on the wasm backend.
 *
 * LSH attention turns each block's logits [n, C, L] into weights with a chain
 * of eight tf ops (mask multiply-add, max, sub, exp, sum, div, log) and two
 * host-built float masks. On the wasm backend tf.exp alone costs ≈13 ns an
 * element (scalar libm). {@link maskedSoftmax} does all of it in one kernel
 * (`src/kernels/masked_softmax.wat`, WebAssembly SIMD with a polynomial exp,
 * embedded as bytes) from the logits and a single `fill` mask; on webgpu the
 * same contract runs in WGSL (masked_softmax_webgpu.ts); on every other
 * backend it is the same formula in plain tf ops.
 *
 * As batchMatMul does, the kernel works in its own WebAssembly.Memory: rows
 * are processed a few hundred at a time (about {@link CHUNK_TARGET_BYTES} of
 * logits and fill), copied in from the tfjs heap, turned into weights in
 * place, and copied straight into the output tensor's heap memory.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MASKED_SOFTMAX_WASM_BASE64 } from './masked_softmax_wasm.js';
import { registerMaskedSoftmaxWebGPUKernel } from './masked_softmax_webgpu.js';
import { LazyKernel, ensureKernelMemory, roundUp, type KernelExports, type WasmBackendLike } from './wasm_module.js';
import { withGradient } from '../ops.js';

/** Name under which the wasm and webgpu kernels are registered with tfjs. */
export const MASKED_SOFTMAX_KERNEL_NAME = 'LSHMaskedSoftmax';

/** Logits + fill bytes of the rows the kernel handles per call (they stay in L2). */
const CHUNK_TARGET_BYTES = 1 << 19;
/** Kernel memory above this is released after the call that needed it. */
const KEEP_MEMORY_BYTES = 64 << 20;
/** Bytes of the per-row statistics the kernel writes: f64 max, f64 sum. */
const STATS_BYTES_PER_ROW = 16;

/** The exports of masked_softmax.wat. */
interface MaskedSoftmaxExports extends KernelExports {
  memory: WebAssembly.Memory;
  /**
   * Softmax of `rows` rows of `length` floats at `data` (logits in, weights
   * out, in place), masked by `fill`; writes (f64 max, f64 sum) per row at
   * `stats`. Pointers are byte offsets.
   */
  run(rows: number, length: number, data: number, fill: number, stats: number): void;
  /**
   * Writes the fill of rows `first` … `first + rows − 1` of [n, C, L] at
   * `out` from positions: −1e5 where the key's position is the query's,
   * else −1e9 where the key is masked (kmask −1) or, with `causal` 1, after
   * the query, else 0. qpos [n·C], kpos and kmask [n·L], int32; L % 4 = 0.
   */
  fill(first: number, rows: number, c: number, length: number, qpos: number, kpos: number, kmask: number, causal: number, out: number): void;
}

/** Masks given by positions instead of a dense fill (the kernel writes the fill itself, a few hundred rows at a time). */
interface PositionMaskViews {
  queryPositions: Int32Array;
  keyPositions: Int32Array;
  keyMasked: Int32Array;
  queriesPerMatrix: number;
  causal: boolean;
}

const kernelModule = new LazyKernel<MaskedSoftmaxExports>(MASKED_SOFTMAX_WASM_BASE64);


/**
 * The softmax of `rows` rows of `length` (> 0) logits with the wasm SIMD
 * kernel: weights, and per row the maximum and log of the shifted sum.
 */
function softmaxWithKernel(
  logits: Float32Array, fill: Float32Array | PositionMaskViews, weights: Float32Array, rowMax: Float32Array, logSum: Float32Array,
  rows: number, length: number,
): void {
  const kernel = kernelModule.instance();
  const chunk = Math.max(1, Math.min(rows, Math.floor(CHUNK_TARGET_BYTES / (8 * length))));
  // Layout: data (logits in, weights out) | fill | stats [| query positions | key positions | key masks], 16-byte aligned.
  const dataIn = 0;
  const fillIn = roundUp(4 * chunk * length, 16);
  const statsOut = fillIn + roundUp(4 * chunk * length, 16);
  const positionsIn = roundUp(statsOut + STATS_BYTES_PER_ROW * chunk, 16);
  const masks = fill instanceof Float32Array ? null : fill;
  const keysIn = masks === null ? positionsIn : positionsIn + roundUp(4 * masks.queryPositions.length, 16);
  const keyMasksIn = masks === null ? keysIn : keysIn + roundUp(4 * masks.keyPositions.length, 16);
  const end = masks === null ? positionsIn : keyMasksIn + 4 * masks.keyMasked.length;
  ensureKernelMemory(kernel, end, 'maskedSoftmax', `rows of ${length} logits`, 'use shorter rows');
  const memory = new Float32Array(kernel.memory.buffer);
  const stats = new Float64Array(kernel.memory.buffer, statsOut, 2 * chunk);
  if (masks !== null) {
    const ints = new Int32Array(kernel.memory.buffer);
    ints.set(masks.queryPositions, positionsIn / 4);
    ints.set(masks.keyPositions, keysIn / 4);
    ints.set(masks.keyMasked, keyMasksIn / 4);
  }
  for (let start = 0; start < rows; start += chunk) {
    const count = Math.min(chunk, rows - start);
    const from = start * length;
    const to = from + count * length;
    memory.set(logits.subarray(from, to), dataIn / 4);
    if (masks === null) memory.set((fill as Float32Array).subarray(from, to), fillIn / 4);
    else kernel.fill(start, count, masks.queriesPerMatrix, length, positionsIn, keysIn, keyMasksIn, masks.causal ? 1 : 0, fillIn);
    kernel.run(count, length, dataIn, fillIn, statsOut);
    weights.set(memory.subarray(dataIn / 4, dataIn / 4 + count * length), from);
    for (let r = 0; r < count; r++) {
      rowMax[start + r] = stats[2 * r];
      logSum[start + r] = Math.log(stats[2 * r + 1]);
    }
  }
  // Wasm memory never shrinks: drop an instance that one long row inflated (the compiled module stays).
  kernelModule.releaseIfLarger(KEEP_MEMORY_BYTES);
}

/** The tfjs kernel: reads logits and fill in place on the wasm heap; outputs [weights, rowMax, logSum]. */
function maskedSoftmaxWasmKernel(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo[] {
  const backend = args.backend as WasmBackendLike;
  const { logits, fill } = args.inputs as { logits: tf.TensorInfo; fill: tf.TensorInfo };
  if (logits.dtype !== 'float32' || fill.dtype !== 'float32') {
    throw new Error(`${MASKED_SOFTMAX_KERNEL_NAME} (wasm): expected float32 inputs, got ${logits.dtype} and ${fill.dtype}`);
  }
  const length = logits.shape[logits.shape.length - 1];
  const rowShape = [...logits.shape.slice(0, -1), 1];
  const rows = rowShape.reduce((a, b) => a * b, 1);
  // Anything that allocates on the heap may grow it and detach earlier views, so
  // first bring the inputs onto the heap (this moves tensors that live on another
  // backend), then allocate the outputs, and only then take the views.
  backend.typedArrayFromHeap(logits);
  backend.typedArrayFromHeap(fill);
  const weights = backend.makeOutput([...logits.shape], 'float32');
  const rowMax = backend.makeOutput(rowShape, 'float32');
  const logSum = backend.makeOutput(rowShape, 'float32');
  if (rows === 0) return [weights, rowMax, logSum];
  const rowMaxValues = backend.typedArrayFromHeap(rowMax) as Float32Array;
  const logSumValues = backend.typedArrayFromHeap(logSum) as Float32Array;
  if (length === 0) {
    // An empty row: max −∞, sum 0 (what max and log(sum) give).
    rowMaxValues.fill(-Infinity);
    logSumValues.fill(-Infinity);
    return [weights, rowMax, logSum];
  }
  // Views on the heap (no copy); nothing allocates on the heap until we return.
  softmaxWithKernel(
    backend.typedArrayFromHeap(logits) as Float32Array,
    backend.typedArrayFromHeap(fill) as Float32Array,
    backend.typedArrayFromHeap(weights) as Float32Array,
    rowMaxValues,
    logSumValues,
    rows,
    length,
  );
  return [weights, rowMax, logSum];
}

/** Registers the LSHMaskedSoftmax kernel for 'wasm'. Safe to call many times. */
export function registerMaskedSoftmaxKernel(): void {
  if (tf.getKernel(MASKED_SOFTMAX_KERNEL_NAME, 'wasm') === undefined) {
    tf.registerKernel({
      kernelName: MASKED_SOFTMAX_KERNEL_NAME,
      backendName: 'wasm',
      kernelFunc: maskedSoftmaxWasmKernel as unknown as tf.KernelFunc,
    });
  }
}

/** Name of the wasm kernel that takes positions instead of a dense fill. */
export const MASKED_SOFTMAX_AT_POSITIONS_KERNEL_NAME = 'LSHMaskedSoftmaxAtPositions';

/** The tfjs kernel: logits [n, C, L] and int32 queryPositions [n, C], keyPositions and keyMasked [n, L]; attrs {causal}. */
function maskedSoftmaxAtPositionsWasmKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const backend = args.backend as WasmBackendLike;
  const { logits, queryPositions, keyPositions, keyMasked } = args.inputs as Record<string, tf.TensorInfo>;
  const [n, c, length] = logits.shape;
  const rowShape = [n, c, 1];
  const rows = n * c;
  for (const x of [logits, queryPositions, keyPositions, keyMasked]) backend.typedArrayFromHeap(x);
  const weights = backend.makeOutput([...logits.shape], 'float32');
  const rowMax = backend.makeOutput(rowShape, 'float32');
  const logSum = backend.makeOutput(rowShape, 'float32');
  if (rows === 0) return [weights, rowMax, logSum];
  softmaxWithKernel(
    backend.typedArrayFromHeap(logits) as Float32Array,
    {
      queryPositions: backend.typedArrayFromHeap(queryPositions) as Int32Array,
      keyPositions: backend.typedArrayFromHeap(keyPositions) as Int32Array,
      keyMasked: backend.typedArrayFromHeap(keyMasked) as Int32Array,
      queriesPerMatrix: c,
      causal: args.attrs?.causal === true,
    },
    backend.typedArrayFromHeap(weights) as Float32Array,
    backend.typedArrayFromHeap(rowMax) as Float32Array,
    backend.typedArrayFromHeap(logSum) as Float32Array,
    rows,
    length,
  );
  return [weights, rowMax, logSum];
}

/**
 * Whether {@link maskedSoftmaxAtPositions} runs here: the wasm backend, and
 * rows of a multiple of 4 keys.
 */
export function canMaskAtPositions(keysPerRow: number): boolean {
  return tf.getBackend() === 'wasm' && keysPerRow > 0 && keysPerRow % 4 === 0;
}

/**
 * {@link maskedSoftmax}'s forward values (no gradient) with the masks given
 * by positions, written inside the wasm kernel a few hundred rows at a time
 * instead of read from a dense [n, C, L] fill built on the host: for query
 * row (m, c) and key (m, k),
 *
 *   fill = keyPositions[m, k] == queryPositions[m, c] ? −1e5
 *        : keyMasked[m, k] or (causal and keyPositions[m, k] > queryPositions[m, c]) ? −1e9
 *        : 0 (kept)
 *
 * (LSH attention's masks with every key in the sequence and buckets not
 * compared). Wasm only, L a multiple of 4: check {@link canMaskAtPositions}.
 *
 * @param logits float32 [n, C, L].
 * @param queryPositions int32 [n·C]; keyPositions int32 [n·L]; keyMasked int32 [n·L], −1 where masked, else 0.
 * @returns weights [n, C, L], rowMax [n, C, 1], logSum [n, C, 1], float32.
 */
export function maskedSoftmaxAtPositions(
  logits: tf.Tensor3D,
  masks: { queryPositions: Int32Array; keyPositions: Int32Array; keyMasked: Int32Array; causal: boolean },
): MaskedSoftmaxResult {
  const [n, c, length] = logits.shape;
  if (!canMaskAtPositions(length)) {
    throw new Error(`maskedSoftmaxAtPositions: needs the wasm backend and rows of a multiple of 4 keys, got backend ${tf.getBackend()} and ${length} keys; use maskedSoftmax with a dense fill`);
  }
  if (masks.queryPositions.length !== n * c || masks.keyPositions.length !== n * length || masks.keyMasked.length !== n * length) {
    throw new Error(
      `maskedSoftmaxAtPositions: expected ${n * c} query positions and ${n * length} key positions and masks for logits [${logits.shape.join(', ')}], ` +
        `got ${masks.queryPositions.length}, ${masks.keyPositions.length} and ${masks.keyMasked.length}`,
    );
  }
  if (tf.getKernel(MASKED_SOFTMAX_AT_POSITIONS_KERNEL_NAME, 'wasm') === undefined) {
    tf.registerKernel({
      kernelName: MASKED_SOFTMAX_AT_POSITIONS_KERNEL_NAME,
      backendName: 'wasm',
      kernelFunc: maskedSoftmaxAtPositionsWasmKernel as unknown as tf.KernelFunc,
    });
  }
  return tf.tidy(() => {
    const inputs = {
      logits,
      queryPositions: tf.tensor1d(masks.queryPositions, 'int32'),
      keyPositions: tf.tensor1d(masks.keyPositions, 'int32'),
      keyMasked: tf.tensor1d(masks.keyMasked, 'int32'),
    };
    const [weights, rowMax, logSum] = tf.engine().runKernel(MASKED_SOFTMAX_AT_POSITIONS_KERNEL_NAME, inputs as unknown as tf.NamedTensorMap, {
      causal: masks.causal,
    }) as tf.Tensor3D[];
    return { weights, rowMax, logSum };
  });
}

/** What {@link maskedSoftmax} returns (a type, not an interface, so tf.tidy can return it). */
export type MaskedSoftmaxResult = {
  /** [n, C, L] softmax of the masked logits along the last axis. */
  weights: tf.Tensor3D;
  /** [n, C, 1] maximum of each row of masked logits; a constant (no gradient). */
  rowMax: tf.Tensor3D;
  /** [n, C, 1] log Σ exp(masked − rowMax) of each row. */
  logSum: tf.Tensor3D;
};

function validate(logits: tf.Tensor, fill: tf.Tensor): void {
  for (const [name, x] of [['logits', logits], ['fill', fill]] as const) {
    if (!(x instanceof tf.Tensor)) {
      throw new Error(`maskedSoftmax: ${name} expected a tf.Tensor, got ${typeof x}`);
    }
    if (x.isDisposed) throw new Error(`maskedSoftmax: ${name} has been disposed; keep it alive until the call returns`);
    if (x.rank !== 3) {
      throw new Error(
        `maskedSoftmax: ${name} expected rank 3 ([n, C, L]), got rank ${x.rank} (shape [${x.shape.join(', ')}]); ` +
          'reshape to [n, C, L]',
      );
    }
    if (x.dtype !== 'float32') {
      throw new Error(`maskedSoftmax: ${name} expected dtype float32, got ${x.dtype}; cast it with tf.cast(${name}, 'float32')`);
    }
  }
  if (logits.shape.some((d, i) => d !== fill.shape[i])) {
    throw new Error(
      `maskedSoftmax: logits and fill expected equal shapes, got [${logits.shape.join(', ')}] and [${fill.shape.join(', ')}]; ` +
        'broadcasting is not supported',
    );
  }
  if (logits.shape[2] === 0) {
    throw new Error(`maskedSoftmax: expected at least one logit per row, got shape [${logits.shape.join(', ')}]`);
  }
}

/** The forward values, without gradient: the wasm or webgpu kernel. */
function forwardWithKernel(logits: tf.Tensor3D, fill: tf.Tensor3D): MaskedSoftmaxResult {
  const [weights, rowMax, logSum] = tf.engine().runKernel(
    MASKED_SOFTMAX_KERNEL_NAME,
    { logits, fill } as unknown as tf.NamedTensorMap,
    {},
  ) as tf.Tensor3D[];
  return { weights, rowMax, logSum };
}

/** The forward values in plain tf ops (any backend): the same formula as the kernel (the benchmark compares). */
export function maskedSoftmaxWithOps(logits: tf.Tensor3D, fill: tf.Tensor3D): MaskedSoftmaxResult {
  const masked = tf.where(tf.equal(fill, 0), logits, fill);
  const rowMax = tf.max(masked, -1, true) as tf.Tensor3D;
  const exps = tf.exp(tf.sub(masked, rowMax));
  const sums = tf.sum(exps, -1, true);
  return { weights: tf.div(exps, sums) as tf.Tensor3D, rowMax, logSum: tf.log(sums) as tf.Tensor3D };
}

/** 1 where the logit is kept (fill 0), else 0. */
function keepMask(fill: tf.Tensor): tf.Tensor {
  return tf.cast(tf.equal(fill, 0), 'float32');
}

/** dLogits from dWeights: w ⊙ (dW − Σ_row dW ⊙ w), zero where masked. */
function weightsGradient(dWeights: tf.Tensor, weights: tf.Tensor, fill: tf.Tensor): tf.Tensor {
  const inner = tf.sum(tf.mul(dWeights, weights), -1, true);
  return tf.mul(tf.mul(weights, tf.sub(dWeights, inner)), keepMask(fill));
}

/** dLogits from dLogSum: w ⊙ dLogSum, zero where masked (rowMax is a constant). */
function logSumGradient(dLogSum: tf.Tensor, weights: tf.Tensor, fill: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(weights, dLogSum), keepMask(fill));
}

/**
 * Softmax of masked logits along the last axis, with the row maximum and the
 * log of the shifted sum kept apart (so LSH rounds can be combined without
 * float32 losing the log-sum-exp, design §5):
 *
 *   masked = fill === 0 ? logits : fill     (masks replace logits)
 *   rowMax = max_row masked
 *   weights = exp(masked − rowMax) / Σ_row exp(masked − rowMax)
 *   logSum = log Σ_row exp(masked − rowMax)
 *
 * Differentiable in `logits` (rowMax is a constant; masked entries get zero
 * gradient), not in `fill`. On the 'wasm' backend it runs one WebAssembly
 * SIMD kernel (weights within ~3e-7 of float64 exp), on 'webgpu' a WGSL
 * kernel (four dispatches: row statistics, weights, the two row outputs);
 * elsewhere plain tf ops.
 *
 * Legend: n matrices, C queries, L keys.
 *
 * @param logits float32 [n, C, L].
 * @param fill float32 [n, C, L]: 0 where the logit is kept, else the value
 *   that replaces it (LSH attention: −1e5 for a query's own key, −1e9 for
 *   masked keys).
 * @returns weights [n, C, L], rowMax [n, C, 1], logSum [n, C, 1], float32.
 * @throws when logits or fill is not a rank-3 float32 tensor, their shapes
 *   differ, or L is 0.
 *
 * ```ts
 * const { weights, rowMax, logSum } = maskedSoftmax(logits, tf.tensor3d(fill, logits.shape));
 * const out = batchMatMul(weights, values);
 * ```
 */
export function maskedSoftmax(logits: tf.Tensor3D, fill: tf.Tensor3D): MaskedSoftmaxResult {
  validate(logits, fill);
  let forward = maskedSoftmaxWithOps;
  if (tf.getBackend() === 'wasm') {
    registerMaskedSoftmaxKernel();
    forward = forwardWithKernel;
  } else if (tf.getBackend() === 'webgpu') {
    // The same kernel contract in WGSL (src/kernels/masked_softmax_webgpu.ts).
    registerMaskedSoftmaxWebGPUKernel(MASKED_SOFTMAX_KERNEL_NAME);
    forward = forwardWithKernel;
  }
  // tf.customGrad has one output, so the forward runs (untaped) inside the
  // weights' customGrad and hands rowMax and logSum out kept (tf.keep; their
  // clones are returned, the kept ones disposed); logSum gets its gradient from
  // a second customGrad, rowMax none. The two gradients add up to
  // keep ⊙ (w ⊙ (dW − Σ_row dW ⊙ w) + w ⊙ dLogSum).
  const kept: { rowMax?: tf.Tensor3D; logSum?: tf.Tensor3D } = {};
  try {
    const weights = withGradient(logits, (x, save) => {
      const result = forward(x as tf.Tensor3D, fill);
      kept.rowMax = tf.keep(result.rowMax);
      kept.logSum = tf.keep(result.logSum);
      save([result.weights, fill]);
      return {
        value: result.weights,
        gradFunc: (dy, saved) => weightsGradient(dy, saved[0], saved[1]),
      };
    }) as tf.Tensor3D;
    const { rowMax, logSum } = kept;
    if (rowMax === undefined || logSum === undefined) throw new Error('maskedSoftmax: internal error, the forward pass did not run');
    const differentiableLogSum = withGradient(logits, (_, save) => {
      save([weights, fill]);
      return {
        value: tf.clone(logSum),
        gradFunc: (dy, saved) => logSumGradient(dy, saved[0], saved[1]),
      };
    }) as tf.Tensor3D;
    return { weights, rowMax: tf.clone(rowMax), logSum: differentiableLogSum };
  } finally {
    tf.dispose([kept.rowMax, kept.logSum].filter((t): t is tf.Tensor3D => t !== undefined));
  }
}
