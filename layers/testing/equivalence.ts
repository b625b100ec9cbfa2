/**
 * Equivalence at small n: a model's LSH attention in exact mode (one chunk
 * per round) must compute what its full-attention twin computes, to float32
 * rounding: the model's outputs, each attention layer's output, and (on
 * request) the loss gradients with respect to every weight.
 *
 * Legend: B batch, T length, M model size.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { assertSeed, type Seed } from '../../src/random.js';
import { describeValue } from '../../src/validate.js';
import { attentionLayers } from '../lm.js';
import { LSHSelfAttention, type SelfAttentionBase } from '../self_attention.js';
import {
  AttentionRecorder,
  compareTensors,
  formatNumber,
  meanLoss,
  outputMasks,
  runModel,
  type Comparison,
  type OutputLoss,
} from './compare.js';
import { assertLayersModel, inputList, type ModelInputs } from './inputs.js';
import { copyModel, exactLSH, fullAttentionTwin } from './twins.js';

/**
 * Default {@link CheckEquivalenceOptions.tolerance}. Measured on the models
 * of test/testing.test.ts (reformerLMs, a masked functional model with a
 * reversible stack, a mask input, a masked tf.sequential; 5 seeds each, cpu
 * and wasm): exact-mode
 * LSH differs from full attention by at most 4.1e-7 × max(1, output scale),
 * for the model's outputs and each layer's. 1e-4 leaves 250× room for
 * deeper models and longer sums; a layer whose weights differ by a few
 * percent is off by 1e-1 or more.
 */
export const DEFAULT_TOLERANCE = 1e-4;

/**
 * Default {@link CheckEquivalenceOptions.gradientTolerance}. Measured on the
 * same models: at most 1.0e-6 of the largest gradient entry. Gradients pass
 * through every layer twice (forward and back) and sum over every position,
 * hence the looser bound.
 */
export const DEFAULT_GRADIENT_TOLERANCE = 1e-3;

/** Options of {@link checkEquivalence} and {@link expectEquivalent}. */
export interface CheckEquivalenceOptions {
  /**
   * The largest difference allowed between an output of the exact-mode model
   * and the twin's (the model's outputs and each attention layer's), relative
   * to the size of the twin's: |exact − full| ≤ tolerance · max(1, max|full|).
   * Default {@link DEFAULT_TOLERANCE} (1e-4).
   */
  tolerance?: number;
  /** Also compare the loss gradients with respect to every trainable weight. Default false. */
  gradients?: boolean;
  /**
   * The largest gradient difference allowed, relative to the largest gradient
   * entry of the twin over all weights: |g_exact − g_full| ≤ gradientTolerance · max|g_full|.
   * Default {@link DEFAULT_GRADIENT_TOLERANCE} (1e-3).
   */
  gradientTolerance?: number;
  /**
   * The loss whose gradients are compared: a function of the model's outputs
   * (a list, in the order of `model.outputs`) returning a tensor whose mean
   * is the loss, e.g. `([logits]) => lmLoss(targets, logits)`. Default: a
   * fixed random projection, Σ_k mean(output_k · R_k) with R_k seeded
   * N(0, 1) of each output's shape, so every output element matters (the sum
   * of a softmax would not: it is constant).
   */
  loss?: OutputLoss;
  /**
   * The model to compare with, instead of `fullAttentionTwin(model)`: one
   * with the same layers in the same order (FullSelfAttention, or exact-mode
   * LSH, where the model has attention) and the same weight shapes. It is
   * not changed (a copy runs). Default: `fullAttentionTwin(model)`.
   */
  twin?: tfl.LayersModel;
  /** Seed of the default loss's projections. Default 1. */
  seed?: Seed;
}

/** How far one compared tensor is from the twin's. */
export interface Difference {
  /** max |exact − full| (kept positions only: padded ones are unspecified). */
  difference: number;
  /** max |full|: what the tolerance is relative to. */
  scale: number;
  /** The largest difference the tolerance allows here. */
  allowed: number;
  /** difference ≤ allowed (false for NaN). */
  withinTolerance: boolean;
}

/** One output of the model. */
export interface OutputDifference extends Difference {
  /** Its index in `model.outputs`. */
  output: number;
  /** Its name in `model.outputs`. */
  name: string;
  /** mean |exact − full| / mean |full|. */
  relativeError: number;
}

