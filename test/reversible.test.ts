/**
 * The reversible stack: its gradients (input and every weight) equal those
 * of the same blocks with ordinary backpropagation, with LSH attention and
 * dropout in training; training with model.fit; tape memory independent of
 * depth; save/load; leaks and errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import {
  ChunkedFeedForward,
  ReversibleStack,
  chunkedFeedForward,
  fullSelfAttention,
  lshSelfAttention,
  reversibleStack,
  type ReversibleCombine,
} from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { describeBackends, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';

const B = 2;
const T = 16;
const M = 8;
const tmp = mkdtempSync(join(tmpdir(), 'lsh-reversible-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface StackOptions {
  depth?: number;
  dropout?: number;
  combine?: ReversibleCombine;
  reversible?: boolean;
  seed?: number;
}

/**
 * Blocks cycling through LSH (nHashes 2, causal, two chunk lengths) and full
 * attention, with feed-forwards sliced unevenly (5 does not divide 16).
 */
function makeStack({ depth = 3, dropout = 0, combine = 'concat', reversible = true, seed = 7 }: StackOptions = {}): ReversibleStack {
  const blocks = Array.from({ length: depth }, (_, i) => ({
    attention:
      i % 3 === 1
        ? fullSelfAttention({ numHeads: 2, causal: true, dropout, useBias: true, seed: 10 + i })
        : lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: i % 3 === 0 ? 4 : 8, causal: true, dropout, fullAttentionThreshold: 0, seed: 10 + i }),
    feedForward: chunkedFeedForward({ units: 16, chunkLength: i % 2 === 0 ? 5 : undefined, dropout, activation: i % 2 === 0 ? 'relu' : 'gelu', seed: 20 + i }),
  }));
  return reversibleStack({ blocks, combine, reversible, seed });
}

/** Builds the stack and gives every weight (norms too) seeded random values. */
function buildWithRandomWeights(stack: ReversibleStack, salt = 0): void {
  stack.apply(tf.input({ batchShape: [null, null, M] }));
  tf.tidy(() => stack.setWeights(stack.getWeights().map((w, i) => tf.add(randomTensor(w.shape, 100 + salt + i, 0.4), /gamma/.test(stack.weights[i].originalName) ? 1 : 0))));
}

/** Value and gradients of sum(stack(x) · w) with respect to x and every trainable weight. */
function valueAndGrads(stack: ReversibleStack, x: tf.Tensor, w: tf.Tensor, options: { training: boolean; callSeed: number; reversible: boolean; mask?: tf.Tensor2D }) {
  const variables = stack.trainableWeights.map((v) => v.read());
  return tf.valueAndGrads((input: tf.Tensor) => tf.sum(tf.mul(stack.forward(input as tf.Tensor3D, options), w)) as tf.Scalar)([x, ...variables]);
}

/** Bytes of the tensors the gradient tape keeps for backpropagation through f(x). */
function tapeBytes(f: (input: tf.Tensor) => tf.Tensor, x: tf.Tensor): number {
  let bytes = 0;
  const grads = tf.grads((input: tf.Tensor) => {
    const y = tf.sum(f(input)) as tf.Scalar;
    for (const node of tf.engine().state.activeTape) for (const t of node.saved ?? []) bytes += 4 * t.size;
    return y;
  })([x]);
  tf.dispose(grads);
  return bytes;
}

