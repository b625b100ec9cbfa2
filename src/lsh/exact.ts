/**
 * The exact linear scan an LSH index is measured against, and recall@k.
 *
 * Legend: Q queries, N database vectors, D vector size, k neighbours.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertPositiveInteger, shapeString } from '../validate.js';
import { checkVectors } from './family.js';
import { checkSimilarity, similarityMatrix, unitRows, type Similarity } from './similarity.js';

/** Options of {@link exactSearch}. */
export interface ExactSearchOptions {
  /** What neighbours are ranked by. Default 'cosine'. */
  similarity?: Similarity;
  /** Queries scored per block (memory: batchSize × N floats). Default 256. */
  batchSize?: number;
}

/** The k best database rows per query. */
export interface SearchResult {
  /** int32 [Q, k]: database row indices, best first. */
  indices: tf.Tensor2D;
  /** float32 [Q, k]: their similarities. */
  scores: tf.Tensor2D;
}

/**
 * Exact k-nearest neighbours by a linear scan: every query against every
 * database row.
 * @param queries float32 [Q, D].
 * @param database float32 [N, D].
 * @param k neighbours per query, 1 ≤ k ≤ N.
 */
export function exactSearch(
  queries: tf.Tensor2D,
  database: tf.Tensor2D,
  k: number,
  options: ExactSearchOptions = {},
): SearchResult {
  const who = 'exactSearch';
  checkVectors(who, 'queries', queries);
  checkVectors(who, 'database', database, queries.shape[1]);
  const [q, dim] = queries.shape;
  const n = database.shape[0];
  assertPositiveInteger(who, 'k', k);
  if (k > n) throw new Error(`${who}: k must be at most the database size ${n}, got ${k}`);
  const similarity = options.similarity ?? 'cosine';
  checkSimilarity(who, similarity);
  const batchSize = options.batchSize ?? 256;
  assertPositiveInteger(who, 'batchSize', batchSize);
  if (q === 0) return { indices: tf.zeros([0, k], 'int32'), scores: tf.zeros([0, k], 'float32') };
  const queryValues = queries.dataSync() as Float32Array;
  const indices = new Int32Array(q * k);
  const scores = new Float32Array(q * k);
  // Cosine: normalise and transpose the database once, not per block.
  const unitDatabaseT = similarity === 'cosine' ? tf.tidy(() => tf.transpose(unitRows(database))) : null;
  try {
    for (let start = 0; start < q; start += batchSize) {
      const rows = Math.min(batchSize, q - start);
      scoreBlock(start, rows);
    }
  } finally {
    unitDatabaseT?.dispose();
  }
  return { indices: tf.tensor2d(indices, [q, k], 'int32'), scores: tf.tensor2d(scores, [q, k], 'float32') };

  function scoreBlock(start: number, rows: number): void {
    const block = tf.tensor2d(queryValues.subarray(start * dim, (start + rows) * dim), [rows, dim], 'float32');
    try {
      const { values, idx } = tf.tidy(() => {
        const matrix =
          unitDatabaseT !== null
            ? tf.matMul(unitRows(block), unitDatabaseT)
            : similarityMatrix(block, database, similarity);
        if (matrix.shape[0] !== rows || matrix.shape[1] !== n) {
          throw new Error(`${who}: the similarity returned ${shapeString(matrix.shape)}, expected [${rows}, ${n}]`);
        }
        const top = tf.topk(matrix, k);
        return { values: top.values, idx: top.indices };
      });
      scores.set(values.dataSync() as Float32Array, start * k);
      indices.set(idx.dataSync() as Int32Array, start * k);
      values.dispose();
      idx.dispose();
    } finally {
      block.dispose();
    }
  }
}


/**
 * Mean recall@k: per query, the share of the true k best found among the
 * first k returned.
 * @param found per query, the returned ids (best first).
 * @param truth per query, the true ids (best first), at least k each.
 */
export function recallAtK<T>(found: readonly (readonly T[])[], truth: readonly (readonly T[])[], k: number): number {
  const who = 'recallAtK';
  assertPositiveInteger(who, 'k', k);
  if (found.length !== truth.length) {
    throw new Error(`${who}: found and truth must list the same number of queries, got ${found.length} and ${truth.length}`);
  }
  if (found.length === 0) throw new Error(`${who}: there must be at least one query, got 0`);
  let total = 0;
  for (let i = 0; i < found.length; i++) {
    if (truth[i].length < k) throw new Error(`${who}: truth[${i}] must list at least k = ${k} ids, got ${truth[i].length}`);
    const want = new Set(truth[i].slice(0, k));
    let hits = 0;
    for (const id of found[i].slice(0, k)) if (want.has(id)) hits++;
    total += hits / k;
  }
  return total / found.length;
}
