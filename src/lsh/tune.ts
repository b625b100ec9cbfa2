/**
 * Choosing an index's parameters for a target recall@k, as FALCONN's and
 * FAISS's auto-tuning do: on a sample of the data and held-out queries,
 * build candidate settings (family, key width, tables), raise the probes
 * until the recall@k against an exact scan reaches the target, and keep the
 * fastest setting that does.
 *
 * Legend: n sample rows, D vector size, L tables, k neighbours.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertPositiveInteger } from '../validate.js';
import { describeValue, sampleWithoutReplacement } from './encoding.js';
import { checkVectors, type HashFamily } from './family.js';
import { exactSearch, recallAtK } from './exact.js';
import { LSHIndex, type LSHIndexOptions } from './lsh_index.js';
import { RotationHash } from './rotation_hash.js';
import { SimHash } from './simhash.js';
import { uniformStream, type Seed } from '../random.js';

/** Probes stop rising once a query re-ranks this share of the indexed rows. */
const MAX_SEARCHED = 0.5;

/** Options of {@link LSHIndex.tune}. */
export interface TuneOptions {
  /** Neighbours per query the recall is measured at. Default 10. */
  k?: number;
  /** recall@k to reach, in (0, 1]. Default 0.9. */
  targetRecall?: number;
  /**
   * Held-out queries, float32 [Q, D]. Default: `heldOut` rows taken from the
   * sample (evenly spaced) and searched against the rest.
   */
  queries?: tf.Tensor2D;
  /** Rows held out of the sample as queries (a seeded random choice) when `queries` is not given. Default min(500, n/10). */
  heldOut?: number;
  /** Families tried: 'simhash' and/or 'rotation' (cosine similarity). Default both. */
  families?: readonly ('simhash' | 'rotation')[];
  /** Table counts tried. Default [8, 16, 32]. */
  tables?: readonly number[];
  /** Largest probe count tried per query (probes grow ×4 from L/2). Default 64·L. */
  maxProbes?: number;
  /** Seed of the families. Default 1. */
  seed?: Seed;
  /** Called with each measured setting (for progress). Default none. */
  onTrial?: (trial: TuneTrial) => void;
}

/** One measured setting. */
export interface TuneTrial {
  family: 'simhash' | 'rotation';
  /** SimHash: b. */
  nBits?: number;
  /** Rotation hash: K and m. */
  nBuckets?: number;
  hashesPerTable?: number;
  nTables: number;
  probes: number;
  /** recall@k on the held-out queries. */
  recall: number;
  /** Mean share of the indexed rows re-ranked per query. */
  searched: number;
  /** Held-out queries answered per second (whole batch). */
  queriesPerSecond: number;
  /** Milliseconds to hash and store the indexed rows. */
  buildMs: number;
}

/** What {@link LSHIndex.tune} found. */
export interface TuneResult {
  /** The fastest setting that reached the target; if none did, the one with the best recall. */
  best: TuneTrial;
  /** Whether `best` reached the target recall. */
  reached: boolean;
  /** The exact scan's queries per second on the same queries and rows (cosine). */
  exactQueriesPerSecond: number;
  /** best.queriesPerSecond over the exact scan's. */
  speedup: number;
  /** Every setting measured, in the order tried. */
  trials: TuneTrial[];
  /** The family of `best`, new (the caller owns it). */
  makeFamily(): HashFamily;
  /**
   * A new index with `best`'s family and its probes as the default, holding
   * `data` (often the whole data set the sample came from).
   * @param data float32 [N, D].
   */
  build(data: tf.Tensor2D, options?: LSHIndexOptions): Promise<LSHIndex>;
}

