/**
 * Memory guard. The wasm backend's heap stops at about 3.6 GiB and, past it,
 * corrupts live tensors silently; so the attention functions estimate what a
 * call needs and refuse it before it runs, never relying on catching the
 * failure.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertMemoryLimit } from './validate.js';

const GiB = 2 ** 30;

/** What the wasm heap may hold: below the ≈3.6 GiB where corruption starts. */
export const WASM_HEAP_LIMIT_BYTES = 3.25 * GiB;

/** Default budget on other backends (cpu, tensorflow). */
export const DEFAULT_LIMIT_BYTES = 16 * GiB;

/**
 * Default budget on the GPU backends of a page (webgl, webgpu): a page cannot
 * ask how much GPU memory there is, and browsers lose the context (webgl) or
 * the device (webgpu) when it runs out, so a budget most integrated GPUs can
 * hold; raise it with memoryLimitBytes on a large GPU.
 */
export const GPU_LIMIT_BYTES = 2 * GiB;

/** The default budget of a backend: {@link WASM_HEAP_LIMIT_BYTES}, {@link GPU_LIMIT_BYTES} or {@link DEFAULT_LIMIT_BYTES}. */
export function backendLimitBytes(backend: string = tf.getBackend()): number {
  if (backend === 'wasm') return WASM_HEAP_LIMIT_BYTES;
  if (backend === 'webgl' || backend === 'webgpu') return GPU_LIMIT_BYTES;
  return DEFAULT_LIMIT_BYTES;
}

/** Bytes free for a new computation on the current backend. */
export function availableBytes(memoryLimitBytes?: number): { limit: number; inUse: number; free: number } {
  if (memoryLimitBytes !== undefined) assertMemoryLimit('availableBytes', memoryLimitBytes);
  const limit = memoryLimitBytes ?? backendLimitBytes();
  const inUse = tf.memory().numBytes;
  return { limit, inUse, free: limit - inUse };
}

/** Formats a byte count as GiB or MiB. */
export function formatBytes(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * Throws when `neededBytes` does not fit in what the backend has free.
 *
 * @param who the function, for the message.
 * @param neededBytes the estimate.
 * @param what what drives the estimate, e.g. "B·H·T² = 4.3e9 attention logits".
 * @param fix what to change.
 * @param memoryLimitBytes an explicit limit (overrides the backend default).
 */
export function guardMemory(
  who: string,
  neededBytes: number,
  what: string,
  fix: string,
  memoryLimitBytes?: number,
): void {
  if (memoryLimitBytes !== undefined) assertMemoryLimit(who, memoryLimitBytes);
  const { limit, inUse, free } = availableBytes(memoryLimitBytes);
  if (neededBytes > free) {
    const backend = tf.getBackend();
    // Raising the limit is sound only where the backend can really hold it: on wasm, not past its heap.
    const where = 'an option of the attention functions, an argument of the attention layers';
    const raise =
      backend === 'wasm'
        ? `; or raise memoryLimitBytes (${where}), but not beyond the default ${formatBytes(WASM_HEAP_LIMIT_BYTES)} on wasm: ` +
          `past ≈3.6 GiB its heap corrupts data silently`
        : `; or raise memoryLimitBytes (${where}) if you know the backend can hold it`;
    throw new Error(
      `${who}: this call needs about ${formatBytes(neededBytes)} (${what}), but the ${backend} backend ` +
        `has ${formatBytes(Math.max(0, free))} free (limit ${formatBytes(limit)}, ${formatBytes(inUse)} in use). ` +
        `${fix}${raise}.`,
    );
  }
}

/** True while a gradient tape records (tf.grads, variableGrads, model.fit): intermediates are then kept for the backward pass. */
export function recordingGradients(): boolean {
  return tf.engine().isTapeOn();
}
