/**
 * The layers' weight arguments, taken as tf.layers.dense takes them
 * (kernelInitializer, biasInitializer, kernelRegularizer, biasRegularizer;
 * embeddingsInitializer/Regularizer on the position embeddings): the
 * initializers are used, the defaults are unchanged, regularizers add their
 * penalty to the training loss and its gradient (through a reversible stack
 * too), config and save/load keep them, bad values are refused. Also: one
 * useBias default (true) across the layers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import {
  AxialPositionEmbedding,
  ChunkedFeedForward,
  FullSelfAttention,
  LSHSelfAttention,
  PositionEmbedding,
  ReversibleStack,
  attentionLayers,
  axialPositionEmbedding,
  chunkedFeedForward,
  fullSelfAttention,
  lshSelfAttention,
  positionEmbedding,
  reformerLM,
  reversibleStack,
  type Initializer,
  type Regularizer,
} from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { initializerSeed } from '../src/random.js';
import { describeBackends, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';

const M = 8;
const T = 8;
const tmp = mkdtempSync(join(tmpdir(), 'lsh-layer-args-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A functional model x [B, T, M] → layers in order. */
function chain(layers: tf.layers.Layer[], length: number | null = T): tf.LayersModel {
  const x = tf.input({ shape: [length, M] });
  let y: tf.SymbolicTensor = x;
  for (const layer of layers) y = layer.apply(y) as tf.SymbolicTensor;
  return tf.model({ inputs: x, outputs: y });
}

/** Σ over the regularizer penalties a model adds to its training loss. */
function penalty(model: tf.LayersModel): number {
  return tf.tidy(() => {
    const losses = model.calculateLosses();
    return losses.length === 0 ? 0 : tf.addN(losses).dataSync()[0];
  });
}

/** Σ rate·w² over the given weights. */
function l2Of(weights: tf.LayerVariable[], rate: number): number {
  return weights.reduce((sum, w) => sum + rate * Array.from(w.read().dataSync()).reduce((s, v) => s + v * v, 0), 0);
}

const isKernel = (w: tf.LayerVariable): boolean => /kernel$/.test(w.originalName);

