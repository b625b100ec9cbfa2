/**
 * The flat storage behind {@link LSHIndex}: stored rows in a WebAssembly
 * memory (re-ranked there with SIMD, src/kernels/rerank.wat), and each
 * table as flat typed arrays (an open-addressing hash from key to bucket,
 * bucket offsets, members), with no per-bucket JavaScript objects.
 *
 * Legend: N stored rows (slots), D vector size, L tables, C candidates.
 */
import { RERANK_WASM_BASE64 } from '../kernels/rerank_wasm.js';
import { decodeBase64 } from '../kernels/wasm_module.js';
import { dot } from './similarity.js';

const WASM_PAGE_BYTES = 65536;
/** wasm32 memories stop at 4 GiB. */
const MAX_WASM_BYTES = 2 ** 32;

interface RerankExports {
  memory: WebAssembly.Memory;
  dots(stored: number, dim: number, queries: number, cands: number, starts: number, nQueries: number, out: number): void;
  pairSqdists(stored: number, dim: number, queries: number, pairSlot: number, pairQuery: number, pairOut: number, nPairs: number, out: number): void;
  pairDotsF32(stored: number, dim: number, queries: number, pairSlot: number, pairQuery: number, pairOut: number, nPairs: number, out: number): void;
}

/**
 * Pair-ordered re-ranking: queries are taken in blocks of about this many
 * bytes (they stay in the core's L2 cache while their pairs run), and within
 * a block the (query, candidate) pairs run sorted by stored row, so a stored
 * row is read from main memory about once per query block instead of once
 * per query that has it (candidate rows are scattered over the store: read
 * per query, re-ranking is bound by memory bandwidth).
 */
export const RERANK_QUERY_BLOCK_BYTES = 2 ** 18;

let compiled: WebAssembly.Module | null | undefined;

/** The re-rank module, compiled once; null where WebAssembly SIMD is unavailable (plain JavaScript then). */
function rerankModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(decodeBase64(RERANK_WASM_BASE64));
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

const align16 = (bytes: number): number => Math.ceil(bytes / 16) * 16;

/**
 * Stored rows, f32 [capacity, D] row-major, in a wasm memory of their own
 * (or a plain Float32Array without WebAssembly), and batched re-ranking.
 */
export class RowStore {
  private readonly kernel: RerankExports | null;
  private plain: Float32Array;
  private capacityRows = 0;
  /** Counting-sort scratch of the pair-ordered re-rank, kept across calls. */
  private counts = new Int32Array(0);

  constructor(
    readonly dim: number,
    useWasm = true,
  ) {
    const module = useWasm ? rerankModule() : null;
    this.kernel = module === null ? null : (new WebAssembly.Instance(module, {}).exports as unknown as RerankExports);
    this.plain = new Float32Array(0);
  }

  /** Whether re-ranking runs in WebAssembly. */
  get wasm(): boolean {
    return this.kernel !== null;
  }

  /** Rows room is allocated for. */
  get capacity(): number {
    return this.capacityRows;
  }

  /** Bytes allocated for the rows. */
  get bytes(): number {
    return this.capacityRows * this.dim * 4;
  }

  /** The rows, f32 [capacity · D]; a fresh view (valid until the next grow or scratch call). */
  rows(): Float32Array {
    if (this.kernel === null) return this.plain;
    return new Float32Array(this.kernel.memory.buffer, 0, this.capacityRows * this.dim);
  }

  /** Makes room for `rows` rows, keeping the stored ones. */
  reserve(who: string, rows: number): void {
    if (rows <= this.capacityRows) return;
    const capacity = Math.max(rows, 2 * this.capacityRows, 64);
    if (this.kernel === null) {
      const next = new Float32Array(capacity * this.dim);
      next.set(this.plain);
      this.plain = next;
    } else {
      this.growMemory(who, capacity * this.dim * 4);
    }
    this.capacityRows = capacity;
  }

