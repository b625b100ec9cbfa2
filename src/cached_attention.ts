/**
 * Attention caches for token-by-token generation: a new position attends to
 * the positions before it without recomputing them.
 *
 * - {@link FullAttentionCache} keeps every past position's normalised key and
 *   value: the new position attends to all of them, which is what causal
 *   full attention computes for the last position of a sequence.
 * - {@link LSHAttentionCache} keeps the same, plus each past position's
 *   bucket in every hash round (with the layer's inference rotations), in
 *   per-bucket lists. The rule for a new position p (after Hugging Face's
 *   Reformer, which keeps past inputs and their buckets):
 *
 *       keys(p) = { j < p : bucket_r(j) = bucket_r(p) for some round r, j not padding } ∪ { p }
 *       o(p)    = softmax over keys(p) of the logits, · values
 *
 *   Each key counts once, however many rounds it shares a bucket in. Logits
 *   are those of `lshAttention` (design §4): q·k with q the raw shared
 *   vector and k = x / sqrt(mean(x²) + 1e-6) / sqrt(D) the normalised key;
 *   the position's own key gets the replaced logit −1e5, so it is attended
 *   to only when no earlier position shares a bucket with it. Every cached
 *   position is in the past, so the causal mask holds by construction;
 *   padded positions (mask 0 when they were added) are never attended to.
 *   Hugging Face's cached path differs in one respect: it takes, in each
 *   round, the chunk around the new position in the bucket-sorted order
 *   (and its neighbouring chunks), which may cut a large bucket short or
 *   take in members of the next bucket; here the whole bucket is taken and
 *   nothing else.
 *
 * The caches live on the host (JavaScript arrays), because a step reads a
 * handful of rows: the work of an LSH step is O(matches · D) per head, not
 * O(T · D). A row is a normalised key and its value side by side; the LSH
 * cache keeps, per head and round, each bucket's rows together (a copy per
 * round), so that a step reads a few runs of memory rather than rows
 * scattered over the whole context (on this VM, scattered reads of a 16k
 * context cost ≈0.7 µs a row, several times the arithmetic). Stores grow by
 * doubling (amortised O(1) per position) and a step allocates nothing that
 * grows with T. A full-attention step is O(T · D) per head.
 *
 * Legend: B batch, H heads, T cached positions, D head size, Dv value size,
 * R hash rounds, K buckets.
 */
import * as tf from '@tensorflow/tfjs-core';
import { KEY_NORM_EPSILON, SELF_ATTENTION_LOGIT } from './attention.js';
import { bucketFactors, checkMask, hashBuckets, rotationColumns, totalBuckets, type HashFamilyName, type NBuckets } from './hashing.js';
import { assertOneOf, assertPositiveInteger, assertRank, shapeString } from './validate.js';

/** Sizes of a cache. */
export interface AttentionCacheOptions {
  /** B, the batch size. Required. */
  batch: number;
  /** H, the number of heads. Required. */
  heads: number;
  /** D, the size of the shared query/key vectors. Required. */
  dim: number;
  /** Dv, the size of the values. Default: D. */
  valueDim?: number;
  /** Positions to allocate room for at first (the cache grows as needed). Default 1024. */
  capacity?: number;
}

/** Options of {@link LSHAttentionCache}. */
export interface LSHAttentionCacheOptions extends AttentionCacheOptions {
  /**
   * float32 [D, R, Σ Ki/2] rotations (the layer's inference rotations); the
   * cache keeps a copy, freed by `dispose()`. Required.
   */
  rotations: tf.Tensor3D;
  /** K (even) or factors [K1, K2, …], as the rotations were drawn for. Default: 2 · rotations.shape[2] (rotation family). */
  nBuckets?: NBuckets;
  /** The hash family of the rotations. Default 'rotation'. */
  hashFamily?: HashFamilyName;
}

/**
 * Rows kept side by side: row i is a normalised key (D values) followed by
 * its value (Dv values), width D + Dv, with the position it belongs to.
 * Appending is amortised O(1) (capacity doubles); a step that reads rows
 * of one such store in order reads one run of memory.
 */
class RowStore {
  count = 0;
  positions: Int32Array;
  rows: Float32Array;

  constructor(
    readonly width: number,
    capacity: number,
  ) {
    this.positions = new Int32Array(capacity);
    this.rows = new Float32Array(capacity * width);
  }

