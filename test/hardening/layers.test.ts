/**
 * The hardening sweep of the layers and models (issue 10, part B): bad layer
 * arguments and bad call inputs for the attention layers, the reversible
 * stack, the chunked feed-forward and the Reformer language model, each
 * refused with who, what and got, leaving no tensor behind; empty batches;
 * memoryLimitBytes and checkFinite through the layers.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  ChunkedFeedForward,
  FullSelfAttention,
  LSHSelfAttention,
  ReversibleStack,
  chunkedFeedForward,
  fullSelfAttention,
  generate,
  lshSelfAttention,
  reformerLM,
  reversibleStack,
  setNHashes,
  type LSHSelfAttentionArgs,
  type ReformerLMArgs,
} from '../../layers/index.js';
import { describeBackends, expectTensorsClose, randomTensor } from '../helpers.js';

const M = 16;

/** Arguments that are wrong, and what the constructor must say. */
const badArgs: Array<[string, () => unknown, RegExp]> = [
  ['LSH nHashes "two" (overflowed the stack)', () => lshSelfAttention({ nHashes: 'two' as unknown as number }), /^LSHSelfAttention: nHashes must be a positive integer, got "two"/],
  ['LSH chunkLength NaN', () => lshSelfAttention({ chunkLength: NaN }), /^LSHSelfAttention: chunkLength must be a positive integer, got NaN/],
  ['LSH numChunksBefore -1', () => lshSelfAttention({ numChunksBefore: -1 }), /^LSHSelfAttention: numChunksBefore must be a non-negative integer, got -1/],
  ['LSH numChunksAfter 0.5', () => lshSelfAttention({ numChunksAfter: 0.5 }), /^LSHSelfAttention: numChunksAfter must be a non-negative integer, got 0\.5/],
  ['LSH nBuckets "8"', () => lshSelfAttention({ nBuckets: '8' as unknown as number }), /^LSHSelfAttention: nBuckets must be even \(each factor an even integer ≥ 2\), got "8"/],
  ['LSH hashFamily "minhash"', () => lshSelfAttention({ hashFamily: 'minhash' as 'simhash' }), /^LSHSelfAttention: hashFamily must be 'rotation' or 'simhash', got "minhash"/],
  ['LSH numHeads "2"', () => lshSelfAttention({ numHeads: '2' as unknown as number }), /^LSHSelfAttention: numHeads must be a positive integer, got "2"/],
  ['LSH headDim 0', () => lshSelfAttention({ headDim: 0 }), /^LSHSelfAttention: headDim must be a positive integer, got 0/],
  ['LSH causal "yes"', () => lshSelfAttention({ causal: 'yes' as unknown as boolean }), /^LSHSelfAttention: causal must be true or false, got "yes"/],
  ['LSH seed -1', () => lshSelfAttention({ seed: -1 }), /^LSHSelfAttention: seed must be an integer in \[0, 2147483647\], got -1/],
  ['LSH memoryLimitBytes NaN', () => lshSelfAttention({ memoryLimitBytes: NaN }), /^LSHSelfAttention: memoryLimitBytes must be a positive number of bytes, got NaN/],
  ['LSH checkFinite 1', () => lshSelfAttention({ checkFinite: 1 as unknown as boolean }), /^LSHSelfAttention: checkFinite must be true or false, got 1/],
  ['Full dropout 1', () => fullSelfAttention({ dropout: 1 }), /^FullSelfAttention: dropout must be a number in \[0, 1\), got 1/],
  ['Full numHeads Infinity', () => fullSelfAttention({ numHeads: Infinity }), /^FullSelfAttention: numHeads must be a positive integer, got Infinity/],
  ['Full memoryLimitBytes -1', () => fullSelfAttention({ memoryLimitBytes: -1 }), /^FullSelfAttention: memoryLimitBytes must be a positive number of bytes, got -1/],
  ['FF activation "tanh"', () => chunkedFeedForward({ activation: 'tanh' as 'relu' }), /^ChunkedFeedForward: activation must be one of relu, gelu, got tanh/],
  ['FF units 0', () => chunkedFeedForward({ units: 0 }), /^ChunkedFeedForward: units must be a positive integer, got 0/],
  ['FF chunkLength -4', () => chunkedFeedForward({ chunkLength: -4 }), /^ChunkedFeedForward: chunkLength must be a positive integer, got -4/],
  ['stack without blocks', () => reversibleStack({ blocks: [] }), /^ReversibleStack: blocks must be a non-empty array of \{attention, feedForward\}/],
  [
    'stack layerNorm "no"',
    () => reversibleStack({ blocks: [{ attention: lshSelfAttention({ seed: 1 }), feedForward: chunkedFeedForward({ seed: 2 }) }], layerNorm: 'no' as unknown as boolean }),
    /^ReversibleStack: layerNorm must be true or false, got "no"/,
  ],
  [
    'stack reversible 0',
    () => reversibleStack({ blocks: [{ attention: lshSelfAttention({ seed: 1 }), feedForward: chunkedFeedForward({ seed: 2 }) }], reversible: 0 as unknown as boolean }),
    /^ReversibleStack: reversible must be true or false, got 0/,
  ],
  [
    'stack combine "sum"',
    () => reversibleStack({ blocks: [{ attention: lshSelfAttention({ seed: 1 }), feedForward: chunkedFeedForward({ seed: 2 }) }], combine: 'sum' as 'mean' }),
    /^ReversibleStack: combine must be 'concat' or 'mean', got sum/,
  ],
];

