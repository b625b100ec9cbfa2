/**
 * Cached generation: a model run one new position at a time, each attention
 * layer keeping a cache of the positions before (src/cached_attention.ts).
 * {@link generate} uses it by default; {@link cachedGenerationSupport} says
 * whether a model can be run so, and why not.
 *
 * A model qualifies when it is one chain of layers, each of which either
 * works position by position (embedding without maskZero, dense,
 * PositionwiseDense, LayerNorm, ChunkedFeedForward, dropout, activation),
 * adds a position embedding (learned or axial: the new position's row is
 * added), or attends causally (LSHSelfAttention or FullSelfAttention with
 * `causal: true`, alone or in a ReversibleStack): what `reformerLM` builds.
 *
 * Legend: B batch, T length, M model size, V vocabulary size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { resolveLSHSettings, validLength } from '../src/attention.js';
import { FullAttentionCache, LSHAttentionCache } from '../src/cached_attention.js';
import { randomRotations } from '../src/hashing.js';
import { purposeSeed } from '../src/random.js';
import { ChunkedFeedForward } from './chunked_feed_forward.js';
import { LayerNorm } from './layer_norm.js';
import { AxialPositionEmbedding, PositionEmbedding } from './position_embeddings.js';
import { PositionwiseDense } from './positionwise_dense.js';
import { ReversibleStack } from './reversible.js';
import { FullSelfAttention, LSHSelfAttention, type SelfAttentionBase } from './self_attention.js';

/** One layer of the chain: the prompt at once, then one position at a time. */
interface Stage {
  /** The prompt's positions 0 … T − 1: [B, T, …] → [B, T, …]; fills the caches. */
  prefill(x: tf.Tensor): tf.Tensor;
  /** One new position p: [B, 1, …] → [B, 1, …]. */
  step(x: tf.Tensor, position: number): tf.Tensor;
  dispose(): void;
}

/** tfjs-layers classes that work position by position in inference. */
const POSITIONWISE_CLASSES = new Set(['Dense', 'Dropout', 'Activation', 'SpatialDropout1D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout']);

/** Whether the attention layer can be cached, or why not. */
function attentionProblem(layer: tfl.layers.Layer): string | null {
  const name = layer.getClassName();
  if (name !== 'LSHSelfAttention' && name !== 'FullSelfAttention') {
    return `attention layer ${layer.name} is a ${name}; only LSHSelfAttention and FullSelfAttention have caches`;
  }
  if (!(layer as SelfAttentionBase).causal) {
    return `attention layer ${layer.name} is not causal (a position would see later ones, which the cache cannot give it)`;
  }
  return null;
}

/** Why one layer cannot run position by position, or null. */
function layerProblem(layer: tfl.layers.Layer): string | null {
  const name = layer.getClassName();
  if (name === 'Embedding') {
    return (layer.getConfig() as { maskZero?: boolean }).maskZero === true
      ? `embedding ${layer.name} has maskZero (token 0 would be padding inside a prompt); build it without`
      : null;
  }
  if (layer instanceof ReversibleStack) {
    for (const attention of layer.attentionLayers()) {
      const problem = attentionProblem(attention);
      if (problem !== null) return problem;
    }
    return null;
  }
  if (layer instanceof LSHSelfAttention || layer instanceof FullSelfAttention) return attentionProblem(layer);
  if (layer instanceof PositionEmbedding || layer instanceof AxialPositionEmbedding) return null;
  if (layer instanceof LayerNorm || layer instanceof PositionwiseDense || layer instanceof ChunkedFeedForward) return null;
  if (POSITIONWISE_CLASSES.has(name)) return null;
  return `layer ${layer.name} (${name}) is not one the cached path knows to work position by position`;
}

/** The model's layers as one chain (input layer left out), or why it is not one. */
function chain(model: tfl.LayersModel): tfl.layers.Layer[] | string {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    return `the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs; the cached path takes one of each`;
  }
  const layers = model.layers.filter((layer) => layer.getClassName() !== 'InputLayer');
  if (layers.length === 0) return 'the model has no layers';
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i];
    const nodes = layer.inboundNodes;
    const inbound = nodes.length === 1 ? nodes[0].inboundLayers : [];
    const previous = i === 0 ? null : layers[i - 1];
    const fedByPrevious =
      inbound.length === 1 && (previous === null ? inbound[0].getClassName() === 'InputLayer' : inbound[0] === previous);
    if (!fedByPrevious) return `layer ${layer.name} is not fed by the one before it alone (the model is not one chain of layers)`;
    const problem = layerProblem(layer);
    if (problem !== null) return problem;
  }
  return layers;
}

