/**
 * Position embeddings that add a learned vector per position to x [B, T, M]:
 * {@link PositionEmbedding} (one row per position, a [T_max, M] table) and
 * {@link AxialPositionEmbedding} (the Reformer's axial embeddings: positions
 * laid out on a d1 × d2 grid, each the combination of a row vector and a
 * column vector, so two small tables [d1, ·] and [d2, ·] stand in for a
 * [d1·d2, M] one).
 *
 * Legend: B batch, T length, M model size; d1, d2 the grid's factors.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { assertSeed, freshSeed, initializerSeed, type Seed } from '../src/random.js';
import { assertPositiveInteger, shapeString } from '../src/validate.js';
import {
  reseeded,
  resolveInitializer,
  resolveRegularizer,
  serializeWeightArg,
  type Initializer,
  type InitializerArg,
  type Regularizer,
  type RegularizerArg,
} from './weight_args.js';

type Shape = (number | null)[];

/** Arguments both position embeddings take (the weight arguments as tf.layers.embedding takes them). */
interface PositionEmbeddingBaseArgs extends LayerArgs {
  /** Standard deviation of the default initializer's normal values (not with embeddingsInitializer). Default 0.02. */
  stddev?: number;
  /**
   * Initializer of the table (both tables of the axial embedding): a name
   * ('randomNormal', 'zeros', …), a `tf.initializers` instance or its
   * `{className, config}`; a seeded one is re-seeded per table. Default:
   * N(0, stddev²) seeded from the layer's `seed`, a different seed per table.
   */
  embeddingsInitializer?: InitializerArg;
  /**
   * Regularizer of the table(s): a name ('l1', 'l2', 'l1l2'), a
   * `tf.regularizers` instance or its `{className, config}`; its penalty is
   * in the layer's `losses` and is added to the loss in `model.fit`. Default: none.
   */
  embeddingsRegularizer?: RegularizerArg;
  /** Seed of the default initializer. Default: drawn at construction (and saved in the config). */
  seed?: Seed;
}

/** Arguments of {@link PositionEmbedding}. */
export interface PositionEmbeddingArgs extends PositionEmbeddingBaseArgs {
  /** The longest input T: the table has this many rows. Required. */
  maxLength: number;
}

/** How {@link AxialPositionEmbedding} combines its row and column vectors. */
export type AxialCombine = 'concat' | 'sum';

/** Arguments of {@link AxialPositionEmbedding}. */
export interface AxialPositionEmbeddingArgs extends PositionEmbeddingBaseArgs {
  /**
   * [d1, d2], the grid: position t is row ⌊t / d2⌋, column t mod d2, and the
   * longest input is d1·d2 (shorter inputs use the first T positions). Required.
   */
  axialShape: [number, number];
  /**
   * 'concat' (the Reformer's): the embedding is [row vector (e1) ‖ column
   * vector (e2)], e1 + e2 = M. 'sum': row vector + column vector, both M wide.
   * Default 'concat'.
   */
  combine?: AxialCombine;
  /** [e1, e2] for 'concat', with e1 + e2 = M. Default [⌈M/2⌉, ⌊M/2⌋]. */
  axialDims?: [number, number];
}

/** The data input of a call, and its shape checked as [B, T, M]. */
function dataShape(who: string, inputShape: Shape | Shape[]): Shape {
  const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  if (shape.length !== 3 || shape[2] == null) {
    throw new Error(`${who}: input must have shape [B, T, M] with M known, got ${shapeString(shape)}`);
  }
  return shape;
}

/** The base: shapes, masks, the call; subclasses supply the [T_max, M] table. */
abstract class PositionEmbeddingBase extends tfl.layers.Layer {
  readonly stddev: number;
  /** The embeddingsInitializer argument; null: the default. */
  readonly embeddingsInitializer: Initializer | null;
  readonly embeddingsRegularizer: Regularizer | null;
  readonly seed: Seed;

  constructor(args: PositionEmbeddingBaseArgs, who: string) {
    super(args);
    this.stddev = args.stddev ?? 0.02;
    if (!(this.stddev >= 0)) throw new Error(`${who}: stddev must be a number ≥ 0, got ${String(args.stddev)}`);
    this.embeddingsInitializer = resolveInitializer(who, 'embeddingsInitializer', args.embeddingsInitializer);
    if (this.embeddingsInitializer !== null && args.stddev !== undefined) {
      throw new Error(
        `${who}: stddev applies only to the default initializer, but an embeddingsInitializer is given; ` +
          `remove stddev (or set it in the initializer, e.g. tf.initializers.randomNormal({ stddev }))`,
      );
    }
    this.embeddingsRegularizer = resolveRegularizer(who, 'embeddingsRegularizer', args.embeddingsRegularizer);
    this.seed = args.seed ?? freshSeed();
    assertSeed(who, this.seed);
    this.supportsMasking = true;
  }

