/**
 * lshAttention and hashBuckets against the independent float64 plain-loop
 * reference in reference.ts, which is itself checked against the golden cases
 * first (so a misread of the spec shows up there, not as a core failure).
 *
 * Legend: B batch, H heads, T length, D head size, Dv value size,
 * R rounds (nHashes), K buckets, C chunkLength.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { hashBuckets, lshAttention, type NBuckets } from '../src/index.js';
import { GOLDEN_CONFIGURATIONS, goldenConfiguration, loadGoldenCases } from './golden_cases.js';
import { describeBackends } from './helpers.js';
import {
  referenceBuckets,
  referenceFullAttention,
  referenceHashMargin,
  referenceLSHAttention,
  type ReferenceLSHInput,
  type Vector,
} from './reference.js';

/** Float32 arithmetic may pick the other bucket when the best two scores are this close: such draws are redrawn. */
const MIN_HASH_MARGIN = 1e-4;
const TOLERANCE = 1e-4;

// ---------------------------------------------------------------------------
// Seeded data, made in JavaScript so the reference and the tensors see the
// same float32 numbers.

/** mulberry32: a small seeded uniform generator in [0, 1). */
function uniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

/** N(0, 1) numbers (Box-Muller), float32-representable. */
function gaussians(count: number, next: () => number): Float32Array {
  const values = new Float32Array(count);
  for (let n = 0; n < count; n++) {
    values[n] = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  }
  return values;
}

/** Views a flat row-major array as nested [a][b][c] vectors of length `size`. */
function nest3(flat: Float32Array, a: number, b: number, c: number, size: number): Float32Array[][][] {
  return Array.from({ length: a }, (_, i) =>
    Array.from({ length: b }, (_, j) =>
      Array.from({ length: c }, (_, k) => flat.subarray(((i * b + j) * c + k) * size, ((i * b + j) * c + k + 1) * size)),
    ),
  );
}

/** Views a flat row-major array as nested [a][b] vectors of length `size`. */
function nest2(flat: Float32Array, a: number, b: number, size: number): Float32Array[][] {
  return nest3(flat, 1, a, b, size)[0];
}

function pickFrom<T>(next: () => number, options: readonly T[]): T {
  return options[Math.floor(next() * options.length)];
}

function rotationColumnCount(nBuckets: NBuckets): number {
  return (Array.isArray(nBuckets) ? nBuckets : [nBuckets]).reduce((a, k) => a + k / 2, 0);
}

function bucketCount(nBuckets: NBuckets): number {
  return (Array.isArray(nBuckets) ? nBuckets : [nBuckets]).reduce((a, k) => a * k, 1);
}

type Padding = 'none' | 'end' | 'middle';

/** [B][T] padding mask: 'end' pads the ends of some rows (at least one), 'middle' also a block inside row 0. */
function makeMask(padding: Padding, batch: number, length: number, next: () => number): number[][] | null {
  if (padding === 'none') return null;
  const mask = Array.from({ length: batch }, () => new Array<number>(length).fill(1));
  mask.forEach((row, b) => {
    if (b === 0 || next() < 0.6) {
      const padded = 1 + Math.floor(next() * Math.floor(length / 2));
      row.fill(0, length - padded);
    }
  });
  if (padding === 'middle') {
    const start = Math.floor(length / 4);
    mask[0].fill(1);
    mask[0].fill(0, start, start + Math.max(1, Math.floor(length / 4)));
  }
  return mask;
}

// ---------------------------------------------------------------------------
// Configurations.

interface LSHConfig {
  name: string;
  seed: number;
  B: number;
  H: number;
  T: number;
  D: number;
  Dv: number;
  nHashes: number;
  nBuckets: NBuckets;
  chunkLength: number;
  numChunksBefore: number;
  numChunksAfter: number;
  causal: boolean;
  padding: Padding;
}

function describeConfig(c: Omit<LSHConfig, 'name'>): string {
  return (
    `B${c.B} H${c.H} T${c.T} D${c.D} Dv${c.Dv} R${c.nHashes} K${JSON.stringify(c.nBuckets)} C${c.chunkLength} ` +
    `before${c.numChunksBefore} after${c.numChunksAfter}${c.causal ? ' causal' : ''} pad:${c.padding} seed${c.seed}`
  );
}

