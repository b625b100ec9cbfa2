/**
 * The Reformer encoder: heads and shapes, attention in both directions, the
 * pooling against plain arrays, a toy classification learned with model.fit,
 * another head on the same body (shared weights), save and load, maskTokens'
 * recipe (rates, targets, special tokens, seed), the masked-LM loss, errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import {
  SequencePooling,
  addEncoderHead,
  classificationLoss,
  maskTokens,
  maskedLMLoss,
  reformerEncoder,
  reformerLM,
} from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { describeBackends, maxAbsDiff, randomTensor } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'lsh-encoder-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const small = { vocabSize: 7, maxLength: 16, modelSize: 8, numHeads: 2, chunkLength: 4, feedForwardUnits: 16, seed: 3 };

describeBackends('reformerEncoder', (backend) => {
  it('gives class logits, masked-LM logits or hidden states, and attends in both directions', () => {
    const before = tf.memory().numTensors;
    const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6, 1, 2], [3, 3, 3, 3, 3, 3, 3, 3]], undefined, 'int32');
    const classifier = reformerEncoder({ ...small, numClasses: 3 });
    const masked = reformerEncoder({ ...small, head: 'maskedLM' });
    const body = reformerEncoder({ ...small, head: 'none', attention: ['full', 'lsh'] });
    const [logits, lm, hidden] = [classifier, masked, body].map((m) => m.predict(tokens) as tf.Tensor);
    expect(logits.shape).toEqual([2, 3]);
    expect(lm.shape).toEqual([2, 8, 7]);
    expect(hidden.shape).toEqual([2, 8, 16]);
    // A later token changes the first position's state (no causal mask).
    const changed = tf.tensor2d([[1, 2, 3, 4, 5, 6, 1, 5], [3, 3, 3, 3, 3, 3, 3, 3]], undefined, 'int32');
    const hiddenChanged = body.predict(changed) as tf.Tensor;
    const first = (x: tf.Tensor) => tf.tidy(() => x.slice([0, 0, 0], [1, 1, -1]).dataSync());
    expect(maxAbsDiff(first(hidden), first(hiddenChanged))).toBeGreaterThan(1e-4);
    tf.dispose([tokens, changed, logits, lm, hidden, hiddenChanged]);
    [classifier, masked, body].forEach((m) => m.dispose());
    expect(tf.memory().numTensors).toBe(before);
  });

  it('SequencePooling: mean, max and first position, as plain loops compute them', () => {
    const x = randomTensor([2, 5, 3], 7) as tf.Tensor3D;
    const values = x.arraySync();
    const expected = {
      mean: values.map((rows) => rows[0].map((_, f) => rows.reduce((a, r) => a + r[f], 0) / rows.length)),
      max: values.map((rows) => rows[0].map((_, f) => Math.max(...rows.map((r) => r[f])))),
      first: values.map((rows) => rows[0]),
    };
    for (const pooling of ['mean', 'max', 'first'] as const) {
      const pooled = new SequencePooling({ pooling }).apply(x) as tf.Tensor;
      expect(pooled.shape).toEqual([2, 3]);
      expect(maxAbsDiff(pooled.dataSync(), expected[pooling].flat())).toBeLessThan(1e-6);
      pooled.dispose();
    }
    x.dispose();
  });

  // On wasm only: training is 30-100× slower on cpu (the values are the same code on both).
  it.skipIf(backend === 'cpu')('learns a toy classification with model.fit (does the sequence hold a 3?)', async () => {
    const rows = Array.from({ length: 48 }, (_, n) => Array.from({ length: 8 }, (_, t) => 1 + ((n * 5 + t * 3 + (n >> 2)) % 6)));
    const sequences = rows.map((row, n) => (n % 2 === 0 ? row.map((t) => (t === 3 ? 4 : t)) : row.map((t, i) => (i === n % 8 ? 3 : t))));
    const labels = sequences.map((s) => (s.includes(3) ? 1 : 0));
    const model = reformerEncoder({ ...small, numClasses: 2, attention: 'full', numLayers: 1, pooling: 'max' });
    model.compile({ optimizer: tf.train.adam(0.03), loss: classificationLoss });
    const xs = tf.tensor2d(sequences, undefined, 'int32');
    const ys = tf.oneHot(labels, 2).toFloat();
    const untrained = await accuracy(model, xs, labels);
    await model.fit(xs, ys, { epochs: 25, batchSize: 16, verbose: 0 });
    expect(await accuracy(model, xs, labels)).toBeGreaterThan(Math.max(0.9, untrained));
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it('addEncoderHead: a classifier on a masked-LM model shares its layers; both save and load', async () => {
    const pretrain = reformerEncoder({ ...small, head: 'maskedLM' });
    const classifier = addEncoderHead(pretrain, { numClasses: 4, pooling: 'first', seed: 1 });
    const shared = pretrain.layers.filter((layer) => layer.getClassName() === 'ReversibleStack');
    expect(classifier.layers).toContain(shared[0]);
    const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6]], undefined, 'int32');
    const before = classifier.predict(tokens) as tf.Tensor;
    expect(before.shape).toEqual([1, 4]);
    // Training the masked-LM model moves the classifier too.
    const { inputs, targets } = maskTokens([[1, 2, 3, 4, 5, 6]], { vocabSize: 7, maskToken: 0, rate: 0.5, seed: 1 });
    pretrain.compile({ optimizer: tf.train.sgd(0.5), loss: maskedLMLoss });
    await pretrain.fit(inputs, targets, { epochs: 1, verbose: 0 });
    const after = classifier.predict(tokens) as tf.Tensor;
    expect(maxAbsDiff(before.dataSync(), after.dataSync())).toBeGreaterThan(1e-6);
    await classifier.save(fileSystem(join(tmp, 'classifier')));
    const loaded = await tf.loadLayersModel(fileSystem(join(tmp, 'classifier')));
    const reloaded = loaded.predict(tokens) as tf.Tensor;
    expect(maxAbsDiff(reloaded.dataSync(), after.dataSync())).toBe(0);
    expect(() => addEncoderHead(reformerLM({ vocabSize: 7, maxLength: 8, modelSize: 8, numHeads: 2, seed: 1 }), { numClasses: 2 })).toThrow(
      /^addEncoderHead: encoder must be a model made by reformerEncoder/,
    );
    tf.dispose([tokens, before, after, reloaded, inputs, targets]);
    [pretrain, loaded].forEach((m) => m.dispose());
  });
});

async function accuracy(model: tf.LayersModel, xs: tf.Tensor, labels: number[]): Promise<number> {
  const logits = model.predict(xs) as tf.Tensor;
  const best = tf.argMax(logits, 1);
  const guesses = await best.data();
  tf.dispose([logits, best]);
  return labels.filter((label, i) => guesses[i] === label).length / labels.length;
}

it('maskTokens: BERT recipe (rate, 80/10/10), targets only at the chosen positions, special tokens left alone, seeded', () => {
  const sequences = Array.from({ length: 200 }, (_, n) => Array.from({ length: 100 }, (_, t) => (t === 0 ? 1 : 2 + ((n * 7 + t * 13) % 28))));
  const before = tf.memory().numTensors;
  const { inputs, targets, chosen } = maskTokens(sequences, { vocabSize: 30, maskToken: 0, specialTokens: [1], seed: 4 });
  const [x, y, c] = [inputs.arraySync(), targets.arraySync(), chosen.arraySync()];
  let picked = 0;
  let masked = 0;
  let kept = 0;
  sequences.forEach((sequence, n) =>
    sequence.forEach((token, t) => {
      const isChosen = c[n][t] === 1;
      expect(y[n][t].reduce((a, b) => a + b, 0)).toBe(isChosen ? 1 : 0);
      if (!isChosen) {
        expect(x[n][t]).toBe(token);
        return;
      }
      expect(t).not.toBe(0); // the special token is never chosen
      expect(y[n][t][token]).toBe(1);
      picked++;
      if (x[n][t] === 0) masked++;
      else if (x[n][t] === token) kept++;
    }),
  );
  const total = 200 * 99;
  expect(picked / total).toBeGreaterThan(0.14);
  expect(picked / total).toBeLessThan(0.16);
  expect(masked / picked).toBeGreaterThan(0.77);
  expect(masked / picked).toBeLessThan(0.83);
  // Unchanged: the 10% kept, plus random draws that hit the token itself (1 in 28).
  expect(kept / picked).toBeGreaterThan(0.08);
  expect(kept / picked).toBeLessThan(0.14);
  // Seeded: the same choices again; a tiny rate still picks one position per row.
  const again = maskTokens(sequences, { vocabSize: 30, maskToken: 0, specialTokens: [1], seed: 4 });
  expect(again.inputs.arraySync()).toEqual(x);
  const sparse = maskTokens([[2, 3, 4], [5, 6, 7]], { vocabSize: 30, maskToken: 0, rate: 1e-9, seed: 1 });
  expect(tf.tidy(() => sparse.chosen.sum(1).arraySync())).toEqual([1, 1]);
  // The masked-LM loss counts the chosen positions only.
  const logits = randomTensor([2, 3, 30], 5);
  const loss = maskedLMLoss(sparse.targets, logits);
  const perPosition = loss.arraySync() as number[][];
  const chosenRows = sparse.chosen.arraySync();
  perPosition.forEach((row, n) => row.forEach((value, t) => (chosenRows[n][t] === 1 ? expect(value).toBeGreaterThan(0) : expect(value).toBe(0))));
  tf.dispose([inputs, targets, chosen, again.inputs, again.targets, again.chosen, sparse.inputs, sparse.targets, sparse.chosen, logits, loss]);
  expect(tf.memory().numTensors).toBe(before);
});

it.each([
  ['no numClasses', () => reformerEncoder({ ...small }), /^reformerEncoder: the classification head needs numClasses, an integer ≥ 2, got undefined/],
  ['a bad pooling', () => reformerEncoder({ ...small, numClasses: 2, pooling: 'sum' as 'mean' }), /^reformerEncoder: pooling must be one of mean, max, first, got "sum"/],
  ['a bad head', () => reformerEncoder({ ...small, head: 'lm' as 'none' }), /^reformerEncoder: head must be one of classification, maskedLM, none, got "lm"/],
  ['a bad attention kind', () => reformerEncoder({ ...small, numClasses: 2, attention: ['lsh', 'x' as 'lsh'] }), /^reformerEncoder: attention\[1\] must be 'lsh' or 'full'/],
  ['maskTokens: a token past the vocabulary', () => maskTokens([[1, 9]], { vocabSize: 5, maskToken: 0 }), /^maskTokens: sequences\[0\]\[1\] must be a token id in \[0, 4\], got 9/],
  ['maskTokens: shares above 1', () => maskTokens([[1, 2]], { vocabSize: 5, maskToken: 0, maskShare: 0.9, randomShare: 0.2 }), /^maskTokens: maskShare \+ randomShare must be at most 1/],
  ['maskTokens: only special tokens', () => maskTokens([[0, 0]], { vocabSize: 5, maskToken: 0 }), /^maskTokens: sequences\[0\] holds only special tokens/],
  ['maskTokens: a mask token outside the vocabulary', () => maskTokens([[1]], { vocabSize: 5, maskToken: 5 }), /^maskTokens: maskToken must be a token id in \[0, 4\], got 5/],
])('errors: %s', (_name, run, message) => {
  expect(run).toThrow(message);
});
