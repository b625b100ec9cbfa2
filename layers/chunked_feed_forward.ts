/**
 * The position-wise feed-forward of a Transformer block (dense → activation
 * → dense), computed a slice of positions at a time so the hidden
 * activations [B, C, U] of only one slice exist at once (the Reformer's
 * chunked feed-forward). The result does not depend on the slicing: not in
 * value, not in gradient, and not in its dropout mask, which is a function of
 * (seed, batch row, position, unit) only.
 *
 * Legend: B batch, T length, M model size, U hidden units, C positions per slice.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { matMul2d } from '../src/ops.js';
import { assertSeed, freshSeed, nextSeed, uniformStream, type Seed, type Uniform } from '../src/random.js';
import { assertPositiveInteger, assertRate, shapeString } from '../src/validate.js';
import {
  biasInitializerFor,
  denseWeightConfig,
  kernelInitializerFor,
  resolveDenseWeightArgs,
  type DenseWeightArgs,
  type DenseWeightSettings,
} from './weight_args.js';

type Shape = (number | null)[];

/** Activations of the hidden layer. */
export type FeedForwardActivation = 'relu' | 'gelu';
const ACTIVATIONS: readonly FeedForwardActivation[] = ['relu', 'gelu'];

/** Arguments of {@link ChunkedFeedForward} (the weight arguments as tf.layers.dense takes them). */
export interface ChunkedFeedForwardArgs extends LayerArgs, DenseWeightArgs {
  /** U, the hidden size. Default 4·M (M the input's last dimension). */
  units?: number;
  /** The hidden activation: 'relu' or 'gelu' (tanh approximation). Default 'relu'. */
  activation?: FeedForwardActivation;
  /** C, positions per slice. Default: all positions at once (no slicing). */
  chunkLength?: number;
  /** Dropout rate on the hidden activations in training, in [0, 1). Default 0. */
  dropout?: number;
  /** Add biases to both dense maps, as tf.layers.dense does. Default true. */
  useBias?: boolean;
  /** Seed of the weight initialisers and the dropout masks. Default: drawn at construction (and saved in the config). */
  seed?: Seed;
}

/** Per-call settings, for recomputation (reversible blocks). */
export interface FeedForwardOptions {
  /** Training mode: dropout on. Default false. */
  training?: boolean;
  /** Seed of this call's dropout mask (training mode). Default: the next from the layer's stream. */
  callSeed?: Seed;
}

/** Options of {@link ChunkedFeedForward.feedForwardSlice}. */
export interface FeedForwardSliceOptions extends FeedForwardOptions {
  /** Position of the slice's first row in the whole sequence (the dropout mask is per position). Default 0. */
  positionOffset?: number;
}

/** √(2/π), of the tanh approximation of gelu. */
const GELU_SCALE = Math.sqrt(2 / Math.PI);

/**
 * Applies a position-wise `fn` to slices of at most `chunkLength` positions
 * of x [B, T, M] and concatenates the results along T. Each slice runs in
 * its own tidy, so only one slice's intermediates are alive at once (outside
 * a gradient tape).
 *
 * @param fn (slice [B, C, M], start) → [B, C, N]
 * @returns [B, T, N]
 */
export function mapPositionChunks(
  x: tf.Tensor3D,
  chunkLength: number | undefined,
  fn: (slice: tf.Tensor3D, start: number) => tf.Tensor3D,
): tf.Tensor3D {
  const length = x.shape[1];
  if (chunkLength === undefined || chunkLength >= length) return fn(x, 0);
  const outs: tf.Tensor3D[] = [];
  for (let start = 0; start < length; start += chunkLength) {
    const size = Math.min(chunkLength, length - start);
    outs.push(tf.tidy(() => fn(tf.slice(x, [0, start, 0], [-1, size, -1]), start)));
  }
  const out = tf.concat(outs, 1);
  tf.dispose(outs);
  return out;
}

/** A 32-bit integer hash with good avalanche (Wellons' lowbias32). */
function mix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

const TWO_TO_32 = 4294967296;