const lm = (args: Partial<ReformerLMArgs>) => () => reformerLM({ vocabSize: 8, maxLength: 16, modelSize: M, numHeads: 2, chunkLength: 8, seed: 1, ...args });
badArgs.push(
  ['LM vocabSize "8"', lm({ vocabSize: '8' as unknown as number }), /^reformerLM: vocabSize must be a positive integer, got "8"/],
  ['LM 3 heads for modelSize 16', lm({ numHeads: 3 }), /^reformerLM: numHeads 3 must divide modelSize 16 when headDim is not given; change one, or set headDim/],
  ['LM nHashes "two", full attention only', lm({ attention: 'full', nHashes: 'two' as unknown as number }), /^reformerLM: nHashes must be a positive integer, got "two"/],
  ['LM nBuckets 7', lm({ nBuckets: 7 }), /^reformerLM: nBuckets must be even \(each factor an even integer ≥ 2\), got 7/],
  ['LM attention ["lsh", "x"]', lm({ attention: ['lsh', 'x' as 'lsh'] }), /^reformerLM: attention\[1\] must be 'lsh', 'full' or 'local', got x/],
  ['LM positionEmbedding "sinusoidal"', lm({ positionEmbedding: 'sinusoidal' as 'axial' }), /^reformerLM: positionEmbedding must be 'learned' or 'axial', got sinusoidal/],
  ['LM attentionDropout NaN', lm({ attentionDropout: NaN }), /^reformerLM: attentionDropout must be a number in \[0, 1\), got NaN/],
  ['LM seed 2^31', lm({ seed: 2 ** 31 }), /^reformerLM: seed must be an integer in \[0, 2147483647\], got 2147483648/],
);

