/**
 * localAttention and LocalSelfAttention: against fullAttention run on each
 * chunk's band of keys (the equivalent band mask, as tensors: outputs and
 * gradients), against the plain-loop band reference (outputs and attention
 * weights), causal and padded; the layer's padding, config and errors; and
 * reformerLM mixing 'local' and 'lsh' blocks.
 *
 * Legend: B batch, H heads, T length, D head size, Dv value size, C chunkLength.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
import { denseAttention, fullAttention, localAttention } from '../src/index.js';
import { FullSelfAttention, LocalSelfAttention, attentionLayers, localSelfAttention, reformerLM } from '../layers/index.js';
import { describeBackends, expectNoLeaks, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';
import { referenceBandAttention } from './reference.js';

interface Case {
  name: string;
  before: number;
  after: number;
  causal: boolean;
  padded: boolean;
}

const CASES: Case[] = [
  { name: 'one chunk back', before: 1, after: 0, causal: false, padded: false },
  { name: 'one back, causal, padded', before: 1, after: 0, causal: true, padded: true },
  { name: 'two back, one ahead, padded', before: 2, after: 1, causal: false, padded: true },
  { name: 'own chunk only, causal', before: 0, after: 0, causal: true, padded: false },
];
const [B, H, T, D, C] = [2, 2, 16, 4, 4];
const Dv = 3;

/** [B, T] mask padding the last 3 positions of batch element 1 and a block inside element 0. */
function paddingMask(): tf.Tensor2D {
  const values = new Float32Array(B * T).fill(1);
  values.fill(0, T + T - 3, 2 * T);
  values.fill(0, 5, 8);
  return tf.tensor2d(values, [B, T]);
}

/** Local attention as fullAttention over each chunk's band of chunks, keeping the chunk's rows. */
function bandedFullAttention(qk: tf.Tensor4D, v: tf.Tensor4D, c: Case, mask?: tf.Tensor2D): tf.Tensor4D {
  const chunks = T / C;
  const rows: tf.Tensor[] = [];
  for (let j = 0; j < chunks; j++) {
    const first = Math.max(0, j - c.before);
    const last = Math.min(chunks - 1, j + c.after);
    const size = (last - first + 1) * C;
    const band = fullAttention(
      tf.slice(qk, [0, 0, first * C, 0], [-1, -1, size, -1]),
      tf.slice(v, [0, 0, first * C, 0], [-1, -1, size, -1]),
      { causal: c.causal, mask: mask ? (tf.slice(mask, [0, first * C], [-1, size]) as tf.Tensor2D) : undefined },
    );
    rows.push(tf.slice(band, [0, 0, (j - first) * C, 0], [-1, -1, C, -1]));
  }
  return tf.concat(rows, 2) as tf.Tensor4D;
}