  private growMemory(who: string, bytes: number): void {
    const memory = (this.kernel as RerankExports).memory;
    if (bytes <= memory.buffer.byteLength) return;
    if (bytes > MAX_WASM_BYTES - WASM_PAGE_BYTES) {
      throw new Error(
        `${who}: the index needs ${bytes} bytes of WebAssembly memory for its rows and a query batch, expected at most 4 GiB ` +
          '(the wasm32 limit); store fewer or shorter vectors per index, or query in smaller batches',
      );
    }
    const pages = Math.ceil(bytes / WASM_PAGE_BYTES) - memory.buffer.byteLength / WASM_PAGE_BYTES;
    try {
      memory.grow(pages);
    } catch (error) {
      throw new Error(`${who}: could not grow the index's WebAssembly memory to ${bytes} bytes (${String(error)}); store fewer vectors per index`);
    }
  }

  /**
   * Per candidate, x·y (`kind` 'dot') or ‖x − y‖² ('sqdist') in f64, with
   * the arithmetic of the JavaScript `dot` and rbfKernel's `pair`.
   * @param queries f32 [n, D] row-major.
   * @param cands candidate slots, query q's at [starts[q], starts[q+1]).
   * @param starts n + 1 offsets.
   * @param out f64, one per candidate.
   */
  rerank(who: string, kind: 'dot' | 'sqdist', queries: Float32Array, n: number, cands: Int32Array, starts: Int32Array, out: Float64Array): void;
  /** Dot products in f32 (wasm only: the caller checks {@link RowStore.wasm}); error bounded as rerank.wat says. */
  rerank(who: string, kind: 'dotF32', queries: Float32Array, n: number, cands: Int32Array, starts: Int32Array, out: Float32Array): void;
  rerank(
    who: string,
    kind: 'dot' | 'sqdist' | 'dotF32',
    queries: Float32Array,
    n: number,
    cands: Int32Array,
    starts: Int32Array,
    out: Float64Array | Float32Array,
  ): void {
    const dim = this.dim;
    const total = starts[n];
    if (this.kernel === null) {
      if (kind === 'dotF32') throw new Error(`${who}: f32 re-ranking needs WebAssembly`);
      const rows = this.plain;
      for (let q = 0; q < n; q++) {
        const offset = q * dim;
        for (let j = starts[q]; j < starts[q + 1]; j++) {
          const row = cands[j] * dim;
          if (kind === 'dot') out[j] = dot(queries, offset, rows, row, dim);
          else {
            let sum = 0;
            for (let i = 0; i < dim; i++) sum += (queries[offset + i] - rows[row + i]) ** 2;
            out[j] = sum;
          }
        }
      }
      return;
    }
    const kernel = this.kernel;
    const queryAt = align16(this.bytes);
    if (kind === 'dot') {
      const candsAt = align16(queryAt + n * dim * 4);
      const startsAt = align16(candsAt + total * 4);
      const outAt = align16(startsAt + (n + 1) * 4);
      this.growMemory(who, outAt + total * 8);
      const buffer = kernel.memory.buffer;
      new Float32Array(buffer, queryAt, n * dim).set(queries.subarray(0, n * dim));
      new Int32Array(buffer, candsAt, total).set(cands.subarray(0, total));
      new Int32Array(buffer, startsAt, n + 1).set(starts.subarray(0, n + 1));
      kernel.dots(0, dim, queryAt, candsAt, startsAt, n, outAt);
      out.set(new Float64Array(kernel.memory.buffer, outAt, total));
      return;
    }
    // The other kinds run as pairs grouped by query block, then by group of stored rows (a counting sort).
    const slotAt = align16(queryAt + n * dim * 4);
    const pairQueryAt = align16(slotAt + total * 4);
    const pairOutAt = align16(pairQueryAt + total * 4);
    const outAt = align16(pairOutAt + total * 4);
    const outBytes = kind === 'dotF32' ? 4 : 8;
    this.growMemory(who, outAt + total * outBytes);
    const buffer = kernel.memory.buffer;
    new Float32Array(buffer, queryAt, n * dim).set(queries.subarray(0, n * dim));
    const pairSlot = new Int32Array(buffer, slotAt, total);
    const pairQuery = new Int32Array(buffer, pairQueryAt, total);
    const pairOut = new Int32Array(buffer, pairOutAt, total);
    const rowBytes = dim * 4;
    const blockQueries = Math.max(1, Math.floor(RERANK_QUERY_BLOCK_BYTES / rowBytes));
    const nBlocks = Math.ceil(n / blockQueries);
    // Sorted by stored row (the kernel pairs two queries on one row); coarser groups of rows when
    // the counts would outnumber the pairs (few candidates over many rows).
    let shift = 0;
    while (nBlocks * ((this.capacityRows >> shift) + 1) > Math.max(4096, total)) shift++;
    const nGroups = (this.capacityRows >> shift) + 1;
    const bins = nBlocks * nGroups;
    if (this.counts.length < bins + 1) this.counts = new Int32Array(Math.max(bins + 1, 2 * this.counts.length));
    const counts = this.counts;
    counts.fill(0, 0, bins + 1);
    for (let q = 0; q < n; q++) {
      const base = Math.floor(q / blockQueries) * nGroups + 1;
      for (let j = starts[q]; j < starts[q + 1]; j++) counts[base + (cands[j] >> shift)]++;
    }
    for (let b = 1; b <= bins; b++) counts[b] += counts[b - 1];
    for (let q = 0; q < n; q++) {
      const base = Math.floor(q / blockQueries) * nGroups;
      for (let j = starts[q]; j < starts[q + 1]; j++) {
        const slot = cands[j];
        const at = counts[base + (slot >> shift)]++;
        pairSlot[at] = slot;
        pairQuery[at] = q;
        pairOut[at] = j;
      }
    }
    if (kind === 'dotF32') {
      kernel.pairDotsF32(0, dim, queryAt, slotAt, pairQueryAt, pairOutAt, total, outAt);
      out.set(new Float32Array(kernel.memory.buffer, outAt, total));
    } else {
      kernel.pairSqdists(0, dim, queryAt, slotAt, pairQueryAt, pairOutAt, total, outAt);
      out.set(new Float64Array(kernel.memory.buffer, outAt, total));
    }
  }
}