/** Corners that random draws might miss. */
const cornerConfigs: Omit<LSHConfig, 'name'>[] = [
  { seed: 1, B: 2, H: 3, T: 64, D: 16, Dv: 4, nHashes: 8, nBuckets: 64, chunkLength: 64, numChunksBefore: 2, numChunksAfter: 1, causal: true, padding: 'end' },
  { seed: 2, B: 1, H: 2, T: 32, D: 8, Dv: 3, nHashes: 2, nBuckets: [4, 4], chunkLength: 8, numChunksBefore: 1, numChunksAfter: 0, causal: false, padding: 'none' },
  { seed: 3, B: 2, H: 1, T: 16, D: 8, Dv: 5, nHashes: 3, nBuckets: [2, 4, 8], chunkLength: 16, numChunksBefore: 1, numChunksAfter: 1, causal: true, padding: 'end' },
  { seed: 4, B: 2, H: 2, T: 24, D: 8, Dv: 3, nHashes: 2, nBuckets: 8, chunkLength: 8, numChunksBefore: 1, numChunksAfter: 1, causal: true, padding: 'middle' },
  { seed: 5, B: 1, H: 1, T: 12, D: 4, Dv: 2, nHashes: 1, nBuckets: 2, chunkLength: 4, numChunksBefore: 0, numChunksAfter: 0, causal: false, padding: 'none' },
  { seed: 6, B: 1, H: 3, T: 24, D: 16, Dv: 4, nHashes: 4, nBuckets: [8, 4], chunkLength: 32, numChunksBefore: 1, numChunksAfter: 0, causal: true, padding: 'none' },
];

function randomConfig(seed: number): Omit<LSHConfig, 'name'> {
  const next = uniform(seed * 7919 + 17);
  const nHashes = 1 + Math.floor(next() * 8);
  const chunkLength = pickFrom(next, [4, 8, 16, 32, 64]);
  const lengths: number[] = [];
  for (let t = 4; t <= 64; t++) if ((nHashes * t) % chunkLength === 0) lengths.push(t);
  const nBuckets: NBuckets =
    next() < 0.1 ? pickFrom<number[]>(next, [[2, 2], [4, 4], [2, 8], [4, 2, 2]]) : 2 * (1 + Math.floor(next() * 32));
  return {
    seed,
    B: 1 + Math.floor(next() * 2),
    H: 1 + Math.floor(next() * 3),
    T: pickFrom(next, lengths),
    D: pickFrom(next, [4, 8, 16]),
    Dv: 1 + Math.floor(next() * 6),
    nHashes,
    nBuckets,
    chunkLength,
    numChunksBefore: Math.floor(next() * 3),
    numChunksAfter: Math.floor(next() * 2),
    causal: next() < 0.5,
    padding: next() < 0.45 ? 'none' : 'end',
  };
}

const configs: LSHConfig[] = [...cornerConfigs, ...Array.from({ length: 34 }, (_, n) => randomConfig(100 + n))].map(
  (c) => ({ ...c, name: describeConfig(c) }),
);

/** Inputs (flat float32 and nested views) plus the reference output of one configuration. */
interface LSHCase {
  qk: Float32Array;
  v: Float32Array;
  rotations: Float32Array;
  mask: number[][] | null;
  expected: number[][][][];
}

const caseCache = new Map<string, LSHCase>();