describeBackends('localAttention', () => {
  it.each(CASES)('$name: equals fullAttention on the band, with the same gradients', async (c) => {
    await expectNoLeaks(() =>
      tf.tidy(() => {
        const qk = randomTensor([B, H, T, D], 1) as tf.Tensor4D;
        const v = randomTensor([B, H, T, Dv], 2) as tf.Tensor4D;
        const upstream = randomTensor([B, H, T, Dv], 3);
        const mask = c.padded ? paddingMask() : undefined;
        const options = { chunkLength: C, numChunksBefore: c.before, numChunksAfter: c.after, causal: c.causal, mask };
        expectTensorsClose(localAttention(qk, v, options), bandedFullAttention(qk, v, c, mask), 1e-5);
        const loss = (f: (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor) => (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor4D), upstream));
        const local = tf.grads(loss((a, b) => localAttention(a, b, options)))([qk, v]);
        const banded = tf.grads(loss((a, b) => bandedFullAttention(a, b, c, mask)))([qk, v]);
        expect(tf.max(tf.abs(local[0])).dataSync()[0]).toBeGreaterThan(1e-2); // not trivially zero
        expectTensorsClose(local[0], banded[0], 1e-4);
        expectTensorsClose(local[1], banded[1], 1e-4);
      }),
    );
  });

  it.each(CASES)('$name: output and attention weights equal the plain-loop band reference', (c) => {
    tf.tidy(() => {
      const qk = randomTensor([B, H, T, D], 4) as tf.Tensor4D;
      const v = randomTensor([B, H, T, Dv], 5) as tf.Tensor4D;
      const mask = c.padded ? paddingMask() : undefined;
      const { output, attention } = localAttention(qk, v, { chunkLength: C, numChunksBefore: c.before, numChunksAfter: c.after, causal: c.causal, mask, returnAttention: true });
      const nested = (x: tf.Tensor, size: number) => {
        const flat = Array.from(x.dataSync());
        return Array.from({ length: B }, (_, b) => Array.from({ length: H }, (_, h) => Array.from({ length: T }, (_, t) => flat.slice(((b * H + h) * T + t) * size, ((b * H + h) * T + t + 1) * size))));
      };
      const maskRows = mask ? (mask.arraySync() as number[][]) : null;
      const expected = referenceBandAttention({ qk: nested(qk, D), v: nested(v, Dv), causal: c.causal, mask: maskRows, chunkLength: C, numChunksBefore: c.before, numChunksAfter: c.after });
      expect(maxAbsDiff(output.dataSync(), expected.output.flat(3) as unknown as number[])).toBeLessThan(1e-4);
      expect(maxAbsDiff(denseAttention(attention).dataSync(), expected.weights.flat(3) as unknown as number[])).toBeLessThan(1e-5);
      // S = min(T, L): every slot a key of the band, none outside it.
      expect(attention.positions.shape).toEqual([B, H, T, Math.min(T, C * (1 + c.before + c.after))]);
      tf.sum(attention.weights, -1).dataSync().forEach((s) => expect(Math.abs(s - 1)).toBeLessThan(1e-5));
      // The listed keys are exactly the band (no stand-ins for neighbours past the ends).
      const keys = attention.positions.arraySync() as number[][][][];
      keys.flat(2).forEach((row, q) => {
        const chunk = Math.floor((q % T) / C);
        const band = Array.from({ length: T }, (_, j) => j).filter((j) => Math.floor(j / C) >= chunk - c.before && Math.floor(j / C) <= chunk + c.after);
        expect(row.filter((k) => k >= 0)).toEqual(band);
      });
    });
  });

  it('refuses T not a multiple of C, and bad options', () => {
    const x = tf.zeros([1, 1, 10, 4]) as tf.Tensor4D;
    expect(() => localAttention(x, x, { chunkLength: 4 })).toThrow(/^localAttention: T = 10 must be a multiple of chunkLength 4; pad T to 12/);
    expect(() => localAttention(x, x, { chunkLength: 0 })).toThrow(/^localAttention: chunkLength must be a positive integer/);
    expect(() => localAttention(x, x, { chunkLength: 5, numChunksBefore: -1 })).toThrow(/^localAttention: numChunksBefore/);
    x.dispose();
  });
});

