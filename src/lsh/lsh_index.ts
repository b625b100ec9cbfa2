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
import { assertSavedPositiveInteger, checkVectors, type HashFamily, type HashFamilyJSON } from './family.js';
import {
  builtInRbfGamma,
  checkSimilarity,
  dot,
  kernelToJSON,
  loadKernel,
  type Kernel,
  type KernelFunction,
  type KernelJSON,
  type Similarity,
} from './similarity.js';
import { MAX_PROBES, probeInto } from './probe.js';
import { familyFromJSON } from './serialize.js';
import { FlatTable, RowStore, Scratch } from './store.js';
import { tuneIndex, type TuneOptions, type TuneResult } from './tune.js';
import { BINARY_MAGIC, ChunkReader, writeBinary, type BinarySource } from './binary.js';

/** Rows hashed per family call: about this many floats of digit scores (64 MiB). */
export const HASH_BLOCK_FLOATS = 2 ** 24;

/** Queries handled per re-rank call (bounds the scratch memory of one call). */
const QUERY_CHUNK = 1024;

/** An item's id: a number or a string. */
export type LSHId = number | string;

/** Options of {@link LSHIndex}. */
export interface LSHIndexOptions {
  /**
   * What candidates are re-ranked by: 'cosine' or a kernel. Default: the
   * family's kernel for KernelizedLSH, else 'cosine'.
   */
  similarity?: Similarity;
  /**
   * Keep the stored vectors in WebAssembly memory and re-rank there with
   * SIMD (same values as plain JavaScript, several times faster). Default
   * true; false (or no WebAssembly SIMD) re-ranks in plain JavaScript.
   */
  wasm?: boolean;
  /** Probes a query uses when its options do not say (see {@link QueryOptions.probes}). Default 0. */
  probes?: number;
  /** Whether dispose() also disposes the family. Default false. */
  ownsFamily?: boolean;
}

/** Options of {@link LSHIndex.query}. */
export interface QueryOptions {
  /**
   * Extra buckets probed per query, over all tables together, reached by
   * moving the least certain digits first (multi-probe); at most
   * {@link MAX_PROBES}. More than the L·(A^M − 1) other buckets there are
   * probes them all. Default: the index's `probes` option (0 unless set,
   * e.g. by {@link LSHIndex.tune}).
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
  /** Memory held by the index, in bytes. */
  memory: IndexMemory;
  /** Per table. */
  tables: TableStats[];
  /** Means over the tables. */
  mean: TableStats;
}

/** Bytes held by an index (its typed arrays; the ids' JavaScript array and map are not counted). */
export interface IndexMemory {
  /** The stored vectors (allocated rows × D × 4). */
  vectorBytes: number;
  /** The keys, L per allocated row. */
  keyBytes: number;
  /** The flat tables: key hashes, bucket offsets and members. */
  tableBytes: number;
  /** Norms, liveness flags, query scratch. */
  otherBytes: number;
  /** All of the above over the vectors stored. */
  bytesPerVector: number;
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
  /** The index's default probes (absent: 0). */
  probes?: number;
}

/** Options of {@link LSHIndex.fromJSON}. */
export interface LSHIndexLoadOptions {
  /** Custom kernels by the name they were saved under. Default {} (built-in kernels only). */
  kernels?: Readonly<Record<string, Kernel | KernelFunction>>;
}

/** The `format` tag of a saved index. */
export const INDEX_FORMAT = 'tfjs-lsh-attention/lsh-index';

/**
 * Stored rows rehashed by {@link LSHIndex.fromJSON} (evenly spaced) to check
 * the family against the saved keys: an edited seed, key width or fitted
 * array changes nearly every key, so a few rows show it.
 */
export const LOAD_CHECK_ROWS = 32;

/**
 * A rehashed key may differ from the saved one only in digits whose scores
 * are this close (relative to the largest score of the row in that table):
 * a vector within rounding of a hyperplane, hashed on another backend.
 */
