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
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true);
    const normed = tf.mul(centered, tf.rsqrt(tf.add(variance, epsilon)));
    return tf.add(tf.mul(normed, gamma), beta) as T;
  });
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
