/**
 * The rotation (cross-polytope) hash: near pairs collide more often than
 * under SimHash with the same number of buckets, orthogonal pairs at 1/K,
 * keys match a plain-JavaScript argmax([xR; −xR]) with the factorised-bucket
 * order, save/load, errors and leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { RotationHash, SimHash, familyFromJSON } from '../../src/lsh/index.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';
import { agreement, pairsAtAngle, readKeys, standardError, toTensor } from './lsh_helpers.js';

const DIM = 32;
const PAIRS = 300;
const TABLES = 64;
const DEG = Math.PI / 180;

function collisionRate(family: { hash(x: tf.Tensor2D): tf.Tensor2D }, degrees: number, seed: number): number {
  const { x, y } = pairsAtAngle(PAIRS, DIM, degrees * DEG, seed);
  const xs = toTensor(x);
  const ys = toTensor(y);
  const rate = agreement(readKeys(family, xs), readKeys(family, ys));
  tf.dispose([xs, ys]);
  return rate;
}

describeBackends('RotationHash', () => {
  it.each([
    [16, 4, 20],
    [16, 4, 40],
    [64, 6, 30],
  ])(
    'with K = %i buckets, near pairs collide more often than under SimHash with %i bits (%i°)',
    (nBuckets, nBits, degrees) => {
      const rotation = new RotationHash({ dim: DIM, nBuckets, nTables: TABLES, seed: 1 });
      const simhash = new SimHash({ dim: DIM, nBits, nTables: TABLES, seed: 2 });
      const rotationRate = collisionRate(rotation, degrees, 50 + degrees);
      const simhashRate = collisionRate(simhash, degrees, 50 + degrees);
      rotation.dispose();
      simhash.dispose();
      const n = PAIRS * TABLES;
      const se = Math.hypot(standardError(rotationRate, n), standardError(simhashRate, n));
      // SimHash's rate is the theory's (1 − θ/π)^b; the rotation hash must beat it clearly.
      expect(Math.abs(simhashRate - (1 - degrees / 180) ** nBits)).toBeLessThan(3 * standardError(simhashRate, n));
      expect(rotationRate - simhashRate).toBeGreaterThan(3 * se);
    },
  );

  it.each([4, 8, 16])('orthogonal pairs collide at about 1/K (K = %i)', (nBuckets) => {
    const rotation = new RotationHash({ dim: DIM, nBuckets, nTables: TABLES, seed: nBuckets });
    const rate = collisionRate(rotation, 90, 7);
    rotation.dispose();
    expect(Math.abs(rate - 1 / nBuckets)).toBeLessThan(3 * standardError(1 / nBuckets, PAIRS * TABLES));
  });

  it('keys are Σ_j argmax([x·R_j; −x·R_j]) · K^j, as in plain JavaScript, and scores rank the same', () => {
    const [dim, nBuckets, m, nTables, n] = [5, 6, 3, 2, 40];
    const rotation = new RotationHash({ dim, nBuckets, hashesPerTable: m, nTables, seed: 4 });
    const x = randomTensor([n, dim], 3) as tf.Tensor2D;
    const xs = x.arraySync();
    const r = rotation.rotations.arraySync(); // [D][L][m·K/2]
    const keys = readKeys(rotation, x);
    const scores = rotation.digitScores(x);
    expect(scores.shape).toEqual([n, nTables, m, nBuckets]);
    const scoreValues = scores.dataSync();
    for (let i = 0; i < n; i++) {
      for (let t = 0; t < nTables; t++) {
        let key = 0;
        for (let j = 0; j < m; j++) {
          const projected: number[] = [];
          for (let c = 0; c < nBuckets / 2; c++) {
            projected.push(xs[i].reduce((s, xd, d) => s + xd * r[d][t][j * (nBuckets / 2) + c], 0));
          }
          const all = [...projected, ...projected.map((v) => -v)];
          const best = all.indexOf(Math.max(...all));
          key += best * nBuckets ** j;
          const base = ((i * nTables + t) * m + j) * nBuckets;
          const fromScores = Array.from(scoreValues.subarray(base, base + nBuckets));
          expect(fromScores.indexOf(Math.max(...fromScores))).toBe(best);
        }
        expect(keys[i * nTables + t]).toBe(key);
      }
    }
    tf.dispose([x, scores]);
    rotation.dispose();
  });

  it('is invariant to positive scaling, deterministic per seed, and reloads from JSON', () => {
    const x = randomTensor([100, DIM], 8) as tf.Tensor2D;
    const scaled = tf.mul(x, tf.scalar(2 ** 7)) as tf.Tensor2D;
    const rotation = new RotationHash({ dim: DIM, nBuckets: 8, hashesPerTable: 2, nTables: 4, seed: 5 });
    const loaded = familyFromJSON(JSON.parse(JSON.stringify(rotation.toJSON())));
    const keys = readKeys(rotation, x);
    expect(new Set(keys).size).toBeGreaterThan(30);
    expect(readKeys(rotation, scaled)).toEqual(keys);
    expect(readKeys(loaded, x)).toEqual(keys);
    expect(loaded.keyBits).toBe(6);
    tf.dispose([x, scaled]);
    rotation.dispose();
    loaded.dispose();
  });

  it('rejects bad options and inputs', () => {
    expect(() => new RotationHash({ dim: 4, nBuckets: 7 })).toThrow(/RotationHash: nBuckets must be an even integer ≥ 2, got 7/);
    expect(() => new RotationHash({ dim: 4, nBuckets: 64, hashesPerTable: 6 })).toThrow(
      /nBuckets\^hashesPerTable must be at most 2\^30 .* got 64\^6 ≈ 2\^36.0; use fewer/,
    );
    expect(() => new RotationHash({ dim: -1 })).toThrow(/dim must be a positive integer, got -1/);
    const rotation = new RotationHash({ dim: 4, seed: 1 });
    const x = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => rotation.hash(x)).toThrow(/RotationHash.hash: x must have D = 4 columns/);
    expect(() => rotation.digitScores(x)).toThrow(/RotationHash.digitScores: x must have D = 4 columns/);
    x.dispose();
    rotation.dispose();
  });

  it('leaks no tensors', async () => {
    const x = randomTensor([20, 8], 5) as tf.Tensor2D;
    await expectNoLeaks(() => {
      const rotation = new RotationHash({ dim: 8, nBuckets: 4, hashesPerTable: 2, nTables: 3, seed: 1 });
      const out = [rotation.hash(x), rotation.digitScores(x)];
      rotation.dispose();
      return out;
    });
    x.dispose();
  });
});
