/**
 * SimHash: the collision probability 1 − θ/π per bit (and its b-th power
 * per key), invariance to positive scaling, packing, determinism, save/load,
 * errors and leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { SimHash, familyFromJSON } from '../../src/lsh/index.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';
import { agreement, pairsAtAngle, readKeys, standardError, toTensor } from './lsh_helpers.js';

const DIM = 32;
const PAIRS = 400;
const DEG = Math.PI / 180;

describeBackends('SimHash', () => {
  it.each([10, 30, 60, 90, 120, 170])(
    'bits of pairs at %i° agree at rate 1 − θ/π within 3 standard errors',
    (degrees) => {
      const simhash = new SimHash({ dim: DIM, nBits: 16, nTables: 16, seed: 7 });
      const { x, y } = pairsAtAngle(PAIRS, DIM, degrees * DEG, 100 + degrees);
      const xs = toTensor(x);
      const ys = toTensor(y);
      const bx = simhash.bits(xs);
      const by = simhash.bits(ys);
      const rate = agreement(bx.dataSync(), by.dataSync());
      tf.dispose([xs, ys, bx, by]);
      simhash.dispose();
      const expected = 1 - (degrees * DEG) / Math.PI;
      const se = standardError(expected, PAIRS * 256);
      expect(Math.abs(rate - expected)).toBeLessThan(3 * se);
    },
  );

  it('b-bit keys of pairs at 30° collide at rate (1 − θ/π)^b within 3 standard errors', () => {
    const nBits = 4;
    const nTables = 64;
    const simhash = new SimHash({ dim: DIM, nBits, nTables, seed: 11 });
    const { x, y } = pairsAtAngle(PAIRS, DIM, 30 * DEG, 5);
    const xs = toTensor(x);
    const ys = toTensor(y);
    const kx = simhash.hash(xs);
    const ky = simhash.hash(ys);
    const rate = agreement(kx.dataSync(), ky.dataSync());
    tf.dispose([xs, ys, kx, ky]);
    simhash.dispose();
    const expected = (1 - 30 / 180) ** nBits;
    expect(Math.abs(rate - expected)).toBeLessThan(3 * standardError(expected, PAIRS * nTables));
  });

  it.each([2 ** -10, 3, 1000, 2 ** 20])('codes are identical when the vectors are scaled by %d', (scale) => {
    const simhash = new SimHash({ dim: DIM, nBits: 20, nTables: 4, seed: 3 });
    const x = randomTensor([300, DIM], 1) as tf.Tensor2D;
    const scaled = tf.mul(x, tf.scalar(scale)) as tf.Tensor2D;
    const keys = simhash.hash(x);
    const scaledKeys = simhash.hash(scaled);
    expect(Array.from(scaledKeys.dataSync())).toEqual(Array.from(keys.dataSync()));
    // and the keys are not trivially constant
    expect(new Set(keys.dataSync()).size).toBeGreaterThan(250);
    tf.dispose([x, scaled, keys, scaledKeys]);
    simhash.dispose();
  });

  it('keys pack the bits, bits are the signs of the projections, scores rank the same', () => {
    const nBits = 7;
    const nTables = 3;
    const simhash = new SimHash({ dim: 5, nBits, nTables, seed: 5 });
    const x = randomTensor([50, 5], 2) as tf.Tensor2D;
    const [p, b, k] = [simhash.project(x), simhash.bits(x), simhash.hash(x)];
    const projections = p.dataSync();
    const bits = b.dataSync();
    const keys = k.dataSync();
    const scores = simhash.digitScores(x);
    expect(scores.shape).toEqual([50, nTables, nBits, 2]);
    const scoreValues = scores.dataSync();
    for (let i = 0; i < 50; i++) {
      for (let t = 0; t < nTables; t++) {
        let key = 0;
        for (let j = 0; j < nBits; j++) {
          const c = (i * nTables + t) * nBits + j;
          expect(bits[c]).toBe(projections[c] > 0 ? 1 : 0);
          expect(scoreValues[2 * c + 1] > scoreValues[2 * c] ? 1 : 0).toBe(bits[c]);
          key += bits[c] * 2 ** j;
        }
        expect(keys[i * nTables + t]).toBe(key);
      }
    }
    tf.dispose([x, scores, p, b, k]);
    simhash.dispose();
  });

  it('hyperplanes are unit vectors, so projections are distances to the hyperplanes', () => {
    const simhash = new SimHash({ dim: 6, nBits: 8, nTables: 2, seed: 9 });
    const h = simhash.hyperplanes.arraySync();
    for (let c = 0; c < 16; c++) {
      const norm = Math.sqrt(h.reduce((s, row) => s + row[c] ** 2, 0));
      expect(norm).toBeCloseTo(1, 5);
    }
    simhash.dispose();
  });

  it('the same seed gives the same keys, another seed other keys, and a saved family the same keys', () => {
    const x = randomTensor([100, DIM], 4) as tf.Tensor2D;
    const a = new SimHash({ dim: DIM, nBits: 16, nTables: 2, seed: 6 });
    const same = new SimHash({ dim: DIM, nBits: 16, nTables: 2, seed: 6 });
    const other = new SimHash({ dim: DIM, nBits: 16, nTables: 2, seed: 7 });
    const loaded = familyFromJSON(JSON.parse(JSON.stringify(a.toJSON())));
    const ka = readKeys(a, x);
    expect(readKeys(same, x)).toEqual(ka);
    expect(readKeys(loaded, x)).toEqual(ka);
    expect(agreement(readKeys(other, x), ka)).toBeLessThan(0.1);
    const unseeded = new SimHash({ dim: DIM });
    expect(typeof unseeded.seed).toBe('number');
    const reloaded = familyFromJSON(unseeded.toJSON());
    expect(readKeys(reloaded, x)).toEqual(readKeys(unseeded, x));
    [a, same, other, loaded, unseeded, reloaded].forEach((f) => f.dispose());
    x.dispose();
  });

  it('rejects bad options and inputs with messages that say what and how', () => {
    expect(() => new SimHash({ dim: 0 })).toThrow(/SimHash: dim must be a positive integer, got 0/);
    expect(() => new SimHash({ dim: 4, nBits: 31 })).toThrow(/SimHash: nBits must be an integer in \[1, 30\], got number 31/);
    expect(() => new SimHash({ dim: 4, nTables: 1.5 })).toThrow(/nTables must be a positive integer, got 1.5/);
    expect(() => new SimHash({ dim: 4, seed: NaN })).toThrow(/SimHash: seed must be an integer in \[0, 2147483647\], got NaN; pass e\.g\. seed: 1/);
    expect(() => new SimHash({ dim: 4, seed: 'a' as unknown as number })).toThrow(/seed must be an integer .*got "a"/);
    expect(() => new SimHash({ dim: 4, seed: -1 })).toThrow(/seed must be an integer .*got -1/);
    expect(() => new SimHash(undefined as unknown as { dim: number })).toThrow(/options must be an object/);
    const simhash = new SimHash({ dim: 4, seed: 1 });
    const wrongDim = tf.zeros([3, 5]) as tf.Tensor2D;
    const rank1 = tf.zeros([4]);
    const ints = tf.zeros([3, 4], 'int32') as tf.Tensor2D;
    expect(() => simhash.hash(wrongDim)).toThrow(/SimHash.hash: x must have D = 4 columns .* got shape \[3, 5\]/);
    expect(() => simhash.hash(rank1 as unknown as tf.Tensor2D)).toThrow(/x must have rank 2 \[N, D\], got rank 1/);
    expect(() => simhash.hash(ints)).toThrow(/x must be float32, got int32; cast it/);
    expect(() => simhash.hash([[1, 2, 3, 4]] as unknown as tf.Tensor2D)).toThrow(/must be a float32 tf.Tensor2D \[N, D\], got an array/);
    tf.dispose([wrongDim, rank1, ints]);
    simhash.dispose();
  });

  it('an empty batch hashes to an empty result', () => {
    const simhash = new SimHash({ dim: 4, nTables: 3, seed: 1 });
    const empty = tf.zeros([0, 4]) as tf.Tensor2D;
    const keys = simhash.hash(empty);
    expect(keys.shape).toEqual([0, 3]);
    tf.dispose([empty, keys]);
    simhash.dispose();
  });

  it('leaks no tensors', async () => {
    const x = randomTensor([20, 8], 5) as tf.Tensor2D;
    await expectNoLeaks(() => {
      const simhash = new SimHash({ dim: 8, nBits: 5, nTables: 3, seed: 1 });
      const out = [simhash.hash(x), simhash.bits(x), simhash.project(x), simhash.digitScores(x)];
      simhash.dispose();
      return out;
    });
    x.dispose();
  });
});
