/**
 * Multi-head shared-QK self-attention layers: {@link LSHSelfAttention} and
 * {@link FullSelfAttention}. They have the same weights (one shared QK
 * projection, a V projection, an output projection) and interface, so one can
 * replace the other in a model, or share its weights for a comparison. The
 * attention itself is `src/`'s; these classes add only weights, config and
 * padding.
 *
 * Legend: B batch, T length, M model size (dModel), H heads, D head size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import {
  DEFAULT_FULL_ATTENTION_THRESHOLD,
  fullAttention,
  localAttention,
  lshAttention,
  resolveLSHSettings,
  validLength,
  type AttentionResult,
  type AttentionWeights,
} from '../src/attention.js';
import { randomRotations, type HashFamilyName, type NBuckets } from '../src/hashing.js';
import { assertSeed, freshSeed, nextSeed, purposeSeed, uniformStream, type Seed, type Uniform } from '../src/random.js';
import { checkMask } from '../src/hashing.js';
import { matMul2d } from '../src/ops.js';
import {
  assertBoolean,
  assertFinite,
  assertMemoryLimit,
  assertNonNegativeInteger,
  assertPositiveInteger,
  assertRate,
  shapeString,
} from '../src/validate.js';
import {
  biasInitializerFor,
  denseWeightConfig,
  kernelInitializerFor,
  resolveDenseWeightArgs,
  type DenseWeightArgs,
  type DenseWeightSettings,
} from './weight_args.js';

type Shape = (number | null)[];

/** Arguments both attention layers take (the weight arguments as tf.layers.dense takes them). */
export interface SelfAttentionArgs extends LayerArgs, DenseWeightArgs {
  /** H, the number of heads. Default 8. */
  numHeads?: number;
  /** D, the size of each head. Default: M / H (the input's last dimension over numHeads). */
  headDim?: number;
  /** Mask keys after each query's position (for language models). Default false. */
  causal?: boolean;
  /** Dropout rate on the attention weights in training, in [0, 1). Default 0. */
  dropout?: number;
  /**
   * Add biases to the QK, V and output projections, as tf.layers.dense
   * does (the Reformer's attention has none; `reformerLM` builds it so).
   * Default true.
   */
  useBias?: boolean;
  /**
   * Seed of the weight initialisers, the hash rotations and dropout:
   * the same seed makes the same layer. Default: drawn at construction
   * (and saved in the config, so a reloaded layer behaves the same).
   */
  seed?: Seed;
  /**
   * Refuse calls whose attention is estimated to need more than this many
   * bytes, before they run (the attention functions' option). Default: 3.25
   * GiB on wasm (its heap corrupts past ≈3.6 GiB), 16 GiB elsewhere.
   */
  memoryLimitBytes?: number;
  /**
   * On every call, check the input and the projected queries/keys and values
   * for NaN and ±Infinity, and throw naming the first (costs one pass over
   * each and a read-back of a boolean). Default false.
   */
  checkFinite?: boolean;
  /**
   * Return the attention weights next to the output: the layer's call then
   * returns [output [B, T, M], positions int32 [B, H, T, S], weights
   * [B, H, T, S]] (the functions' {@link AttentionWeights}: per query, the
   * key positions it saw, ascending, −1 in unused slots, and their weights
   * combined over rounds, before dropout; `denseAttention` makes [B, H, T, T]).
   * For inspection: the weights are read back to the host and carry no
   * gradient. Default false.
   */
  returnAttention?: boolean;
}

