/**
 * LSHIndex's batched query path (flat tables, visited bitmap, re-ranking in
 * WebAssembly, partial top-k) against a plain-loop reference of the query
 * semantics: buckets as Maps of slot lists, candidates = the union of the
 * home buckets and the multi-probe buckets (probeSequence), scores with the
 * library's JavaScript arithmetic (dot, rbfKernel's pair), rounded to f32,
 * top k by score with ties to the earlier-stored vector. Ids, scores,
 * candidate and bucket counts must be identical, with and without wasm,
 * across chunk boundaries, removals and adds; stats() reports memory.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import {
  KernelizedLSH,
  LSHIndex,
  RotationHash,
  SimHash,
  dot,
  medianGamma,
  probeSequence,
  rbfKernel,
  type HashFamily,
  type LSHId,
  type QueryResult,
  type Similarity,
} from '../../src/lsh/index.js';
import { RERANK_QUERY_BLOCK_BYTES } from '../../src/lsh/store.js';
import { expectNoLeaks } from '../helpers.js';
import { clusteredRows } from './lsh_helpers.js';

const [N, Q, DIM] = [1500, 40, 30]; // DIM not a multiple of 4: the kernel's scalar tail runs

/** The reference: what LSHIndex.query answers, in plain loops over Maps. */
function referenceQuery(
  family: HashFamily,
  similarity: Similarity,
  stored: { values: Float32Array; ids: LSHId[] },
  queries: tf.Tensor2D,
  k: number,
  probes: number,
): QueryResult[] {
  const { nTables: L, digitsPerKey: M, digitBase: A, dim } = family;
  const n = stored.ids.length;
  const x = tf.tensor2d(stored.values, [n, dim]);
  const storedKeys = tf.tidy(() => family.hash(x)).dataSync();
  x.dispose();
  const tables = Array.from({ length: L }, () => new Map<number, number[]>());
  for (let s = 0; s < n; s++) {
    for (let t = 0; t < L; t++) {
      const key = storedKeys[s * L + t];
      const bucket = tables[t].get(key) ?? [];
      bucket.push(s);
      tables[t].set(key, bucket);
    }
  }
  const queryValues = queries.dataSync() as Float32Array;
  const keys = tf.tidy(() => family.hash(queries)).dataSync();
  const scores = probes > 0 ? tf.tidy(() => family.digitScores(queries)).dataSync() : null;
  const norm = (v: Float32Array, at: number): number => Math.sqrt(dot(v, at, v, at, dim));
  const score = (i: number, s: number): number => {
    if (similarity === 'cosine') {
      const scale = norm(queryValues, i * dim) * Math.fround(norm(stored.values, s * dim));
      return Math.fround(scale > 0 ? dot(queryValues, i * dim, stored.values, s * dim, dim) / scale : 0);
    }
    return Math.fround((similarity.pair as NonNullable<typeof similarity.pair>)(queryValues, i * dim, stored.values, s * dim, dim));
  };
  return Array.from({ length: queries.shape[0] }, (_, i) => {
    const found = new Set<number>();
    let buckets = L;
    for (let t = 0; t < L; t++) for (const s of tables[t].get(keys[i * L + t]) ?? []) found.add(s);
    if (scores !== null) {
      for (const probe of probeSequence(scores, i * L * M * A, L, M, A, probes)) {
        if (probe.key === keys[i * L + probe.table]) continue;
        for (const s of tables[probe.table].get(probe.key) ?? []) found.add(s);
        buckets++;
      }
    }
    const ranked = [...found].map((s) => ({ s, v: score(i, s) })).sort((a, b) => b.v - a.v || a.s - b.s).slice(0, k);
    return { ids: ranked.map((r) => stored.ids[r.s]), scores: ranked.map((r) => r.v), candidates: found.size, buckets };
  });
}

