/**
 * The chunked feed-forward (the same values, gradients and dropout masks for
 * every slicing) and the position embeddings (learned and axial: values,
 * gradients, save/load, errors).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import {
  AxialPositionEmbedding,
  ChunkedFeedForward,
  PositionEmbedding,
  axialPositionEmbedding,
  chunkedFeedForward,
  positionDropoutScales,
  positionEmbedding,
  type FeedForwardActivation,
} from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { describeBackends, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';

const B = 2;
const T = 16;
const M = 8;
const tmp = mkdtempSync(join(tmpdir(), 'lsh-blocks-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A built layer with seeded random weights (biases too). */
function built<L extends tf.layers.Layer>(layer: L, salt: number): L {
  layer.apply(tf.input({ batchShape: [null, null, M] }));
  tf.tidy(() => layer.setWeights(layer.getWeights().map((w, i) => randomTensor(w.shape, salt + i, 0.5))));
  return layer;
}

/** Value and gradients of sum(f(x) · w) with respect to x and the layer's weights. */
function valueAndGrads(layer: tf.layers.Layer, f: (x: tf.Tensor3D) => tf.Tensor, x: tf.Tensor, w: tf.Tensor) {
  const variables = layer.trainableWeights.map((v) => v.read());
  return tf.valueAndGrads((input: tf.Tensor) => tf.sum(tf.mul(f(input as tf.Tensor3D), w)) as tf.Scalar)([x, ...variables]);
}

/** A one-layer functional model [B, T, M] → layer → [B, T, M]. */
function modelOf(layer: tf.layers.Layer): tf.LayersModel {
  const input = tf.input({ shape: [null, M] });
  return tf.model({ inputs: input, outputs: layer.apply(input) as tf.SymbolicTensor });
}