  /** Room for one more row; returns its offset in `rows`. */
  add(position: number): number {
    if (this.count === this.positions.length) {
      const capacity = 2 * Math.max(1, this.count);
      const positions = new Int32Array(capacity);
      positions.set(this.positions);
      const rows = new Float32Array(capacity * this.width);
      rows.set(this.rows);
      this.positions = positions;
      this.rows = rows;
    }
    this.positions[this.count] = position;
    return this.count++ * this.width;
  }
}

/** What the caches share: input checks, key normalisation, the softmax over the rows a query attends to. */
abstract class AttentionCacheBase {
  readonly batch: number;
  readonly heads: number;
  readonly dim: number;
  readonly valueDim: number;
  /** T, the number of cached positions. */
  length = 0;
  /** Positions there is room for in the per-position arrays (`kept` and subclasses' own). */
  protected capacity: number;
  /** Per b: 1 where a cached position is not padding. */
  protected kept: Uint8Array[];
  protected disposed = false;
  /**
   * The rows a query attends to besides itself, filled by `candidates`: the
   * array holding row c (a {@link RowStore}'s rows) and the row's offset in
   * it. Reused from step to step: a step allocates nothing that grows with T.
   */
  protected candidateRows: Float32Array[] = [];
  protected candidateOffsets = new Int32Array(64);
  /** When set by `candidates`, every candidate row is in this array (candidateRows is not filled). */
  protected sharedRows: Float32Array | null = null;
  /** Scratch of attendOne (reused). */
  private logitScratch = new Float64Array(64);
  private valueScratch: Float64Array;

  constructor(protected readonly who: string, options: AttentionCacheOptions) {
    if (options === null || typeof options !== 'object') throw new Error(`${who}: options must be an object {batch, heads, dim, …}, got ${String(options)}`);
    assertPositiveInteger(who, 'batch', options.batch);
    assertPositiveInteger(who, 'heads', options.heads);
    assertPositiveInteger(who, 'dim', options.dim);
    if (options.valueDim !== undefined) assertPositiveInteger(who, 'valueDim', options.valueDim);
    if (options.capacity !== undefined) assertPositiveInteger(who, 'capacity', options.capacity);
    this.batch = options.batch;
    this.heads = options.heads;
    this.dim = options.dim;
    this.valueDim = options.valueDim ?? options.dim;
    this.capacity = options.capacity ?? 1024;
    this.kept = Array.from({ length: this.batch }, () => new Uint8Array(this.capacity));
    this.valueScratch = new Float64Array(this.valueDim);
  }

  /** Checks qk [B, H, n, D] and v [B, H, n, Dv] against the cache's sizes. */
  protected checkInputs(qk: tf.Tensor4D, v: tf.Tensor4D, single: boolean): number {
    if (this.disposed) throw new Error(`${this.who}: the cache was disposed; make a new one`);
    assertRank(this.who, 'qk', qk, 4, '[B, H, n, D]');
    assertRank(this.who, 'v', v, 4, '[B, H, n, Dv]');
    const [b, h, n, d] = qk.shape;
    if (b !== this.batch || h !== this.heads || d !== this.dim || (single && n !== 1)) {
      throw new Error(
        `${this.who}: qk must have shape [B, H, ${single ? '1' : 'n'}, D] = [${this.batch}, ${this.heads}, ${single ? 1 : 'n'}, ${this.dim}], ` +
          `got ${shapeString(qk.shape)}`,
      );
    }
    if (v.shape[0] !== b || v.shape[1] !== h || v.shape[2] !== n || v.shape[3] !== this.valueDim) {
      throw new Error(`${this.who}: v must have shape [${b}, ${h}, ${n}, ${this.valueDim}] to match qk, got ${shapeString(v.shape)}`);
    }
    return n;
  }

  /** Room for `extra` more positions in the per-position arrays (doubling: amortised O(1) per position). */
  private reserve(extra: number): void {
    const needed = this.length + extra;
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    this.kept = this.kept.map((k) => {
      const next = new Uint8Array(capacity);
      next.set(k.subarray(0, this.length));
      return next;
    });
    this.capacity = capacity;
    this.grown(capacity);
  }

  /** Subclasses resize their own per-position arrays. */
  protected grown(_capacity: number): void {}