export const LOAD_CHECK_ROUNDING = 1e-3;

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
  /** Probes used when a query does not say. */
  readonly defaultProbes: number;
  private ownsFamily: boolean;
  private readonly store: RowStore;
  private slotKeys = new Int32Array(0);
  private norms = new Float32Array(0);
  private alive = new Uint8Array(0);
  private slotIds: LSHId[] = [];
  private slots = 0;
  private live = 0;
  private nextId = 0;
  private readonly idToSlot = new Map<LSHId, number>();
  /** The tables, rebuilt from slotKeys after any add or remove (null until then). */
  private tables: FlatTable[] | null = null;
  private visited = new Uint8Array(0);
  private candidates = new Int32Array(1024);
  /** Per-batch arrays of the re-rank, kept across queries. */
  private readonly scratch = new Scratch();
  private disposed = false;

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
    const probes = options.probes ?? 0;
    assertNonNegativeInteger(who, 'probes', probes);
    if (probes > MAX_PROBES) throw new Error(`${who}: probes must be at most MAX_PROBES = ${MAX_PROBES}, got ${probes}`);
    this.defaultProbes = probes;
    this.ownsFamily = options.ownsFamily ?? false;
    this.store = new RowStore(family.dim, options.wasm ?? true);
  }

  /**
   * Chooses family parameters, tables and probes for a target recall@k on a
   * sample of the data and held-out queries, and reports the recall and
   * speed to expect (see {@link tuneIndex}). The way to start:
   *
   * ```ts
   * const tuned = await LSHIndex.tune(data, { k: 10, targetRecall: 0.9 });
   * console.log(tuned.best, tuned.speedup); // the setting, and its speed over an exact scan
   * const index = await tuned.build(data);
   * ```
   * @param sample float32 [n, D]: the data, or a sample as large as the index will be.
   */
  static tune(sample: tf.Tensor2D, options?: TuneOptions): Promise<TuneResult> {
    return tuneIndex(sample, options);
  }

  /** Vectors stored. */
  get size(): number {
    return this.live;
  }

  /** D. */
  get dim(): number {
    return this.family.dim;
  }

  /** Whether candidates are re-ranked in WebAssembly (see {@link LSHIndexOptions.wasm}). */
  get wasm(): boolean {
    return this.store.wasm;
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
    this.checkNotDisposed(who);
    checkVectors(who, 'vectors', vectors, this.dim);
    const n = vectors.shape[0];
    const newIds = this.resolveIds(who, n, ids);
    if (n === 0) return;
    const values = (await vectors.data()) as Float32Array;
    checkFinite(who, 'vectors', values, this.dim);
    const keys = await this.hashRows(who, vectors, values);
    // Another add may have run while this one awaited: ids are checked again where they are stored.
    this.checkNotDisposed(who);
    this.append(who, values, keys, newIds);
  }

  /**
   * Removes stored vectors by id; unknown ids are skipped. (Their rows stay
   * allocated until the index is saved and loaded again.)
   * @returns how many were removed.
   */
  remove(ids: LSHId | readonly LSHId[]): number {
    const who = 'LSHIndex.remove';
    this.checkNotDisposed(who);
    const list = Array.isArray(ids) ? (ids as readonly LSHId[]) : [ids as LSHId];
    list.forEach((id: unknown, i) => {
      if (!(typeof id === 'string' || typeof id === 'number')) {
        const where = Array.isArray(ids) ? ` at ${i}` : '';
        throw new Error(`${who}: ids must be an id (a string or number) or an array of ids, got ${describeValue(id)}${where}`);
      }
    });
    let removed = 0;
    for (const id of list) {
      const slot = this.idToSlot.get(id);
      if (slot === undefined) continue;
      this.tables = null;
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
    this.checkNotDisposed(who);
    checkVectors(who, 'queries', queries, this.dim);
    assertPositiveInteger(who, 'k', k);
    if (options === null || typeof options !== 'object') {
      throw new Error(`${who}: options must be an object like { probes: 8 }, got ${describeValue(options)}`);
    }
    const { nTables: L, digitsPerKey: M, digitBase: A } = this.family;
    const requested = options.probes ?? this.defaultProbes;
    assertNonNegativeInteger(who, 'probes', requested);
    // Beyond the other buckets there are (L·(A^M − 1)), more probes find nothing more.
    const probes = Math.min(requested, L * (A ** M - 1));
    if (probes > MAX_PROBES) {
      throw new Error(
        `${who}: probes must be at most MAX_PROBES = ${MAX_PROBES} (each is a bucket looked up per query), got ${requested}; ` +
          'probe fewer buckets, or use shorter keys (fewer bits) so each bucket holds more',
      );
    }
    const q = queries.shape[0];
    if (q === 0) return [];
    const queryValues = (await queries.data()) as Float32Array;
    checkFinite(who, 'queries', queryValues, this.dim);

    // Home keys from hash(), exactly as the stored vectors were keyed; probes from the digit scores.
    const keys = await this.hashRows(who, queries, queryValues);
    let scores: Float32Array | null = null;
    if (probes > 0) {
      const scoreTensor = this.family.digitScores(queries);
      scores = (await scoreTensor.data()) as Float32Array;
      scoreTensor.dispose();
    }

    const tables = this.ensureTables();
    const out: QueryResult[] = [];
    for (let start = 0; start < q; start += QUERY_CHUNK) {
      const n = Math.min(QUERY_CHUNK, q - start);
      out.push(...(await this.queryChunk(who, queryValues, keys, scores, start, n, k, probes, tables)));
    }
    return out;
  }

  /**
   * Queries [start, start + n) of a batch: candidates from flat tables
   * (de-duplicated with a visited bitmap), one re-rank call for the chunk,
   * partial top-k.
   */
  private async queryChunk(
    who: string,
    queryValues: Float32Array,
    keys: Int32Array,
    scores: Float32Array | null,
    start: number,
    n: number,
    k: number,
    probes: number,
    tables: FlatTable[],
  ): Promise<QueryResult[]> {
    const { nTables: L, digitsPerKey: M, digitBase: A } = this.family;
    const dim = this.dim;
    if (this.visited.length < this.slots) this.visited = new Uint8Array(Math.max(this.slots, 2 * this.visited.length));
    const visited = this.visited;
    const starts = new Int32Array(n + 1);
    const bucketCounts = new Int32Array(n);
    let cands = this.candidates;
    let cursor = 0;
    const visit = (table: FlatTable, key: number): void => {
      const b = table.bucket(key);
      if (b < 0) return;
      const from = table.offsets[b];
      const to = table.offsets[b + 1];
      if (cursor + (to - from) > cands.length) {
        const bigger = new Int32Array(Math.max(2 * cands.length, cursor + (to - from)));
        bigger.set(cands.subarray(0, cursor));
        cands = bigger;
        this.candidates = bigger;
      }
      const members = table.members;
      for (let m = from; m < to; m++) {
        const slot = members[m];
        if (visited[slot] === 0) {
          visited[slot] = 1;
          cands[cursor++] = slot;
        }
      }
    };
    const probeTables = new Int32Array(probes);
    const probeKeys = new Int32Array(probes);
    for (let i = 0; i < n; i++) {
      const row = start + i;
      starts[i] = cursor;
      let buckets = L;
      for (let t = 0; t < L; t++) visit(tables[t], keys[row * L + t]);
      if (scores !== null) {
        const found = probeInto(scores, row * L * M * A, L, M, A, probes, probeTables, probeKeys);
        for (let p = 0; p < found; p++) {
          const table = probeTables[p];
          if (probeKeys[p] === keys[row * L + table]) continue;
          visit(tables[table], probeKeys[p]);
          buckets++;
        }
      }
      for (let j = starts[i]; j < cursor; j++) visited[cands[j]] = 0;
      bucketCounts[i] = buckets;
    }
    starts[n] = cursor;

    const chunkValues = queryValues.subarray(start * dim, (start + n) * dim);
    // Scratch arrays (cands, sims) must not outlive an await: another query could reuse them meanwhile.
    let sims = this.rerankNow(who, chunkValues, n, cands, starts, k);
    if (sims === null) {
      cands = cands.slice(0, cursor);
      sims = await this.rerankByMatrix(who, chunkValues, n, cands, starts);
    }
    const results: QueryResult[] = [];
    for (let i = 0; i < n; i++) {
      const best = topK(sims, cands, starts[i], starts[i + 1], k);
      results.push({
        ids: Array.from(best, (j) => this.slotIds[cands[j]]),
        scores: Array.from(best, (j) => sims[j]),
        candidates: starts[i + 1] - starts[i],
        buckets: bucketCounts[i],
      });
    }
    return results;
  }

  /** The flat tables, rebuilt from the keys after any add or remove. */
  private ensureTables(): FlatTable[] {
    if (this.tables === null) {
      const L = this.family.nTables;
      const bucketOf = new Int32Array(this.slots);
      this.tables = Array.from(
        { length: L },
        (_, t) => new FlatTable(this.slotKeys, this.alive, this.slots, this.live, L, t, bucketOf),
      );
    }
    return this.tables;
  }

  /** Bucket occupancy per table and on average. */
  stats(): IndexStats {
    this.checkNotDisposed('LSHIndex.stats');
    const n = this.live;
    const keyBits = this.family.keyBits;
    const flat = this.ensureTables();
    const tables = flat.map((table): TableStats => {
      let largest = 0;
      let squares = 0;
      let entropy = 0;
      // Sorted sizes: the sums do not depend on the order buckets were created in (a loaded index matches).
      const sizes = Array.from({ length: table.size }, (_, b) => table.offsets[b + 1] - table.offsets[b]).sort((a, b) => a - b);
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
    const L = this.family.nTables;
    const vectorBytes = this.store.bytes;
    const keyBytes = this.slotKeys.byteLength;
    const tableBytes = flat.reduce((sum, table) => sum + table.bytes, 0);
    const otherBytes =
      this.norms.byteLength + this.alive.byteLength + this.visited.byteLength + this.candidates.byteLength + this.scratch.bytes;
    return {
      size: n,
      nTables: L,
      keyBits,
      memory: {
        vectorBytes,
        keyBytes,
        tableBytes,
        otherBytes,
        bytesPerVector: n > 0 ? (vectorBytes + keyBytes + tableBytes + otherBytes) / n : 0,
      },
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
    this.checkNotDisposed('LSHIndex.toJSON');
    const L = this.family.nTables;
    const dim = this.dim;
    const vectors = new Float32Array(this.live * dim);
    const keys = new Int32Array(this.live * L);
    const ids: LSHId[] = [];
    const stored = this.store.rows();
    let row = 0;
    for (let s = 0; s < this.slots; s++) {
      if (!this.alive[s]) continue;
      vectors.set(stored.subarray(s * dim, (s + 1) * dim), row * dim);
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
      ...(this.defaultProbes > 0 ? { probes: this.defaultProbes } : {}),
    };
  }

  /**
   * Rebuilds a saved index; it answers every query exactly as the saved one
   * did. The loaded index owns its family (dispose() frees it).
   *
   * Every field is checked (types, ranges, array lengths, finite vectors,
   * unique ids, keys within the family's key range), and
   * {@link LOAD_CHECK_ROWS} stored rows are rehashed to check the family
   * against the saved keys.
   * @throws naming the field, what was expected and what was found.
   */
  static fromJSON(json: LSHIndexJSON, options: LSHIndexLoadOptions = {}): LSHIndex {
    const who = 'LSHIndex.fromJSON';
    checkSavedHeader(who, json, options, 'index.toJSON()');
    const ids = checkSavedIds(who, json.ids, json.size);
    const vectors = base64ToFloat32(who, 'vectors', json.vectors, json.size * json.dim, `[size, dim] = [${json.size}, ${json.dim}]`);
    checkFinite(who, 'vectors', vectors, json.dim, 'the saved JSON is corrupted');
    const family = familyFromJSON(json.family, options);
    try {
      const L = family.nTables;
      checkFamilyDim(who, family, json.dim);
      const keys = base64ToInt32(who, 'keys', json.keys, json.size * L, `[size, family.nTables] = [${json.size}, ${L}]`);
      const index = LSHIndex.loaded(who, json, family, options);
      index.reserveSlots(who, json.size);
      index.store.rows().set(vectors);
      index.finishLoad(who, keys, ids, json.nextId);
      return index;
    } catch (error) {
      family.dispose();
      throw error;
    }
  }

  /**
   * The index in the binary format, as chunks of at most 4 MiB: write them
   * to a file or a stream (Node: `stream.Readable.from(index.toBinary())`
   * piped to `fs.createWriteStream(path)`; a browser: `new Blob([...index.toBinary()])`).
   * Smaller and far faster than JSON for large indexes; see
   * src/lsh/binary.ts for the layout (magic, header, vectors, keys, ids,
   * each with a checksum).
   */
  *toBinary(): Generator<Uint8Array> {
    const who = 'LSHIndex.toBinary';
    this.checkNotDisposed(who);
    const L = this.family.nTables;
    const dim = this.dim;
    const contiguous = this.live === this.slots;
    // Rows in place when none was removed (chunks are copied as they go out), else compacted once.
    let vectors: Float32Array;
    let keys: Int32Array;
    const ids: LSHId[] = [];
    if (contiguous) {
      vectors = this.store.rows().subarray(0, this.slots * dim);
      keys = this.slotKeys.subarray(0, this.slots * L);
      for (let s = 0; s < this.slots; s++) ids.push(this.slotIds[s]);
    } else {
      vectors = new Float32Array(this.live * dim);
      keys = new Int32Array(this.live * L);
      const stored = this.store.rows();
      let row = 0;
      for (let s = 0; s < this.slots; s++) {
        if (!this.alive[s]) continue;
        vectors.set(stored.subarray(s * dim, (s + 1) * dim), row * dim);
        keys.set(this.slotKeys.subarray(s * L, (s + 1) * L), row * L);
        ids.push(this.slotIds[s]);
        row++;
      }
    }
    const numeric = ids.every((id) => typeof id === 'number');
    const header = {
      format: INDEX_FORMAT,
      version: 1,
      family: this.family.toJSON(),
      similarity: this.similarity === 'cosine' ? 'cosine' : kernelToJSON(this.similarity),
      dim,
      size: this.live,
      nextId: this.nextId,
      idKind: numeric ? 'number' : 'json',
      ...(this.defaultProbes > 0 ? { probes: this.defaultProbes } : {}),
    };
    yield* writeBinary(who, () => ({
      header,
      vectors,
      keys,
      ids: numeric ? Float64Array.from(ids as number[]) : ids,
    }));
  }

  /**
   * Loads an index saved with {@link LSHIndex.toBinary}, reading the source
   * chunk by chunk straight into the index's storage. Checks as
   * {@link LSHIndex.fromJSON} does, plus the magic bytes, each section's
   * checksum and the end mark: a truncated or altered file is an error
   * naming what is wrong.
   * @param source the bytes, or chunks (an iterable or async iterable of
   *   Uint8Array: a Node `fs.createReadStream(path)`, a web ReadableStream).
   */
  static async fromBinary(source: BinarySource, options: LSHIndexLoadOptions = {}): Promise<LSHIndex> {
    const who = 'LSHIndex.fromBinary';
    const reader = new ChunkReader(who, source);
    const magic = await reader.read(8, 'the magic bytes');
    if (String.fromCharCode(...magic) !== BINARY_MAGIC) {
      throw new Error(
        `${who}: expected a binary index starting with '${BINARY_MAGIC}' (from index.toBinary()), got the bytes [${Array.from(magic).join(', ')}]; ` +
          'for a JSON file use LSHIndex.fromJSON(JSON.parse(text))',
      );
    }
    const version = await reader.u32('the version');
    if (version !== 1) throw new Error(`${who}: version must be 1, got ${version}; save the index again with this library`);
    const headerBytes = await reader.u32('the header length');
    if (headerBytes > 1 << 30) throw new Error(`${who}: the header length ${headerBytes} is not plausible; the file is corrupted`);
    let header: LSHIndexJSON & { idKind?: unknown };
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await reader.read(headerBytes, 'the header'))) as typeof header;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith(who)) throw error;
      throw new Error(`${who}: the header is not valid JSON (${String(error)}); the file is corrupted`);
    }
    checkSavedHeader(who, header, options, 'index.toBinary()');
    if (header.idKind !== 'number' && header.idKind !== 'json') {
      throw new Error(`${who}: idKind must be 'number' or 'json', got ${describeValue(header.idKind)}; the file is corrupted`);
    }
    const family = familyFromJSON(header.family, options);
    let index: LSHIndex | undefined;
    try {
      checkFamilyDim(who, family, header.dim);
      const { size, dim } = header;
      const L = family.nTables;
      index = LSHIndex.loaded(who, header, family, options);
      index.reserveSlots(who, size);
      const rows = index.store.rows();
      await reader.section(new Uint8Array(rows.buffer, rows.byteOffset, size * dim * 4), `the vectors ([size, dim] = [${size}, ${dim}] f32)`);
      const keys = new Int32Array(size * L);
      await reader.section(new Uint8Array(keys.buffer), `the keys ([size, family.nTables] = [${size}, ${L}] i32)`);
      let ids: LSHId[];
      if (header.idKind === 'number') {
        const numbers = new Float64Array(size);
        await reader.section(new Uint8Array(numbers.buffer), `the ids (${size} f64)`);
        ids = Array.from(numbers);
      } else {
        const length = await reader.u32('the ids length');
        if (length % 4 !== 0 || length > 2 ** 31) throw new Error(`${who}: the ids length ${length} is not plausible; the file is corrupted`);
        const text = new Uint8Array(length);
        await reader.section(text, 'the ids (JSON)');
        try {
          ids = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(text)) as LSHId[];
        } catch (error) {
          throw new Error(`${who}: the ids are not valid JSON (${String(error)}); the file is corrupted`);
        }
      }
      await reader.expectEnd();
      checkFinite(who, 'vectors', index.store.rows().subarray(0, size * dim), dim, 'the file is corrupted');
      index.finishLoad(who, keys, checkSavedIds(who, ids, size), header.nextId);
      return index;
    } catch (error) {
      if (index !== undefined) index.dispose(); // owns the family: frees it
      else family.dispose();
      throw error;
    }
  }

  /** An empty index for a load: it owns the family. */
  private static loaded(who: string, saved: LSHIndexJSON, family: HashFamily, options: LSHIndexLoadOptions): LSHIndex {
    const similarity = saved.similarity === 'cosine' ? 'cosine' : loadKernel(who, 'similarity', saved.similarity, options.kernels);
    const probes = saved.probes ?? 0;
    if (typeof probes !== 'number' || !Number.isSafeInteger(probes) || probes < 0 || probes > MAX_PROBES) {
      throw new Error(`${who}: probes must be an integer in [0, ${MAX_PROBES}], got ${describeValue(probes)}; the saved index is edited`);
    }
    return new LSHIndex(family, { similarity, probes, ownsFamily: true });
  }

  /** Checks the loaded keys (range, and rehashed rows against the family) and stores the rows written to the store. */
  private finishLoad(who: string, keys: Int32Array, ids: LSHId[], nextId: number): void {
    const family = this.family;
    const L = family.nTables;
    const keyCount = family.digitBase ** family.digitsPerKey;
    const bad = keys.findIndex((key) => key < 0 || key >= keyCount);
    if (bad >= 0) {
      throw new Error(
        `${who}: keys must be in [0, ${keyCount}) (the family's ${family.digitsPerKey} digits in base ${family.digitBase}), ` +
          `got ${keys[bad]} for row ${Math.floor(bad / L)}, table ${bad % L}; the keys or the family were edited`,
      );
    }
    checkKeysAgainstFamily(who, family, this.store.rows().subarray(0, ids.length * this.dim), keys, ids.length);
    this.commitRows(keys, ids);
    this.nextId = nextId;
  }

  /**
   * Frees the family's tensors if the index owns it (a loaded index); the
   * index holds no other tensors. The index cannot be used afterwards;
   * disposing twice does nothing.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ownsFamily) this.family.dispose();
  }

  private checkNotDisposed(who: string): void {
    if (this.disposed) throw new Error(`${who}: this index was disposed; build or load a new one`);
  }

  /**
   * The family's keys for rows already checked, read back: int32 [N, L].
   * Hashed in blocks of rows so a family's intermediate [rows, L·M·A]
   * scores stay near {@link HASH_BLOCK_FLOATS} floats (a rotation hash of
   * 100,000 rows in 32 tables at once needs gigabytes).
   * @param values x's values, read back (the blocks are made from them).
   */
  private async hashRows(who: string, x: tf.Tensor2D, values: Float32Array): Promise<Int32Array> {
    const { nTables: L, digitsPerKey: M, digitBase: A } = this.family;
    const [n, dim] = x.shape;
    const block = Math.max(1, Math.floor(HASH_BLOCK_FLOATS / (L * M * A)));
    if (n <= block) return this.hashBlock(who, x);
    const out = new Int32Array(n * L);
    for (let start = 0; start < n; start += block) {
      const rows = Math.min(block, n - start);
      // From the host copy: tf.slice on the wasm backend copies out the whole tensor each call
      // (measured: 0.5 s a block at 300,000 × 128, most of a million-row add).
      const part = tf.tensor2d(values.subarray(start * dim, (start + rows) * dim), [rows, dim], 'float32');
      try {
        out.set(await this.hashBlock(who, part), start * L);
      } finally {
        part.dispose();
      }
    }
    return out;
  }

  private async hashBlock(who: string, x: tf.Tensor2D): Promise<Int32Array> {
    const keysTensor = this.family.hash(x);
    try {
      const expected = [x.shape[0], this.family.nTables];
      if (keysTensor.dtype !== 'int32' || keysTensor.rank !== 2 || keysTensor.shape[0] !== expected[0] || keysTensor.shape[1] !== expected[1]) {
        throw new Error(
          `${who}: family.hash must return int32 [N, L] = [${expected.join(', ')}], got ${keysTensor.dtype} [${keysTensor.shape.join(', ')}]; ` +
            'fix the hash family',
        );
      }
      return (await keysTensor.data()) as Int32Array;
    } finally {
      keysTensor.dispose();
    }
  }

  private resolveIds(who: string, n: number, ids: readonly LSHId[] | undefined): LSHId[] {
    if (ids === undefined) {
      const out: LSHId[] = [];
      for (let i = 0; i < n; i++) {
        while (this.idToSlot.has(this.nextId)) this.nextId++;
        if (this.nextId >= Number.MAX_SAFE_INTEGER) {
          throw new Error(`${who}: default ids ran out (the next would be ${this.nextId}, past 2^53 − 1); pass ids yourself`);
        }
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

  private append(who: string, values: Float32Array, keys: Int32Array, ids: LSHId[]): void {
    for (const id of ids) {
      if (this.idToSlot.has(id)) {
        throw new Error(`${who}: id ${JSON.stringify(id)} was stored meanwhile by another add (ids must be unique); await one add before the next`);
      }
    }
    this.reserveSlots(who, ids.length);
    this.store.rows().set(values, this.slots * this.dim);
    this.commitRows(keys, ids);
  }

  /** Room for n more rows in every per-slot array. */
  private reserveSlots(who: string, n: number): void {
    const L = this.family.nTables;
    const needed = this.slots + n;
    if (needed > this.alive.length) {
      const capacity = Math.max(needed, 2 * this.alive.length, 64);
      this.store.reserve(who, capacity);
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
    this.store.reserve(who, needed);
  }

  /** Stores n rows already written to the store at slots [slots, slots + n): their keys and ids. */
  private commitRows(keys: Int32Array, ids: LSHId[]): void {
    const n = ids.length;
    const dim = this.dim;
    const L = this.family.nTables;
    const values = this.store.rows();
    this.slotKeys.set(keys, this.slots * L);
    for (let i = 0; i < n; i++) {
      const slot = this.slots + i;
      this.alive[slot] = 1;
      this.norms[slot] = Math.sqrt(dot(values, slot * dim, values, slot * dim, dim));
      this.slotIds[slot] = ids[i];
      this.idToSlot.set(ids[i], slot);
    }
    this.tables = null;
    this.slots += n;
    this.live += n;
  }

  /**
   * Cosine re-ranking in two stages, with the same answers as the exact
   * path: every candidate's dot product in f32 SIMD (several times faster),
   * whose error is at most ε = γ_n·‖q‖·‖x‖ (γ_n = n·u/(1 − n·u), u = 2^-24,
   * n = D + 8; Cauchy–Schwarz bounds Σ|q_i·x_i|), so in cosine units at most
   * γ_n. A candidate whose approximate cosine plus ε (plus 2^-21 for the
   * final rounding to f32, so it cannot even tie) is below the k-th largest
   * approximate cosine minus ε cannot be in the top k; every other candidate
   * is scored exactly (the f64 `dots` kernel) and only those are ranked.
   * Excluded candidates get −Infinity in `sims`.
   */
  private rerankCosineTwoStage(
    who: string,
    queryValues: Float32Array,
    n: number,
    cands: Int32Array,
    starts: Int32Array,
    k: number,
    sims: Float32Array,
  ): void {
    const dim = this.dim;
    const total = starts[n];
    const scratch = this.scratch;
    const approx = scratch.f32('approx', total);
    this.store.rerank(who, 'dotF32', queryValues, n, cands, starts, approx);
    const gammaN = ((dim + 8) * F32_UNIT) / (1 - (dim + 8) * F32_UNIT);
    const epsilon = 1.01 * gammaN + 1e-12;
    const margin = 2 ** -21;
    const norms = this.norms;
    const cosines = scratch.f64('cosines', total);
    const heap = scratch.f64('heap', k);
    const queryNorms = scratch.f64('queryNorms', n);
    // Survivors: their slots, per-query offsets, and where each goes back in `sims`.
    const exactCands = scratch.i32('exactCands', total);
    const exactAt = scratch.i32('exactAt', total);
    const exactStarts = scratch.i32('exactStarts', n + 1);
    let kept = 0;
    for (let i = 0; i < n; i++) {
      exactStarts[i] = kept;
      const from = starts[i];
      const to = starts[i + 1];
      const queryNorm = Math.sqrt(dot(queryValues, i * dim, queryValues, i * dim, dim));
      queryNorms[i] = queryNorm;
      let finite = true;
      for (let j = from; j < to; j++) {
        const scale = queryNorm * norms[cands[j]];
        cosines[j] = scale > 0 ? approx[j] / scale : 0;
        if (!Number.isFinite(cosines[j])) finite = false;
      }
      const threshold = finite && to - from > k ? kthLargest(cosines, from, to, k, heap) - epsilon : -Infinity;
      for (let j = from; j < to; j++) {
        if (cosines[j] + epsilon + margin < threshold) {
          sims[j] = -Infinity;
        } else {
          exactCands[kept] = cands[j];
          exactAt[kept++] = j;
        }
      }
    }
    exactStarts[n] = kept;
    const sums = scratch.f64('sums', kept);
    this.store.rerank(who, 'dot', queryValues, n, exactCands, exactStarts, sums);
    for (let i = 0; i < n; i++) {
      for (let e = exactStarts[i]; e < exactStarts[i + 1]; e++) {
        const scale = queryNorms[i] * norms[exactCands[e]];
        const value = scale > 0 ? sums[e] / scale : 0;
        if (!Number.isFinite(value)) {
          throw new Error(`${who}: the similarity (cosine) returned ${value} for a candidate; it must be finite for every stored vector and query`);
        }
        sims[exactAt[e]] = value;
      }
    }
  }

  /**
   * Similarities of a chunk of queries to their candidates, f32 like the
   * scores returned (a scratch array, valid until the next query). Cosine
   * and the built-in RBF kernel run in one call of the store's re-rank
   * kernel for the chunk (f64 sums with the arithmetic of the JavaScript
   * `dot` and `pair`, so the same values); other kernels with a JavaScript
   * `pair` run it per candidate; kernels without one return null (see
   * {@link LSHIndex.rerankByMatrix}).
   * @param queryValues f32 [n, D].
   */
  private rerankNow(who: string, queryValues: Float32Array, n: number, cands: Int32Array, starts: Int32Array, k: number): Float32Array | null {
    const dim = this.dim;
    const similarity = this.similarity;
    const total = starts[n];
    const rbfGamma = similarity === 'cosine' ? undefined : builtInRbfGamma(similarity);
    if (similarity !== 'cosine' && rbfGamma === undefined && similarity.pair === undefined) return null;
    const sims = this.scratch.f32('sims', total);
    if (similarity === 'cosine' && this.store.wasm) {
      this.rerankCosineTwoStage(who, queryValues, n, cands, starts, k, sims);
      return sims;
    }
    if (similarity === 'cosine' || rbfGamma !== undefined) {
      const sums = this.scratch.f64('sums', total);
      this.store.rerank(who, similarity === 'cosine' ? 'dot' : 'sqdist', queryValues, n, cands, starts, sums);
      if (similarity === 'cosine') {
        const norms = this.norms;
        for (let i = 0; i < n; i++) {
          const queryNorm = Math.sqrt(dot(queryValues, i * dim, queryValues, i * dim, dim));
          for (let j = starts[i]; j < starts[i + 1]; j++) {
            const scale = queryNorm * norms[cands[j]];
            sims[j] = scale > 0 ? sums[j] / scale : 0;
          }
        }
      } else {
        const gamma = (rbfGamma as (dim: number) => number)(dim);
        for (let j = 0; j < total; j++) sims[j] = Math.exp(-gamma * sums[j]);
      }
    } else {
      const pair = similarity.pair as NonNullable<typeof similarity.pair>;
      const stored = this.store.rows();
      for (let i = 0; i < n; i++) {
        for (let j = starts[i]; j < starts[i + 1]; j++) sims[j] = pair(queryValues, i * dim, stored, cands[j] * dim, dim);
      }
    }
    checkSimsFinite(who, similarity, sims, total);
    return sims;
  }

  /**
   * Similarities for a kernel without a JavaScript `pair`: one [1, c]
   * `matrix` call per query, into a fresh array (the calls await).
   * @param queryValues f32 [n, D].
   */
  private async rerankByMatrix(who: string, queryValues: Float32Array, n: number, cands: Int32Array, starts: Int32Array): Promise<Float32Array> {
    const dim = this.dim;
    const similarity = this.similarity as Kernel;
    const total = starts[n];
    const sims = new Float32Array(total);
    for (let i = 0; i < n; i++) {
      const count = starts[i + 1] - starts[i];
      if (count === 0) continue;
      const stored = this.store.rows();
      const rows = new Float32Array(count * dim);
      for (let j = 0; j < count; j++) {
        const slot = cands[starts[i] + j];
        rows.set(stored.subarray(slot * dim, (slot + 1) * dim), j * dim);
      }
      const row = tf.tidy(() =>
        similarity.matrix(
          tf.tensor2d(queryValues.slice(i * dim, (i + 1) * dim), [1, dim], 'float32'),
          tf.tensor2d(rows, [count, dim], 'float32'),
        ),
      );
      sims.set((await row.data()) as Float32Array, starts[i]);
      row.dispose();
    }
    checkSimsFinite(who, similarity, sims, total);
    return sims;
  }
}

/** Throws at the first non-finite similarity. */
function checkSimsFinite(who: string, similarity: Similarity, sims: Float32Array, total: number): void {
  for (let j = 0; j < total; j++) {
    if (!Number.isFinite(sims[j])) {
      const name = similarity === 'cosine' ? 'cosine' : `kernel '${similarity.name}'`;
      throw new Error(
        `${who}: the similarity (${name}) returned ${sims[j]} for a candidate; it must be finite for every stored vector and query`,
      );
    }
  }
}

/** Unit roundoff of f32. */
const F32_UNIT = 2 ** -24;

/**
 * The k-th largest of values[from, to) (−Infinity when there are fewer),
 * with a bounded min-heap in `heap` (at least k long).
 */
function kthLargest(values: Float64Array, from: number, to: number, k: number, heap: Float64Array): number {
  let size = 0;
  for (let j = from; j < to; j++) {
    const v = values[j];
    if (size < k) {
      let at = size++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (heap[parent] <= v) break;
        heap[at] = heap[parent];
        at = parent;
      }
      heap[at] = v;
    } else if (v > heap[0]) {
      let at = 0;
      for (;;) {
        const left = 2 * at + 1;
        if (left >= k) break;
        const child = left + 1 < k && heap[left + 1] < heap[left] ? left + 1 : left;
        if (heap[child] >= v) break;
        heap[at] = heap[child];
        at = child;
      }
      heap[at] = v;
    }
  }
  return size < k ? -Infinity : heap[0];
}

/**
 * Positions in [from, to) of the k largest scores, best first; equal scores
 * keep the earlier-stored vector first (smaller slot). A partial selection:
 * a bounded insertion list, most candidates rejected by one comparison.
 */
function topK(scores: Float32Array, slots: Int32Array, from: number, to: number, k: number): number[] {
  const best: number[] = [];
  const better = (a: number, b: number): boolean => scores[a] > scores[b] || (scores[a] === scores[b] && slots[a] < slots[b]);
  for (let j = from; j < to; j++) {
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

/** Throws at the first non-finite value, naming its row. */
function checkFinite(who: string, what: string, values: Float32Array, dim: number, fix = 'clean or drop that row'): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new Error(`${who}: ${what} must be finite, got ${values[i]} in row ${Math.floor(i / dim)}; ${fix}`);
    }
  }
}

/** A saved index's ids: `size` strings or finite numbers, all different. */
function checkSavedIds(who: string, ids: unknown, size: number): LSHId[] {
  if (!Array.isArray(ids) || ids.length !== size) {
    throw new Error(`${who}: ids must list size = ${size} ids, got ${describeValue(ids)}`);
  }
  const seen = new Set<LSHId>();
  ids.forEach((id: unknown, i) => {
    if (!(typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) {
      throw new Error(`${who}: ids[${i}] must be a string or a finite number, got ${describeValue(id)}`);
    }
    if (seen.has(id)) throw new Error(`${who}: ids[${i}] repeats the id ${JSON.stringify(id)} (ids must be unique); the saved JSON is edited`);
    seen.add(id);
  });
  return ids as LSHId[];
}

/**
 * Rehashes up to {@link LOAD_CHECK_ROWS} stored rows and compares with the
 * saved keys. A digit may differ only where its scores are within
 * {@link LOAD_CHECK_ROUNDING} of each other (rounding on another backend).
 */
function checkKeysAgainstFamily(who: string, family: HashFamily, vectors: Float32Array, keys: Int32Array, size: number): void {
  const rows = Math.min(size, LOAD_CHECK_ROWS);
  if (rows === 0) return;
  const { dim, nTables: L, digitsPerKey: M, digitBase: A } = family;
  const picked = Array.from({ length: rows }, (_, r) => Math.floor((r * size) / rows));
  const sample = new Float32Array(rows * dim);
  picked.forEach((row, r) => sample.set(vectors.subarray(row * dim, (row + 1) * dim), r * dim));
  const x = tf.tensor2d(sample, [rows, dim], 'float32');
  let fresh: Int32Array;
  let scores: Float32Array;
  try {
    const keysTensor = family.hash(x);
    const scoreTensor = family.digitScores(x);
    fresh = keysTensor.dataSync() as Int32Array;
    scores = scoreTensor.dataSync() as Float32Array;
    tf.dispose([keysTensor, scoreTensor]);
  } finally {
    x.dispose();
  }
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < L; t++) {
      const saved = keys[picked[r] * L + t];
      const now = fresh[r * L + t];
      if (saved === now) continue;
      const base = (r * L + t) * M * A;
      let scale = 0;
      for (let c = 0; c < M * A; c++) scale = Math.max(scale, Math.abs(scores[base + c]));
      let s = saved;
      let f = now;
      for (let digit = 0; digit < M; digit++, s = Math.floor(s / A), f = Math.floor(f / A)) {
        const savedDigit = s % A;
        const freshDigit = f % A;
        if (savedDigit === freshDigit) continue;
        const gap = scores[base + digit * A + freshDigit] - scores[base + digit * A + savedDigit];
        if (gap > LOAD_CHECK_ROUNDING * scale) {
          throw new Error(
            `${who}: the saved keys do not match the family: stored row ${picked[r]} hashes to ${now} in table ${t}, ` +
              `the file says ${saved}; the family (kind, seed, sizes, fitted arrays or kernel) or the keys were edited, ` +
              'or a custom kernel passed under the saved name differs from the one saved: save the index again',
          );
        }
      }
    }
  }
}

