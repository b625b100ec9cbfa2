/**
 * The MultiHeadAttention-compatible layers: the full twin is FullSelfAttention
 * (and a plain-loop layer), the LSH one in exact mode is the full twin, both
 * call forms (call and apply, symbolic too), attention masks [B, T] and
 * [B, T, T] turn into the padding mask, useCausalMask, save/load, leaks and
 * errors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import {
  FullMultiHeadAttention,
  FullSelfAttention,
  LSHMultiHeadAttention,
  fullMultiHeadAttention,
  lshMultiHeadAttention,
  paddingMaskFromAttentionMask,
} from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { checkEquivalence, exactLSH, expectEquivalent, fullAttentionTwin } from '../layers/testing/index.js';
import { describeBackends, expectTensorsClose, maxAbsDiff, randomTensor } from './helpers.js';
import { referenceFullAttention } from './reference.js';

const M = 12;
const HEADS = 3;
const KEY_DIM = 4;
const B = 2;
const tmp = mkdtempSync(join(tmpdir(), 'lsh-mha-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Padding masks [B][T]: the first row keeps everything, the second pads its last `padded` positions. */
function paddingRows(length: number, padded = 3): number[][] {
  return [Array.from({ length }, () => 1), Array.from({ length }, (_, i) => (i < length - padded ? 1 : 0))];
}

/** [B, T, T] with every row the padding pattern. */
function repeatedRows(rows: number[][]): tf.Tensor3D {
  return tf.tensor3d(rows.map((row) => row.map(() => row)));
}

/** [B, T, T] = q ⊗ k: zero rows for padded queries (what keras builds from query and key masks). */
function outerProduct(rows: number[][]): tf.Tensor3D {
  return tf.tensor3d(rows.map((row) => row.map((q) => row.map((k) => q * k))));
}

/** [B, T, T] = causal × padding. */
function causalTimesPadding(rows: number[][]): tf.Tensor3D {
  return tf.tensor3d(rows.map((row) => row.map((_, i) => row.map((k, j) => (j <= i ? k : 0)))));
}

/** Random weights (biases too) for a layer, so every weight counts. */
function randomizeWeights(layer: tf.layers.Layer, seed: number): void {
  tf.tidy(() => layer.setWeights(layer.getWeights().map((w, i) => randomTensor(w.shape, seed + i, 0.5))));
}

/** Zeroes the padded positions' rows of [B, T, M] (their outputs are unspecified). */
function kept(y: tf.Tensor, rows: number[][]): tf.Tensor {
  return tf.mul(y, tf.tensor3d(rows.map((row) => row.map((k) => [k]))));
}

/**
 * The layer in plain loops: x·Wqk + b and x·Wv + b split into heads, the
 * reference's full attention, heads merged, ·Wout + b. Weights in the
 * layers' order (qk, v, out kernels, then biases).
 */
function referenceLayer(x: number[][][], weights: number[][], causal: boolean, mask: number[][] | null): number[][][] {
  const [wqk, wv, wout, bqk, bv, bout] = weights;
  const inner = HEADS * KEY_DIM;
  // row [inSize] · kernel [inSize, outSize] (row-major) + bias [outSize]
  const project = (row: number[], kernel: number[], bias: number[], outSize: number) =>
    Array.from({ length: outSize }, (_, o) => bias[o] + row.reduce((s, value, i) => s + value * kernel[i * outSize + o], 0));
  const heads = (kernel: number[], bias: number[]) =>
    x.map((seq) => {
      const projected = seq.map((row) => project(row, kernel, bias, inner));
      return Array.from({ length: HEADS }, (_, h) => projected.map((p) => p.slice(h * KEY_DIM, (h + 1) * KEY_DIM)));
    });
  const attended = referenceFullAttention({ qk: heads(wqk, bqk), v: heads(wv, bv), causal, mask });
  return x.map((seq, b) => seq.map((_, t) => project(attended[b].flatMap((head) => head[t]), wout, bout, M)));
}

