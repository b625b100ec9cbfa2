/**
 * A dense map applied at every position, [B, T, M] → [B, T, U], as
 * tfjs-layers' `Dense` computes it on a rank-3 input, with a gradient of
 * plain matMuls on wasm (see `matMul2d`): Dense's gradient runs transposed
 * matMuls, a naive loop there, which took ≈20% of a `reformerLM` training
 * step at a vocabulary of 256. `reformerLM` uses it for its logits.
 *
 * Legend: B batch, T length, M input size, U units.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { matMul2d } from '../src/ops.js';
import { assertSeed, freshSeed, initializerSeed, type Seed } from '../src/random.js';
import { assertPositiveInteger, shapeString } from '../src/validate.js';
import { biasInitializerFor, denseWeightConfig, resolveDenseWeightArgs, type DenseWeightArgs, type DenseWeightSettings } from './weight_args.js';

type Shape = (number | null)[];

/** Arguments of {@link PositionwiseDense} (the weight arguments as tf.layers.dense takes them). */
export interface PositionwiseDenseArgs extends LayerArgs, DenseWeightArgs {
  /** U, the output size. Required. */
  units: number;
  /** Add a bias. Default true. */
  useBias?: boolean;
  /** Seed of the default kernel initializer (glorotUniform). Default: drawn at construction (and saved in the config). */
  seed?: Seed;
}

/**
 * x [B, T, M] → x·W + b, [B, T, U]; weights `kernel` [M, U] and `bias` [U].
 * A given kernelInitializer is used as it is (one kernel: no re-seeding).
 *
 * ```ts
 * const logits = positionwiseDense({ units: 256, seed: 1 }).apply(hidden);
 * ```
 */
export class PositionwiseDense extends tfl.layers.Layer {
  static className = 'PositionwiseDense';
  readonly units: number;
  readonly useBias: boolean;
  readonly weightSettings: DenseWeightSettings;
  readonly seed: Seed;
  private kernel: tfl.LayerVariable | null = null;
  private bias: tfl.LayerVariable | null = null;

  constructor(args: PositionwiseDenseArgs) {
    super(args);
    const who = 'PositionwiseDense';
    assertPositiveInteger(who, 'units', args?.units);
    this.units = args.units;
    this.useBias = args.useBias ?? true;
    this.weightSettings = resolveDenseWeightArgs(who, args);
    this.seed = args.seed ?? freshSeed();
    assertSeed(who, this.seed);
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const size = shape[shape.length - 1];
    if (shape.length !== 3 || size == null) {
      throw new Error(`PositionwiseDense: input must have shape [B, T, M] with M known, got ${shapeString(shape)}`);
    }
    const settings = this.weightSettings;
    const kernelInitializer = settings.kernelInitializer ?? tfl.initializers.glorotUniform({ seed: initializerSeed(this.seed, 1) });
    this.kernel = this.addWeight('kernel', [size, this.units], 'float32', kernelInitializer, settings.kernelRegularizer ?? undefined);
    if (this.useBias) {
      this.bias = this.addWeight('bias', [this.units], 'float32', biasInitializerFor(settings, 2), settings.biasRegularizer ?? undefined);
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    return [...shape.slice(0, -1), this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      if (x.rank !== 3) throw new Error(`PositionwiseDense: input must have shape [B, T, M], got ${shapeString(x.shape)}`);
      const [batch, length, size] = x.shape;
      let y: tf.Tensor = matMul2d(tf.reshape(x, [batch * length, size]), this.kernel!.read() as tf.Tensor2D);
      if (this.bias) y = tf.add(y, this.bias.read());
      return tf.reshape(y, [batch, length, this.units]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), units: this.units, useBias: this.useBias, ...denseWeightConfig(this.weightSettings), seed: this.seed };
  }
}
tf.serialization.registerClass(PositionwiseDense);

/** Creates a {@link PositionwiseDense} layer. */
export function positionwiseDense(args: PositionwiseDenseArgs): PositionwiseDense {
  return new PositionwiseDense(args);
}
