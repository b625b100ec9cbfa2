/**
 * A linear-time segment sum, out[segmentIds[i], …] += x[i, …], for the cpu and
 * wasm backends, written in TypeScript.
 *
 * The attention functions' row gathers have it as their gradient. They run it
 * under this library's own kernel name ({@link SEGMENT_SUM_KERNEL_NAME}), so
 * nothing another model in the process runs changes. Two backends lack a good
 * `UnsortedSegmentSum` of their own: wasm has none (so the built-in gradient
 * of `tf.gather`, and with it `embedding` training, fails there), and cpu's
 * loops over every segment for every row (O(segments · rows)). Registering
 * this kernel under tfjs's name for them is opt-in: `initBackend` does it for
 * wasm by default (filling a gap changes nothing that worked) and for cpu only
 * when asked (`replaceCpuSegmentSum`), since that replaces a tfjs kernel for
 * the whole process.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertDtype, assertNonNegativeInteger, assertTensor, shapeString } from '../validate.js';
import type { WasmBackendLike } from './wasm_module.js';

/** Name of the library's own segment-sum kernel (cpu and wasm). */
export const SEGMENT_SUM_KERNEL_NAME = 'LSHUnsortedSegmentSum';

/** The part of the cpu backend's class the kernel uses (public methods of MathBackendCPU). */
interface CpuBackendLike {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.backend_util.BackendValues): tf.TensorInfo;
}

/** out[segmentIds[i], …] += x[i, …]; ids outside [0, numSegments) are dropped (as TensorFlow does). */
function unsortedSegmentSum(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (args.attrs as unknown as tf.UnsortedSegmentSumAttrs).numSegments;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum: x must be float32 or int32, got ${x.dtype}`);
  }
  // segmentIds may index the leading dimensions of x; the rest is the row.
  const idCount = segmentIds.shape.reduce((a, b) => a * b, 1);
  const rowSize = x.shape.slice(segmentIds.shape.length).reduce((a, b) => a * b, 1);
  const backend = args.backend as WasmBackendLike & CpuBackendLike;
  const xValues = backend.readSync(x.dataId) as tf.backend_util.TypedArray;
  const ids = backend.readSync(segmentIds.dataId) as Int32Array;
  const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  const onWasm = typeof backend.typedArrayFromHeap === 'function';
  // wasm: write straight into the output's heap memory; cpu: build the values, then hand them over.
  const out = onWasm ? backend.makeOutput(outShape, x.dtype) : null;
  const outValues = out !== null ? backend.typedArrayFromHeap(out) : x.dtype === 'int32' ? new Int32Array(numSegments * rowSize) : new Float32Array(numSegments * rowSize);
  outValues.fill(0);
  for (let i = 0; i < idCount; i++) {
    const segment = ids[i];
    if (segment < 0 || segment >= numSegments) continue;
    const from = i * rowSize;
    const to = segment * rowSize;
    for (let j = 0; j < rowSize; j++) outValues[to + j] += xValues[from + j];
  }
  return out ?? backend.makeTensorInfo(outShape, x.dtype, outValues);
}

/** Backends the kernel is written for. */
const SEGMENT_SUM_BACKENDS = ['cpu', 'wasm'] as const;

/** Registers the kernel under the library's own name for cpu and wasm. Safe to call many times. */
function registerOwnSegmentSum(): void {
  for (const backendName of SEGMENT_SUM_BACKENDS) {
    if (tf.getKernel(SEGMENT_SUM_KERNEL_NAME, backendName) === undefined) {
      tf.registerKernel({ kernelName: SEGMENT_SUM_KERNEL_NAME, backendName, kernelFunc: unsortedSegmentSum as tf.KernelFunc });
    }
  }
}

/**
 * The segment sum of the rows of `x`: out[s] = Σ_{i: segmentIds[i] = s} x[i],
 * the same as `tf.unsortedSegmentSum`. On cpu and wasm it runs this library's
 * linear-time kernel (under its own name: tfjs's kernels are left alone); on
 * other backends it is `tf.unsortedSegmentSum`. Not differentiable (it is
 * used as a gradient).
 *
 * @param x [N, ...]
 * @param segmentIds int32 [N]; ids outside [0, numSegments) are dropped.
 * @returns [numSegments, ...]
 */
export function segmentSum(x: tf.Tensor, segmentIds: tf.Tensor1D, numSegments: number): tf.Tensor {
  const who = 'segmentSum';
  assertTensor(who, 'x', x, '[N, ...]');
  assertTensor(who, 'segmentIds', segmentIds, '[N]');
  assertDtype(who, 'x', x, ['float32', 'int32'], "cast it with tf.cast(x, 'float32')");
  assertDtype(who, 'segmentIds', segmentIds, ['int32'], "cast it with tf.cast(segmentIds, 'int32')");
  // One id per row (or per leading element) of x: a shorter list would drop rows silently.
  if (segmentIds.rank < 1 || segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(
      `${who}: segmentIds must have the leading shape of x (one id per row), got ${shapeString(segmentIds.shape)} for x ${shapeString(x.shape)}`,
    );
  }
  assertNonNegativeInteger(who, 'numSegments', numSegments);
  if (!(SEGMENT_SUM_BACKENDS as readonly string[]).includes(tf.getBackend())) {
    return tf.unsortedSegmentSum(x, segmentIds, numSegments);
  }
  registerOwnSegmentSum();
  const attrs: tf.UnsortedSegmentSumAttrs = { numSegments };
  return tf.engine().runKernel(
    SEGMENT_SUM_KERNEL_NAME,
    { x, segmentIds } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor;
}

/** Options of {@link registerSegmentSumKernels}. */
export interface RegisterSegmentSumOptions {
  /**
   * Register the kernel as wasm's `UnsortedSegmentSum`, which tfjs-backend-wasm
   * lacks (without it `tf.gather`'s gradient, and `embedding` training, fail on
   * wasm). Never replaces a kernel that is there. Default true.
   */
  wasm?: boolean;
  /**
   * Replace the cpu backend's `UnsortedSegmentSum` (O(segments · rows)) with
   * this linear-time kernel, for every model in the process. Default false.
   */
  replaceCpu?: boolean;
}

/**
 * Registers the segment-sum kernel under tfjs's own name `UnsortedSegmentSum`,
 * as asked: a process-wide change, so only on request (`initBackend` calls it
 * with its options). Safe to call many times.
 */
export function registerSegmentSumKernels(options: RegisterSegmentSumOptions = {}): void {
  const { wasm = true, replaceCpu = false } = options;
  if (wasm && tf.getKernel('UnsortedSegmentSum', 'wasm') === undefined) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  }
  if (replaceCpu && tf.getKernel('UnsortedSegmentSum', 'cpu')?.kernelFunc !== unsortedSegmentSum) {
    if (tf.getKernel('UnsortedSegmentSum', 'cpu') !== undefined) tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'cpu', kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  }
}
