/**
 * The test cases that run inside the page (test/browser.test.ts runs them in
 * Chromium on each backend and reports each as a vitest test): the golden
 * cases, and LSH attention against full attention (forward and gradients,
 * causal and padded), as in test/golden.test.ts and test/attention.test.ts.
 * Plain functions that throw on failure (no vitest in the page); values are
 * read with `await data()`, never `dataSync()`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fullAttention, lshAttention, lshAttentionAsync, type LSHAttentionOptions } from '../../../src/index.js';
import { softwareWebGPU } from '../../../src/host_reads.js';
import { transposeAnyDtype } from '../../../src/ops.js';
import { CHUNK_LOGITS_KERNEL_NAME, CHUNK_OUTPUTS_KERNEL_NAME, chunkLogits, chunkOutputs } from '../../../src/kernels/chunk_products.js';
import { MASKED_SOFTMAX_KERNEL_NAME, maskedSoftmax } from '../../../src/kernels/masked_softmax.js';
import golden from '../../data/golden-cases.json' with { type: 'json' };

export interface BrowserCase {
  name: string;
  run(): Promise<void>;
}

interface GoldenCase {
  T: number;
  nHashes: number;
  nBuckets: number;
  chunkLength: number;
  numChunksBefore: number;
  numChunksAfter: number;
  causal: boolean;
  qk: number[][][][];
  v: number[][][][];
  rotations: number[][][];
  mask: number[][] | null;
  expected: number[][][][];
  expectedFull: number[][][][];
}

/** Largest |a − b| over the unpadded query positions of [B, H, T, Dv] values. */
function maxDiff(actual: Float32Array, expected: number[][][][], mask: number[][] | null): number {
  let worst = 0;
  let i = 0;
  expected.forEach((perBatch, b) =>
    perBatch.forEach((perHead) =>
      perHead.forEach((row, t) =>
        row.forEach((x) => {
          const diff = Math.abs(actual[i++] - x);
          if (mask === null || mask[b][t] === 1) worst = Number.isNaN(diff) ? Infinity : Math.max(worst, diff);
        }),
      ),
    ),
  );
  if (i !== actual.length) throw new Error(`expected ${i} values, got ${actual.length}`);
  return worst;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Runs `fn`, which must throw an error matching `pattern`. */
function expectThrows(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    check(pattern.test((error as Error).message), `threw "${(error as Error).message}", expected ${pattern}`);
    return;
  }
  throw new Error(`did not throw; expected ${pattern}`);
}

/** Largest |a − b|, element by element, read asynchronously. */
async function tensorDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  check(a.shape.join() === b.shape.join(), `shapes differ: [${a.shape}] and [${b.shape}]`);
  const [x, y] = await Promise.all([a.data(), b.data()]);
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const diff = Math.abs(x[i] - y[i]);
    worst = Number.isNaN(diff) ? Infinity : Math.max(worst, diff);
  }
  return worst;
}

/** Seeded N(0, 1) numbers made in JavaScript (the same on every backend; as test/helpers.ts). */
function randomValues(count: number, seed: number): Float32Array {
  let state = seed * 2654435761 + 12345;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return (state + 0.5) / 2147483648;
  };
  const values = new Float32Array(count);
  for (let i = 0; i < values.length; i++) values[i] = Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  return values;
}

/** A seeded N(0, 1) tensor made in JavaScript. */
function randomTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randomValues(shape.reduce((a, b) => a * b, 1), seed), shape, 'float32');
}

const GOLDEN = (golden as unknown as { cases: GoldenCase[] }).cases;

/** What a call to lshAttention on software WebGPU must throw (host_reads.ts). */
const SOFTWARE_WEBGPU_REFUSAL = /lshAttention: needs to read the hash buckets .* software adapter \(SwiftShader\).* use lshAttentionAsync/;

