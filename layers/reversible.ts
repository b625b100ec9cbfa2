/**
 * Reversible residual blocks (RevNet; Gomez et al. 2017, as the Reformer
 * uses them): the input x is duplicated into two streams, and each block
 *
 *     y1 = x1 + F(x2)    F = self-attention (LSH or full) of LayerNorm(x2)
 *     y2 = x2 + G(y1)    G = chunked feed-forward of LayerNorm(y1)
 *
 * can be inverted: x2 = y2 − G(y1), x1 = y1 − F(x2). {@link ReversibleStack}
 * runs all its blocks as one custom-gradient op: the forward pass keeps no
 * activations (only the last block's output), and the backward pass
 * rebuilds each block's inputs from its outputs and runs F and G again under
 * a gradient tape, one block at a time (G one slice of positions at a time).
 * So training memory does not grow with the number of blocks.
 *
 * The recomputation must see the same hash rotations and dropout masks as
 * the forward pass, or the gradients are wrong: each call draws one seed,
 * derives a seed per block and branch from it, and hands the same seeds to
 * both passes (`attendModel`'s and `feedForwardSlice`'s `callSeed`).
 *
 * The weights of F and G are inputs of the custom-gradient op, and its
 * gradient function returns their gradients, so `model.fit` (which asks the
 * tape for the gradients of the model's variables) trains the stack.
 *
 * Legend: B batch, T length, M model size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs, RegularizerFn } from '@tensorflow/tfjs-layers/dist/types.js';
import { normalizeLastAxis } from './layer_norm.js';
import { assertSeed, freshSeed, nextSeed, uniformStream, type Seed, type Uniform } from '../src/random.js';
import { assertBoolean, shapeString } from '../src/validate.js';
import { ChunkedFeedForward, mapPositionChunks } from './chunked_feed_forward.js';
import { SelfAttentionBase } from './self_attention.js';

type Shape = (number | null)[];


/** One block: y1 = x1 + F(x2), y2 = x2 + G(y1). */
export interface ReversibleBlock {
  /** F: self-attention, LSH or full (any {@link SelfAttentionBase}); give each block its own, unbuilt layer. */
  attention: SelfAttentionBase;
  /** G: the feed-forward; give each block its own, unbuilt layer. */
  feedForward: ChunkedFeedForward;
}

/** What {@link ReversibleStack} outputs from its two streams. */
export type ReversibleCombine = 'concat' | 'mean';

/** Arguments of {@link ReversibleStack}. */
export interface ReversibleStackArgs extends LayerArgs {
  /** The blocks, first to last; at least one. Required. */
  blocks: ReversibleBlock[];
  /** Normalise the inputs of F and G (pre-norm, learned scale and offset per branch, as the Reformer). Default true. */
  layerNorm?: boolean;
  /**
   * The output: 'concat' [B, T, 2M] (y1 ‖ y2, as the Reformer) or 'mean'
   * [B, T, M] ((y1 + y2) / 2). Default 'concat'.
   */
  combine?: ReversibleCombine;
  /**
   * Recompute activations in the backward pass (memory independent of
   * depth). false: the same function with ordinary backpropagation, which
   * keeps every block's activations (for comparison). Default true.
   */
  reversible?: boolean;
  /**
   * Seed of the per-call seeds (hash rotations and dropout masks in
   * training). Default: drawn at construction (and saved in the config).
   */
  seed?: Seed;
}

/** Per-call settings of {@link ReversibleStack.forward}. */
export interface ReversibleStackOptions {
  /** Training mode: fresh rotations and dropout, from `callSeed`. Default false. */
  training?: boolean;
  /** Seed of this call's rotations and dropout masks (training). Default: the next from the stack's stream. */
  callSeed?: Seed;
  /** Override the stack's `reversible` for this call. Default: the stack's. */
  reversible?: boolean;
  /** Padding mask, float [B, T] (1 keep, 0 pad). Default: none. */
  mask?: tf.Tensor2D | null;
}