/** The fields a saved index's JSON and binary header share: format, options, version, size, dim, nextId. */
function checkSavedHeader(who: string, json: LSHIndexJSON, options: LSHIndexLoadOptions, from: string): void {
  if (json === null || typeof json !== 'object' || json.format !== INDEX_FORMAT) {
    const found = json !== null && typeof json === 'object' ? `format ${describeValue(json.format)}` : describeValue(json);
    throw new Error(`${who}: expected a saved index with format '${INDEX_FORMAT}' (from ${from}), got ${found}`);
  }
  if (options === null || typeof options !== 'object') {
    throw new Error(`${who}: options must be an object like { kernels: { name: fn } }, got ${describeValue(options)}`);
  }
  if (json.version !== 1) throw new Error(`${who}: version must be 1, got ${describeValue(json.version)}`);
  if (typeof json.size !== 'number' || !Number.isSafeInteger(json.size) || json.size < 0) {
    throw new Error(`${who}: size must be a non-negative integer (the number of stored vectors), got ${describeValue(json.size)}`);
  }
  assertSavedPositiveInteger(who, 'dim', json.dim);
  if (typeof json.nextId !== 'number' || !Number.isSafeInteger(json.nextId) || json.nextId < 0) {
    throw new Error(
      `${who}: nextId must be an integer in [0, ${Number.MAX_SAFE_INTEGER}] (the next default id), got ${describeValue(json.nextId)}; ` +
        'the saved JSON is edited',
    );
  }
}

function checkFamilyDim(who: string, family: HashFamily, dim: number): void {
  if (family.dim !== dim) {
    throw new Error(`${who}: dim must match family.dim = ${family.dim}, got ${dim}; the saved JSON is edited`);
  }
}