/** Draws the inputs (redrawing near-ties in the hash) and runs the reference; cached across backends. */
function lshCase(c: LSHConfig): LSHCase {
  const cached = caseCache.get(c.name);
  if (cached !== undefined) return cached;
  const columns = rotationColumnCount(c.nBuckets);
  for (let attempt = 0; attempt < 100; attempt++) {
    const next = uniform(c.seed * 1000 + attempt);
    const qk = gaussians(c.B * c.H * c.T * c.D, next);
    const v = gaussians(c.B * c.H * c.T * c.Dv, next);
    const rotations = gaussians(c.D * c.nHashes * columns, next);
    const mask = makeMask(c.padding, c.B, c.T, next);
    const input: ReferenceLSHInput = {
      qk: nest3(qk, c.B, c.H, c.T, c.D),
      v: nest3(v, c.B, c.H, c.T, c.Dv),
      rotations: nest2(rotations, c.D, c.nHashes, columns),
      nBuckets: c.nBuckets,
      chunkLength: c.chunkLength,
      numChunksBefore: c.numChunksBefore,
      numChunksAfter: c.numChunksAfter,
      causal: c.causal,
      mask,
    };
    if (referenceHashMargin(input.qk, input.rotations, c.nBuckets, mask) < MIN_HASH_MARGIN) continue;
    const result = { qk, v, rotations, mask, expected: referenceLSHAttention(input) };
    caseCache.set(c.name, result);
    return result;
  }
  throw new Error(`no draw without near-ties for ${c.name}`);
}

/** Largest |actual − expected| over unpadded query positions, and where. */
function worstUnpadded(
  actual: ArrayLike<number>,
  expected: number[][][][],
  mask: readonly Vector[] | null,
): { diff: number; at: string } {
  let diff = 0;
  let at = 'nowhere';
  let flat = 0;
  expected.forEach((perBatch, b) =>
    perBatch.forEach((perHead, h) =>
      perHead.forEach((row, t) =>
        row.forEach((x, d) => {
          const here = Math.abs(actual[flat++] - x);
          if (mask !== null && mask[b][t] === 0) return;
          if (!(here <= diff)) {
            diff = here;
            at = `[b${b} h${h} t${t} d${d}]`;
          }
        }),
      ),
    ),
  );
  return { diff, at };
}

// ---------------------------------------------------------------------------
// a) The reference against the golden cases: validates the reading of the spec.

const goldenCases = loadGoldenCases();

/** Largest difference over unpadded query positions of two nested outputs. */
function worstNested(actual: number[][][][], expected: number[][][][], mask: number[][] | null): number {
  return worstUnpadded(actual.flat(3), expected, mask).diff;
}

describe('float64 reference', () => {
  it('reads the six golden cases of the design (their configurations, as golden_cases.ts lists them)', () => {
    expect(goldenCases.map(goldenConfiguration)).toEqual(GOLDEN_CONFIGURATIONS);
  });
  it.each(goldenCases.map((c, i) => [i, c] as const))('matches golden case %i (LSH and full)', (_i, c) => {
    const lsh = referenceLSHAttention(c);
    expect(worstNested(lsh, c.expected, c.mask)).toBeLessThan(TOLERANCE);
    const full = referenceFullAttention(c);
    expect(worstNested(full, c.expectedFull, c.mask)).toBeLessThan(TOLERANCE);
  });
  it('configurations cover the intended space', () => {
    const values = <K extends keyof LSHConfig>(key: K): Set<LSHConfig[K]> => new Set(configs.map((c) => c[key]));
    expect(configs.length).toBe(40);
    expect([...values('nHashes')].sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...values('numChunksBefore')].sort()).toEqual([0, 1, 2]);
    expect([...values('numChunksAfter')].sort()).toEqual([0, 1]);
    expect([...values('causal')].sort()).toEqual([false, true]);
    expect([...values('padding')].sort()).toEqual(['end', 'middle', 'none']);
    expect([...values('B')].sort()).toEqual([1, 2]);
    expect([...values('H')].sort()).toEqual([1, 2, 3]);
    const chunkLengths = [...values('chunkLength')];
    expect(Math.min(...chunkLengths)).toBe(4);
    expect(Math.max(...chunkLengths)).toBe(64);
    const single = configs.flatMap((c) => (Array.isArray(c.nBuckets) ? [] : [c.nBuckets]));
    expect(Math.min(...single)).toBe(2);
    expect(Math.max(...single)).toBe(64);
    expect(configs.filter((c) => Array.isArray(c.nBuckets)).length).toBeGreaterThanOrEqual(2);
    for (const c of configs) {
      expect((c.nHashes * c.T) % c.chunkLength).toBe(0);
      expect(c.T).toBeLessThanOrEqual(64);
    }
  });
});

