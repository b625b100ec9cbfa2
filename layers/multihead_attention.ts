/**
 * MultiHeadAttention-compatible layers: {@link LSHMultiHeadAttention} and
 * {@link FullMultiHeadAttention} take tfjs-layers' `MultiHeadAttention`
 * argument names (`numHeads`, `keyDim`, `valueDim`, `dropout`, `useBias`,
 * `outputShape`, the kernel and bias initializers and regularizers) and its
 * call form, `layer.call(query, {value, key, attentionMask, useCausalMask,
 * training})` (or `layer.apply(query, {...})` in a functional model), so a
 * model written for `MultiHeadAttention` switches with one line.
 *
 * They are {@link LSHSelfAttention} and {@link FullSelfAttention} (same
 * weights, same attention code) with that argument mapping and call form
 * on top. What differs from `MultiHeadAttention`:
 * - shared queries and keys: one QK projection instead of a query and a key
 *   projection (three projections, not four), so self-attention only
 *   (`value` and `key` must be the query itself, or left out);
 * - `attentionMask` only as a key-padding mask ([B, T], or [B, T, T] whose
 *   rows are one padding pattern; see {@link paddingMaskFromAttentionMask});
 * - `valueDim` only equal to `keyDim`, `outputShape` only the query's size M;
 * - no `attentionAxes`, constraints or `returnAttentionScores`.
 *
 * Legend: B batch, T length, M model size (the query's last dimension),
 * H heads, D head size (keyDim).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { assertBinaryMask, assertBoolean, assertDtype, assertPositiveInteger, shapeString } from '../src/validate.js';
import { checkMask } from '../src/hashing.js';
import { FullSelfAttention, LSHSelfAttention, type LSHSelfAttentionArgs, type SelfAttentionArgs } from './self_attention.js';

type Shape = (number | null)[];
type AnyTensor = tf.Tensor | tfl.SymbolicTensor;
/** What tf.layers' Layer.apply takes and returns. */
type LayerIO = tf.Tensor | tf.Tensor[] | tfl.SymbolicTensor | tfl.SymbolicTensor[];

/** The arguments of {@link FullMultiHeadAttention}, named as tfjs-layers' MultiHeadAttentionArgs. */
export interface MultiHeadAttentionArgs
  extends Omit<SelfAttentionArgs, 'numHeads' | 'headDim' | 'causal' | 'returnAttention'> {
  /** H, the number of heads. Required, as in MultiHeadAttention. */
  numHeads: number;
  /** D, the size of each head of the (shared) queries and keys. Required, as in MultiHeadAttention. */
  keyDim: number;
  /**
   * The size of each value head. The layers' value heads have the size of
   * the key heads, so only keyDim is accepted. Default keyDim.
   */
  valueDim?: number;
  /**
   * The output's last dimension. The layers project back to the query's
   * size M, so only M (as a number or [M]) is accepted, checked when the
   * layer is built. Default M.
   */
  outputShape?: number | number[];
}

/** The arguments of {@link LSHMultiHeadAttention}: MultiHeadAttention's, plus the LSH settings of {@link LSHSelfAttentionArgs}. */
export interface LSHMultiHeadAttentionArgs
  extends MultiHeadAttentionArgs,
    Pick<
      LSHSelfAttentionArgs,
      | 'nHashes'
      | 'chunkLength'
      | 'nBuckets'
      | 'numChunksBefore'
      | 'numChunksAfter'
      | 'hashFamily'
      | 'oneChunkPerRound'
      | 'fullAttentionThreshold'
      | 'allowDuplicateAttention'
      | 'attendAcrossBuckets'
    > {}

/**
 * The call options (kwargs) of both layers, as MultiHeadAttention's
 * `call(query, kwargs)` takes them.
 */
export interface MultiHeadAttentionCallOptions {
  /** The values: the query itself (self-attention), or left out. Default: the query. */
  value?: AnyTensor;
  /** The keys: the query itself, or left out. Default: the query. */
  key?: AnyTensor;
  /**
   * A key-padding mask, 1 keep / 0 pad (float32, int32 or bool): [B, T], or
   * [B, T, T] whose rows all keep the same keys (a row of zeros is allowed
   * for a padded query). Default: none (the mask propagated from an
   * `embedding({maskZero: true})`, if any, still applies).
   */
  attentionMask?: AnyTensor;
  /**
   * Each query attends only to keys at or before its position. Default
   * false, or for a layer applied in a functional model, that
   * application's value (tfjs-layers runs a model's layers without their
   * per-application arguments, so the layer keeps it; see
   * {@link LSHMultiHeadAttention.graphCausal}).
   */
  useCausalMask?: boolean;
  /** Training mode: dropout, and for LSH fresh hash rotations. Default false. */
  training?: boolean;
}