/** Seeds of one call, per block. */
interface BlockSeeds {
  attention: number;
  feedForward: number;
}

/** Scale and offset of one layer norm. */
interface NormWeights {
  gamma: tfl.LayerVariable;
  beta: tfl.LayerVariable;
}

/**
 * Gradients of `f` with respect to `xs`, from inside a gradient function.
 * tfjs-core 4.22's engine does not expect a gradient computation to start
 * while it back-propagates at the outermost level: the inner one replaces the
 * active tape and clears it when done, after which the outer pass fails
 * ("Cannot read properties of null (reading 'forEach')") and leaks the
 * tensors it saved. This keeps the outer tape and puts it back. Gradients
 * that do not exist are zeros.
 */
function gradientsInBackward(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): { value: tf.Tensor; grads: tf.Tensor[] } {
  const engine = tf.engine();
  const outerTape = engine.state.activeTape;
  try {
    const { value, grads } = engine.gradients(f, xs, dy, true);
    return { value, grads: xs.map((x, i) => grads[i] ?? tf.zerosLike(x)) };
  } finally {
    engine.state.activeTape = outerTape;
  }
}

/** Instantiates a layer from `{className, config}`, checking its class. */
function deserializeLayer<L>(entry: tf.serialization.ConfigDictValue, expected: abstract new (...args: never[]) => L, what: string): L {
  const dict = entry as tf.serialization.ConfigDict | null;
  const className = dict?.className;
  const registered = typeof className === 'string' ? tf.serialization.SerializationMap.getMap().classNameMap[className] : undefined;
  if (dict == null || registered === undefined) {
    throw new Error(
      `ReversibleStack: ${what} must be {className, config} of a registered layer, got ${JSON.stringify(className)}; ` +
        `import the module that registers it`,
    );
  }
  const [cls, fromConfig] = registered;
  const layer = fromConfig(cls, (dict.config ?? {}) as tf.serialization.ConfigDict);
  if (!(layer instanceof expected)) throw new Error(`ReversibleStack: ${what} must be a ${expected.name}, got ${className}`);
  return layer;
}

/**
 * A stack of reversible residual blocks, input [B, T, M] (optionally with the
 * padding mask an `embedding({maskZero: true})` propagates), output
 * [B, T, 2M] or [B, T, M] (see `combine`).
 *
 * ```ts
 * const stack = reversibleStack({
 *   blocks: [0, 1].map((i) => ({
 *     attention: lshSelfAttention({ numHeads: 4, nHashes: 2, chunkLength: 32, causal: true, seed: 10 + i }),
 *     feedForward: chunkedFeedForward({ units: 256, chunkLength: 64, seed: 20 + i }),
 *   })),
 *   seed: 1,
 * });
 * ```
 */
export class ReversibleStack extends tfl.layers.Layer {
  static className = 'ReversibleStack';
  readonly blocks: readonly ReversibleBlock[];
  readonly layerNorm: boolean;
  readonly combine: ReversibleCombine;
  readonly reversible: boolean;
  readonly seed: Seed;
  private readonly trainingStream: Uniform;
  private norms: Array<{ attention: NormWeights; feedForward: NormWeights } | null> = [];
  /** M, known once built. */
  private modelSize = 0;

