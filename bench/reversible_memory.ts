// Run: npx tsx bench/reversible_memory.ts          (T = 1024, 2048 and 4096, 2/4/8 layers; several minutes on wasm)
//      npx tsx bench/reversible_memory.ts --quick  (T = 512: seconds)
// Flags (defaults in brackets): --length 1024,2048,4096 --layers 2,4,8 --model-size 128 --heads 4
//   --hashes 2 --chunk 64 --ff 512 --ff-chunk 512 --out bench/results/reversible-memory.md
//
// Peak tensor memory of one training step (forward, backward, Adam update, via model.trainOnBatch)
// of a stack of LSH-attention blocks at batch 1, with reversible residuals (activations recomputed
// in the backward pass) and with ordinary residuals (ReversibleStack's `reversible: false`: the same
// function, ordinary backpropagation), for several depths. The peak includes what any training step
// holds whatever its residuals: the weights, Adam's two moments and, at the update, one gradient per
// weight; all three grow linearly with depth. So the table also separates them out:
//   activations & temporaries = peak − (weights + Adam state + inputs, held before the step) − gradients.
// A configuration whose peak, extrapolated from the shallower ones, would not fit in the backend's
// memory (the wasm heap corrupts data past ≈3.6 GiB) is skipped and reported as such.
// Look at: the "growth" lines; the issue's target is that the reversible stack's peak grows by at
// most 30% from 2 to 8 layers while the ordinary stack's grows about linearly.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { chunkedFeedForward, lshSelfAttention, reversibleStack } from '../layers/index.js';
import { describeBackend, initBackend } from '../src/backend.js';
import { availableBytes, formatBytes } from '../src/memory.js';

