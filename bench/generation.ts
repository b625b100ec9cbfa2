// Run: flock /work/bench.lock npx tsx bench/generation.ts          (about 5 minutes on wasm)
//      npx tsx bench/generation.ts --quick                          (seconds: contexts 256 and 512, a short prompt)
// Flags (defaults in brackets): --contexts 1024,2048,4096,8192,16384 --steps 48 (timed steps per context)
//   --prompt 4096 --generate 512 (the end-to-end comparison) --uncached-steps 4 --layers 2 --model-size 128
//   --heads 4 --hashes 2 --chunk 64 --vocab 256 --out bench/results/generation.md
//   --per-token-only (part 1 only; writes nothing unless --out)
//
// Cached generation with a `reformerLM` (reversible blocks, causal LSH attention, axial position
// embedding, maxLength 32768), batch 1, greedy:
// 1. Per-token time against the context: a prompt of T random tokens is prefilled, then each of
//    `--steps` new tokens is one timed step (the model on one position, the logits read back, the
//    argmax taken); the median per T. The contexts are stepped in turns (one step of each per round),
//    so that the machine's load falls on all alike. Also for the same model with its second block
//    full attention.
// 2. `generate(model, [prompt], {steps: 512})` after a 4096-token prompt, with the cache (timed
//    whole) and without it (the path every step of which reruns the context): the uncached time
//    is predicted from `--uncached-steps` steps timed at the start (context 4096) and at the end
//    (context 4096 + 511) of the run, their means joined linearly over the 512 steps, because
//    running all 512 would take the better part of an hour.
// Look at: the per-token ratio 16384 / 1024 (target ≤ 1.5×) and the speed-up (target ≥ 10×).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { generate, reformerLM, startCachedGeneration, type AttentionKind } from '../layers/index.js';
import { describeBackend, initBackend } from '../src/backend.js';

const { values: flags } = parseArgs({
  options: {
    contexts: { type: 'string' },
    steps: { type: 'string' },
    prompt: { type: 'string' },
    generate: { type: 'string' },
    'uncached-steps': { type: 'string' },
    layers: { type: 'string', default: '2' },
    'model-size': { type: 'string', default: '128' },
    heads: { type: 'string', default: '4' },
    hashes: { type: 'string', default: '2' },
    chunk: { type: 'string', default: '64' },
    vocab: { type: 'string', default: '256' },
    out: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'per-token-only': { type: 'boolean', default: false },
  },
});

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`generation: --${name} must be a positive integer, got "${value}"`);
  return n;
}

const quick = flags.quick === true;
const contexts = (flags.contexts ?? (quick ? '256,512' : '1024,2048,4096,8192,16384')).split(',').map((t) => positiveInteger('contexts', t));
const timedSteps = positiveInteger('steps', flags.steps ?? (quick ? '8' : '48'));
const promptLength = positiveInteger('prompt', flags.prompt ?? (quick ? '256' : '4096'));
const generateSteps = positiveInteger('generate', flags.generate ?? (quick ? '16' : '512'));
const uncachedSteps = positiveInteger('uncached-steps', flags['uncached-steps'] ?? (quick ? '2' : '4'));
const settings = {
  numLayers: positiveInteger('layers', flags.layers),
  modelSize: positiveInteger('model-size', flags['model-size']),
  numHeads: positiveInteger('heads', flags.heads),
  nHashes: positiveInteger('hashes', flags.hashes),
  chunkLength: positiveInteger('chunk', flags.chunk),
  vocabSize: positiveInteger('vocab', flags.vocab),
};
const MAX_LENGTH = 32768;
const perTokenOnly = flags['per-token-only'] === true;
const out = flags.out ?? (quick || perTokenOnly ? undefined : 'bench/results/generation.md');

function randomTokens(length: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % settings.vocabSize;
  });
}

function model(attention: AttentionKind[]) {
  return reformerLM({ ...settings, attention, maxLength: MAX_LENGTH, positionEmbedding: 'axial', axialShape: [128, 256], seed: 1 });
}