/** Arguments of {@link LSHSelfAttention}. */
export interface LSHSelfAttentionArgs extends SelfAttentionArgs {
  /** R, hash rounds. More rounds: closer to full attention, linearly slower. 4+ for evaluation quality. Default 1. */
  nHashes?: number;
  /** C, the chunk length. Default 64. */
  chunkLength?: number;
  /** K buckets (even), or factors [K1, K2, …]. Default: 2·T/C for each input length (factorised above 128). */
  nBuckets?: NBuckets;
  /** Chunks before its own that each chunk attends to. Default 1. */
  numChunksBefore?: number;
  /** Chunks after its own that each chunk attends to. Default 0. */
  numChunksAfter?: number;
  /** 'rotation' (the Reformer's angular LSH) or 'simhash' (random hyperplanes; K a power of two). Default 'rotation'. */
  hashFamily?: HashFamilyName;
  /**
   * Exact mode, for equivalence tests: every call uses one chunk per hash
   * round (chunkLength = the call's T, no padding), so every query sees every
   * key and the layer computes full attention, to float32 rounding, at full
   * attention's O(T²) cost (a window of neighbouring chunks holds whole
   * rounds, so each key counts the same number of times and the softmax is
   * unchanged). chunkLength is then unused; the hashing still
   * runs (with nBuckets as given, or 2), but the result does not depend on
   * it. `exactLSH(model)` from `tfjs-lsh-attention/testing` sets it on a copy
   * of a model. Default false.
   */
  oneChunkPerRound?: boolean;
  /**
   * At or below this input length T, compute exact attention
   * (`fullAttention`: the same logits and masks over all T keys), which is
   * faster there than LSH attention; 0 turns it off (always LSH). Not used
   * in exact mode (oneChunkPerRound). Default
   * {@link DEFAULT_FULL_ATTENTION_THRESHOLD} (1024: the crossover measured on
   * wasm, B=1 H=8 D=64 R=4 C=64; see the README).
   */
  fullAttentionThreshold?: number;
  /** false: count a key a query sees several times once (reformer-pytorch's `allow_duplicate_attention=False`; see `lshAttention`). Default true. */
  allowDuplicateAttention?: boolean;
  /** false: a query attends only to keys of its own bucket in that round (`attend_across_buckets=False`). Default true. */
  attendAcrossBuckets?: boolean;
}

/** Per-call settings the layers expose for recomputation (reversible blocks). */
export interface AttendOptions {
  /** Training mode: fresh rotations and dropout. Default false. */
  training?: boolean;
  /** Seed for this call's rotations and dropout (training mode). Default: the next from the layer's stream. */
  callSeed?: Seed;
  /**
   * Causal masking for this call only (the MultiHeadAttention-style layers'
   * `useCausalMask`). Default: the layer's `causal`.
   */
  causal?: boolean;
}

/** The base: weights, shapes, masks and padding; subclasses supply the attention. */
export abstract class SelfAttentionBase extends tfl.layers.Layer {
  readonly numHeads: number;
  readonly headDimArg: number | undefined;
  readonly causal: boolean;
  readonly dropout: number;
  readonly useBias: boolean;
  /** The initializers and regularizers of the kernels and biases (null: the default). */
  readonly weightSettings: DenseWeightSettings;
  readonly seed: Seed;
  readonly memoryLimitBytes: number | undefined;
  readonly checkFinite: boolean;
  /** See {@link SelfAttentionArgs.returnAttention}. */
  readonly returnAttention: boolean;
  /** The stream of per-step seeds in training. */
  protected readonly trainingStream: Uniform;
  protected headDim = 0;
  private qkKernel: tfl.LayerVariable | null = null;
  private vKernel: tfl.LayerVariable | null = null;
  private outKernel: tfl.LayerVariable | null = null;
  private qkBias: tfl.LayerVariable | null = null;
  private vBias: tfl.LayerVariable | null = null;
  private outBias: tfl.LayerVariable | null = null;

  constructor(args: SelfAttentionArgs, who: string) {
    super(args);
    this.numHeads = args.numHeads ?? 8;
    assertPositiveInteger(who, 'numHeads', this.numHeads);
    this.headDimArg = args.headDim;
    if (args.headDim !== undefined) assertPositiveInteger(who, 'headDim', args.headDim);
    this.causal = args.causal ?? false;
    assertBoolean(who, 'causal', this.causal);
    this.memoryLimitBytes = args.memoryLimitBytes;
    if (args.memoryLimitBytes !== undefined) assertMemoryLimit(who, args.memoryLimitBytes);
    this.checkFinite = args.checkFinite ?? false;
    assertBoolean(who, 'checkFinite', this.checkFinite);
    this.returnAttention = args.returnAttention ?? false;
    assertBoolean(who, 'returnAttention', this.returnAttention);
    this.dropout = args.dropout ?? 0;
    assertRate(who, 'dropout', this.dropout);
    this.useBias = args.useBias ?? true;
    this.weightSettings = resolveDenseWeightArgs(who, args);
    this.seed = args.seed ?? freshSeed();
    assertSeed(who, this.seed);
    this.trainingStream = uniformStream(this.seed, 'training');
    this.supportsMasking = true;
  }