const { values: flags } = parseArgs({
  options: {
    length: { type: 'string' },
    layers: { type: 'string', default: '2,4,8' },
    'model-size': { type: 'string', default: '128' },
    heads: { type: 'string', default: '4' },
    hashes: { type: 'string', default: '2' },
    chunk: { type: 'string', default: '64' },
    ff: { type: 'string', default: '512' },
    'ff-chunk': { type: 'string', default: '512' },
    out: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`reversible_memory: --${name} must be a positive integer, got "${value}"`);
  return n;
}

const lengths = (flags.length ?? (flags.quick ? '512' : '1024,2048,4096')).split(',').map((t) => positiveInteger('length', t));
const depths = flags.layers.split(',').map((d) => positiveInteger('layers', d));
const modelSize = positiveInteger('model-size', flags['model-size']);
const numHeads = positiveInteger('heads', flags.heads);
const nHashes = positiveInteger('hashes', flags.hashes);
const chunkLength = positiveInteger('chunk', flags.chunk);
const feedForwardUnits = positiveInteger('ff', flags.ff);
const feedForwardChunk = positiveInteger('ff-chunk', flags['ff-chunk']);
const out = flags.out ?? (flags.quick ? undefined : 'bench/results/reversible-memory.md');
const MiB = 2 ** 20;

/** input [1, T, M] → a stack of `layers` LSH blocks → mean of the two streams [1, T, M]. */
function buildModel(layers: number, reversible: boolean): tf.LayersModel {
  const blocks = Array.from({ length: layers }, (_, i) => ({
    attention: lshSelfAttention({ numHeads, nHashes, chunkLength, causal: true, fullAttentionThreshold: 0, seed: 100 + i }), // LSH at T = 1024 too
    feedForward: chunkedFeedForward({ units: feedForwardUnits, chunkLength: feedForwardChunk, activation: 'gelu', seed: 200 + i }),
  }));
  const input = tf.input({ shape: [null, modelSize] });
  const stack = reversibleStack({ blocks, reversible, combine: 'mean', seed: 1 });
  return tf.model({ inputs: input, outputs: stack.apply(input) as tf.SymbolicTensor });
}

interface Row {
  length: number;
  layers: number;
  reversible: boolean;
  weightBytes: number;
  optimizerBytes: number;
  inputBytes: number;
  peakBytes: number;
  activationBytes: number;
  stepMs: number;
  loss: number;
}

const bytesOf = (tensors: tf.Tensor[]) => tensors.reduce((sum, t) => sum + t.size * 4, 0);

async function measure(length: number, layers: number, reversible: boolean, x: tf.Tensor3D, y: tf.Tensor3D): Promise<Row> {
  const model = buildModel(layers, reversible);
  const optimizer = tf.train.adam(1e-4);
  try {
    return await measureModel(length, layers, reversible, model, optimizer, x, y);
  } finally {
    model.dispose();
    optimizer.dispose();
  }
}

async function measureModel(
  length: number,
  layers: number,
  reversible: boolean,
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  x: tf.Tensor3D,
  y: tf.Tensor3D,
): Promise<Row> {
  model.compile({ optimizer, loss: 'meanSquaredError' });
  const weightBytes = bytesOf(model.trainableWeights.map((w) => w.read()));
  // Warm-up: creates Adam's moments (and compiles whatever is compiled lazily).
  await model.trainOnBatch(x, y);
  const optimizerBytes = bytesOf((await optimizer.getWeights()).map((w) => w.tensor));
  // A timed step, then a profiled one (profiling slows kernels down).
  const start = performance.now();
  const loss = (await model.trainOnBatch(x, y)) as number;
  const stepMs = performance.now() - start;
  const before = tf.memory().numBytes;
  const info = await tf.profile(async () => {
    await model.trainOnBatch(x, y);
  });
  // Held before the step: weights, Adam state, x and y (and nothing else of ours).
  const inputBytes = before - weightBytes - optimizerBytes;
  // At the update every gradient is alive at once: one per weight.
  const activationBytes = info.peakBytes - before - weightBytes;
  return { length, layers, reversible, weightBytes, optimizerBytes, inputBytes, peakBytes: info.peakBytes, activationBytes, stepMs, loss };
}

await initBackend();
const backend = describeBackend();
const settings =
  `batch 1, d_model ${modelSize}, ${numHeads} heads, causal LSH attention (${nHashes} rounds, chunk ${chunkLength}), ` +
  `feed-forward ${feedForwardUnits} (gelu, ${feedForwardChunk} positions per slice), pre-norm blocks, Adam, MSE loss on the stack's output`;
console.log(`backend: ${backend}\n${settings}\n`);

/** The peak of `layers` layers extrapolated from the measured rows of one length and variant (linear in depth), or undefined. */
function predictedPeak(measured: Row[], layers: number): number | undefined {
  if (measured.length === 0) return undefined;
  const a = measured[measured.length - 1];
  const b = measured.length > 1 ? measured[measured.length - 2] : undefined;
  const perLayer = b === undefined ? a.peakBytes / a.layers : (a.peakBytes - b.peakBytes) / (a.layers - b.layers);
  return a.peakBytes + perLayer * (layers - a.layers);
}

const MEMORY_MARGIN = 0.9; // of what the backend has free: leave room for what the estimate misses
const rows: Row[] = [];
const skipped: string[] = [];
for (const length of lengths) {
  const x = tf.randomNormal([1, length, modelSize], 0, 1, 'float32', 1) as tf.Tensor3D;
  const y = tf.randomNormal([1, length, modelSize], 0, 1, 'float32', 2) as tf.Tensor3D;
  for (const reversible of [true, false]) {
    const measured: Row[] = [];
    for (const layers of depths) {
      const name = `T = ${length}, ${reversible ? 'reversible' : 'ordinary'}, ${layers} layers`;
      const predicted = predictedPeak(measured, layers);
      const { limit, inUse } = availableBytes();
      if (predicted !== undefined && predicted - inUse > MEMORY_MARGIN * (limit - inUse)) {
        const note = `${name}: skipped, its peak would be about ${formatBytes(predicted)} (extrapolated), over the ${tf.getBackend()} backend's limit of ${formatBytes(limit)}`;
        skipped.push(note);
        console.error(note);
        continue;
      }
      let row: Row;
      try {
        row = await measure(length, layers, reversible, x, y);
      } catch (error) {
        // The attention functions refuse calls that would not fit (the memory guard): report, go on.
        const note = `${name}: refused: ${(error as Error).message.split('\n')[0]}`;
        skipped.push(note);
        console.error(note);
        continue;
      }
      measured.push(row);
      rows.push(row);
      console.error(
        `${name}: peak ${formatBytes(row.peakBytes)}, activations ${formatBytes(row.activationBytes)}, ` +
          `step ${(row.stepMs / 1000).toFixed(1)} s, loss ${row.loss.toFixed(4)}`,
      );
    }
  }
  tf.dispose([x, y]);
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);
const table = [
  '| T | residuals | layers | weights (MiB) | Adam state (MiB) | inputs & other (MiB) | peak (MiB) | peak − weights − Adam − inputs (MiB) | of which gradients (MiB) | activations & temporaries (MiB) | step (s) |',
  '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.length} | ${r.reversible ? 'reversible' : 'ordinary'} | ${r.layers} | ${mib(r.weightBytes)} | ${mib(r.optimizerBytes)} | ${mib(r.inputBytes)} | ${mib(r.peakBytes)} | ` +
      `${mib(r.peakBytes - r.weightBytes - r.optimizerBytes - r.inputBytes)} | ${mib(r.weightBytes)} | ${mib(r.activationBytes)} | ${(r.stepMs / 1000).toFixed(1)} |`,
  ),
].join('\n');