describeBackends('layer weight arguments', () => {
  it.each([
    ['LSHSelfAttention', () => lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, kernelInitializer: 'zeros', biasInitializer: 'ones', seed: 1 })],
    ['FullSelfAttention', () => fullSelfAttention({ numHeads: 2, kernelInitializer: 'zeros', biasInitializer: 'ones', seed: 1 })],
  ] as const)('%s: kernels "zeros" and biases "ones" make every output exactly 1 (the output bias)', (_name, make) => {
    const model = chain([make()]);
    tf.tidy(() => expectTensorsClose(model.predict(randomTensor([2, T, M], 3)) as tf.Tensor, tf.ones([2, T, M]), 1e-6));
    model.dispose();
  });

  it('ChunkedFeedForward: kernels "ones", relu, no bias: y = U · relu(Σ x) at every output', () => {
    const units = 3;
    const model = chain([chunkedFeedForward({ units, chunkLength: 3, kernelInitializer: 'ones', useBias: false, seed: 1 })]);
    tf.tidy(() => {
      const x = randomTensor([2, T, M], 4);
      const rows = tf.relu(tf.sum(x, -1, true)); // [2, T, 1]
      expectTensorsClose(model.predict(x) as tf.Tensor, tf.mul(tf.tile(rows, [1, 1, M]), units), 1e-4);
    });
    model.dispose();
  });

  it.each([
    ['PositionEmbedding', () => positionEmbedding({ maxLength: T, embeddingsInitializer: 'ones' }), 1],
    ['AxialPositionEmbedding (sum)', () => axialPositionEmbedding({ axialShape: [2, 4], combine: 'sum', embeddingsInitializer: 'ones' }), 2],
    ['AxialPositionEmbedding (concat)', () => axialPositionEmbedding({ axialShape: [2, 4], embeddingsInitializer: 'ones' }), 1],
  ] as const)('%s: embeddingsInitializer "ones" adds %i to every input', (_name, make, added) => {
    const model = chain([make()]);
    tf.tidy(() => {
      const x = randomTensor([2, T, M], 5);
      expectTensorsClose(model.predict(x) as tf.Tensor, tf.add(x, added), 1e-6);
    });
    model.dispose();
  });

  it('without the new arguments the weights are the seeded defaults as before (glorotUniform / N(0, 0.02²) with initializerSeed(seed, salt), zero biases)', () => {
    const attention = lshSelfAttention({ numHeads: 2, chunkLength: 4, seed: 5 });
    const feedForward = chunkedFeedForward({ units: 6, seed: 6 });
    const positions = positionEmbedding({ maxLength: T, seed: 7 });
    const model = chain([positions, attention, feedForward]);
    tf.tidy(() => {
      const glorot = (seed: number, salt: number, shape: number[]) =>
        tf.initializers.glorotUniform({ seed: initializerSeed(seed, salt) }).apply(shape);
      const [qk, v, out, qkBias, vBias, outBias] = attention.getWeights();
      expectTensorsClose(qk, glorot(5, 1, [M, M]), 0);
      expectTensorsClose(v, glorot(5, 2, [M, M]), 0);
      expectTensorsClose(out, glorot(5, 3, [M, M]), 0);
      for (const bias of [qkBias, vBias, outBias]) expectTensorsClose(bias, tf.zeros([M]), 0);
      const [hidden, outFF, hiddenBias, outBiasFF] = feedForward.getWeights();
      expectTensorsClose(hidden, glorot(6, 1, [M, 6]), 0);
      expectTensorsClose(outFF, glorot(6, 2, [6, M]), 0);
      expectTensorsClose(hiddenBias, tf.zeros([6]), 0);
      expectTensorsClose(outBiasFF, tf.zeros([M]), 0);
      const normal = tf.initializers.randomNormal({ mean: 0, stddev: 0.02, seed: initializerSeed(7, 1) }).apply([T, M]);
      expectTensorsClose(positions.getWeights()[0], normal, 0);
    });
    model.dispose();
  });

  it('a seeded initializer instance: reproducible, and a different draw per kernel (QK ≠ V)', () => {
    const make = () => fullSelfAttention({ numHeads: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: 9 }), seed: 1 });
    const [a, b] = [make(), make()];
    const models = [chain([a]), chain([b])];
    const [qkA, vA] = a.getWeights();
    const [qkB, vB] = b.getWeights();
    expect(maxAbsDiff(qkA.dataSync(), qkB.dataSync())).toBe(0);
    expect(maxAbsDiff(vA.dataSync(), vB.dataSync())).toBe(0);
    expect(maxAbsDiff(qkA.dataSync(), vA.dataSync())).toBeGreaterThan(0.1);
    // Glorot-uniform values: |w| ≤ √(6 / (fanIn + fanOut)).
    expect(Math.max(...Array.from(qkA.dataSync(), Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / (2 * M)));
    models.forEach((m) => m.dispose());
  });

  it('kernelRegularizer l2 and biasRegularizer l1: layer.losses holds one penalty per weight, of the expected value', () => {
    const attention = lshSelfAttention({
      numHeads: 2,
      chunkLength: 4,
      biasInitializer: 'ones',
      kernelRegularizer: tf.regularizers.l2({ l2: 0.1 }),
      biasRegularizer: tf.regularizers.l1({ l1: 0.01 }),
      seed: 2,
    });
    const model = chain([attention]);
    expect(attention.losses).toHaveLength(6);
    const kernels = attention.weights.filter(isKernel);
    expect(kernels).toHaveLength(3);
    // l1 of the biases: 0.01 · (M + M + M) ones.
    expect(penalty(model)).toBeCloseTo(l2Of(kernels, 0.1) + 0.01 * 3 * M, 4);
    model.dispose();
  });

  it.each([
    [
      'an attention layer and a feed-forward',
      (regularizer?: Regularizer) =>
        chain([
          lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, kernelRegularizer: regularizer, seed: 3 }),
          chunkedFeedForward({ units: 6, kernelRegularizer: regularizer, seed: 4 }),
        ]),
    ],
    [
      'a reversible stack (the penalty is outside its custom gradient)',
      (regularizer?: Regularizer) =>
        chain([
          reversibleStack({
            blocks: [0, 1].map((i) => ({
              attention: lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, causal: true, kernelRegularizer: regularizer, seed: 10 + i }),
              feedForward: chunkedFeedForward({ units: 6, chunkLength: 4, kernelRegularizer: regularizer, seed: 20 + i }),
            })),
            combine: 'mean',
            seed: 1,
          }),
        ]),
    ],
  ] as const)('training %s: l2(λ) adds λ·Σw² to the loss and 2λ·w to the gradient', async (_name, make) => {
    const rate = 0.05;
    const learningRate = 0.1;
    const plain = make();
    const regularized = make(tf.regularizers.l2({ l2: rate }));
    const kernels = regularized.weights.filter(isKernel);
    expect(kernels.length).toBeGreaterThanOrEqual(5);
    const expectedPenalty = l2Of(kernels, rate);
    expect(penalty(regularized)).toBeCloseTo(expectedPenalty, 4);
    expect(penalty(plain)).toBe(0);
    const before = regularized.weights.map((w) => tf.clone(w.read()));
    const x = randomTensor([2, T, M], 7);
    const y = randomTensor([2, T, M], 8);
    const fitOnce = async (model: tf.LayersModel): Promise<number> => {
      model.compile({ optimizer: tf.train.sgd(learningRate), loss: 'meanSquaredError' });
      const history = await model.fit(x, y, { epochs: 1, batchSize: 2, shuffle: false, verbose: 0 });
      return history.history.loss[0] as number;
    };
    const lossPlain = await fitOnce(plain);
    const lossRegularized = await fitOnce(regularized);
    // The same initial weights and training rotations: the losses differ by the penalty alone.
    expect(lossRegularized - lossPlain).toBeCloseTo(expectedPenalty, 4);
    // One SGD step: w_regularized − w_plain = −lr · 2λ · w₀ for kernels, 0 for the rest.
    tf.tidy(() => {
      regularized.weights.forEach((w, i) => {
        const shift = tf.sub(w.read(), plain.weights[i].read());
        const expected = isKernel(w) ? tf.mul(before[i], -learningRate * 2 * rate) : tf.zerosLike(before[i]);
        expectTensorsClose(shift, expected, 1e-5);
      });
    });
    tf.dispose([...before, x, y]);
    plain.dispose();
    regularized.dispose();
  });

  it('reformerLM passes kernelInitializer and the regularizers to every block and the output dense; its attention has no biases', () => {
    const make = (extra: object) =>
      reformerLM({ vocabSize: 5, maxLength: 8, modelSize: 8, numLayers: 2, numHeads: 2, chunkLength: 4, seed: 3, ...extra });
    const model = make({ kernelRegularizer: 'l2', biasRegularizer: tf.regularizers.l1({ l1: 0.5 }) });
    const kernels = model.weights.filter(isKernel);
    expect(kernels).toHaveLength(2 * (3 + 2) + 1); // per block QK, V, out + hidden, out; the output dense
    // l2 by name: rate 0.01. Biases (zeros) add 0.
    expect(penalty(model)).toBeCloseTo(l2Of(kernels, 0.01), 4);
    for (const layer of attentionLayers(model)) expect(layer.useBias).toBe(false);
    const stack = model.layers.find((layer) => layer instanceof ReversibleStack) as ReversibleStack;
    for (const block of stack.blocks) expect(block.feedForward.useBias).toBe(true);
    model.dispose();

    const seeded = make({ kernelInitializer: tf.initializers.glorotNormal({ seed: 4 }) });
    const again = make({ kernelInitializer: tf.initializers.glorotNormal({ seed: 4 }) });
    const [block0, block1] = attentionLayers(seeded);
    const qk = (layer: tf.layers.Layer) => layer.getWeights()[0].dataSync();
    expect(maxAbsDiff(qk(block0), qk(block1))).toBeGreaterThan(0.1); // each block its own draw
    expect(maxAbsDiff(qk(block0), qk(attentionLayers(again)[0]))).toBe(0);
    seeded.dispose();
    again.dispose();
  });

  it('getConfig → fromConfig keeps every weight argument (names, instances, {className, config}): same config, weights, penalties', () => {
    const cases: Array<[tf.serialization.SerializableConstructor<tf.layers.Layer>, () => tf.layers.Layer]> = [
      [
        LSHSelfAttention,
        () =>
          lshSelfAttention({
            numHeads: 2,
            chunkLength: 4,
            kernelInitializer: tf.initializers.heNormal({ seed: 3 }),
            biasInitializer: { className: 'Constant', config: { value: 0.5 } } as unknown as Initializer,
            kernelRegularizer: 'l2',
            biasRegularizer: tf.regularizers.l1({ l1: 0.001 }),
            seed: 1,
          }),
      ],
      [FullSelfAttention, () => fullSelfAttention({ numHeads: 2, kernelInitializer: 'zeros', biasInitializer: 'ones', kernelRegularizer: 'l1l2', seed: 1 })],
      [
        ChunkedFeedForward,
        () =>
          chunkedFeedForward({
            units: 4,
            kernelInitializer: tf.initializers.randomUniform({ minval: -0.1, maxval: 0.1, seed: 4 }),
            biasInitializer: tf.initializers.constant({ value: 0.2 }),
            biasRegularizer: 'l2',
            seed: 2,
          }),
      ],
      [
        PositionEmbedding,
        () => positionEmbedding({ maxLength: T, embeddingsInitializer: tf.initializers.truncatedNormal({ stddev: 0.1, seed: 2 }), embeddingsRegularizer: 'l1' }),
      ],
      [AxialPositionEmbedding, () => axialPositionEmbedding({ axialShape: [2, 4], stddev: 0.3, embeddingsRegularizer: tf.regularizers.l2({ l2: 0.2 }), seed: 3 })],
    ];
    for (const [cls, make] of cases) {
      const layer = make();
      const config = JSON.parse(JSON.stringify(layer.getConfig())) as tf.serialization.ConfigDict;
      const copy = (cls as unknown as typeof tf.layers.Layer).fromConfig(cls, config);
      expect(copy.getConfig()).toEqual(layer.getConfig());
      const models = [chain([layer]), chain([copy])];
      layer.getWeights().forEach((w, i) => expect(maxAbsDiff(w.dataSync(), copy.getWeights()[i].dataSync())).toBe(0));
      expect(layer.losses.length).toBeGreaterThan(0);
      expect(penalty(models[1])).toBeCloseTo(penalty(models[0]), 6);
      models.forEach((m) => m.dispose());
    }
  });

  it('save/load with fileSystem keeps the weight arguments: same configs, penalties and predictions', async () => {
    const model = chain([
      positionEmbedding({ maxLength: T, embeddingsInitializer: 'randomNormal', embeddingsRegularizer: 'l2' }),
      lshSelfAttention({ numHeads: 2, chunkLength: 4, kernelInitializer: 'heUniform', kernelRegularizer: tf.regularizers.l2({ l2: 0.03 }), seed: 1 }),
      reversibleStack({
        blocks: [
          {
            attention: fullSelfAttention({ numHeads: 2, biasRegularizer: 'l1', biasInitializer: 'ones', seed: 2 }),
            feedForward: chunkedFeedForward({ units: 4, kernelRegularizer: tf.regularizers.l1l2({ l1: 0.01, l2: 0.02 }), seed: 3 }),
          },
        ],
        combine: 'mean',
        seed: 4,
      }),
    ]);
    const dir = join(tmp, 'model');
    await model.save(fileSystem(dir));
    const loaded = await tf.loadLayersModel(fileSystem(dir));
    // (Saving writes an unset initializer seed as null.)
    const configs = (m: tf.LayersModel) => JSON.parse(JSON.stringify(m.layers.map((layer) => layer.getConfig()), (_k, v: unknown) => v ?? null)) as unknown;
    expect(configs(loaded)).toEqual(configs(model));
    expect(penalty(model)).toBeGreaterThan(0.1);
    expect(penalty(loaded)).toBeCloseTo(penalty(model), 5);
    tf.tidy(() => {
      const x = randomTensor([2, T, M], 9);
      expect(maxAbsDiff((model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync())).toBe(0);
    });
    model.dispose();
    loaded.dispose();
  });

  it('useBias defaults to true in every layer with projections (as tf.layers.dense)', () => {
    expect(lshSelfAttention().useBias).toBe(true);
    expect(fullSelfAttention().useBias).toBe(true);
    expect(chunkedFeedForward().useBias).toBe(true);
    const attention = fullSelfAttention({ numHeads: 2, seed: 1 });
    const model = chain([attention]);
    expect(attention.weights.map((w) => w.originalName.split('/').slice(-2).join('/'))).toEqual(['qk/kernel', 'v/kernel', 'out/kernel', 'qk/bias', 'v/bias', 'out/bias']);
    model.dispose();
  });

  it.each<[string, () => unknown, RegExp]>([
    ['an unknown initializer name', () => lshSelfAttention({ kernelInitializer: 'nope' }), /LSHSelfAttention: kernelInitializer must be an initializer: a name \('glorotUniform', .*\), a tf\.initializers instance or its \{className, config\}; got 'nope'/],
    ['a regularizer name as initializer', () => fullSelfAttention({ biasInitializer: 'l2' }), /FullSelfAttention: biasInitializer must be an initializer.*got 'l2'/],
    ['a regularizer instance as initializer', () => chunkedFeedForward({ kernelInitializer: tf.regularizers.l2() as unknown as Initializer }), /ChunkedFeedForward: kernelInitializer must be an initializer.*got an instance of L1L2/],
    ['an initializer name as regularizer', () => lshSelfAttention({ kernelRegularizer: 'glorotUniform' }), /LSHSelfAttention: kernelRegularizer must be a regularizer: a name \('l1', 'l2', 'l1l2'\).*got 'glorotUniform'/],
    ['an unknown className', () => chunkedFeedForward({ biasRegularizer: { className: 'Nope', config: {} } as unknown as Regularizer }), /ChunkedFeedForward: biasRegularizer must be a regularizer.*got \{"className":"Nope","config":\{\}\}/],
    ['a number', () => positionEmbedding({ maxLength: 4, embeddingsInitializer: 42 as unknown as string }), /PositionEmbedding: embeddingsInitializer must be an initializer.*got 42/],
    ['stddev with an embeddingsInitializer', () => axialPositionEmbedding({ axialShape: [2, 2], stddev: 0.1, embeddingsInitializer: 'ones' }), /AxialPositionEmbedding: stddev applies only to the default initializer, but an embeddingsInitializer is given; remove stddev/],
    ['reformerLM', () => reformerLM({ vocabSize: 4, maxLength: 8, kernelRegularizer: 'nope' }), /reformerLM: kernelRegularizer must be a regularizer.*got 'nope'/],
  ])('errors: %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});