describeBackends('MultiHeadAttention-compatible layers', () => {
  it.each([false, true])(
    'useCausalMask %s: the full twin equals FullSelfAttention with the same weights and a plain-loop layer, in both call forms',
    (causal) => {
      const length = 9;
      const mha = fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, seed: 1 });
      const self = new FullSelfAttention({ numHeads: HEADS, headDim: KEY_DIM, causal, seed: 2 });
      const rows = paddingRows(length);
      tf.tidy(() => {
        const x = randomTensor([B, length, M], 3);
        const mask = tf.tensor2d(rows);
        const viaCall = mha.call(x, { value: x, attentionMask: mask, useCausalMask: causal }); // builds on first use
        randomizeWeights(mha, 10);
        self.apply([x, mask]);
        self.setWeights(mha.getWeights());
        const a = mha.call(x, { value: x, key: x, attentionMask: mask, useCausalMask: causal });
        const b = self.apply([x, mask]) as tf.Tensor;
        expectTensorsClose(kept(a, rows), kept(b, rows), 1e-5);
        const viaApply = mha.apply(x, { value: x, attentionMask: mask, useCausalMask: causal }) as tf.Tensor;
        expect(maxAbsDiff(viaApply.dataSync(), a.dataSync())).toBe(0);
        expect(viaCall.shape).toEqual([B, length, M]);
        const weights = mha.getWeights().map((w) => Array.from(w.dataSync()));
        const expected = referenceLayer(x.arraySync() as number[][][], weights, causal, rows);
        expectTensorsClose(kept(a, rows), kept(tf.tensor3d(expected), rows), 1e-4);
      });
    },
  );

  it.each([
    [13, 1, 1, false],
    [16, 2, 1, true],
    [11, 3, 2, true],
  ] as const)('T=%i, %i rounds, %i chunks before, useCausalMask %s: the LSH layer in exact mode equals the full twin', (length, nHashes, numChunksBefore, causal) => {
    const lsh = lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, nHashes, chunkLength: 4, nBuckets: 4, numChunksBefore, oneChunkPerRound: true, seed: 5 });
    const full = fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, seed: 6 });
    const rows = paddingRows(length, 2);
    tf.tidy(() => {
      const x = randomTensor([B, length, M], 7);
      const mask = tf.tensor2d(rows);
      lsh.call(x, { value: x });
      full.call(x, { value: x });
      randomizeWeights(lsh, 20);
      full.setWeights(lsh.getWeights());
      const a = lsh.call(x, { value: x, attentionMask: mask, useCausalMask: causal });
      const b = full.call(x, { value: x, attentionMask: mask, useCausalMask: causal });
      expectTensorsClose(kept(a, rows), kept(b, rows), 1e-5);
      // useCausalMask changes the result (it is not ignored).
      const other = full.call(x, { value: x, attentionMask: mask, useCausalMask: !causal });
      expect(maxAbsDiff(kept(other, rows).dataSync(), kept(b, rows).dataSync())).toBeGreaterThan(1e-3);
    });
  });

  it.each([
    ['[B, T]', false, (rows: number[][]) => tf.tensor2d(rows)],
    ['[B, T] bool', false, (rows: number[][]) => tf.cast(tf.tensor2d(rows), 'bool')],
    ['[B, T, T] repeated rows', false, repeatedRows],
    ['[B, T, T] query ⊗ key (zero rows for padded queries)', false, outerProduct],
    ['[B, T, T] repeated rows, with useCausalMask', true, repeatedRows],
    ['[B, T, T] causal × padding, with useCausalMask', true, causalTimesPadding],
    ['[B, T, T] causal × query ⊗ key, with useCausalMask', true, (rows: number[][]) => tf.mul(causalTimesPadding(rows), outerProduct(rows))],
  ] as const)('attentionMask %s gives what the layers\' padding mask gives', (_name, causal, makeMask) => {
    const length = 10;
    // Padding in the middle too, so that causal queries after it see the difference.
    const rows = [Array.from({ length }, () => 1), [1, 0, 0, 1, 1, 1, 1, 1, 0, 0]];
    for (const layer of [
      lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, nHashes: 2, chunkLength: 4, seed: 8 }),
      fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, seed: 8 }),
    ]) {
      tf.tidy(() => {
        const x = randomTensor([B, length, M], 9);
        const padding = tf.tensor2d(rows);
        const expected = layer.apply([x, padding], { useCausalMask: causal }) as tf.Tensor; // the self-attention layers' form
        const actual = layer.call(x, { value: x, attentionMask: makeMask(rows), useCausalMask: causal });
        expect(maxAbsDiff(kept(actual, rows).dataSync(), kept(expected, rows).dataSync())).toBeLessThan(1e-6);
        // ...and the mask matters.
        const unmasked = layer.call(x, { value: x, useCausalMask: causal });
        expect(maxAbsDiff(kept(unmasked, rows).dataSync(), kept(expected, rows).dataSync())).toBeGreaterThan(1e-3);
      });
    }
  });

  it('paddingMaskFromAttentionMask returns the padding pattern, and leaves no tensors', () => {
    const rows = [[1, 1, 0, 0], [1, 0, 1, 0]];
    const masks = [tf.tensor2d(rows), repeatedRows(rows), outerProduct(rows)];
    const before = tf.memory().numTensors;
    for (const mask of masks) {
      const padding = paddingMaskFromAttentionMask('test', mask, 2, 4, false);
      expect(padding.dtype).toBe('float32');
      expect(padding.arraySync()).toEqual(rows);
      padding.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(masks);
  });

  it('works in a functional model (symbolic apply with a [B, T, T] mask input); save/load keeps config and predictions', async () => {
    const length = 12;
    for (const [name, layer] of [
      ['lsh', lshMultiHeadAttention({ numHeads: HEADS, keyDim: 5, valueDim: 5, outputShape: [M], nHashes: 2, chunkLength: 4, nBuckets: [2, 2], biasInitializer: 'ones', seed: 11 })],
      ['full', fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, dropout: 0.1, useBias: false, kernelRegularizer: 'l2', seed: 12 })],
    ] as const) {
      const x = tf.input({ shape: [length, M] });
      const maskInput = tf.input({ shape: [length, length] });
      const y = layer.apply(x, { value: x, attentionMask: maskInput, useCausalMask: true }) as tf.SymbolicTensor;
      expect(y.shape).toEqual([null, length, M]);
      const model = tf.model({ inputs: [x, maskInput], outputs: y });
      const config = layer.getConfig();
      expect(config.keyDim).toBe(name === 'lsh' ? 5 : KEY_DIM);
      expect('headDim' in config || 'causal' in config).toBe(false);
      const dir = join(tmp, name);
      await model.save(fileSystem(dir));
      const loaded = await tf.loadLayersModel(fileSystem(dir));
      const reloaded = loaded.layers[loaded.layers.length - 1];
      expect(reloaded).toBeInstanceOf(name === 'lsh' ? LSHMultiHeadAttention : FullMultiHeadAttention);
      expect(reloaded.getConfig()).toEqual(config);
      const rows = paddingRows(length);
      tf.tidy(() => {
        const inputs = [randomTensor([B, length, M], 13), causalTimesPadding(rows)];
        const a = kept(model.predict(inputs) as tf.Tensor, rows);
        const b = kept(loaded.predict(inputs) as tf.Tensor, rows);
        expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
        // predict runs the layer with the useCausalMask it was applied with (tfjs-layers does not pass it on).
        const direct = (useCausalMask: boolean) => kept(layer.call(inputs[0], { attentionMask: tf.tensor2d(rows), useCausalMask }), rows);
        expect(maxAbsDiff(a.dataSync(), direct(true).dataSync())).toBeLessThan(1e-6);
        expect(maxAbsDiff(a.dataSync(), direct(false).dataSync())).toBeGreaterThan(1e-3);
        expect(layer.graphCausal).toBe(true);
        expect((reloaded as LSHMultiHeadAttention | FullMultiHeadAttention).graphCausal).toBe(true);
        // Causal (useCausalMask kept through predict): changing the last position leaves the others alone.
        // (Full attention only: in LSH attention a later token can move earlier ones between chunks.)
        if (name !== 'full') return;
        const changed = tf.concat([inputs[0].slice([0, 0, 0], [B, length - 1, M]), tf.onesLike(inputs[0].slice([0, length - 1, 0], [B, 1, M]))], 1);
        const c = (model.predict([changed, inputs[1]]) as tf.Tensor).slice([0, 0, 0], [1, length - 1, M]);
        expect(maxAbsDiff(c.dataSync(), (a as tf.Tensor).slice([0, 0, 0], [1, length - 1, M]).dataSync())).toBeLessThan(1e-6);
      });
      model.dispose();
      loaded.dispose();
    }
  });

  it('works with the testing tools: the full twin and exact mode convert these layers, causal calls included', async () => {
    const length = 16;
    const x = tf.input({ shape: [length, M] });
    const padding = tf.input({ shape: [length] });
    const attention = lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, nHashes: 2, chunkLength: 4, seed: 2 });
    const model = tf.model({ inputs: [x, padding], outputs: attention.apply(x, { value: x, attentionMask: padding, useCausalMask: true }) as tf.SymbolicTensor });
    randomizeWeights(attention, 30);
    const twin = fullAttentionTwin(model);
    const exact = exactLSH(model);
    expect(twin.layers.map((layer) => layer.getClassName())).toContain('FullMultiHeadAttention');
    expect(exact.layers.find((layer) => layer instanceof LSHMultiHeadAttention)?.getConfig().oneChunkPerRound).toBe(true);
    const inputs = [randomTensor([B, length, M], 31), tf.tensor2d(paddingRows(length))];
    const report = await expectEquivalent(model, inputs, { gradients: true });
    expect(report.layers).toHaveLength(1);
    // A twin that is not the model is caught.
    const [twinLayer] = twin.layers.filter((layer) => layer instanceof FullMultiHeadAttention);
    tf.tidy(() => twinLayer.setWeights(twinLayer.getWeights().map((w) => tf.mul(w, 1.1))));
    expect((await checkEquivalence(model, inputs, { twin })).equivalent).toBe(false);
    tf.dispose(inputs);
    twin.dispose();
    exact.dispose();
    model.dispose();
  });

  it('takes the mask an embedding({maskZero: true}) propagates, as the self-attention layers do', () => {
    const length = 8;
    const embedding = tf.layers.embedding({ inputDim: 7, outputDim: M, maskZero: true, embeddingsInitializer: tf.initializers.randomNormal({ seed: 1 }) });
    const attention = fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, seed: 3 });
    const ids = tf.input({ shape: [length], dtype: 'int32' });
    const embedded = embedding.apply(ids) as tf.SymbolicTensor;
    const model = tf.model({ inputs: ids, outputs: attention.apply(embedded, { value: embedded }) as tf.SymbolicTensor });
    const rows = paddingRows(length);
    tf.tidy(() => {
      const tokens = tf.tensor2d(rows.map((row) => row.map((k, i) => k * (1 + (i % 6)))), [B, length], 'int32');
      const a = kept(model.predict(tokens) as tf.Tensor, rows);
      const b = kept(attention.call(embedding.apply(tokens) as tf.Tensor, { attentionMask: tf.tensor2d(rows) }), rows);
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBeLessThan(1e-6);
    });
    model.dispose();
  });

  it('leaves no tensors behind (call with masks, training, apply)', () => {
    const length = 8;
    const layer = lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, nHashes: 2, chunkLength: 4, dropout: 0.2, seed: 4 });
    const x = randomTensor([B, length, M], 5);
    const rows = paddingRows(length);
    const masks = [tf.tensor2d(rows), outerProduct(rows)];
    layer.call(x, { value: x }).dispose(); // builds
    const before = tf.memory().numTensors;
    for (const attentionMask of masks) {
      layer.call(x, { value: x, attentionMask, useCausalMask: true }).dispose();
      layer.call(x, { value: x, attentionMask, training: true }).dispose();
      (layer.apply(x, { value: x, attentionMask }) as tf.Tensor).dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(masks.every((mask) => !mask.isDisposed)).toBe(true);
    tf.dispose([x, ...masks]);
  });

  it.each<[string, (x: tf.Tensor) => unknown, RegExp]>([
    ['cross-attention (value)', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { value: tf.zeros([B, 5, M]) }),
      /LSHMultiHeadAttention: value must be the query itself \(or left out\), got a different tensor \[2, 5, 12\]: LSH attention shares queries and keys.*self-attention only.*value: x.*cross-attention use tfjs-layers' MultiHeadAttention/],
    ['cross-attention (key), symbolic', () => {
      const [q, k] = [tf.input({ shape: [4, M] }), tf.input({ shape: [4, M] })];
      return fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).apply(q, { value: q, key: k });
    }, /FullMultiHeadAttention: key must be the query itself.*\[null, 4, 12\]/],
    ['a value equal in numbers but another tensor', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { value: x.clone() }), /value must be the query itself/],
    ['a mask that is not padding', (x) => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: tf.tensor3d(Array.from({ length: B }, () => Array.from({ length: 6 }, (_, i) => Array.from({ length: 6 }, (_, j) => ((i + j) % 3 === 0 ? 0 : 1))))) }),
      /attentionMask row 0 of batch 0 masks key 0, which other rows keep: only key-padding masks .* are supported by LSH attention; pass a \[B, T\] padding mask, with useCausalMask: true/],
    ['a causal mask without useCausalMask', (x) => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: causalTimesPadding(paddingRows(6, 0)) }),
      /attentionMask row 0 of batch 0 masks key 1, which other rows keep.*useCausalMask: true/],
    ['a non-binary mask', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: tf.fill([B, 6, 6], 0.5) }), /attentionMask must hold only 0 \(padding\) and 1 \(keep\), got 0.5 at \[0, 0, 0\]/],
    ['a rank-1 mask', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: tf.ones([6]) }), /attentionMask must be a tensor \[B, T\] or \[B, T, T\] = \[2, 6, 6\], got shape \[6\]/],
    ['a rank-4 mask', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: tf.ones([B, 1, 6, 6]) }), /got shape \[2, 1, 6, 6\]/],
    ['a [B, T, S] mask', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: tf.ones([B, 6, 4]) }), /attentionMask must have shape \[B, T, T\] = \[2, 6, 6\] to match the query \(self-attention.*got \[2, 6, 4\]/],
    ['a [B, T] mask of the wrong length', (x) => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { attentionMask: tf.ones([B, 5]) }), /attentionMask must have shape \[B, T\] = \[2, 6\]/],
    ['a rank-2 query', () => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(tf.ones([6, M]), {}), /FullMultiHeadAttention: input must have shape \[B, T, M\] with M known, got \[6, 12\]/],
    ['useCausalMask not a boolean', (x) => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { useCausalMask: 1 }), /useCausalMask must be/],
    ['returnAttentionScores', (x) => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM }).call(x, { returnAttentionScores: true }), /returnAttentionScores is not supported/],
    ['valueDim ≠ keyDim', () => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, valueDim: 8 }), /LSHMultiHeadAttention: valueDim must equal keyDim .*got valueDim 8 with keyDim 4; leave valueDim out/],
    ['outputShape ≠ M', (x) => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, outputShape: [7] }).call(x, {}), /FullMultiHeadAttention: outputShape \[7\] must be the query's size M = 12.*tf.layers.dense\(\{units: 7\}\)/],
    ['outputShape of two axes', () => fullMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, outputShape: [3, 4] }), /outputShape must be the query's size M, as a number or \[M\].*got \[3,4\]/],
    ['attentionAxes', () => lshMultiHeadAttention({ numHeads: HEADS, keyDim: KEY_DIM, attentionAxes: [1] } as never), /LSHMultiHeadAttention: attentionAxes is not supported/],
    ['no keyDim', () => lshMultiHeadAttention({ numHeads: HEADS } as never), /LSHMultiHeadAttention: keyDim must be a positive integer, got undefined/],
    ['zero heads', () => fullMultiHeadAttention({ numHeads: 0, keyDim: 4 }), /FullMultiHeadAttention: numHeads must be a positive integer, got 0/],
    ['odd nBuckets', () => lshMultiHeadAttention({ numHeads: 2, keyDim: 4, nBuckets: 5 }), /LSHMultiHeadAttention: nBuckets must be even/],
  ])('errors: %s', (_name, make, message) => {
    tf.tidy(() => {
      const x = randomTensor([B, 6, M], 1);
      expect(() => make(x)).toThrow(message);
    });
  });
});
