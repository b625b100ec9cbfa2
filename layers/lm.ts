/**
 * A causal Reformer language model assembled from the building blocks:
 *
 *     tokens [B, T] → embedding → position embedding (learned or axial)
 *       → reversible blocks (LSH or full attention per block, chunked feed-forward)
 *       → layer norm → dense (PositionwiseDense) → logits [B, T, V]
 *
 * {@link reformerLM} returns an ordinary `tf.LayersModel`: compile it with
 * {@link lmLoss}, train it with `model.fit`, save and load it with
 * `fileSystem(dir)` and `tf.loadLayersModel`. {@link generate} continues
 * prompts greedily or by sampling; {@link setNHashes} changes the hash rounds
 * of every LSH layer (evaluate with more rounds than you trained with).
 *
 * Legend: B batch, T length, V vocabulary size, M model size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { bucketFactors, type NBuckets } from '../src/hashing.js';
import { assertSeed, freshSeed, nextSeed, uniformStream, type Seed } from '../src/random.js';
import { assertBoolean, assertNonNegativeInteger, assertPositiveInteger, assertRate, describeValue } from '../src/validate.js';
import { cachedGenerationSupport, startCachedGeneration } from './generation.js';
import { ChunkedFeedForward, type FeedForwardActivation } from './chunked_feed_forward.js';
import { AxialPositionEmbedding, PositionEmbedding } from './position_embeddings.js';
import { ReversibleStack } from './reversible.js';
import { FullSelfAttention, LocalSelfAttention, LSHSelfAttention, type SelfAttentionBase } from './self_attention.js';
import { LayerNorm } from './layer_norm.js';
import { PositionwiseDense } from './positionwise_dense.js';
import { reseeded, resolveInitializer, resolveRegularizer, type InitializerArg, type RegularizerArg } from './weight_args.js';

/** The attention of one block. */
export type AttentionKind = 'lsh' | 'full' | 'local';

/** The position embedding of a {@link reformerLM}. */
export type PositionEmbeddingKind = 'learned' | 'axial';

/** Arguments of {@link reformerLM}. */
export interface ReformerLMArgs {
  /** V, the number of token ids (0 … V − 1). Required. */
  vocabSize: number;
  /** The longest input (the position embedding's size; {@link generate} keeps this many tokens of context). Required. */
  maxLength: number;
  /** M, the model size. Default 64. */
  modelSize?: number;
  /** The number of reversible blocks. Default: the length of `attention` if it is an array, else 2. */
  numLayers?: number;
  /**
   * The attention of every block ('lsh', 'full' or 'local': chunks of
   * chunkLength in position order with numChunksBefore/After neighbours), or
   * one per block, e.g. ['local', 'lsh', 'local', 'lsh']. Default 'lsh'.
   */
  attention?: AttentionKind | AttentionKind[];
  /** Heads per attention layer. Default 4. */
  numHeads?: number;
  /** Size of each head. Default M / numHeads. */
  headDim?: number;
  /** LSH hash rounds (training; see {@link setNHashes} for evaluation). Default 1. */
  nHashes?: number;
  /** LSH chunk length. Default 64. */
  chunkLength?: number;
  /** LSH buckets. Default: per input length. */
  nBuckets?: NBuckets;
  /** LSH chunks before its own that each chunk attends to. Default 1. */
  numChunksBefore?: number;
  /** LSH chunks after its own that each chunk attends to. Default 0. */
  numChunksAfter?: number;
  /** The LSH blocks' fullAttentionThreshold (exact attention at or below this length; 0: off). Default: LSHSelfAttention's. */
  fullAttentionThreshold?: number;
  /** Dropout on the attention weights in training. Default 0. */
  attentionDropout?: number;
  /** Hidden size of the feed-forward. Default 4·M. */
  feedForwardUnits?: number;
  /**
   * Positions per feed-forward slice (the hidden activations of one slice exist at a time; the result
   * does not depend on it). Default 4096: no slicing up to T = 4096; at T = 16384 a training step
   * measured 1.04 GiB peak instead of 1.74 GiB, and T = 65536 does not fit on wasm without it.
   */
  feedForwardChunkLength?: number;
  /** Dropout on the feed-forward's hidden activations in training. Default 0. */
  feedForwardDropout?: number;
  /** The feed-forward's activation. Default 'gelu'. */
  activation?: FeedForwardActivation;
  /** 'learned' ([maxLength, M] table) or 'axial' (two factors, see `axialShape`); initialised N(0, 1) like the token embedding. Default 'learned'. */
  positionEmbedding?: PositionEmbeddingKind;
  /** [d1, d2] of the axial embedding, d1·d2 = maxLength. Default: the two factors closest to √maxLength. */
  axialShape?: [number, number];
  /** Recompute activations in the backward pass (memory independent of depth). Default true. */
  reversible?: boolean;
  /**
   * Initializer of the kernels of every block (attention, feed-forward) and of
   * the output dense, as the layers take it; a seeded one is re-seeded per
   * layer and kernel. Default: each layer's seeded glorotUniform.
   */
  kernelInitializer?: InitializerArg;
  /** Regularizer of the same kernels (weight decay: e.g. tf.regularizers.l2({ l2: 1e-4 })). Default: none. */
  kernelRegularizer?: RegularizerArg;
  /** Regularizer of the biases (feed-forward, output dense; the attention has none). Default: none. */
  biasRegularizer?: RegularizerArg;
  /** Seed of every initialiser, rotation and dropout mask. Default: drawn once. */
  seed?: Seed;
  /** The model's name. Default: tfjs-layers' automatic one. */
  name?: string;
}

