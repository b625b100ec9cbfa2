/**
 * Sorting the R·T (round, position) items by bucket (design §2).
 *
 * Legend: B batch, H heads, R rounds, T length, K buckets.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertPositiveInteger, assertRank, describeValue, multiIndex } from './validate.js';

/**
 * The most sort keys R·(K+1): float32 holds integers exactly up to 2^24
 * (sortItems sorts float32 keys), and the host sort keeps a counter per key.
 */
export const MAX_SORT_KEYS = 2 ** 24;

/** The sort of {@link sortItems}: both int32 [B, H, R·T]. */
export interface ItemSort {
  /** sortedItems[j] = the item t = r·T + i at sorted place j. */
  sortedItems: tf.Tensor3D;
  /** undoSort[t] = the sorted place of item t (the inverse permutation). */
  undoSort: tf.Tensor3D;
}

/**
 * Sorts items t = r·T + i by (round, bucket, position): a stable ascending
 * sort on bucket + r·(K+1). The key stays small (≤ R·(K+1)), so it is exact
 * in float32; topk is stable on every backend, so topk(−key) sorts
 * ascending with ties in position order.
 *
 * @param buckets int32 [B, H, R, T], values in [0, K] (K marks padding).
 * @param numBuckets K.
 * @returns sortedItems and undoSort, int32 [B, H, R·T].
 */
export function sortItems(buckets: tf.Tensor4D, numBuckets: number): ItemSort {
  const who = 'sortItems';
  assertRank(who, 'buckets', buckets, 4, '[B, H, R, T]');
  assertPositiveInteger(who, 'numBuckets', numBuckets);
  if (buckets.dtype !== 'int32') {
    throw new Error(`${who}: buckets must be int32, got ${buckets.dtype}; pass hashBuckets' result, or tf.cast(buckets, 'int32')`);
  }
  const [batch, heads, nHashes, length] = buckets.shape;
  const items = nHashes * length;
  if (nHashes * (numBuckets + 1) >= MAX_SORT_KEYS) {
    throw new Error(
      `${who}: nHashes·(K+1) = ${nHashes * (numBuckets + 1)} exceeds float32's exact integers (2^24); use fewer buckets or rounds`,
    );
  }
  if (buckets.size === 0) {
    const empty = () => tf.zeros([batch, heads, items], 'int32') as tf.Tensor3D;
    return { sortedItems: empty(), undoSort: empty() };
  }
  // A bucket outside [0, K] would sort into the next round's keys: a wrong order, silently.
  const range = tf.tidy(() => tf.stack([tf.min(buckets), tf.max(buckets)]));
  const [lowest, highest] = range.dataSync();
  range.dispose();
  if (lowest < 0 || highest > numBuckets) {
    const values = buckets.dataSync();
    const at = values.findIndex((b) => b < 0 || b > numBuckets);
    throw new Error(
      `${who}: buckets must be in [0, K] = [0, ${numBuckets}] (K marks padding), got ${values[at]} at ` +
        `[${multiIndex(at, buckets.shape).join(', ')}]; pass numBuckets = K, the bucket count the buckets were hashed with`,
    );
  }
  return tf.tidy(() => {
    const roundOffsets = tf.reshape(
      tf.mul(tf.range(0, nHashes, 1, 'int32'), tf.scalar(numBuckets + 1, 'int32')),
      [1, 1, nHashes, 1],
    );
    const keys = tf.cast(tf.reshape(tf.add(buckets, roundOffsets), [batch * heads, items]), 'float32');
    const sortedItems = tf.topk(tf.neg(keys), items).indices; // [B·H, R·T]
    const undoSort = tf.topk(tf.neg(tf.cast(sortedItems, 'float32')), items).indices;
    return {
      sortedItems: tf.reshape(sortedItems, [batch, heads, items]) as tf.Tensor3D,
      undoSort: tf.reshape(undoSort, [batch, heads, items]) as tf.Tensor3D,
    };
  });
}

/**
 * The same sort as {@link sortItems}, on the host: a stable counting sort of
 * each group's R·T items by bucket + r·(K+1), O(R·T + R·K) per group.
 *
 * @param buckets [G·R·T] bucket ids (group-major, then round, then position), in [0, K].
 * @returns sorted and undo, each [G·R·T], per group as sortItems returns them.
 */
export function sortItemsOnHost(
  buckets: Int32Array,
  groups: number,
  nHashes: number,
  length: number,
  numBuckets: number,
): { sorted: Int32Array; undo: Int32Array } {
  const who = 'sortItemsOnHost';
  assertPositiveInteger(who, 'groups', groups);
  assertPositiveInteger(who, 'nHashes', nHashes);
  assertPositiveInteger(who, 'length', length);
  assertPositiveInteger(who, 'numBuckets', numBuckets);
  if (!(buckets instanceof Int32Array)) {
    throw new Error(`${who}: buckets must be an Int32Array, got ${describeValue(buckets)}; use Int32Array.from(ids)`);
  }
  const items = nHashes * length;
  if (buckets.length !== groups * items) {
    throw new Error(`${who}: expected ${groups}·${items} bucket ids, got ${buckets.length}`);
  }
  const keys = nHashes * (numBuckets + 1);
  if (keys > MAX_SORT_KEYS) {
    throw new Error(`${who}: nHashes·(K+1) = ${keys} sort keys, more than 2^24; use fewer buckets or rounds`);
  }
  for (let i = 0; i < buckets.length; i++) {
    // Out of [0, K], a count would land in another round's key (or outside the table): a wrong order, silently.
    if (!(buckets[i] >= 0 && buckets[i] <= numBuckets)) {
      throw new Error(`${who}: bucket ids must be in [0, K] = [0, ${numBuckets}] (K marks padding), got ${buckets[i]} at index ${i}`);
    }
  }
  const sorted = new Int32Array(groups * items);
  const undo = new Int32Array(groups * items);
  const starts = new Int32Array(keys + 1);
  for (let g = 0; g < groups; g++) {
    const base = g * items;
    starts.fill(0);
    for (let t = 0; t < items; t++) starts[Math.floor(t / length) * (numBuckets + 1) + buckets[base + t] + 1]++;
    for (let key = 0; key < keys; key++) starts[key + 1] += starts[key];
    for (let t = 0; t < items; t++) {
      const place = starts[Math.floor(t / length) * (numBuckets + 1) + buckets[base + t]]++;
      sorted[base + place] = t;
      undo[base + t] = place;
    }
  }
  return { sorted, undo };
}