  constructor(args: ReversibleStackArgs) {
    super(args);
    const who = 'ReversibleStack';
    if (!Array.isArray(args.blocks) || args.blocks.length === 0) {
      throw new Error(`${who}: blocks must be a non-empty array of {attention, feedForward}, got ${String(args.blocks)}`);
    }
    const seen = new Set<tfl.layers.Layer>();
    const names = new Set<string>();
    args.blocks.forEach((block, i) => {
      if (!(block.attention instanceof SelfAttentionBase)) {
        throw new Error(`${who}: blocks[${i}].attention must be an LSHSelfAttention or FullSelfAttention layer`);
      }
      if (!(block.feedForward instanceof ChunkedFeedForward)) {
        throw new Error(`${who}: blocks[${i}].feedForward must be a ChunkedFeedForward layer`);
      }
      for (const layer of [block.attention, block.feedForward]) {
        if (seen.has(layer) || names.has(layer.name)) {
          throw new Error(`${who}: layer ${layer.name} appears twice; give every block its own layers (with distinct names)`);
        }
        if (layer.built) {
          throw new Error(`${who}: layer ${layer.name} is already built (used elsewhere); give the stack fresh layers`);
        }
        seen.add(layer);
        names.add(layer.name);
      }
    });
    this.blocks = args.blocks.map((block) => ({ attention: block.attention, feedForward: block.feedForward }));
    this.layerNorm = args.layerNorm ?? true;
    assertBoolean(who, 'layerNorm', this.layerNorm);
    this.combine = args.combine ?? 'concat';
    if (this.combine !== 'concat' && this.combine !== 'mean') {
      throw new Error(`${who}: combine must be 'concat' or 'mean', got ${String(args.combine)}`);
    }
    this.reversible = args.reversible ?? true;
    assertBoolean(who, 'reversible', this.reversible);
    this.seed = args.seed ?? freshSeed();
    assertSeed(who, this.seed);
    this.trainingStream = uniformStream(this.seed, 'training');
    this.supportsMasking = true;
  }

  /** The attention and feed-forward layers, block by block. */
  private subLayers(): tfl.layers.Layer[] {
    // Undefined while the base constructor runs.
    const blocks = this.blocks as readonly ReversibleBlock[] | undefined;
    return blocks === undefined ? [] : blocks.flatMap((block) => [block.attention, block.feedForward]);
  }

  override get trainable(): boolean {
    return super.trainable;
  }

  override set trainable(value: boolean) {
    super.trainable = value;
    for (const layer of this.subLayers()) layer.trainable = value;
  }

  /** The blocks' weights, then the stack's own (the layer norms). */
  override get trainableWeights(): tfl.LayerVariable[] {
    if (!this.trainable) return [];
    return [...this.subLayers().flatMap((layer) => layer.trainableWeights), ...super.trainableWeights];
  }

  override set trainableWeights(weights: tfl.LayerVariable[]) {
    super.trainableWeights = weights;
  }

  override get nonTrainableWeights(): tfl.LayerVariable[] {
    return [...this.subLayers().flatMap((layer) => layer.nonTrainableWeights), ...super.nonTrainableWeights];
  }

  override set nonTrainableWeights(weights: tfl.LayerVariable[]) {
    super.nonTrainableWeights = weights;
  }

  /**
   * The blocks' regularizer penalties, then the stack's own: a model adds
   * the losses of its layers to the training loss, and the blocks' layers
   * are not layers of the model.
   */
  override get losses(): RegularizerFn[] {
    return [...this.subLayers().flatMap((layer) => layer.losses), ...super.losses];
  }

  /** Adds to the stack's own losses (tfjs-layers' addLoss pushes onto `losses`, here a new array). */
  override addLoss(losses: RegularizerFn | RegularizerFn[]): void {
    super.losses.push(...(Array.isArray(losses) ? losses : [losses]));
  }

  /** Passed on to the blocks' layers (tfjs-layers skips initialisers when loading a model). */
  override setFastWeightInitDuringBuild(value: boolean): void {
    super.setFastWeightInitDuringBuild(value);
    for (const layer of this.subLayers()) layer.setFastWeightInitDuringBuild(value);
  }

  private static dataShape(inputShape: Shape | Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    if (shape.length !== 3 || shape[2] == null) {
      throw new Error(`ReversibleStack: input must have shape [B, T, M] with M known, got ${shapeString(shape)}`);
    }
    return shape;
  }

