/**
 * The weight arguments of the library's layers, taken as tfjs-layers'
 * `Dense` takes them (`kernelInitializer`, `biasInitializer`,
 * `kernelRegularizer`, `biasRegularizer`): a name, an instance from
 * `tf.initializers` / `tf.regularizers`, or its saved form
 * `{className, config}`. This module resolves them once (in a layer's
 * constructor), with an error that names the layer, and writes them back
 * into a config the same way tfjs-layers does, so save and load round-trip.
 *
 * tfjs-layers' own `getInitializer` and `serializeInitializer` are not in its
 * public exports (and a deep import would load a second copy of tfjs-layers
 * in Node), so resolving goes through the public factories and tfjs-core's
 * serialization registry, where every initializer and regularizer class is
 * registered.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { Initializer, InitializerIdentifier } from '@tensorflow/tfjs-layers/dist/initializers.js';
import type { Regularizer, RegularizerIdentifier } from '@tensorflow/tfjs-layers/dist/regularizers.js';
import { initializerSeed, type Seed } from '../src/random.js';

export type { Initializer, InitializerIdentifier, Regularizer, RegularizerIdentifier };

/** What an initializer argument takes: a name ('glorotUniform', 'zeros', …) or a `tf.initializers` instance. */
export type InitializerArg = InitializerIdentifier | Initializer;

/** What a regularizer argument takes: a name ('l1', 'l2', 'l1l2') or a `tf.regularizers` instance. */
export type RegularizerArg = RegularizerIdentifier | Regularizer;

/** The weight arguments of a layer with kernels and biases (the attention layers, the feed-forward). */
export interface DenseWeightArgs {
  /**
   * Initializer of every kernel: a name ('glorotUniform', 'heNormal', 'zeros',
   * …), a `tf.initializers` instance or its `{className, config}`. A seeded
   * initializer is re-seeded per kernel from its seed (kernels of one shape
   * would otherwise start equal). Default: glorotUniform seeded from the
   * layer's `seed`, a different seed per kernel.
   */
  kernelInitializer?: InitializerArg;
  /** Initializer of every bias (with `useBias`), as `kernelInitializer`. Default 'zeros'. */
  biasInitializer?: InitializerArg;
  /**
   * Regularizer of every kernel: a name ('l1', 'l2', 'l1l2': rate 0.01), a
   * `tf.regularizers` instance or its `{className, config}`. Its penalty is in
   * the layer's `losses` and is added to the loss in `model.fit`. Default: none.
   */
  kernelRegularizer?: RegularizerArg;
  /** Regularizer of every bias (with `useBias`), as `kernelRegularizer`. Default: none. */
  biasRegularizer?: RegularizerArg;
}

/** The resolved {@link DenseWeightArgs}: null where the argument is absent (the default applies). */
export interface DenseWeightSettings {
  kernelInitializer: Initializer | null;
  biasInitializer: Initializer;
  kernelRegularizer: Regularizer | null;
  biasRegularizer: Regularizer | null;
}

type AnyClass = abstract new (...args: never[]) => unknown;

/**
 * tfjs-layers' Initializer and Regularizer base classes, for instanceof
 * checks: the package exports only their factories, whose results extend
 * them directly (Zeros extends Initializer, L1L2 extends Regularizer).
 */
const INITIALIZER_CLASS = Object.getPrototypeOf(tfl.initializers.zeros().constructor) as AnyClass;
const REGULARIZER_CLASS = Object.getPrototypeOf(tfl.regularizers.l1l2().constructor) as AnyClass;

interface Kind {
  /** For messages: 'initializer'. */
  noun: string;
  /** For messages: 'an initializer'. */
  article: string;
  /** Example names for messages. */
  examples: string;
  /** The public factories by name (tf.initializers, tf.regularizers). */
  factories: object;
  base: AnyClass;
}

const INITIALIZER: Kind = {
  noun: 'initializer',
  article: 'an',
  examples: `'glorotUniform', 'heNormal', 'zeros', 'ones'`,
  factories: tfl.initializers,
  base: INITIALIZER_CLASS,
};
const REGULARIZER: Kind = { noun: 'regularizer', article: 'a', examples: `'l1', 'l2', 'l1l2'`, factories: tfl.regularizers, base: REGULARIZER_CLASS };

function shown(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === null || typeof value !== 'object') return String(value);
  const className = (value as { getClassName?: () => string }).getClassName?.();
  if (className !== undefined) return `an instance of ${className}`;
  try {
    return JSON.stringify(value);
  } catch {
    return 'an object';
  }
}

/** An instance of a registered class from its saved form. */
function fromRegistry(className: string, config: tf.serialization.ConfigDict): unknown {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (entry === undefined) return undefined;
  const [cls, fromConfig] = entry;
  return fromConfig(cls, config);
}