/**
 * Whether {@link generate} can run `model` with caches (`{supported: true}`)
 * or, when not, why (`{supported: false, reason}`); `generate` then runs
 * uncached, or throws when `cache: true` was asked for.
 */
export function cachedGenerationSupport(model: tfl.LayersModel): { supported: true } | { supported: false; reason: string } {
  const layers = chain(model);
  return typeof layers === 'string' ? { supported: false, reason: layers } : { supported: true };
}

/** The cache of one attention layer, made at the prefill (it needs the head sizes). */
class CachedAttention {
  private cache: FullAttentionCache | LSHAttentionCache | null = null;

  constructor(
    private readonly layer: SelfAttentionBase,
    /** The length the LSH buckets are sized for (as the layer sizes them for a call of that length). */
    private readonly bucketLength: number,
  ) {}

  prefill(x: tf.Tensor3D): tf.Tensor3D {
    const out = this.layer.attendModel(x, null);
    const { qk, v } = this.layer.projectInputs(x);
    const [batch, heads, , dim] = qk.shape;
    this.cache = this.makeCache(batch, heads, dim, v.shape[3]);
    this.cache.append(qk, v);
    tf.dispose([qk, v]);
    return out;
  }

  private makeCache(batch: number, heads: number, dim: number, valueDim: number): FullAttentionCache | LSHAttentionCache {
    const sizes = { batch, heads, dim, valueDim, capacity: Math.min(this.bucketLength, 1 << 16) };
    const layer = this.layer;
    // Exact mode (one chunk per round) is full attention: its cache is full attention's.
    if (!(layer instanceof LSHSelfAttention) || layer.oneChunkPerRound) return new FullAttentionCache(sizes);
    const padded = validLength(this.bucketLength, layer.nHashes, layer.chunkLength);
    const { nBuckets } = resolveLSHSettings(layer.getClassName(), padded, dim, {
      nHashes: layer.nHashes,
      chunkLength: layer.chunkLength,
      nBuckets: layer.nBuckets,
      hashFamily: layer.hashFamily,
    });
    // The layer's inference rotations (LSHSelfAttention.attend draws them from the same seed).
    const rotations = randomRotations({
      dim,
      nHashes: layer.nHashes,
      nBuckets,
      hashFamily: layer.hashFamily,
      seed: purposeSeed(layer.seed, 'inference'),
    });
    try {
      return new LSHAttentionCache({ ...sizes, rotations, nBuckets, hashFamily: layer.hashFamily });
    } finally {
      rotations.dispose();
    }
  }

  step(x: tf.Tensor3D): tf.Tensor3D {
    if (this.cache === null) throw new Error('generate: internal error, a step before the prefill');
    const { qk, v } = this.layer.projectInputs(x);
    // An LSH layer computes exact attention while the context is at or below its fullAttentionThreshold.
    if (this.cache instanceof LSHAttentionCache && this.layer instanceof LSHSelfAttention) {
      this.cache.exact = this.layer.usesFullAttention(this.cache.length + 1);
    }
    const attended = this.cache.next(qk, v);
    const out = this.layer.projectOutput(attended);
    tf.dispose([qk, v, attended]);
    return out;
  }

  dispose(): void {
    this.cache?.dispose();
    this.cache = null;
  }
}

/** A layer that works position by position. */
function positionwiseStage(layer: tfl.layers.Layer): Stage {
  const run = (x: tf.Tensor) => layer.apply(x) as tf.Tensor;
  return { prefill: run, step: run, dispose: () => {} };
}

