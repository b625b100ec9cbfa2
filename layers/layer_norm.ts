/**
 * Layer normalisation over the last axis, with a learned scale and offset:
 * y = (x − mean) / sqrt(variance + ε) · γ + β, per position.
 *
 * tfjs-layers' `layerNormalization` computes the same values, but it tiles γ
 * and β to the input's shape, and tfjs-core 4.22's gradient of `Tile` runs a
 * Slice and an Add per repetition: B·T of them per weight, which took more
 * than half a training step of a small language model. Broadcasting γ and β
 * instead gives a gradient of one reduction each.
 *
 * Legend: B batch, T length, M model size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { shapeString } from '../src/validate.js';

/** ε of the library's layer normalisations (as the Reformer). */
export const LAYER_NORM_EPSILON = 1e-6;

type Shape = (number | null)[];

/**
 * Normalises x over its last axis and applies a scale and an offset.
 *
 * @param x [..., M]
 * @param gamma [M]: the scale.
 * @param beta [M]: the offset.
 * @param epsilon added to the variance. Default {@link LAYER_NORM_EPSILON}.
 * @returns [..., M]
 */
export function normalizeLastAxis<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon = LAYER_NORM_EPSILON): T {
  return layerNormOp(epsilon)(x, gamma, beta) as T;
}

/**
 * The layer norm as one op with its own gradient, per ε. Under a tape it keeps
 * x, γ and, per row, the mean and 1/σ (not the half-dozen full-size
 * intermediates of the tf-op chain): with x̂ = (x − μ)/σ and g = dy·γ,
 * dx = (g − mean(g) − x̂·mean(g·x̂))/σ, dγ = Σ dy·x̂, dβ = Σ dy over the rows.
 */
const layerNormOps = new Map<number, (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor>();
function layerNormOp(epsilon: number): (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor {
  let op = layerNormOps.get(epsilon);
  if (op === undefined) {
    op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [x, gamma, beta, save] = args as [tf.Tensor, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
      const mean = tf.mean(x, -1, true);
      const centered = tf.sub(x, mean);
      const inverseStd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), epsilon)); // [..., 1]
      save([x, gamma, mean, inverseStd]);
      return {
        value: tf.add(tf.mul(tf.mul(centered, inverseStd), gamma), beta),
        // In a scope of its own: the engine keeps a gradient function's leftovers until the whole backward pass ends.
        gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => tf.tidy(() => {
          const [xs, g0, mu, inv] = saved;
          const dyT = dy as tf.Tensor;
          const size = xs.shape[xs.rank - 1];
          const normed = tf.mul(tf.sub(xs, mu), inv); // x̂
          const g = tf.mul(dyT, g0);
          const dx = tf.mul(inv, tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(normed, tf.mean(tf.mul(g, normed), -1, true))));
          const rows = (t: tf.Tensor) => tf.reshape(t, [-1, size]);
          return [dx, tf.sum(rows(tf.mul(dyT, normed)), 0), tf.sum(rows(dyT), 0)];
        }),
      };
    });
    layerNormOps.set(epsilon, op);
  }
  return op;
}

/** Arguments of {@link LayerNorm}. */
export interface LayerNormArgs extends LayerArgs {
  /** Added to the variance, for stability. Default 1e-6. */
  epsilon?: number;
}

/**
 * Layer normalisation over the last axis: input [..., M], output [..., M],
 * weights `gamma` (ones) and `beta` (zeros) of size M. Masks pass through.
 */
export class LayerNorm extends tfl.layers.Layer {
  static className = 'LayerNorm';
  readonly epsilon: number;
  private gamma: tfl.LayerVariable | null = null;
  private beta: tfl.LayerVariable | null = null;

  constructor(args: LayerNormArgs = {}) {
    super(args);
    this.epsilon = args.epsilon ?? LAYER_NORM_EPSILON;
    if (typeof this.epsilon !== 'number' || !(this.epsilon > 0) || !Number.isFinite(this.epsilon)) {
      throw new Error(`LayerNorm: epsilon must be a positive finite number, got ${String(args.epsilon)}; leave it out for ${LAYER_NORM_EPSILON}`);
    }
    this.supportsMasking = true;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const size = shape[shape.length - 1];
    if (shape.length < 2 || size == null) {
      throw new Error(`LayerNorm: input must have a known last axis, [..., M], got ${shapeString(shape)}`);
    }
    this.gamma = this.addWeight('gamma', [size], 'float32', tfl.initializers.ones());
    this.beta = this.addWeight('beta', [size], 'float32', tfl.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  }

  override computeMask(_inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    // tfjs-layers accepts null for "no mask"; its type says Tensor.
    return (Array.isArray(mask) ? mask[0] : mask) as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return normalizeLastAxis(x, this.gamma!.read() as tf.Tensor1D, this.beta!.read() as tf.Tensor1D, this.epsilon);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}
tf.serialization.registerClass(LayerNorm);

/** A {@link LayerNorm} layer (as `tf.layers.layerNormalization`, with a fast gradient). */
export function layerNorm(args: LayerNormArgs = {}): LayerNorm {
  return new LayerNorm(args);
}