/** MultiHeadAttention arguments these layers do not take, with the reason. */
const UNSUPPORTED_ARGS: Record<string, string> = {
  attentionAxes: 'attention runs over the sequence axis (axis 1) only',
  kernelConstraint: 'the layers have no weight constraints',
  biasConstraint: 'the layers have no weight constraints',
  returnAttention: "the weights come from the layer's attendModelWithAttention(x, mask)",
};

/** Validates MultiHeadAttention-style arguments and maps them to the self-attention layers' (keyDim → headDim, causal per call). */
function selfAttentionArgs<A extends MultiHeadAttentionArgs>(who: string, args: A): Omit<A, 'keyDim' | 'valueDim' | 'outputShape'> & SelfAttentionArgs {
  if (args === null || typeof args !== 'object') {
    throw new Error(`${who}: expected an arguments object such as {numHeads: 4, keyDim: 16}, got ${String(args)}`);
  }
  for (const [name, reason] of Object.entries(UNSUPPORTED_ARGS)) {
    if ((args as unknown as Record<string, unknown>)[name] != null) {
      throw new Error(`${who}: ${name} is not supported (${reason}); leave it out`);
    }
  }
  assertPositiveInteger(who, 'numHeads', args.numHeads);
  assertPositiveInteger(who, 'keyDim', args.keyDim);
  if (args.valueDim != null && args.valueDim !== args.keyDim) {
    throw new Error(
      `${who}: valueDim must equal keyDim (value heads have the size of the shared query/key heads here), ` +
        `got valueDim ${String(args.valueDim)} with keyDim ${args.keyDim}; leave valueDim out`,
    );
  }
  outputSize(who, args.outputShape);
  const { keyDim, valueDim: _valueDim, outputShape: _outputShape, ...rest } = args;
  return { ...rest, headDim: keyDim, causal: false };
}

/** The size outputShape asks for (a number or [number]), undefined when absent; throws on anything else. */
function outputSize(who: string, outputShape: unknown): number | undefined {
  if (outputShape == null) return undefined;
  const size = Array.isArray(outputShape) && outputShape.length === 1 ? outputShape[0] : outputShape;
  if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) {
    throw new Error(
      `${who}: outputShape must be the query's size M, as a number or [M] (the output projection maps back to M), ` +
        `got ${JSON.stringify(outputShape)}; leave it out for M`,
    );
  }
  return size;
}

/** Throws unless outputShape (if given) is the query's size M, at build time. */
function checkOutputShape(who: string, outputShape: number | number[] | undefined, inputShape: Shape | Shape[]): void {
  const size = outputSize(who, outputShape);
  const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  const modelSize = shape[shape.length - 1];
  if (size !== undefined && modelSize != null && size !== modelSize) {
    throw new Error(
      `${who}: outputShape ${JSON.stringify(outputShape)} must be the query's size M = ${modelSize} ` +
        `(the output projection maps back to M); leave it out, or add a tf.layers.dense({units: ${size}}) after the layer`,
    );
  }
}

/** The config entries that replace the self-attention layers' headDim and causal. */
function multiHeadConfig(base: tf.serialization.ConfigDict, keyDim: number, valueDim: number | undefined, outputShape: number | number[] | undefined): tf.serialization.ConfigDict {
  const { headDim: _headDim, causal: _causal, ...rest } = base;
  const config: tf.serialization.ConfigDict = { ...rest, keyDim };
  if (valueDim !== undefined) config.valueDim = valueDim;
  if (outputShape !== undefined) config.outputShape = outputShape;
  return config;
}

function shownTensor(value: unknown): string {
  if (value instanceof tf.Tensor) return `a different tensor ${shapeString(value.shape)}`;
  const shape = (value as { shape?: Shape } | null)?.shape;
  return Array.isArray(shape) ? `a different tensor ${shapeString(shape)}` : String(value);
}

/** Throws unless `value` and `key` are absent or the query itself, and returnAttentionScores is not asked for. */
function checkSelfAttention(who: string, query: unknown, kwargs: Kwargs | undefined): void {
  for (const name of ['value', 'key'] as const) {
    const given: unknown = kwargs?.[name];
    if (given != null && given !== query) {
      throw new Error(
        `${who}: ${name} must be the query itself (or left out), got ${shownTensor(given)}: LSH attention shares queries and keys, ` +
          `so these layers are self-attention only; call layer.apply(x, {value: x}) (or leave value and key out), ` +
          `and for cross-attention use tfjs-layers' MultiHeadAttention`,
      );
    }
  }
  if (kwargs?.returnAttentionScores) {
    throw new Error(`${who}: returnAttentionScores is not supported (LSH attention never forms the [B, H, T, T] scores); leave it out`);
  }
}