  /** Input shape(s): [B, T, M], or [[B, T, M], [B, T]] with a padding mask. */
  private static dataShape(inputShape: Shape | Shape[]): Shape {
    return Array.isArray(inputShape[0]) ? (inputShape[0] as Shape) : (inputShape as Shape);
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = SelfAttentionBase.dataShape(inputShape);
    if (shape.length !== 3 || shape[2] == null) {
      throw new Error(
        `${this.getClassName()}: input must have shape [B, T, M] with M known, got ${shapeString(shape)}`,
      );
    }
    const modelSize = shape[2];
    if (this.headDimArg === undefined && modelSize % this.numHeads !== 0) {
      // Not floor(M / H): the heads would silently leave features out (3 heads of 5 for M = 16).
      const divisors = Array.from({ length: modelSize }, (_, i) => i + 1).filter((h) => modelSize % h === 0);
      const problem =
        this.numHeads > modelSize
          ? `numHeads ${this.numHeads} is larger than the model size ${modelSize}`
          : `numHeads ${this.numHeads} must divide the model size ${modelSize} when headDim is not given ` +
            `(${this.numHeads} heads of ${Math.floor(modelSize / this.numHeads)} would leave ${modelSize % this.numHeads} features out)`;
      throw new Error(
        `${this.getClassName()}: ${problem}; use numHeads in ${divisors.slice(0, 12).join(', ')}${divisors.length > 12 ? ', …' : ''}, ` +
          `or set headDim`,
      );
    }
    this.headDim = this.headDimArg ?? modelSize / this.numHeads;
    const inner = this.numHeads * this.headDim;
    const settings = this.weightSettings;
    const kernel = (name: string, shape: number[], salt: number) =>
      this.addWeight(name, shape, 'float32', kernelInitializerFor(settings, this.seed, salt), settings.kernelRegularizer ?? undefined);
    const bias = (name: string, size: number, salt: number) =>
      this.addWeight(name, [size], 'float32', biasInitializerFor(settings, salt), settings.biasRegularizer ?? undefined);
    this.qkKernel = kernel('qk/kernel', [modelSize, inner], 1);
    this.vKernel = kernel('v/kernel', [modelSize, inner], 2);
    this.outKernel = kernel('out/kernel', [inner, modelSize], 3);
    if (this.useBias) {
      this.qkBias = bias('qk/bias', inner, 4);
      this.vBias = bias('v/bias', inner, 5);
      this.outBias = bias('out/bias', modelSize, 6);
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape | Shape[] {
    const shape = SelfAttentionBase.dataShape(inputShape).slice();
    if (!this.returnAttention) return shape;
    // [B, T, M], and positions and weights [B, H, T, S] (S depends on T and the attention).
    const attention = [shape[0], this.numHeads, shape[1], null];
    return [shape, attention, attention.slice()];
  }

  /** The output keeps the input's padding mask (the propagated one, or the mask input). */
  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
    const given = Array.isArray(mask) ? mask[0] : mask;
    // A bool copy of the mask input: tfjs-layers disposes output masks, so never return the caller's tensor.
    const maskInput = Array.isArray(inputs) && inputs.length > 1 ? tf.cast(inputs[1], 'bool') : null;
    // tfjs-layers accepts null for "no mask"; its type says Tensor.
    const outputMask = (given ?? maskInput) as tf.Tensor;
    return this.returnAttention ? ([outputMask, null, null] as unknown as tf.Tensor[]) : outputMask;
  }

  /** Projects [B·T, M] → [B, H, T, D]. */
  private project(x2d: tf.Tensor2D, kernel: tfl.LayerVariable, bias: tfl.LayerVariable | null, batch: number, length: number): tf.Tensor4D {
    let y: tf.Tensor = matMul2d(x2d, kernel.read() as tf.Tensor2D);
    if (bias) y = tf.add(y, bias.read());
    return tf.transpose(tf.reshape(y, [batch, length, this.numHeads, this.headDim]), [0, 2, 1, 3]) as tf.Tensor4D;
  }

  /**
   * The padding mask of a call, float [B, T] (1 keep, 0 pad), from a mask
   * input or the propagated mask; null when there is none.
   */
  private static paddingMask(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor2D | null {
    if (Array.isArray(inputs) && inputs.length > 1) return tf.cast(inputs[1], 'float32') as tf.Tensor2D;
    const propagated = Array.isArray(kwargs.mask) ? kwargs.mask[0] : kwargs.mask;
    return propagated ? (tf.cast(propagated, 'float32') as tf.Tensor2D) : null;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      const mask = SelfAttentionBase.paddingMask(inputs, kwargs);
      if (!this.returnAttention) return this.attendModel(x, mask, { training: kwargs.training === true });
      const { output, attention } = this.attendModelWithAttention(x, mask, { training: kwargs.training === true });
      return [output, attention.positions, attention.weights];
    });
  }

