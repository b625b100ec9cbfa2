/**
 * What the opt-in finite check costs (not a test: timings do not belong in
 * the suite). At T = 4096 (B = 1, H = 8, D = Dv = 64, R = 4, C = 64):
 * the check alone (isFinite + all on the backend, one boolean read back, for
 * qk and v), a host-side scan for comparison, and both attention functions
 * with and without `checkFinite`. Medians after one warm-up run.
 *
 *     npx tsx test/hardening/measure_finite.ts [wasm|cpu] [T]
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { fullAttention, lshAttention } from '../../src/attention.js';
import { assertFinite } from '../../src/validate.js';

const backend = process.argv[2] ?? 'wasm';
const length = Number(process.argv[3] ?? 4096);
await initBackend({ backend: backend as 'wasm' });
const qk = tf.randomNormal([1, 8, length, 64]) as tf.Tensor4D;
const v = tf.randomNormal([1, 8, length, 64]) as tf.Tensor4D;
const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(name: string, runs: number, fn: () => tf.Tensor | void): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const started = performance.now();
    const out = fn();
    if (out) {
      await out.data();
      out.dispose();
    }
    if (i > 0) ms.push(performance.now() - started);
  }
  console.log(`${name}: median ${median(ms).toFixed(1)} ms`);
  return median(ms);
}

const check = await time('the check alone (qk and v)', 9, () => {
  assertFinite('measure', 'qk', qk, '');
  assertFinite('measure', 'v', v, '');
});
await time('a host scan instead (dataSync and a loop, qk and v)', 9, () => {
  for (const t of [qk, v]) {
    const values = t.dataSync();
    for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) throw new Error('non-finite');
  }
});
const options = { nHashes: 4, chunkLength: 64, seed: 1 };
const lsh = await time('lshAttention', 5, () => lshAttention(qk, v, options));
await time('lshAttention, checkFinite', 5, () => lshAttention(qk, v, { ...options, checkFinite: true }));
const full = await time('fullAttention', 3, () => fullAttention(qk, v));
await time('fullAttention, checkFinite', 3, () => fullAttention(qk, v, { checkFinite: true }));
console.log(`the check is ${((100 * check) / lsh).toFixed(2)}% of lshAttention and ${((100 * check) / full).toFixed(2)}% of fullAttention (${backend}, T = ${length})`);
