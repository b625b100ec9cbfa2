/**
 * Kernels the wasm backend lacks (and a faster one for cpu), written in TypeScript.
 *
 * `UnsortedSegmentSum` is what the gradient of `tf.gather` runs (so an
 * `embedding` layer cannot train on wasm without it). The attention functions
 * do not need it (their gathers have gather gradients); models built around
 * them do.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The part of the wasm backend's class these kernels use (public methods of BackendWasm). */
interface WasmBackendLike {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.backend_util.TypedArray;
}

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
    throw new Error(`UnsortedSegmentSum (wasm): x must be float32 or int32, got ${x.dtype}`);
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

let cpuReplaced = false;

/**
 * Registers the kernels above: for 'wasm', which has none; and for 'cpu',
 * replacing tfjs's UnsortedSegmentSum, which loops over every segment for
 * every row (O(segments · rows)) and dominated training steps there. Safe to
 * call many times.
 */
export function registerWasmKernels(): void {
  if (tf.getKernel('UnsortedSegmentSum', 'wasm') === undefined) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  }
  if (!cpuReplaced) {
    cpuReplaced = true;
    if (tf.getKernel('UnsortedSegmentSum', 'cpu') !== undefined) tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'cpu', kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  }
}