/**
 * Inverted-dropout scales (0 or 1 / (1 − rate)) for hidden activations
 * [B, C, U] at positions offset … offset + C − 1: each a function of (seed,
 * batch row, position, unit) only, so any slicing gives the same mask.
 */
export function positionDropoutScales(
  seed: Seed,
  shape: [number, number, number],
  positionOffset: number,
  rate: number,
): Float32Array {
  const [batch, length, units] = shape;
  const keep = 1 / (1 - rate);
  const unitKeys = new Uint32Array(units);
  for (let u = 0; u < units; u++) unitKeys[u] = mix32(Math.imul(u + 1, 0x9e3779b9));
  const seedKey = mix32(seed ^ 0x5bd1e995);
  const out = new Float32Array(batch * length * units);
  let i = 0;
  for (let b = 0; b < batch; b++) {
    const batchKey = mix32(seedKey ^ mix32(b + 0x3c6ef372));
    for (let t = 0; t < length; t++) {
      const rowKey = mix32(batchKey ^ mix32(positionOffset + t + 0x1b873593));
      for (let u = 0; u < units; u++, i++) {
        out[i] = mix32(rowKey ^ unitKeys[u]) / TWO_TO_32 < rate ? 0 : keep;
      }
    }
  }
  return out;
}

/**
 * Position-wise feed-forward, x [B, T, M] → dense(U) → activation → dropout
 * → dense(M) → [B, T, M], computed `chunkLength` positions at a time.
 *
 * ```ts
 * const ff = chunkedFeedForward({ units: 256, chunkLength: 128, activation: 'gelu', seed: 1 });
 * ```
 */
export class ChunkedFeedForward extends tfl.layers.Layer {
  static className = 'ChunkedFeedForward';
  readonly unitsArg: number | undefined;
  readonly activation: FeedForwardActivation;
  readonly chunkLength: number | undefined;
  readonly dropout: number;
  readonly useBias: boolean;
  /** The initializers and regularizers of the kernels and biases (null: the default). */
  readonly weightSettings: DenseWeightSettings;
  readonly seed: Seed;
  /** U, known once built. */
  units = 0;
  private readonly trainingStream: Uniform;
  private hiddenKernel: tfl.LayerVariable | null = null;
  private hiddenBias: tfl.LayerVariable | null = null;
  private outKernel: tfl.LayerVariable | null = null;
  private outBias: tfl.LayerVariable | null = null;

  constructor(args: ChunkedFeedForwardArgs = {}) {
    super(args);
    const who = 'ChunkedFeedForward';
    this.unitsArg = args.units;
    if (args.units !== undefined) assertPositiveInteger(who, 'units', args.units);
    this.activation = args.activation ?? 'relu';
    if (!ACTIVATIONS.includes(this.activation)) {
      throw new Error(`${who}: activation must be one of ${ACTIVATIONS.join(', ')}, got ${String(this.activation)}`);
    }
    this.chunkLength = args.chunkLength;
    if (args.chunkLength !== undefined) assertPositiveInteger(who, 'chunkLength', args.chunkLength);
    this.dropout = args.dropout ?? 0;
    assertRate(who, 'dropout', this.dropout);
    this.useBias = args.useBias ?? true;
    this.weightSettings = resolveDenseWeightArgs(who, args);
    this.seed = args.seed ?? freshSeed();
    assertSeed(who, this.seed);
    this.trainingStream = uniformStream(this.seed, 'training');
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    if (shape.length !== 3 || shape[2] == null) {
      throw new Error(`ChunkedFeedForward: input must have shape [B, T, M] with M known, got ${shapeString(shape)}`);
    }
    const modelSize = shape[2];
    this.units = this.unitsArg ?? 4 * modelSize;
    const settings = this.weightSettings;
    const kernel = (name: string, shape: number[], salt: number) =>
      this.addWeight(name, shape, 'float32', kernelInitializerFor(settings, this.seed, salt), settings.kernelRegularizer ?? undefined);
    const bias = (name: string, size: number, salt: number) =>
      this.addWeight(name, [size], 'float32', biasInitializerFor(settings, salt), settings.biasRegularizer ?? undefined);
    this.hiddenKernel = kernel('hidden/kernel', [modelSize, this.units], 1);
    this.outKernel = kernel('out/kernel', [this.units, modelSize], 2);
    if (this.useBias) {
      this.hiddenBias = bias('hidden/bias', this.units, 3);
      this.outBias = bias('out/bias', modelSize, 4);
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return ((Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape).slice();
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      return this.feedForward(x, { training: kwargs.training === true });
    });
  }

