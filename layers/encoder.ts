/**
 * A bidirectional Reformer encoder with a classification head or a masked
 * language-model head (as Hugging Face's ReformerForSequenceClassification
 * and ReformerForMaskedLM):
 *
 *     tokens [B, T] → embedding → position embedding (learned or axial)
 *       → reversible blocks (LSH or full attention, not causal; chunked feed-forward)
 *       → layer norm → hidden [B, T, 2M]
 *       → 'classification': pooling [B, 2M] → dropout → dense → logits [B, classes]
 *       → 'maskedLM':       PositionwiseDense → logits [B, T, V]
 *       → 'none':           the hidden states
 *
 * {@link addEncoderHead} puts another head on an encoder's body (the layers
 * are shared): pre-train with the masked-LM head ({@link maskTokens} makes
 * the batches), then classify. {@link maskTokens} picks positions as BERT
 * does (80% mask token, 10% a random token, 10% unchanged).
 *
 * Legend: B batch, T length, M model size, V vocabulary size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { bucketFactors, type NBuckets } from '../src/hashing.js';
import { assertSeed, freshSeed, nextSeed, uniformStream, type Seed } from '../src/random.js';
import { assertNonNegativeInteger, assertPositiveInteger, assertRate, describeValue, shapeString } from '../src/validate.js';
import { ChunkedFeedForward, type FeedForwardActivation } from './chunked_feed_forward.js';
import { LayerNorm } from './layer_norm.js';
import { lmLoss, type AttentionKind, type PositionEmbeddingKind } from './lm.js';
import { AxialPositionEmbedding, PositionEmbedding } from './position_embeddings.js';
import { PositionwiseDense } from './positionwise_dense.js';
import { ReversibleStack } from './reversible.js';
import { FullSelfAttention, LSHSelfAttention } from './self_attention.js';
import {
  reseeded,
  resolveInitializer,
  resolveRegularizer,
  type Initializer,
  type InitializerArg,
  type Regularizer,
  type RegularizerArg,
} from './weight_args.js';

type Shape = (number | null)[];

/** How a sequence of hidden states becomes one vector. */
export type Pooling = 'mean' | 'max' | 'first';

/** The output of a {@link reformerEncoder}. */
export type EncoderHead = 'classification' | 'maskedLM' | 'none';

const POOLINGS: readonly Pooling[] = ['mean', 'max', 'first'];
const HEADS: readonly EncoderHead[] = ['classification', 'maskedLM', 'none'];

/** Arguments of a head (see {@link addEncoderHead}). */
export interface EncoderHeadArgs {
  /** 'classification' (logits [B, classes]), 'maskedLM' (logits [B, T, V]) or 'none' (hidden states [B, T, 2M]). Default 'classification'. */
  head?: EncoderHead;
  /** The number of classes of the classification head (≥ 2). Required for it. */
  numClasses?: number;
  /** The pooling of the classification head: 'mean' over positions, 'max' per feature, or the 'first' position. Default 'mean'. */
  pooling?: Pooling;
  /** Dropout on the pooled vector in training (classification head). Default 0. */
  classifierDropout?: number;
  /** The vocabulary of the masked-LM head. Required for it (reformerEncoder passes its vocabSize). */
  vocabSize?: number;
  /** Seed of the head's initializer. Default: drawn. */
  seed?: Seed;
}