/**
 * The key-padding mask float [B, T] (1 keep, 0 pad) that an attentionMask
 * stands for, or an error saying why it is not one.
 *
 * [B, T]: a padding mask as it is. [B, T, T] (entry [b, i, j]: may query i
 * see key j): every row of a batch entry must keep the same keys, the
 * padding pattern (the keys any row keeps), except that a row may be all
 * zeros where its own query is padding (the outer product of a padding mask
 * with itself has those rows). With `causal`, entries after the diagonal
 * are not looked at, since the causal mask hides them anyway (so a causal
 * mask times padding is accepted as well). Checking a [B, T, T] mask reads
 * it back from the backend: B·T² values, O(B·T²) time.
 *
 * @param mask [B, T] or [B, T, T], float32, int32 or bool, values 0 and 1.
 * @param batch B, length T: the query's.
 * @returns float32 [B, T]
 */
export function paddingMaskFromAttentionMask(who: string, mask: unknown, batch: number, length: number, causal: boolean): tf.Tensor2D {
  if (!(mask instanceof tf.Tensor) || (mask.rank !== 2 && mask.rank !== 3)) {
    const got = mask instanceof tf.Tensor ? `shape ${shapeString(mask.shape)}` : String(mask);
    throw new Error(`${who}: attentionMask must be a tensor [B, T] or [B, T, T] = [${batch}, ${length}, ${length}], got ${got}`);
  }
  if (mask.rank === 2) {
    checkMask(who, mask, batch, length, 'attentionMask');
    return tf.cast(mask, 'float32') as tf.Tensor2D;
  }
  if (mask.shape[0] !== batch || mask.shape[1] !== length || mask.shape[2] !== length) {
    throw new Error(
      `${who}: attentionMask must have shape [B, T, T] = [${batch}, ${length}, ${length}] to match the query ` +
        `(self-attention: as many keys as queries), got ${shapeString(mask.shape)}`,
    );
  }
  assertDtype(who, 'attentionMask', mask, ['float32', 'int32', 'bool'], "cast it with tf.cast(mask, 'float32')");
  const values = mask.dataSync();
  assertBinaryMask(who, 'attentionMask', values, mask.shape);
  const pattern = new Float32Array(batch * length);
  const seen = (i: number, j: number) => !causal || j <= i;
  for (let b = 0; b < batch; b++) {
    const rows = b * length * length;
    const keys = pattern.subarray(b * length, (b + 1) * length);
    for (let i = 0; i < length; i++) for (let j = 0; j < length; j++) if (seen(i, j) && values[rows + i * length + j] === 1) keys[j] = 1;
    for (let i = 0; i < length; i++) {
      const row = rows + i * length;
      let empty = true;
      for (let j = 0; j < length; j++) if (seen(i, j) && values[row + j] !== 0) empty = false;
      if (empty && keys[i] === 0) continue; // a padded query's row
      for (let j = 0; j < length; j++) {
        if (seen(i, j) && values[row + j] !== keys[j]) {
          throw new Error(
            `${who}: attentionMask row ${i} of batch ${b} ${values[row + j] === 1 ? 'keeps' : 'masks'} key ${j}, which ` +
              `${keys[j] === 1 ? 'other rows keep' : 'no other row keeps'}: only key-padding masks (every query row keeping the same keys, ` +
              `or all zeros for a padded query) are supported by LSH attention; pass a [B, T] padding mask` +
              `${causal ? '' : ', with useCausalMask: true for causal masking'}`,
          );
        }
      }
    }
  }
  return tf.tensor2d(pattern, [batch, length]);
}

/** The layer members the shared apply and call need (both classes have them). */
interface MultiHeadLayer {
  getClassName(): string;
  attendModel: LSHSelfAttention['attendModel'];
  graphCausal: boolean | undefined;
}

const isSymbolic = (inputs: LayerIO): boolean => (Array.isArray(inputs) ? inputs : [inputs]).some((x) => x instanceof tfl.SymbolicTensor);

/**
 * Keeps the useCausalMask of a symbolic application (building a functional
 * model, or loading one: the saved model holds it as that node's call
 * argument): tfjs-layers' predict, fit and evaluate run the layer without
 * it. One layer applied twice in a graph must use one setting.
 */