function goldenCases(): BrowserCase[] {
  return GOLDEN.flatMap((c, i): BrowserCase[] => {
    const inputs = () => ({
      qk: tf.tensor4d(c.qk),
      v: tf.tensor4d(c.v),
      mask: c.mask === null ? undefined : tf.tensor2d(c.mask),
      rotations: tf.tensor3d(c.rotations),
    });
    const lshOptions = (x: ReturnType<typeof inputs>): LSHAttentionOptions => ({
      rotations: x.rotations,
      nBuckets: c.nBuckets,
      chunkLength: c.chunkLength,
      numChunksBefore: c.numChunksBefore,
      numChunksAfter: c.numChunksAfter,
      causal: c.causal,
      mask: x.mask,
    });
    return [
      {
        name: `golden case ${i}: lshAttention matches the float64 reference (1e-4)`,
        run: async () => {
          const before = tf.memory().numTensors;
          const x = inputs();
          try {
            if (softwareWebGPU()) {
              expectThrows(() => lshAttention(x.qk as tf.Tensor4D, x.v as tf.Tensor4D, lshOptions(x)), SOFTWARE_WEBGPU_REFUSAL);
              return;
            }
            const out = lshAttention(x.qk as tf.Tensor4D, x.v as tf.Tensor4D, lshOptions(x));
            const worst = maxDiff((await out.data()) as Float32Array, c.expected, c.mask);
            out.dispose();
            check(worst < 1e-4, `worst error ${worst}`);
          } finally {
            tf.dispose(Object.values(x).filter((t) => t !== undefined) as tf.Tensor[]);
          }
          check(tf.memory().numTensors === before, `tensors leaked: ${tf.memory().numTensors - before}`);
        },
      },
      {
        name: `golden case ${i}: lshAttentionAsync matches the float64 reference (1e-4)`,
        run: async () => {
          const before = tf.memory().numTensors;
          const x = inputs();
          try {
            const out = await lshAttentionAsync(x.qk as tf.Tensor4D, x.v as tf.Tensor4D, lshOptions(x));
            const worst = maxDiff((await out.data()) as Float32Array, c.expected, c.mask);
            out.dispose();
            check(worst < 1e-4, `worst error ${worst}`);
          } finally {
            tf.dispose(Object.values(x).filter((t) => t !== undefined) as tf.Tensor[]);
          }
          check(tf.memory().numTensors === before, `tensors leaked: ${tf.memory().numTensors - before}`);
        },
      },
      {
        name: `golden case ${i}: fullAttention matches the float64 reference (1e-4)`,
        run: async () => {
          const x = inputs();
          try {
            const out = fullAttention(x.qk as tf.Tensor4D, x.v as tf.Tensor4D, { causal: c.causal, mask: x.mask });
            const worst = maxDiff((await out.data()) as Float32Array, c.expectedFull, c.mask);
            out.dispose();
            check(worst < 1e-4, `worst error ${worst}`);
          } finally {
            tf.dispose(Object.values(x).filter((t) => t !== undefined) as tf.Tensor[]);
          }
        },
      },
    ];
  });
}

const B = 2;
const H = 2;
const T = 16;
const D = 8;
const DV = 5;

function paddingMask(keep: number): tf.Tensor2D {
  const rows = [Array.from({ length: T }, () => 1), Array.from({ length: T }, (_, i) => (i < keep ? 1 : 0))];
  return tf.tensor2d(rows, [B, T], 'float32');
}

/** Outputs and gradients of sum(out · w), w random and zero at padded positions (as test/attention.test.ts). */
function valueAndGrads(
  attend: (qk: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D,
  qk: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor2D | undefined,
): tf.Tensor[] {
  const keep = mask === undefined ? tf.ones([B, 1, T, 1]) : tf.reshape(mask, [B, 1, T, 1]);
  const weights = tf.mul(randomTensor([B, H, T, DV], 99), keep);
  const out = tf.mul(attend(qk, v), keep);
  const [dqk, dv] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(attend(a as tf.Tensor4D, b as tf.Tensor4D), weights)))([qk, v]);
  return [out, dqk, dv];
}