/** Arguments of {@link reformerEncoder}. */
export interface ReformerEncoderArgs extends EncoderHeadArgs {
  /** V, the number of token ids (0 … V − 1). Required. */
  vocabSize: number;
  /** The longest input (the position embedding's size). Required. */
  maxLength: number;
  /** M, the model size. Default 64. */
  modelSize?: number;
  /** The number of reversible blocks. Default: the length of `attention` if it is an array, else 2. */
  numLayers?: number;
  /** The attention of every block ('lsh' or 'full'), or one per block. Default 'lsh'. */
  attention?: AttentionKind | AttentionKind[];
  /** Heads per attention layer. Default 4. */
  numHeads?: number;
  /** Size of each head. Default M / numHeads. */
  headDim?: number;
  /** LSH hash rounds. Default 1. */
  nHashes?: number;
  /** LSH chunk length. Default 64. */
  chunkLength?: number;
  /** LSH buckets. Default: per input length. */
  nBuckets?: NBuckets;
  /** LSH chunks before its own that each chunk attends to. Default 1. */
  numChunksBefore?: number;
  /** LSH chunks after its own that each chunk attends to (an encoder looks both ways). Default 1. */
  numChunksAfter?: number;
  /** Dropout on the attention weights in training. Default 0. */
  attentionDropout?: number;
  /** Hidden size of the feed-forward. Default 4·M. */
  feedForwardUnits?: number;
  /** Positions per feed-forward slice. Default 4096. */
  feedForwardChunkLength?: number;
  /** Dropout on the feed-forward's hidden activations in training. Default 0. */
  feedForwardDropout?: number;
  /** The feed-forward's activation. Default 'gelu'. */
  activation?: FeedForwardActivation;
  /** 'learned' or 'axial'. Default 'learned'. */
  positionEmbedding?: PositionEmbeddingKind;
  /** [d1, d2] of the axial embedding, d1·d2 = maxLength. Default: the two factors closest to √maxLength. */
  axialShape?: [number, number];
  /** Recompute activations in the backward pass. Default true. */
  reversible?: boolean;
  /** Initializer of every kernel (blocks and heads). Default: each layer's seeded glorotUniform. */
  kernelInitializer?: InitializerArg;
  /** Regularizer of the same kernels. Default: none. */
  kernelRegularizer?: RegularizerArg;
  /** Regularizer of the biases. Default: none. */
  biasRegularizer?: RegularizerArg;
  /** Seed of every initialiser, rotation and dropout mask. Default: drawn once. */
  seed?: Seed;
  /** The model's name. Default: tfjs-layers' automatic one. */
  name?: string;
}

/** Arguments of {@link SequencePooling}. */
export interface SequencePoolingArgs extends LayerArgs {
  /** 'mean', 'max' or 'first'. Default 'mean'. */
  pooling?: Pooling;
}

/** [B, T, F] → [B, F]: the mean or maximum over positions, or the first position. */
export class SequencePooling extends tfl.layers.Layer {
  static className = 'SequencePooling';
  readonly pooling: Pooling;

  constructor(args: SequencePoolingArgs = {}) {
    super(args);
    this.pooling = args.pooling ?? 'mean';
    if (!POOLINGS.includes(this.pooling)) {
      throw new Error(`SequencePooling: pooling must be one of ${POOLINGS.join(', ')}, got ${describeValue(args.pooling)}`);
    }
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    if (shape.length !== 3) throw new Error(`SequencePooling: input must have shape [B, T, F], got ${shapeString(shape)}`);
    return [shape[0], shape[2]];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      if (x.rank !== 3) throw new Error(`SequencePooling: input must have shape [B, T, F], got ${shapeString(x.shape)}`);
      if (this.pooling === 'mean') return tf.mean(x, 1);
      if (this.pooling === 'max') return tf.max(x, 1);
      return tf.squeeze(tf.slice(x, [0, 0, 0], [-1, 1, -1]), [1]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), pooling: this.pooling };
  }
}
tf.serialization.registerClass(SequencePooling);

/** The two factors of n closest to √n, smaller first. */
function squareFactors(n: number): [number, number] {
  let d1 = Math.floor(Math.sqrt(n));
  while (n % d1 !== 0) d1--;
  return [d1, n / d1];
}