  /**
   * The whole layer as a function: projections, attention, output projection.
   *
   * @param x [B, T, M]
   * @param mask float [B, T] (1 keep, 0 pad), or null.
   * @returns [B, T, M]
   */
  attendModel(x: tf.Tensor3D, mask: tf.Tensor2D | null, options: AttendOptions = {}): tf.Tensor3D {
    return this.runModel(x, mask, options, false).output;
  }

  /**
   * {@link attendModel}, also returning the attention weights of every head
   * (see {@link SelfAttentionArgs.returnAttention}), whatever the layer's
   * `returnAttention`.
   *
   * @returns output [B, T, M]; attention positions int32 and weights [B, H, T, S].
   */
  attendModelWithAttention(x: tf.Tensor3D, mask: tf.Tensor2D | null, options: AttendOptions = {}): { output: tf.Tensor3D; attention: AttentionWeights } {
    const { output, attention } = this.runModel(x, mask, options, true);
    return { output, attention: attention as AttentionWeights };
  }

  private runModel(
    x: tf.Tensor3D,
    mask: tf.Tensor2D | null,
    options: AttendOptions,
    withAttention: boolean,
  ): { output: tf.Tensor3D; attention: AttentionWeights | null } {
    const who = this.getClassName();
    if (!this.built || this.qkKernel === null || this.vKernel === null || this.outKernel === null) {
      throw new Error(`${who}: the layer is not built; call it on an input (or apply it in a model) first`);
    }
    if (!(x instanceof tf.Tensor) || x.rank !== 3) {
      throw new Error(`${who}: input must be a tensor [B, T, M], got ${x instanceof tf.Tensor ? shapeString(x.shape) : String(x)}`);
    }
    const [batch, length, modelSize] = x.shape;
    const builtSize = this.qkKernel.shape[0];
    if (modelSize !== builtSize) {
      throw new Error(`${who}: input must have M = ${builtSize} features (the layer was built for [B, T, ${builtSize}]), got ${shapeString(x.shape)}`);
    }
    if (mask !== null) checkMask(who, mask, batch, length, 'the padding mask');
    if (this.checkFinite) assertFinite(who, 'the input', x, 'find where it comes from (the previous layer, or the data)');
    // An empty batch (or empty sequences): an empty output, without running the projections.
    if (batch === 0 || length === 0) {
      const empty = () => tf.zeros([batch, this.numHeads, length, 0], 'int32') as tf.Tensor4D;
      const attention = withAttention ? { positions: empty(), weights: tf.zeros([batch, this.numHeads, length, 0]) as tf.Tensor4D } : null;
      return { output: tf.zeros([batch, length, modelSize]) as tf.Tensor3D, attention };
    }
    const result = tf.tidy(() => {
      const x2d = tf.reshape(x, [batch * length, modelSize]) as tf.Tensor2D;
      const qk = this.project(x2d, this.qkKernel as tfl.LayerVariable, this.qkBias, batch, length);
      const v = this.project(x2d, this.vKernel as tfl.LayerVariable, this.vBias, batch, length);
      let attention: AttentionWeights | null = null;
      let attended: tf.Tensor4D; // [B, H, T, D]
      if (withAttention) {
        const both = this.attendWithAttention(qk, v, mask, options);
        attended = both.output;
        attention = both.attention;
      } else {
        attended = this.attend(qk, v, mask, options);
      }
      const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * length, this.numHeads * this.headDim]);
      let y: tf.Tensor = matMul2d(merged as tf.Tensor2D, (this.outKernel as tfl.LayerVariable).read() as tf.Tensor2D);
      if (this.outBias) y = tf.add(y, this.outBias.read());
      const output = tf.reshape(y, [batch, length, modelSize]) as tf.Tensor3D;
      return attention ? { output, positions: attention.positions, weights: attention.weights } : { output };
    });
    const attention = result.positions && result.weights ? { positions: result.positions, weights: result.weights } : null;
    return { output: result.output, attention };
  }

  /**
   * The layer's input projections, for code that runs the attention itself
   * (cached generation): x [B, T, M] → shared query/key vectors and values,
   * each [B, H, T, D].
   */
  projectInputs(x: tf.Tensor3D): { qk: tf.Tensor4D; v: tf.Tensor4D } {
    if (!this.built || this.qkKernel === null || this.vKernel === null) {
      throw new Error(`${this.getClassName()}: the layer is not built; call it on an input (or apply it in a model) first`);
    }
    const [batch, length, modelSize] = x.shape;
    return tf.tidy(() => {
      const x2d = tf.reshape(x, [batch * length, modelSize]) as tf.Tensor2D;
      return {
        qk: this.project(x2d, this.qkKernel as tfl.LayerVariable, this.qkBias, batch, length),
        v: this.project(x2d, this.vKernel as tfl.LayerVariable, this.vBias, batch, length),
      };
    });
  }

  /** The layer's output projection: attended heads [B, H, T, D] → [B, T, M]. */
  projectOutput(attended: tf.Tensor4D): tf.Tensor3D {
    if (!this.built || this.outKernel === null) {
      throw new Error(`${this.getClassName()}: the layer is not built; call it on an input (or apply it in a model) first`);
    }
    const [batch, , length] = attended.shape;
    const modelSize = this.outKernel.shape[1] as number;
    return tf.tidy(() => {
      const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * length, this.numHeads * this.headDim]);
      let y: tf.Tensor = matMul2d(merged as tf.Tensor2D, (this.outKernel as tfl.LayerVariable).read() as tf.Tensor2D);
      if (this.outBias) y = tf.add(y, this.outBias.read());
      return tf.reshape(y, [batch, length, modelSize]) as tf.Tensor3D;
    });
  }

  /**
   * The attention of heads with its weights: qk, v [B, H, T, D] →
   * { output [B, H, T, D], attention [B, H, T, S] }; positions ≥ T (the
   * layer's own padding) are left out.
   */
  protected abstract attendWithAttention(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): AttentionResult;

  /** The per-call seed: the next from the training stream, unless given. */
  protected callSeed(options: AttendOptions): number {
    return options.callSeed ?? nextSeed(this.trainingStream);
  }

  /**
   * The attention of heads: qk, v [B, H, T, D] → [B, H, T, D], with the
   * padding mask float [B, T] or null.
   */
  protected abstract attend(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): tf.Tensor4D;

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      numHeads: this.numHeads,
      causal: this.causal,
      dropout: this.dropout,
      useBias: this.useBias,
      ...denseWeightConfig(this.weightSettings),
      seed: this.seed,
    };
    if (this.headDimArg !== undefined) config.headDim = this.headDimArg;
    if (this.memoryLimitBytes !== undefined) config.memoryLimitBytes = this.memoryLimitBytes;
    if (this.checkFinite) config.checkFinite = true;
    if (this.returnAttention) config.returnAttention = true;
    return { ...super.getConfig(), ...config };
  }
}

