/**
 * LSHIndex: recall@10 against the exact scan on clustered data while
 * examining a small share of it (every family), multi-probe, removal,
 * incremental adds, occupancy statistics, save/load, errors and leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  INDEX_FORMAT,
  KernelizedLSH,
  LSHIndex,
  RotationHash,
  SimHash,
  customKernel,
  exactSearch,
  medianGamma,
  rbfKernel,
  recallAtK,
  type HashFamily,
  type LSHIndexJSON,
  type QueryResult,
} from '../../src/lsh/index.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';
import { clusteredRows, cosineJS, toTensor } from './lsh_helpers.js';

const [N, Q, DIM, CLUSTERS] = [2000, 60, 32, 40];

/** Database rows 0..N−1 and fresh queries from the same clusters. */
function clusteredData(): { database: tf.Tensor2D; queries: tf.Tensor2D } {
  const all = toTensor(clusteredRows(N + Q, DIM, CLUSTERS, 0.3, 1));
  const [database, queries] = tf.split(all, [N, Q]) as [tf.Tensor2D, tf.Tensor2D];
  all.dispose();
  return { database, queries };
}

type FamilyMaker = (database: tf.Tensor2D) => HashFamily;

const families: [string, FamilyMaker][] = [
  ['SimHash b=10, L=8', () => new SimHash({ dim: DIM, nBits: 10, nTables: 8, seed: 1 })],
  ['RotationHash K=16, m=2, L=8', () => new RotationHash({ dim: DIM, nBuckets: 16, hashesPerTable: 2, nTables: 8, seed: 1 })],
  [
    'KernelizedLSH RBF b=10, L=8',
    (database) =>
      KernelizedLSH.fit(database, { kernel: rbfKernel({ gamma: medianGamma(database) }), nAnchors: 200, nBits: 10, nTables: 8, seed: 1 }),
  ],
];

async function recallOf(index: LSHIndex, database: tf.Tensor2D, queries: tf.Tensor2D, probes = 0) {
  const results = await index.query(queries, 10, { probes });
  const truth = exactSearch(queries, database, 10, { similarity: index.similarity });
  const trueIds = truth.indices.arraySync();
  tf.dispose([truth.indices, truth.scores]);
  return {
    results,
    recall: recallAtK(
      results.map((r) => r.ids),
      trueIds,
      10,
    ),
    searched: results.reduce((s, r) => s + r.candidates, 0) / (Q * index.size),
  };
}