/** Checks a head's arguments; returns them resolved. */
function resolveHead(who: string, args: EncoderHeadArgs) {
  const head = args.head ?? 'classification';
  if (!HEADS.includes(head)) throw new Error(`${who}: head must be one of ${HEADS.join(', ')}, got ${describeValue(args.head)}`);
  const pooling = args.pooling ?? 'mean';
  if (!POOLINGS.includes(pooling)) throw new Error(`${who}: pooling must be one of ${POOLINGS.join(', ')}, got ${describeValue(args.pooling)}`);
  if (head === 'classification') {
    if (!(typeof args.numClasses === 'number' && Number.isInteger(args.numClasses) && args.numClasses >= 2)) {
      throw new Error(`${who}: the classification head needs numClasses, an integer ≥ 2, got ${describeValue(args.numClasses)}; or choose head: 'maskedLM' or 'none'`);
    }
  }
  if (head === 'maskedLM') assertPositiveInteger(who, 'vocabSize', args.vocabSize);
  const classifierDropout = args.classifierDropout ?? 0;
  assertRate(who, 'classifierDropout', classifierDropout);
  assertSeed(who, args.seed);
  return { head, pooling, classifierDropout, numClasses: args.numClasses as number, vocabSize: args.vocabSize as number };
}

/** Applies a head to the hidden states [B, T, F]. */
function applyHead(hidden: tfl.SymbolicTensor, resolved: ReturnType<typeof resolveHead>, seed: Seed, weights: HeadWeightArgs): tfl.SymbolicTensor {
  if (resolved.head === 'none') return hidden;
  const kernelInitializer = weights.kernelInitializer ?? tfl.initializers.glorotUniform({ seed });
  if (resolved.head === 'maskedLM') {
    return new PositionwiseDense({ units: resolved.vocabSize, kernelInitializer, kernelRegularizer: weights.kernelRegularizer, biasRegularizer: weights.biasRegularizer, seed }).apply(
      hidden,
    ) as tfl.SymbolicTensor;
  }
  let pooled = new SequencePooling({ pooling: resolved.pooling }).apply(hidden) as tfl.SymbolicTensor;
  if (resolved.classifierDropout > 0) pooled = tfl.layers.dropout({ rate: resolved.classifierDropout, seed }).apply(pooled) as tfl.SymbolicTensor;
  return tfl.layers
    .dense({ units: resolved.numClasses, kernelInitializer, kernelRegularizer: weights.kernelRegularizer, biasRegularizer: weights.biasRegularizer })
    .apply(pooled) as tfl.SymbolicTensor;
}

interface HeadWeightArgs {
  kernelInitializer?: Initializer;
  kernelRegularizer?: Regularizer;
  biasRegularizer?: Regularizer;
}

/**
 * A bidirectional Reformer encoder: tokens int32 [B, T] (T ≤ maxLength) →
 * class logits [B, numClasses], masked-LM logits [B, T, V], or hidden states
 * [B, T, 2M] (see `head`). Compile with {@link classificationLoss} or
 * {@link maskedLMLoss}.
 *
 * ```ts
 * const model = reformerEncoder({ vocabSize: 96, maxLength: 4096, numClasses: 15, pooling: 'mean',
 *   modelSize: 64, attention: 'lsh', nHashes: 2, chunkLength: 64, positionEmbedding: 'axial', seed: 1 });
 * model.compile({ optimizer: tf.train.adam(1e-3), loss: classificationLoss });
 * ```
 */