// The query path after hashing is plain JavaScript and wasm whatever the backend: one backend suffices.
describe('LSHIndex batched query path [wasm]', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });
  const all = clusteredRows(N + Q, DIM, 30, 0.4, 7);
  const values = all.values.slice(0, N * DIM);
  const queryValues = all.values.slice(N * DIM);

  const cases: [string, () => { family: HashFamily; similarity: Similarity }][] = [
    ['SimHash, cosine', () => ({ family: new SimHash({ dim: DIM, nBits: 9, nTables: 6, seed: 3 }), similarity: 'cosine' })],
    [
      'RotationHash, cosine',
      () => ({ family: new RotationHash({ dim: DIM, nBuckets: 8, hashesPerTable: 2, nTables: 5, seed: 3 }), similarity: 'cosine' }),
    ],
    [
      'KLSH, built-in RBF',
      () => {
        const database = tf.tensor2d(values, [N, DIM]);
        const kernel = rbfKernel({ gamma: medianGamma(database) });
        const family = KernelizedLSH.fit(database, { kernel, nAnchors: 100, nBits: 9, nTables: 6, seed: 3 });
        database.dispose();
        return { family, similarity: kernel };
      },
    ],
  ];

  for (const [name, make] of cases) {
    it(`${name}: the same ids, scores, candidates and buckets as the plain-loop reference, with and without wasm`, async () => {
      const { family, similarity } = make();
      const database = tf.tensor2d(values, [N, DIM]);
      const queries = tf.tensor2d(queryValues, [Q, DIM]);
      const ids = Array.from({ length: N }, (_, i) => (i % 3 === 0 ? `row${i}` : i));
      for (const wasm of [true, false]) {
        const index = new LSHIndex(family, { similarity, wasm });
        expect(index.wasm).toBe(wasm);
        await index.add(database, ids);
        for (const probes of [0, 7]) {
          const got = await index.query(queries, 10, { probes });
          const want = referenceQuery(family, similarity, { values, ids }, queries, 10, probes);
          expect(got).toEqual(want);
        }
        // Remove a third, then add some back: the tables are rebuilt and still agree.
        const removed = ids.filter((_, i) => i % 3 === 1);
        index.remove(removed);
        const keep = ids.map((id, i) => (i % 3 === 1 ? -1 : i)).filter((i) => i >= 0);
        const readd = keep.length;
        const extra = tf.tensor2d(values.slice(0, 100 * DIM), [100, DIM]);
        await index.add(extra, Array.from({ length: 100 }, (_, i) => `extra${i}`));
        const storedValues = new Float32Array((readd + 100) * DIM);
        keep.forEach((row, r) => storedValues.set(values.subarray(row * DIM, (row + 1) * DIM), r * DIM));
        storedValues.set(values.subarray(0, 100 * DIM), readd * DIM);
        const storedIds = [...keep.map((i) => ids[i]), ...Array.from({ length: 100 }, (_, i) => `extra${i}`)];
        const got = await index.query(queries, 10, { probes: 5 });
        expect(got).toEqual(referenceQuery(family, similarity, { values: storedValues, ids: storedIds }, queries, 10, 5));
        extra.dispose();
        index.dispose();
      }
      family.dispose();
      tf.dispose([database, queries]);
    });
  }

  it('near ties (copies, scaled copies, last-bit changes): the f32 first stage never changes the answer', async () => {
    // Every row has 7 twins: itself, scaled by 3 and by 1/7, and with one coordinate nudged by a few ulps,
    // so many cosines are equal or differ in the last bits, where f32 sums disagree with the exact ones.
    const base = values.slice(0, 150 * DIM);
    const rows = new Float32Array(150 * 8 * DIM);
    for (let r = 0; r < 150; r++) {
      for (let c = 0; c < 8; c++) {
        for (let d = 0; d < DIM; d++) {
          let v = base[r * DIM + d];
          if (c === 1) v *= 3;
          if (c === 2) v /= 7;
          if (c >= 3 && d === c) v = v * (1 + (c - 2) * 2 ** -22);
          rows[(r * 8 + c) * DIM + d] = v;
        }
      }
    }
    const family = new SimHash({ dim: DIM, nBits: 4, nTables: 3, seed: 4 });
    const index = new LSHIndex(family);
    expect(index.wasm).toBe(true);
    const database = tf.tensor2d(rows, [1200, DIM]);
    await index.add(database);
    const queries = tf.tensor2d(rows.slice(0, 60 * DIM), [60, DIM]);
    const ids = Array.from({ length: 1200 }, (_, i) => i);
    for (const k of [1, 3, 10]) {
      expect(await index.query(queries, k, { probes: 3 })).toEqual(referenceQuery(family, 'cosine', { values: rows, ids }, queries, k, 3));
    }
    tf.dispose([database, queries]);
    index.dispose();
    family.dispose();
  });

  it('re-ranks across several query blocks of the pair order (long rows), cosine and RBF, as the reference', async () => {
    // Rows of 2102 floats: 3 blocks of 31 queries (RERANK_QUERY_BLOCK_BYTES / 8408 bytes), the kernel's blocks
    // of 16, a leftover group of 4 and a scalar tail of 2; many queries share rows (the kernel's two-query path).
    const dim = 2102;
    const rowsPerBlock = Math.floor(RERANK_QUERY_BLOCK_BYTES / (4 * dim));
    const q = 2 * rowsPerBlock + 9;
    const data = clusteredRows(300 + q, dim, 6, 0.5, 11).values;
    const stored = data.slice(0, 300 * dim);
    const database = tf.tensor2d(stored, [300, dim]);
    const queries = tf.tensor2d(data.slice(300 * dim), [q, dim]);
    const ids = Array.from({ length: 300 }, (_, i) => i);
    const kernel = rbfKernel({ gamma: medianGamma(database) });
    for (const similarity of ['cosine', kernel] as Similarity[]) {
      const family = new SimHash({ dim, nBits: 3, nTables: 3, seed: 5 });
      const index = new LSHIndex(family, { similarity });
      await index.add(database);
      expect(await index.query(queries, 7, { probes: 2 })).toEqual(referenceQuery(family, similarity, { values: stored, ids }, queries, 7, 2));
      index.dispose();
      family.dispose();
    }
    tf.dispose([database, queries]);
  });

  it('answers a batch longer than one re-rank chunk (1024 queries) as the same queries one by one', async () => {
    const family = new SimHash({ dim: DIM, nBits: 8, nTables: 4, seed: 9 });
    const index = new LSHIndex(family);
    const database = tf.tensor2d(values, [N, DIM]);
    await index.add(database);
    const batch = tf.tensor2d(values.slice(0, 1100 * DIM), [1100, DIM]);
    const together = await index.query(batch, 5, { probes: 2 });
    const picks = [0, 1023, 1024, 1099];
    for (const i of picks) {
      const one = tf.slice(batch, [i, 0], [1, DIM]) as tf.Tensor2D;
      expect(together[i]).toEqual((await index.query(one, 5, { probes: 2 }))[0]);
      one.dispose();
    }
    expect(together[1024].ids[0]).toBe(1024); // a stored row finds itself
    tf.dispose([database, batch]);
    family.dispose();
  });

  it('stats() reports the memory held per vector: rows, keys and flat tables', async () => {
    await expectNoLeaks(async () => {
      const family = new SimHash({ dim: DIM, nBits: 10, nTables: 8, seed: 2 });
      const index = new LSHIndex(family);
      const database = tf.tensor2d(values, [N, DIM]);
      await index.add(database);
      const { memory } = index.stats();
      expect(memory.vectorBytes).toBeGreaterThanOrEqual(N * DIM * 4);
      expect(memory.keyBytes).toBeGreaterThanOrEqual(N * 8 * 4);
      expect(memory.tableBytes).toBeGreaterThanOrEqual(N * 8 * 4); // one member entry per vector and table, at least
      const sum = memory.vectorBytes + memory.keyBytes + memory.tableBytes + memory.otherBytes;
      expect(memory.bytesPerVector).toBeCloseTo(sum / N, 6);
      // Amortised growth at most doubles the rows and keys; the hashes are sized by the buckets.
      expect(memory.bytesPerVector).toBeLessThan(2 * (DIM * 4 + 8 * 4) + 8 * 4 * 6 + 64);
      index.dispose();
      family.dispose();
      database.dispose();
    });
  });
});

describe('LSHIndex hashing in blocks [wasm]', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });
  it('adds more rows than one hashing block (HASH_BLOCK_FLOATS) with the keys of one call', async () => {
    // K = 256, m = 1, L = 16: 4096 score floats a row, so 4096 rows a block; 10,000 rows take three blocks.
    const family = new RotationHash({ dim: 8, nBuckets: 256, nTables: 16, seed: 2 });
    const rows = clusteredRows(10_000, 8, 50, 0.3, 5);
    const data = tf.tensor2d(rows.values, [10_000, 8]);
    const index = new LSHIndex(family);
    await index.add(data);
    const whole = tf.tidy(() => family.hash(data)).dataSync();
    const saved = index.toJSON();
    const keys = new Int32Array(Buffer.from(saved.keys, 'base64').buffer.slice(0));
    expect(Array.from(keys)).toEqual(Array.from(whole));
    index.dispose();
    family.dispose();
    data.dispose();
  });
});