/**
 * Reformer LSH self-attention as a layer: O(T log T) instead of O(T²).
 *
 * Input [B, T, M] (optionally with a padding mask [B, T] as a second input,
 * or the mask an `embedding({maskZero: true})` propagates); output
 * [B, T, M]. T need not fit the chunking: the layer pads it (masking the
 * padding) and strips the padding again. In training each call hashes with
 * fresh rotations from the seeded stream; in inference the rotations are
 * fixed by the seed, so predictions are deterministic.
 *
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 100, outputDim: 64, inputLength: 1024 }),
 *   lshSelfAttention({ numHeads: 4, nHashes: 4, chunkLength: 64, causal: true, seed: 1 }),
 * ]});
 * ```
 */
export class LSHSelfAttention extends SelfAttentionBase {
  static className = 'LSHSelfAttention';
  /** R, rounds. Writable: evaluate a trained model with more rounds than it trained with. */
  nHashes: number;
  readonly chunkLength: number;
  readonly nBuckets: NBuckets | undefined;
  readonly numChunksBefore: number;
  readonly numChunksAfter: number;
  readonly hashFamily: HashFamilyName;
  /** Exact mode: one chunk per round (see {@link LSHSelfAttentionArgs.oneChunkPerRound}). */
  readonly oneChunkPerRound: boolean;
  /** Exact attention at or below this length (see {@link LSHSelfAttentionArgs.fullAttentionThreshold}). */
  readonly fullAttentionThreshold: number;
  readonly allowDuplicateAttention: boolean;
  readonly attendAcrossBuckets: boolean;

