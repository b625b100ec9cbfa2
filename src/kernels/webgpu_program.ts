/**
 * What the library's own WebGPU kernels share: the part of
 * tfjs-backend-webgpu's backend and program interface they use, typed here
 * so the core imports only `@tensorflow/tfjs-core` (the webgpu backend is an
 * app's choice, not a dependency).
 *
 * A program is what tfjs-backend-webgpu 4.x compiles (`WebGPUProgram` in its
 * `webgpu_program.ts`): the backend prepends the bindings (`result`, one
 * read-only array per name in `variableNames`, in order, and `uniforms` with
 * every input's and the output's shape as `<name>Shape` / `outShape`, plus
 * `size` when asked for), the helpers `setOutputAtIndex(i, value)` and
 * `getGlobalIndex()`, and calls the user code's `main(index)` once per
 * invocation. Arrays of float32 tensors are `array<f32>`, of int32 ones
 * `array<i32>`; the kernels read floats through `f32(…)`, so a float32
 * tensor relabelled from int32 storage (tfjs-webgpu's cast does that) reads
 * right too.
 */
import type * as tf from '@tensorflow/tfjs-core';

/** The part of tfjs-backend-webgpu's WebGPUProgram the kernels fill in. */
export interface WebGPUProgramLike {
  variableNames: string[];
  outputShape: number[];
  /** Identifies the compiled pipeline: everything the WGSL text depends on besides shapes' ranks and dtypes. */
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** Adds `uniforms.size` (the output's element count). */
  size?: boolean;
  getUserCode(): string;
}

/** The part of tfjs-backend-webgpu's WebGPUBackend the kernels use (public methods). */
export interface WebGPUBackendLike {
  runWebGPUProgram(program: WebGPUProgramLike, inputs: tf.TensorInfo[], outputDtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** Invocations per workgroup of the kernels' element-wise programs and row reductions. */
export const WORKGROUP_SIZE = 64;

/**
 * A flat program: one invocation per output element (`main(index)` with
 * index in [0, size), guarded: the dispatch is rounded up and, past
 * 65535 workgroups, reshaped by the backend); `helpers` are WGSL functions
 * the body calls.
 */
export function elementwiseProgram(shaderKey: string, variableNames: string[], outputShape: number[], body: string, helpers = ''): WebGPUProgramLike {
  const size = outputShape.reduce((a, b) => a * b, 1);
  return {
    variableNames,
    outputShape,
    shaderKey,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(size / WORKGROUP_SIZE), 1, 1],
    workgroupSize: [WORKGROUP_SIZE, 1, 1],
    size: true,
    getUserCode: () => `
      ${helpers}
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`,
  };
}

/**
 * A program of `workgroups` workgroups of WORKGROUP_SIZE invocations, with
 * its own `main(index)` (index = workgroup · WORKGROUP_SIZE + lane): for
 * kernels that give each invocation a block of outputs, or each workgroup a
 * row. The code guards its own range (the backend may round the dispatch up
 * when it reshapes one past 65535 workgroups) and keeps barriers out of
 * non-uniform branches (WGSL requires it).
 */
export function workgroupProgram(shaderKey: string, variableNames: string[], outputShape: number[], workgroups: number, code: string): WebGPUProgramLike {
  return {
    variableNames,
    outputShape,
    shaderKey,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.max(1, workgroups), 1, 1],
    workgroupSize: [WORKGROUP_SIZE, 1, 1],
    size: true,
    getUserCode: () => code,
  };
}
