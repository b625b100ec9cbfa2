/**
 * Test data for the hashing library: pairs of vectors at known angles,
 * clustered data sets, and the binomial standard error.
 */
import * as tf from '@tensorflow/tfjs-core';
import { gaussianArray, uniformStream } from '../../src/random.js';

/** Row-major rows of `dim` numbers. */
export interface Rows {
  values: Float32Array;
  count: number;
  dim: number;
}

/**
 * `count` pairs (x, y) with angle exactly `angle` between them, x uniform on
 * the sphere and y rotated towards a uniform direction orthogonal to x, both
 * of length `length`. So the pair's orientation is uniformly random.
 */
export function pairsAtAngle(count: number, dim: number, angle: number, seed: number, length = 1): { x: Rows; y: Rows } {
  const random = uniformStream(seed);
  const x = new Float32Array(count * dim);
  const y = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    const u = normalise(Float64Array.from(gaussianArray(dim, random)));
    const v = Float64Array.from(gaussianArray(dim, random));
    const along = v.reduce((s, vi, d) => s + vi * u[d], 0);
    for (let d = 0; d < dim; d++) v[d] -= along * u[d];
    normalise(v);
    for (let d = 0; d < dim; d++) {
      x[i * dim + d] = length * u[d];
      y[i * dim + d] = length * (Math.cos(angle) * u[d] + Math.sin(angle) * v[d]);
    }
  }
  return { x: { values: x, count, dim }, y: { values: y, count, dim } };
}

function normalise(v: Float64Array): Float64Array {
  const norm = Math.sqrt(v.reduce((s, vi) => s + vi * vi, 0));
  for (let d = 0; d < v.length; d++) v[d] /= norm;
  return v;
}

/**
 * Clustered data: `clusters` centres N(0, I), each point a centre plus
 * N(0, spread² I). Points are assigned to centres round-robin.
 */
export function clusteredRows(count: number, dim: number, clusters: number, spread: number, seed: number): Rows {
  const random = uniformStream(seed);
  const centres = gaussianArray(clusters * dim, random);
  const noise = gaussianArray(count * dim, random);
  const values = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    const c = i % clusters;
    for (let d = 0; d < dim; d++) values[i * dim + d] = centres[c * dim + d] + spread * noise[i * dim + d];
  }
  return { values, count, dim };
}

/** Rows as a float32 tensor [count, dim]. */
export function toTensor(rows: Rows): tf.Tensor2D {
  return tf.tensor2d(rows.values, [rows.count, rows.dim], 'float32');
}

/** Standard error of a rate p measured over n Bernoulli trials. */
export function standardError(p: number, n: number): number {
  return Math.sqrt((p * (1 - p)) / n);
}

/** Share of positions where two equally long arrays are equal. */
export function agreement(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`agreement: lengths differ (${a.length} vs ${b.length})`);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/** Cosine similarity of two rows, in float64. */
export function cosineJS(a: ArrayLike<number>, aOffset: number, b: ArrayLike<number>, bOffset: number, dim: number): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let d = 0; d < dim; d++) {
    dot += a[aOffset + d] * b[bOffset + d];
    na += a[aOffset + d] ** 2;
    nb += b[bOffset + d] ** 2;
  }
  return na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
}

/** A family's keys for x, read back and disposed. */
export function readKeys(family: { hash(x: tf.Tensor2D): tf.Tensor2D }, x: tf.Tensor2D): number[] {
  const keys = family.hash(x);
  const out = Array.from(keys.dataSync());
  keys.dispose();
  return out;
}
