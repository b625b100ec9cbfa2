/**
 * Input checks shared by the core and the layers. Every message names the
 * caller, what was expected, what arrived and, where there is one, the fix.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Tensor, type DataType } from '@tensorflow/tfjs-core';

/**
 * A value as a message shows it: numbers as they print (NaN, -1, 0.5),
 * strings quoted (so "2" is not mistaken for 2), arrays and objects as short
 * JSON, tensors by dtype and shape.
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined || value === null) return String(value);
  if (value instanceof Tensor) return `a ${value.dtype} tensor of shape ${shapeString(value.shape)}`;
  if (typeof value === 'function') return 'a function';
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json.length > 60 ? `${json.slice(0, 57)}...` : json;
  } catch {
    // Circular: fall through.
  }
  return typeof value;
}

/** Throws `${who}: ${what} must be a positive integer, got ${value}`. */
export function assertPositiveInteger(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new Error(`${who}: ${what} must be a positive integer, got ${describeValue(value)}`);
  }
}

/** Throws unless `value` is an integer ≥ 0. */
export function assertNonNegativeInteger(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new Error(`${who}: ${what} must be a non-negative integer, got ${describeValue(value)}`);
  }
}

/** Throws unless `value` is in [0, 1). */
export function assertRate(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw new Error(`${who}: ${what} must be a number in [0, 1), got ${describeValue(value)}`);
  }
}

/** Throws unless `value` is true or false (a string like "false" would otherwise count as true). */
export function assertBoolean(who: string, what: string, value: unknown): asserts value is boolean {
  if (typeof value !== 'boolean') {
    throw new Error(`${who}: ${what} must be true or false, got ${describeValue(value)}`);
  }
}

/** Throws unless `value` is one of `allowed`. */
export function assertOneOf<T extends string>(who: string, what: string, value: unknown, allowed: readonly T[]): asserts value is T {
  if (!(allowed as readonly unknown[]).includes(value)) {
    throw new Error(`${who}: ${what} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${describeValue(value)}`);
  }
}

/**
 * Throws unless `value` is a memory limit: a positive number of bytes
 * (Infinity turns the guard off). NaN would silently disable the guard.
 */
export function assertMemoryLimit(who: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !(value > 0)) {
    throw new Error(
      `${who}: memoryLimitBytes must be a positive number of bytes, got ${describeValue(value)}; ` +
        `leave it undefined for the backend's default`,
    );
  }
}

/** Throws unless `x` is a live tf.Tensor; `shapeLegend` is e.g. "[B, H, T, D]". */
export function assertTensor(who: string, what: string, x: unknown, shapeLegend: string): asserts x is Tensor {
  if (!(x instanceof Tensor)) {
    throw new Error(`${who}: ${what} must be a tf.Tensor ${shapeLegend}, got ${describeValue(x)}; make one with tf.tensor(...)`);
  }
  if (x.isDisposed) {
    throw new Error(`${who}: ${what} has been disposed (shape ${shapeString(x.shape)}); keep it alive until the call returns`);
  }
}

/** Throws unless `x` is a live tensor of the given rank; `shapeLegend` is e.g. "[B, H, T, D]". */
export function assertRank(who: string, what: string, x: unknown, rank: number, shapeLegend: string): asserts x is Tensor {
  assertTensor(who, what, x, shapeLegend);
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

/** Throws unless the tensor's dtype is one of `allowed`. */
export function assertDtype(who: string, what: string, x: Tensor, allowed: readonly DataType[], fix: string): void {
  if (!allowed.includes(x.dtype)) {
    const expected = allowed.length === 1 ? allowed[0] : `${allowed.slice(0, -1).join(', ')} or ${allowed[allowed.length - 1]}`;
    throw new Error(`${who}: ${what} must be ${expected}, got ${x.dtype}; ${fix}`);
  }
}

/** The multi-index of flat index `flat` in `shape`, e.g. [0, 2, 17, 5]. */
export function multiIndex(flat: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length);
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    index[axis] = flat % shape[axis];
    flat = Math.floor(flat / shape[axis]);
  }
  return index;
}

/**
 * Throws unless every value of `values` (a tensor's data, of `shape`) is 0 or 1:
 * a padding mask, where 1 keeps a position and 0 pads it. Anything else
 * (0.5, 2, −1, NaN) is refused rather than guessed at.
 */
export function assertBinaryMask(who: string, what: string, values: ArrayLike<number>, shape: readonly number[]): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value !== 0 && value !== 1) {
      let count = 0;
      for (let j = i; j < values.length; j++) if (values[j] !== 0 && values[j] !== 1) count++;
      throw new Error(
        `${who}: ${what} must hold only 0 (padding) and 1 (keep), got ${value} at [${multiIndex(i, shape).join(', ')}]` +
          `${count > 1 ? ` and ${count - 1} more value${count > 2 ? 's' : ''} that are neither` : ''}; ` +
          `make it binary, e.g. tf.cast(tf.notEqual(mask, 0), 'float32') to keep every nonzero position`,
      );
    }
  }
}

/**
 * Throws when a float tensor holds NaN or ±Infinity, naming how many and
 * where the first is. The test runs on the backend (isFinite, all: one
 * boolean read back); the values are read only when it fails.
 *
 * @param fix what the caller should do, appended to the message.
 */
export function assertFinite(who: string, what: string, x: Tensor, fix: string): void {
  if (x.dtype !== 'float32' || x.size === 0) return;
  const allFinite = tf.tidy(() => tf.all(tf.isFinite(x)));
  const ok = allFinite.dataSync()[0] === 1;
  allFinite.dispose();
  if (ok) return;
  throw nonFiniteError(who, what, x.dataSync(), x.shape, fix);
}

/** The error {@link assertFinite} throws for `values` (of shape `shape`), which hold a non-finite value. */
export function nonFiniteError(who: string, what: string, values: ArrayLike<number>, shape: readonly number[], fix: string): Error {
  let count = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  const where = `${values[first]} at [${multiIndex(first, shape).join(', ')}]`;
  return new Error(
    `${who}: ${what} has ${count} non-finite value${count === 1 ? ` (${where})` : `s (the first: ${where})`}; ${fix}`,
  );
}

/** Formats a shape for messages. */
export function shapeString(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d == null ? 'null' : String(d))).join(', ')}]`;
}