describeBackends('LSHIndex', () => {
  it.each(families)('%s: recall@10 ≥ 0.9 against the exact scan, examining at most 10 percent of the data', async (_, make) => {
    const { database, queries } = clusteredData();
    const family = make(database);
    const index = new LSHIndex(family);
    await index.add(database);
    const { recall, searched, results } = await recallOf(index, database, queries);
    expect(recall).toBeGreaterThanOrEqual(0.9);
    expect(searched).toBeLessThanOrEqual(0.1);
    expect(searched).toBeGreaterThan(0);
    // Best first, with the true similarity as the score.
    const dv = database.dataSync();
    const qv = queries.dataSync();
    results.forEach((r, i) => {
      for (let j = 1; j < r.scores.length; j++) expect(r.scores[j]).toBeLessThanOrEqual(r.scores[j - 1]);
      r.ids.forEach((id, j) => {
        const slot = id as number;
        const expected =
          index.similarity === 'cosine'
            ? cosineJS(qv, i * DIM, dv, slot * DIM, DIM)
            : index.similarity.pair!(qv as Float32Array, i * DIM, dv as Float32Array, slot * DIM, DIM);
        expect(r.scores[j]).toBeCloseTo(expected, 5);
      });
    });
    index.dispose();
    family.dispose();
    tf.dispose([database, queries]);
  });

  it('multi-probe raises recall by looking in more buckets', async () => {
    const { database, queries } = clusteredData();
    const family = new SimHash({ dim: DIM, nBits: 14, nTables: 2, seed: 2 });
    const index = new LSHIndex(family);
    await index.add(database);
    const plain = await recallOf(index, database, queries, 0);
    const probed = await recallOf(index, database, queries, 24);
    expect(plain.recall).toBeLessThan(0.8);
    expect(probed.recall - plain.recall).toBeGreaterThan(0.1);
    expect(probed.searched).toBeGreaterThan(plain.searched);
    plain.results.forEach((r) => expect(r.buckets).toBe(2));
    probed.results.forEach((r) => expect(r.buckets).toBe(2 + 24));
    index.dispose();
    family.dispose();
    tf.dispose([database, queries]);
  });

  it.each(families)('%s: probing only adds buckets to the home ones', async (_, make) => {
    const { database, queries } = clusteredData();
    const family = make(database);
    const index = new LSHIndex(family);
    await index.add(database);
    // k = N returns every candidate, so the candidate sets can be compared.
    const plain = await index.query(queries, N);
    const probed = await index.query(queries, N, { probes: 6 });
    plain.forEach((r, i) => {
      expect(r.ids.length).toBe(r.candidates);
      const withProbes = new Set(probed[i].ids);
      r.ids.forEach((id) => expect(withProbes.has(id)).toBe(true));
      expect(probed[i].candidates).toBeGreaterThanOrEqual(r.candidates);
    });
    expect(probed.reduce((s, r) => s + r.candidates, 0)).toBeGreaterThan(plain.reduce((s, r) => s + r.candidates, 0));
    index.dispose();
    family.dispose();
    tf.dispose([database, queries]);
  });

  it('a kernel without a JavaScript pair re-ranks through tensors with the same answers', async () => {
    const { database, queries } = clusteredData();
    const family = new SimHash({ dim: DIM, nBits: 8, nTables: 4, seed: 3 });
    const rbf = rbfKernel({ gamma: 0.02 });
    const tensorOnly = customKernel((a, b) => rbf.matrix(a, b), { name: 'rbf-tensors' });
    const withPair = new LSHIndex(family, { similarity: rbf });
    const withoutPair = new LSHIndex(family, { similarity: tensorOnly });
    await withPair.add(database);
    await withoutPair.add(database);
    const a = await withPair.query(queries, 10);
    const b = await withoutPair.query(queries, 10);
    a.forEach((r, i) => {
      expect(b[i].ids).toEqual(r.ids);
      expect(b[i].candidates).toBe(r.candidates);
      r.scores.forEach((s, j) => expect(b[i].scores[j]).toBeCloseTo(s, 5));
    });
    family.dispose();
    tf.dispose([database, queries]);
  });

  it('adds incrementally with ids, removes, and re-adds', async () => {
    const { database, queries } = clusteredData();
    const family = new SimHash({ dim: DIM, nBits: 6, nTables: 4, seed: 4 });
    const ids = Array.from({ length: N }, (_, i) => `song-${i}`);
    const once = new LSHIndex(family);
    await once.add(database, ids);
    const twice = new LSHIndex(family);
    const [first, second] = tf.split(database, [700, N - 700]) as tf.Tensor2D[];
    await twice.add(first, ids.slice(0, 700));
    await twice.add(second, ids.slice(700));
    expect(await twice.query(queries, 10)).toEqual(await once.query(queries, 10));

    const before = await once.query(queries, 10);
    const gone = before[0].ids.slice(0, 3);
    expect(once.remove([...gone, 'no-such-id'])).toBe(3);
    expect(once.size).toBe(N - 3);
    gone.forEach((id) => expect(once.has(id)).toBe(false));
    const after = await once.query(queries, 10);
    after.forEach((r) => gone.forEach((id) => expect(r.ids).not.toContain(id)));
    expect(after[0].ids.slice(0, 7)).toEqual(before[0].ids.slice(3, 10));
    expect(after[0].candidates).toBe(before[0].candidates - 3);

    const row = tf.slice(database, [Number((gone[0] as string).slice(5)), 0], [1, DIM]) as tf.Tensor2D;
    await once.add(row, [gone[0]]);
    expect((await once.query(queries, 10))[0].ids[0]).toBe(gone[0]);
    expect(once.size).toBe(N - 2);

    const auto = new LSHIndex(family);
    await auto.add(first);
    await auto.add(second);
    expect(auto.ids()).toEqual(Array.from({ length: N }, (_, i) => i));
    family.dispose();
    tf.dispose([database, queries, first, second, row]);
  });

  it('reports bucket occupancy', async () => {
    const x = randomTensor([4000, 16], 5) as tf.Tensor2D;
    const oneBit = new SimHash({ dim: 16, nBits: 1, nTables: 3, seed: 5 });
    const index = new LSHIndex(oneBit);
    await index.add(x);
    const stats = index.stats();
    expect(stats.size).toBe(4000);
    expect(stats.keyBits).toBe(1);
    for (const table of stats.tables) {
      expect(table.buckets).toBe(2); // a hyperplane through the origin splits symmetric data in two…
      expect(table.balance).toBeGreaterThan(0.99); // …about evenly
      expect(table.collisionShare).toBeCloseTo(0.5, 2);
      expect(table.meanSize).toBe(2000);
      expect(table.largest).toBeGreaterThanOrEqual(2000);
      expect(table.largest).toBeLessThan(2150);
    }
    const same = tf.tidy(() => tf.tile(tf.slice(x, [0, 0], [1, 16]), [50, 1])) as tf.Tensor2D;
    const lumped = new LSHIndex(new SimHash({ dim: 16, nBits: 12, nTables: 2, seed: 6 }));
    await lumped.add(same);
    expect(lumped.stats().mean).toEqual({ buckets: 1, largest: 50, meanSize: 50, collisionShare: 1, balance: 0 });
    oneBit.dispose();
    lumped.family.dispose();
    tf.dispose([x, same]);
  });

  it.each(families)('%s: a saved index answers exactly as before', async (_, make) => {
    const { database, queries } = clusteredData();
    const family = make(database);
    const index = new LSHIndex(family);
    await index.add(database);
    index.remove([5, 17, 1999]);
    const text = JSON.stringify(index.toJSON());
    const loaded = LSHIndex.fromJSON(JSON.parse(text) as LSHIndexJSON);
    expect(loaded.size).toBe(N - 3);
    // Occupancy is the same; memory differs (the original grew its arrays while adding, the loaded one is sized exactly).
    const { memory: _loadedMemory, ...loadedOccupancy } = loaded.stats();
    const { memory: _savedMemory, ...savedOccupancy } = index.stats();
    expect(loadedOccupancy).toEqual(savedOccupancy);
    for (const probes of [0, 5]) {
      const expected: QueryResult[] = await index.query(queries, 10, { probes });
      expect(await loaded.query(queries, 10, { probes })).toEqual(expected);
    }
    // Adding continues the default ids where the saved index stopped.
    const extra = tf.slice(queries, [0, 0], [2, DIM]) as tf.Tensor2D;
    await loaded.add(extra);
    expect(loaded.ids().slice(-2)).toEqual([N, N + 1]);
    loaded.dispose();
    index.dispose();
    family.dispose();
    tf.dispose([database, queries, extra]);
  });

  it('a saved index with a custom kernel needs it back', async () => {
    const x = randomTensor([50, 4], 7) as tf.Tensor2D;
    const family = new SimHash({ dim: 4, nBits: 3, seed: 7 });
    const kernelFn = (a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D => tf.tidy(() => tf.matMul(a, tf.transpose(b)));
    const index = new LSHIndex(family, { similarity: customKernel(kernelFn, { name: 'mine' }) });
    await index.add(x);
    const json = index.toJSON();
    expect(() => LSHIndex.fromJSON(json)).toThrow(/kernel 'mine' is not built in/);
    const loaded = LSHIndex.fromJSON(json, { kernels: { mine: kernelFn } });
    expect(await loaded.query(x, 3)).toEqual(await index.query(x, 3));
    loaded.dispose();
    family.dispose();
    x.dispose();
  });

  it('rejects bad input with clear messages', async () => {
    const family = new SimHash({ dim: 4, nBits: 3, seed: 8 });
    const index = new LSHIndex(family);
    const x = randomTensor([3, 4], 8) as tf.Tensor2D;
    const wrong = randomTensor([3, 5], 8) as tf.Tensor2D;
    const bad = tf.tensor2d([[1, 2, NaN, 4]]);
    await expect(index.add(wrong)).rejects.toThrow(/LSHIndex.add: vectors must have D = 4 columns/);
    await expect(index.add(x, ['a', 'b'])).rejects.toThrow(/LSHIndex.add: ids must be an array of N = 3 ids \(one per row\), got an array of length 2/);
    await expect(index.add(x, ['a', 'b', 'a'])).rejects.toThrow(/id "a" is already stored \(ids must be unique\)/);
    await expect(index.add(x, ['a', null, 'c'] as unknown as string[])).rejects.toThrow(/ids must be strings or finite numbers, got null at 1/);
    await expect(index.add(bad)).rejects.toThrow(/LSHIndex.add: vectors must be finite, got NaN in row 0; clean or drop that row/);
    await index.add(x, ['a', 'b', 'c']);
    await expect(index.add(x, ['c', 'd', 'e'])).rejects.toThrow(/id "c" is already stored/);
    await expect(index.query(x, 0)).rejects.toThrow(/LSHIndex.query: k must be a positive integer, got 0/);
    await expect(index.query(x, 2, { probes: -1 })).rejects.toThrow(/probes must be a non-negative integer, got -1/);
    await expect(index.query(wrong, 2)).rejects.toThrow(/LSHIndex.query: queries must have D = 4 columns/);
    expect(() => new LSHIndex({} as HashFamily)).toThrow(/LSHIndex: family must be a hash family \(new SimHash/);
    expect(() => new LSHIndex(family, { similarity: 'euclid' as 'cosine' })).toThrow(/similarity must be 'cosine' or a Kernel/);
    const json = index.toJSON();
    expect(() => LSHIndex.fromJSON({ ...json, format: 'other' } as unknown as LSHIndexJSON)).toThrow(
      new RegExp(`expected a saved index with format '${INDEX_FORMAT}'`),
    );
    expect(() => LSHIndex.fromJSON({ ...json, vectors: json.vectors.slice(0, -8) })).toThrow(
      /vectors must hold 12 4-byte values \(\[size, dim\] = \[3, 4\]\), got \d+ bytes; the saved JSON is truncated or edited/,
    );
    expect(() => LSHIndex.fromJSON({ ...json, family: { ...json.family, kind: 'minhash' } } as unknown as LSHIndexJSON)).toThrow(
      /familyFromJSON: kind must be 'simhash', 'rotation' or 'klsh', got "minhash"/,
    );
    family.dispose();
    tf.dispose([x, wrong, bad]);
  });

  it('leaks no tensors over a whole life: add, query with probes, remove, save, load, dispose', async () => {
    const x = randomTensor([300, 8], 9) as tf.Tensor2D;
    await expectNoLeaks(async () => {
      for (const family of [
        new SimHash({ dim: 8, nBits: 6, nTables: 3, seed: 1 }),
        new RotationHash({ dim: 8, nBuckets: 4, hashesPerTable: 3, nTables: 3, seed: 1 }),
        KernelizedLSH.fit(x, { nAnchors: 50, nBits: 6, nTables: 3, seed: 1 }),
      ]) {
        const index = new LSHIndex(family);
        await index.add(x);
        await index.query(x, 5, { probes: 4 });
        index.remove([0, 1]);
        const loaded = LSHIndex.fromJSON(index.toJSON());
        await loaded.query(x, 5);
        loaded.dispose();
        index.dispose();
        family.dispose();
      }
    });
    x.dispose();
  });
});
