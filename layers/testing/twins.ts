/**
 * Copies of a model with its LSH attention layers changed: the full-attention
 * twin (every LSHSelfAttention becomes a FullSelfAttention with the same
 * weights) and the exact-mode copy (every LSHSelfAttention runs one chunk per
 * hash round, which is full attention by construction).
 *
 * A copy is rebuilt from the model's config (`model.getConfig()`, as saving
 * does, so layers nested in a ReversibleStack's blocks or in an inner model
 * are found too) with the layer configs changed, then given the model's
 * weights with `setWeights`. The two attention classes have the same weights,
 * in the same order, so the weight lists line up one to one. The original
 * model is only read.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { shapeString } from '../../src/validate.js';
import { assertLayersModel } from './inputs.js';

/**
 * The arguments LSHSelfAttention has and FullSelfAttention has not: removed
 * from a layer's config when it becomes full attention (the tests check that
 * nothing else tells the two apart).
 */
export const LSH_ONLY_ARGS: readonly string[] = [
  'nHashes',
  'chunkLength',
  'nBuckets',
  'numChunksBefore',
  'numChunksAfter',
  'hashFamily',
  'oneChunkPerRound',
  'fullAttentionThreshold',
  'allowDuplicateAttention',
  'attendAcrossBuckets',
];

/** The LSH layer classes and the full-attention class each becomes in a twin (same weights, same arguments less LSH_ONLY_ARGS). */
const FULL_TWIN_CLASS: Readonly<Record<string, string>> = {
  LSHSelfAttention: 'FullSelfAttention',
  LSHMultiHeadAttention: 'FullMultiHeadAttention',
};

type ConfigValue = tf.serialization.ConfigDictValue;
type ConfigDict = tf.serialization.ConfigDict;

/** A `{className, config}` node of a serialised model. */
interface LayerEntry extends ConfigDict {
  className: string;
  config: ConfigDict;
}

function isLayerEntry(value: ConfigValue): value is LayerEntry {
  return (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    typeof (value as ConfigDict).className === 'string' &&
    (value as ConfigDict).config !== null &&
    typeof (value as ConfigDict).config === 'object'
  );
}

/**
 * Rewrites every LSHSelfAttention entry of a config tree (in place: the tree
 * is a private copy) and returns how many it rewrote.
 */
function rewriteLSHEntries(value: ConfigValue, rewrite: (entry: LayerEntry) => void): number {
  if (value === null || typeof value !== 'object') return 0;
  if (Array.isArray(value)) return value.reduce<number>((count, item) => count + rewriteLSHEntries(item, rewrite), 0);
  if (isLayerEntry(value) && Object.hasOwn(FULL_TWIN_CLASS, value.className)) {
    rewrite(value);
    return 1;
  }
  return Object.values(value as ConfigDict).reduce<number>((count, item) => count + rewriteLSHEntries(item ?? null, rewrite), 0);
}

/** `fromConfig` as tfjs-layers' model classes define it (the registry's type leaves out the last two arguments). */
type ModelFromConfig = (
  cls: tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
  config: ConfigDict,
  customObjects: ConfigDict,
  fastWeightInit: boolean,
) => tf.serialization.Serializable;

/**
 * A copy of `model` built from its config after `rewrite` changed its
 * LSHSelfAttention entries, holding copies of the model's weights.
 *
 * @param who the public function, for messages.
 */
export function rebuildModel(who: string, model: tfl.LayersModel, rewrite: (entry: LayerEntry) => void): tfl.LayersModel {
  assertLayersModel(who, model);
  const className = model.getClassName();
  const registered = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (registered === undefined) {
    throw new Error(`${who}: the model's class ${className} is not registered with tf.serialization; register it (or use tf.model)`);
  }
  // A deep copy: tfjs-layers' deserialisation writes into the configs it reads.
  const config = JSON.parse(JSON.stringify(model.getConfig())) as ConfigDict;
  rewriteLSHEntries(config, rewrite);
  const [cls, fromConfig] = registered;
  // fastWeightInit: skip the initialisers, since every weight is overwritten next.
  const copy = (fromConfig as unknown as ModelFromConfig)(cls, config, {}, true) as tfl.LayersModel;
  try {
    copyWeights(who, model, copy);
  } catch (error) {
    copy.dispose();
    throw error;
  }
  return copy;
}

/** Gives `to` the weights of `from`, checking that they line up (count, names, shapes). */
export function copyWeights(who: string, from: tfl.LayersModel, to: tfl.LayersModel): void {
  const source = from.weights;
  const target = to.weights;
  if (source.length !== target.length) {
    throw new Error(`${who}: the copy has ${target.length} weights but the model has ${source.length}; the layers do not line up`);
  }
  source.forEach((weight, i) => {
    const other = target[i];
    if (weight.shape.some((size, axis) => size !== other.shape[axis]) || weight.shape.length !== other.shape.length) {
      throw new Error(
        `${who}: weight ${i} (${weight.originalName}) has shape ${shapeString(weight.shape)} in the model but ${shapeString(other.shape)} ` +
          `(${other.originalName}) in the copy; the layers do not line up`,
      );
    }
  });
  // getWeights returns the variables themselves; setWeights copies their values.
  to.setWeights(from.getWeights());
}

/**
 * A copy of a model in which every LSHSelfAttention layer (inside reversible
 * stacks and inner models too) is a FullSelfAttention with the same name,
 * settings (heads, causal, biases, dropout, seed…) and weights: the O(T²)
 * model the LSH model approximates. Full attention uses the same shared-QK
 * logits and masks as LSH attention (causal, padding, a token sees itself
 * only when nothing else is allowed), so the twin is what the LSH model
 * computes with one chunk per round. The original is not changed; dispose
 * the copy when done.
 *
 * @param model a built tf.LayersModel (sequential, functional, reformerLM, loaded).
 * @returns a new tf.LayersModel with the same inputs and outputs.
 */
export function fullAttentionTwin(model: tfl.LayersModel): tfl.LayersModel {
  return rebuildModel('fullAttentionTwin', model, (entry) => {
    entry.className = FULL_TWIN_CLASS[entry.className];
    for (const key of LSH_ONLY_ARGS) delete entry.config[key];
  });
}

/**
 * A copy of a model whose LSHSelfAttention layers run in exact mode
 * (`oneChunkPerRound`): each hash round is one chunk of all T positions, so
 * every query sees every key and the copy computes what
 * {@link fullAttentionTwin} computes, to float32 rounding, through the LSH
 * code path (hashing, sorting, chunking, combining rounds). Everything else
 * (weights, nHashes, seeds, masks) is the model's. The original is not
 * changed; dispose the copy when done.
 *
 * @param model a built tf.LayersModel.
 * @returns a new tf.LayersModel with the same inputs and outputs.
 */
export function exactLSH(model: tfl.LayersModel): tfl.LayersModel {
  return rebuildModel('exactLSH', model, (entry) => {
    entry.config.oneChunkPerRound = true;
  });
}

/** A plain copy of a model (the same config and weights). */
export function copyModel(who: string, model: tfl.LayersModel): tfl.LayersModel {
  return rebuildModel(who, model, () => undefined);
}