/** {@link ReformerLMArgs.feedForwardChunkLength}'s default. */
const DEFAULT_FEED_FORWARD_CHUNK = 4096;

/** The two factors of n closest to √n, smaller first. */
function squareFactors(n: number): [number, number] {
  let d1 = Math.floor(Math.sqrt(n));
  while (n % d1 !== 0) d1--;
  return [d1, n / d1];
}

/**
 * A causal Reformer language model: tokens int32 [B, T] (T ≤ maxLength) →
 * logits [B, T, V], position t predicting token t + 1.
 *
 * ```ts
 * const model = reformerLM({ vocabSize: 256, maxLength: 1024, modelSize: 128, numLayers: 4,
 *   attention: ['lsh', 'lsh', 'full', 'lsh'], nHashes: 2, chunkLength: 64,
 *   positionEmbedding: 'axial', axialShape: [32, 32], seed: 1 });
 * model.compile({ optimizer: tf.train.adam(1e-3), loss: lmLoss });
 * ```
 */
export function reformerLM(args: ReformerLMArgs): tfl.LayersModel {
  const who = 'reformerLM';
  assertPositiveInteger(who, 'vocabSize', args.vocabSize);
  assertPositiveInteger(who, 'maxLength', args.maxLength);
  const modelSize = args.modelSize ?? 64;
  assertPositiveInteger(who, 'modelSize', modelSize);
  const kinds = args.attention ?? 'lsh';
  const numLayers = args.numLayers ?? (Array.isArray(kinds) ? kinds.length : 2);
  assertPositiveInteger(who, 'numLayers', numLayers);
  const perLayer = Array.isArray(kinds) ? kinds : Array.from({ length: numLayers }, () => kinds);
  if (perLayer.length !== numLayers) {
    throw new Error(`${who}: attention has ${perLayer.length} entries but numLayers is ${numLayers}; give one kind per block`);
  }
  perLayer.forEach((kind, i) => {
    if (kind !== 'lsh' && kind !== 'full' && kind !== 'local') {
      throw new Error(`${who}: attention[${i}] must be 'lsh', 'full' or 'local', got ${String(kind)}`);
    }
  });
  if (args.attentionDropout !== undefined) assertRate(who, 'attentionDropout', args.attentionDropout);
  // Checked here, before any layer is built (a failure while building would leave the built layers' weights behind).
  const numHeads = args.numHeads ?? 4;
  assertPositiveInteger(who, 'numHeads', numHeads);
  if (args.headDim !== undefined) assertPositiveInteger(who, 'headDim', args.headDim);
  else if (modelSize % numHeads !== 0) {
    throw new Error(`${who}: numHeads ${numHeads} must divide modelSize ${modelSize} when headDim is not given; change one, or set headDim`);
  }
  // The LSH settings, even when no block uses LSH attention (a wrong value is a mistake either way).
  if (args.nHashes !== undefined) assertPositiveInteger(who, 'nHashes', args.nHashes);
  if (args.chunkLength !== undefined) assertPositiveInteger(who, 'chunkLength', args.chunkLength);
  if (args.numChunksBefore !== undefined) assertNonNegativeInteger(who, 'numChunksBefore', args.numChunksBefore);
  if (args.numChunksAfter !== undefined) assertNonNegativeInteger(who, 'numChunksAfter', args.numChunksAfter);
  if (args.nBuckets !== undefined) bucketFactors(who, args.nBuckets);
  if (args.fullAttentionThreshold !== undefined) assertNonNegativeInteger(who, 'fullAttentionThreshold', args.fullAttentionThreshold);
  const seed = args.seed ?? freshSeed();
  assertSeed(who, seed);
  const seeds = uniformStream(seed, 'reformerLM');

  const kernelInitializer = resolveInitializer(who, 'kernelInitializer', args.kernelInitializer);
  const kernelRegularizer = resolveRegularizer(who, 'kernelRegularizer', args.kernelRegularizer) ?? undefined;
  const biasRegularizer = resolveRegularizer(who, 'biasRegularizer', args.biasRegularizer) ?? undefined;
  let layerCount = 0;
  // Each layer's own copy of the initializer (a seeded one would give every block the same weights).
  const weightArgs = () => ({
    kernelInitializer: kernelInitializer === null ? undefined : reseeded(kernelInitializer, 1000 + layerCount++),
    kernelRegularizer,
    biasRegularizer,
  });
  // The Reformer's attention projections have no biases.
  const common = { numHeads, headDim: args.headDim, causal: true, dropout: args.attentionDropout ?? 0, useBias: false };
  const blocks = perLayer.map((kind) => ({
    attention:
      kind === 'lsh'
        ? new LSHSelfAttention({
            ...common,
            nHashes: args.nHashes,
            chunkLength: args.chunkLength,
            nBuckets: args.nBuckets,
            numChunksBefore: args.numChunksBefore,
            numChunksAfter: args.numChunksAfter,
            fullAttentionThreshold: args.fullAttentionThreshold,
            ...weightArgs(),
            seed: nextSeed(seeds),
          })
        : kind === 'local'
          ? new LocalSelfAttention({
              ...common,
              chunkLength: args.chunkLength,
              numChunksBefore: args.numChunksBefore,
              numChunksAfter: args.numChunksAfter,
              ...weightArgs(),
              seed: nextSeed(seeds),
            })
          : new FullSelfAttention({ ...common, ...weightArgs(), seed: nextSeed(seeds) }),
    feedForward: new ChunkedFeedForward({
      units: args.feedForwardUnits,
      chunkLength: args.feedForwardChunkLength ?? DEFAULT_FEED_FORWARD_CHUNK,
      dropout: args.feedForwardDropout,
      activation: args.activation ?? 'gelu',
      ...weightArgs(),
      seed: nextSeed(seeds),
    }),
  }));

  const positionKind = args.positionEmbedding ?? 'learned';
  let positions: tfl.layers.Layer;
  if (positionKind === 'learned') {
    positions = new PositionEmbedding({ maxLength: args.maxLength, stddev: 1, seed: nextSeed(seeds) });
  } else if (positionKind === 'axial') {
    const axialShape = args.axialShape ?? squareFactors(args.maxLength);
    if (axialShape[0] * axialShape[1] !== args.maxLength) {
      throw new Error(`${who}: axialShape [${axialShape.join(', ')}] must multiply to maxLength ${args.maxLength}`);
    }
    positions = new AxialPositionEmbedding({ axialShape, stddev: 1, seed: nextSeed(seeds) });
  } else {
    throw new Error(`${who}: positionEmbedding must be 'learned' or 'axial', got ${String(positionKind)}`);
  }

  const tokens = tfl.input({ shape: [null], dtype: 'int32', name: args.name === undefined ? undefined : `${args.name}_tokens` });
  const embedded = tfl.layers
    .embedding({
      inputDim: args.vocabSize,
      outputDim: modelSize,
      embeddingsInitializer: tfl.initializers.randomNormal({ mean: 0, stddev: 1, seed: nextSeed(seeds) }),
    })
    .apply(tokens) as tfl.SymbolicTensor;
  const stack = new ReversibleStack({ blocks, reversible: args.reversible, seed: nextSeed(seeds) });
  const hidden = stack.apply(positions.apply(embedded)) as tfl.SymbolicTensor; // [B, T, 2M]
  const normed = new LayerNorm().apply(hidden) as tfl.SymbolicTensor;
  const outputSeed = nextSeed(seeds);
  const output = weightArgs();
  const logits = new PositionwiseDense({
    units: args.vocabSize,
    kernelInitializer: output.kernelInitializer ?? tfl.initializers.glorotUniform({ seed: outputSeed }),
    kernelRegularizer,
    biasRegularizer,
    seed: outputSeed,
  }).apply(normed) as tfl.SymbolicTensor;
  return tfl.model({ inputs: tokens, outputs: logits, name: args.name });
}

