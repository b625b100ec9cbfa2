/**
 * Test helpers: run a suite on every backend, compare tensors, check leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
// As users do: @tensorflow/tfjs registers the gradients (and the layers) with tfjs-core.
import '@tensorflow/tfjs';
import { beforeAll, describe, expect } from 'vitest';
import { initBackend, type BackendName } from '../src/backend.js';

/** Backends the suites run on: TEST_BACKENDS=cpu,wasm (default both). */
export const TEST_BACKENDS: BackendName[] = (process.env.TEST_BACKENDS ?? 'cpu,wasm')
  .split(',')
  .filter((name) => name !== '') as BackendName[];

/** Runs `body` once per test backend, with that backend set. */
export function describeBackends(name: string, body: (backend: BackendName) => void): void {
  for (const backend of TEST_BACKENDS) {
    describe(`${name} [${backend}]`, () => {
      beforeAll(async () => {
        await initBackend({ backend });
      });
      body(backend);
    });
  }
}

type Nested = number | Nested[];

/** Checks dtype (when expected is a tensor), shape, then values within `tolerance` (absolute). */
export function expectTensorsClose(actual: tf.Tensor, expected: tf.Tensor | Nested, tolerance = 1e-5): void {
  const expectedTensor = expected instanceof tf.Tensor ? expected : tf.tensor(expected as number[]);
  try {
    if (expected instanceof tf.Tensor) expect(actual.dtype).toBe(expected.dtype);
    expect(actual.shape).toEqual(expectedTensor.shape);
    const a = actual.dataSync();
    const e = expectedTensor.dataSync();
    let worst = 0;
    let worstAt = -1;
    for (let i = 0; i < a.length; i++) {
      const diff = Math.abs(a[i] - e[i]);
      if (!(diff <= worst)) {
        worst = diff;
        worstAt = i;
      }
    }
    if (!(worst <= tolerance)) {
      throw new Error(
        `tensors differ by ${worst} at flat index ${worstAt} (actual ${a[worstAt]}, expected ${e[worstAt]}), tolerance ${tolerance}`,
      );
    }
  } finally {
    if (!(expected instanceof tf.Tensor)) expectedTensor.dispose();
  }
}

/** Largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** Runs `fn` and checks that no tensor outlives it (results of fn are disposed first). */
export async function expectNoLeaks(fn: () => unknown): Promise<void> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const dispose = (value: unknown): void => {
    if (value instanceof tf.Tensor) value.dispose();
    else if (Array.isArray(value)) value.forEach(dispose);
    else if (value && typeof value === 'object') Object.values(value).forEach(dispose);
  };
  dispose(result);
  expect(tf.memory().numTensors).toBe(before);
}

/** A seeded float32 tensor of N(0, 1) numbers, made in JavaScript (same on every backend). */
export function randomTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  let state = seed * 2654435761 + 12345;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return (state + 0.5) / 2147483648;
  };
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    values[i] = scale * Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  }
  return tf.tensor(values, shape, 'float32');
}
