/**
 * The pieces the checks share: comparing two tensors over the positions a
 * padding mask keeps, running a model, its output masks, a loss of its
 * outputs, and recording what its attention layers see.
 *
 * Legend: B batch, T length, M model size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { AttendOptions, SelfAttentionBase } from '../self_attention.js';

/** A loss of a model's outputs (in the order of `model.outputs`): a tensor whose mean is the loss. */
export type OutputLoss = (outputs: tf.Tensor[]) => tf.Tensor;

/** How far apart two tensors are. NaN anywhere makes the differences NaN. */
export interface Comparison {
  /** max |a − b| over the kept positions. */
  maxDifference: number;
  /** max |b| over the kept positions (b is the reference). */
  scale: number;
  /** mean |a − b| / mean |b| over the kept positions (0 when b is all zeros and a equals it). */
  relativeError: number;
}

/**
 * Compares `actual` with `reference` (the same shape) where `mask` keeps
 * positions: a mask [B, T] (1 keep, 0 padding) applies when the tensors are
 * [B, T, …]; outputs at padded positions are unspecified, so they are left out.
 */
export async function compareTensors(actual: tf.Tensor, reference: tf.Tensor, mask: tf.Tensor | null): Promise<Comparison> {
  const sums = tf.tidy(() => {
    const difference = tf.abs(tf.sub(actual, reference));
    const size = tf.abs(reference);
    let keep: tf.Tensor = tf.onesLike(difference);
    if (mask !== null && mask.rank <= actual.rank && mask.shape.every((n, axis) => n === actual.shape[axis])) {
      const broadcastShape = [...mask.shape, ...actual.shape.slice(mask.rank).map(() => 1)];
      keep = tf.mul(keep, tf.reshape(tf.cast(mask, 'float32'), broadcastShape));
    }
    // max(x·keep) is right for |x| ≥ 0; NaN·0 is NaN, so a NaN at a padded position still shows: select instead.
    const kept = (x: tf.Tensor) => tf.where(tf.greater(keep, 0), x, tf.zerosLike(x));
    return tf.stack([tf.max(kept(difference)), tf.max(kept(size)), tf.sum(kept(difference)), tf.sum(kept(size))]);
  });
  const [maxDifference, scale, sumDifference, sumSize] = Array.from(await sums.data());
  sums.dispose();
  const relativeError = sumDifference === 0 ? 0 : sumDifference / sumSize;
  return { maxDifference, scale, relativeError };
}

/** The outputs of a model as a list. */
export function asList(outputs: tf.Tensor | tf.Tensor[]): tf.Tensor[] {
  return Array.isArray(outputs) ? outputs : [outputs];
}

/** The model's outputs in inference (no dropout; LSH rotations fixed by each layer's seed). */
export function runModel(model: tfl.LayersModel, inputs: tf.Tensor[]): tf.Tensor[] {
  return asList(model.predict(inputs.length === 1 ? inputs[0] : inputs) as tf.Tensor | tf.Tensor[]);
}

/**
 * The padding masks of a model's outputs for these inputs (null where an
 * output has none), as tfjs-layers propagates them (an
 * `embedding({maskZero: true})`'s, or a mask input of the attention). Runs
 * the model once more. Call it on a copy: it builds a tf.sequential not
 * built yet (whose graph, until then, is not its own).
 */
export function outputMasks(model: tfl.LayersModel, inputs: tf.Tensor[]): Array<tf.Tensor | null> {
  if (model instanceof tfl.Sequential && !model.built) model.build();
  const masks = model.computeMask(inputs.length === 1 ? inputs[0] : inputs) as tf.Tensor | Array<tf.Tensor | null> | null | undefined;
  const list = Array.isArray(masks) ? masks : [masks ?? null];
  return model.outputs.map((_, i) => list[i] ?? null);
}

/** Mean of the loss of the outputs, as a scalar. */
export function meanLoss(loss: OutputLoss, outputs: tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    const value = loss(outputs);
    if (!(value instanceof tf.Tensor)) {
      throw new Error(`loss: must return a tensor (its mean is the loss), got ${typeof value}`);
    }
    return tf.mean(tf.cast(value, 'float32')) as tf.Scalar;
  });
}

/** What one attention layer saw and gave in one call (copies, disposed with the record). */
export interface AttentionCall {
  /** [B, T, M] */
  input: tf.Tensor3D;
  /** float [B, T] (1 keep, 0 padding), or null. */
  mask: tf.Tensor2D | null;
  /** [B, T, M] */
  output: tf.Tensor3D;
  /** The call's causal setting, when it overrode the layer's (the MultiHeadAttention-style layers' useCausalMask). */
  causal: boolean | undefined;
}

/**
 * Records the calls of some attention layers while `recording` is true.
 *
 * The layers' own `attendModel` (what a model's call and a ReversibleStack
 * both run) is wrapped on the instances, so it sees layers nested in
 * stacks too. Use it only on a private copy of a model: the wrapper stays on
 * the instances (the copy is disposed after the check).
 */
export class AttentionRecorder {
  readonly calls: AttentionCall[][];
  recording = false;

  constructor(layers: readonly SelfAttentionBase[]) {
    this.calls = layers.map(() => []);
    layers.forEach((layer, i) => {
      const attendModel = layer.attendModel.bind(layer);
      layer.attendModel = (x: tf.Tensor3D, mask: tf.Tensor2D | null, options?: AttendOptions): tf.Tensor3D => {
        const output = attendModel(x, mask, options);
        if (this.recording) {
          // Kept: the call runs inside the model's tidy scopes.
          this.calls[i].push({
            input: tf.keep(tf.clone(x)),
            mask: mask === null ? null : tf.keep(tf.clone(mask)),
            output: tf.keep(tf.clone(output)),
            causal: options?.causal,
          });
        }
        return output;
      };
    });
  }

  dispose(): void {
    for (const calls of this.calls) for (const call of calls) tf.dispose([call.input, call.output, ...(call.mask ? [call.mask] : [])]);
  }
}

/** Formats a number for messages and tables: 3 significant digits, exponent when small or large. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const magnitude = Math.abs(x);
  return magnitude >= 1e-3 && magnitude < 1e4 ? String(Number(x.toPrecision(3))) : x.toExponential(2);
}