/** One attention layer, compared on the inputs it received in the exact-mode model. */
export interface LayerDifference extends Difference {
  /** The layer's name (the same in the model and both copies). */
  name: string;
  /** Its class in the model: 'LSHSelfAttention' or 'FullSelfAttention'. */
  className: string;
  /** Its position among the model's attention layers, from 0 (the order they run in). */
  index: number;
  /** The calls compared (one per application; more for a layer applied twice or a batch predict splits). */
  calls: number;
}

/** The gradient of one trainable weight. */
export interface GradientDifference extends Difference {
  /** The weight's name in the model (as saved: `layer/weight`). */
  weight: string;
}

/** What {@link checkEquivalence} found. */
export interface EquivalenceReport {
  /** Every output, layer and gradient within tolerance. */
  equivalent: boolean;
  /** One sentence: the first thing that differs (layers in order, then outputs, then gradients), or that all agree. */
  summary: string;
  /** The model's outputs, in order. */
  outputs: OutputDifference[];
  /** The largest difference over the outputs. */
  maxOutputDifference: number;
  /** Every attention layer (LSH and full), in the order they run. */
  layers: LayerDifference[];
  /** Every trainable weight's gradient, when asked for (`gradients: true`), else null. */
  gradients: GradientDifference[] | null;
  /** The largest gradient difference, or null. */
  maxGradientDifference: number | null;
  tolerance: number;
  gradientTolerance: number;
}

function assertTolerance(who: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !(value >= 0) || value === Infinity) {
    throw new Error(`${who}: ${what} must be a finite number ≥ 0, got ${describeValue(value)}; e.g. ${what}: 1e-4`);
  }
}

function ordinal(n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}

function difference(comparison: Comparison, allowed: number): Difference {
  return {
    difference: comparison.maxDifference,
    scale: comparison.scale,
    allowed,
    withinTolerance: comparison.maxDifference <= allowed,
  };
}

/** The trainable weights' loss gradients, one per weight (zeros where the loss does not depend on it). */
function lossGradients(model: tfl.LayersModel, inputs: tf.Tensor[], loss: OutputLoss): tf.Tensor[] {
  const variables = model.trainableWeights.map((weight) => weight.read() as tf.Variable);
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => {
      const outputs = model.apply(inputs.length === 1 ? inputs[0] : inputs, { training: false }) as tf.Tensor | tf.Tensor[];
      return meanLoss(loss, Array.isArray(outputs) ? outputs : [outputs]);
    }, variables);
    value.dispose();
    return variables.map((variable) => grads[variable.name] ?? tf.zerosLike(variable));
  });
}

/** The default loss: a fixed random projection of each output. */
function projectionLoss(outputs: tf.Tensor[], seed: Seed): { loss: OutputLoss; projections: tf.Tensor[] } {
  const projections = outputs.map((output, k) => tf.randomNormal(output.shape, 0, 1, 'float32', seed + k));
  const loss: OutputLoss = (values) => tf.addN(values.map((value, k) => tf.mean(tf.mul(tf.cast(value, 'float32'), projections[k]))));
  return { loss, projections };
}

/**
 * Compares a model in exact mode ({@link exactLSH}) with its full-attention
 * twin ({@link fullAttentionTwin}) on the given inputs, in inference: the
 * model's outputs, every attention layer's output (each twin layer run on
 * the very inputs its exact-mode counterpart received, so a difference is
 * pinned on the layer that makes it), and with `gradients: true` the loss
 * gradients with respect to every trainable weight, by weight name. Positions
 * a padding mask marks (an `embedding({maskZero: true})`'s, or a mask input)
 * are left out: their outputs are unspecified.
 *
 * Cost: the model runs a few times at full attention's O(T²): use small T
 * (the equivalence does not depend on T). Creates and disposes two copies
 * of the model; the model itself is only read. Leaves no tensors behind.
 *
 * @param model a built tf.LayersModel with at least one LSHSelfAttention layer.
 * @param inputs what `model.predict` takes: a tensor [B, T, …] or one per model input.
 *
 * ```ts
 * const report = await checkEquivalence(model, tokens, { gradients: true });
 * console.log(report.equivalent, report.maxOutputDifference, report.layers);
 * ```
 */
export async function checkEquivalence(
  model: tfl.LayersModel,
  inputs: ModelInputs,
  options: CheckEquivalenceOptions = {},
): Promise<EquivalenceReport> {
  return checkWith('checkEquivalence', model, inputs, options);
}