describeBackends('lshAttention against the float64 reference', () => {
  // b) ~40 seeded configurations; explicit rotations shared by both sides.
  it.each(configs.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const data = lshCase(c);
    tf.tidy(() => {
      const out = lshAttention(
        tf.tensor4d(data.qk, [c.B, c.H, c.T, c.D]),
        tf.tensor4d(data.v, [c.B, c.H, c.T, c.Dv]),
        {
          rotations: tf.tensor3d(data.rotations, [c.D, c.nHashes, rotationColumnCount(c.nBuckets)]),
          nBuckets: c.nBuckets,
          chunkLength: c.chunkLength,
          numChunksBefore: c.numChunksBefore,
          numChunksAfter: c.numChunksAfter,
          causal: c.causal,
          mask: data.mask === null ? undefined : tf.tensor2d(data.mask),
        },
      );
      expect(out.shape).toEqual([c.B, c.H, c.T, c.Dv]);
      const { diff, at } = worstUnpadded(out.dataSync(), data.expected, data.mask);
      expect(diff, `max diff ${diff} at ${at}`).toBeLessThan(TOLERANCE);
    });
  });
});

// c) hashBuckets equals the reference buckets exactly.

interface HashConfig {
  name: string;
  seed: number;
  B: number;
  H: number;
  T: number;
  D: number;
  nHashes: number;
  /** undefined: the option is left out (one factor, K = 2 · columns). */
  nBuckets: NBuckets | undefined;
  columns: number;
  padding: Padding;
}

const hashConfigs: HashConfig[] = [
  { name: 'K 16, end padding', seed: 11, B: 2, H: 2, T: 20, D: 8, nHashes: 3, nBuckets: 16, columns: 8, padding: 'end' },
  { name: 'K [4, 4], no mask', seed: 12, B: 1, H: 3, T: 17, D: 16, nHashes: 2, nBuckets: [4, 4], columns: 4, padding: 'none' },
  { name: 'K [2, 4, 8], middle padding', seed: 13, B: 2, H: 1, T: 32, D: 8, nHashes: 4, nBuckets: [2, 4, 8], columns: 7, padding: 'middle' },
  { name: 'K 64, no mask', seed: 14, B: 1, H: 2, T: 40, D: 4, nHashes: 5, nBuckets: 64, columns: 32, padding: 'none' },
  { name: 'nBuckets left out (K 10), end padding', seed: 15, B: 2, H: 1, T: 9, D: 8, nHashes: 2, nBuckets: undefined, columns: 5, padding: 'end' },
];

describeBackends('hashBuckets against the float64 reference', () => {
  it.each(hashConfigs.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const k = c.nBuckets ?? 2 * c.columns;
    expect(rotationColumnCount(k)).toBe(c.columns);
    let attempt = 0;
    let next = uniform(c.seed);
    let x = gaussians(c.B * c.H * c.T * c.D, next);
    let rotations = gaussians(c.D * c.nHashes * c.columns, next);
    const view = (): [Float32Array[][][], Float32Array[][]] => [
      nest3(x, c.B, c.H, c.T, c.D),
      nest2(rotations, c.D, c.nHashes, c.columns),
    ];
    while (referenceHashMargin(...view(), k) < MIN_HASH_MARGIN) {
      attempt++;
      expect(attempt).toBeLessThan(100);
      next = uniform(c.seed * 1000 + attempt);
      x = gaussians(c.B * c.H * c.T * c.D, next);
      rotations = gaussians(c.D * c.nHashes * c.columns, next);
    }
    const mask = makeMask(c.padding, c.B, c.T, next);
    const expected = referenceBuckets(...view(), k, mask);
    if (mask !== null) expect(expected.flat(3)).toContain(bucketCount(k));
    tf.tidy(() => {
      const buckets = hashBuckets(
        tf.tensor4d(x, [c.B, c.H, c.T, c.D]),
        tf.tensor3d(rotations, [c.D, c.nHashes, c.columns]),
        {
          ...(c.nBuckets === undefined ? {} : { nBuckets: c.nBuckets }),
          ...(mask === null ? {} : { mask: tf.tensor2d(mask) }),
        },
      );
      expect(buckets.dtype).toBe('int32');
      expect(buckets.arraySync()).toEqual(expected);
    });
  });
});