describeBackends('chunked feed-forward', () => {
  it.each<[number | undefined, FeedForwardActivation, boolean]>([
    [1, 'relu', false],
    [5, 'gelu', false],
    [5, 'relu', true],
    [3, 'gelu', true],
    [64, 'relu', true],
  ])('chunkLength %s, %s, training %s: the same values and gradients as unsliced', (chunkLength, activation, training) => {
    const sliced = built(chunkedFeedForward({ units: 12, chunkLength, activation, dropout: 0.3, seed: 1 }), 10);
    const whole = built(chunkedFeedForward({ units: 12, activation, dropout: 0.3, seed: 1 }), 10);
    tf.tidy(() => {
      const x = randomTensor([B, T, M], 1);
      const w = randomTensor([B, T, M], 2);
      const options = { training, callSeed: 77 };
      const a = valueAndGrads(sliced, (input) => sliced.feedForward(input, options), x, w);
      const b = valueAndGrads(whole, (input) => whole.feedForward(input, options), x, w);
      expectTensorsClose(a.value, b.value, 1e-4);
      a.grads.forEach((g, i) => expectTensorsClose(g, b.grads[i], 1e-5));
      expect(a.grads.length).toBe(5);
      // Dropout is on in training only.
      const inference = whole.feedForward(x as tf.Tensor3D);
      const trained = whole.feedForward(x as tf.Tensor3D, options);
      const differs = maxAbsDiff(inference.dataSync(), trained.dataSync()) > 1e-3;
      expect(differs).toBe(training);
    });
    sliced.dispose();
    whole.dispose();
  });

  it('equals dense → activation → dense computed directly', () => {
    const layer = built(chunkedFeedForward({ units: 6, chunkLength: 4, activation: 'gelu', seed: 2 }), 20);
    tf.tidy(() => {
      const x = randomTensor([B, T, M], 3);
      const [k1, k2, b1, b2] = layer.getWeights();
      const h = tf.add(tf.matMul(tf.reshape(x, [B * T, M]), k1), b1);
      const gelu = tf.mul(tf.mul(h, 0.5), tf.add(tf.tanh(tf.mul(tf.add(h, tf.mul(tf.pow(h, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
      const expected = tf.reshape(tf.add(tf.matMul(gelu, k2), b2), [B, T, M]);
      expectTensorsClose(layer.apply(x) as tf.Tensor, expected, 1e-5);
    });
    layer.dispose();
  });

  it('dropout masks: a function of (seed, row, position, unit), dropping about `rate` of the units', () => {
    const whole = positionDropoutScales(5, [3, 40, 50], 0, 0.25);
    const tail = positionDropoutScales(5, [3, 30, 50], 10, 0.25);
    for (let b = 0; b < 3; b++) {
      for (let t = 10; t < 40; t++) {
        expect(whole.subarray((b * 40 + t) * 50, (b * 40 + t + 1) * 50)).toEqual(tail.subarray((b * 30 + t - 10) * 50, (b * 30 + t - 9) * 50));
      }
    }
    const dropped = whole.filter((s) => s === 0).length / whole.length;
    expect(Math.abs(dropped - 0.25)).toBeLessThan(0.03);
    expect(new Set(whole)).toEqual(new Set([0, 1 / 0.75].map(Math.fround)));
    expect(maxAbsDiff(whole, positionDropoutScales(6, [3, 40, 50], 0, 0.25))).toBeGreaterThan(0);
  });

  it('saves and loads; identical outputs; leaks nothing', async () => {
    const layer = chunkedFeedForward({ units: 10, chunkLength: 3, activation: 'gelu', dropout: 0.1, useBias: false, seed: 3 });
    const model = modelOf(layer);
    await model.save(fileSystem(join(tmp, 'ff')));
    const loaded = await tf.loadLayersModel(fileSystem(join(tmp, 'ff')));
    const reloaded = loaded.layers[1] as ChunkedFeedForward;
    expect(reloaded).toBeInstanceOf(ChunkedFeedForward);
    expect(reloaded.getConfig()).toEqual(layer.getConfig());
    // useBias false survives: the two kernels only, with the saved values.
    expect(reloaded.weights.map((w) => w.originalName.split('/').slice(-2).join('/'))).toEqual(['hidden/kernel', 'out/kernel']);
    reloaded.getWeights().forEach((w, i) => expect(maxAbsDiff(w.dataSync(), layer.getWeights()[i].dataSync())).toBe(0));
    const x = randomTensor([B, 7, M], 4);
    const w = tf.onesLike(x);
    tf.tidy(() => {
      expect(maxAbsDiff((model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync())).toBe(0);
    });
    const before = tf.memory().numTensors;
    (layer.apply(x, { training: true }) as tf.Tensor).dispose();
    const { value, grads } = valueAndGrads(layer, (input) => layer.feedForward(input, { training: true }), x, w);
    tf.dispose([value, ...grads]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w]);
    model.dispose();
    loaded.dispose();
  });

  it.each<[string, () => unknown, RegExp]>([
    ['zero units', () => chunkedFeedForward({ units: 0 }), /ChunkedFeedForward: units must be a positive integer, got 0/],
    ['bad chunkLength', () => chunkedFeedForward({ chunkLength: 2.5 }), /ChunkedFeedForward: chunkLength must be a positive integer, got 2.5/],
    ['bad activation', () => chunkedFeedForward({ activation: 'tanh' as FeedForwardActivation }), /ChunkedFeedForward: activation must be one of relu, gelu, got tanh/],
    ['bad dropout', () => chunkedFeedForward({ dropout: 1 }), /ChunkedFeedForward: dropout must be a number in \[0, 1\), got 1/],
    ['rank-2 input', () => chunkedFeedForward().apply(tf.input({ shape: [M] })), /ChunkedFeedForward: input must have shape \[B, T, M\] with M known, got \[null, 8\]/],
  ])('errors: %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});

describeBackends('position embeddings', () => {
  it('learned: adds row t of the table to position t, for any T ≤ maxLength', () => {
    const layer = positionEmbedding({ maxLength: 20, seed: 1 });
    const model = modelOf(layer);
    tf.tidy(() => {
      const [table] = layer.getWeights();
      expect(table.shape).toEqual([20, M]);
      expect(tf.moments(table).variance.dataSync()[0]).toBeGreaterThan(0);
      for (const length of [1, 13, 20]) {
        const x = randomTensor([B, length, M], length);
        const expected = tf.add(x, tf.slice(table, [0, 0], [length, M]));
        expectTensorsClose(model.predict(x) as tf.Tensor, expected, 1e-6);
      }
      expect(() => model.predict(randomTensor([B, 21, M], 1))).toThrow(
        /PositionEmbedding: the input has 21 positions but the embedding covers 20; make a larger one or feed at most 20 positions/,
      );
    });
    model.dispose();
  });

  it.each<[string, 'concat' | 'sum', [number, number] | undefined]>([
    ['concat, default dims', 'concat', undefined],
    ['concat, dims [3, 5]', 'concat', [3, 5]],
    ['sum', 'sum', undefined],
  ])('axial %s: position t = (t / d2, t mod d2) combines row and column vectors; gradients reach both tables', (_name, combine, axialDims) => {
    const [d1, d2] = [3, 5];
    const layer = built(axialPositionEmbedding({ axialShape: [d1, d2], combine, axialDims, seed: 2 }), 30);
    const length = 13; // < d1·d2: the first 13 positions
    tf.tidy(() => {
      const [rows, columns] = layer.getWeights();
      const [e1, e2] = [rows.shape[1] as number, columns.shape[1] as number];
      expect(combine === 'sum' ? [e1, e2] : e1 + e2).toEqual(combine === 'sum' ? [M, M] : M);
      if (axialDims) expect([e1, e2]).toEqual(axialDims);
      const rowValues = rows.arraySync() as number[][];
      const columnValues = columns.arraySync() as number[][];
      const table = Array.from({ length }, (_, t) => {
        const [r, c] = [rowValues[Math.floor(t / d2)], columnValues[t % d2]];
        return combine === 'concat' ? [...r, ...c] : r.map((v, k) => v + c[k]);
      });
      const x = randomTensor([B, length, M], 5);
      const out = layer.apply(x) as tf.Tensor;
      expectTensorsClose(out, tf.add(x, tf.tensor3d([table])), 1e-6);
      // Gradients of sum(out · w): row i gets Σ over its columns (and the batch), column j over its rows.
      const w = randomTensor([B, length, M], 6);
      const { grads } = valueAndGrads(layer, (input) => layer.apply(input) as tf.Tensor, x, w);
      const wSum = tf.sum(w, 0).arraySync() as number[][]; // [T, M]
      const rowGrad = Array.from({ length: d1 }, () => new Array<number>(e1).fill(0));
      const columnGrad = Array.from({ length: d2 }, () => new Array<number>(e2).fill(0));
      wSum.forEach((g, t) => {
        const [i, j] = [Math.floor(t / d2), t % d2];
        for (let k = 0; k < e1; k++) rowGrad[i][k] += g[k];
        for (let k = 0; k < e2; k++) columnGrad[j][k] += g[combine === 'concat' ? e1 + k : k];
      });
      expectTensorsClose(grads[1], tf.tensor2d(rowGrad), 1e-5);
      expectTensorsClose(grads[2], tf.tensor2d(columnGrad), 1e-5);
    });
    layer.dispose();
  });

  it('both save and load in Node; configs and outputs identical; the mask passes through', async () => {
    for (const [name, layer] of [
      ['learned', positionEmbedding({ maxLength: 12, stddev: 0.5, seed: 3 })],
      ['axial', axialPositionEmbedding({ axialShape: [4, 3], axialDims: [2, 6], stddev: 0.5, seed: 4 })],
      ['axial-sum', axialPositionEmbedding({ axialShape: [2, 6], combine: 'sum', seed: 5 })],
    ] as const) {
      const model = modelOf(layer);
      await model.save(fileSystem(join(tmp, name)));
      const loaded = await tf.loadLayersModel(fileSystem(join(tmp, name)));
      const reloaded = loaded.layers[1];
      expect(reloaded).toBeInstanceOf(layer instanceof PositionEmbedding ? PositionEmbedding : AxialPositionEmbedding);
      expect(reloaded.getConfig()).toEqual(layer.getConfig());
      tf.tidy(() => {
        const x = randomTensor([B, 12, M], 7);
        expect(maxAbsDiff((model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync())).toBe(0);
      });
      model.dispose();
      loaded.dispose();
    }
    tf.tidy(() => {
      const mask = tf.tensor2d([[1, 1, 0]], [1, 3], 'bool');
      expect(positionEmbedding({ maxLength: 4 }).computeMask(tf.zeros([1, 3, M]), mask)).toBe(mask);
    });
  });

  it.each<[string, () => unknown, RegExp]>([
    ['bad maxLength', () => positionEmbedding({ maxLength: 0 }), /PositionEmbedding: maxLength must be a positive integer, got 0/],
    ['bad axialShape', () => axialPositionEmbedding({ axialShape: [4] as unknown as [number, number] }), /AxialPositionEmbedding: axialShape must be two factors \[d1, d2\]/],
    ['zero factor', () => axialPositionEmbedding({ axialShape: [4, 0] }), /AxialPositionEmbedding: axialShape\[1\] must be a positive integer, got 0/],
    [
      'axialDims not summing to M',
      () => axialPositionEmbedding({ axialShape: [2, 2], axialDims: [3, 3] }).apply(tf.input({ shape: [4, M] })),
      /AxialPositionEmbedding: axialDims \[3, 3\] must sum to the model size 8/,
    ],
    ['axialDims with sum', () => axialPositionEmbedding({ axialShape: [2, 2], combine: 'sum', axialDims: [4, 4] }), /axialDims applies only to combine 'concat'/],
    [
      'too long an input',
      () => tf.tidy(() => built(axialPositionEmbedding({ axialShape: [2, 3] }), 1).apply(tf.zeros([1, 7, M])) as tf.Tensor),
      /AxialPositionEmbedding: the input has 7 positions but the embedding covers 6/,
    ],
  ])('errors: %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});
