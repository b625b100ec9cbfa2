/**
 * The LSHMaskedSoftmax kernel on the webgpu backend, in WGSL: the same
 * contract as the wasm kernel (src/kernels/masked_softmax.ts): inputs
 * `logits` and `fill` [n, C, L] float32; outputs weights [n, C, L], rowMax
 * [n, C, 1] and logSum [n, C, 1], with masked = fill == 0 ? logit : fill,
 * rowMax = max masked, weights = exp(masked − rowMax) / Σ exp(masked −
 * rowMax), logSum = log Σ exp(masked − rowMax).
 *
 * A tfjs-webgpu program has one output, so the kernel is four dispatches:
 * the row statistics (one workgroup per row: max, then the sum of shifted
 * exponentials, each a tree reduction in workgroup memory) into [n·C, 2];
 * the weights from the logits, fill and statistics (one invocation per
 * element); and the two columns of the statistics picked into rowMax and
 * (through log) logSum. The tf-ops version is eight kernels over [n, C, L]
 * (equal, where, max, sub, exp, sum, div, log) plus their intermediates.
 */
import * as tf from '@tensorflow/tfjs-core';
import { WORKGROUP_SIZE, elementwiseProgram, workgroupProgram, type WebGPUBackendLike } from './webgpu_program.js';

/** masked(at): the logit at flat position `at`, or what fill replaces it with. */
const MASKED_SNIPPET = `
  fn masked(at : i32) -> f32 {
    let replacement = f32(fill[at]);
    if (replacement == 0.0) {
      return f32(logits[at]);
    }
    return replacement;
  }`;

/** [rows, 2]: (max, Σ exp(masked − max)) of each row of logits/fill [n, C, L]. */
function statsProgram(rows: number): ReturnType<typeof workgroupProgram> {
  const code = `
    ${MASKED_SNIPPET}
    var<workgroup> laneValues : array<f32, ${WORKGROUP_SIZE}>;

    fn main(index : i32) {
      let row = index / ${WORKGROUP_SIZE};
      let lane = index % ${WORKGROUP_SIZE};
      let rowLength = uniforms.logitsShape.z;
      let inside = row < uniforms.outShape.x;
      let base = row * rowLength;
      var best = -uniforms.INFINITY;
      if (inside) {
        for (var k = lane; k < rowLength; k = k + ${WORKGROUP_SIZE}) {
          best = max(best, masked(base + k));
        }
      }
      laneValues[lane] = best;
      workgroupBarrier();
      for (var stride = ${WORKGROUP_SIZE / 2}; stride > 0; stride = stride / 2) {
        if (lane < stride) {
          laneValues[lane] = max(laneValues[lane], laneValues[lane + stride]);
        }
        workgroupBarrier();
      }
      let rowMax = laneValues[0];
      workgroupBarrier();
      var sum = 0.0;
      if (inside) {
        for (var k = lane; k < rowLength; k = k + ${WORKGROUP_SIZE}) {
          sum = sum + exp(masked(base + k) - rowMax);
        }
      }
      laneValues[lane] = sum;
      workgroupBarrier();
      for (var stride = ${WORKGROUP_SIZE / 2}; stride > 0; stride = stride / 2) {
        if (lane < stride) {
          laneValues[lane] = laneValues[lane] + laneValues[lane + stride];
        }
        workgroupBarrier();
      }
      if (inside && lane == 0) {
        setOutputAtIndex(row * 2, rowMax);
        setOutputAtIndex(row * 2 + 1, laneValues[0]);
      }
    }`;
  return workgroupProgram('lsh_masked_softmax_stats', ['logits', 'fill'], [rows, 2], rows, code);
}

/** weights [n, C, L] = exp(masked − max) / sum, with (max, sum) from the statistics. */
function weightsProgram(shape: number[]): ReturnType<typeof elementwiseProgram> {
  return elementwiseProgram(
    'lsh_masked_softmax_weights',
    ['logits', 'fill', 'stats'],
    shape,
    `let row = index / uniforms.outShape.z;
          setOutputAtIndex(index, exp(masked(index) - stats[2 * row]) / stats[2 * row + 1]);`,
    MASKED_SNIPPET,
  );
}

/** [n, C, 1]: column `column` of the statistics, through log when `log`. */
function pickProgram(shape: number[], column: 0 | 1, log: boolean): ReturnType<typeof elementwiseProgram> {
  return elementwiseProgram(
    `lsh_masked_softmax_pick_${column}_${log ? 'log' : 'value'}`,
    ['stats'],
    shape,
    `setOutputAtIndex(index, ${log ? 'log' : ''}(stats[2 * index + ${column}]));`,
  );
}

/** The kernel: four dispatches, the statistics disposed (tfjs-webgpu frees them once the queued work is done). */
function maskedSoftmaxWebGPUKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo[] {
  const backend = args.backend as WebGPUBackendLike;
  const { logits, fill } = args.inputs as { logits: tf.TensorInfo; fill: tf.TensorInfo };
  if (logits.dtype !== 'float32' || fill.dtype !== 'float32') {
    throw new Error(`LSHMaskedSoftmax (webgpu): expected float32 inputs, got ${logits.dtype} and ${fill.dtype}`);
  }
  const [n, chunk] = logits.shape;
  const rows = n * chunk;
  const stats = backend.runWebGPUProgram(statsProgram(rows), [logits, fill], 'float32');
  try {
    return [
      backend.runWebGPUProgram(weightsProgram([...logits.shape]), [logits, fill, stats], 'float32'),
      backend.runWebGPUProgram(pickProgram([n, chunk, 1], 0, false), [stats], 'float32'),
      backend.runWebGPUProgram(pickProgram([n, chunk, 1], 1, true), [stats], 'float32'),
    ];
  } finally {
    backend.disposeData(stats.dataId);
  }
}

/** Registers the kernel named `kernelName` for 'webgpu'. Safe to call many times. */
export function registerMaskedSoftmaxWebGPUKernel(kernelName: string): void {
  if (tf.getKernel(kernelName, 'webgpu') === undefined) {
    tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: maskedSoftmaxWebGPUKernel as unknown as tf.KernelFunc });
  }
}