export function reformerEncoder(args: ReformerEncoderArgs): tfl.LayersModel {
  const who = 'reformerEncoder';
  if (args === null || typeof args !== 'object') throw new Error(`${who}: args must be an object {vocabSize, maxLength, …}, got ${describeValue(args)}`);
  assertPositiveInteger(who, 'vocabSize', args.vocabSize);
  assertPositiveInteger(who, 'maxLength', args.maxLength);
  const resolvedHead = resolveHead(who, { ...args, vocabSize: args.vocabSize });
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
    if (kind !== 'lsh' && kind !== 'full') throw new Error(`${who}: attention[${i}] must be 'lsh' or 'full', got ${describeValue(kind)}`);
  });
  if (args.attentionDropout !== undefined) assertRate(who, 'attentionDropout', args.attentionDropout);
  const numHeads = args.numHeads ?? 4;
  assertPositiveInteger(who, 'numHeads', numHeads);
  if (args.headDim !== undefined) assertPositiveInteger(who, 'headDim', args.headDim);
  else if (modelSize % numHeads !== 0) {
    throw new Error(`${who}: numHeads ${numHeads} must divide modelSize ${modelSize} when headDim is not given; change one, or set headDim`);
  }
  if (args.nHashes !== undefined) assertPositiveInteger(who, 'nHashes', args.nHashes);
  if (args.chunkLength !== undefined) assertPositiveInteger(who, 'chunkLength', args.chunkLength);
  if (args.numChunksBefore !== undefined) assertNonNegativeInteger(who, 'numChunksBefore', args.numChunksBefore);
  if (args.numChunksAfter !== undefined) assertNonNegativeInteger(who, 'numChunksAfter', args.numChunksAfter);
  if (args.nBuckets !== undefined) bucketFactors(who, args.nBuckets);
  const seed = args.seed ?? freshSeed();
  assertSeed(who, seed);
  const seeds = uniformStream(seed, 'reformerEncoder');

  const kernelInitializer = resolveInitializer(who, 'kernelInitializer', args.kernelInitializer);
  const kernelRegularizer = resolveRegularizer(who, 'kernelRegularizer', args.kernelRegularizer) ?? undefined;
  const biasRegularizer = resolveRegularizer(who, 'biasRegularizer', args.biasRegularizer) ?? undefined;
  let layerCount = 0;
  const weightArgs = () => ({
    kernelInitializer: kernelInitializer === null ? undefined : reseeded(kernelInitializer, 1000 + layerCount++),
    kernelRegularizer,
    biasRegularizer,
  });
  const common = { numHeads, headDim: args.headDim, causal: false, dropout: args.attentionDropout ?? 0, useBias: false };
  const blocks = perLayer.map((kind) => ({
    attention:
      kind === 'lsh'
        ? new LSHSelfAttention({
            ...common,
            nHashes: args.nHashes,
            chunkLength: args.chunkLength,
            nBuckets: args.nBuckets,
            numChunksBefore: args.numChunksBefore ?? 1,
            numChunksAfter: args.numChunksAfter ?? 1,
            ...weightArgs(),
            seed: nextSeed(seeds),
          })
        : new FullSelfAttention({ ...common, ...weightArgs(), seed: nextSeed(seeds) }),
    feedForward: new ChunkedFeedForward({
      units: args.feedForwardUnits,
      chunkLength: args.feedForwardChunkLength ?? 4096,
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
    throw new Error(`${who}: positionEmbedding must be 'learned' or 'axial', got ${describeValue(positionKind)}`);
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
  const hidden = new LayerNorm().apply(stack.apply(positions.apply(embedded)) as tfl.SymbolicTensor) as tfl.SymbolicTensor; // [B, T, 2M]
  const headSeed = nextSeed(seeds);
  const headWeights = weightArgs();
  const output = applyHead(hidden, resolvedHead, headSeed, {
    kernelInitializer: headWeights.kernelInitializer,
    kernelRegularizer,
    biasRegularizer,
  });
  return tfl.model({ inputs: tokens, outputs: output, name: args.name });
}

/**
 * The encoder's body with another head: a new model on the same layers (and
 * weights: training one trains the other) whose output is `head`'s. The body
 * is everything up to and including the encoder's final layer norm.
 *
 * ```ts
 * const pretrain = reformerEncoder({ vocabSize: 96, maxLength: 512, head: 'maskedLM', seed: 1 });
 * // … fit pretrain on maskTokens(…) batches, then:
 * const classifier = addEncoderHead(pretrain, { head: 'classification', numClasses: 15, seed: 2 });
 * ```
 *
 * @throws when `encoder` is not a {@link reformerEncoder} model.
 */
export function addEncoderHead(encoder: tfl.LayersModel, args: EncoderHeadArgs): tfl.LayersModel {
  const who = 'addEncoderHead';
  if (!(encoder instanceof tfl.LayersModel)) throw new Error(`${who}: encoder must be a model made by reformerEncoder, got ${describeValue(encoder)}`);
  const norms = encoder.layers.filter((layer) => layer instanceof LayerNorm);
  const stacks = encoder.layers.filter((layer) => layer instanceof ReversibleStack);
  if (norms.length !== 1 || stacks.length !== 1 || stacks[0].attentionLayers().some((layer) => layer.causal)) {
    throw new Error(`${who}: encoder must be a model made by reformerEncoder (one reversible stack, not causal, and its final layer norm)`);
  }
  const vocabSize = encoder.layers.find((layer) => layer.getClassName() === 'Embedding')?.getConfig().inputDim as number | undefined;
  const resolved = resolveHead(who, { ...args, vocabSize: args.vocabSize ?? vocabSize });
  const hidden = norms[0].output as tfl.SymbolicTensor;
  const seed = args.seed ?? freshSeed();
  const output = applyHead(hidden, resolved, seed, {});
  return tfl.model({ inputs: encoder.inputs, outputs: output });
}

/**
 * Cross-entropy from class logits, per example (a `loss` for
 * `model.compile`): `yTrue` one-hot [B, classes] (what `model.fit` takes for
 * this output) or class ids [B].
 *
 * @returns [B]
 */
export function classificationLoss(yTrue: tf.Tensor, logits: tf.Tensor): tf.Tensor {
  return lmLoss(yTrue, logits);
}

/**
 * Cross-entropy of the masked positions, per position (a `loss` for
 * `model.compile`): `yTrue` [B, T, V] is one-hot at the positions to predict
 * and zero elsewhere (what {@link maskTokens} returns), so the other
 * positions count nothing. The mean that `model.fit` reports is over all
 * B·T positions: divide by the masked share for the loss per masked token.
 *
 * @returns [B, T]
 */
export function maskedLMLoss(yTrue: tf.Tensor, logits: tf.Tensor): tf.Tensor {
  return lmLoss(yTrue, logits);
}

/** Options of {@link maskTokens}. */
export interface MaskTokensOptions {
  /** V, the vocabulary size (random replacements are drawn from it). Required. */
  vocabSize: number;
  /** The id of the mask token. Required. */
  maskToken: number;
  /** Share of positions to predict (at least one per row). Default 0.15. */
  rate?: number;
  /** Of the chosen positions, the share replaced by the mask token. Default 0.8. */
  maskShare?: number;
  /** Of the chosen positions, the share replaced by a random token (the rest stay unchanged). Default 0.1. */
  randomShare?: number;
  /** Token ids never chosen and never drawn as random replacements (padding, say). Default: none. */
  specialTokens?: number[];
  /** Seed of the choices. Default: fresh randomness. */
  seed?: Seed;
}

/**
 * A masked-LM batch from token sequences of one length T (BERT's recipe):
 * each position is chosen with probability `rate` (at least one per row);
 * a chosen position's input becomes the mask token (80%), a random token
 * (10%) or stays (10%), and its target is the original token.
 *
 * @param sequences N token lists of one length T, ids in [0, V).
 * @returns inputs int32 [N, T]; targets float32 [N, T, V], one-hot at the
 *   chosen positions and zero elsewhere (for {@link maskedLMLoss});
 *   chosen float32 [N, T] (1 at the chosen positions).
 */
export function maskTokens(
  sequences: number[][],
  options: MaskTokensOptions,
): { inputs: tf.Tensor2D; targets: tf.Tensor3D; chosen: tf.Tensor2D } {
  const who = 'maskTokens';
  if (options === null || typeof options !== 'object') throw new Error(`${who}: options must be an object {vocabSize, maskToken, …}, got ${describeValue(options)}`);
  assertPositiveInteger(who, 'vocabSize', options.vocabSize);
  const vocab = options.vocabSize;
  if (!(Number.isInteger(options.maskToken) && options.maskToken >= 0 && options.maskToken < vocab)) {
    throw new Error(`${who}: maskToken must be a token id in [0, ${vocab - 1}], got ${describeValue(options.maskToken)}`);
  }
  const rate = options.rate ?? 0.15;
  const maskShare = options.maskShare ?? 0.8;
  const randomShare = options.randomShare ?? 0.1;
  for (const [name, value] of [['rate', rate], ['maskShare', maskShare], ['randomShare', randomShare]] as const) {
    if (!(typeof value === 'number' && value >= 0 && value <= 1)) throw new Error(`${who}: ${name} must be in [0, 1], got ${describeValue(value)}`);
  }
  if (rate === 0) throw new Error(`${who}: rate must be above 0 (a batch with nothing to predict), got 0`);
  if (maskShare + randomShare > 1) {
    throw new Error(`${who}: maskShare + randomShare must be at most 1, got ${maskShare} + ${randomShare}`);
  }
  assertSeed(who, options.seed);
  const special = new Set(options.specialTokens ?? []);
  special.add(options.maskToken);
  const replacements = Array.from({ length: vocab }, (_, i) => i).filter((i) => !special.has(i));
  const length = Array.isArray(sequences) && Array.isArray(sequences[0]) ? sequences[0].length : 0;
  if (length < 1 || sequences.some((s) => !Array.isArray(s) || s.length !== length)) {
    throw new Error(`${who}: sequences must be a non-empty list of equally long (≥ 1) token lists, got ${describeValue(sequences)}`);
  }
  sequences.forEach((sequence, n) =>
    sequence.forEach((token, t) => {
      if (!Number.isInteger(token) || token < 0 || token >= vocab) {
        throw new Error(`${who}: sequences[${n}][${t}] must be a token id in [0, ${vocab - 1}], got ${describeValue(token)}`);
      }
    }),
  );
  const random = uniformStream(options.seed, 'maskTokens');
  const count = sequences.length;
  const inputs = new Int32Array(count * length);
  const chosen = new Float32Array(count * length);
  const targetIds: Array<[number, number]> = [];
  sequences.forEach((sequence, n) => {
    const eligible = sequence.map((token, t) => (special.has(token) ? -1 : t)).filter((t) => t >= 0);
    if (eligible.length === 0) {
      throw new Error(`${who}: sequences[${n}] holds only special tokens (the mask token or specialTokens): nothing to predict`);
    }
    const picked = eligible.filter(() => random() < rate);
    if (picked.length === 0) picked.push(eligible[Math.floor(random() * eligible.length)]);
    const isPicked = new Set(picked);
    sequence.forEach((token, t) => {
      let input = token;
      if (isPicked.has(t)) {
        chosen[n * length + t] = 1;
        targetIds.push([n * length + t, token]);
        const u = random();
        if (u < maskShare) input = options.maskToken;
        else if (u < maskShare + randomShare && replacements.length > 0) input = replacements[Math.floor(random() * replacements.length)];
      }
      inputs[n * length + t] = input;
    });
  });
  const targets = new Float32Array(count * length * vocab);
  for (const [position, token] of targetIds) targets[position * vocab + token] = 1;
  return {
    inputs: tf.tensor2d(inputs, [count, length], 'int32'),
    targets: tf.tensor3d(targets, [count, length, vocab], 'float32'),
    chosen: tf.tensor2d(chosen, [count, length], 'float32'),
  };
}
