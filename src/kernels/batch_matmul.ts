/**
 * Batched multiply of many small matrices, fast on the wasm backend.
 *
 * LSH attention multiplies thousands of [C, D]·[D, 2C]-sized matrices at once.
 * On the wasm backend `tf.matMul` with a batch > 1 runs a naive loop
 * (≈2 GFLOP/s here), per-batch 2-D matMuls pay ≈250 µs each to set up an
 * XNNPACK operator, and `slice`/`unstack` copy their whole input. So on wasm
 * {@link batchMatMul} runs our own WebAssembly SIMD kernel
 * (`src/kernels/batch_matmul.wat`, embedded as bytes: no assembler at
 * runtime); on every other backend it is `tf.matMul`.
 *
 * The kernel works in its own WebAssembly.Memory: the batch is processed a
 * few matrices at a time (about {@link CHUNK_TARGET_BYTES} of A, B and C),
 * copied in from the tfjs heap, multiplied, and copied straight into the
 * output tensor's heap memory. So the kernel memory stays small (it grows only
 * for a single very large matrix, and is released again after such a call) and
 * the copies stay in cache.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertBoolean } from '../validate.js';
import { BATCH_MATMUL_WASM_BASE64 } from './batch_matmul_wasm.js';
import { LazyKernel, ensureKernelMemory, roundUp, type KernelExports, type WasmBackendLike } from './wasm_module.js';

/** Name under which the wasm kernel is registered with tfjs. */
export const BATCH_MATMUL_KERNEL_NAME = 'LSHBatchMatMul';

/** A + B + C bytes of the batch elements the kernel handles per call (a few fit in L2). */
const CHUNK_TARGET_BYTES = 1 << 20;
/** Kernel memory above this is released after the call that needed it. */
const KEEP_MEMORY_BYTES = 64 << 20;
/** Bytes of the scratch tile the kernel stores edge tiles through (4×8 floats). */
const SCRATCH_TILE_BYTES = 128;

/** The exports of batch_matmul.wat. */
interface BatchMatMulExports extends KernelExports {
  memory: WebAssembly.Memory;
  /** Multiplies `count` matrices laid out back to back; pointers are byte offsets. */
  run(
    count: number, a: number, b: number, c: number, m: number, k: number, n: number,
    transposeA: number, transposeB: number, packedA: number, packedB: number, scratchTile: number,
  ): void;
}

const kernelModule = new LazyKernel<BatchMatMulExports>(BATCH_MATMUL_WASM_BASE64);


/**
 * c[batch, m, n] = op(a) · op(b) with the wasm SIMD kernel, where a holds
 * [batch, m, k] (or [batch, k, m] when transposeA) and b [batch, k, n] (or
 * [batch, n, k] when transposeB). All sizes > 0.
 */
function multiplyWithKernel(
  a: Float32Array, b: Float32Array, c: Float32Array,
  batch: number, m: number, k: number, n: number, transposeA: boolean, transposeB: boolean,
): void {
  const kernel = kernelModule.instance();
  const aSize = m * k;
  const bSize = k * n;
  const cSize = m * n;
  const chunk = Math.max(1, Math.min(batch, Math.floor(CHUNK_TARGET_BYTES / (4 * (aSize + bSize + cSize)))));
  // Layout: scratch tile | packed A | packed B | A chunk | B chunk | C chunk (16-byte aligned).
  const k4 = roundUp(k, 4);
  const packedA = SCRATCH_TILE_BYTES;
  const packedB = packedA + roundUp(4 * roundUp(m, 4) * k4, 16);
  const aIn = packedB + roundUp(4 * roundUp(n, 8) * k4, 16);
  const bIn = aIn + roundUp(4 * chunk * aSize, 16);
  const cOut = bIn + roundUp(4 * chunk * bSize, 16);
  const end = cOut + 4 * chunk * cSize;
  ensureKernelMemory(kernel, end, 'batchMatMul', `one batch element of [${m}, ${k}]·[${k}, ${n}]`, 'split the matrices into smaller blocks');
  const memory = new Float32Array(kernel.memory.buffer);
  for (let start = 0; start < batch; start += chunk) {
    const count = Math.min(chunk, batch - start);
    memory.set(a.subarray(start * aSize, (start + count) * aSize), aIn / 4);
    memory.set(b.subarray(start * bSize, (start + count) * bSize), bIn / 4);
    kernel.run(count, aIn, bIn, cOut, m, k, n, transposeA ? 1 : 0, transposeB ? 1 : 0, packedA, packedB, 0);
    c.set(memory.subarray(cOut / 4, cOut / 4 + count * cSize), start * cSize);
  }
  // Wasm memory never shrinks: drop an instance that one big call inflated (the compiled module stays).
  kernelModule.releaseIfLarger(KEEP_MEMORY_BYTES);
}

