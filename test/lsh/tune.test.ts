/**
 * LSHIndex.tune: on clustered data, the setting it picks reaches the target
 * recall@k on its held-out queries, an index built from it reaches about
 * that on fresh queries, a harder target costs more candidates, and bad
 * options are clear errors. No tensors leak.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { LSHIndex, exactSearch, recallAtK } from '../../src/lsh/index.js';
import { clusteredRows } from './lsh_helpers.js';

const [N, Q, DIM] = [3000, 100, 32];

describe('LSHIndex.tune [wasm]', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  it('picks a setting that reaches the target on held-out and on fresh queries', async () => {
    const before = tf.memory().numTensors;
    const all = clusteredRows(N + Q, DIM, 60, 0.3, 21);
    const data = tf.tensor2d(all.values.slice(0, N * DIM), [N, DIM]);
    const fresh = tf.tensor2d(all.values.slice(N * DIM), [Q, DIM]);
    const seen: number[] = [];
    const tuned = await LSHIndex.tune(data, { k: 10, targetRecall: 0.9, tables: [8], onTrial: (t) => seen.push(t.recall) });
    expect(tuned.reached).toBe(true);
    expect(tuned.best.recall).toBeGreaterThanOrEqual(0.9);
    expect(tuned.best.searched).toBeLessThan(0.5); // it does not just scan
    expect(tuned.trials.length).toBe(seen.length);
    expect(tuned.trials.every((t) => t.queriesPerSecond > 0 && t.recall >= 0 && t.recall <= 1)).toBe(true);
    expect(tuned.speedup).toBeCloseTo(tuned.best.queriesPerSecond / tuned.exactQueriesPerSecond, 6);
    // The fastest that reached the target.
    for (const t of tuned.trials) if (t.recall >= 0.9) expect(t.queriesPerSecond).toBeLessThanOrEqual(tuned.best.queriesPerSecond);

    const index = await tuned.build(data);
    expect(index.defaultProbes).toBe(tuned.best.probes);
    expect(index.family.nTables).toBe(tuned.best.nTables);
    const results = await index.query(fresh, 10);
    const truth = exactSearch(fresh, data, 10);
    const recall = recallAtK(
      results.map((r) => r.ids),
      truth.indices.arraySync(),
      10,
    );
    // Fresh queries are another sample than the held-out ones the target was reached on: a margin below 0.9.
    expect(recall).toBeGreaterThan(0.8);
    tf.dispose([truth.indices, truth.scores]);
    index.dispose(); // owns its family
    tf.dispose([data, fresh]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses bad options with clear messages', async () => {
    const data = tf.randomNormal([200, 8], 0, 1, 'float32', 1) as tf.Tensor2D;
    await expect(LSHIndex.tune(data, { targetRecall: 1.5 })).rejects.toThrow(/targetRecall must be a number in \(0, 1\], got number 1.5/);
    await expect(LSHIndex.tune(data, { families: ['klsh' as never] })).rejects.toThrow(/families must be a non-empty array of 'simhash' and 'rotation'/);
    await expect(LSHIndex.tune(data, { heldOut: 150 })).rejects.toThrow(/must keep at least max\(100, k\) rows besides the 150 held-out queries/);
    await expect(LSHIndex.tune(data, { k: 0 })).rejects.toThrow(/k must be a positive integer/);
    data.dispose();
  });
});
