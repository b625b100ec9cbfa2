/**
 * The Reformer language model: a tiny one trains on a toy task with
 * model.fit (loss falls), saves and loads in Node (identical logits), and
 * continues a memorised pattern (greedy and seeded sampling); options and
 * errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import {
  FullSelfAttention,
  LSHSelfAttention,
  ReversibleStack,
  attentionLayers,
  generate,
  lmLoss,
  nextTokenData,
  reformerLM,
  setNHashes,
} from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { describeBackends, expectTensorsClose, maxAbsDiff } from './helpers.js';

const VOCAB = 8;
const PERIOD = 5;
const LENGTH = 16;
const tmp = mkdtempSync(join(tmpdir(), 'lsh-lm-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The pattern 1 2 3 4 5 1 2 … from phase r, `length` tokens. */
function pattern(r: number, length: number): number[] {
  return Array.from({ length }, (_, i) => 1 + ((r + i) % PERIOD));
}

describeBackends('reformer LM', () => {
  it('trains with model.fit (loss falls), saves, loads (same logits), and continues a memorised pattern', async () => {
    const model = reformerLM({
      vocabSize: VOCAB,
      maxLength: LENGTH,
      modelSize: 16,
      attention: ['lsh', 'full'],
      numHeads: 2,
      nHashes: 2,
      chunkLength: 8,
      attentionDropout: 0.05,
      feedForwardUnits: 32,
      feedForwardChunkLength: 6,
      feedForwardDropout: 0.05,
      positionEmbedding: 'axial',
      axialShape: [4, 4],
      seed: 1,
    });
    expect(attentionLayers(model).map((layer) => layer.getClassName())).toEqual(['LSHSelfAttention', 'FullSelfAttention']);
    model.compile({ optimizer: tf.train.adam(0.03), loss: lmLoss });
    // Every phase of the pattern once. (Few rows and epochs: the cpu backend is slow,
    // and its UnsortedSegmentSum, the embedding's gradient, is quadratic unless
    // initBackend({ replaceCpuSegmentSum: true }) replaces it.)
    const { inputs, targets } = nextTokenData(
      Array.from({ length: PERIOD }, (_, r) => pattern(r, LENGTH + 1)),
      VOCAB,
    );
    const history = await model.fit(inputs, targets, { epochs: 10, batchSize: PERIOD, verbose: 0, shuffle: false });
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).toBeLessThan(0.2 * losses[0]);

    const dir = join(tmp, 'lm');
    await model.save(fileSystem(dir));
    const loaded = await tf.loadLayersModel(fileSystem(dir));
    tf.tidy(() => {
      const a = model.predict(inputs) as tf.Tensor;
      const b = loaded.predict(inputs) as tf.Tensor;
      expect(b.shape).toEqual([PERIOD, LENGTH, VOCAB]);
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
    });

    // Greedy continuation of the pattern, also past the context (16 tokens).
    const prompts = [[1, 2, 3], [4, 5, 1]];
    const continued = await generate(loaded, prompts, { steps: 16 });
    expect(continued).toEqual([pattern(0, 19), pattern(3, 19)]);
    expect(await generate(model, prompts, { steps: 16 })).toEqual(continued);
    // Seeded sampling: the same seed, the same continuation; at a low temperature, the pattern.
    const sampled = await generate(loaded, prompts, { steps: 6, temperature: 1.5, seed: 3 });
    expect(await generate(loaded, prompts, { steps: 6, temperature: 1.5, seed: 3 })).toEqual(sampled);
    expect(await generate(loaded, prompts, { steps: 6, temperature: 0.05, seed: 4 })).toEqual([pattern(0, 9), pattern(3, 9)]);

    // More hash rounds for evaluation: one LSH layer changes, and the pattern survives.
    expect(setNHashes(loaded, 4)).toBe(1);
    expect((attentionLayers(loaded)[0] as LSHSelfAttention).nHashes).toBe(4);
    expect(await generate(loaded, prompts, { steps: 4 })).toEqual([pattern(0, 7), pattern(3, 7)]);

    const before = tf.memory().numTensors;
    await generate(loaded, prompts, { steps: 2, temperature: 1, seed: 1 });
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([inputs, targets]);
    model.dispose();
    loaded.dispose();
  });

  it('options: learned positions, all-full attention, non-reversible; the structure and shapes', () => {
    const model = reformerLM({ vocabSize: 5, maxLength: 12, modelSize: 8, numLayers: 3, attention: 'full', numHeads: 2, reversible: false, seed: 2 });
    const stack = model.layers.find((layer) => layer instanceof ReversibleStack) as ReversibleStack;
    expect(stack.blocks.length).toBe(3);
    expect(stack.reversible).toBe(false);
    expect(stack.blocks.every((block) => block.attention instanceof FullSelfAttention && block.attention.causal)).toBe(true);
    expect(model.layers.map((layer) => layer.getClassName())).toEqual([
      'InputLayer',
      'Embedding',
      'PositionEmbedding',
      'ReversibleStack',
      'LayerNorm',
      'PositionwiseDense',
    ]);
    expect(setNHashes(model, 2)).toBe(0);
    tf.tidy(() => {
      const logits = model.predict(tf.tensor2d([[1, 2, 3, 4, 0, 1, 2]], [1, 7], 'int32')) as tf.Tensor;
      expect(logits.shape).toEqual([1, 7, 5]);
    });
    model.dispose();
  });

  it('lmLoss takes one-hot targets or token ids and is the cross-entropy of softmax(logits)', () => {
    tf.tidy(() => {
      const logits = tf.tensor3d([[[1, 2, 0.5], [0, 0, 3]]]);
      const ids = tf.tensor2d([[1, 2]]);
      const expected = tf.tensor2d([[-Math.log(Math.exp(2) / (Math.exp(1) + Math.exp(2) + Math.exp(0.5))), -Math.log(Math.exp(3) / (2 + Math.exp(3)))]]);
      expectTensorsClose(lmLoss(ids, logits), expected, 1e-5);
      expectTensorsClose(lmLoss(tf.reshape(ids, [1, 2, 1]), logits), expected, 1e-5);
      expectTensorsClose(lmLoss(tf.oneHot(tf.cast(ids, 'int32'), 3), logits), expected, 1e-5);
    });
  });

  it('lmLoss gradient: dy·((Σ t)·softmax(logits) − t) per position, rows of zeros included, as plain loops', () => {
    const [T, V] = [4, 5];
    const z = Array.from({ length: T * V }, (_, i) => Math.sin(1.7 * i) * 3);
    // One-hot rows, a row of zeros (a position that counts nothing) and a soft row.
    const t = [0, 1, 0, 0, 0, /**/ 0, 0, 0, 0, 0, /**/ 0, 0, 0, 0, 1, /**/ 0.25, 0, 0.5, 0.25, 0];
    const w = [0.5, -1.5, 2, 1];
    tf.tidy(() => {
      const [grad] = tf.grads((x: tf.Tensor) => tf.sum(tf.mul(lmLoss(tf.tensor3d(t, [1, T, V]), x), tf.tensor2d(w, [1, T]))))([tf.tensor3d(z, [1, T, V])]);
      const actual = grad.dataSync();
      for (let p = 0; p < T; p++) {
        const row = z.slice(p * V, (p + 1) * V);
        const top = Math.max(...row);
        const total = row.reduce((s, x) => s + Math.exp(x - top), 0);
        const mass = t.slice(p * V, (p + 1) * V).reduce((s, x) => s + x, 0);
        for (let v = 0; v < V; v++) {
          const expected = w[p] * (mass * (Math.exp(row[v] - top) / total) - t[p * V + v]);
          expect(Math.abs(actual[p * V + v] - expected)).toBeLessThan(1e-5);
        }
      }
    });
  });

  it.each<[string, () => unknown, RegExp]>([
    ['attention kinds and numLayers disagree', () => reformerLM({ vocabSize: 4, maxLength: 8, attention: ['lsh', 'full'], numLayers: 3 }), /reformerLM: attention has 2 entries but numLayers is 3/],
    ['bad attention kind', () => reformerLM({ vocabSize: 4, maxLength: 8, attention: ['lsh', 'sparse' as 'lsh'] }), /reformerLM: attention\[1\] must be 'lsh', 'full' or 'local', got sparse/],
    ['axialShape not multiplying to maxLength', () => reformerLM({ vocabSize: 4, maxLength: 8, positionEmbedding: 'axial', axialShape: [2, 3] }), /reformerLM: axialShape \[2, 3\] must multiply to maxLength 8/],
    ['zero vocabulary', () => reformerLM({ vocabSize: 0, maxLength: 8 }), /reformerLM: vocabSize must be a positive integer, got 0/],
    ['sequences of different lengths', () => nextTokenData([[1, 2, 3], [1, 2]], 4), /nextTokenData: sequences must all have the same length ≥ 2, got lengths 3, 2/],
  ])('errors: %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });

  it('generate refuses prompts of different lengths and negative temperatures', async () => {
    const model = reformerLM({ vocabSize: 4, maxLength: 8, modelSize: 8, numLayers: 1, numHeads: 2, chunkLength: 4, seed: 3 });
    await expect(generate(model, [[1, 2], [1]], { steps: 1 })).rejects.toThrow(/generate: prompts must be a non-empty list of equally long/);
    await expect(generate(model, [[1]], { steps: 1, temperature: -1 })).rejects.toThrow(/generate: temperature must be ≥ 0/);
    model.dispose();
  });
});