function equivalenceCases(): BrowserCase[] {
  const chunkings: Array<[string, Partial<LSHAttentionOptions>]> = [
    ['one chunk', { chunkLength: T, numChunksBefore: 0, numChunksAfter: 0 }],
    ['two chunks of T/2 with look-back', { chunkLength: T / 2, numChunksBefore: 1, numChunksAfter: 0 }],
  ];
  const cases: BrowserCase[] = [];
  for (const [chunkName, chunking] of chunkings) {
    for (const causal of [false, true]) {
      for (const padded of [false, true]) {
        cases.push({
          name: `lshAttention equals fullAttention (${chunkName}, causal ${causal}, padded ${padded}): forward 1e-5, gradients 1e-4`,
          run: async () => {
            const qk = randomTensor([B, H, T, D], 1) as tf.Tensor4D;
            const v = randomTensor([B, H, T, DV], 2) as tf.Tensor4D;
            const mask = padded ? paddingMask(11) : undefined;
            const lshCall = (a: tf.Tensor4D, b: tf.Tensor4D) =>
              lshAttention(a, b, { ...chunking, nHashes: 1, nBuckets: 8, seed: 5, causal, mask });
            try {
              if (softwareWebGPU()) {
                expectThrows(() => lshCall(qk, v), SOFTWARE_WEBGPU_REFUSAL);
                return;
              }
              const lsh = valueAndGrads(lshCall, qk, v, mask);
              const full = valueAndGrads((a, b) => fullAttention(a, b, { causal, mask }), qk, v, mask);
              const [forward, dqk, dv] = await Promise.all(lsh.map((t, k) => tensorDiff(t, full[k])));
              const gradientSize = (await tf.max(tf.abs(full[1])).data())[0];
              tf.dispose([...lsh, ...full]);
              check(forward <= 1e-5, `forward differs by ${forward}`);
              check(dqk <= 1e-4, `d qk differs by ${dqk}`);
              check(dv <= 1e-4, `d v differs by ${dv}`);
              check(gradientSize > 1e-3, `the gradients are trivially small (${gradientSize})`);
            } finally {
              tf.dispose([qk, v, ...(mask ? [mask] : [])]);
            }
          },
        });
      }
    }
  }
  cases.push({
    name: 'fullAttention gradients are finite and not trivial (causal, padded)',
    run: async () => {
      const qk = randomTensor([B, H, T, D], 3) as tf.Tensor4D;
      const v = randomTensor([B, H, T, DV], 4) as tf.Tensor4D;
      // Two copies: fullAttention reads its mask on the host, which software WebGPU cannot once the mask has been used on the device.
      const mask = paddingMask(9);
      const weightsMask = paddingMask(9);
      const [out, dqk, dv] = valueAndGrads((a, b) => fullAttention(a, b, { causal: true, mask }), qk, v, weightsMask);
      for (const [name, t] of [['output', out], ['d qk', dqk], ['d v', dv]] as const) {
        const values = await t.data();
        check(values.every(Number.isFinite), `${name} has non-finite values`);
        check(values.some((x) => Math.abs(x) > 1e-3), `${name} is all (near) zero`);
      }
      tf.dispose([qk, v, mask, weightsMask, out, dqk, dv]);
    },
  });
  return cases;
}

function transposeCases(): BrowserCase[] {
  return [
    {
      name: 'transposeAnyDtype transposes int32 (up to 2^24) and bool tensors of rank 4 exactly',
      run: async () => {
        // 1920 elements, computed on the device (webgpu computes tensors under 1000 elements on the CPU).
        const [n0, n1, n2, n3] = [2, 3, 16, 20];
        const values = Int32Array.from({ length: n0 * n1 * n2 * n3 }, (_, i) => (i % 2 === 0 ? 1 : -1) * ((i * 8_737 + 7) % 2 ** 24));
        const x = tf.add(tf.tensor4d(values, [n0, n1, n2, n3], 'int32'), tf.zeros([n0, n1, n2, n3], 'int32'));
        const perm = [0, 2, 3, 1];
        const transposed = transposeAnyDtype(x, perm);
        const got = await transposed.data();
        const expected = tf.buffer([n0, n2, n3, n1], 'int32');
        for (let a = 0; a < n0; a++) for (let b = 0; b < n1; b++) for (let c = 0; c < n2; c++) for (let d = 0; d < n3; d++) {
          expected.set(values[((a * n1 + b) * n2 + c) * n3 + d], a, c, d, b);
        }
        const want = expected.values;
        for (let i = 0; i < want.length; i++) check(got[i] === want[i], `element ${i}: ${got[i]}, expected ${want[i]}`);
        const flags = tf.greater(x, 0);
        const flagsTransposed = transposeAnyDtype(flags, perm);
        const flagsT = await flagsTransposed.data();
        for (let i = 0; i < want.length; i++) check(flagsT[i] === (want[i] > 0 ? 1 : 0), `bool element ${i}`);
        tf.dispose([transposed, flagsTransposed]);
        tf.dispose([x, flags]);
      },
    },
  ];
}

/**
 * Runs `body` on the cpu backend (inputs made there from the same JavaScript
 * values), returns its result's values, and sets the page's backend again.
 */
async function onCpu(body: () => Promise<tf.Tensor[]>): Promise<Float32Array[]> {
  const backend = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    const results = await body();
    const values = await Promise.all(results.map((t) => t.data() as Promise<Float32Array>));
    tf.dispose(results);
    return values;
  } finally {
    await tf.setBackend(backend);
  }
}

