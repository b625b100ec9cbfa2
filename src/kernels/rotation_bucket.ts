/**
 * The rotation hash's argmax over [p ; −p], in one pass on the wasm backend.
 *
 * hashBuckets turns each row of projections p (K/2 of them) into a bucket in
 * [0, K): the index of the largest of [p ; −p]. In tf ops that is max, min,
 * argMax, argMin, a comparison and a select, six passes over the projections
 * (on wasm ≈ 0.8 s of an LSH call at T=65536). {@link rotationBuckets} runs
 * `src/kernels/rotation_bucket.wat` instead, a few thousand rows at a time in
 * the kernel's own memory; on every other backend it is the same rule in tf
 * ops.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ROTATION_BUCKET_WASM_BASE64 } from './rotation_bucket_wasm.js';
import { LazyKernel, ensureKernelMemory, roundUp, type KernelExports, type WasmBackendLike } from './wasm_module.js';

/** Name under which the wasm kernel is registered with tfjs. */
export const ROTATION_BUCKET_KERNEL_NAME = 'LSHRotationBucket';

/** Projection bytes the kernel takes per call (they stay in L2). */
const CHUNK_TARGET_BYTES = 1 << 19;

interface RotationBucketExports extends KernelExports {
  /** Buckets of `rows` rows of `m` floats at `data` (byte offset), int32 at `out`. */
  run(rows: number, m: number, data: number, out: number): void;
}

const kernelModule = new LazyKernel<RotationBucketExports>(ROTATION_BUCKET_WASM_BASE64);

function rotationBucketWasmKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { projected } = args.inputs as { projected: tf.TensorInfo };
  const [rows, m] = projected.shape;
  backend.typedArrayFromHeap(projected); // on the heap before anything is allocated (views stay valid)
  const out = backend.makeOutput([rows], 'int32');
  if (rows === 0 || m === 0) return out;
  const input = backend.typedArrayFromHeap(projected) as Float32Array;
  const buckets = backend.typedArrayFromHeap(out) as Int32Array;
  const kernel = kernelModule.instance();
  const chunk = Math.max(1, Math.min(rows, Math.floor(CHUNK_TARGET_BYTES / (4 * m))));
  const outAt = roundUp(4 * chunk * m, 16);
  ensureKernelMemory(kernel, outAt + 4 * chunk, 'hashBuckets', `rows of ${m} projections`, 'use fewer buckets per factor');
  const floats = new Float32Array(kernel.memory.buffer);
  const ints = new Int32Array(kernel.memory.buffer);
  for (let start = 0; start < rows; start += chunk) {
    const count = Math.min(chunk, rows - start);
    floats.set(input.subarray(start * m, (start + count) * m), 0);
    kernel.run(count, m, 0, outAt);
    buckets.set(ints.subarray(outAt / 4, outAt / 4 + count), start);
  }
  return out;
}

/**
 * The bucket of each row of rotation-hash projections: the index of the
 * largest of [p ; −p] (first index on ties; a tie between max p and −min p
 * goes to the first half).
 *
 * @param projected float32 [n, m]: m = K/2 projections per row.
 * @returns int32 [n], values in [0, 2m).
 */
export function rotationBuckets(projected: tf.Tensor2D): tf.Tensor1D {
  const m = projected.shape[1];
  if (tf.getBackend() === 'wasm' && projected.dtype === 'float32') {
    if (tf.getKernel(ROTATION_BUCKET_KERNEL_NAME, 'wasm') === undefined) {
      tf.registerKernel({ kernelName: ROTATION_BUCKET_KERNEL_NAME, backendName: 'wasm', kernelFunc: rotationBucketWasmKernel as unknown as tf.KernelFunc });
    }
    return tf.engine().runKernel(ROTATION_BUCKET_KERNEL_NAME, { projected } as unknown as tf.NamedTensorMap, {}) as tf.Tensor1D;
  }
  return tf.tidy(() => {
    // argmax over [p ; −p] without building it: the first half wins ties, as argmax's first index does.
    const positiveWins = tf.greaterEqual(tf.max(projected, 1), tf.neg(tf.min(projected, 1)));
    return tf.where(positiveWins, tf.argMax(projected, 1), tf.add(tf.argMin(projected, 1), tf.scalar(m, 'int32'))) as tf.Tensor1D;
  });
}
