// Run: npx tsx bench/masked_softmax.ts [flags]
//
// The masked softmax of one LSH attention block: the tf-op chain LSH attention
// ran before (upload keep and fill, logits·keep + fill, max, sub, exp, sum,
// div, log) against maskedSoftmax (upload fill, one kernel on wasm). Each
// implementation: one warm-up run, then the median of --runs runs; a run's
// clock stops after `await data()` of all three outputs (weights, rowMax,
// logSum). Prints a markdown table and, per implementation, the kernels
// tf.profile sees.
//
// Flags (defaults in brackets):
//   --shape 512,64,128   n, C, L          --runs 5
//   --backend wasm       (or cpu)         --backward   also time the gradient w.r.t. the logits
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
// Registers the gradients of the tf ops (for --backward).
import '@tensorflow/tfjs';
import { MASKED_LOGIT, SELF_ATTENTION_LOGIT } from '../src/attention.js';
import { initBackend, type BackendName } from '../src/backend.js';
import { maskedSoftmax } from '../src/kernels/masked_softmax.js';
import { stopGradient } from '../src/ops.js';

const { values: flags } = parseArgs({
  options: {
    shape: { type: 'string', default: '512,64,128' },
    runs: { type: 'string', default: '5' },
    backend: { type: 'string', default: 'wasm' },
    backward: { type: 'boolean', default: false },
  },
});

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`bench: --${name} must be a positive integer, got "${value}"`);
  return n;
}

const shape = flags.shape.split(',').map((s) => positiveInteger('shape', s));
if (shape.length !== 3) throw new Error(`bench: --shape must be n,C,L, got "${flags.shape}"`);
const [n, c, l] = shape as [number, number, number];
const runs = positiveInteger('runs', flags.runs);
if (flags.backend !== 'wasm' && flags.backend !== 'cpu') throw new Error(`bench: --backend must be wasm or cpu, got "${flags.backend}"`);
const backend = flags.backend as BackendName;

/** Seeded uniforms in [0, 1). */
function uniforms(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

// Host data as LSH attention builds it: logits ~ N(0, 3²)-ish, ~30% of keys masked, self keys at −1e5.
const next = uniforms(1);
const size = n * c * l;
const logitValues = Float32Array.from({ length: size }, () => 6 * (next() + next() + next() - 1.5));
const fillValues = new Float32Array(size);
const keepValues = new Float32Array(size);
for (let row = 0; row < n * c; row++) {
  for (let k = 0; k < l; k++) {
    const i = row * l + k;
    if (k === row % c) fillValues[i] = SELF_ATTENTION_LOGIT;
    else if (next() < 0.3) fillValues[i] = MASKED_LOGIT;
    else keepValues[i] = 1;
  }
}

type Outputs = { weights: tf.Tensor; rowMax: tf.Tensor; logSum: tf.Tensor };

/** The chain LSH attention ran before maskedSoftmax (masks uploaded from the host on every call). */
function tfChain(logits: tf.Tensor3D): Outputs {
  const masked = tf.add(tf.mul(logits, tf.tensor3d(keepValues, [n, c, l])), tf.tensor3d(fillValues, [n, c, l]));
  const rowMax = stopGradient(tf.max(masked, -1, true));
  const exps = tf.exp(tf.sub(masked, rowMax));
  const sums = tf.sum(exps, -1, true);
  return { weights: tf.div(exps, sums), rowMax, logSum: tf.log(sums) };
}

function kernel(logits: tf.Tensor3D): Outputs {
  return maskedSoftmax(logits, tf.tensor3d(fillValues, [n, c, l]));
}

const implementations: Array<[string, (logits: tf.Tensor3D) => Outputs]> = [
  ['tf-op chain (keep + fill)', tfChain],
  ['maskedSoftmax (fill)', kernel],
];

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One run: the outputs (or the gradient) computed and read back; ms. */
async function timeRun(fn: () => tf.Tensor[]): Promise<number> {
  const start = performance.now();
  const outputs = fn();
  await Promise.all(outputs.map((t) => t.data()));
  const ms = performance.now() - start;
  tf.dispose(outputs);
  return ms;
}

async function measure(fn: () => tf.Tensor[]): Promise<number> {
  await timeRun(fn);
  const timed: number[] = [];
  for (let i = 0; i < runs; i++) timed.push(await timeRun(fn));
  return median(timed);
}

await initBackend({ backend });
const load = [loadavg()[0]];
const logits = tf.tensor3d(logitValues, [n, c, l]);
const dWeights = tf.randomNormal([n, c, l], 0, 1, 'float32', 2);
const dLogSum = tf.randomNormal([n, c, 1], 0, 1, 'float32', 3);

const results: Array<{ name: string; forwardMs: number; backwardMs?: number; kernels: string }> = [];
for (const [name, softmax] of implementations) {
  const forwardMs = await measure(() =>
    tf.tidy(() => {
      const { weights, rowMax, logSum } = softmax(logits);
      return [weights, rowMax, logSum];
    }),
  );
  let backwardMs: number | undefined;
  if (flags.backward) {
    backwardMs = await measure(() =>
      tf.tidy(() => [
        tf.grad((x: tf.Tensor) => {
          const { weights, logSum } = softmax(x as tf.Tensor3D);
          return tf.add(tf.sum(tf.mul(weights, dWeights)), tf.sum(tf.mul(logSum, dLogSum)));
        })(logits),
      ]),
    );
  }
  const profile = await tf.profile(() => {
    const { weights, rowMax, logSum } = softmax(logits);
    return [weights, rowMax, logSum];
  });
  tf.dispose(profile.result as tf.Tensor[]);
  const kernels = profile.kernels.map((k) => `${k.name} ${(k.kernelTimeMs as number).toFixed(1)}`).join(', ');
  results.push({ name, forwardMs, backwardMs, kernels });
  console.error(`${name}: forward ${forwardMs.toFixed(1)} ms${backwardMs === undefined ? '' : `, forward + backward ${backwardMs.toFixed(1)} ms`}`);
}
tf.dispose([logits, dWeights, dLogSum]);
load.push(loadavg()[0]);

const base = results[0];
const lines = [
  `Masked softmax of [${n}, ${c}, ${l}] on ${tf.getBackend()} (tfjs-core ${tf.version_core}, node ${process.version}, ` +
    `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, load ${load.map((x) => x.toFixed(1)).join(' → ')}); ` +
    `median of ${runs} runs after a warm-up, each until \`await data()\` of weights, rowMax and logSum; mask upload included.`,
  '',
  `| implementation | forward ms | speed-up |${flags.backward ? ' forward + backward ms | speed-up |' : ''}`,
  `|---|---:|---:|${flags.backward ? '---:|---:|' : ''}`,
  ...results.map(
    (r) =>
      `| ${r.name} | ${r.forwardMs.toFixed(1)} | ${(base.forwardMs / r.forwardMs).toFixed(1)}× |` +
      (r.backwardMs === undefined || base.backwardMs === undefined
        ? ''
        : ` ${r.backwardMs.toFixed(1)} | ${(base.backwardMs / r.backwardMs).toFixed(1)}× |`),
  ),
  '',
  'Kernels (tf.profile, ms):',
  ...results.map((r) => `- ${r.name}: ${r.kernels}`),
  '',
];
console.log(lines.join('\n'));