/**
 * Next-token cross-entropy from logits, per position (a `loss` for
 * `model.compile`). `yTrue` is one-hot [B, T, V] (the shape `model.fit`
 * accepts for a [B, T, V] output) or token ids [B, T] / [B, T, 1] (for
 * custom training loops).
 *
 * @returns [B, T]
 */
export function lmLoss(yTrue: tf.Tensor, logits: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const vocab = logits.shape[logits.rank - 1];
    const isOneHot = yTrue.rank === logits.rank && yTrue.shape[yTrue.rank - 1] === vocab && vocab > 1;
    const targets = isOneHot
      ? tf.cast(yTrue, 'float32')
      : tf.cast(tf.oneHot(tf.cast(tf.reshape(yTrue, logits.shape.slice(0, -1)), 'int32'), vocab), 'float32');
    return crossEntropy(logits, targets);
  });
}

/**
 * −Σ t·log softmax(z) over the last axis, as one op with its own gradient
 * (targets t need not sum to 1: rows of zeros count nothing). Under a tape it
 * keeps z, t and each row's log-sum-exp, not the softmax chain's full-size
 * intermediates; d/dz = dy·((Σ t)·softmax(z) − t). The targets get no gradient.
 */
const crossEntropy = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [z, t, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  const lse = tf.logSumExp(z, -1, true); // [..., 1]
  const mass = tf.sum(t, -1, true); // Σ t, [..., 1]
  save([z, t, lse, mass]);
  return {
    value: tf.squeeze(tf.sub(tf.mul(mass, lse), tf.sum(tf.mul(t, z), -1, true)), [z.rank - 1]),
    // In a scope of its own: the engine keeps a gradient function's leftovers until the whole backward pass ends.
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [zs, ts, l, m] = saved;
        const d = tf.expandDims(dy as tf.Tensor, -1);
        return [tf.mul(d, tf.sub(tf.mul(m, tf.exp(tf.sub(zs, l))), ts)), tf.zerosLike(ts)];
      }),
  };
});

