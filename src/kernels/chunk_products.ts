/**
 * The two chunk products of LSH attention's forward pass, reading the rows
 * of queries, keys and values by index:
 *
 *   chunkLogits:  logits[j, c, l] = qk[queryRows[j·C + c]] · k(qk[keyRows[j·L + l]])
 *                 with k(x) = x / sqrt(mean(x²) + 1e-6) / sqrt(D) (design §4)
 *   chunkOutputs: out[j, c, e] = Σ_l weights[j, c, l] · v[keyRows[j·L + l], e]
 *
 * On the webgpu backend each is one WGSL kernel (LSHChunkLogits,
 * LSHChunkOutputs) that reads the rows where they are: no gathered copies
 * of the queries [n, C, D], keys [n, L, D] and values [n, L, Dv] (the keys'
 * normalisation is folded into the dot product), and no separate
 * normalisation pass. Elsewhere they are what the forward pass did before:
 * gathers, the key normalisation and {@link batchMatMul} (the wasm SIMD
 * kernel on wasm). Forward only: LSH attention calls them inside its
 * recomputing customGrad, and its backward pass gathers.
 *
 * Legend: N rows of the inputs (G·T), D head size, Dv value size, n chunks
 * in the block, C queries per chunk, L keys per query.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchMatMul } from './batch_matmul.js';
import { elementwiseProgram, type WebGPUBackendLike } from './webgpu_program.js';

/** Name of the webgpu kernel of {@link chunkLogits}. */
export const CHUNK_LOGITS_KERNEL_NAME = 'LSHChunkLogits';
/** Name of the webgpu kernel of {@link chunkOutputs}. */
export const CHUNK_OUTPUTS_KERNEL_NAME = 'LSHChunkOutputs';

/** Added to the mean square before normalising keys. */
export const KEY_NORM_EPSILON = 1e-6;

/** Keys normalised as LSH attention normalises them: x / sqrt(mean(x²) + ε) / sqrt(D). */
export function normaliseKeyRows(x: tf.Tensor): tf.Tensor {
  const dim = x.shape[x.rank - 1];
  const meanSquare = tf.mean(tf.square(x), -1, true);
  return tf.mul(x, tf.mul(tf.rsqrt(tf.add(meanSquare, KEY_NORM_EPSILON)), 1 / Math.sqrt(dim)));
}

/** Attributes of the LSHChunkLogits kernel. */
interface ChunkLogitsAttrs {
  chunkLength: number;
  window: number;
}

function chunkLogitsProgram(shape: number[]): ReturnType<typeof elementwiseProgram> {
  // One invocation per logit: a dot product over D with the key's sum of squares alongside.
  return elementwiseProgram(
    'lsh_chunk_logits',
    ['rows', 'queryRows', 'keyRows'],
    shape,
    `let window = uniforms.outShape.z;
          let queryIndex = index / window; // j·C + c
          let chunk = queryIndex / uniforms.outShape.y;
          let dim = uniforms.rowsShape.y;
          let query = queryRows[queryIndex] * dim;
          let key = keyRows[chunk * window + index % window] * dim;
          var dotProduct = 0.0;
          var squares = 0.0;
          for (var d = 0; d < dim; d = d + 1) {
            let keyValue = f32(rows[key + d]);
            dotProduct = dotProduct + f32(rows[query + d]) * keyValue;
            squares = squares + keyValue * keyValue;
          }
          setOutputAtIndex(index, dotProduct * (inverseSqrt(squares / f32(dim) + ${KEY_NORM_EPSILON.toExponential()}) / sqrt(f32(dim))));`,
  );
}

function chunkOutputsProgram(shape: number[]): ReturnType<typeof elementwiseProgram> {
  // One invocation per output element: a weighted sum over the L keys' value rows.
  return elementwiseProgram(
    'lsh_chunk_outputs',
    ['weights', 'valueRows', 'keyRows'],
    shape,
    `let valueDim = uniforms.outShape.z;
          let queryIndex = index / valueDim; // j·C + c
          let window = uniforms.weightsShape.z;
          let chunk = queryIndex / uniforms.outShape.y;
          let column = index % valueDim;
          var sum = 0.0;
          for (var l = 0; l < window; l = l + 1) {
            let value = f32(valueRows[keyRows[chunk * window + l] * valueDim + column]);
            sum = sum + f32(weights[queryIndex * window + l]) * value;
          }
          setOutputAtIndex(index, sum);`,
  );
}

function chunkLogitsWebGPUKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as WebGPUBackendLike;
  const { rows, queryRows, keyRows } = args.inputs as { rows: tf.TensorInfo; queryRows: tf.TensorInfo; keyRows: tf.TensorInfo };
  const { chunkLength, window } = args.attrs as unknown as ChunkLogitsAttrs;
  const count = queryRows.shape[0] / chunkLength;
  return backend.runWebGPUProgram(chunkLogitsProgram([count, chunkLength, window]), [rows, queryRows, keyRows], 'float32');
}

function chunkOutputsWebGPUKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const backend = args.backend as WebGPUBackendLike;
  const { weights, valueRows, keyRows } = args.inputs as { weights: tf.TensorInfo; valueRows: tf.TensorInfo; keyRows: tf.TensorInfo };
  const [count, chunkLength] = weights.shape;
  return backend.runWebGPUProgram(chunkOutputsProgram([count, chunkLength, valueRows.shape[1]]), [weights, valueRows, keyRows], 'float32');
}

/** Registers LSHChunkLogits and LSHChunkOutputs for 'webgpu'. Safe to call many times. */
export function registerChunkProductKernels(): void {
  if (tf.getKernel(CHUNK_LOGITS_KERNEL_NAME, 'webgpu') === undefined) {
    tf.registerKernel({ kernelName: CHUNK_LOGITS_KERNEL_NAME, backendName: 'webgpu', kernelFunc: chunkLogitsWebGPUKernel as tf.KernelFunc });
  }
  if (tf.getKernel(CHUNK_OUTPUTS_KERNEL_NAME, 'webgpu') === undefined) {
    tf.registerKernel({ kernelName: CHUNK_OUTPUTS_KERNEL_NAME, backendName: 'webgpu', kernelFunc: chunkOutputsWebGPUKernel as tf.KernelFunc });
  }
}

/** Whether the chunk products run as the fused webgpu kernels here. */
function fused(): boolean {
  return tf.getBackend() === 'webgpu';
}

/**
 * Logits of a block of chunks, from the rows by index (see the file comment).
 * The caller built the indices (in range, counts consistent): not checked.
 *
 * @param rows [N, D] float32, the shared queries/keys of every group.
 * @param queryRows int32 [n·C]. @param keyRows int32 [n·L].
 * @returns [n, C, L] float32.
 */
export function chunkLogits(rows: tf.Tensor2D, queryRows: tf.Tensor1D, keyRows: tf.Tensor1D, chunkLength: number, window: number): tf.Tensor3D {
  const count = queryRows.shape[0] / chunkLength;
  if (fused()) {
    registerChunkProductKernels();
    const attrs: ChunkLogitsAttrs = { chunkLength, window };
    return tf.engine().runKernel(CHUNK_LOGITS_KERNEL_NAME, { rows, queryRows, keyRows } as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor3D;
  }
  return tf.tidy(() => {
    const dim = rows.shape[1];
    const queries = tf.reshape(gather(rows, queryRows), [count, chunkLength, dim]) as tf.Tensor3D;
    const keys = normaliseKeyRows(tf.reshape(gather(rows, keyRows), [count, window, dim])) as tf.Tensor3D;
    return batchMatMul(queries, keys, false, true);
  });
}

/**
 * Outputs of a block of chunks: its weights times the value rows by index.
 *
 * @param weights [n, C, L] float32. @param valueRows [N, Dv] float32.
 * @param keyRows int32 [n·L] (not checked).
 * @returns [n, C, Dv] float32.
 */
export function chunkOutputs(weights: tf.Tensor3D, valueRows: tf.Tensor2D, keyRows: tf.Tensor1D): tf.Tensor3D {
  if (fused()) {
    registerChunkProductKernels();
    return tf.engine().runKernel(CHUNK_OUTPUTS_KERNEL_NAME, { weights, valueRows, keyRows } as unknown as tf.NamedTensorMap, {}) as tf.Tensor3D;
  }
  return tf.tidy(() => {
    const [count, , window] = weights.shape;
    const values = tf.reshape(gather(valueRows, keyRows), [count, window, valueRows.shape[1]]) as tf.Tensor3D;
    return batchMatMul(weights, values);
  });
}

/** Rows of x by index (gatherND: correct on every backend, fast on wasm). */
function gather(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  return tf.gatherND(x, tf.reshape(indices, [indices.shape[0], 1])) as tf.Tensor2D;
}