  /** The longest input length. */
  abstract get maxLength(): number;

  /** The embeddings of positions 0 … length − 1: [length, M]. */
  abstract positionTable(length: number): tf.Tensor2D;

  /** A table's weight: the `salt`-th of the layer, [rows, columns]. */
  protected addTable(name: string, shape: [number, number], salt: number): tfl.LayerVariable {
    const initializer =
      this.embeddingsInitializer === null
        ? tfl.initializers.randomNormal({ mean: 0, stddev: this.stddev, seed: initializerSeed(this.seed, salt) })
        : reseeded(this.embeddingsInitializer, salt);
    return this.addWeight(name, shape, 'float32', initializer, this.embeddingsRegularizer ?? undefined);
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return dataShape(this.getClassName(), inputShape).slice();
  }

  /** The output keeps the input's mask. */
  override computeMask(_inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    // tfjs-layers accepts null for "no mask"; its type says Tensor.
    return (Array.isArray(mask) ? mask[0] : mask) as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      const who = this.getClassName();
      if (x.rank !== 3) throw new Error(`${who}: input must have shape [B, T, M], got ${shapeString(x.shape)}`);
      const length = x.shape[1];
      if (length > this.maxLength) {
        throw new Error(
          `${who}: the input has ${length} positions but the embedding covers ${this.maxLength}; ` +
            `make a larger one or feed at most ${this.maxLength} positions`,
        );
      }
      return tf.add(x, tf.expandDims(this.positionTable(length), 0));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    // stddev only with the default initializer (the constructor refuses both).
    const initializer: tf.serialization.ConfigDict =
      this.embeddingsInitializer === null ? { stddev: this.stddev } : { embeddingsInitializer: serializeWeightArg(this.embeddingsInitializer) };
    return { ...super.getConfig(), ...initializer, embeddingsRegularizer: serializeWeightArg(this.embeddingsRegularizer), seed: this.seed };
  }
}

/**
 * Learned position embeddings: adds row t of a [maxLength, M] table to
 * position t of x [B, T, M], T ≤ maxLength.
 *
 * ```ts
 * const positions = positionEmbedding({ maxLength: 512, seed: 1 });
 * ```
 */
export class PositionEmbedding extends PositionEmbeddingBase {
  static className = 'PositionEmbedding';
  private readonly maxLengthArg: number;
  private table: tfl.LayerVariable | null = null;

  constructor(args: PositionEmbeddingArgs) {
    super(args, 'PositionEmbedding');
    assertPositiveInteger('PositionEmbedding', 'maxLength', args.maxLength);
    this.maxLengthArg = args.maxLength;
  }

  get maxLength(): number {
    return this.maxLengthArg;
  }

  override build(inputShape: Shape | Shape[]): void {
    const modelSize = dataShape('PositionEmbedding', inputShape)[2] as number;
    this.table = this.addTable('embeddings', [this.maxLength, modelSize], 1);
    this.built = true;
  }

  positionTable(length: number): tf.Tensor2D {
    if (this.table === null) throw new Error('PositionEmbedding: the layer is not built; call it on an input first');
    // Always a new tensor (never the variable itself), so callers may dispose it.
    return tf.slice(this.table.read() as tf.Tensor2D, [0, 0], [length, -1]);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), maxLength: this.maxLength };
  }
}
tf.serialization.registerClass(PositionEmbedding);

/**
 * Axial position embeddings (Reformer): positions on a d1 × d2 grid
 * (t = i·d2 + j), embedding(t) = [row_i ‖ column_j] ('concat', the default)
 * or row_i + column_j ('sum'). Two tables of d1 and d2 rows replace one of
 * d1·d2 rows: for T = 64K and M = 1024, 0.5M numbers instead of 67M.
 *
 * ```ts
 * const positions = axialPositionEmbedding({ axialShape: [64, 64], seed: 1 }); // T ≤ 4096
 * ```
 */
export class AxialPositionEmbedding extends PositionEmbeddingBase {
  static className = 'AxialPositionEmbedding';
  readonly axialShape: [number, number];
  readonly combine: AxialCombine;
  readonly axialDimsArg: [number, number] | undefined;
  private rows: tfl.LayerVariable | null = null;
  private columns: tfl.LayerVariable | null = null;