/**
 * Inputs and one-hot targets for next-token training from token sequences
 * of one length L: inputs int32 [N, L − 1] (all but the last token), targets
 * float32 [N, L − 1, V] (all but the first).
 */
export function nextTokenData(sequences: number[][], vocabSize: number): { inputs: tf.Tensor2D; targets: tf.Tensor3D } {
  const who = 'nextTokenData';
  assertPositiveInteger(who, 'vocabSize', vocabSize);
  const length = sequences[0]?.length ?? 0;
  if (length < 2 || sequences.some((s) => s.length !== length)) {
    throw new Error(`${who}: sequences must all have the same length ≥ 2, got lengths ${sequences.map((s) => s.length).join(', ')}`);
  }
  return tf.tidy(() => {
    const ids = tf.tensor2d(sequences, [sequences.length, length], 'int32');
    const inputs = tf.slice(ids, [0, 0], [-1, length - 1]) as tf.Tensor2D;
    const targets = tf.oneHot(tf.slice(ids, [0, 1], [-1, length - 1]) as tf.Tensor2D, vocabSize) as tf.Tensor3D;
    return { inputs, targets: tf.cast(targets, 'float32') as tf.Tensor3D };
  });
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Tokens to add to each prompt. Required. */
  steps: number;
  /** 0: greedy (the most likely token). > 0: sample from softmax(logits / temperature). Default 0. */
  temperature?: number;
  /** Seed of the sampling: the same seed, the same continuation. Default: fresh randomness. */
  seed?: Seed;
  /** The most recent tokens fed to the model at each step. Default: the model's position-embedding length (else all). */
  contextLength?: number;
  /**
   * Run the model one new token at a time with a cache in every attention
   * layer (see {@link cachedGenerationSupport} for the models it takes):
   * full-attention layers keep past keys and values (the same result as
   * without the cache); LSH layers keep past keys, values and buckets, and a
   * new token attends to the past tokens that share a bucket with it in any
   * round, plus itself (README, Cached generation). Once the sequence is
   * longer than `contextLength`, every further step reruns the window, as
   * without the cache. true: a model the cached path cannot run is an
   * error; false: every step reruns the whole context. Default: true where
   * the model qualifies, else false.
   */
  cache?: boolean;
}