describeBackends('hardening: bad layer and model arguments are refused at construction, with no tensor made', () => {
  it('covers at least 30 arguments', () => {
    expect(badArgs.length).toBeGreaterThanOrEqual(30);
  });

  it.each(badArgs)('%s', (_name, make, message) => {
    const before = tf.memory().numTensors;
    expect(make).toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describeBackends('hardening: bad call inputs to the layers and models', () => {
  let lsh: LSHSelfAttention;
  let full: FullSelfAttention;
  let stack: ReversibleStack;
  let model: tf.LayersModel;
  let x: tf.Tensor3D;
  let narrow: tf.Tensor3D;
  let halfMask: tf.Tensor2D;
  let shortMask: tf.Tensor2D;
  let nanInput: tf.Tensor3D;
  let rank2: tf.Tensor2D;

  beforeAll(() => {
    lsh = new LSHSelfAttention({ numHeads: 2, chunkLength: 4, seed: 1, checkFinite: true });
    full = new FullSelfAttention({ numHeads: 2, seed: 2 });
    stack = new ReversibleStack({
      blocks: [{ attention: new LSHSelfAttention({ numHeads: 2, chunkLength: 4, seed: 3 }), feedForward: new ChunkedFeedForward({ units: 8, seed: 4 }) }],
      seed: 5,
    });
    x = randomTensor([1, 8, M], 1) as tf.Tensor3D;
    for (const layer of [lsh, full, stack]) (layer.apply(x) as tf.Tensor).dispose(); // builds
    model = reformerLM({ vocabSize: 8, maxLength: 16, modelSize: M, numHeads: 2, chunkLength: 8, seed: 1 });
    narrow = tf.ones([1, 8, 8]) as tf.Tensor3D;
    halfMask = tf.tensor2d([[1, 1, 1, 0.5, 1, 1, 1, 1]]);
    shortMask = tf.ones([1, 7]) as tf.Tensor2D;
    const values = x.dataSync().slice();
    values[2 * M + 5] = NaN;
    nanInput = tf.tensor3d(values, [1, 8, M]);
    rank2 = tf.ones([8, M]) as tf.Tensor2D;
  });
  afterAll(() => {
    tf.dispose([x, narrow, halfMask, shortMask, nanInput, rank2]);
    model.dispose();
  });

  const calls: Array<[string, () => unknown, RegExp]> = [
    ['LSH layer: input of another width', () => lsh.apply(narrow), /^LSHSelfAttention: input must have M = 16 features \(the layer was built for \[B, T, 16\]\), got \[1, 8, 8\]/],
    ['Full layer: input of another width', () => full.apply(narrow), /^FullSelfAttention: input must have M = 16 features/],
    ['LSH layer: mask with 0.5', () => lsh.apply([x, halfMask]), /^LSHSelfAttention: the padding mask must hold only 0 \(padding\) and 1 \(keep\), got 0\.5 at \[0, 3\]/],
    ['Full layer: mask of another length', () => full.apply([x, shortMask]), /^FullSelfAttention: the padding mask must have shape \[B, T\] = \[1, 8\] to match the inputs, got \[1, 7\]/],
    ['LSH layer: attendModel on a rank-2 input', () => lsh.attendModel(rank2 as unknown as tf.Tensor3D, null), /^LSHSelfAttention: input must be a tensor \[B, T, M\], got \[8, 16\]/],
    ['LSH layer with checkFinite: a NaN input', () => lsh.apply(nanInput), /^LSHSelfAttention: the input has 1 non-finite value \(NaN at \[0, 2, 5\]\); find where it comes from/],
    ['stack: input of another width', () => stack.apply(narrow), /^ReversibleStack: input must have M = 16 features \(the stack was built for \[B, T, 16\]\), got \[1, 8, 8\]/],
    ['stack: mask with 0.5', () => stack.forward(x, { mask: halfMask }), /^LSHSelfAttention: the padding mask must hold only 0 \(padding\) and 1 \(keep\)/],
    ['generate: a fractional token', () => generate(model, [[1.5, 2]], { steps: 1 }), /^generate: prompts\[0\]\[0\] must be a token id, an integer in \[0, 7\], got 1\.5/],
    ['generate: a token beyond the vocabulary', () => generate(model, [[1, 9]], { steps: 1 }), /^generate: prompts\[0\]\[1\] must be a token id, an integer in \[0, 7\], got 9/],
    ['generate: temperature Infinity', () => generate(model, [[1]], { steps: 1, temperature: Infinity }), /^generate: temperature must be ≥ 0 \(0 for greedy\) and finite, got Infinity/],
    ['generate: seed -1', () => generate(model, [[1]], { steps: 1, temperature: 1, seed: -1 }), /^generate: seed must be an integer in \[0, 2147483647\], got -1/],
    ['generate: prompts not a list of lists', () => generate(model, 'ab' as unknown as number[][], { steps: 1 }), /^generate: prompts must be a non-empty list of equally long \(≥ 1\) token lists, got "ab"/],
    ['generate: steps -1', () => generate(model, [[1]], { steps: -1 }), /^generate: steps must be a non-negative integer, got -1/],
    ['setNHashes: "4"', () => setNHashes(model, '4' as unknown as number), /^setNHashes: nHashes must be a positive integer, got "4"/],
  ];

  it.each(calls)('%s', async (_name, call, message) => {
    const before = tf.memory().numTensors;
    // Sync throws and async rejections alike.
    await expect((async () => call())()).rejects.toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('numHeads that does not divide the model size is refused at build, unless headDim is given', () => {
    const before = tf.memory().numTensors;
    expect(() => lshSelfAttention({ numHeads: 3, chunkLength: 4, seed: 1 }).apply(x)).toThrow(
      /^LSHSelfAttention: numHeads 3 must divide the model size 16 when headDim is not given \(3 heads of 5 would leave 1 features out\); use numHeads in 1, 2, 4, 8, 16, or set headDim/,
    );
    expect(tf.memory().numTensors).toBe(before);
    const layer = fullSelfAttention({ numHeads: 3, headDim: 5, seed: 1 });
    const out = layer.apply(x) as tf.Tensor;
    expect(out.shape).toEqual([1, 8, M]);
    tf.dispose([out, ...layer.getWeights()]);
  });
});

describeBackends('hardening: empty batches, memory limits and finite checks through the layers', () => {
  it.each([
    ['B = 0', [0, 8, M]],
    ['T = 0', [2, 0, M]],
  ] as Array<[string, number[]]>)('an empty input (%s) gives an empty output of the same shape (wasm said "divide by zero")', (_name, shape) => {
    const empty = tf.zeros<tf.Rank>(shape) as tf.Tensor3D;
    const layers = [
      new LSHSelfAttention({ numHeads: 2, chunkLength: 4, seed: 1 }),
      new FullSelfAttention({ numHeads: 2, seed: 2 }),
    ];
    const warm = randomTensor([1, 8, M], 3);
    for (const layer of layers) {
      (layer.apply(warm) as tf.Tensor).dispose(); // builds
      const before = tf.memory().numTensors;
      for (const training of [false, true]) {
        const out = layer.apply(empty, { training }) as tf.Tensor;
        expect(out.shape).toEqual(shape);
        out.dispose();
      }
      const mask = tf.ones([shape[0], shape[1]]);
      const masked = layer.apply([empty, mask]) as tf.Tensor;
      expect(masked.shape).toEqual(shape);
      tf.dispose([masked, mask]);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(layer.getWeights());
    }
    const stack = new ReversibleStack({
      blocks: [{ attention: new LSHSelfAttention({ numHeads: 2, chunkLength: 4, seed: 3 }), feedForward: new ChunkedFeedForward({ units: 8, seed: 4 }) }],
      seed: 5,
    });
    const out = stack.apply(empty) as tf.Tensor;
    expect(out.shape).toEqual([shape[0], shape[1], 2 * M]);
    tf.dispose([out, empty, warm, ...stack.getWeights()]);
  });

  it('memoryLimitBytes reaches the core: a layer refuses a call before it runs, and a raised limit lets it run', () => {
    const x = randomTensor([1, 64, M], 4) as tf.Tensor3D;
    const args: LSHSelfAttentionArgs = { numHeads: 2, chunkLength: 8, nHashes: 2, fullAttentionThreshold: 0, seed: 1 };
    const tight = new LSHSelfAttention({ ...args, memoryLimitBytes: 4096 });
    const roomy = new LSHSelfAttention({ ...args, memoryLimitBytes: 2 ** 30 });
    const fullTight = new FullSelfAttention({ numHeads: 2, seed: 1, memoryLimitBytes: 4096 });
    tight.build([null, null, M]);
    fullTight.build([null, null, M]);
    const before = tf.memory().numTensors;
    expect(() => tight.apply(x)).toThrow(/^lshAttention: this call needs about [\d.]+ MiB .*; or raise memoryLimitBytes \(an option of the attention functions, an argument of the attention layers\)/);
    expect(() => fullTight.apply(x)).toThrow(/^fullAttention: this call needs about [\d.]+ MiB \(B·H·T = 128 queries × 64 keys, 64 query rows at a time\)/);
    expect(tf.memory().numTensors).toBe(before);
    // Same weights (same seed), a raised limit: it runs, and gives what a layer without a limit gives.
    const out = roomy.apply(x) as tf.Tensor;
    const plain = new LSHSelfAttention(args);
    const expected = plain.apply(x) as tf.Tensor;
    expectTensorsClose(out, expected, 0);
    // Saved in the config, and restored from it.
    expect(tight.getConfig().memoryLimitBytes).toBe(4096);
    expect(plain.getConfig().memoryLimitBytes).toBeUndefined();
    const restored = LSHSelfAttention.fromConfig(LSHSelfAttention, tight.getConfig()) as LSHSelfAttention;
    expect(restored.memoryLimitBytes).toBe(4096);
    tf.dispose([x, out, expected, ...tight.getWeights(), ...roomy.getWeights(), ...fullTight.getWeights(), ...plain.getWeights()]);
  });

  it('checkFinite: NaN weights are caught in the projected qk, and the setting is saved in the config', () => {
    const layer = new FullSelfAttention({ numHeads: 2, seed: 1, checkFinite: true });
    const x = randomTensor([1, 8, M], 5) as tf.Tensor3D;
    (layer.apply(x) as tf.Tensor).dispose();
    const weights = layer.getWeights();
    const values = weights[0].dataSync().slice();
    values[3] = NaN;
    const broken = tf.tensor(values, weights[0].shape);
    layer.setWeights([broken, ...weights.slice(1)]);
    broken.dispose();
    const before = tf.memory().numTensors;
    expect(() => layer.apply(x)).toThrow(/^fullAttention: qk has \d+ non-finite values? \(/);
    expect(tf.memory().numTensors).toBe(before);
    expect(layer.getConfig().checkFinite).toBe(true);
    expect(new FullSelfAttention({ numHeads: 2, seed: 1 }).getConfig().checkFinite).toBeUndefined();
    tf.dispose([x, ...layer.getWeights()]);
  });
});