  /**
   * Writes position i of slot (b, h) of qk [B, H, n, D] (normalised: design §4)
   * and of v [B, H, n, Dv] as one row, key then value, at rows[offset …].
   */
  protected writeRow(qk: ArrayLike<number>, v: ArrayLike<number>, slot: number, n: number, i: number, rows: Float32Array, offset: number): void {
    const { dim, valueDim } = this;
    const source = (slot * n + i) * dim;
    let meanSquare = 0;
    for (let d = 0; d < dim; d++) meanSquare += qk[source + d] * qk[source + d];
    meanSquare /= dim;
    const scale = 1 / Math.sqrt(meanSquare + KEY_NORM_EPSILON) / Math.sqrt(dim);
    for (let d = 0; d < dim; d++) rows[offset + d] = qk[source + d] * scale;
    const valueSource = (slot * n + i) * valueDim;
    for (let e = 0; e < valueDim; e++) rows[offset + dim + e] = v[valueSource + e];
  }

  /** Stores `n` new positions (host copies of qk [B, H, n, D] and v [B, H, n, Dv]); `keep` [B, n] or null (all kept). */
  protected abstract storeRows(qk: ArrayLike<number>, v: ArrayLike<number>, n: number, keep: ArrayLike<number> | null): void;

  private store(qk: ArrayLike<number>, v: ArrayLike<number>, n: number, keep: ArrayLike<number> | null): void {
    this.reserve(n);
    for (let b = 0; b < this.batch; b++) {
      for (let i = 0; i < n; i++) this.kept[b][this.length + i] = keep === null || keep[b * n + i] !== 0 ? 1 : 0;
    }
    this.storeRows(qk, v, n, keep);
  }

  /** Room for `count` candidates in candidateOffsets (doubling). */
  protected reserveCandidates(count: number): void {
    if (this.candidateOffsets.length >= count) return;
    let size = this.candidateOffsets.length;
    while (size < count) size *= 2;
    this.candidateOffsets = new Int32Array(size);
  }

  /**
   * Softmax attention of query q (raw, length D) over the `count` rows in
   * candidateRows/candidateOffsets and itself (logit {@link SELF_ATTENTION_LOGIT}),
   * written into out[outOffset …] (Dv values). Float64 throughout.
   */
  private attendOne(q: ArrayLike<number>, qOffset: number, ownValue: ArrayLike<number>, ownOffset: number, count: number, out: Float32Array, outOffset: number): void {
    const { dim, valueDim } = this;
    const arrays = this.candidateRows;
    const shared = this.sharedRows;
    const offsets = this.candidateOffsets;
    if (this.logitScratch.length < count) this.logitScratch = new Float64Array(Math.max(count, 2 * this.logitScratch.length));
    const logits = this.logitScratch;
    let max = SELF_ATTENTION_LOGIT;
    for (let c = 0; c < count; c++) {
      const rows = shared ?? arrays[c];
      const row = offsets[c];
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += q[qOffset + d] * rows[row + d];
      logits[c] = dot;
      if (dot > max) max = dot;
    }
    const acc = this.valueScratch;
    const selfWeight = Math.exp(SELF_ATTENTION_LOGIT - max);
    let total = selfWeight;
    for (let e = 0; e < valueDim; e++) acc[e] = selfWeight * ownValue[ownOffset + e];
    for (let c = 0; c < count; c++) {
      const w = Math.exp(logits[c] - max);
      total += w;
      const rows = shared ?? arrays[c];
      const row = offsets[c] + dim;
      for (let e = 0; e < valueDim; e++) acc[e] += w * rows[row + e];
    }
    for (let e = 0; e < valueDim; e++) out[outOffset + e] = acc[e] / total;
  }

  /**
   * Adds positions to the cache without attending (a prompt whose outputs
   * were computed by the full function).
   *
   * @param qk [B, H, n, D] the shared query/key vectors (raw; normalised here).
   * @param v [B, H, n, Dv]
   * @param mask [B, n] of 1 (keep) and 0 (padding: never attended to). Default: all kept.
   */
  append(qk: tf.Tensor4D, v: tf.Tensor4D, mask?: tf.Tensor2D): void {
    const n = this.checkInputs(qk, v, false);
    const keep = mask === undefined ? null : checkMask(this.who, mask, this.batch, n, 'mask');
    if (n === 0) return;
    const qkValues = qk.dataSync();
    const vValues = v.dataSync();
    this.beforeStore(qk, n, mask);
    this.store(qkValues, vValues, n, keep);
    this.length += n;
  }

  /** Subclasses record what they need of positions about to be stored (buckets). */
  protected beforeStore(_qk: tf.Tensor4D, _n: number, _mask: tf.Tensor2D | undefined): void {}

  /**
   * The cached rows the query of (b, h) attends to, besides itself: fills
   * candidateRows/candidateOffsets (room made with reserveCandidates), returns the count.
   */
  protected abstract candidates(b: number, h: number): number;