  override build(inputShape: Shape | Shape[]): void {
    const modelSize = ReversibleStack.dataShape(inputShape)[2] as number;
    this.modelSize = modelSize;
    const norm = (name: string): NormWeights => ({
      gamma: this.addWeight(`${name}/gamma`, [modelSize], 'float32', tfl.initializers.ones()),
      beta: this.addWeight(`${name}/beta`, [modelSize], 'float32', tfl.initializers.zeros()),
    });
    this.norms = this.blocks.map((_, i) =>
      this.layerNorm ? { attention: norm(`block_${i}/attention_norm`), feedForward: norm(`block_${i}/feed_forward_norm`) } : null,
    );
    // Applying each layer to a symbolic input builds it inside its own name
    // scope (within the stack's), so every weight gets a distinct name, the
    // same after a reload: saving and loading match weights by name.
    for (const layer of this.subLayers()) {
      if (!layer.built) layer.apply(tfl.input({ batchShape: [null, null, modelSize] }));
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = ReversibleStack.dataShape(inputShape).slice();
    if (this.combine === 'concat') shape[2] = 2 * (shape[2] as number);
    return shape;
  }

  /** The output keeps the input's padding mask. */
  override computeMask(_inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    // tfjs-layers accepts null for "no mask"; its type says Tensor.
    return (Array.isArray(mask) ? mask[0] : mask) as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      const propagated = (Array.isArray(kwargs.mask) ? kwargs.mask[0] : kwargs.mask) as tf.Tensor | undefined;
      const mask = propagated ? (tf.cast(propagated, 'float32') as tf.Tensor2D) : null;
      return this.forward(x, { training: kwargs.training === true, mask });
    });
  }

  /**
   * The whole stack as a function.
   *
   * @param x [B, T, M]
   * @returns [B, T, 2M] ('concat') or [B, T, M] ('mean')
   */
  forward(x: tf.Tensor3D, options: ReversibleStackOptions = {}): tf.Tensor3D {
    if (!this.built) throw new Error('ReversibleStack: the layer is not built; call it on an input (or apply it in a model) first');
    if (x.rank !== 3) throw new Error(`ReversibleStack: input must have shape [B, T, M], got ${shapeString(x.shape)}`);
    if (x.shape[2] !== this.modelSize) {
      throw new Error(
        `ReversibleStack: input must have M = ${this.modelSize} features (the stack was built for [B, T, ${this.modelSize}]), got ${shapeString(x.shape)}`,
      );
    }
    const training = options.training === true;
    const seeds = this.blockSeeds(training ? (options.callSeed ?? nextSeed(this.trainingStream)) : 0);
    const mask = options.mask ?? null;
    const reversible = options.reversible ?? this.reversible;
    return tf.tidy(() => {
      const pair = reversible ? this.reversiblePair(x, mask, training, seeds) : this.plainPair(x, mask, training, seeds);
      if (this.combine === 'concat') return pair;
      const [y1, y2] = tf.split(pair, 2, 2);
      return tf.mul(tf.add(y1, y2), 0.5) as tf.Tensor3D;
    });
  }

  /**
   * Inference through the blocks with each block's attention supplied by
   * `attend(i, input)` (input: the block's layer-normalised x2, [B, T, M];
   * returns F's output [B, T, M]): cached generation runs its own attention
   * here. With `attend = (i, x) => attention_i.attendModel(x, null)` it is
   * `forward(x)` in inference.
   *
   * @param x [B, T, M]
   * @returns [B, T, 2M] ('concat') or [B, T, M] ('mean')
   */
  inferWithAttention(x: tf.Tensor3D, attend: (block: number, input: tf.Tensor3D) => tf.Tensor3D): tf.Tensor3D {
    if (!this.built) throw new Error('ReversibleStack: the layer is not built; call it on an input (or apply it in a model) first');
    const seeds = this.blockSeeds(0);
    return tf.tidy(() => {
      let [x1, x2] = [x, x];
      for (let i = 0; i < this.blocks.length; i++) {
        const norms = this.norms[i];
        const y1 = tf.add(x1, attend(i, norms ? this.normalize(norms.attention, x2) : x2)) as tf.Tensor3D;
        const y2 = tf.add(x2, this.feedForwardChunked(i, y1, false, seeds)) as tf.Tensor3D;
        [x1, x2] = [y1, y2];
      }
      if (this.combine === 'concat') return tf.concat([x1, x2], 2) as tf.Tensor3D;
      return tf.mul(tf.add(x1, x2), 0.5) as tf.Tensor3D;
    });
  }

  /** Per-block seeds of a call (unused in inference). */
  private blockSeeds(callSeed: number): BlockSeeds[] {
    const stream = uniformStream(callSeed, 'blocks');
    return this.blocks.map(() => ({ attention: nextSeed(stream), feedForward: nextSeed(stream) }));
  }

  private normalize(weights: NormWeights, x: tf.Tensor3D): tf.Tensor3D {
    return normalizeLastAxis(x, weights.gamma.read() as tf.Tensor1D, weights.beta.read() as tf.Tensor1D);
  }

  /** F of block i: [B, T, M] → [B, T, M]. */
  private attentionBranch(i: number, x: tf.Tensor3D, mask: tf.Tensor2D | null, training: boolean, seeds: BlockSeeds[]): tf.Tensor3D {
    const norms = this.norms[i];
    const input = norms ? this.normalize(norms.attention, x) : x;
    return this.blocks[i].attention.attendModel(input, mask, { training, callSeed: seeds[i].attention });
  }

  /** G of block i on positions offset … offset + C − 1: [B, C, M] → [B, C, M]. */
  private feedForwardBranch(i: number, x: tf.Tensor3D, offset: number, training: boolean, seeds: BlockSeeds[]): tf.Tensor3D {
    const norms = this.norms[i];
    const input = norms ? this.normalize(norms.feedForward, x) : x;
    return this.blocks[i].feedForward.feedForwardSlice(input, { training, callSeed: seeds[i].feedForward, positionOffset: offset });
  }

  /** G of block i over all positions, a slice at a time. */
  private feedForwardChunked(i: number, x: tf.Tensor3D, training: boolean, seeds: BlockSeeds[]): tf.Tensor3D {
    return mapPositionChunks(x, this.blocks[i].feedForward.chunkLength, (slice, start) =>
      this.feedForwardBranch(i, slice, start, training, seeds),
    );
  }

  /** Ordinary residual blocks with ordinary backpropagation: [B, T, 2M]. */
  private plainPair(x: tf.Tensor3D, mask: tf.Tensor2D | null, training: boolean, seeds: BlockSeeds[]): tf.Tensor3D {
    let [x1, x2] = [x, x];
    for (let i = 0; i < this.blocks.length; i++) {
      const y1 = tf.add(x1, this.attentionBranch(i, x2, mask, training, seeds)) as tf.Tensor3D;
      const y2 = tf.add(x2, this.feedForwardChunked(i, y1, training, seeds)) as tf.Tensor3D;
      [x1, x2] = [y1, y2];
    }
    return tf.concat([x1, x2], 2);
  }

  /** The trainable weights of block i's F (norm, attention) and G (norm, feed-forward), as variables. */
  private branchVariables(i: number): { attention: tf.Tensor[]; feedForward: tf.Tensor[] } {
    const trainable = new Set(this.trainableWeights);
    const norms = this.norms[i];
    const pick = (norm: NormWeights | undefined, layer: tfl.layers.Layer): tf.Tensor[] =>
      [...(norm ? [norm.gamma, norm.beta] : []), ...layer.trainableWeights]
        .filter((w) => trainable.has(w))
        .map((w) => w.read());
    return {
      attention: pick(norms?.attention, this.blocks[i].attention),
      feedForward: pick(norms?.feedForward, this.blocks[i].feedForward),
    };
  }

  /** The blocks as one custom-gradient op: [B, T, 2M], activations recomputed in the backward pass. */
  private reversiblePair(x: tf.Tensor3D, mask: tf.Tensor2D | null, training: boolean, seeds: BlockSeeds[]): tf.Tensor3D {
    const variables = this.trainableWeights.map((w) => w.read());
    const run = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const input = args[0] as tf.Tensor3D;
      const save = args[args.length - 1] as tf.GradSaveFunc;
      // Not taped (a custom op's forward pass), so nothing is kept but y.
      let [x1, x2] = [input, input];
      for (let i = 0; i < this.blocks.length; i++) {
        const y1 = tf.tidy(() => tf.add(x1, this.attentionBranch(i, x2, mask, training, seeds)) as tf.Tensor3D);
        const y2 = tf.tidy(() => tf.add(x2, this.feedForwardChunked(i, y1, training, seeds)) as tf.Tensor3D);
        if (x1 !== input) tf.dispose([x1, x2]);
        [x1, x2] = [y1, y2];
      }
      const y = tf.concat([x1, x2], 2);
      tf.dispose([x1, x2]);
      // Saved tensors live until the backward pass (the caller's mask may not).
      save(mask === null ? [y] : [y, mask]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          this.backward(saved[0] as tf.Tensor3D, dy as tf.Tensor3D, variables, (saved[1] as tf.Tensor2D | undefined) ?? null, training, seeds),
      };
    });
    return run(x, ...variables) as tf.Tensor3D;
  }

  /**
   * The backward pass: from the output y = [y1 ‖ y2] and its gradient, block
   * by block from the last, rebuild the block's inputs and accumulate the
   * gradients of its weights. Returns [dx, ...d(variables)].
   */
  private backward(
    y: tf.Tensor3D,
    dy: tf.Tensor3D,
    variables: tf.Tensor[],
    mask: tf.Tensor2D | null,
    training: boolean,
    seeds: BlockSeeds[],
  ): tf.Tensor[] {
    return tf.tidy(() => {
      const weightGrads = new Map<number, tf.Tensor>(); // by variable id
      let [y1, y2] = tf.split(y, 2, 2) as tf.Tensor3D[];
      let [dy1, dy2] = tf.split(dy, 2, 2) as tf.Tensor3D[];
      for (let i = this.blocks.length - 1; i >= 0; i--) {
        const branchVariables = this.branchVariables(i);
        const step = tf.tidy(() => {
          // y2 = x2 + G(y1): G's value gives x2; its gradients give y1's and G's weights'.
          const g = this.feedForwardGrads(i, y1, dy2, branchVariables.feedForward, training, seeds);
          const x2 = tf.sub(y2, g.value) as tf.Tensor3D;
          const dy1Total = tf.add(dy1, g.inputGrad) as tf.Tensor3D;
          // y1 = x1 + F(x2)
          const f = gradientsInBackward(() => this.attentionBranch(i, x2, mask, training, seeds), [x2, ...branchVariables.attention], dy1Total);
          const x1 = tf.sub(y1, f.value) as tf.Tensor3D;
          const dx2 = tf.add(dy2, f.grads[0]) as tf.Tensor3D;
          return { x1, x2, dx1: dy1Total, dx2, weights: [...g.weightGrads, ...f.grads.slice(1)] };
        });
        tf.dispose([y1, y2, dy1, dy2]);
        [y1, y2, dy1, dy2] = [step.x1, step.x2, step.dx1, step.dx2];
        [...branchVariables.feedForward, ...branchVariables.attention].forEach((v, j) => {
          const previous = weightGrads.get(v.id);
          weightGrads.set(v.id, previous === undefined ? step.weights[j] : tf.add(previous, step.weights[j]));
          if (previous !== undefined) tf.dispose([previous, step.weights[j]]);
        });
      }
      const dx = tf.add(dy1, dy2); // x1 = x2 = x
      return [dx, ...variables.map((v) => weightGrads.get(v.id) ?? tf.zerosLike(v))];
    });
  }

  /** G's value and gradients (input, weights), one slice of positions at a time. */
  private feedForwardGrads(
    i: number,
    y1: tf.Tensor3D,
    dy2: tf.Tensor3D,
    weights: tf.Tensor[],
    training: boolean,
    seeds: BlockSeeds[],
  ): { value: tf.Tensor3D; inputGrad: tf.Tensor3D; weightGrads: tf.Tensor[] } {
    const length = y1.shape[1];
    const chunkLength = Math.min(this.blocks[i].feedForward.chunkLength ?? length, length);
    const values: tf.Tensor[] = [];
    const inputGrads: tf.Tensor[] = [];
    let weightGrads: tf.Tensor[] = [];
    for (let start = 0; start < length; start += chunkLength) {
      const size = Math.min(chunkLength, length - start);
      const part = tf.tidy(() => {
        const slice = size === length ? y1 : (tf.slice(y1, [0, start, 0], [-1, size, -1]) as tf.Tensor3D);
        const dySlice = size === length ? dy2 : tf.slice(dy2, [0, start, 0], [-1, size, -1]);
        return gradientsInBackward(() => this.feedForwardBranch(i, slice, start, training, seeds), [slice, ...weights], dySlice);
      });
      values.push(part.value);
      inputGrads.push(part.grads[0]);
      const partWeights = part.grads.slice(1);
      if (start === 0) {
        weightGrads = partWeights;
      } else {
        weightGrads = weightGrads.map((g, j) => {
          const sum = tf.add(g, partWeights[j]);
          tf.dispose([g, partWeights[j]]);
          return sum;
        });
      }
    }
    const value = values.length === 1 ? values[0] : tf.concat(values, 1);
    const inputGrad = inputGrads.length === 1 ? inputGrads[0] : tf.concat(inputGrads, 1);
    if (values.length > 1) tf.dispose([...values, ...inputGrads]);
    return { value: value as tf.Tensor3D, inputGrad: inputGrad as tf.Tensor3D, weightGrads };
  }

  override getConfig(): tf.serialization.ConfigDict {
    const layerConfig = (layer: tfl.layers.Layer): tf.serialization.ConfigDict => ({
      className: layer.getClassName(),
      config: layer.getConfig(),
    });
    return {
      ...super.getConfig(),
      blocks: this.blocks.map((block) => ({ attention: layerConfig(block.attention), feedForward: layerConfig(block.feedForward) })),
      layerNorm: this.layerNorm,
      combine: this.combine,
      reversible: this.reversible,
      seed: this.seed,
    };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const entries = config.blocks;
    if (!Array.isArray(entries)) throw new Error('ReversibleStack: the config has no blocks array');
    const blocks: ReversibleBlock[] = entries.map((entry, i) => {
      const dict = entry as tf.serialization.ConfigDict;
      return {
        attention: deserializeLayer(dict.attention, SelfAttentionBase, `blocks[${i}].attention`),
        feedForward: deserializeLayer(dict.feedForward, ChunkedFeedForward, `blocks[${i}].feedForward`),
      };
    });
    // The constructor takes layers where the config has their configs.
    return new cls({ ...config, blocks } as unknown as tf.serialization.ConfigDict);
  }

  /** The attention layers of the blocks, first to last (to change an LSH layer's `nHashes` for evaluation, say). */
  attentionLayers(): SelfAttentionBase[] {
    return this.blocks.map((block) => block.attention);
  }
}
tf.serialization.registerClass(ReversibleStack);

/** Creates a {@link ReversibleStack} layer. */
export function reversibleStack(args: ReversibleStackArgs): ReversibleStack {
  return new ReversibleStack(args);
}
