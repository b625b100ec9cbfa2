/**
 * An approximate nearest-neighbour index over any hash family: L tables of
 * keys, candidates from the query's buckets (plus optional multi-probe
 * buckets), re-ranked by the true similarity. Hashing runs on tensors; the
 * tables (JavaScript Maps from key to row slots), the stored rows and the
 * re-ranking live in JavaScript.
 *
 * Legend: N vectors, Q queries, D vector size, L tables, k neighbours, C
 * candidate pairs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertNonNegativeInteger, assertPositiveInteger } from '../validate.js';
import { base64ToFloat32, base64ToInt32, describeValue, float32ToBase64, int32ToBase64 } from './encoding.js';
import { checkVectors, type HashFamily, type HashFamilyJSON } from './family.js';
import {
  checkSimilarity,
  dot,
  kernelFromJSON,
  kernelToJSON,
  type Kernel,
  type KernelFunction,
  type KernelJSON,
  type Similarity,
} from './similarity.js';
import { probeSequence } from './probe.js';
import { familyFromJSON } from './serialize.js';

/** An item's id: a number or a string. */
export type LSHId = number | string;

/** Options of {@link LSHIndex}. */
export interface LSHIndexOptions {
  /**
   * What candidates are re-ranked by: 'cosine' or a kernel. Default: the
   * family's kernel for KernelizedLSH, else 'cosine'.
   */
  similarity?: Similarity;
}

/** Options of {@link LSHIndex.query}. */
export interface QueryOptions {
  /**
   * Extra buckets probed per query, over all tables together, reached by
   * moving the least certain digits first (multi-probe). Default 0.
   */
  probes?: number;
}

/** One query's answer. */
export interface QueryResult {
  /** Ids of the best candidates, best first (at most k). */
  ids: LSHId[];
  /** Their similarities to the query. */
  scores: number[];
  /** Distinct stored vectors examined (re-ranked) for this query. */
  candidates: number;
  /** Buckets looked in: L home buckets plus the probes. */
  buckets: number;
}

/** Occupancy of one table. */
export interface TableStats {
  /** Non-empty buckets. */
  buckets: number;
  /** Vectors in the largest bucket. */
  largest: number;
  /** Vectors per non-empty bucket. */
  meanSize: number;
  /** Σ n_b² / N²: the chance two stored vectors share a bucket (the share of the data a typical bucket holds). */
  collisionShare: number;
  /** Entropy of the occupancy over log2(min(N, 2^keyBits)): 1 is perfectly even, 0 all in one bucket. */
  balance: number;
}

/** Occupancy of the whole index. */
export interface IndexStats {
  /** Vectors stored. */
  size: number;
  /** L. */
  nTables: number;
  /** Bits per key. */
  keyBits: number;
  /** Per table. */
  tables: TableStats[];
  /** Means over the tables. */
  mean: TableStats;
}

/** A saved index. */
export interface LSHIndexJSON {
  format: typeof INDEX_FORMAT;
  version: 1;
  family: HashFamilyJSON;
  similarity: 'cosine' | KernelJSON;
  dim: number;
  size: number;
  nextId: number;
  ids: LSHId[];
  /** base64 little-endian float32 [size, D]. */
  vectors: string;
  /** base64 little-endian int32 [size, L]: the keys, so a load never rehashes. */
  keys: string;
}

/** Options of {@link LSHIndex.fromJSON}. */
export interface LSHIndexLoadOptions {
  /** Custom kernels by the name they were saved under. Default {} (built-in kernels only). */
  kernels?: Readonly<Record<string, Kernel | KernelFunction>>;
}

/** The `format` tag of a saved index. */
export const INDEX_FORMAT = 'tfjs-lsh-attention/lsh-index';

/**
 * Approximate nearest-neighbour search with locality-sensitive hashing.
 *
 * ```ts
 * const index = new LSHIndex(new SimHash({ dim: 64, nBits: 12, nTables: 8, seed: 1 }));
 * await index.add(vectors, ids);
 * const [best] = await index.query(query, 10, { probes: 8 });
 * console.log(best.ids, best.scores, best.candidates);
 * ```
 */