  constructor(args: LSHSelfAttentionArgs = {}) {
    // The subclass's name (LSHMultiHeadAttention) in messages when it is one.
    super(args, new.target.className);
    const who = this.getClassName();
    this.nHashes = args.nHashes ?? 1;
    this.chunkLength = args.chunkLength ?? 64;
    this.numChunksBefore = args.numChunksBefore ?? 1;
    this.numChunksAfter = args.numChunksAfter ?? 0;
    this.nBuckets = args.nBuckets;
    this.hashFamily = args.hashFamily ?? 'rotation';
    this.oneChunkPerRound = args.oneChunkPerRound ?? false;
    assertBoolean(who, 'oneChunkPerRound', this.oneChunkPerRound);
    this.fullAttentionThreshold = args.fullAttentionThreshold ?? DEFAULT_FULL_ATTENTION_THRESHOLD;
    assertNonNegativeInteger(who, 'fullAttentionThreshold', this.fullAttentionThreshold);
    this.allowDuplicateAttention = args.allowDuplicateAttention ?? true;
    assertBoolean(who, 'allowDuplicateAttention', this.allowDuplicateAttention);
    this.attendAcrossBuckets = args.attendAcrossBuckets ?? true;
    assertBoolean(who, 'attendAcrossBuckets', this.attendAcrossBuckets);
    assertPositiveInteger(who, 'nHashes', this.nHashes);
    assertPositiveInteger(who, 'chunkLength', this.chunkLength);
    assertNonNegativeInteger(who, 'numChunksBefore', this.numChunksBefore);
    assertNonNegativeInteger(who, 'numChunksAfter', this.numChunksAfter);
    // Validates every setting once, for a length that always fits.
    this.settings(validLength(this.chunkLength, this.nHashes, this.chunkLength));
  }

  /** The chunk length of a call of length T: the layer's, or T in exact mode (one chunk per round). */
  private chunkLengthFor(length: number): number {
    return this.oneChunkPerRound ? Math.max(length, 1) : this.chunkLength;
  }

  /** The core's settings for a (padded) length: one resolution, shared with lshAttention. */
  private settings(length: number) {
    return resolveLSHSettings(this.getClassName(), length, 1, {
      nHashes: this.nHashes,
      chunkLength: this.chunkLengthFor(length),
      numChunksBefore: this.numChunksBefore,
      numChunksAfter: this.numChunksAfter,
      nBuckets: this.nBuckets,
      hashFamily: this.hashFamily,
    });
  }

  /** Whether a call of length T computes exact attention (at or below fullAttentionThreshold, outside exact mode). */
  usesFullAttention(length: number): boolean {
    return !this.oneChunkPerRound && length <= this.fullAttentionThreshold;
  }

  protected attend(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): tf.Tensor4D {
    return this.run(qk, v, mask, options, false).output;
  }

  protected attendWithAttention(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): AttentionResult {
    const { output, attention } = this.run(qk, v, mask, options, true);
    return { output, attention: attention as AttentionWeights };
  }