describeBackends('LocalSelfAttention', () => {
  const M = 8;

  it('pads T to the chunks; with a window over every chunk it equals FullSelfAttention (same weights); causal band differs', () => {
    tf.tidy(() => {
      const x = randomTensor([2, 13, M], 6) as tf.Tensor3D; // 13: not a multiple of C = 4
      const mask = tf.tensor2d([Array(13).fill(1), [...Array(10).fill(1), 0, 0, 0]]);
      const wide = localSelfAttention({ numHeads: 2, chunkLength: 4, numChunksBefore: 4, causal: true, seed: 7 });
      const full = new FullSelfAttention({ numHeads: 2, causal: true, seed: 7 });
      const narrow = localSelfAttention({ numHeads: 2, chunkLength: 4, numChunksBefore: 1, causal: true, seed: 7 });
      const outputs = [wide, full, narrow].map((layer) => layer.apply([x, mask]) as tf.Tensor);
      expect(maxAbsDiff(full.getWeights()[0].dataSync(), wide.getWeights()[0].dataSync())).toBe(0);
      expectTensorsClose(outputs[0], outputs[1], 1e-5);
      // Only positions past the band (8 and on) see fewer keys under the narrow window.
      const [a, b] = [outputs[1].arraySync() as number[][][], outputs[2].arraySync() as number[][][]];
      expect(maxAbsDiff(a[0].slice(0, 8).flat(), b[0].slice(0, 8).flat())).toBeLessThan(1e-5);
      expect(maxAbsDiff(a[0].slice(8).flat(), b[0].slice(8).flat())).toBeGreaterThan(1e-3);
    });
  });

  it('returnAttention: [output, positions, weights] in a model; config round trip; no leaks', async () => {
    const input = tfl.input({ shape: [10, M] });
    const layer = new LocalSelfAttention({ numHeads: 2, chunkLength: 4, numChunksAfter: 1, returnAttention: true, seed: 3 });
    const [y, positions, weights] = layer.apply(input) as tfl.SymbolicTensor[];
    expect(y.shape).toEqual([null, 10, M]);
    expect(positions.shape).toEqual([null, 2, 10, null]);
    const model = tfl.model({ inputs: input, outputs: [y, positions, weights] });
    const x = randomTensor([1, 10, M], 8);
    await expectNoLeaks(() => {
      const [out, at, w] = model.predict(x) as tf.Tensor[];
      expect(out.shape).toEqual([1, 10, M]);
      const keys = at.dataSync();
      expect(Math.max(...keys)).toBeLessThan(10); // the layer's padding (T 10 → 12) is not a key
      tf.tidy(() => tf.sum(w, -1).dataSync().forEach((s) => expect(Math.abs(s - 1)).toBeLessThan(1e-5)));
      return [out, at, w];
    });
    const copy = LocalSelfAttention.fromConfig(LocalSelfAttention, layer.getConfig()) as LocalSelfAttention;
    expect(copy.getConfig()).toEqual(layer.getConfig());
    expect(copy.numChunksAfter).toBe(1);
    x.dispose();
    model.dispose();
  });

  it('errors name the layer', () => {
    expect(() => localSelfAttention({ chunkLength: 0 })).toThrow(/^LocalSelfAttention: chunkLength must be a positive integer, got 0/);
    expect(() => localSelfAttention({ numChunksBefore: 1.5 })).toThrow(/^LocalSelfAttention: numChunksBefore/);
    expect(() => localSelfAttention({ returnAttention: 'yes' as unknown as boolean })).toThrow(/^LocalSelfAttention: returnAttention must be/);
  });

  it("reformerLM({ attention: ['local', 'lsh'] }) mixes them per block, and survives a JSON round trip", async () => {
    const model = reformerLM({ vocabSize: 11, maxLength: 32, modelSize: 8, numHeads: 2, attention: ['local', 'lsh'], chunkLength: 8, fullAttentionThreshold: 0, seed: 4 });
    expect(attentionLayers(model).map((layer) => layer.getClassName())).toEqual(['LocalSelfAttention', 'LSHSelfAttention']);
    const tokens = tf.tensor2d([Array.from({ length: 32 }, (_, i) => i % 11)], [1, 32], 'int32');
    const logits = model.predict(tokens) as tf.Tensor;
    const copy = await tfl.models.modelFromJSON(JSON.parse(JSON.stringify(model.toJSON(null, false))));
    copy.setWeights(model.getWeights());
    const again = copy.predict(tokens) as tf.Tensor;
    expectTensorsClose(again, logits, 1e-6);
    tf.dispose([tokens, logits, again]);
    model.dispose();
    copy.dispose();
  });
});
