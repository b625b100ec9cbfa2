/**
 * What the library's own WebAssembly kernels share: the part of the wasm
 * backend they use, decoding the embedded module, instantiating it lazily
 * (synchronously: the modules are a few KiB), and growing its memory with a
 * clear error where wasm32 cannot.
 */
import type * as tf from '@tensorflow/tfjs-core';

/** The part of tfjs-backend-wasm's BackendWasm class the kernels use (public methods). */
export interface WasmBackendLike {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.backend_util.TypedArray;
}

const WASM_PAGE_BYTES = 65536;
/** WebAssembly (wasm32) memories stop at 4 GiB. */
const MAX_WASM_PAGES = 65536;

/** Exports every kernel module has. */
export interface KernelExports {
  memory: WebAssembly.Memory;
}

export function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(new ArrayBuffer(binary.length));
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * A kernel module compiled once on first use, with an instance that can be
 * dropped (to give back a memory one large call inflated) and re-made.
 */
export class LazyKernel<T extends KernelExports> {
  private compiled: WebAssembly.Module | undefined;
  private current: T | undefined;

  constructor(private readonly base64: string) {}

  /** The instance, made on first use. */
  instance(): T {
    if (this.current === undefined) {
      this.compiled ??= new WebAssembly.Module(decodeBase64(this.base64));
      this.current = new WebAssembly.Instance(this.compiled, {}).exports as unknown as T;
    }
    return this.current;
  }

  /** Drops the instance when its memory grew past `keepBytes` (the next call makes a fresh one). */
  releaseIfLarger(keepBytes: number): void {
    if (this.current !== undefined && this.current.memory.buffer.byteLength > keepBytes) this.current = undefined;
  }
}

/** `value` rounded up to a multiple of `multiple`. */
export function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/**
 * Grows a kernel's memory to at least `bytes`.
 *
 * @param who the caller, for messages.
 * @param what what needs the memory, for messages.
 * @param fix what the caller can change.
 */
export function ensureKernelMemory(kernel: KernelExports, bytes: number, who: string, what: string, fix: string): void {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const have = kernel.memory.buffer.byteLength / WASM_PAGE_BYTES;
  if (pages <= have) return;
  if (pages > MAX_WASM_PAGES) {
    throw new Error(
      `${who}: the wasm kernel needs ${bytes} bytes for ${what}, expected at most 4 GiB (the WebAssembly memory limit); ${fix}`,
    );
  }
  try {
    kernel.memory.grow(pages - have);
  } catch (error) {
    throw new Error(`${who}: could not grow the wasm kernel memory to ${bytes} bytes for ${what} (${String(error)}); ${fix}`);
  }
}