  private run(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions, withAttention: boolean): { output: tf.Tensor4D; attention: AttentionWeights | null } {
    const [, , length, dim] = qk.shape;
    if (this.usesFullAttention(length)) {
      const training = options.training === true;
      const fullOptions = {
        causal: options.causal ?? this.causal,
        mask: mask ?? undefined,
        dropout: training ? this.dropout : 0,
        dropoutSeed: training ? this.callSeed(options) : undefined,
        memoryLimitBytes: this.memoryLimitBytes,
        checkFinite: this.checkFinite,
      };
      return withAttention ? fullAttention(qk, v, { ...fullOptions, returnAttention: true }) : { output: fullAttention(qk, v, fullOptions), attention: null };
    }
    const chunkLength = this.chunkLengthFor(length);
    const padded = validLength(length, this.nHashes, chunkLength); // = T in exact mode
    let paddedMask: tf.Tensor2D | null;
    [qk, v, paddedMask] = padPositions(qk, v, mask, padded);
    const { nBuckets } = this.settings(padded);
    const training = options.training === true;
    // Inference: rotations fixed by the layer's seed. Training: fresh ones each call.
    const seed = training ? this.callSeed(options) : undefined;
    const rotations = randomRotations({
      dim,
      nHashes: this.nHashes,
      nBuckets,
      hashFamily: this.hashFamily,
      seed: seed === undefined ? purposeSeed(this.seed, 'inference') : purposeSeed(seed, 'rotations'),
    });
    const lshOptions = {
      rotations,
      nBuckets,
      chunkLength,
      numChunksBefore: this.numChunksBefore,
      numChunksAfter: this.numChunksAfter,
      causal: options.causal ?? this.causal,
      mask: paddedMask ?? undefined,
      hashFamily: this.hashFamily,
      dropout: training ? this.dropout : 0,
      dropoutSeed: seed,
      memoryLimitBytes: this.memoryLimitBytes,
      checkFinite: this.checkFinite,
      allowDuplicateAttention: this.allowDuplicateAttention,
      attendAcrossBuckets: this.attendAcrossBuckets,
    };
    return dropPadding(withAttention ? lshAttention(qk, v, { ...lshOptions, returnAttention: true }) : { output: lshAttention(qk, v, lshOptions), attention: null }, length);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      fullAttentionThreshold: this.fullAttentionThreshold,
      nHashes: this.nHashes,
      chunkLength: this.chunkLength,
      numChunksBefore: this.numChunksBefore,
      numChunksAfter: this.numChunksAfter,
      hashFamily: this.hashFamily,
    };
    if (this.nBuckets !== undefined) config.nBuckets = this.nBuckets;
    if (this.oneChunkPerRound) config.oneChunkPerRound = true;
    if (!this.allowDuplicateAttention) config.allowDuplicateAttention = false;
    if (!this.attendAcrossBuckets) config.attendAcrossBuckets = false;
    return { ...super.getConfig(), ...config };
  }
}
tf.serialization.registerClass(LSHSelfAttention);

/**
 * Full O(T²) shared-QK self-attention with the same weights and interface as
 * {@link LSHSelfAttention}: the baseline to compare against, or to swap in.
 */
export class FullSelfAttention extends SelfAttentionBase {
  static className = 'FullSelfAttention';

  constructor(args: SelfAttentionArgs = {}) {
    super(args, new.target.className);
  }

  private options(options: AttendOptions, mask: tf.Tensor2D | null) {
    const training = options.training === true;
    return {
      causal: options.causal ?? this.causal,
      mask: mask ?? undefined,
      dropout: training ? this.dropout : 0,
      dropoutSeed: training ? this.callSeed(options) : undefined,
      memoryLimitBytes: this.memoryLimitBytes,
      checkFinite: this.checkFinite,
    };
  }

  protected attend(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): tf.Tensor4D {
    return fullAttention(qk, v, this.options(options, mask));
  }

  protected attendWithAttention(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): AttentionResult {
    return fullAttention(qk, v, { ...this.options(options, mask), returnAttention: true });
  }
}
tf.serialization.registerClass(FullSelfAttention);

/** Arguments of {@link LocalSelfAttention}. */
export interface LocalSelfAttentionArgs extends SelfAttentionArgs {
  /** C, the chunk length. Default 64. */
  chunkLength?: number;
  /** Chunks before its own that each chunk attends to (none before the first). Default 1. */
  numChunksBefore?: number;
  /** Chunks after its own that each chunk attends to (none after the last). Default 0. */
  numChunksAfter?: number;
}

/**
 * Local self-attention as a layer (`localAttention`): positions in order are
 * cut into chunks of C, each attending to itself and its neighbours, at
 * O(T·C) cost. The same weights and interface as {@link LSHSelfAttention}
 * (shared QK, V and output projections), so the two can be mixed in a model
 * (`reformerLM({ attention: ['local', 'lsh'] })`). T need not be a multiple
 * of C: the layer pads (masking the padding) and strips it again.
 *
 * ```ts
 * const layer = localSelfAttention({ numHeads: 4, chunkLength: 64, numChunksBefore: 1, causal: true, seed: 1 });
 * ```
 */
export class LocalSelfAttention extends SelfAttentionBase {
  static className = 'LocalSelfAttention';
  readonly chunkLength: number;
  readonly numChunksBefore: number;
  readonly numChunksAfter: number;

  constructor(args: LocalSelfAttentionArgs = {}) {
    super(args, new.target.className);
    const who = this.getClassName();
    this.chunkLength = args.chunkLength ?? 64;
    this.numChunksBefore = args.numChunksBefore ?? 1;
    this.numChunksAfter = args.numChunksAfter ?? 0;
    assertPositiveInteger(who, 'chunkLength', this.chunkLength);
    assertNonNegativeInteger(who, 'numChunksBefore', this.numChunksBefore);
    assertNonNegativeInteger(who, 'numChunksAfter', this.numChunksAfter);
  }