  /**
   * Attends from one new position to the cache and itself, then appends it.
   *
   * @param qk [B, H, 1, D] the new position's shared query/key vector.
   * @param v [B, H, 1, Dv]
   * @returns [B, H, 1, Dv]
   */
  next(qk: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
    this.checkInputs(qk, v, true);
    const q = qk.dataSync();
    const ownValues = v.dataSync();
    this.beforeStore(qk, 1, undefined);
    const out = new Float32Array(this.batch * this.heads * this.valueDim);
    for (let b = 0; b < this.batch; b++) {
      for (let h = 0; h < this.heads; h++) {
        const slot = b * this.heads + h;
        const count = this.candidates(b, h);
        this.attendOne(q, slot * this.dim, ownValues, slot * this.valueDim, count, out, slot * this.valueDim);
      }
    }
    this.store(q, ownValues, 1, null);
    this.length += 1;
    return tf.tensor4d(out, [this.batch, this.heads, 1, this.valueDim]);
  }

  /** Frees the cache's tensors (the LSH rotations); the cache cannot be used afterwards. */
  dispose(): void {
    this.disposed = true;
  }
}

/**
 * The cache of causal full attention: a new position attends to every
 * cached position that is not padding, and to itself only when there is
 * none (see the file's comment).
 *
 * ```ts
 * const cache = new FullAttentionCache({ batch: 1, heads: 2, dim: 8 });
 * cache.append(promptQk, promptV);            // [1, 2, T, 8] each
 * const out = cache.next(nextQk, nextV);      // [1, 2, 1, 8]; the cache now holds T + 1 positions
 * ```
 */
export class FullAttentionCache extends AttentionCacheBase {
  /** Per (b, h): every position's row, in order. */
  private readonly stores: RowStore[];

  constructor(options: AttentionCacheOptions) {
    super('FullAttentionCache', options);
    this.stores = Array.from({ length: this.batch * this.heads }, () => new RowStore(this.dim + this.valueDim, this.capacity));
  }

  protected storeRows(qk: ArrayLike<number>, v: ArrayLike<number>, n: number): void {
    for (let slot = 0; slot < this.batch * this.heads; slot++) {
      const store = this.stores[slot];
      for (let i = 0; i < n; i++) {
        const offset = store.add(this.length + i); // first: adding may replace store.rows
        this.writeRow(qk, v, slot, n, i, store.rows, offset);
      }
    }
  }

  protected candidates(b: number, h: number): number {
    const kept = this.kept[b];
    const store = this.stores[b * this.heads + h];
    this.reserveCandidates(this.length);
    this.sharedRows = store.rows;
    let count = 0;
    for (let j = 0; j < this.length; j++) if (kept[j] === 1) this.candidateOffsets[count++] = j * store.width;
    return count;
  }
}

/**
 * The cache of causal LSH attention: past positions and their buckets in
 * every round; a new position attends to the past positions that share a
 * bucket with it in any round, each once, and to itself (see the file's
 * comment for the exact rule).
 *
 * ```ts
 * const rotations = randomRotations({ dim: 8, nHashes: 2, nBuckets: 16, seed: 1 });
 * const cache = new LSHAttentionCache({ batch: 1, heads: 2, dim: 8, rotations, nBuckets: 16 });
 * cache.append(promptQk, promptV);
 * const out = cache.next(nextQk, nextV);      // [1, 2, 1, 8]
 * cache.dispose();
 * ```
 */
export class LSHAttentionCache extends AttentionCacheBase {
  readonly nHashes: number;
  readonly nBuckets: NBuckets;
  readonly hashFamily: HashFamilyName;
  private readonly rotations: tf.Tensor3D;
  /**
   * Per (b, h, r): bucket → its positions in order, each with a copy of its
   * key and value (so a step reads each bucket as one run of memory, however
   * far apart its positions lie; the copies cost R times the rows).
   */
  private readonly buckets: Array<Map<number, RowStore>>;
  /** Buckets of the positions being added, [B, H, R, n] row-major (set by beforeStore). */
  private pending: Int32Array | null = null;
  /** Per position: the query serial that last took it (dedupes the rounds). */
  private seen: Int32Array;
  private serial = 0;