export class LSHIndex {
  readonly family: HashFamily;
  readonly similarity: Similarity;
  private ownsFamily: boolean;
  private vectors = new Float32Array(0);
  private slotKeys = new Int32Array(0);
  private norms = new Float32Array(0);
  private alive = new Uint8Array(0);
  private slotIds: LSHId[] = [];
  private slots = 0;
  private live = 0;
  private nextId = 0;
  private readonly idToSlot = new Map<LSHId, number>();
  private readonly tables: Map<number, number[]>[];
  private marks = new Int32Array(0);
  private markStamp = 0;

  /**
   * @param family any hash family; the index does not dispose it (unless
   *   the index was loaded with {@link LSHIndex.fromJSON}).
   */
  constructor(family: HashFamily, options: LSHIndexOptions = {}) {
    const who = 'LSHIndex';
    if (
      family === null ||
      typeof family !== 'object' ||
      typeof family.hash !== 'function' ||
      typeof family.digitScores !== 'function'
    ) {
      throw new Error(
        `${who}: family must be a hash family (new SimHash(…), new RotationHash(…), KernelizedLSH.fit(…)), got ${describeValue(family)}`,
      );
    }
    const similarity = options.similarity ?? defaultSimilarity(family);
    checkSimilarity(who, similarity);
    this.family = family;
    this.similarity = similarity;
    this.ownsFamily = false;
    this.tables = Array.from({ length: family.nTables }, () => new Map<number, number[]>());
  }

  /** Vectors stored. */
  get size(): number {
    return this.live;
  }

  /** D. */
  get dim(): number {
    return this.family.dim;
  }

  /** Whether an id is stored. */
  has(id: LSHId): boolean {
    return this.idToSlot.has(id);
  }

  /** The stored ids, in insertion order. */
  ids(): LSHId[] {
    const out: LSHId[] = [];
    for (let s = 0; s < this.slots; s++) if (this.alive[s]) out.push(this.slotIds[s]);
    return out;
  }