/** Attributes of the LSHBatchMatMul kernel. */
interface BatchMatMulKernelAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

/** The tfjs kernel: reads a and b in place on the wasm heap and writes the output tensor there. */
function batchMatMulWasmKernel(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulKernelAttrs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error(`${BATCH_MATMUL_KERNEL_NAME} (wasm): expected float32 inputs, got ${a.dtype} and ${b.dtype}`);
  }
  const batch = a.shape[0];
  const m = transposeA ? a.shape[2] : a.shape[1];
  const k = transposeA ? a.shape[1] : a.shape[2];
  const n = transposeB ? b.shape[1] : b.shape[2];
  // Anything that allocates on the heap may grow it and detach earlier views, so
  // first bring a and b onto the heap (this moves tensors that live on another
  // backend), then allocate the output, and only then take the views.
  backend.typedArrayFromHeap(a);
  backend.typedArrayFromHeap(b);
  const out = backend.makeOutput([batch, m, n], 'float32');
  if (batch * m * n === 0) return out;
  const outValues = backend.typedArrayFromHeap(out) as Float32Array;
  if (k === 0) {
    outValues.fill(0);
    return out;
  }
  // Views of the inputs on the heap (no copy); nothing allocates on the heap until we return.
  const aValues = backend.typedArrayFromHeap(a) as Float32Array;
  const bValues = backend.typedArrayFromHeap(b) as Float32Array;
  multiplyWithKernel(aValues, bValues, outValues, batch, m, k, n, transposeA, transposeB);
  return out;
}

/** Registers the LSHBatchMatMul kernel for 'wasm'. Safe to call many times. */
export function registerBatchMatMulKernel(): void {
  if (tf.getKernel(BATCH_MATMUL_KERNEL_NAME, 'wasm') === undefined) {
    tf.registerKernel({
      kernelName: BATCH_MATMUL_KERNEL_NAME,
      backendName: 'wasm',
      kernelFunc: batchMatMulWasmKernel as tf.KernelFunc,
    });
  }
}

function describeOperand(name: string, x: tf.Tensor, transposed: boolean): string {
  return `${name} [${x.shape.join(', ')}]${transposed ? ` (transpose${name.toUpperCase()})` : ''}`;
}

function validate(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): void {
  assertBoolean('batchMatMul', 'transposeA', transposeA);
  assertBoolean('batchMatMul', 'transposeB', transposeB);
  for (const [name, x] of [['a', a], ['b', b]] as const) {
    if (!(x instanceof tf.Tensor)) {
      throw new Error(`batchMatMul: ${name} expected a tf.Tensor, got ${typeof x}`);
    }
    if (x.isDisposed) throw new Error(`batchMatMul: ${name} has been disposed; keep it alive until the call returns`);
    if (x.rank !== 3) {
      throw new Error(
        `batchMatMul: ${name} expected rank 3 ([batch, rows, columns]), got rank ${x.rank} (shape [${x.shape.join(', ')}]); ` +
          'use tf.matMul for 2-D matrices, or reshape to [batch, rows, columns]',
      );
    }
    if (x.dtype !== 'float32') {
      throw new Error(`batchMatMul: ${name} expected dtype float32, got ${x.dtype}; cast it with tf.cast(${name}, 'float32')`);
    }
  }
  if (a.shape[0] !== b.shape[0]) {
    throw new Error(
      `batchMatMul: a and b expected equal batch sizes, got ${a.shape[0]} and ${b.shape[0]}; ` +
        'broadcasting is not supported, tile the smaller one',
    );
  }
  const aInner = transposeA ? a.shape[1] : a.shape[2];
  const bInner = transposeB ? b.shape[2] : b.shape[1];
  if (aInner !== bInner) {
    throw new Error(
      `batchMatMul: inner dimensions expected to match, got ${aInner} (${describeOperand('a', a, transposeA)}) ` +
        `and ${bInner} (${describeOperand('b', b, transposeB)})`,
    );
  }
}