/**
 * One table as flat arrays: bucket b holds members[offsets[b] .. offsets[b+1])
 * (slots in increasing order); keyed through an open-addressing hash.
 */
export class FlatTable {
  /** Hash slots: the key, or −1 when empty. */
  private hashKeys: Int32Array;
  /** Hash slots: the bucket of that key. */
  private hashBuckets: Int32Array;
  private mask: number;
  /** Keys of the buckets, in order of first appearance. */
  readonly bucketKeys: Int32Array;
  /** Bucket b's members are members[offsets[b] .. offsets[b+1]). */
  readonly offsets: Int32Array;
  readonly members: Int32Array;

  /**
   * @param keys the slots' keys, key of slot s in table t at keys[s·L + t].
   * @param alive 1 for stored slots.
   * @param bucketOf scratch, at least `slots` long.
   */
  constructor(keys: Int32Array, alive: Uint8Array, slots: number, live: number, nTables: number, table: number, bucketOf: Int32Array) {
    let capacity = 16;
    let hashKeys = new Int32Array(capacity).fill(-1);
    let hashBuckets = new Int32Array(capacity);
    let count = 0;
    let bucketKeys = new Int32Array(64);
    let sizes = new Int32Array(64);
    for (let s = 0; s < slots; s++) {
      if (!alive[s]) continue;
      const key = keys[s * nTables + table];
      let h = hashOf(key) & (capacity - 1);
      while (hashKeys[h] !== -1 && hashKeys[h] !== key) h = (h + 1) & (capacity - 1);
      let b: number;
      if (hashKeys[h] === key) b = hashBuckets[h];
      else {
        b = count++;
        hashKeys[h] = key;
        hashBuckets[h] = b;
        if (b >= bucketKeys.length) {
          bucketKeys = grown(bucketKeys, 2 * bucketKeys.length);
          sizes = grown(sizes, 2 * sizes.length);
        }
        bucketKeys[b] = key;
        if (2 * count > capacity) {
          capacity *= 2;
          hashKeys = new Int32Array(capacity).fill(-1);
          hashBuckets = new Int32Array(capacity);
          for (let c = 0; c < count; c++) insert(hashKeys, hashBuckets, capacity - 1, bucketKeys[c], c);
        }
      }
      sizes[b]++;
      bucketOf[s] = b;
    }
    const offsets = new Int32Array(count + 1);
    for (let b = 0; b < count; b++) offsets[b + 1] = offsets[b] + sizes[b];
    const members = new Int32Array(live);
    const fill = offsets.slice(0, count);
    for (let s = 0; s < slots; s++) if (alive[s]) members[fill[bucketOf[s]]++] = s;
    this.hashKeys = hashKeys;
    this.hashBuckets = hashBuckets;
    this.mask = capacity - 1;
    this.bucketKeys = bucketKeys.slice(0, count);
    this.offsets = offsets;
    this.members = members;
  }