function resolve(who: string, what: string, value: unknown, kind: Kind): unknown {
  const fail = (detail = ''): Error =>
    new Error(
      `${who}: ${what} must be ${kind.article} ${kind.noun}: a name (${kind.examples}), a tf.${kind.noun}s instance ` +
        `or its {className, config}; got ${shown(value)}${detail}`,
    );
  let resolved: unknown;
  try {
    if (typeof value === 'string') {
      // A factory name ('glorotUniform', 'l2'), else a registered class name ('VarianceScaling').
      const factory = Object.prototype.hasOwnProperty.call(kind.factories, value)
        ? (kind.factories as Record<string, unknown>)[value]
        : undefined;
      resolved = typeof factory === 'function' ? (factory as (args: object) => unknown)({}) : fromRegistry(value, {});
    } else if (value instanceof kind.base) {
      resolved = value;
    } else if (value !== null && typeof value === 'object' && typeof (value as { className?: unknown }).className === 'string') {
      const { className, config } = value as { className: string; config?: tf.serialization.ConfigDict };
      resolved = fromRegistry(className, config ?? {});
    }
  } catch (error) {
    throw fail(` (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!(resolved instanceof kind.base)) throw fail();
  return resolved;
}

/**
 * An initializer argument resolved, or null when absent.
 * @param who the layer, for messages; `what` the argument's name.
 */
export function resolveInitializer(who: string, what: string, value: unknown): Initializer | null {
  return value == null ? null : (resolve(who, what, value, INITIALIZER) as Initializer);
}

/** A regularizer argument resolved, or null when absent. */
export function resolveRegularizer(who: string, what: string, value: unknown): Regularizer | null {
  return value == null ? null : (resolve(who, what, value, REGULARIZER) as Regularizer);
}

/** Resolves a layer's {@link DenseWeightArgs} (in its constructor). */
export function resolveDenseWeightArgs(who: string, args: DenseWeightArgs): DenseWeightSettings {
  return {
    kernelInitializer: resolveInitializer(who, 'kernelInitializer', args.kernelInitializer),
    biasInitializer: resolveInitializer(who, 'biasInitializer', args.biasInitializer) ?? tfl.initializers.zeros(),
    kernelRegularizer: resolveRegularizer(who, 'kernelRegularizer', args.kernelRegularizer),
    biasRegularizer: resolveRegularizer(who, 'biasRegularizer', args.biasRegularizer),
  };
}

/** An initializer or regularizer as a config saves it ({className, config}, as tfjs-layers writes it), or null. */
export function serializeWeightArg(value: Initializer | Regularizer | null): tf.serialization.ConfigDict | null {
  return value === null ? null : { className: value.getClassName(), config: value.getConfig() };
}

/**
 * The config entries of {@link DenseWeightSettings}: every one, null where
 * absent, as tfjs-layers' Dense writes them, except that an absent
 * kernelInitializer is left out (the default, seeded from the layer's seed,
 * is not one initializer).
 */
export function denseWeightConfig(settings: DenseWeightSettings): tf.serialization.ConfigDict {
  const config: tf.serialization.ConfigDict = {
    biasInitializer: serializeWeightArg(settings.biasInitializer),
    kernelRegularizer: serializeWeightArg(settings.kernelRegularizer),
    biasRegularizer: serializeWeightArg(settings.biasRegularizer),
  };
  if (settings.kernelInitializer !== null) config.kernelInitializer = serializeWeightArg(settings.kernelInitializer);
  return config;
}

/**
 * An initializer for one weight of a layer: re-seeded with
 * initializerSeed(its seed, salt) if it has a seed. tfjs's seeded
 * initializers draw the same numbers on every call, so one instance would
 * give equal weights of equal shape (a shared-QK projection equal to the V
 * projection); `salt` numbers the layer's weights.
 */
export function reseeded(initializer: Initializer, salt: number): Initializer {
  const config = initializer.getConfig();
  if (typeof config.seed !== 'number') return initializer;
  const copy = fromRegistry(initializer.getClassName(), { ...config, seed: initializerSeed(config.seed, salt) });
  return copy instanceof INITIALIZER_CLASS ? (copy as Initializer) : initializer;
}

/**
 * The initializer of a layer's `salt`-th kernel: the kernelInitializer
 * argument (re-seeded per kernel), else the library's default, glorotUniform
 * seeded with initializerSeed(layer seed, salt).
 */
export function kernelInitializerFor(settings: DenseWeightSettings, layerSeed: Seed, salt: number): Initializer {
  const given = settings.kernelInitializer;
  return given === null ? tfl.initializers.glorotUniform({ seed: initializerSeed(layerSeed, salt) }) : reseeded(given, salt);
}

/** The initializer of a layer's `salt`-th bias: the biasInitializer argument (re-seeded per bias), 'zeros' by default. */
export function biasInitializerFor(settings: DenseWeightSettings, salt: number): Initializer {
  return reseeded(settings.biasInitializer, salt);
}
