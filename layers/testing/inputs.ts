/**
 * Inputs for the checks: the given ones validated against the model, random
 * ones at a chosen length (what the `check` command feeds a saved model),
 * and the lengths a model can take.
 *
 * Legend: B batch, T length, M model size, V vocabulary size.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { assertPositiveInteger, describeValue, shapeString } from '../../src/validate.js';
import { assertSeed, purposeSeed, type Seed } from '../../src/random.js';
import { allLayers } from '../lm.js';
import { AxialPositionEmbedding, PositionEmbedding } from '../position_embeddings.js';
import { SelfAttentionBase } from '../self_attention.js';

/** What the checks accept as a model's inputs: as `model.predict` takes them. */
export type ModelInputs = tf.Tensor | tf.Tensor[];

/**
 * Throws unless `model` is a built tf.LayersModel (`tf.sequential`,
 * `tf.model`, `reformerLM`, `tf.loadLayersModel`).
 */
export function assertLayersModel(who: string, model: unknown): asserts model is tfl.LayersModel {
  if (!(model instanceof tfl.LayersModel)) {
    throw new Error(
      `${who}: model must be a tf.LayersModel (from tf.sequential, tf.model, reformerLM or tf.loadLayersModel), got ${describeValue(model)}; ` +
        `a model made with a second copy of @tensorflow/tfjs-layers fails this check too (use one tfjs in the app)`,
    );
  }
  // (A tf.sequential is not `built` until first used, but has its inputs once its first layer has a shape.)
  if (model.inputs === undefined || model.inputs.length === 0) {
    throw new Error(`${who}: the model is not built (no input shape yet); give its first layer an inputShape, or call it once`);
  }
}

/**
 * The inputs as a list, one per model input, each of the rank and known
 * sizes of the model's input.
 */
export function inputList(who: string, model: tfl.LayersModel, inputs: unknown): tf.Tensor[] {
  const list = inputs instanceof tf.Tensor ? [inputs] : Array.isArray(inputs) ? (inputs as unknown[]) : null;
  const expected = model.inputs.map((input) => shapeString(input.shape)).join(', ');
  if (list === null || list.some((x) => !(x instanceof tf.Tensor))) {
    throw new Error(
      `${who}: inputs must be a tensor or an array of tensors, one per model input (${expected}), got ${describeValue(inputs)}`,
    );
  }
  const tensors = list as tf.Tensor[];
  if (tensors.length !== model.inputs.length) {
    throw new Error(
      `${who}: the model has ${model.inputs.length} input${model.inputs.length === 1 ? '' : 's'} (${expected}), got ${tensors.length} tensor${tensors.length === 1 ? '' : 's'}`,
    );
  }
  tensors.forEach((x, i) => {
    const shape = model.inputs[i].shape;
    if (x.isDisposed) throw new Error(`${who}: inputs[${i}] is disposed; pass live tensors`);
    if (x.rank !== shape.length || shape.some((size, axis) => size != null && size !== x.shape[axis])) {
      throw new Error(`${who}: inputs[${i}] must have shape ${shapeString(shape)} (null: any size), got ${shapeString(x.shape)}`);
    }
    if (x.shape[0] === 0) throw new Error(`${who}: inputs[${i}] is an empty batch (B = 0); pass at least one row`);
  });
  return tensors;
}

/** The lengths a model takes. */
export interface ModelLengths {
  /** The one T the model's inputs allow (their shape says it), or null. */
  fixed: number | null;
  /** The longest T its position embeddings cover, or null. */
  max: number | null;
  /** The layer that sets `max`, for messages. */
  maxLayer: string | null;
}

/** What T a model takes: a fixed input length, and the limit of its position embeddings. */
export function modelLengths(model: tfl.LayersModel): ModelLengths {
  let fixed: number | null = null;
  for (const input of model.inputs) {
    if (input.shape.length >= 2 && input.shape[1] != null) {
      fixed = input.shape[1];
      break;
    }
  }
  let max: number | null = null;
  let maxLayer: string | null = null;
  for (const layer of allLayers(model)) {
    if ((layer instanceof PositionEmbedding || layer instanceof AxialPositionEmbedding) && (max === null || layer.maxLength < max)) {
      max = layer.maxLength;
      maxLayer = `${layer.name} (${layer.getClassName()})`;
    }
  }
  return { fixed, max, maxLayer };
}

/** The model's own length: its fixed T, else the longest its position embeddings cover, else null. */
export function ownLength(model: tfl.LayersModel): number | null {
  const { fixed, max } = modelLengths(model);
  return fixed ?? max;
}

/** Throws unless the model can take inputs of length T. */
export function assertLengthFits(who: string, model: tfl.LayersModel, length: number): void {
  assertPositiveInteger(who, 'length', length);
  const { fixed, max, maxLayer } = modelLengths(model);
  if (fixed !== null && length !== fixed) {
    throw new Error(
      `${who}: the model takes sequences of length ${fixed} only (its input shape is ${shapeString(model.inputs[0].shape)}), got length ${length}; ` +
        `use ${fixed}, or rebuild the model with the length left open (null)`,
    );
  }
  if (max !== null && length > max) {
    throw new Error(`${who}: the model's position embedding ${maxLayer} covers ${max} positions, got length ${length}; use a length ≤ ${max}`);
  }
}

