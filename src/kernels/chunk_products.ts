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
import { WORKGROUP_SIZE, workgroupProgram, type WebGPUBackendLike } from './webgpu_program.js';

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

/** Outputs per invocation along each of the two output axes it blocks (queries × keys, or queries × value columns). */
const BLOCK = 4;

/** Workgroups for one invocation per BLOCK × BLOCK block of an [n, rows, columns] output. */
function blockWorkgroups([count, rows, columns]: number[]): number {
  return Math.ceil((count * Math.ceil(rows / BLOCK) * Math.ceil(columns / BLOCK)) / WORKGROUP_SIZE);
}

/**
 * WGSL shared by both programs: `index` → (chunk j, first query c0, first
 * column t0) of the invocation's block, with `inside` false past the end;
 * `columns` is the output's last axis.
 */
const BLOCK_COORDS = `
      let chunkLength = uniforms.outShape.y;
      let columns = uniforms.outShape.z;
      let queryBlocks = (chunkLength + ${BLOCK - 1}) / ${BLOCK};
      let columnBlocks = (columns + ${BLOCK - 1}) / ${BLOCK};
      let inside = index < uniforms.outShape.x * queryBlocks * columnBlocks;
      let j = index / (queryBlocks * columnBlocks);
      let c0 = (index / columnBlocks) % queryBlocks * ${BLOCK};
      let t0 = index % columnBlocks * ${BLOCK};`;

/**
 * logits [n, C, L]: each invocation a block of 4 queries × 4 keys, a dot
 * product over D per pair with each key's sum of squares alongside (4 + 4
 * loads per 16 multiply-adds); a block past an edge repeats the last query or
 * key and does not write it.
 */
function chunkLogitsProgram(shape: number[]): ReturnType<typeof workgroupProgram> {
  const code = `
    fn main(index : i32) {
      ${BLOCK_COORDS}
      if (!inside) {
        return;
      }
      let dim = uniforms.rowsShape.y;
      var query : array<i32, ${BLOCK}>;
      var key : array<i32, ${BLOCK}>;
      for (var i = 0; i < ${BLOCK}; i = i + 1) {
        query[i] = queryRows[j * chunkLength + min(c0 + i, chunkLength - 1)] * dim;
        key[i] = keyRows[j * columns + min(t0 + i, columns - 1)] * dim;
      }
      var sums : array<vec4<f32>, ${BLOCK}>;
      var squares = vec4<f32>(0.0);
      for (var d = 0; d < dim; d = d + 1) {
        let keyValues = vec4<f32>(f32(rows[key[0] + d]), f32(rows[key[1] + d]), f32(rows[key[2] + d]), f32(rows[key[3] + d]));
        squares = squares + keyValues * keyValues;
        for (var i = 0; i < ${BLOCK}; i = i + 1) {
          sums[i] = sums[i] + f32(rows[query[i] + d]) * keyValues;
        }
      }
      var scale = inverseSqrt(squares / f32(dim) + ${KEY_NORM_EPSILON.toExponential()}) / sqrt(f32(dim));
      for (var i = 0; i < min(${BLOCK}, chunkLength - c0); i = i + 1) {
        for (var t = 0; t < min(${BLOCK}, columns - t0); t = t + 1) {
          setOutputAtIndex((j * chunkLength + c0 + i) * columns + t0 + t, sums[i][t] * scale[t]);
        }
      }
    }`;
  return workgroupProgram('lsh_chunk_logits', ['rows', 'queryRows', 'keyRows'], shape, blockWorkgroups(shape), code);
}

/**
 * out [n, C, Dv]: each invocation a block of 4 queries × 4 value columns,
 * a sum over the L keys (1 index, 4 weight and 4 value loads per 16
 * multiply-adds); edges as in chunkLogitsProgram.
 */
function chunkOutputsProgram(shape: number[]): ReturnType<typeof workgroupProgram> {
  const code = `
    fn main(index : i32) {
      ${BLOCK_COORDS}
      if (!inside) {
        return;
      }
      let window = uniforms.weightsShape.z;
      var weightRow : array<i32, ${BLOCK}>;
      var column : array<i32, ${BLOCK}>;
      for (var i = 0; i < ${BLOCK}; i = i + 1) {
        weightRow[i] = (j * chunkLength + min(c0 + i, chunkLength - 1)) * window;
        column[i] = min(t0 + i, columns - 1);
      }
      var sums : array<vec4<f32>, ${BLOCK}>;
      for (var l = 0; l < window; l = l + 1) {
        let row = keyRows[j * window + l] * columns;
        let values = vec4<f32>(
          f32(valueRows[row + column[0]]), f32(valueRows[row + column[1]]), f32(valueRows[row + column[2]]), f32(valueRows[row + column[3]]));
        for (var i = 0; i < ${BLOCK}; i = i + 1) {
          sums[i] = sums[i] + f32(weights[weightRow[i] + l]) * values;
        }
      }
      for (var i = 0; i < min(${BLOCK}, chunkLength - c0); i = i + 1) {
        for (var t = 0; t < min(${BLOCK}, columns - t0); t = t + 1) {
          setOutputAtIndex((j * chunkLength + c0 + i) * columns + t0 + t, sums[i][t]);
        }
      }
    }`;
  return workgroupProgram('lsh_chunk_outputs', ['weights', 'valueRows', 'keyRows'], shape, blockWorkgroups(shape), code);
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
  if (fused()) {
    registerChunkProductKernels();
    const attrs: ChunkLogitsAttrs = { chunkLength, window };
    return tf.engine().runKernel(CHUNK_LOGITS_KERNEL_NAME, { rows, queryRows, keyRows } as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor3D;
  }
  return chunkLogitsWithOps(rows, queryRows, keyRows, chunkLength, window);
}

/** {@link chunkLogits} as gathers, the key normalisation and batchMatMul, on any backend (the benchmark compares). */
export function chunkLogitsWithOps(rows: tf.Tensor2D, queryRows: tf.Tensor1D, keyRows: tf.Tensor1D, chunkLength: number, window: number): tf.Tensor3D {
  const count = queryRows.shape[0] / chunkLength;
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
  return chunkOutputsWithOps(weights, valueRows, keyRows);
}

/** {@link chunkOutputs} as a gather and batchMatMul, on any backend (the benchmark compares). */
export function chunkOutputsWithOps(weights: tf.Tensor3D, valueRows: tf.Tensor2D, keyRows: tf.Tensor1D): tf.Tensor3D {
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