  /**
   * Hashes and stores a batch of vectors.
   * @param vectors float32 [N, D], finite.
   * @param ids N distinct ids not yet stored (numbers or strings). Default:
   *   consecutive integers continuing from the last default id.
   */
  async add(vectors: tf.Tensor2D, ids?: readonly LSHId[]): Promise<void> {
    const who = 'LSHIndex.add';
    checkVectors(who, 'vectors', vectors, this.dim);
    const n = vectors.shape[0];
    const newIds = this.resolveIds(who, n, ids);
    if (n === 0) return;
    const values = (await vectors.data()) as Float32Array;
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        throw new Error(
          `${who}: vectors must be finite, got ${values[i]} in row ${Math.floor(i / this.dim)}; clean or drop that row`,
        );
      }
    }
    const keysTensor = this.family.hash(vectors);
    const keys = (await keysTensor.data()) as Int32Array;
    keysTensor.dispose();
    this.append(values, keys, newIds);
  }

  /**
   * Removes stored vectors by id; unknown ids are skipped. (Their rows stay
   * allocated until the index is saved and loaded again.)
   * @returns how many were removed.
   */
  remove(ids: LSHId | readonly LSHId[]): number {
    const list = Array.isArray(ids) ? (ids as readonly LSHId[]) : [ids as LSHId];
    const L = this.family.nTables;
    let removed = 0;
    for (const id of list) {
      const slot = this.idToSlot.get(id);
      if (slot === undefined) continue;
      for (let t = 0; t < L; t++) {
        const key = this.slotKeys[slot * L + t];
        const bucket = this.tables[t].get(key);
        if (bucket === undefined) continue;
        const at = bucket.indexOf(slot);
        if (at >= 0) bucket.splice(at, 1);
        if (bucket.length === 0) this.tables[t].delete(key);
      }
      this.alive[slot] = 0;
      this.idToSlot.delete(id);
      this.live--;
      removed++;
    }
    return removed;
  }

  /**
   * The k most similar stored vectors to each query, among the candidates
   * in the query's buckets.
   * @param queries float32 [Q, D].
   * @param k neighbours per query.
   * @returns one {@link QueryResult} per query.
   */
  async query(queries: tf.Tensor2D, k: number, options: QueryOptions = {}): Promise<QueryResult[]> {
    const who = 'LSHIndex.query';
    checkVectors(who, 'queries', queries, this.dim);
    assertPositiveInteger(who, 'k', k);
    if (options === null || typeof options !== 'object') {
      throw new Error(`${who}: options must be an object like { probes: 8 }, got ${describeValue(options)}`);
    }
    const probes = options.probes ?? 0;
    assertNonNegativeInteger(who, 'probes', probes);
    const q = queries.shape[0];
    if (q === 0) return [];
    const { nTables: L, digitsPerKey: M, digitBase: A } = this.family;

    // Home keys from hash(), exactly as the stored vectors were keyed; probes from the digit scores.
    const keysTensor = this.family.hash(queries);
    const keys = (await keysTensor.data()) as Int32Array;
    keysTensor.dispose();
    let scores: Float32Array | null = null;
    if (probes > 0) {
      const scoreTensor = this.family.digitScores(queries);
      scores = (await scoreTensor.data()) as Float32Array;
      scoreTensor.dispose();
    }

    // Candidates: union of the buckets, each stored vector once per query.
    if (this.marks.length < this.slots) this.marks = new Int32Array(Math.max(this.slots, 2 * this.marks.length));
    const marks = this.marks;
    const perQuery: number[][] = [];
    const bucketCounts: number[] = [];
    for (let i = 0; i < q; i++) {
      const stamp = ++this.markStamp;
      const found: number[] = [];
      let buckets = L;
      const visit = (table: number, key: number): void => {
        const bucket = this.tables[table].get(key);
        if (bucket === undefined) return;
        for (let b = 0; b < bucket.length; b++) {
          const slot = bucket[b];
          if (marks[slot] !== stamp) {
            marks[slot] = stamp;
            found.push(slot);
          }
        }
      };
      for (let t = 0; t < L; t++) visit(t, keys[i * L + t]);
      if (scores !== null) {
        for (const probe of probeSequence(scores, i * L * M * A, L, M, A, probes)) {
          if (probe.key === keys[i * L + probe.table]) continue;
          visit(probe.table, probe.key);
          buckets++;
        }
      }
      perQuery.push(found);
      bucketCounts.push(buckets);
    }

    const similarities = await this.rerank(queries, perQuery);
    return perQuery.map((found, i) => {
      const best = topK(similarities[i], found, k);
      return {
        ids: best.map((j) => this.slotIds[found[j]]),
        scores: best.map((j) => similarities[i][j]),
        candidates: found.length,
        buckets: bucketCounts[i],
      };
    });
  }

  /** Bucket occupancy per table and on average. */
  stats(): IndexStats {
    const n = this.live;
    const keyBits = this.family.keyBits;
    const tables = this.tables.map((table): TableStats => {
      let largest = 0;
      let squares = 0;
      let entropy = 0;
      // Sorted sizes: the sums do not depend on the order buckets were created in (a loaded index matches).
      const sizes = Array.from(table.values(), (bucket) => bucket.length).sort((a, b) => a - b);
      for (const size of sizes) {
        largest = Math.max(largest, size);
        squares += size * size;
        if (n > 0) entropy -= (size / n) * Math.log2(size / n);
      }
      const possible = Math.log2(Math.min(Math.max(n, 1), 2 ** keyBits));
      return {
        buckets: table.size,
        largest,
        meanSize: table.size > 0 ? n / table.size : 0,
        collisionShare: n > 0 ? squares / (n * n) : 0,
        balance: possible > 0 ? entropy / possible : 1,
      };
    });
    const meanOf = (pick: (s: TableStats) => number): number =>
      tables.reduce((sum, s) => sum + pick(s), 0) / Math.max(1, tables.length);
    return {
      size: n,
      nTables: this.family.nTables,
      keyBits,
      tables,
      mean: {
        buckets: meanOf((s) => s.buckets),
        largest: meanOf((s) => s.largest),
        meanSize: meanOf((s) => s.meanSize),
        collisionShare: meanOf((s) => s.collisionShare),
        balance: meanOf((s) => s.balance),
      },
    };
  }

  /** The index as JSON: family (with seed), similarity, ids, vectors and keys. */
  toJSON(): LSHIndexJSON {
    const L = this.family.nTables;
    const dim = this.dim;
    const vectors = new Float32Array(this.live * dim);
    const keys = new Int32Array(this.live * L);
    const ids: LSHId[] = [];
    let row = 0;
    for (let s = 0; s < this.slots; s++) {
      if (!this.alive[s]) continue;
      vectors.set(this.vectors.subarray(s * dim, (s + 1) * dim), row * dim);
      keys.set(this.slotKeys.subarray(s * L, (s + 1) * L), row * L);
      ids.push(this.slotIds[s]);
      row++;
    }
    return {
      format: INDEX_FORMAT,
      version: 1,
      family: this.family.toJSON(),
      similarity: this.similarity === 'cosine' ? 'cosine' : kernelToJSON(this.similarity),
      dim,
      size: this.live,
      nextId: this.nextId,
      ids,
      vectors: float32ToBase64(vectors),
      keys: int32ToBase64(keys),
    };
  }

  /**
   * Rebuilds a saved index; it answers every query exactly as the saved one
   * did. The loaded index owns its family (dispose() frees it).
   */
  static fromJSON(json: LSHIndexJSON, options: LSHIndexLoadOptions = {}): LSHIndex {
    const who = 'LSHIndex.fromJSON';
    if (json === null || typeof json !== 'object' || json.format !== INDEX_FORMAT) {
      throw new Error(`${who}: expected a saved index with format '${INDEX_FORMAT}', got ${describeValue(json)}`);
    }
    if (json.version !== 1) throw new Error(`${who}: version must be 1, got ${describeValue(json.version)}`);
    assertNonNegativeInteger(who, 'size', json.size);
    if (!Array.isArray(json.ids) || json.ids.length !== json.size) {
      throw new Error(`${who}: ids must list size = ${json.size} ids, got ${describeValue(json.ids)}`);
    }
    const family = familyFromJSON(json.family, options);
    try {
      if (family.dim !== json.dim) throw new Error(`${who}: dim ${json.dim} does not match the family's ${family.dim}`);
      const similarity = json.similarity === 'cosine' ? 'cosine' : kernelFromJSON(json.similarity, options.kernels);
      const index = new LSHIndex(family, { similarity });
      index.ownsFamily = true;
      const vectors = base64ToFloat32(who, 'vectors', json.vectors, json.size * json.dim);
      const keys = base64ToInt32(who, 'keys', json.keys, json.size * family.nTables);
      index.append(vectors, keys, index.resolveIds(who, json.size, json.ids));
      index.nextId = json.nextId;
      return index;
    } catch (error) {
      family.dispose();
      throw error;
    }
  }

  /** Frees the family's tensors if the index owns it (a loaded index); the index holds no other tensors. */
  dispose(): void {
    if (this.ownsFamily) this.family.dispose();
  }

  private resolveIds(who: string, n: number, ids: readonly LSHId[] | undefined): LSHId[] {
    if (ids === undefined) {
      const out: LSHId[] = [];
      for (let i = 0; i < n; i++) {
        while (this.idToSlot.has(this.nextId)) this.nextId++;
        out.push(this.nextId++);
      }
      return out;
    }
    if (!Array.isArray(ids) || ids.length !== n) {
      throw new Error(`${who}: ids must be an array of N = ${n} ids (one per row), got ${describeValue(ids)}`);
    }
    const seen = new Set<LSHId>();
    ids.forEach((id: unknown, i) => {
      if (!(typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) {
        throw new Error(`${who}: ids must be strings or finite numbers, got ${describeValue(id)} at ${i}`);
      }
      if (this.idToSlot.has(id) || seen.has(id)) {
        throw new Error(`${who}: id ${JSON.stringify(id)} is already stored (ids must be unique); remove it first or pick another id`);
      }
      seen.add(id);
    });
    return [...ids];
  }

  private append(values: Float32Array, keys: Int32Array, ids: LSHId[]): void {
    const n = ids.length;
    const dim = this.dim;
    const L = this.family.nTables;
    const needed = this.slots + n;
    if (needed * dim > this.vectors.length) {
      const capacity = Math.max(needed, 2 * (this.vectors.length / Math.max(dim, 1)), 64);
      const vectors = new Float32Array(capacity * dim);
      vectors.set(this.vectors.subarray(0, this.slots * dim));
      this.vectors = vectors;
      const slotKeys = new Int32Array(capacity * L);
      slotKeys.set(this.slotKeys.subarray(0, this.slots * L));
      this.slotKeys = slotKeys;
      const alive = new Uint8Array(capacity);
      alive.set(this.alive.subarray(0, this.slots));
      this.alive = alive;
      const norms = new Float32Array(capacity);
      norms.set(this.norms.subarray(0, this.slots));
      this.norms = norms;
    }
    this.vectors.set(values, this.slots * dim);
    this.slotKeys.set(keys, this.slots * L);
    for (let i = 0; i < n; i++) {
      const slot = this.slots + i;
      this.alive[slot] = 1;
      this.norms[slot] = Math.sqrt(dot(values, i * dim, values, i * dim, dim));
      this.slotIds[slot] = ids[i];
      this.idToSlot.set(ids[i], slot);
      for (let t = 0; t < L; t++) {
        const key = keys[i * L + t];
        const bucket = this.tables[t].get(key);
        if (bucket === undefined) this.tables[t].set(key, [slot]);
        else bucket.push(slot);
      }
    }
    this.slots += n;
    this.live += n;
  }

  /**
   * Similarities of every query to its candidates. Cosine and kernels with a
   * JavaScript `pair` run over the stored rows directly (faster than
   * gathering rows into tensors on every backend measured); other kernels
   * get one [1, c] `matrix` call per query.
   */
  private async rerank(queries: tf.Tensor2D, perQuery: number[][]): Promise<Float32Array[]> {
    const who = 'LSHIndex.query';
    const dim = this.dim;
    const stored = this.vectors;
    const queryValues = (await queries.data()) as Float32Array;
    const similarity = this.similarity;
    const out = perQuery.map((found) => new Float32Array(found.length));
    for (let i = 0; i < perQuery.length; i++) {
      const found = perQuery[i];
      const sims = out[i];
      const offset = i * dim;
      if (similarity === 'cosine') {
        const queryNorm = Math.sqrt(dot(queryValues, offset, queryValues, offset, dim));
        const norms = this.norms;
        for (let j = 0; j < found.length; j++) {
          const slot = found[j];
          const scale = queryNorm * norms[slot];
          sims[j] = scale > 0 ? dot(queryValues, offset, stored, slot * dim, dim) / scale : 0;
        }
      } else if (similarity.pair !== undefined) {
        const pair = similarity.pair;
        for (let j = 0; j < found.length; j++) sims[j] = pair(queryValues, offset, stored, found[j] * dim, dim);
      }
    }
    if (similarity !== 'cosine' && similarity.pair === undefined) {
      for (let i = 0; i < perQuery.length; i++) {
        const found = perQuery[i];
        if (found.length === 0) continue;
        const rows = new Float32Array(found.length * dim);
        found.forEach((slot, j) => rows.set(stored.subarray(slot * dim, (slot + 1) * dim), j * dim));
        const row = tf.tidy(() =>
          similarity.matrix(
            tf.tensor2d(queryValues.subarray(i * dim, (i + 1) * dim), [1, dim], 'float32'),
            tf.tensor2d(rows, [found.length, dim], 'float32'),
          ),
        );
        out[i].set((await row.data()) as Float32Array);
        row.dispose();
      }
    }
    for (const sims of out) {
      for (let j = 0; j < sims.length; j++) {
        if (!Number.isFinite(sims[j])) {
          const name = similarity === 'cosine' ? 'cosine' : `kernel '${similarity.name}'`;
          throw new Error(
            `${who}: the similarity (${name}) returned ${sims[j]} for a candidate; it must be finite for every stored vector and query`,
          );
        }
      }
    }
    return out;
  }
}

/**
 * Positions of the k largest scores, best first; equal scores keep the
 * earlier-stored vector first (smaller slot).
 */
function topK(scores: Float32Array, slots: number[], k: number): number[] {
  const best: number[] = [];
  const better = (a: number, b: number): boolean => scores[a] > scores[b] || (scores[a] === scores[b] && slots[a] < slots[b]);
  for (let j = 0; j < scores.length; j++) {
    if (best.length === k && !better(j, best[k - 1])) continue;
    let at = best.length === k ? k - 1 : best.length;
    if (best.length < k) best.push(j);
    while (at > 0 && better(j, best[at - 1])) {
      best[at] = best[at - 1];
      at--;
    }
    best[at] = j;
  }
  return best;
}

function defaultSimilarity(family: HashFamily): Similarity {
  const kernel = (family as { kernel?: unknown }).kernel;
  return family.kind === 'klsh' && kernel !== undefined ? (kernel as Kernel) : 'cosine';
}