/** Options of {@link randomInputs}. */
export interface RandomInputsOptions {
  /**
   * T, the length of the sequence inputs. Default: the model's own (its fixed
   * input length, else its position embedding's length); required when the
   * model has neither.
   */
  length?: number;
  /** B, the batch size. Default 2. */
  batch?: number;
  /**
   * Pad the end of the last row (a quarter of its positions, at least one)
   * of token inputs that feed an `embedding({maskZero: true})` and of
   * padding-mask inputs of the attention layers, so the masks are exercised.
   * Needs B ≥ 2 and T ≥ 2 (the first row stays whole). Default true.
   */
  padding?: boolean;
  /** Seed of the values. Default 1. */
  seed?: Seed;
}

/** How a model input is used, as far as random values go. */
type InputUse = { kind: 'tokens'; vocabSize: number; maskZero: boolean } | { kind: 'mask' } | { kind: 'values' };

/** The layers that take a model input, with its position among their inputs. */
function consumers(model: tfl.LayersModel, input: tfl.SymbolicTensor): Array<{ layer: tfl.layers.Layer; position: number }> {
  const found: Array<{ layer: tfl.layers.Layer; position: number }> = [];
  for (const layer of model.layers) {
    for (const node of layer.inboundNodes) {
      const position = node.inputTensors.indexOf(input);
      if (position >= 0) found.push({ layer, position });
    }
  }
  return found;
}

function inputUse(who: string, model: tfl.LayersModel, index: number): InputUse {
  const input = model.inputs[index];
  const users = consumers(model, input);
  const embedding = users.find(({ layer }) => layer.getClassName() === 'Embedding');
  if (embedding) {
    const config = embedding.layer.getConfig();
    return { kind: 'tokens', vocabSize: Number(config.inputDim), maskZero: config.maskZero === true };
  }
  if (users.some(({ layer, position }) => layer instanceof SelfAttentionBase && position === 1)) return { kind: 'mask' };
  if (input.dtype !== 'float32') {
    throw new Error(
      `${who}: the model's input ${index} (${input.name}, ${input.dtype}) feeds no Embedding, so the range of its values is unknown; pass your own inputs`,
    );
  }
  return { kind: 'values' };
}

/**
 * Random inputs for a model, one tensor per model input, at length T:
 * token ids in [0, V) (in [1, V) for an embedding with maskZero, 0 being
 * padding) for inputs that feed an Embedding, padding masks of 1 for the
 * attention layers' mask inputs, N(0, 1) values for the rest. The size of
 * every axis but the batch and T must be known.
 *
 * @returns tensors [B, T, …] (the caller disposes them)
 *
 * ```ts
 * const tokens = randomInputs(model, { length: 32 }); // [int32 [2, 32]] for a reformerLM
 * ```
 */
export function randomInputs(model: tfl.LayersModel, options: RandomInputsOptions = {}): tf.Tensor[] {
  const who = 'randomInputs';
  assertLayersModel(who, model);
  const batch = options.batch ?? 2;
  assertPositiveInteger(who, 'batch', batch);
  const padding = options.padding ?? true;
  if (typeof padding !== 'boolean') throw new Error(`${who}: padding must be true or false, got ${describeValue(padding)}`);
  const seed = options.seed ?? 1;
  assertSeed(who, seed);
  const length = options.length ?? ownLength(model);
  if (length === null) {
    throw new Error(
      `${who}: the model does not fix its input length (input shape ${shapeString(model.inputs[0].shape)}) and has no position embedding; pass a length`,
    );
  }
  assertLengthFits(who, model, length);
  const uses = model.inputs.map((_, i) => inputUse(who, model, i));
  return tf.tidy(() =>
    model.inputs.map((input, i) => {
      const shape = input.shape.map((size, axis) => {
        if (axis === 0) return batch;
        if (axis === 1 && size == null) return length;
        if (size == null) {
          throw new Error(`${who}: the size of axis ${axis} of the model's input ${i} ${shapeString(input.shape)} is unknown; pass your own inputs`);
        }
        return size;
      });
      const use = uses[i];
      const inputSeed = purposeSeed(seed, `input ${i}`);
      // Rows after the first lose the last quarter of their positions (at least one).
      const padded = (values: tf.Tensor, pad: number): tf.Tensor => {
        if (!padding || batch < 2 || shape.length < 2 || shape[1] < 2) return values;
        const keep = tf.tensor1d(Array.from({ length: shape[1] }, (_, t) => (t < shape[1] - Math.max(1, Math.floor(shape[1] / 4)) ? 1 : 0)), values.dtype);
        const rows = tf.concat([tf.ones([1, shape[1]], values.dtype), tf.tile(tf.expandDims(keep, 0), [batch - 1, 1])]);
        const rowsShape = [batch, shape[1], ...shape.slice(2).map(() => 1)];
        const mask = tf.reshape(rows, rowsShape);
        return tf.add(tf.mul(values, mask), tf.mul(tf.sub(1, mask), pad));
      };
      if (use.kind === 'tokens') {
        const low = use.maskZero ? 1 : 0;
        if (use.vocabSize <= low) throw new Error(`${who}: the embedding of input ${i} has inputDim ${use.vocabSize}: no token ids to draw`);
        const ids = tf.cast(tf.floor(tf.randomUniform(shape, low, use.vocabSize, 'float32', inputSeed)), 'int32');
        return tf.cast(use.maskZero ? padded(ids, 0) : ids, input.dtype);
      }
      if (use.kind === 'mask') return tf.cast(padded(tf.ones(shape), 0), input.dtype);
      return tf.randomNormal(shape, 0, 1, 'float32', inputSeed);
    }),
  );
}