async function checkWith(
  who: string,
  model: tfl.LayersModel,
  inputs: ModelInputs,
  options: CheckEquivalenceOptions,
): Promise<EquivalenceReport> {
  assertLayersModel(who, model);
  if (options === null || typeof options !== 'object') throw new Error(`${who}: options must be an object, got ${describeValue(options)}`);
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  assertTolerance(who, 'tolerance', tolerance);
  const gradientTolerance = options.gradientTolerance ?? DEFAULT_GRADIENT_TOLERANCE;
  assertTolerance(who, 'gradientTolerance', gradientTolerance);
  const withGradients = options.gradients ?? false;
  if (typeof withGradients !== 'boolean') throw new Error(`${who}: gradients must be true or false, got ${describeValue(withGradients)}`);
  if (options.loss !== undefined && typeof options.loss !== 'function') {
    throw new Error(`${who}: loss must be a function of the outputs (a list) returning a tensor, got ${describeValue(options.loss)}`);
  }
  const seed = options.seed ?? 1;
  assertSeed(who, seed);
  const modelAttention = attentionLayers(model);
  const lshCount = modelAttention.filter((layer) => layer instanceof LSHSelfAttention).length;
  if (lshCount === 0) {
    const classes = [...new Set(model.layers.map((layer) => layer.getClassName()))].join(', ');
    throw new Error(
      `${who}: the model has no LSHSelfAttention layer (its layers: ${classes}); there is nothing to compare with full attention`,
    );
  }
  const inputTensors = inputList(who, model, inputs);
  if (options.twin !== undefined) {
    assertLayersModel(`${who}: twin`, options.twin);
    if (attentionLayers(options.twin).length !== modelAttention.length) {
      throw new Error(
        `${who}: the twin has ${attentionLayers(options.twin).length} attention layers but the model has ${modelAttention.length}; ` +
          `pass a twin with the same layers (fullAttentionTwin(model) makes one)`,
      );
    }
  }

  const exact = exactLSH(model);
  const models: tfl.LayersModel[] = [exact];
  const recorder = new AttentionRecorder(attentionLayers(exact));
  const held: tf.Tensor[] = [];
  try {
    const twin = options.twin === undefined ? fullAttentionTwin(model) : copyModel(who, options.twin);
    models.push(twin);
    if (twin.weights.length !== model.weights.length) {
      throw new Error(`${who}: the twin has ${twin.weights.length} weights but the model has ${model.weights.length}; the layers do not line up`);
    }
    const twinAttention = attentionLayers(twin);

    // The outputs, recording each attention layer's calls on the way.
    recorder.recording = true;
    const exactOutputs = runModel(exact, inputTensors);
    recorder.recording = false;
    held.push(...exactOutputs);
    const twinOutputs = runModel(twin, inputTensors);
    held.push(...twinOutputs);
    const masks = outputMasks(twin, inputTensors);
    held.push(...masks.filter((mask): mask is tf.Tensor => mask !== null));
    const outputs: OutputDifference[] = [];
    for (let k = 0; k < exactOutputs.length; k++) {
      const comparison = await compareTensors(exactOutputs[k], twinOutputs[k], masks[k]);
      outputs.push({
        output: k,
        name: model.outputs[k]?.name ?? `output ${k}`,
        relativeError: comparison.relativeError,
        ...difference(comparison, tolerance * Math.max(1, comparison.scale)),
      });
    }

    // Each attention layer of the twin on what the exact-mode layer received.
    const layers: LayerDifference[] = [];
    for (let i = 0; i < modelAttention.length; i++) {
      const calls = recorder.calls[i];
      let worst: Comparison = { maxDifference: 0, scale: 0, relativeError: 0 };
      for (const call of calls) {
        const twinOutput = tf.tidy(() => (twinAttention[i] as SelfAttentionBase).attendModel(call.input, call.mask, { training: false, causal: call.causal }));
        const comparison = await compareTensors(call.output, twinOutput, call.mask);
        twinOutput.dispose();
        // NaN counts as the worst.
        if (!(comparison.maxDifference <= worst.maxDifference)) worst = { ...comparison };
        worst.scale = Math.max(worst.scale, comparison.scale);
      }
      layers.push({
        name: modelAttention[i].name,
        className: modelAttention[i].getClassName(),
        index: i,
        calls: calls.length,
        ...difference(worst, tolerance * Math.max(1, worst.scale)),
      });
    }

    let gradients: GradientDifference[] | null = null;
    if (withGradients) {
      let loss = options.loss;
      if (loss === undefined) {
        const projection = projectionLoss(twinOutputs, seed);
        held.push(...projection.projections);
        loss = projection.loss;
      }
      const exactGrads = lossGradients(exact, inputTensors, loss);
      held.push(...exactGrads);
      const twinGrads = lossGradients(twin, inputTensors, loss);
      held.push(...twinGrads);
      if (exactGrads.length !== twinGrads.length) {
        throw new Error(
          `${who}: the twin has ${twinGrads.length} trainable weights but the model has ${exactGrads.length}; the layers do not line up`,
        );
      }
      const comparisons: Comparison[] = [];
      for (let j = 0; j < exactGrads.length; j++) comparisons.push(await compareTensors(exactGrads[j], twinGrads[j], null));
      const globalScale = Math.max(0, ...comparisons.map((c) => c.scale));
      const names = model.trainableWeights.map((weight) => weight.originalName);
      gradients = comparisons.map((comparison, j) => ({
        weight: names[j] ?? `weight ${j}`,
        ...difference(comparison, gradientTolerance * globalScale),
      }));
    }

    const maxOf = (list: Difference[]) => list.reduce((worst, d) => (d.difference <= worst ? worst : d.difference), 0);
    const report: EquivalenceReport = {
      equivalent: [...outputs, ...layers, ...(gradients ?? [])].every((d) => d.withinTolerance),
      summary: '',
      outputs,
      maxOutputDifference: maxOf(outputs),
      layers,
      gradients,
      maxGradientDifference: gradients === null ? null : maxOf(gradients),
      tolerance,
      gradientTolerance,
    };
    report.summary = summarize(report);
    return report;
  } finally {
    recorder.dispose();
    tf.dispose(held);
    for (const copy of models) copy.dispose();
  }
}