  protected attend(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): tf.Tensor4D {
    return this.run(qk, v, mask, options, false).output;
  }

  protected attendWithAttention(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions): AttentionResult {
    const { output, attention } = this.run(qk, v, mask, options, true);
    return { output, attention: attention as AttentionWeights };
  }

  private run(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, options: AttendOptions, withAttention: boolean): { output: tf.Tensor4D; attention: AttentionWeights | null } {
    const length = qk.shape[2];
    const padded = Math.ceil(length / this.chunkLength) * this.chunkLength;
    let paddedMask: tf.Tensor2D | null;
    [qk, v, paddedMask] = padPositions(qk, v, mask, padded);
    const training = options.training === true;
    const localOptions = {
      chunkLength: this.chunkLength,
      numChunksBefore: this.numChunksBefore,
      numChunksAfter: this.numChunksAfter,
      causal: options.causal ?? this.causal,
      mask: paddedMask ?? undefined,
      dropout: training ? this.dropout : 0,
      dropoutSeed: training ? this.callSeed(options) : undefined,
      memoryLimitBytes: this.memoryLimitBytes,
      checkFinite: this.checkFinite,
    };
    return dropPadding(withAttention ? localAttention(qk, v, { ...localOptions, returnAttention: true }) : { output: localAttention(qk, v, localOptions), attention: null }, length);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      chunkLength: this.chunkLength,
      numChunksBefore: this.numChunksBefore,
      numChunksAfter: this.numChunksAfter,
    };
    return { ...super.getConfig(), ...config };
  }
}
tf.serialization.registerClass(LocalSelfAttention);

/** Creates a {@link LocalSelfAttention} layer. */
export function localSelfAttention(args: LocalSelfAttentionArgs = {}): LocalSelfAttention {
  return new LocalSelfAttention(args);
}

/**
 * Strips a layer's own padding from a result of length T' > T: the output's
 * and the attention's query rows past T, and keys past T (padding: weight 0)
 * become unused slots (−1, 0). Keys are ascending, so those slots stay last.
 */
/** qk and v [B, H, T, D] padded with zero positions up to `padded`, and the mask [B, T] with padding (0) there (unchanged when T = padded). */
function padPositions(qk: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, padded: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor2D | null] {
  const [batch, , length] = qk.shape;
  const extra = padded - length;
  if (extra <= 0) return [qk, v, mask];
  const pad4: Array<[number, number]> = [[0, 0], [0, 0], [0, extra], [0, 0]];
  return [tf.pad(qk, pad4), tf.pad(v, pad4), tf.pad(mask ?? tf.ones([batch, length]), [[0, 0], [0, extra]]) as tf.Tensor2D];
}

/** The first `length` positions of a result computed on padded inputs (weights on padding dropped too). */
function dropPadding(result: { output: tf.Tensor4D; attention: AttentionWeights | null }, length: number): { output: tf.Tensor4D; attention: AttentionWeights | null } {
  if (result.output.shape[2] === length) return result;
  if (result.attention === null) return { output: tf.slice(result.output, [0, 0, 0, 0], [-1, -1, length, -1]) as tf.Tensor4D, attention: null };
  return stripPadding(result as AttentionResult, length);
}

function stripPadding(result: AttentionResult, length: number): { output: tf.Tensor4D; attention: AttentionWeights } {
  return tf.tidy(() => {
    const rows = (x: tf.Tensor4D) => tf.slice(x, [0, 0, 0, 0], [-1, -1, length, -1]) as tf.Tensor4D;
    const positions = rows(result.attention.positions);
    const weights = rows(result.attention.weights);
    const outside = tf.greaterEqual(positions, length);
    return {
      output: rows(result.output),
      attention: {
        positions: tf.where(outside, tf.fill(positions.shape, -1, 'int32'), positions) as tf.Tensor4D,
        weights: tf.where(outside, tf.zerosLike(weights), weights) as tf.Tensor4D,
      },
    };
  });
}

/** Creates an {@link LSHSelfAttention} layer (as `tf.layers.dense` creates `Dense`). */
export function lshSelfAttention(args: LSHSelfAttentionArgs = {}): LSHSelfAttention {
  return new LSHSelfAttention(args);
}

/** Creates a {@link FullSelfAttention} layer. */
export function fullSelfAttention(args: SelfAttentionArgs = {}): FullSelfAttention {
  return new FullSelfAttention(args);
}
