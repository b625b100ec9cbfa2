/**
 * Input checks shared by the core and the layers. Every message names the
 * caller, what was expected, what arrived and, where there is one, the fix.
 */
import type { Tensor } from '@tensorflow/tfjs-core';

/** Throws `${who}: ${what} must be a positive integer, got ${value}`. */
export function assertPositiveInteger(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new Error(`${who}: ${what} must be a positive integer, got ${String(value)}`);
  }
}

/** Throws unless `value` is an integer ≥ 0. */
export function assertNonNegativeInteger(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new Error(`${who}: ${what} must be a non-negative integer, got ${String(value)}`);
  }
}

/** Throws unless `value` is in [0, 1). */
export function assertRate(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw new Error(`${who}: ${what} must be a number in [0, 1), got ${String(value)}`);
  }
}

/** Throws unless the tensor has the given rank; `shapeLegend` is e.g. "[B, H, T, D]". */
export function assertRank(who: string, what: string, x: Tensor, rank: number, shapeLegend: string): void {
  if (x.rank !== rank) {
    throw new Error(
      `${who}: ${what} must have rank ${rank} ${shapeLegend}, got rank ${x.rank} with shape [${x.shape.join(', ')}]`,
    );
  }
}

/** Throws unless the tensor is floating point. */
export function assertFloat(who: string, what: string, x: Tensor): void {
  if (x.dtype !== 'float32') {
    throw new Error(`${who}: ${what} must be float32, got ${x.dtype}; cast it with tf.cast(x, 'float32')`);
  }
}

/** Formats a shape for messages. */
export function shapeString(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d == null ? 'null' : String(d))).join(', ')}]`;
}
