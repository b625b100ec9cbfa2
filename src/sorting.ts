/**
 * Sorting the R·T (round, position) items by bucket (design §2).
 *
 * Legend: B batch, H heads, R rounds, T length, K buckets.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertPositiveInteger, assertRank } from './validate.js';

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
  if (buckets.dtype !== 'int32') throw new Error(`${who}: buckets must be int32, got ${buckets.dtype}`);
  const [batch, heads, nHashes, length] = buckets.shape;
  const items = nHashes * length;
  if (nHashes * (numBuckets + 1) >= 2 ** 24) {
    throw new Error(
      `${who}: nHashes·(K+1) = ${nHashes * (numBuckets + 1)} exceeds float32's exact integers (2^24); use fewer buckets or rounds`,
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
  const items = nHashes * length;
  if (buckets.length !== groups * items) {
    throw new Error(`sortItemsOnHost: expected ${groups}·${items} bucket ids, got ${buckets.length}`);
  }
  const keys = nHashes * (numBuckets + 1);
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