/**
 * Picks family, key width, tables and probes for a target recall@k.
 *
 * The key width follows the sample size: keys of about log2(n) − 4 and
 * log2(n) − 7 bits (buckets of ~16 and ~128 rows), so tune on the data
 * itself, or a sample as large as what the index will hold. For each
 * family × width × tables the index is built once; probes are raised (0,
 * then L/2 × 4^i up to `maxProbes`) until recall@k reaches the target
 * or half the rows are re-ranked, timing the whole held-out batch (the
 * faster of two runs) each time.
 * @param sample float32 [n, D], n ≥ 100.
 */
export async function tuneIndex(sample: tf.Tensor2D, options: TuneOptions = {}): Promise<TuneResult> {
  const who = 'LSHIndex.tune';
  checkVectors(who, 'sample', sample);
  if (options === null || typeof options !== 'object') {
    throw new Error(`${who}: options must be an object like { k: 10, targetRecall: 0.9 }, got ${describeValue(options)}`);
  }
  const [n, dim] = sample.shape;
  const k = options.k ?? 10;
  assertPositiveInteger(who, 'k', k);
  const target = options.targetRecall ?? 0.9;
  if (typeof target !== 'number' || !(target > 0 && target <= 1)) {
    throw new Error(`${who}: targetRecall must be a number in (0, 1], got ${describeValue(target)}`);
  }
  const families = options.families ?? ['simhash', 'rotation'];
  if (!Array.isArray(families) || families.length === 0 || families.some((f) => f !== 'simhash' && f !== 'rotation')) {
    throw new Error(`${who}: families must be a non-empty array of 'simhash' and 'rotation', got ${describeValue(families)}`);
  }
  const tables = options.tables ?? [8, 16, 32];
  if (!Array.isArray(tables) || tables.length === 0) {
    throw new Error(`${who}: tables must be a non-empty array of positive integers, got ${describeValue(tables)}`);
  }
  tables.forEach((L) => assertPositiveInteger(who, 'tables[i]', L));
  const seed = options.seed ?? 1;

  let database: tf.Tensor2D;
  let queries: tf.Tensor2D;
  let ownsSplit = false;
  if (options.queries !== undefined) {
    checkVectors(who, 'queries', options.queries, dim);
    database = sample;
    queries = options.queries;
  } else {
    const heldOut = options.heldOut ?? Math.min(500, Math.floor(n / 10));
    assertPositiveInteger(who, 'heldOut', heldOut);
    if (n - heldOut < Math.max(100, k)) {
      throw new Error(`${who}: the sample must keep at least max(100, k) rows besides the ${heldOut} held-out queries, got ${n} rows; pass a larger sample`);
    }
    // A seeded random choice (evenly spaced rows can line up with an order in the data).
    const isQuery = new Uint8Array(n);
    for (const row of sampleWithoutReplacement(n, heldOut, uniformStream(seed, 'tune-held-out'))) isQuery[row] = 1;
    const queryRows: number[] = [];
    const dataRows: number[] = [];
    for (let i = 0; i < n; i++) (isQuery[i] ? queryRows : dataRows).push(i);
    [database, queries] = tf.tidy(() => [
      tf.gather(sample, tf.tensor1d(dataRows, 'int32')) as tf.Tensor2D,
      tf.gather(sample, tf.tensor1d(queryRows, 'int32')) as tf.Tensor2D,
    ]);
    ownsSplit = true;
  }
  const size = database.shape[0];
  if (size < k) throw new Error(`${who}: k must be at most the rows indexed (${size}), got ${k}`);

  try {
    const q = queries.shape[0];
    const exactStart = performance.now();
    const exact = exactSearch(queries, database, k);
    const truth = (await exact.indices.array()) as number[][];
    const exactQueriesPerSecond = (1000 * q) / (performance.now() - exactStart);
    tf.dispose([exact.indices, exact.scores]);

    const bits = Math.log2(size);
    const widths = [...new Set([Math.round(bits - 4), Math.round(bits - 7)].map((b) => Math.min(30, Math.max(2, b))))];
    const maxProbesFor = (L: number): number => options.maxProbes ?? 64 * L;
    const trials: TuneTrial[] = [];
    const makers: { describe: Omit<TuneTrial, 'nTables' | 'probes' | 'recall' | 'searched' | 'queriesPerSecond' | 'buildMs'>; make: (L: number) => HashFamily }[] = [];
    for (const width of widths) {
      if (families.includes('simhash')) {
        makers.push({ describe: { family: 'simhash', nBits: width }, make: (L) => new SimHash({ dim, nBits: width, nTables: L, seed }) });
      }
      if (families.includes('rotation')) {
        // K = 2^a with m = width / a hashes per key; the largest K that still splits the width.
        for (const a of [4, 6]) {
          const m = Math.max(1, Math.round(width / a));
          const K = 2 ** Math.max(1, Math.round(width / m));
          if (makers.some((x) => x.describe.family === 'rotation' && x.describe.nBuckets === K && x.describe.hashesPerTable === m)) continue;
          makers.push({
            describe: { family: 'rotation', nBuckets: K, hashesPerTable: m },
            make: (L) => new RotationHash({ dim, nBuckets: K, hashesPerTable: m, nTables: L, seed }),
          });
        }
      }
    }
    for (const maker of makers) {
      for (const L of tables) {
        const family = maker.make(L);
        const index = new LSHIndex(family);
        try {
          const buildStart = performance.now();
          await index.add(database);
          const buildMs = performance.now() - buildStart;
          const probeSteps = [0];
          for (let p = Math.max(1, Math.floor(L / 2)); p <= maxProbesFor(L); p *= 4) probeSteps.push(p);
          for (const probes of probeSteps) {
            const warm = tf.slice(queries, [0, 0], [Math.min(q, 8), dim]) as tf.Tensor2D;
            await index.query(warm, k, { probes });
            warm.dispose();
            // The faster of two runs: on a shared machine the slower one mostly measures the others.
            let ms = Infinity;
            let results: Awaited<ReturnType<LSHIndex['query']>> = [];
            for (let run = 0; run < 2; run++) {
              const start = performance.now();
              results = await index.query(queries, k, { probes });
              ms = Math.min(ms, performance.now() - start);
            }
            const trial: TuneTrial = {
              ...maker.describe,
              nTables: L,
              probes,
              recall: recallAtK(
                results.map((r) => r.ids as number[]),
                truth,
                k,
              ),
              searched: results.reduce((s, r) => s + r.candidates, 0) / (q * size),
              queriesPerSecond: (1000 * q) / ms,
              buildMs,
            };
            trials.push(trial);
            options.onTrial?.(trial);
            // Reached, or searching most of the data already (a scan does that better).
            if (trial.recall >= target || trial.searched > MAX_SEARCHED) break;
          }
        } finally {
          index.dispose();
          family.dispose();
        }
      }
    }
    const reachedTrials = trials.filter((t) => t.recall >= target);
    const best =
      reachedTrials.length > 0
        ? reachedTrials.reduce((a, t) => (t.queriesPerSecond > a.queriesPerSecond ? t : a))
        : trials.reduce((a, t) => (t.recall > a.recall ? t : a));
    const makeFamily = (): HashFamily =>
      best.family === 'simhash'
        ? new SimHash({ dim, nBits: best.nBits as number, nTables: best.nTables, seed })
        : new RotationHash({ dim, nBuckets: best.nBuckets as number, hashesPerTable: best.hashesPerTable as number, nTables: best.nTables, seed });
    return {
      best,
      reached: reachedTrials.length > 0,
      exactQueriesPerSecond,
      speedup: best.queriesPerSecond / exactQueriesPerSecond,
      trials,
      makeFamily,
      async build(data: tf.Tensor2D, indexOptions: LSHIndexOptions = {}): Promise<LSHIndex> {
        const index = new LSHIndex(makeFamily(), { probes: best.probes, ...indexOptions, ownsFamily: true });
        await index.add(data);
        return index;
      },
    };
  } finally {
    if (ownsSplit) tf.dispose([database, queries]);
  }
}
