/**
 * Reading tensors back synchronously (`dataSync`), which the attention
 * functions do for their integer work (the sort of LSH attention, masks,
 * index checks).
 *
 * tfjs-backend-webgpu reads a buffer synchronously by copying it into a
 * WebGPU canvas and drawing that canvas into a 2-D one. In headless Chromium
 * with its software WebGPU adapter (SwiftShader, the fallback adapter on a
 * machine without a GPU) that draw gives zeros and the device is destroyed
 * afterwards: every later result of the backend is wrong or fails
 * (measured on Chromium 156, also without tfjs: test/browser/repro/). So on
 * that adapter the attention functions refuse to run rather than return
 * wrong values.
 */
import * as tf from '@tensorflow/tfjs-core';

interface WebGPUBackendLike {
  adapterInfo?: { architecture?: string };
  tensorMap?: { get(dataId: tf.DataId): { values?: unknown } | undefined };
}

/** True on the webgpu backend with Chromium's software adapter (SwiftShader). */
export function softwareWebGPU(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  return (tf.backend() as unknown as WebGPUBackendLike).adapterInfo?.architecture === 'swiftshader';
}

interface WebGLBackendLike {
  gpgpu?: { gl?: { getExtension(name: string): { UNMASKED_RENDERER_WEBGL: number } | null; getParameter(p: number): unknown } };
}

/** The WebGL renderer of the webgl backend in use (e.g. "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device …))"), or undefined. */
export function webglRenderer(): string | undefined {
  if (tf.getBackend() !== 'webgl') return undefined;
  const gl = (tf.backend() as unknown as WebGLBackendLike).gpgpu?.gl;
  const info = gl?.getExtension('WEBGL_debug_renderer_info');
  if (gl === undefined || info == null) return undefined;
  const renderer = gl.getParameter(info.UNMASKED_RENDERER_WEBGL);
  return typeof renderer === 'string' ? renderer : undefined;
}

/** True on the webgl backend when its renderer is a software one (SwiftShader, llvmpipe): no GPU behind it. */
export function softwareWebGL(): boolean {
  return /swiftshader|llvmpipe|software/i.test(webglRenderer() ?? '');
}

/** Whether `dataSync()` of `x` gives its values on the current backend (false only for data on a software WebGPU device). */
export function hostReadable(x: tf.Tensor): boolean {
  if (!softwareWebGPU()) return true;
  const data = (tf.backend() as unknown as WebGPUBackendLike).tensorMap?.get(x.dataId);
  return data?.values != null;
}

/**
 * Throws, before anything runs, when `who` would have to read back data that
 * the software WebGPU adapter cannot give synchronously.
 *
 * @param what what must be read, for the message.
 * @param tensors the tensors to be read (none: the computation itself reads
 *   results of the device, e.g. LSH attention's buckets).
 * @param fix what the caller can do instead (default: another backend).
 */
export function assertHostReadable(
  who: string,
  what: string,
  tensors: readonly tf.Tensor[] = [],
  fix = "use the webgl or wasm backend on this machine (initBackend({ backend: ['webgl', 'wasm'] }))",
): void {
  const blocked = tensors.length === 0 ? softwareWebGPU() : tensors.some((t) => !hostReadable(t));
  if (blocked) {
    throw new Error(
      `${who}: needs to read ${what} back synchronously, which the webgpu backend on Chromium's software adapter ` +
        `(SwiftShader) cannot do: the read gives zeros and destroys the device. Instead, ${fix}; ` +
        'a hardware WebGPU adapter was not tested',
    );
  }
}