/** The report's one sentence. */
function summarize(report: EquivalenceReport): string {
  const layerCount = report.layers.length;
  const layer = report.layers.find((d) => !d.withinTolerance);
  if (layer) {
    const where = `the ${ordinal(layer.index + 1)} of ${layerCount} attention layers`;
    return (
      `attention layer '${layer.name}' (${layer.className}, ${where}) differs from its full-attention twin by ${formatNumber(layer.difference)} ` +
      `(allowed ${formatNumber(layer.allowed)}: tolerance ${formatNumber(report.tolerance)} × max(1, output scale ${formatNumber(layer.scale)})) ` +
      `on the inputs it received; the model's outputs differ by ${formatNumber(report.maxOutputDifference)}`
    );
  }
  const output = report.outputs.find((d) => !d.withinTolerance);
  if (output) {
    return (
      `output ${output.output} ('${output.name}') differs from the full-attention twin's by ${formatNumber(output.difference)} ` +
      `(allowed ${formatNumber(output.allowed)}), though each attention layer agrees on its own inputs: ` +
      `a layer other than the attention differs between the two models`
    );
  }
  const gradient = report.gradients?.find((d) => !d.withinTolerance);
  if (gradient) {
    return (
      `the loss gradient of weight '${gradient.weight}' differs from the full-attention twin's by ${formatNumber(gradient.difference)} ` +
      `(allowed ${formatNumber(gradient.allowed)}: gradient tolerance ${formatNumber(report.gradientTolerance)} × the largest gradient entry), ` +
      `though the outputs agree`
    );
  }
  const gradients =
    report.maxGradientDifference === null ? '' : `, loss gradients of ${report.gradients?.length} weights within ${formatNumber(report.maxGradientDifference)}`;
  return (
    `equivalent: outputs within ${formatNumber(report.maxOutputDifference)} of the full-attention twin's, ` +
    `${layerCount} attention layer${layerCount === 1 ? '' : 's'} each within ${formatNumber(Math.max(0, ...report.layers.map((d) => d.difference)))}${gradients}`
  );
}

/**
 * {@link checkEquivalence}, throwing when the model is not equivalent to its
 * full-attention twin: the error names the first attention layer that
 * differs (in the order they run) and by how much, else the output or the
 * weight gradient. For any test framework (vitest, jest, mocha, node:test):
 * `await expectEquivalent(model, inputs)` inside a test.
 *
 * @returns the report, when equivalent.
 */
export async function expectEquivalent(
  model: tfl.LayersModel,
  inputs: ModelInputs,
  options: CheckEquivalenceOptions = {},
): Promise<EquivalenceReport> {
  const report = await checkWith('expectEquivalent', model, inputs, options);
  if (!report.equivalent) throw new Error(`expectEquivalent: ${report.summary}`);
  return report;
}
