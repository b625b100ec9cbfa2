/**
 * The layers: shapes, equivalence of the LSH and full layers sharing weights,
 * masks (input and propagated), training, save/load, reproducibility, leaks
 * and errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import { FullSelfAttention, LSHSelfAttention, fullSelfAttention, lshSelfAttention } from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { describeBackends, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';

const M = 12;
const HEADS = 3;
const tmp = mkdtempSync(join(tmpdir(), 'lsh-layers-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A functional model x [B, T, M] (+ mask [B, T]) → attention → [B, T, M]. */
function attentionModel(layer: tf.layers.Layer, length: number | null, withMask: boolean): tf.LayersModel {
  const x = tf.input({ shape: [length, M] });
  if (!withMask) return tf.model({ inputs: x, outputs: layer.apply(x) as tf.SymbolicTensor });
  const mask = tf.input({ shape: [length] });
  return tf.model({ inputs: [x, mask], outputs: layer.apply([x, mask]) as tf.SymbolicTensor });
}

/** Gradients of sum(out · w) with respect to the layer's weights, by weight name. */
function weightGrads(layer: tf.layers.Layer, run: () => tf.Tensor, weights: tf.Tensor): tf.Tensor[] {
  const variables = layer.trainableWeights.map((w) => w.read() as tf.Variable);
  const { grads } = tf.variableGrads(() => tf.sum(tf.mul(run(), weights)) as tf.Scalar, variables);
  return variables.map((v) => grads[v.name]);
}