/** Largest |a − b| of two equally long arrays. */
function arrayDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  check(a.length === b.length, `lengths differ: ${a.length} and ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i] - b[i]);
    worst = Number.isNaN(diff) ? Infinity : Math.max(worst, diff);
  }
  return worst;
}

function asyncCases(): BrowserCase[] {
  const configurations: Array<[string, Partial<LSHAttentionOptions>]> = [
    ['R=2, causal, padded, T=64', { nHashes: 2, nBuckets: 8, chunkLength: 16, causal: true }],
    ['R=3, look-ahead, no duplicates, across-bucket mask, T=64', { nHashes: 3, nBuckets: 4, chunkLength: 16, numChunksAfter: 1, allowDuplicateAttention: false, attendAcrossBuckets: false }],
  ];
  return configurations.map(([label, config]) => ({
    name: `lshAttentionAsync equals lshAttention on the cpu backend (${label}), output and returned weights (1e-5)`,
    run: async () => {
      const length = 64;
      const make = () => ({
        qk: randomTensor([B, H, length, D], 21) as tf.Tensor4D,
        v: randomTensor([B, H, length, DV], 22) as tf.Tensor4D,
        mask: tf.tensor2d([...Array.from({ length }, () => 1), ...Array.from({ length }, (_, i) => (i < 45 ? 1 : 0))], [B, length]),
      });
      const options = (mask: tf.Tensor2D) => ({ ...config, seed: 13, mask, returnAttention: true }) as LSHAttentionOptions & { returnAttention: true };
      const before = tf.memory().numTensors;
      const x = make();
      let actual: Float32Array[];
      try {
        const result = await lshAttentionAsync(x.qk, x.v, options(x.mask));
        const parts = [result.output, result.attention.positions, result.attention.weights];
        actual = await Promise.all(parts.map((t) => t.data() as Promise<Float32Array>));
        tf.dispose(parts);
      } finally {
        tf.dispose([x.qk, x.v, x.mask]);
      }
      check(tf.memory().numTensors === before, `tensors leaked: ${tf.memory().numTensors - before}`);
      const expected = await onCpu(async () => {
        const y = make();
        const result = lshAttention(y.qk, y.v, options(y.mask));
        tf.dispose([y.qk, y.v, y.mask]);
        return [result.output, result.attention.positions, result.attention.weights];
      });
      // Outputs at padded positions are unspecified: compare batch 1 only up to its last kept position.
      const keptOutput = (values: Float32Array) => values.filter((_, i) => {
        const [b, t] = [Math.floor(i / (H * length * DV)), Math.floor(i / DV) % length];
        return b === 0 || t < 45;
      });
      const output = arrayDiff(keptOutput(actual[0]), keptOutput(expected[0]));
      check(output <= 1e-5, `outputs differ by ${output}`);
      check(arrayDiff(actual[1], expected[1]) === 0, 'the attended positions differ');
      const weights = arrayDiff(actual[2], expected[2]);
      check(weights <= 1e-5, `weights differ by ${weights}`);
      check(expected[0].some((value) => Math.abs(value) > 1e-2), 'the cpu output is all (near) zero');
    },
  }));
}

/** Seeded uniform integers in [0, bound), made in JavaScript. */
function randomIndices(count: number, bound: number, seed: number): Int32Array {
  let state = seed * 747796405 + 2891336453;
  return Int32Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % bound;
  });
}

/**
 * The library's kernels on the page's backend against the same functions on
 * the cpu backend (plain tf ops there): on webgpu the WGSL kernels, on wasm
 * the WebAssembly ones, on webgl tf ops (the check then holds trivially).
 */
function kernelCases(): BrowserCase[] {
  const softmaxShapes: Array<[number, number, number]> = [[6, 16, 80], [40, 8, 3], [2, 64, 128]];
  return [
    {
      name: 'maskedSoftmax (the LSHMaskedSoftmax kernel on wasm and webgpu) equals the cpu result: weights and logSum 1e-6, rowMax exactly',
      run: async () => {
        for (const [n, c, length] of softmaxShapes) {
          const size = n * c * length;
          const logitValues = randomValues(size, n + length).map((x) => 4 * x);
          const picks = randomIndices(size, 10, length);
          // Kept (fill 0) most of the time; the self logit −1e5, masked −1e9; row 1 keeps nothing, row 2 only the self logit.
          const fillValues = Float32Array.from(picks, (p, i) => {
            const row = Math.floor(i / length);
            if (row === 1) return -1e9;
            if (row === 2) return i % length === 0 ? -1e5 : -1e9;
            return p < 6 ? 0 : p < 7 ? -1e5 : -1e9;
          });
          const run = () => {
            const logits = tf.tensor3d(logitValues, [n, c, length]);
            const fill = tf.tensor3d(fillValues, [n, c, length]);
            const { weights, rowMax, logSum } = maskedSoftmax(logits, fill);
            tf.dispose([logits, fill]);
            return [weights, rowMax, logSum];
          };
          const before = tf.memory().numTensors;
          const results = run();
          const actual = await Promise.all(results.map((t) => t.data() as Promise<Float32Array>));
          tf.dispose(results);
          check(tf.memory().numTensors === before, `tensors leaked: ${tf.memory().numTensors - before}`);
          if (tf.getBackend() === 'webgpu' || tf.getBackend() === 'wasm') {
            check(tf.getKernel(MASKED_SOFTMAX_KERNEL_NAME, tf.getBackend()) !== undefined, 'the kernel was not registered');
          }
          const expected = await onCpu(async () => run());
          const shape = `[${n}, ${c}, ${length}]`;
          check(arrayDiff(actual[0], expected[0]) <= 1e-6, `${shape}: weights differ by ${arrayDiff(actual[0], expected[0])}`);
          check(arrayDiff(actual[1], expected[1]) === 0, `${shape}: rowMax differs by ${arrayDiff(actual[1], expected[1])}`);
          check(arrayDiff(actual[2], expected[2]) <= 1e-6, `${shape}: logSum differs by ${arrayDiff(actual[2], expected[2])}`);
          check(expected[0].some((w) => w > 0.05 && w < 0.95), `${shape}: the weights are trivial`);
        }
      },
    },
    {
      name: 'the chunk products (LSHChunkLogits, LSHChunkOutputs on webgpu) equal the cpu result (1e-5)',
      run: async () => {
        const [rowCount, dim, valueDim, count, chunk, window] = [50, 12, 7, 5, 8, 24];
        const rowValues = randomValues(rowCount * dim, 31);
        const valueValues = randomValues(rowCount * valueDim, 32);
        const weightValues = randomValues(count * chunk * window, 33).map(Math.abs);
        const queryRowValues = randomIndices(count * chunk, rowCount, 34);
        const keyRowValues = randomIndices(count * window, rowCount, 35);
        const run = () => {
          const rows = tf.tensor2d(rowValues, [rowCount, dim]);
          const valueRows = tf.tensor2d(valueValues, [rowCount, valueDim]);
          const weights = tf.tensor3d(weightValues, [count, chunk, window]);
          const queryRows = tf.tensor1d(queryRowValues, 'int32');
          const keyRows = tf.tensor1d(keyRowValues, 'int32');
          const results = [chunkLogits(rows, queryRows, keyRows, chunk, window), chunkOutputs(weights, valueRows, keyRows)];
          tf.dispose([rows, valueRows, weights, queryRows, keyRows]);
          return results;
        };
        const before = tf.memory().numTensors;
        const results = run();
        const actual = await Promise.all(results.map((t) => t.data() as Promise<Float32Array>));
        check(results[0].shape.join() === [count, chunk, window].join() && results[1].shape.join() === [count, chunk, valueDim].join(), 'wrong shapes');
        tf.dispose(results);
        check(tf.memory().numTensors === before, `tensors leaked: ${tf.memory().numTensors - before}`);
        if (tf.getBackend() === 'webgpu') {
          check(tf.getKernel(CHUNK_LOGITS_KERNEL_NAME, 'webgpu') !== undefined && tf.getKernel(CHUNK_OUTPUTS_KERNEL_NAME, 'webgpu') !== undefined, 'the kernels were not registered');
        }
        const expected = await onCpu(async () => run());
        check(arrayDiff(actual[0], expected[0]) <= 1e-5, `logits differ by ${arrayDiff(actual[0], expected[0])}`);
        check(arrayDiff(actual[1], expected[1]) <= 1e-5, `outputs differ by ${arrayDiff(actual[1], expected[1])}`);
        check(expected[0].some((x) => Math.abs(x) > 0.5) && expected[1].some((x) => Math.abs(x) > 0.5), 'the products are trivial');
      },
    },
  ];
}

/** Every case, in order. The names are the same on every backend. */
export function browserCases(): BrowserCase[] {
  return [...goldenCases(), ...asyncCases(), ...kernelCases(), ...equivalenceCases(), ...transposeCases()];
}