  /** Non-empty buckets. */
  get size(): number {
    return this.bucketKeys.length;
  }

  /** Bytes of the arrays. */
  get bytes(): number {
    return 4 * (this.hashKeys.length + this.hashBuckets.length + this.bucketKeys.length + this.offsets.length + this.members.length);
  }

  /** The bucket holding `key`, or −1. */
  bucket(key: number): number {
    const keys = this.hashKeys;
    const mask = this.mask;
    let h = hashOf(key) & mask;
    for (;;) {
      const k = keys[h];
      if (k === key) return this.hashBuckets[h];
      if (k === -1) return -1;
      h = (h + 1) & mask;
    }
  }
}

function hashOf(key: number): number {
  return Math.imul(key, 0x9e3779b1) >>> 7;
}

function insert(hashKeys: Int32Array, hashBuckets: Int32Array, mask: number, key: number, bucket: number): void {
  let h = hashOf(key) & mask;
  while (hashKeys[h] !== -1) h = (h + 1) & mask;
  hashKeys[h] = key;
  hashBuckets[h] = bucket;
}

function grown(array: Int32Array, length: number): Int32Array<ArrayBuffer> {
  const out = new Int32Array(length);
  out.set(array);
  return out;
}

/**
 * Typed arrays reused across queries, grown when a batch needs more (fresh
 * memory is slow to touch the first time: allocating megabytes per batch
 * costs more than the work done in them). Each call returns a view of the
 * first `length` entries; its contents are whatever the last user left.
 */
export class Scratch {
  private readonly arrays = new Map<string, Float32Array | Float64Array | Int32Array>();

  f32(name: string, length: number): Float32Array {
    return this.get(name, length, (n) => new Float32Array(n)) as Float32Array;
  }

  f64(name: string, length: number): Float64Array {
    return this.get(name, length, (n) => new Float64Array(n)) as Float64Array;
  }

  i32(name: string, length: number): Int32Array {
    return this.get(name, length, (n) => new Int32Array(n)) as Int32Array;
  }

  /** Bytes held. */
  get bytes(): number {
    let sum = 0;
    for (const array of this.arrays.values()) sum += array.byteLength;
    return sum;
  }

  private get(
    name: string,
    length: number,
    make: (n: number) => Float32Array | Float64Array | Int32Array,
  ): Float32Array | Float64Array | Int32Array {
    let array = this.arrays.get(name);
    if (array === undefined || array.length < length) {
      array = make(Math.max(length, Math.ceil(1.5 * (array?.length ?? 0)), 256));
      this.arrays.set(name, array);
    }
    return array.subarray(0, length);
  }
}