/** A position embedding: the prompt through the layer, then row p of its table for position p. */
function positionStage(layer: PositionEmbedding | AxialPositionEmbedding): Stage {
  let table: Float32Array | null = null;
  let width = 0;
  return {
    prefill: (x) => layer.apply(x) as tf.Tensor,
    step: (x, position) => {
      if (position >= layer.maxLength) {
        throw new Error(`generate: position ${position} is past the ${layer.maxLength} positions of ${layer.name}`);
      }
      if (table === null) {
        // Read once: slicing the table on the backend would copy it whole at every step.
        const full = layer.positionTable(layer.maxLength);
        table = full.dataSync() as Float32Array;
        width = full.shape[1];
        full.dispose();
      }
      const row = tf.tensor3d(table.subarray(position * width, (position + 1) * width), [1, 1, width]);
      const out = tf.add(x, row);
      row.dispose();
      return out;
    },
    dispose: () => {
      table = null;
    },
  };
}

/** A causal attention layer on its own. */
function attentionStage(layer: SelfAttentionBase, bucketLength: number): Stage {
  const cached = new CachedAttention(layer, bucketLength);
  return {
    prefill: (x) => cached.prefill(x as tf.Tensor3D),
    step: (x) => cached.step(x as tf.Tensor3D),
    dispose: () => cached.dispose(),
  };
}

/** A reversible stack, each block's attention cached. */
function stackStage(stack: ReversibleStack, bucketLength: number): Stage {
  const cached = stack.attentionLayers().map((layer) => new CachedAttention(layer, bucketLength));
  return {
    prefill: (x) => stack.inferWithAttention(x as tf.Tensor3D, (i, input) => cached[i].prefill(input)),
    step: (x) => stack.inferWithAttention(x as tf.Tensor3D, (i, input) => cached[i].step(input)),
    dispose: () => cached.forEach((c) => c.dispose()),
  };
}

/**
 * A model run with caches: `prefill` the prompt once, then `step` one token
 * at a time. Made by {@link startCachedGeneration}.
 */
export interface CachedGeneration {
  /** Positions seen so far. */
  readonly length: number;
  /** The prompt, int32 [B, T] → the model's output [B, T, V]; only once, first. */
  prefill(tokens: tf.Tensor2D): tf.Tensor3D;
  /** The next token of each row, int32 [B, 1] → the output at its position [B, 1, V]. */
  step(tokens: tf.Tensor2D): tf.Tensor3D;
  /** Frees the caches. */
  dispose(): void;
}

/**
 * Starts a cached run of `model` (see {@link cachedGenerationSupport}).
 *
 * @param bucketLength the length LSH layers without a fixed `nBuckets` size
 *   their buckets for (the layer's own default at that length): the longest
 *   context the run will reach, or the model's maxLength.
 * @throws when the model cannot be run with caches, naming the layer and why.
 */
export function startCachedGeneration(model: tfl.LayersModel, bucketLength: number): CachedGeneration {
  const layers = chain(model);
  if (typeof layers === 'string') throw new Error(`generate: cache: true, but ${layers}; pass cache: false`);
  const stages: Stage[] = layers.map((layer) => {
    if (layer instanceof ReversibleStack) return stackStage(layer, bucketLength);
    if (layer instanceof LSHSelfAttention || layer instanceof FullSelfAttention) return attentionStage(layer, bucketLength);
    if (layer instanceof PositionEmbedding || layer instanceof AxialPositionEmbedding) return positionStage(layer);
    return positionwiseStage(layer);
  });
  let length = 0;
  let started = false;
  const run = (tokens: tf.Tensor2D, through: (stage: Stage, x: tf.Tensor) => tf.Tensor) =>
    tf.tidy(() => stages.reduce<tf.Tensor>((x, stage) => through(stage, x), tokens) as tf.Tensor3D);
  return {
    get length() {
      return length;
    },
    prefill(tokens) {
      if (started) throw new Error('generate: internal error, prefill called twice');
      started = true;
      const out = run(tokens, (stage, x) => stage.prefill(x));
      length = tokens.shape[1];
      return out;
    },
    step(tokens) {
      if (!started) throw new Error('generate: internal error, a step before the prefill');
      const position = length;
      const out = run(tokens, (stage, x) => stage.step(x, position));
      length += 1;
      return out;
    },
    dispose() {
      stages.forEach((stage) => stage.dispose());
    },
  };
}