function noteGraphCausal(layer: MultiHeadLayer, inputs: LayerIO, kwargs: Kwargs): void {
  if (!isSymbolic(inputs)) return;
  const causal = kwargs.useCausalMask ?? layer.graphCausal ?? false;
  assertBoolean(layer.getClassName(), 'useCausalMask', causal);
  if (layer.graphCausal !== undefined && layer.graphCausal !== causal) {
    throw new Error(
      `${layer.getClassName()}: the layer is already in a model with useCausalMask ${layer.graphCausal}, got ${causal}: ` +
        `tfjs-layers runs a model's layers without their per-application arguments, so one layer keeps one setting; ` +
        `use a second layer (setWeights(first.getWeights()) to share the values)`,
    );
  }
  layer.graphCausal = causal;
}

/** MultiHeadAttention's apply form → the self-attention layers' inputs: [query, attentionMask] or query, and the remaining kwargs. */
function applyArgs(layer: MultiHeadLayer, inputs: LayerIO, kwargs: Kwargs | undefined): [LayerIO, Kwargs] {
  // An array: the form this method hands on (a functional model's node calls apply with it again), or [x, mask] as the self-attention layers take.
  if (Array.isArray(inputs)) {
    noteGraphCausal(layer, inputs, kwargs ?? {});
    return [inputs, kwargs ?? {}];
  }
  checkSelfAttention(layer.getClassName(), inputs, kwargs);
  const { value: _value, key: _key, attentionMask, ...rest } = kwargs ?? {};
  // tf.layers takes [query, mask] as one list of tensors, concrete or symbolic alike.
  const layerInputs = attentionMask != null ? ([inputs, attentionMask] as LayerIO) : inputs;
  noteGraphCausal(layer, layerInputs, rest);
  return [layerInputs, rest];
}

/** The shared call: query [B, T, M] with kwargs → [B, T, M]. */
function multiHeadCall(layer: MultiHeadLayer, inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
  const who = layer.getClassName();
  return tf.tidy(() => {
    const query = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
    checkSelfAttention(who, query, kwargs);
    if (!(query instanceof tf.Tensor) || query.rank !== 3) {
      throw new Error(`${who}: query must be a tensor [B, T, M], got ${query instanceof tf.Tensor ? shapeString(query.shape) : String(query)}`);
    }
    const causal = kwargs.useCausalMask ?? layer.graphCausal ?? false;
    assertBoolean(who, 'useCausalMask', causal);
    const [batch, length] = query.shape;
    const attentionMask = Array.isArray(inputs) && inputs.length > 1 ? inputs[1] : kwargs.attentionMask;
    let mask = attentionMask != null ? paddingMaskFromAttentionMask(who, attentionMask, batch, length, causal) : null;
    // The mask an embedding({maskZero: true}) propagates, on top.
    const propagated = Array.isArray(kwargs.mask) ? kwargs.mask[0] : kwargs.mask;
    if (propagated instanceof tf.Tensor) {
      const keep = tf.cast(propagated, 'float32') as tf.Tensor2D;
      mask = mask === null ? keep : (tf.mul(mask, keep) as tf.Tensor2D);
    }
    return layer.attendModel(query, mask, { training: kwargs.training === true, causal });
  });
}

/** The output mask: the propagated one, or a [B, T] attentionMask (a [B, T, T] one says nothing per position). */
function outputMask(inputs: tf.Tensor | tf.Tensor[], mask: tf.Tensor | tf.Tensor[] | undefined): tf.Tensor {
  const given = Array.isArray(mask) ? mask[0] : mask;
  const attentionMask = Array.isArray(inputs) && inputs.length > 1 ? inputs[1] : null;
  const fromInput = given == null && attentionMask !== null && attentionMask.rank === 2 ? tf.cast(attentionMask, 'bool') : null;
  // tfjs-layers accepts null for "no mask"; its type says Tensor.
  return (given ?? fromInput) as tf.Tensor;
}

/**
 * Reformer LSH self-attention with tfjs-layers' MultiHeadAttention
 * arguments and call form: {@link LSHSelfAttention} underneath.
 *
 * Query [B, T, M] → [B, T, M]; `layer.call(query, {value, key,
 * attentionMask, useCausalMask, training})` or, in a functional model,
 * `layer.apply(query, {...})`. Self-attention only (value and key must be
 * the query, or absent); see {@link MultiHeadAttentionCallOptions}.
 *
 * ```ts
 * const attention = lshMultiHeadAttention({ numHeads: 4, keyDim: 16, nHashes: 4, chunkLength: 64, seed: 1 });
 * const y = attention.apply(x, { value: x, useCausalMask: true });
 * ```
 */