function median(values: number[]): number {
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A cached run prefilled with T random tokens, ready to step. */
async function prefilled(lm: tf.LayersModel, context: number) {
  const run = startCachedGeneration(lm, MAX_LENGTH);
  const prompt = tf.tensor2d([randomTokens(context, context)], [1, context], 'int32');
  const start = performance.now();
  const prefill = run.prefill(prompt);
  const token = argmaxLast(await prefill.data(), prefill.shape[2]);
  const prefillSeconds = (performance.now() - start) / 1000;
  tf.dispose([prompt, prefill]);
  return { run, token, prefillSeconds, times: [] as number[] };
}

/** One step of a run (as generate runs it: the model on one position, the logits read back, the argmax): its time in ms. */
async function timedStep(state: Awaited<ReturnType<typeof prefilled>>): Promise<void> {
  const start = performance.now();
  const input = tf.tensor2d([[state.token]], [1, 1], 'int32');
  const logits = state.run.step(input);
  state.token = argmaxLast(await logits.data(), logits.shape[2]);
  state.times.push(performance.now() - start);
  tf.dispose([input, logits]);
}

/**
 * Per-token times at every context, measured in the same rounds: all contexts
 * are prefilled first, then each round steps every context once, so that a
 * busy machine slows them alike.
 */
async function perToken(lm: tf.LayersModel, lengths: number[]): Promise<Array<{ prefillSeconds: number; stepMs: number }>> {
  const states = [];
  for (const context of lengths) states.push(await prefilled(lm, context));
  try {
    for (let i = 0; i < timedSteps; i++) for (const state of states) await timedStep(state);
    return states.map((state) => ({ prefillSeconds: state.prefillSeconds, stepMs: median(state.times) }));
  } finally {
    states.forEach((state) => state.run.dispose());
  }
}

function argmaxLast(values: ArrayLike<number>, vocab: number): number {
  const offset = values.length - vocab;
  let best = 0;
  for (let i = 1; i < vocab; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

await initBackend();
const backend = describeBackend();
const description =
  `reformerLM: ${settings.numLayers} reversible layers, d_model ${settings.modelSize}, ${settings.numHeads} heads, ` +
  `causal LSH attention (${settings.nHashes} rounds, chunk ${settings.chunkLength}; the cache's buckets sized for maxLength ${MAX_LENGTH}), ` +
  `feed-forward ${4 * settings.modelSize} (gelu), axial position embedding [128, 256], vocabulary ${settings.vocabSize}; batch 1, greedy`;
console.log(`backend: ${backend}\n${description}\n`);

const lsh = model(Array(settings.numLayers).fill('lsh'));
const mixed = model(Array.from({ length: settings.numLayers }, (_, i) => (i === settings.numLayers - 1 ? 'full' : 'lsh')));
// Warm-up: kernels and the position tables.
await perToken(lsh, [256]);
await perToken(mixed, [256]);

interface Row {
  context: number;
  lsh: { prefillSeconds: number; stepMs: number };
  mixed: { prefillSeconds: number; stepMs: number };
}
const lshTimes = await perToken(lsh, contexts);
const mixedTimes = await perToken(mixed, contexts);
const rows: Row[] = contexts.map((context, i) => ({ context, lsh: lshTimes[i], mixed: mixedTimes[i] }));
for (const row of rows) {
  console.error(`T=${row.context}: LSH ${row.lsh.stepMs.toFixed(2)} ms/token (prefill ${row.lsh.prefillSeconds.toFixed(2)} s), LSH+full ${row.mixed.stepMs.toFixed(2)} ms/token`);
}

// 2. generate: 512 tokens after a 4096-token prompt.
const prompt = randomTokens(promptLength, 7);
let cachedSeconds = NaN;
let firstStep = NaN;
let lastStep = NaN;
let uncachedPredicted = NaN;
async function uncachedStepSeconds(promptTokens: number[]): Promise<number> {
  const begin = performance.now();
  await generate(lsh, [promptTokens], { steps: uncachedSteps, cache: false });
  return (performance.now() - begin) / 1000 / uncachedSteps;
}
if (!perTokenOnly) {
  const start = performance.now();
  const cached = await generate(lsh, [prompt], { steps: generateSteps, cache: true });
  cachedSeconds = (performance.now() - start) / 1000;
  console.error(`cached generate: ${cachedSeconds.toFixed(1)} s for ${generateSteps} tokens`);
  firstStep = await uncachedStepSeconds(prompt);
  // The context at the last steps: the prompt and what the cached run generated before them.
  lastStep = await uncachedStepSeconds(cached[0].slice(0, promptLength + generateSteps - uncachedSteps));
  uncachedPredicted = (generateSteps * (firstStep + lastStep)) / 2;
  console.error(`uncached: ${firstStep.toFixed(3)} s/token at context ${promptLength}, ${lastStep.toFixed(3)} s/token at ${promptLength + generateSteps - uncachedSteps}`);
}

const first = rows[0];
const last = rows[rows.length - 1];
const table = [
  '| context T | LSH: ms per token | LSH: prefill (s) | LSH + full: ms per token | LSH + full: prefill (s) |',
  '|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) => `| ${r.context} | ${r.lsh.stepMs.toFixed(2)} | ${r.lsh.prefillSeconds.toFixed(2)} | ${r.mixed.stepMs.toFixed(2)} | ${r.mixed.prefillSeconds.toFixed(2)} |`,
  ),
].join('\n');
const growth = last.lsh.stepMs / first.lsh.stepMs;
const mixedGrowth = last.mixed.stepMs / first.mixed.stepMs;
const speedUp = uncachedPredicted / cachedSeconds;
const summary = [
  `Per-token time from T=${first.context} to T=${last.context}: ×${growth.toFixed(2)} with LSH layers (target ≤ 1.5×), ` +
    `×${mixedGrowth.toFixed(2)} with the last block full attention (its step reads every cached key).`,
  `${generateSteps} tokens after a ${promptLength}-token prompt: ${cachedSeconds.toFixed(1)} s with the cache (measured, prefill included); ` +
    `≈${uncachedPredicted.toFixed(0)} s without (predicted: ${firstStep.toFixed(3)} s per token at context ${promptLength} and ` +
    `${lastStep.toFixed(3)} s at ${promptLength + generateSteps - uncachedSteps}, ${uncachedSteps} steps each, joined linearly): ` +
    `≈${speedUp.toFixed(0)}× faster (target ≥ 10×).`,
].slice(0, perTokenOnly ? 1 : 2).join('\n');
console.log(`${table}\n\n${summary}`);

if (out !== undefined) {
  const command = `flock /work/bench.lock npx tsx bench/generation.ts ${process.argv.slice(2).join(' ')}`.trim();
  const markdown = [
    '# Cached generation',
    '',
    `Command: \`${command}\``,
    '',
    `Backend: ${backend}; tfjs ${tf.version.tfjs}; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}.`,
    '',
    `Model: ${description}. "LSH + full": the same with the last block full attention. A step = the model on one new ` +
      `position with every attention layer's cache, the logits read back and the argmax taken; median of ${timedSteps} steps ` +
      'after a prefill of T random tokens (the prefill runs the prompt through the layers as `predict` does, and fills the caches). ' +
      'All contexts of a model are prefilled first and then stepped in turns (one step of each per round), so load on the machine ' +
      'slows every context alike and the ratios hold.',
    '',
    table,
    '',
    summary,
    '',
  ].join('\n');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, markdown);
  writeFileSync(out.replace(/\.md$/, '.json'), JSON.stringify({ backend, settings, timedSteps, rows, generate: { promptLength, generateSteps, cachedSeconds, uncachedSteps, firstStep, lastStep, uncachedPredicted } }, null, 2));
  console.log(`\nwritten: ${out}`);
}
lsh.dispose();
mixed.dispose();
