// Run: npx tsx bench/lm_training.ts                 (T = 4096, 16384 and 65536: about 10 minutes on wasm)
//      npx tsx bench/lm_training.ts --quick         (T = 512: seconds)
// Flags (defaults in brackets): --length 4096,16384,65536 --layers 2 --model-size 128 --heads 4
//   --hashes 2 --chunk 64 --vocab 256 --ff-chunk 4096 --out bench/results/lm-training.md
//
// One training step of a `reformerLM` (reversible blocks, causal LSH attention, axial position
// embedding) with `model.fit` on one sequence of T tokens: wall time, and peak tensor memory
// (`tf.profile(...).peakBytes`, a second, profiled step). The step before the timed one (at the
// shortest length) creates Adam's moments and warms the kernels up.
// Look at: the table; every length should complete, and the peak should grow about linearly in T.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { lmLoss, reformerLM } from '../layers/index.js';
import { describeBackend, initBackend } from '../src/backend.js';
import { formatBytes } from '../src/memory.js';

const { values: flags } = parseArgs({
  options: {
    length: { type: 'string' },
    layers: { type: 'string', default: '2' },
    'model-size': { type: 'string', default: '128' },
    heads: { type: 'string', default: '4' },
    hashes: { type: 'string', default: '2' },
    chunk: { type: 'string', default: '64' },
    vocab: { type: 'string', default: '256' },
    'ff-chunk': { type: 'string', default: '4096' },
    out: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`lm_training: --${name} must be a positive integer, got "${value}"`);
  return n;
}

const lengths = (flags.length ?? (flags.quick ? '512' : '4096,16384,65536')).split(',').map((t) => positiveInteger('length', t));
const settings = {
  numLayers: positiveInteger('layers', flags.layers),
  modelSize: positiveInteger('model-size', flags['model-size']),
  numHeads: positiveInteger('heads', flags.heads),
  nHashes: positiveInteger('hashes', flags.hashes),
  chunkLength: positiveInteger('chunk', flags.chunk),
  vocabSize: positiveInteger('vocab', flags.vocab),
  feedForwardChunkLength: positiveInteger('ff-chunk', flags['ff-chunk']),
};
const out = flags.out ?? (flags.quick ? undefined : 'bench/results/lm-training.md');

/** One random sequence of T tokens: inputs [1, T] and one-hot next-token targets [1, T, V]. */
function batch(length: number, seed: number): { xs: tf.Tensor2D; ys: tf.Tensor3D } {
  return tf.tidy(() => {
    const ids = tf.randomUniformInt([1, length + 1], 0, settings.vocabSize, seed);
    const xs = tf.slice(ids, [0, 0], [1, length]) as tf.Tensor2D;
    const ys = tf.cast(tf.oneHot(tf.reshape(tf.slice(ids, [0, 1], [1, length]), [1, length]), settings.vocabSize), 'float32') as tf.Tensor3D;
    return { xs, ys };
  });
}

interface Row {
  length: number;
  stepSeconds: number;
  peakBytes: number;
  heldBytes: number;
  loss: number;
}

await initBackend();
const backend = describeBackend();
const description =
  `reformerLM: ${settings.numLayers} reversible layers, d_model ${settings.modelSize}, ${settings.numHeads} heads, ` +
  `causal LSH attention (${settings.nHashes} rounds, chunk ${settings.chunkLength}), feed-forward ${4 * settings.modelSize} (gelu, ` +
  `${settings.feedForwardChunkLength} positions per slice), axial position embedding, vocabulary ${settings.vocabSize}; batch 1, Adam`;
console.log(`backend: ${backend}\n${description}\n`);

const rows: Row[] = [];
const failures: string[] = [];
for (const length of lengths) {
  const model = reformerLM({ ...settings, maxLength: length, positionEmbedding: 'axial', reversible: true, seed: 1 });
  const optimizer = tf.train.adam(1e-3);
  model.compile({ optimizer, loss: lmLoss });
  const fit = async (xs: tf.Tensor, ys: tf.Tensor): Promise<number> => {
    const history = await model.fit(xs, ys, { batchSize: 1, epochs: 1, verbose: 0 });
    return history.history.loss[0] as number;
  };
  const warm = batch(Math.min(length, 1024), 3);
  const { xs, ys } = batch(length, 4);
  try {
    process.stderr.write(`T=${length}: warm-up step\n`);
    await fit(warm.xs, warm.ys);
    process.stderr.write(`T=${length}: timed step\n`);
    const start = performance.now();
    const loss = await fit(xs, ys);
    const stepSeconds = (performance.now() - start) / 1000;
    process.stderr.write(`T=${length}: ${stepSeconds.toFixed(1)} s; profiled step\n`);
    const heldBytes = tf.memory().numBytes;
    const info = await tf.profile(async () => {
      await fit(xs, ys);
    });
    if (!Number.isFinite(loss)) throw new Error(`the loss is ${loss}`);
    rows.push({ length, stepSeconds, peakBytes: info.peakBytes, heldBytes, loss });
    console.error(`T=${length}: step ${stepSeconds.toFixed(1)} s, peak ${formatBytes(info.peakBytes)}, loss ${loss.toFixed(3)}`);
  } catch (error) {
    const note = `T=${length}: failed: ${(error as Error).message.split('\n')[0]}`;
    failures.push(note);
    console.error(note);
  } finally {
    tf.dispose([warm.xs, warm.ys, xs, ys]);
    model.dispose();
    optimizer.dispose();
  }
}

const MiB = 2 ** 20;
const table = [
  '| T | step (s) | per 1k tokens (s) | peak (MiB) | held before the step (MiB) | loss (nats) |',
  '|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.length} | ${r.stepSeconds.toFixed(1)} | ${((1024 * r.stepSeconds) / r.length).toFixed(2)} | ${(r.peakBytes / MiB).toFixed(0)} | ` +
      `${(r.heldBytes / MiB).toFixed(0)} | ${r.loss.toFixed(3)} |`,
  ),
].join('\n');
console.log(table);
if (failures.length > 0) console.log(`\nfailed:\n${failures.join('\n')}`);

if (out !== undefined) {
  const command = `npx tsx bench/lm_training.ts ${process.argv.slice(2).join(' ')}`.trim();
  const markdown = [
    '# Training a reformerLM at long lengths: one step',
    '',
    `Command: \`${command}\``,
    '',
    `Backend: ${backend}; tfjs ${tf.version.tfjs}; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}.`,
    '',
    `Model: ${description}. One step = \`model.fit\` on one sequence (forward, backward, Adam update) after a warm-up step at ` +
      'T ≤ 1024. Peak = `tf.profile(...).peakBytes` of a second step (every tensor alive: weights, Adam state, inputs, one-hot targets). ' +
      'Tensor bytes only: the host-side arrays of the LSH blocks are not counted.',
    '',
    table,
    ...(failures.length > 0 ? ['', 'Failed:', '', ...failures.map((line) => `- ${line}`)] : []),
    '',
  ].join('\n');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, markdown);
  console.log(`\nwritten: ${out}`);
}