  constructor(args: AxialPositionEmbeddingArgs) {
    super(args, 'AxialPositionEmbedding');
    const who = 'AxialPositionEmbedding';
    if (!Array.isArray(args.axialShape) || args.axialShape.length !== 2) {
      throw new Error(`${who}: axialShape must be two factors [d1, d2] with d1·d2 ≥ T, got ${JSON.stringify(args.axialShape)}`);
    }
    args.axialShape.forEach((d, i) => assertPositiveInteger(who, `axialShape[${i}]`, d));
    this.axialShape = [args.axialShape[0], args.axialShape[1]];
    this.combine = args.combine ?? 'concat';
    if (this.combine !== 'concat' && this.combine !== 'sum') {
      throw new Error(`${who}: combine must be 'concat' or 'sum', got ${String(args.combine)}`);
    }
    this.axialDimsArg = args.axialDims;
    if (args.axialDims !== undefined) {
      if (this.combine !== 'concat') throw new Error(`${who}: axialDims applies only to combine 'concat'; remove it`);
      if (!Array.isArray(args.axialDims) || args.axialDims.length !== 2) {
        throw new Error(`${who}: axialDims must be [e1, e2] with e1 + e2 = M, got ${JSON.stringify(args.axialDims)}`);
      }
      args.axialDims.forEach((e, i) => assertPositiveInteger(who, `axialDims[${i}]`, e));
    }
  }

  get maxLength(): number {
    return this.axialShape[0] * this.axialShape[1];
  }

  override build(inputShape: Shape | Shape[]): void {
    const who = 'AxialPositionEmbedding';
    const modelSize = dataShape(who, inputShape)[2] as number;
    let dims: [number, number];
    if (this.combine === 'sum') {
      dims = [modelSize, modelSize];
    } else {
      dims = this.axialDimsArg ?? [Math.ceil(modelSize / 2), Math.floor(modelSize / 2)];
      if (dims[0] + dims[1] !== modelSize || dims[1] < 1) {
        throw new Error(
          `${who}: axialDims [${dims.join(', ')}] must sum to the model size ${modelSize} (and both be ≥ 1) with combine 'concat'`,
        );
      }
    }
    this.rows = this.addTable('rows', [this.axialShape[0], dims[0]], 1);
    this.columns = this.addTable('columns', [this.axialShape[1], dims[1]], 2);
    this.built = true;
  }

  positionTable(length: number): tf.Tensor2D {
    if (this.rows === null || this.columns === null) {
      throw new Error('AxialPositionEmbedding: the layer is not built; call it on an input first');
    }
    const d2 = this.axialShape[1];
    // Only the grid rows the length reaches: the whole [d1·d2, M] table for a short input cost seconds at d1·d2 = 32768.
    const d1 = Math.min(this.axialShape[0], Math.max(1, Math.ceil(length / d2)));
    const rows = d1 === this.axialShape[0] ? this.rows.read() : tf.slice(this.rows.read(), [0, 0], [d1, -1]);
    const columns = this.columns.read();
    const [e1, e2] = [rows.shape[1] as number, columns.shape[1] as number];
    const rowGrid = tf.broadcastTo(tf.reshape(rows, [d1, 1, e1]), [d1, d2, e1]);
    const columnGrid = tf.broadcastTo(tf.reshape(columns, [1, d2, e2]), [d1, d2, e2]);
    const grid = this.combine === 'concat' ? tf.concat([rowGrid, columnGrid], 2) : tf.add(rowGrid, columnGrid); // [d1, d2, M]
    const table = tf.reshape(grid, [d1 * d2, -1]) as tf.Tensor2D; // [d1·d2, M], row t = (⌊t/d2⌋, t mod d2)
    return length === d1 * d2 ? table : tf.slice(table, [0, 0], [length, -1]);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = { axialShape: [...this.axialShape], combine: this.combine };
    if (this.axialDimsArg !== undefined) config.axialDims = [...this.axialDimsArg];
    return { ...super.getConfig(), ...config };
  }
}
tf.serialization.registerClass(AxialPositionEmbedding);

/** Creates a {@link PositionEmbedding} layer. */
export function positionEmbedding(args: PositionEmbeddingArgs): PositionEmbedding {
  return new PositionEmbedding(args);
}

/** Creates an {@link AxialPositionEmbedding} layer. */
export function axialPositionEmbedding(args: AxialPositionEmbeddingArgs): AxialPositionEmbedding {
  return new AxialPositionEmbedding(args);
}
