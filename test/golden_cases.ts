/**
 * The golden cases (test/data/golden-cases.json, from
 * shared/design/golden-cases.json): expected outputs of lshAttention and
 * fullAttention computed in float64 by an independent reference. Here: the
 * case type, the loader, and the configurations the fixture must hold, so a
 * truncated, reordered or edited fixture fails by name.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface GoldenCase {
  B: number;
  H: number;
  T: number;
  D: number;
  Dv: number;
  nHashes: number;
  nBuckets: number;
  chunkLength: number;
  numChunksBefore: number;
  numChunksAfter: number;
  causal: boolean;
  qk: number[][][][];
  v: number[][][][];
  rotations: number[][][];
  mask: number[][] | null;
  expected: number[][][][];
  expectedFull: number[][][][];
}

/** The settings of a case, and whether it has a padding mask. */
export type GoldenConfiguration = Omit<GoldenCase, 'qk' | 'v' | 'rotations' | 'mask' | 'expected' | 'expectedFull'> & { masked: boolean };

/**
 * The six cases, in order: many rounds with padding; more buckets than
 * tokens; causal with padding in one chunk; chunks after and two heads;
 * one round of small chunks looking only ahead; batch 2 with two buckets.
 */
export const GOLDEN_CONFIGURATIONS: readonly GoldenConfiguration[] = [
  { B: 1, H: 1, T: 24, D: 16, Dv: 3, nHashes: 8, nBuckets: 8, chunkLength: 32, numChunksBefore: 1, numChunksAfter: 0, causal: false, masked: true },
  { B: 1, H: 1, T: 24, D: 8, Dv: 3, nHashes: 4, nBuckets: 64, chunkLength: 8, numChunksBefore: 1, numChunksAfter: 0, causal: false, masked: false },
  { B: 1, H: 1, T: 32, D: 4, Dv: 3, nHashes: 4, nBuckets: 64, chunkLength: 64, numChunksBefore: 1, numChunksAfter: 0, causal: true, masked: true },
  { B: 1, H: 2, T: 16, D: 8, Dv: 8, nHashes: 2, nBuckets: 8, chunkLength: 16, numChunksBefore: 1, numChunksAfter: 1, causal: true, masked: false },
  { B: 1, H: 2, T: 16, D: 4, Dv: 3, nHashes: 1, nBuckets: 64, chunkLength: 4, numChunksBefore: 0, numChunksAfter: 1, causal: true, masked: false },
  { B: 2, H: 1, T: 32, D: 16, Dv: 3, nHashes: 4, nBuckets: 2, chunkLength: 4, numChunksBefore: 1, numChunksAfter: 0, causal: false, masked: false },
];

/** The configuration of a case. */
export function goldenConfiguration(c: Omit<GoldenConfiguration, 'masked'> & { mask: unknown }): GoldenConfiguration {
  const { B, H, T, D, Dv, nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter, causal } = c;
  return { B, H, T, D, Dv, nHashes, nBuckets, chunkLength, numChunksBefore, numChunksAfter, causal, masked: c.mask !== null };
}

/** The cases of the fixture. */
export function loadGoldenCases(): GoldenCase[] {
  const path = join(dirname(fileURLToPath(import.meta.url)), 'data', 'golden-cases.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { cases: GoldenCase[] }).cases;
}

/** Whether a nested array is rectangular with this shape, numbers at the bottom. */
export function hasShape(x: unknown, shape: readonly number[]): boolean {
  if (shape.length === 0) return typeof x === 'number' && Number.isFinite(x);
  return Array.isArray(x) && x.length === shape[0] && x.every((item) => hasShape(item, shape.slice(1)));
}