describeBackends('reversible stack', () => {
  it.each<[string, boolean, number, ReversibleCombine, boolean]>([
    ['inference, no dropout', false, 0, 'concat', false],
    ['training, dropout 0.2', true, 0.2, 'concat', false],
    ['training, dropout 0.2, combine mean', true, 0.2, 'mean', false],
    ['training, dropout 0.1, padding mask', true, 0.1, 'concat', true],
  ])('%s: gradients (input and every weight) equal those without reversibility', (_name, training, dropout, combine, padded) => {
    const stack = makeStack({ dropout, combine });
    buildWithRandomWeights(stack);
    tf.tidy(() => {
      const x = randomTensor([B, T, M], 1);
      const w = randomTensor([B, T, combine === 'concat' ? 2 * M : M], 2);
      const mask = padded ? tf.tensor2d([Array.from({ length: T }, () => 1), Array.from({ length: T }, (_, i) => (i < T - 5 ? 1 : 0))]) : undefined;
      const options = { training, callSeed: 1234, mask };
      const reversible = valueAndGrads(stack, x, w, { ...options, reversible: true });
      const plain = valueAndGrads(stack, x, w, { ...options, reversible: false });
      expect(reversible.grads.length).toBe(1 + stack.trainableWeights.length);
      expectTensorsClose(reversible.value, plain.value, 1e-4);
      reversible.grads.forEach((g, i) => {
        const what = i === 0 ? 'x' : stack.trainableWeights[i - 1].originalName;
        try {
          expectTensorsClose(g, plain.grads[i], 1e-4);
        } catch (error) {
          throw new Error(`gradient of ${what}: ${(error as Error).message}`);
        }
        // Every gradient is exercised: none is trivially zero.
        expect(tf.max(tf.abs(g)).dataSync()[0], what).toBeGreaterThan(1e-5);
      });
    });
    stack.dispose();
  });

  it('the call seed matters: other seeds give other outputs and gradients, the same seed the same', () => {
    // So the equivalence above would catch a recomputation with other rotations or masks.
    const stack = makeStack({ dropout: 0.2 });
    buildWithRandomWeights(stack);
    tf.tidy(() => {
      const x = randomTensor([B, T, M], 3);
      const w = randomTensor([B, T, 2 * M], 4);
      const a = valueAndGrads(stack, x, w, { training: true, callSeed: 1, reversible: true });
      const again = valueAndGrads(stack, x, w, { training: true, callSeed: 1, reversible: true });
      const other = valueAndGrads(stack, x, w, { training: true, callSeed: 2, reversible: false });
      expect(maxAbsDiff(a.grads[0].dataSync(), again.grads[0].dataSync())).toBe(0);
      expect(maxAbsDiff(a.grads[0].dataSync(), other.grads[0].dataSync())).toBeGreaterThan(1e-3);
      // Without dropout, in training, the LSH rotations alone differ between seeds.
      const noDropout = makeStack({ dropout: 0 });
      buildWithRandomWeights(noDropout);
      const y1 = noDropout.forward(x as tf.Tensor3D, { training: true, callSeed: 1 });
      const y2 = noDropout.forward(x as tf.Tensor3D, { training: true, callSeed: 2 });
      expect(maxAbsDiff(y1.dataSync(), y2.dataSync())).toBeGreaterThan(1e-4);
      noDropout.dispose();
    });
    stack.dispose();
  });

  it('tape memory does not grow with depth when reversible, and does without', () => {
    const bytes = (depth: number, reversible: boolean): number => {
      const stack = makeStack({ depth, reversible, dropout: 0.1 });
      buildWithRandomWeights(stack);
      const x = randomTensor([B, T, M], 5);
      const result = tapeBytes((input) => stack.apply(input, { training: true }) as tf.Tensor, x);
      x.dispose();
      stack.dispose();
      return result;
    };
    const [reversible1, reversible4] = [bytes(1, true), bytes(4, true)];
    const [plain1, plain4] = [bytes(1, false), bytes(4, false)];
    expect(reversible4).toBe(reversible1);
    expect(plain4).toBeGreaterThan(3 * plain1);
    expect(reversible4).toBeLessThan(plain1);
  });

  it('trains with model.fit (with a propagated padding mask): one step updates the weights exactly as the non-reversible stack does', async () => {
    const make = (reversible: boolean): tf.LayersModel => {
      const tokens = tf.input({ shape: [T], dtype: 'int32' });
      const embedded = tf.layers
        .embedding({ inputDim: 6, outputDim: M, maskZero: true, embeddingsInitializer: tf.initializers.randomNormal({ seed: 1 }) })
        .apply(tokens) as tf.SymbolicTensor;
      const stack = makeStack({ depth: 2, dropout: 0.1, reversible, combine: 'mean' });
      const out = tf.layers
        .dense({ units: 6, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) })
        .apply(stack.apply(embedded)) as tf.SymbolicTensor;
      const model = tf.model({ inputs: tokens, outputs: out });
      model.compile({ optimizer: tf.train.sgd(0.5), loss: 'sparseCategoricalCrossentropy' });
      return model;
    };
    const [reversible, plain] = [make(true), make(false)];
    plain.setWeights(reversible.getWeights());
    // Token 0 is padding (masked): rows 1 and 3 end in padding.
    const rows = Array.from({ length: 4 }, (_, r) => Array.from({ length: T }, (_, i) => (r % 2 === 1 && i >= T - 3 * r ? 0 : 1 + ((r + i * i) % 5))));
    const x = tf.tensor2d(rows, [4, T], 'int32');
    const y = tf.tensor3d(rows.map((row) => row.map((_, i) => [i === 0 ? 0 : row[i - 1]])), [4, T, 1]);
    // (getWeights returns the variables themselves, which training updates in place: copy them.)
    const weightsOf = (model: tf.LayersModel): tf.Tensor[] => model.getWeights().map((w) => tf.clone(w));
    const before = weightsOf(reversible);
    await reversible.fit(x, y, { epochs: 1, batchSize: 4, verbose: 0, shuffle: false });
    await plain.fit(x, y, { epochs: 1, batchSize: 4, verbose: 0, shuffle: false });
    const after = weightsOf(reversible);
    const expected = weightsOf(plain);
    // Every weight moved (the stack's included), and moved as it does without reversibility.
    after.forEach((w, i) => {
      expect(maxAbsDiff(w.dataSync(), before[i].dataSync()), reversible.weights[i].originalName).toBeGreaterThan(1e-6);
      expectTensorsClose(w, expected[i], 1e-4);
    });
    // Loss falls over more epochs (deterministic: every seed is fixed and nothing
    // is shuffled), and no tensor leaks from a training step.
    reversible.compile({ optimizer: tf.train.adam(0.03), loss: 'sparseCategoricalCrossentropy' });
    const history = await reversible.fit(x, y, { epochs: 20, batchSize: 4, verbose: 0, shuffle: false });
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).toBeLessThan(0.8 * losses[0]);
    const count = tf.memory().numTensors;
    await reversible.fit(x, y, { epochs: 1, batchSize: 4, verbose: 0 });
    expect(tf.memory().numTensors).toBe(count);
    tf.dispose([x, y, ...before, ...after, ...expected]);
    reversible.dispose();
    plain.dispose();
  });

  it('saves and loads in Node; identical outputs, blocks and weight names', async () => {
    const input = tf.input({ shape: [null, M] });
    const stack = makeStack({ dropout: 0.1 });
    const model = tf.model({ inputs: input, outputs: stack.apply(input) as tf.SymbolicTensor });
    tf.tidy(() => model.setWeights(model.getWeights().map((w, i) => tf.add(randomTensor(w.shape, 200 + i, 0.3), 1))));
    const dir = join(tmp, 'stack');
    await model.save(fileSystem(dir));
    const loaded = await tf.loadLayersModel(fileSystem(dir));
    const reloaded = loaded.layers[1] as ReversibleStack;
    expect(reloaded).toBeInstanceOf(ReversibleStack);
    expect(reloaded.getConfig()).toEqual(stack.getConfig());
    expect(reloaded.weights.map((w) => w.originalName)).toEqual(stack.weights.map((w) => w.originalName));
    expect(reloaded.blocks[2].feedForward).toBeInstanceOf(ChunkedFeedForward);
    tf.tidy(() => {
      const x = randomTensor([B, 13, M], 6);
      expect(maxAbsDiff((model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync())).toBe(0);
    });
    model.dispose();
    loaded.dispose();
  });

  it('a frozen stack passes gradients to its input only, the same as without reversibility', () => {
    const stack = makeStack({ depth: 2, dropout: 0.1 });
    buildWithRandomWeights(stack);
    stack.trainable = false;
    expect(stack.trainableWeights).toEqual([]);
    expect(stack.nonTrainableWeights.length).toBe(stack.weights.length);
    expect(stack.blocks.every((block) => !block.attention.trainable && !block.feedForward.trainable)).toBe(true);
    tf.tidy(() => {
      const x = randomTensor([B, T, M], 9);
      const w = randomTensor([B, T, 2 * M], 10);
      const reversible = valueAndGrads(stack, x, w, { training: true, callSeed: 5, reversible: true });
      const plain = valueAndGrads(stack, x, w, { training: true, callSeed: 5, reversible: false });
      expect(reversible.grads.length).toBe(1);
      expectTensorsClose(reversible.grads[0], plain.grads[0], 1e-4);
    });
    stack.dispose();
  });

  it('leaks no tensors in inference or a gradient computation', () => {
    const stack = makeStack({ dropout: 0.1 });
    buildWithRandomWeights(stack);
    const x = randomTensor([B, T, M], 7);
    const w = randomTensor([B, T, 2 * M], 8);
    const before = tf.memory().numTensors;
    (stack.apply(x) as tf.Tensor).dispose();
    (stack.apply(x, { training: true }) as tf.Tensor).dispose();
    const { value, grads } = valueAndGrads(stack, x, w, { training: true, callSeed: 3, reversible: true });
    tf.dispose([value, ...grads]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w]);
    stack.dispose();
  });

  it.each<[string, () => unknown, RegExp]>([
    ['no blocks', () => reversibleStack({ blocks: [] }), /ReversibleStack: blocks must be a non-empty array/],
    [
      'a layer twice',
      () => {
        const attention = lshSelfAttention({ seed: 1 });
        return reversibleStack({
          blocks: [
            { attention, feedForward: chunkedFeedForward() },
            { attention, feedForward: chunkedFeedForward() },
          ],
        });
      },
      /ReversibleStack: layer .* appears twice; give every block its own layers/,
    ],
    [
      'not an attention layer',
      () => reversibleStack({ blocks: [{ attention: chunkedFeedForward() as never, feedForward: chunkedFeedForward() }] }),
      /ReversibleStack: blocks\[0\]\.attention must be an LSHSelfAttention or FullSelfAttention layer/,
    ],
    ['bad combine', () => makeStack({ combine: 'sum' as ReversibleCombine }), /ReversibleStack: combine must be 'concat' or 'mean', got sum/],
    [
      'rank-2 input',
      () => makeStack().apply(tf.input({ shape: [M] })),
      /ReversibleStack: input must have shape \[B, T, M\] with M known, got \[null, 8\]/,
    ],
  ])('errors: %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});