const pct = (p: number, q: number) => `${p >= q ? '+' : ''}${((100 * (p - q)) / q).toFixed(0)}%`;
const growth: string[] = [];
const targets: string[] = [];
for (const length of lengths) {
  for (const reversible of [true, false]) {
    const own = rows.filter((r) => r.length === length && r.reversible === reversible);
    if (own.length < 2) continue;
    const [a, b] = [own[0], own[own.length - 1]];
    const added = b.layers - a.layers;
    // Per added layer: the peak's growth, and what weights, Adam's two moments and the gradients add (4 × the weights).
    const peakPerLayer = (b.peakBytes - a.peakBytes) / added;
    const statePerLayer = (4 * (b.weightBytes - a.weightBytes)) / added;
    const activationsPerLayer = (b.activationBytes - a.activationBytes) / added;
    growth.push(
      `- T = ${length}, ${reversible ? 'reversible' : 'ordinary'}, ${a.layers} → ${b.layers} layers: peak ${mib(a.peakBytes)} → ${mib(b.peakBytes)} MiB (${pct(b.peakBytes, a.peakBytes)}); ` +
        `activations & temporaries ${mib(a.activationBytes)} → ${mib(b.activationBytes)} MiB (${pct(b.activationBytes, a.activationBytes)}). ` +
        `Per added layer: peak +${mib(peakPerLayer)} MiB, of which weights + Adam state + gradients ${mib(statePerLayer)} MiB ` +
        `and activations ${mib(activationsPerLayer)} MiB (${(activationsPerLayer / length / 1024).toFixed(1)} KiB per token)`,
    );
    if (reversible) {
      const growthPct = (100 * (b.peakBytes - a.peakBytes)) / a.peakBytes;
      targets.push(`- T = ${length}: ${growthPct <= 30 ? 'met' : 'NOT met'} (peak ${pct(b.peakBytes, a.peakBytes)} from ${a.layers} to ${b.layers} layers)`);
    }
  }
}

console.log(table);
console.log(`\ngrowth:\n${growth.join('\n')}`);
console.log(`target (reversible peak grows by at most 30% from the shallowest to the deepest stack):\n${targets.join('\n')}`);
if (skipped.length > 0) console.log(`skipped:\n${skipped.map((line) => `- ${line}`).join('\n')}`);

if (out !== undefined) {
  const command = `npx tsx bench/reversible_memory.ts ${process.argv.slice(2).join(' ')}`.trim();
  const markdown = [
    '# Reversible vs ordinary residuals: peak memory of a training step',
    '',
    `Command: \`${command}\``,
    '',
    `Backend: ${backend}; tfjs ${tf.version.tfjs}; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}.`,
    '',
    `Settings: ${settings}. One training step = \`model.trainOnBatch\` (forward, backward, Adam update), ` +
      'measured after one warm-up step (which creates Adam\'s moments). Peak = `tf.profile(...).peakBytes`: the most tensor ' +
      'bytes alive after any kernel of the step, counting everything alive (weights, Adam state, inputs). ' +
      'Inputs & other = what is held before the step besides weights and Adam state (x and y; a leak between configurations would show here). ' +
      'Gradients = one per weight (all alive at the update). Activations & temporaries = peak − weights − Adam state − inputs − gradients. ' +
      'Tensor bytes only: host-side arrays (LSH index and mask blocks) and the wasm heap\'s own high-water mark are not in these figures. ' +
      'Step = wall time of one unprofiled step.',
    '',
    table,
    '',
    'Growth with depth:',
    '',
    ...growth,
    '',
    'Where the memory goes: with ordinary residuals the tape keeps every block\'s activations until the backward pass, so the ' +
      'activations grow by the same amount with each layer. The reversible stack keeps only the last block\'s output and, in the ' +
      'backward pass, recomputes one block at a time under a tape: its activations & temporaries are those of one block and do not ' +
      'depend on the depth; its peak still grows with depth by the weights, Adam\'s two moments and the gradients (4 × the weights), ' +
      'which is what the "per added layer" figures show.',
    '',
    'Target (the reversible stack\'s peak grows by at most 30% from 2 to 8 layers):',
    '',
    ...targets,
    ...(skipped.length > 0 ? ['', 'Skipped or refused:', '', ...skipped.map((line) => `- ${line}`)] : []),
    '',
  ].join('\n');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, markdown);
  console.log(`\nwritten: ${out}`);
}