  constructor(options: LSHAttentionCacheOptions) {
    super('LSHAttentionCache', options);
    const who = this.who;
    assertRank(who, 'rotations', options.rotations, 3, '[D, R, ΣK/2]');
    this.hashFamily = options.hashFamily ?? 'rotation';
    assertOneOf(who, 'hashFamily', this.hashFamily, ['rotation', 'simhash'] as const);
    const [rotationsDim, nHashes, columns] = options.rotations.shape;
    this.nBuckets = options.nBuckets ?? (this.hashFamily === 'simhash' ? 2 ** columns : 2 * columns);
    bucketFactors(who, this.nBuckets);
    if (rotationsDim !== this.dim || rotationColumns(this.nBuckets, this.hashFamily) !== columns) {
      throw new Error(
        `${who}: rotations must have shape [D, R, ${this.hashFamily === 'simhash' ? 'log2 K' : 'ΣK/2'}] = ` +
          `[${this.dim}, R, ${rotationColumns(this.nBuckets, this.hashFamily)}] for dim ${this.dim} and nBuckets ${JSON.stringify(this.nBuckets)}, ` +
          `got ${shapeString(options.rotations.shape)}`,
      );
    }
    this.nHashes = nHashes;
    this.rotations = tf.keep(tf.clone(options.rotations));
    this.buckets = Array.from({ length: this.batch * this.heads * nHashes }, () => new Map<number, RowStore>());
    this.seen = new Int32Array(this.capacity).fill(-1);
  }

  /** K, the number of buckets (padding is bucket K and is never listed). */
  get totalBuckets(): number {
    return totalBuckets(this.nBuckets);
  }

  protected override grown(capacity: number): void {
    const seen = new Int32Array(capacity).fill(-1);
    seen.set(this.seen);
    this.seen = seen;
  }

  protected override beforeStore(qk: tf.Tensor4D, _n: number, mask: tf.Tensor2D | undefined): void {
    const buckets = tf.tidy(() => hashBuckets(qk, this.rotations, { nBuckets: this.nBuckets, hashFamily: this.hashFamily, mask }));
    this.pending = buckets.dataSync() as Int32Array;
    buckets.dispose();
  }

  /** Lists the `n` new positions in their buckets (padding in none), after they have attended. */
  protected storeRows(qk: ArrayLike<number>, v: ArrayLike<number>, n: number): void {
    const pending = this.pending as Int32Array;
    const padding = this.totalBuckets;
    const width = this.dim + this.valueDim;
    for (let slot = 0; slot < this.batch * this.heads; slot++) {
      for (let r = 0; r < this.nHashes; r++) {
        const map = this.buckets[slot * this.nHashes + r];
        for (let i = 0; i < n; i++) {
          const bucket = pending[(slot * this.nHashes + r) * n + i];
          if (bucket === padding) continue;
          let store = map.get(bucket);
          if (store === undefined) map.set(bucket, (store = new RowStore(width, 4)));
          const offset = store.add(this.length + i); // first: adding may replace store.rows
          this.writeRow(qk, v, slot, n, i, store.rows, offset);
        }
      }
    }
  }

  /**
   * When true, the next position attends to every cached position that is
   * not padding, as causal full attention does (an LSH layer computes exact
   * attention at or below its fullAttentionThreshold); its buckets are
   * recorded all the same, for the steps after. Default false.
   */
  exact = false;

  protected candidates(b: number, h: number): number {
    const slot = b * this.heads + h;
    this.reserveCandidates(this.length);
    if (this.exact) {
      // Every position that is not padding is in exactly one bucket of round 0.
      let count = 0;
      for (const store of this.buckets[slot * this.nHashes].values()) {
        for (let i = 0; i < store.count; i++) {
          this.candidateRows[count] = store.rows;
          this.candidateOffsets[count++] = i * store.width;
        }
      }
      return count;
    }
    const buckets = this.pending as Int32Array;
    const query = this.serial++;
    const seen = this.seen;
    let count = 0;
    for (let r = 0; r < this.nHashes; r++) {
      const store = this.buckets[slot * this.nHashes + r].get(buckets[slot * this.nHashes + r]);
      if (store === undefined) continue;
      const positions = store.positions;
      for (let i = 0; i < store.count; i++) {
        const j = positions[i];
        if (seen[j] === query) continue;
        seen[j] = query;
        this.candidateRows[count] = store.rows;
        this.candidateOffsets[count++] = i * store.width;
      }
    }
    return count;
  }

  /**
   * The cached positions of batch row b and head h by their bucket in round
   * r (padded positions are in none), for inspection and tests: a copy.
   */
  bucketsOf(b: number, h: number, r: number): Map<number, number[]> {
    return new Map([...this.buckets[(b * this.heads + h) * this.nHashes + r]].map(([k, store]) => [k, Array.from(store.positions.subarray(0, store.count))]));
  }

  override dispose(): void {
    if (!this.disposed) this.rotations.dispose();
    super.dispose();
  }
}
