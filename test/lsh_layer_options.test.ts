/**
 * LSHSelfAttention's fullAttentionThreshold, allowDuplicateAttention,
 * attendAcrossBuckets and returnAttention: what the layer computes with each,
 * config round trips, and errors.
 *
 * Legend: B batch, T length, M model size, H heads.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
import { DEFAULT_FULL_ATTENTION_THRESHOLD, lshAttention } from '../src/index.js';
import { FullSelfAttention, LSHSelfAttention, lshMultiHeadAttention, lshSelfAttention } from '../layers/index.js';
import { describeBackends, expectNoLeaks, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';

const M = 8;

describeBackends('LSHSelfAttention options', () => {
  it('fullAttentionThreshold: exact attention at or below it (equal to FullSelfAttention), LSH above it; 0 turns it off', () => {
    tf.tidy(() => {
      const x = randomTensor([2, 32, M], 1) as tf.Tensor3D;
      const mask = tf.tensor2d([Array(32).fill(1), [...Array(27).fill(1), 0, 0, 0, 0, 0]]);
      const layer = (fullAttentionThreshold?: number) =>
        new LSHSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, causal: true, seed: 5, fullAttentionThreshold });
      const full = new FullSelfAttention({ numHeads: 2, causal: true, seed: 5 }).apply([x, mask]) as tf.Tensor;
      const atDefault = layer(); // 32 ≤ 1024
      expect(atDefault.fullAttentionThreshold).toBe(DEFAULT_FULL_ATTENTION_THRESHOLD);
      expect(atDefault.usesFullAttention(32)).toBe(true);
      expectTensorsClose(atDefault.apply([x, mask]) as tf.Tensor, full, 0);
      expectTensorsClose(layer(32).apply([x, mask]) as tf.Tensor, full, 0);
      // Above the threshold, and with it off: LSH attention, which differs from full attention here.
      for (const threshold of [31, 0]) {
        const lsh = layer(threshold);
        expect(lsh.usesFullAttention(32)).toBe(false);
        expect(maxAbsDiff((lsh.apply([x, mask]) as tf.Tensor).dataSync(), full.dataSync())).toBeGreaterThan(1e-3);
      }
      // Training mode too (the rule does not depend on it).
      expectTensorsClose(atDefault.apply([x, mask], { training: true }) as tf.Tensor, full, 0);
    });
  });

  it("allowDuplicateAttention and attendAcrossBuckets change the layer's output as they change the function's", () => {
    tf.tidy(() => {
      const qk = randomTensor([1, 2, 32, 4], 2) as tf.Tensor4D;
      const v = randomTensor([1, 2, 32, 4], 3) as tf.Tensor4D;
      const options = { nHashes: 3, chunkLength: 4, nBuckets: 4, seed: 1 };
      const plain = lshAttention(qk, v, options);
      for (const extra of [{ allowDuplicateAttention: false }, { attendAcrossBuckets: false }]) {
        expect(maxAbsDiff(lshAttention(qk, v, { ...options, ...extra }).dataSync(), plain.dataSync())).toBeGreaterThan(1e-3);
      }
      const x = randomTensor([1, 32, M], 4) as tf.Tensor3D;
      const outputs = [{}, { allowDuplicateAttention: false }, { attendAcrossBuckets: false }].map((extra) =>
        (new LSHSelfAttention({ numHeads: 2, nHashes: 3, chunkLength: 4, fullAttentionThreshold: 0, seed: 6, ...extra }).apply(x) as tf.Tensor).dataSync(),
      );
      expect(maxAbsDiff(outputs[0], outputs[1])).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(outputs[0], outputs[2])).toBeGreaterThan(1e-4);
    });
  });

  it('returnAttention: [output, positions, weights]; the output is the plain layer\'s; padding stripped; no leaks', async () => {
    const args = { numHeads: 2, nHashes: 2, chunkLength: 8, fullAttentionThreshold: 0, causal: true, seed: 8 };
    const input = tfl.input({ shape: [13, M] }); // 2·13 is not a multiple of 8: the layer pads to 16
    const layer = new LSHSelfAttention({ ...args, returnAttention: true });
    const model = tfl.model({ inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor[] });
    const plain = new LSHSelfAttention(args);
    const x = randomTensor([2, 13, M], 9);
    plain.apply(x);
    plain.setWeights(layer.getWeights());
    await expectNoLeaks(() => {
      const [out, positions, weights] = model.predict(x) as tf.Tensor[];
      const expected = plain.apply(x) as tf.Tensor;
      expectTensorsClose(out, expected, 0);
      expect(positions.shape.slice(0, 3)).toEqual([2, 2, 13]);
      const keys = positions.arraySync() as number[][][][];
      const w = weights.arraySync() as number[][][][];
      keys.flat(2).forEach((row, q) => {
        const query = q % 13;
        const used = row.filter((k) => k >= 0);
        expect(used.every((k) => k < 13)).toBe(true);
        expect([...used].sort((a, b) => a - b)).toEqual(used); // ascending
        // Causal: weight only on keys at or before the query.
        row.forEach((k, s) => {
          if (k > query) expect(w.flat(2)[q][s]).toBe(0);
        });
        expect(Math.abs(w.flat(2)[q].reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5);
      });
      return [out, positions, weights, expected];
    });
    x.dispose();
    model.dispose();
  });

  it('config round trip keeps the new arguments; errors name the layer', () => {
    const layer = lshSelfAttention({ numHeads: 2, fullAttentionThreshold: 0, allowDuplicateAttention: false, attendAcrossBuckets: false, returnAttention: true, seed: 1 });
    const config = layer.getConfig();
    expect(config).toMatchObject({ fullAttentionThreshold: 0, allowDuplicateAttention: false, attendAcrossBuckets: false, returnAttention: true });
    const copy = LSHSelfAttention.fromConfig(LSHSelfAttention, config) as LSHSelfAttention;
    expect(copy.getConfig()).toEqual(config);
    expect(lshSelfAttention({ seed: 1 }).getConfig().fullAttentionThreshold).toBe(DEFAULT_FULL_ATTENTION_THRESHOLD);
    expect(() => lshSelfAttention({ fullAttentionThreshold: -1 })).toThrow(/^LSHSelfAttention: fullAttentionThreshold must be a non-negative integer, got -1/);
    expect(() => lshSelfAttention({ allowDuplicateAttention: 0 as unknown as boolean })).toThrow(/^LSHSelfAttention: allowDuplicateAttention must be/);
    expect(() => lshSelfAttention({ attendAcrossBuckets: 'no' as unknown as boolean })).toThrow(/^LSHSelfAttention: attendAcrossBuckets must be/);
    expect(() => lshMultiHeadAttention({ numHeads: 2, keyDim: 4, returnAttention: true } as never)).toThrow(/^LSHMultiHeadAttention: returnAttention is not supported/);
  });
});