export class LSHMultiHeadAttention extends LSHSelfAttention {
  static override className = 'LSHMultiHeadAttention';
  readonly keyDim: number;
  readonly valueDim: number | undefined;
  /** The outputShape argument as given (`outputShape` itself is tf.layers' accessor of the output's shape). */
  readonly outputShapeArg: number | number[] | undefined;
  /**
   * The useCausalMask of the layer's application in a functional model
   * (undefined before one): the default of its calls, since tfjs-layers'
   * predict, fit and evaluate run layers without their per-application
   * arguments.
   */
  graphCausal: boolean | undefined = undefined;

  constructor(args: LSHMultiHeadAttentionArgs) {
    super(selfAttentionArgs('LSHMultiHeadAttention', args));
    this.keyDim = args.keyDim;
    this.valueDim = args.valueDim ?? undefined;
    this.outputShapeArg = args.outputShape ?? undefined;
  }

  override build(inputShape: Shape | Shape[]): void {
    checkOutputShape(this.getClassName(), this.outputShapeArg, inputShape);
    super.build(inputShape);
  }

  /** `apply(query, {value, key, attentionMask, useCausalMask, training})`, concrete or symbolic. */
  override apply(inputs: LayerIO, kwargs?: Kwargs): LayerIO {
    const [layerInputs, rest] = applyArgs(this, inputs, kwargs);
    return super.apply(layerInputs, rest);
  }

  /** `call(query, {value, key, attentionMask, useCausalMask, training})` → [B, T, M]; builds the layer on first use. */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs = {}): tf.Tensor {
    if (!this.built) return this.apply(inputs, kwargs) as tf.Tensor; // builds (under the layer's name scope), then comes back here
    return multiHeadCall(this, inputs, kwargs);
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return outputMask(inputs, mask);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return multiHeadConfig(super.getConfig(), this.keyDim, this.valueDim, this.outputShapeArg);
  }
}
tf.serialization.registerClass(LSHMultiHeadAttention);

/**
 * Full O(T²) shared-QK self-attention with MultiHeadAttention's arguments
 * and call form: {@link FullSelfAttention} underneath, and the twin of
 * {@link LSHMultiHeadAttention} (same weights, same call), to compare
 * against or swap in. Self-attention only, like its twin.
 */
export class FullMultiHeadAttention extends FullSelfAttention {
  static override className = 'FullMultiHeadAttention';
  readonly keyDim: number;
  readonly valueDim: number | undefined;
  /** The outputShape argument as given (`outputShape` itself is tf.layers' accessor of the output's shape). */
  readonly outputShapeArg: number | number[] | undefined;
  /** As {@link LSHMultiHeadAttention.graphCausal}. */
  graphCausal: boolean | undefined = undefined;

  constructor(args: MultiHeadAttentionArgs) {
    super(selfAttentionArgs('FullMultiHeadAttention', args));
    this.keyDim = args.keyDim;
    this.valueDim = args.valueDim ?? undefined;
    this.outputShapeArg = args.outputShape ?? undefined;
  }

  override build(inputShape: Shape | Shape[]): void {
    checkOutputShape(this.getClassName(), this.outputShapeArg, inputShape);
    super.build(inputShape);
  }

  /** As {@link LSHMultiHeadAttention.apply}. */
  override apply(inputs: LayerIO, kwargs?: Kwargs): LayerIO {
    const [layerInputs, rest] = applyArgs(this, inputs, kwargs);
    return super.apply(layerInputs, rest);
  }

  /** As {@link LSHMultiHeadAttention.call}. */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs = {}): tf.Tensor {
    if (!this.built) return this.apply(inputs, kwargs) as tf.Tensor;
    return multiHeadCall(this, inputs, kwargs);
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return outputMask(inputs, mask);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return multiHeadConfig(super.getConfig(), this.keyDim, this.valueDim, this.outputShapeArg);
  }
}
tf.serialization.registerClass(FullMultiHeadAttention);

/** Creates an {@link LSHMultiHeadAttention} layer: `tf.layers.multiHeadAttention`'s arguments plus the LSH ones. */
export function lshMultiHeadAttention(args: LSHMultiHeadAttentionArgs): LSHMultiHeadAttention {
  return new LSHMultiHeadAttention(args);
}

/** Creates a {@link FullMultiHeadAttention} layer. */
export function fullMultiHeadAttention(args: MultiHeadAttentionArgs): FullMultiHeadAttention {
  return new FullMultiHeadAttention(args);
}