/** The layers of a model, nested models and reversible stacks opened up (the stacks' blocks after the stack itself). */
export function allLayers(model: tfl.LayersModel | tfl.layers.Layer): tfl.layers.Layer[] {
  if (model instanceof tfl.LayersModel) return model.layers.flatMap((layer) => allLayers(layer));
  if (model instanceof ReversibleStack) return [model, ...model.blocks.flatMap((b) => [b.attention, b.feedForward])];
  return [model];
}

/** The input length a model's position embedding covers, or undefined. */
function positionLength(model: tfl.LayersModel): number | undefined {
  for (const layer of allLayers(model)) {
    if (layer instanceof PositionEmbedding || layer instanceof AxialPositionEmbedding) return layer.maxLength;
  }
  return undefined;
}

/**
 * Continues each prompt by `steps` tokens. With the cache (the default where
 * the model qualifies) the prompt runs once and each new token alone; without
 * it, every token reruns the whole context. Prompts must have one length ≥ 1.
 *
 * @returns prompt + continuation, for each prompt
 */
export async function generate(model: tfl.LayersModel, prompts: number[][], options: GenerateOptions): Promise<number[][]> {
  const who = 'generate';
  assertNonNegativeInteger(who, 'steps', options.steps);
  const temperature = options.temperature ?? 0;
  if (!(temperature >= 0 && temperature < Infinity)) {
    throw new Error(`${who}: temperature must be ≥ 0 (0 for greedy) and finite, got ${describeValue(options.temperature)}`);
  }
  assertSeed(who, options.seed);
  const length = Array.isArray(prompts) && Array.isArray(prompts[0]) ? prompts[0].length : 0;
  if (length < 1 || prompts.some((p) => !Array.isArray(p) || p.length !== length)) {
    throw new Error(
      `${who}: prompts must be a non-empty list of equally long (≥ 1) token lists, got ${describeValue(prompts)}; pad or group them by length`,
    );
  }
  // Token ids index the embedding: a fraction would be truncated silently, an id out of range fails late.
  const vocab = model.outputs[0]?.shape[model.outputs[0].shape.length - 1];
  prompts.forEach((prompt, b) =>
    prompt.forEach((token, t) => {
      if (!Number.isInteger(token) || token < 0 || (typeof vocab === 'number' && token >= vocab)) {
        throw new Error(
          `${who}: prompts[${b}][${t}] must be a token id, an integer in [0, ${typeof vocab === 'number' ? vocab - 1 : 'V − 1'}], ` +
            `got ${describeValue(token)}`,
        );
      }
    }),
  );
  const contextLength = options.contextLength ?? positionLength(model) ?? Number.POSITIVE_INFINITY;
  if (contextLength !== Number.POSITIVE_INFINITY) assertPositiveInteger(who, 'contextLength', contextLength);
  if (options.cache !== undefined) assertBoolean(who, 'cache', options.cache);
  const support = cachedGenerationSupport(model);
  if (options.cache === true && !support.supported) {
    throw new Error(`${who}: cache: true, but ${support.reason}; pass cache: false (every step reruns the context)`);
  }
  const random = uniformStream(options.seed);
  const sequences = prompts.map((p) => p.slice());
  const choose = (values: ArrayLike<number>, vocab: number) =>
    sequences.forEach((sequence, b) => {
      const row = Array.prototype.slice.call(values, b * vocab, (b + 1) * vocab) as number[];
      sequence.push(temperature === 0 ? argmax(row) : sample(row, temperature, random));
    });
  let done = 0;
  if ((options.cache ?? true) && support.supported && options.steps > 0 && length <= contextLength) {
    // The cached path, while the whole sequence fits the context (positions never shift).
    const bucketLength = contextLength === Number.POSITIVE_INFINITY ? length + options.steps : contextLength;
    const run = startCachedGeneration(model, bucketLength);
    try {
      let tokens = tf.tensor2d(sequences, [sequences.length, length], 'int32');
      let logits: tf.Tensor3D;
      try {
        logits = run.prefill(tokens);
      } catch (error) {
        tokens.dispose();
        throw error;
      }
      while (true) {
        const last = tf.tidy(() => tf.squeeze(tf.slice(logits, [0, logits.shape[1] - 1, 0], [-1, 1, -1]), [1]));
        const values = await last.data();
        const vocab = last.shape[1] as number;
        tf.dispose([tokens, logits, last]);
        choose(values, vocab);
        done++;
        if (done === options.steps || run.length + 1 > contextLength) break;
        tokens = tf.tensor2d(sequences.map((s) => [s[s.length - 1]]), [sequences.length, 1], 'int32');
        try {
          logits = run.step(tokens);
        } catch (error) {
          tokens.dispose();
          throw error;
        }
      }
    } finally {
      run.dispose();
    }
  }
  for (let step = done; step < options.steps; step++) {
    const window = sequences.map((s) => s.slice(Math.max(0, s.length - contextLength)));
    const windowLength = window[0].length;
    const ids = tf.tensor2d(window, [window.length, windowLength], 'int32');
    const logits = model.predict(ids) as tf.Tensor3D; // [B, t, V]
    const last = tf.tidy(() => tf.squeeze(tf.slice(logits, [0, windowLength - 1, 0], [-1, 1, -1]), [1]));
    const values = await last.data();
    tf.dispose([ids, logits, last]);
    choose(values, last.shape[1] as number);
  }
  return sequences;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** A draw from softmax(row / temperature). */
function sample(row: ArrayLike<number>, temperature: number, random: () => number): number {
  const top = row[argmax(row)];
  const weights = Array.from(row, (logit) => Math.exp((logit - top) / temperature));
  let u = random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0) return i;
  }
  return weights.length - 1;
}

/**
 * Sets the hash rounds of every LSH attention layer in a model (inside
 * reversible stacks too): evaluate with more rounds than you trained with.
 *
 * @returns the number of layers changed
 */
export function setNHashes(model: tfl.LayersModel | tfl.layers.Layer, nHashes: number): number {
  assertPositiveInteger('setNHashes', 'nHashes', nHashes);
  const layers = allLayers(model).filter((layer): layer is LSHSelfAttention => layer instanceof LSHSelfAttention);
  for (const layer of layers) layer.nHashes = nHashes;
  return layers.length;
}

/** The attention layers of a model, in order (LSH, full and local). */
export function attentionLayers(model: tfl.LayersModel | tfl.layers.Layer): SelfAttentionBase[] {
  return allLayers(model).filter(
    (layer): layer is SelfAttentionBase =>
      layer instanceof LSHSelfAttention || layer instanceof FullSelfAttention || layer instanceof LocalSelfAttention,
  );
}