  /**
   * The whole layer as a function, `chunkLength` positions at a time.
   *
   * @param x [B, T, M]
   * @returns [B, T, M]
   */
  feedForward(x: tf.Tensor3D, options: FeedForwardOptions = {}): tf.Tensor3D {
    const training = options.training === true;
    const callSeed = training && this.dropout > 0 ? (options.callSeed ?? nextSeed(this.trainingStream)) : undefined;
    return tf.tidy(() =>
      mapPositionChunks(x, this.chunkLength, (slice, start) =>
        this.feedForwardSlice(slice, { training, callSeed, positionOffset: start }),
      ),
    );
  }

  /**
   * One slice of positions, unsliced: for callers that do their own slicing
   * (a reversible block's backward pass). The dropout mask is that of the
   * same positions in a whole-sequence call with the same callSeed.
   *
   * @param x [B, C, M], positions positionOffset … positionOffset + C − 1.
   * @returns [B, C, M]
   */
  feedForwardSlice(x: tf.Tensor3D, options: FeedForwardSliceOptions = {}): tf.Tensor3D {
    const who = 'ChunkedFeedForward';
    if (!this.built || this.hiddenKernel === null || this.outKernel === null) {
      throw new Error(`${who}: the layer is not built; call it on an input (or apply it in a model) first`);
    }
    if (x.rank !== 3) throw new Error(`${who}: input must have shape [B, T, M], got ${shapeString(x.shape)}`);
    const [batch, length, modelSize] = x.shape;
    const training = options.training === true;
    return tf.tidy(() => {
      let hidden = matMul2d(tf.reshape(x, [batch * length, modelSize]), (this.hiddenKernel as tfl.LayerVariable).read() as tf.Tensor2D);
      if (this.hiddenBias) hidden = tf.add(hidden, this.hiddenBias.read()) as tf.Tensor2D;
      hidden = this.activate(hidden); // [B·C, U]
      if (training && this.dropout > 0) {
        const seed = options.callSeed ?? nextSeed(this.trainingStream);
        const scales = positionDropoutScales(seed, [batch, length, this.units], options.positionOffset ?? 0, this.dropout);
        hidden = tf.mul(hidden, tf.tensor2d(scales, [batch * length, this.units])) as tf.Tensor2D;
      }
      let y: tf.Tensor = matMul2d(hidden, (this.outKernel as tfl.LayerVariable).read() as tf.Tensor2D);
      if (this.outBias) y = tf.add(y, this.outBias.read());
      return tf.reshape(y, [batch, length, modelSize]) as tf.Tensor3D;
    });
  }

  private activate(x: tf.Tensor2D): tf.Tensor2D {
    if (this.activation === 'relu') return tf.relu(x);
    // gelu(x) ≈ x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
    const inner = tf.mul(tf.add(x, tf.mul(tf.mul(x, tf.square(x)), 0.044715)), GELU_SCALE);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1)) as tf.Tensor2D;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      activation: this.activation,
      dropout: this.dropout,
      useBias: this.useBias,
      ...denseWeightConfig(this.weightSettings),
      seed: this.seed,
    };
    if (this.unitsArg !== undefined) config.units = this.unitsArg;
    if (this.chunkLength !== undefined) config.chunkLength = this.chunkLength;
    return { ...super.getConfig(), ...config };
  }
}
tf.serialization.registerClass(ChunkedFeedForward);

/** Creates a {@link ChunkedFeedForward} layer. */
export function chunkedFeedForward(args: ChunkedFeedForwardArgs = {}): ChunkedFeedForward {
  return new ChunkedFeedForward(args);
}