/** Runs the kernel (wasm only): the forward value, without gradient. */
function runBatchMatMulKernel(a: tf.Tensor3D, b: tf.Tensor3D, transposeA: boolean, transposeB: boolean): tf.Tensor3D {
  const attrs: BatchMatMulKernelAttrs = { transposeA, transposeB };
  return tf.engine().runKernel(
    BATCH_MATMUL_KERNEL_NAME,
    { a, b } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor3D;
}

type BatchMatMulFn = (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;

/** One differentiable function per transpose combination, index 2·transposeA + transposeB. */
const differentiable: (BatchMatMulFn | undefined)[] = [undefined, undefined, undefined, undefined];

/**
 * The kernel with its gradient, for C = op(A)·op(B):
 * dA = dC·op(B)ᵀ (or its transpose when transposeA), dB = op(A)ᵀ·dC (or its
 * transpose when transposeB), each a batchMatMul with the flags that give it
 * directly.
 */
function differentiableBatchMatMul(transposeA: boolean, transposeB: boolean): BatchMatMulFn {
  const index = (transposeA ? 2 : 0) + (transposeB ? 1 : 0);
  const existing = differentiable[index];
  if (existing !== undefined) return existing;
  const withGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [a, b, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
    save([a, b]);
    return {
      value: runBatchMatMulKernel(a, b, transposeA, transposeB),
      gradFunc: (dy: tf.Tensor3D, saved: tf.Tensor[]) => {
        const [savedA, savedB] = saved as [tf.Tensor3D, tf.Tensor3D];
        const dA = transposeA
          ? batchMatMulOnWasm(savedB, dy, transposeB, true) // op(B)·dyᵀ
          : batchMatMulOnWasm(dy, savedB, false, !transposeB); // dy·op(B)ᵀ
        const dB = transposeB
          ? batchMatMulOnWasm(dy, savedA, true, transposeA) // dyᵀ·op(A)
          : batchMatMulOnWasm(savedA, dy, !transposeA, false); // op(A)ᵀ·dy
        return [dA, dB];
      },
    };
  }) as BatchMatMulFn;
  differentiable[index] = withGradient;
  return withGradient;
}

function batchMatMulOnWasm(a: tf.Tensor3D, b: tf.Tensor3D, transposeA: boolean, transposeB: boolean): tf.Tensor3D {
  return differentiableBatchMatMul(transposeA, transposeB)(a, b);
}

/**
 * Batched matrix product of rank-3 tensors: `C[i] = op(A[i]) · op(B[i])`,
 * the same as `tf.matMul(a, b, transposeA, transposeB)` for rank-3 inputs of
 * equal batch size, and differentiable. On the 'wasm' backend it runs a
 * WebAssembly SIMD kernel (5–17× tf.matMul there for attention-sized
 * matrices); on any other backend it is tf.matMul.
 *
 * Legend: N batch, M rows of op(a), K inner size, P columns of op(b).
 *
 * @param a [N, M, K] float32, or [N, K, M] when `transposeA`.
 * @param b [N, K, P] float32, or [N, P, K] when `transposeB`.
 * @returns [N, M, P] float32.
 * @throws when a or b is not a rank-3 float32 tensor, the batch sizes differ,
 *   or the inner dimensions do not match.
 *
 * ```ts
 * const logits = batchMatMul(chunkedQueries, chunkedKeys, false, true); // [N, C, 2C]
 * ```
 */
export function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  validate(a, b, transposeA, transposeB);
  if (tf.getBackend() !== 'wasm') return tf.matMul(a, b, transposeA, transposeB);
  registerBatchMatMulKernel();
  return batchMatMulOnWasm(a, b, transposeA, transposeB);
}