describeBackends('layers', () => {
  it('computeOutputShape keeps [B, T, M], with T unknown too', () => {
    const layer = lshSelfAttention({ numHeads: HEADS, chunkLength: 8, seed: 1 });
    expect(layer.computeOutputShape([null, null, M])).toEqual([null, null, M]);
    expect(layer.computeOutputShape([[2, 40, M], [2, 40]])).toEqual([2, 40, M]);
    const model = attentionModel(lshSelfAttention({ numHeads: HEADS, chunkLength: 8, seed: 1 }), null, false);
    expect(model.outputs[0].shape).toEqual([null, null, M]);
    for (const length of [5, 16, 37]) {
      tf.tidy(() => {
        expect((model.predict(randomTensor([2, length, M], length)) as tf.Tensor).shape).toEqual([2, length, M]);
      });
    }
    model.dispose();
  });

  it.each([
    [16, false, false, 'rotation'],
    [13, true, false, 'rotation'],
    [13, false, true, 'rotation'],
    [16, true, true, 'rotation'],
    [13, true, true, 'simhash'],
  ] as const)('T=%i causal %s padding %s, %s hash: the LSH layer with one chunk equals the full layer sharing its weights', (length, causal, padded, hashFamily) => {
    // One chunk covering the padded length: LSH attention is exact.
    const lsh = new LSHSelfAttention({ numHeads: HEADS, nHashes: 1, chunkLength: 16, numChunksBefore: 0, causal, useBias: true, seed: 3, hashFamily });
    const full = new FullSelfAttention({ numHeads: HEADS, causal, useBias: true, seed: 4 });
    const lshModel = attentionModel(lsh, length, padded);
    const fullModel = attentionModel(full, length, padded);
    tf.tidy(() => {
      // Random (non-zero) biases too, so every weight is exercised.
      lsh.setWeights(lsh.getWeights().map((w, i) => randomTensor(w.shape, 50 + i, 0.5)));
      full.setWeights(lsh.getWeights());
      const x = randomTensor([2, length, M], 5);
      const maskRows = [Array.from({ length }, () => 1), Array.from({ length }, (_, i) => (i < length - 4 ? 1 : 0))];
      const mask = tf.tensor2d(maskRows);
      const inputs = padded ? [x, mask] : x;
      const keep = padded ? tf.reshape(mask, [2, length, 1]) : tf.ones([2, length, 1]);
      const a = tf.mul(lshModel.predict(inputs) as tf.Tensor, keep);
      const b = tf.mul(fullModel.predict(inputs) as tf.Tensor, keep);
      expectTensorsClose(a, b, 1e-5);
      const weights = tf.mul(randomTensor([2, length, M], 6), keep);
      const ga = weightGrads(lsh, () => lshModel.apply(inputs) as tf.Tensor, weights);
      const gb = weightGrads(full, () => fullModel.apply(inputs) as tf.Tensor, weights);
      ga.forEach((g, i) => expectTensorsClose(g, gb[i], 1e-4));
      expect(tf.max(tf.abs(ga[0])).dataSync()[0]).toBeGreaterThan(1e-4);
    });
    lshModel.dispose();
    fullModel.dispose();
  });

  it.each([
    [13, 1, 1, true, true, 'rotation'],
    [20, 3, 1, true, false, 'rotation'],
    [17, 4, 2, false, true, 'simhash'],
  ] as const)(
    'oneChunkPerRound, T=%i, %i rounds, %i chunks before, causal %s, padding %s, %s hash: equals the full layer at any T (chunkLength unused)',
    (length, nHashes, numChunksBefore, causal, padded, hashFamily) => {
      const lsh = new LSHSelfAttention({ numHeads: HEADS, nHashes, chunkLength: 4, nBuckets: 4, numChunksBefore, causal, hashFamily, oneChunkPerRound: true, seed: 3 });
      const full = new FullSelfAttention({ numHeads: HEADS, causal, seed: 4 });
      const lshModel = attentionModel(lsh, null, padded);
      const fullModel = attentionModel(full, null, padded);
      tf.tidy(() => {
        lsh.setWeights(lsh.getWeights().map((w, i) => randomTensor(w.shape, 60 + i, 0.5)));
        full.setWeights(lsh.getWeights());
        const x = randomTensor([2, length, M], 7);
        const mask = tf.tensor2d([Array.from({ length }, () => 1), Array.from({ length }, (_, i) => (i < length - 3 ? 1 : 0))]);
        const inputs = padded ? [x, mask] : x;
        const keep = padded ? tf.reshape(mask, [2, length, 1]) : tf.ones([2, length, 1]);
        expectTensorsClose(tf.mul(lshModel.predict(inputs) as tf.Tensor, keep), tf.mul(fullModel.predict(inputs) as tf.Tensor, keep), 1e-5);
      });
      // Saved only when set, so existing configs do not change.
      expect(lsh.getConfig().oneChunkPerRound).toBe(true);
      expect('oneChunkPerRound' in lshSelfAttention({ seed: 1 }).getConfig()).toBe(false);
      expect(() => lshSelfAttention({ oneChunkPerRound: 1 as unknown as boolean })).toThrow(/LSHSelfAttention: oneChunkPerRound must be/);
      lshModel.dispose();
      fullModel.dispose();
    },
  );

  it('takes the mask an embedding with maskZero propagates, the same as a mask input', () => {
    const vocab = 11;
    const length = 20;
    const embedding = tf.layers.embedding({ inputDim: vocab, outputDim: M, maskZero: true, embeddingsInitializer: tf.initializers.randomNormal({ seed: 1 }) });
    const attention = lshSelfAttention({ numHeads: HEADS, nHashes: 2, chunkLength: 8, seed: 7 });
    const ids = tf.input({ shape: [length], dtype: 'int32' });
    const propagated = tf.model({ inputs: ids, outputs: attention.apply(embedding.apply(ids)) as tf.SymbolicTensor });
    const maskInput = tf.input({ shape: [length] });
    const explicit = tf.model({
      inputs: [ids, maskInput],
      outputs: attention.apply([embedding.apply(ids) as tf.SymbolicTensor, maskInput]) as tf.SymbolicTensor,
    });
    tf.tidy(() => {
      const rows = [0, 1].map((r) => Array.from({ length }, (_, i) => (i < length - 6 * r ? 1 + ((i * 7 + r) % (vocab - 1)) : 0)));
      const tokens = tf.tensor2d(rows, [2, length], 'int32');
      const mask = tf.cast(tf.notEqual(tokens, 0), 'float32');
      const keep = tf.reshape(mask, [2, length, 1]);
      const a = tf.mul(propagated.predict(tokens) as tf.Tensor, keep);
      const b = tf.mul(explicit.predict([tokens, mask]) as tf.Tensor, keep);
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBeLessThan(1e-6);
      // ...and the mask matters: without it the padded tokens change the outputs.
      const unmasked = tf.mul(explicit.predict([tokens, tf.onesLike(mask)]) as tf.Tensor, keep);
      expect(maxAbsDiff(a.dataSync(), unmasked.dataSync())).toBeGreaterThan(1e-3);
    });
    propagated.dispose();
  });

  it('trains with model.fit in a tf.sequential (loss falls)', async () => {
    const length = 16;
    const vocab = 6;
    const model = tf.sequential({
      layers: [
        tf.layers.embedding({ inputDim: vocab, outputDim: M, inputLength: length, embeddingsInitializer: tf.initializers.randomNormal({ seed: 2 }) }),
        lshSelfAttention({ numHeads: HEADS, nHashes: 2, chunkLength: 8, causal: true, dropout: 0.1, seed: 9 }),
        tf.layers.dense({ units: vocab, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
      ],
    });
    model.compile({ optimizer: tf.train.adam(0.02), loss: 'sparseCategoricalCrossentropy' });
    // Task: predict the previous token (needs attention to position t−1).
    const rows = Array.from({ length: 8 }, (_, r) => Array.from({ length }, (_, i) => (r * 3 + i * i) % vocab));
    const x = tf.tensor2d(rows, [8, length], 'int32');
    const y = tf.tensor3d(rows.map((row) => row.map((_, i) => [i === 0 ? 0 : row[i - 1]])), [8, length, 1]);
    const history = await model.fit(x, y, { epochs: 30, batchSize: 8, verbose: 0 });
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).toBeLessThan(0.6 * losses[0]);
    const before = tf.memory().numTensors;
    await model.fit(x, y, { epochs: 1, batchSize: 8, verbose: 0 });
    (model.predict(x) as tf.Tensor).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('saves and loads in Node without tfjs-node; predictions identical after reload', async () => {
    const length = 24;
    for (const [name, layer] of [
      ['lsh', lshSelfAttention({ numHeads: HEADS, nHashes: 3, chunkLength: 8, nBuckets: [2, 4], causal: true, useBias: true, seed: 11 })],
      ['full', fullSelfAttention({ numHeads: HEADS, headDim: 5, seed: 12 })],
    ] as const) {
      const model = attentionModel(layer, null, true);
      const dir = join(tmp, name);
      await model.save(fileSystem(dir));
      const loaded = await tf.loadLayersModel(fileSystem(dir));
      const reloadedLayer = loaded.layers[loaded.layers.length - 1];
      expect(reloadedLayer.getClassName()).toBe(layer.getClassName());
      expect(reloadedLayer.getConfig()).toEqual(layer.getConfig());
      tf.tidy(() => {
        const x = randomTensor([2, length, M], 13);
        const mask = tf.tensor2d([Array.from({ length }, () => 1), Array.from({ length }, (_, i) => (i < 19 ? 1 : 0))]);
        const a = (model.predict([x, mask]) as tf.Tensor).dataSync();
        const b = (loaded.predict([x, mask]) as tf.Tensor).dataSync();
        expect(maxAbsDiff(a, b)).toBe(0);
      });
      model.dispose();
      loaded.dispose();
    }
    await expect(tf.loadLayersModel(fileSystem(join(tmp, 'nothing')))).rejects.toThrow(/fileSystem: no model at .*model\.json/);
  });

  it('is reproducible given the seed; deterministic in inference, fresh rotations in training', () => {
    const make = () => attentionModel(lshSelfAttention({ numHeads: HEADS, nHashes: 1, chunkLength: 4, nBuckets: 8, fullAttentionThreshold: 0, seed: 21 }), 16, false);
    const [m1, m2] = [make(), make()];
    tf.tidy(() => {
      const x = randomTensor([1, 16, M], 22);
      const a = (m1.predict(x) as tf.Tensor).dataSync();
      expect(maxAbsDiff(a, (m2.predict(x) as tf.Tensor).dataSync())).toBe(0);
      expect(maxAbsDiff(a, (m1.predict(x) as tf.Tensor).dataSync())).toBe(0);
      const layer = m1.layers[1] as LSHSelfAttention;
      const t1 = layer.apply(x, { training: true }) as tf.Tensor;
      const t2 = layer.apply(x, { training: true }) as tf.Tensor;
      expect(maxAbsDiff(t1.dataSync(), t2.dataSync())).toBeGreaterThan(1e-4);
    });
    m1.dispose();
    m2.dispose();
  });

  it('leaks no tensors in predict', () => {
    const model = attentionModel(lshSelfAttention({ numHeads: HEADS, nHashes: 2, chunkLength: 8, seed: 1 }), null, true);
    const x = randomTensor([2, 21, M], 1);
    const mask = tf.ones([2, 21]);
    // (Not inside tf.tidy: tfjs-layers' predict itself leaks a tensor there, with any layer.)
    (model.predict([x, mask]) as tf.Tensor).dispose(); // builds
    const before = tf.memory().numTensors;
    (model.predict([x, mask]) as tf.Tensor).dispose();
    (model.apply([x, mask], { training: true }) as tf.Tensor).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(mask.isDisposed).toBe(false); // the caller's mask survives the model's mask handling
    tf.dispose([x, mask]);
    model.dispose();
  });

  it.each<[string, () => unknown, RegExp]>([
    ['odd nBuckets', () => lshSelfAttention({ nBuckets: 5 }), /LSHSelfAttention: nBuckets must be even.*got 5/],
    ['zero heads', () => lshSelfAttention({ numHeads: 0 }), /LSHSelfAttention: numHeads must be a positive integer, got 0/],
    ['bad chunkLength', () => lshSelfAttention({ chunkLength: 2.5 }), /LSHSelfAttention: chunkLength must be a positive integer, got 2.5/],
    ['bad dropout', () => fullSelfAttention({ dropout: -0.1 }), /FullSelfAttention: dropout must be a number in \[0, 1\), got -0.1/],
    ['bad nHashes', () => lshSelfAttention({ nHashes: 0 }), /LSHSelfAttention: nHashes must be a positive integer, got 0/],
    ['rank-2 input', () => tf.sequential({ layers: [lshSelfAttention({ inputShape: [8] })] }), /LSHSelfAttention: input must have shape \[B, T, M\] with M known, got \[null, 8\]/],
    ['more heads than model size', () => tf.sequential({ layers: [lshSelfAttention({ numHeads: 16, inputShape: [4, 8] })] }), /numHeads 16 is larger than the model size 8/],
  ])('errors: %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});
