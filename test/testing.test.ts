/**
 * tfjs-lsh-attention/testing on users' kinds of models: a reformerLM (LSH
 * blocks, and LSH mixed with full), a functional model with an
 * `embedding({maskZero: true})` padding mask feeding an LSH layer and a
 * reversible stack, and a model with a padding-mask input. The exact-mode
 * copy equals the full-attention twin (outputs, each layer, gradients); a
 * twin given other weights in one layer fails naming that layer; the copies
 * leave the original alone; the approximation report's error falls with
 * more rounds; nothing leaks; bad input is refused clearly.
 */
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import {
  FullSelfAttention,
  LSHSelfAttention,
  attentionLayers,
  chunkedFeedForward,
  fullSelfAttention,
  lmLoss,
  lshSelfAttention,
  reformerLM,
  reversibleStack,
} from '../layers/index.js';
import {
  LSH_ONLY_ARGS,
  approximationReport,
  checkEquivalence,
  exactLSH,
  expectEquivalent,
  fullAttentionTwin,
  randomInputs,
} from '../layers/testing/index.js';
import { describeBackends, maxAbsDiff, randomTensor } from './helpers.js';

const VOCAB = 12;

/** A causal LM: LSH blocks, or LSH and full mixed. */
function languageModel(attention: Array<'lsh' | 'full'>, maxLength = 32): tf.LayersModel {
  return reformerLM({ vocabSize: VOCAB, maxLength, modelSize: 16, numHeads: 2, attention, nHashes: 2, chunkLength: 8, fullAttentionThreshold: 0, seed: 1 });
}

/**
 * tokens (0 = padding) → embedding(maskZero) → LSH attention (not causal, 3
 * rounds) → reversible stack (causal LSH block, full block) → dense.
 */
function paddedModel(): tf.LayersModel {
  const tokens = tf.input({ shape: [null], dtype: 'int32' });
  const embedded = tf.layers
    .embedding({ inputDim: VOCAB, outputDim: 8, maskZero: true, embeddingsInitializer: tf.initializers.randomNormal({ stddev: 1, seed: 1 }) })
    .apply(tokens);
  const attended = lshSelfAttention({ numHeads: 2, nHashes: 3, chunkLength: 4, fullAttentionThreshold: 0, seed: 3 }).apply(embedded);
  const stack = reversibleStack({
    blocks: [
      { attention: lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, causal: true, fullAttentionThreshold: 0, seed: 4 }), feedForward: chunkedFeedForward({ units: 16, seed: 5 }) },
      { attention: fullSelfAttention({ numHeads: 2, causal: true, seed: 6 }), feedForward: chunkedFeedForward({ units: 16, seed: 7 }) },
    ],
    seed: 8,
  }).apply(attended);
  const logits = tf.layers.dense({ units: VOCAB, kernelInitializer: tf.initializers.glorotUniform({ seed: 9 }) }).apply(stack) as tf.SymbolicTensor;
  return tf.model({ inputs: tokens, outputs: logits });
}

/** x [B, T, 8] and a padding mask [B, T] as inputs of one LSH layer. */
function maskInputModel(): tf.LayersModel {
  const x = tf.input({ shape: [null, 8] });
  const mask = tf.input({ shape: [null] });
  const y = lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, causal: true, fullAttentionThreshold: 0, seed: 11 }).apply([x, mask]) as tf.SymbolicTensor;
  return tf.model({ inputs: [x, mask], outputs: y });
}

/** A tf.sequential, never run: embedding(maskZero) → LSH (causal, 2 rounds) → dense. */
function sequentialModel(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.embedding({ inputDim: VOCAB, outputDim: 8, maskZero: true, inputLength: 24, embeddingsInitializer: tf.initializers.randomNormal({ stddev: 1, seed: 12 }) }),
      lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 4, causal: true, fullAttentionThreshold: 0, seed: 13 }),
      tf.layers.dense({ units: VOCAB, kernelInitializer: tf.initializers.glorotUniform({ seed: 14 }) }),
    ],
  });
}

/** The model's config and a copy of its weights' values: what must not change. */
function snapshot(model: tf.LayersModel): { config: string; weights: Float32Array[]; nHashes: number[] } {
  return {
    config: JSON.stringify(model.getConfig()),
    weights: model.getWeights().map((w) => w.dataSync() as Float32Array),
    nHashes: attentionLayers(model).map((layer) => (layer instanceof LSHSelfAttention ? layer.nHashes : 0)),
  };
}

describeBackends('testing', () => {
  it.each([
    ['reformerLM, LSH blocks', () => languageModel(['lsh', 'lsh'])],
    ['reformerLM, LSH and full blocks', () => languageModel(['lsh', 'full', 'lsh'])],
    ['embedding(maskZero) → LSH → reversible stack (LSH, full)', paddedModel],
    ['a padding-mask input', maskInputModel],
    ['a tf.sequential with a padding mask, never run', sequentialModel],
  ])('%s: the exact-mode copy equals the full-attention twin (outputs, each layer, gradients); the model is untouched; no leaks', async (_name, make) => {
    const model = make();
    const inputs = randomInputs(model, { length: 24 }); // row 2 padded where the model takes padding
    const before = snapshot(model);
    const tensorsBefore = tf.memory().numTensors;
    const report = await expectEquivalent(model, inputs, { gradients: true });
    expect(tf.memory().numTensors).toBe(tensorsBefore);

    expect(report.equivalent).toBe(true);
    expect(report.summary).toMatch(/^equivalent: /);
    expect(report.layers.map((layer) => [layer.name, layer.className])).toEqual(attentionLayers(model).map((layer) => [layer.name, layer.getClassName()]));
    expect(report.layers.every((layer) => layer.calls === 1)).toBe(true);
    expect(report.gradients?.map((g) => g.weight)).toEqual(model.trainableWeights.map((w) => w.originalName));
    // Measured over these five models with 5 seeds each, cpu and wasm: outputs within 4.1e-7 and
    // layers within 3.9e-7 of max(1, their scale), gradients within 1.0e-6 of the largest
    // gradient entry (the defaults allow 1e-4 and 1e-3).
    expect(report.maxOutputDifference).toBeLessThan(2e-5);
    for (const layer of report.layers) expect(layer.difference, layer.name).toBeLessThan(2e-5);
    const gradientScale = Math.max(...(report.gradients ?? []).map((g) => g.scale));
    expect(gradientScale).toBeGreaterThan(0);
    expect(report.maxGradientDifference as number).toBeLessThan(2e-4 * gradientScale);
    // Every compared thing is non-trivial: outputs and layer outputs are not zeros.
    expect(report.outputs[0].scale).toBeGreaterThan(0.1);
    for (const layer of report.layers) expect(layer.scale, layer.name).toBeGreaterThan(0.01);

    // The model is untouched: config, weights, rounds, predictions.
    const after = snapshot(model);
    expect(after.config).toBe(before.config);
    expect(after.nHashes).toEqual(before.nHashes);
    after.weights.forEach((w, i) => expect(maxAbsDiff(w, before.weights[i])).toBe(0));
    tf.dispose(inputs);
    model.dispose();
  });

  it('the check has teeth: LSH as it runs (chunks of 8 at T=24) is not its full twin; a twin with one layer changed fails naming it', async () => {
    const model = languageModel(['lsh', 'full', 'lsh']);
    const inputs = randomInputs(model, { length: 24 });
    // The copies as built are not trivially equal: the model itself (3 chunks per round) differs from the twin.
    const twin = fullAttentionTwin(model);
    const direct = tf.tidy(() => maxAbsDiff((model.predict(inputs[0]) as tf.Tensor).dataSync(), (twin.predict(inputs[0]) as tf.Tensor).dataSync()));
    expect(direct).toBeGreaterThan(1e-2);

    // One attention layer of the twin (the third, inside the reversible stack) with other weights.
    const victim = attentionLayers(twin)[2];
    tf.tidy(() => victim.setWeights(victim.getWeights().map((w, i) => tf.add(w, randomTensor(w.shape, 40 + i, 0.05)))));
    const twinWeights = twin.getWeights().map((w) => w.dataSync().slice());
    const tensorsBefore = tf.memory().numTensors;
    const report = await checkEquivalence(model, inputs, { twin, gradients: true });
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(report.equivalent).toBe(false);
    expect(report.layers.map((layer) => layer.withinTolerance)).toEqual([true, true, false]);
    expect(report.layers[2].difference).toBeGreaterThan(1e-2);
    await expect(expectEquivalent(model, inputs, { twin })).rejects.toThrow(
      new RegExp(`^expectEquivalent: attention layer '${victim.name}' \\(LSHSelfAttention, the 3rd of 3 attention layers\\) differs from its full-attention twin by [\\d.e-]+`),
    );
    // The given twin is not changed (a copy runs).
    twin.getWeights().forEach((w, i) => expect(maxAbsDiff(w.dataSync(), twinWeights[i])).toBe(0));

    // A non-attention layer that differs is named as an output difference.
    const other = fullAttentionTwin(model);
    const dense = other.layers[other.layers.length - 1];
    tf.tidy(() => dense.setWeights(dense.getWeights().map((w) => tf.add(w, 0.1))));
    await expect(expectEquivalent(model, inputs, { twin: other })).rejects.toThrow(/output 0 \('.*'\) differs from the full-attention twin's by .*a layer other than the attention differs/);
    tf.dispose(inputs);
    [model, twin, other].forEach((m) => m.dispose());
  });

  it('fullAttentionTwin and exactLSH: classes, configs and weights; LSH_ONLY_ARGS is all that tells the layers apart', () => {
    const model = paddedModel();
    const twin = fullAttentionTwin(model);
    const exact = exactLSH(model);
    expect(attentionLayers(twin).map((layer) => layer.getClassName())).toEqual(['FullSelfAttention', 'FullSelfAttention', 'FullSelfAttention']);
    expect(attentionLayers(exact).map((layer) => layer.getClassName())).toEqual(['LSHSelfAttention', 'LSHSelfAttention', 'FullSelfAttention']);
    expect(attentionLayers(exact).map((layer) => (layer as LSHSelfAttention).oneChunkPerRound ?? null)).toEqual([true, true, null]);
    expect(attentionLayers(model).map((layer) => (layer as LSHSelfAttention).oneChunkPerRound ?? null)).toEqual([false, false, null]);
    // The twin keeps names, causal and the other shared settings.
    attentionLayers(model).forEach((layer, i) => {
      const twinLayer = attentionLayers(twin)[i];
      expect(twinLayer.name).toBe(layer.name);
      expect(twinLayer.causal).toBe(layer.causal);
      expect(twinLayer.seed).toBe(layer.seed);
    });
    for (const copy of [twin, exact]) {
      expect(copy.getWeights().length).toBe(model.getWeights().length);
      copy.getWeights().forEach((w, i) => expect(maxAbsDiff(w.dataSync(), model.getWeights()[i].dataSync())).toBe(0));
      expect(copy.weights.map((w) => w.originalName)).toEqual(model.weights.map((w) => w.originalName));
    }
    // Every LSH-only argument set: the twin's config is a FullSelfAttention's with the shared arguments.
    const shared = { numHeads: 2, headDim: 3, causal: true, dropout: 0.1, useBias: false, seed: 5, memoryLimitBytes: 2 ** 30, checkFinite: true };
    const lsh = new LSHSelfAttention({ ...shared, nHashes: 3, chunkLength: 4, nBuckets: 8, numChunksBefore: 2, numChunksAfter: 1, hashFamily: 'simhash', oneChunkPerRound: true, fullAttentionThreshold: 0, allowDuplicateAttention: false, attendAcrossBuckets: false, name: 'a' });
    const x = tf.input({ shape: [8, 6] });
    const lshModel = tf.model({ inputs: x, outputs: lsh.apply(x) as tf.SymbolicTensor });
    const lshOnly = Object.keys(lsh.getConfig()).filter((key) => !(key in new FullSelfAttention({ ...shared, name: 'a' }).getConfig()));
    expect(lshOnly.sort()).toEqual([...LSH_ONLY_ARGS].sort());
    const lshTwin = fullAttentionTwin(lshModel);
    const expected = new FullSelfAttention({ ...shared, name: 'a' }).getConfig();
    expect(attentionLayers(lshTwin)[0].getConfig()).toEqual(expected);
    [model, twin, exact, lshModel, lshTwin].forEach((m) => m.dispose());
  });

  it('approximationReport: error falls with more rounds, a loss row, time and memory; the model keeps its rounds; no leaks', async () => {
    const model = reformerLM({ vocabSize: VOCAB, maxLength: 64, modelSize: 16, numHeads: 2, attention: ['lsh', 'full'], nHashes: 1, chunkLength: 8, fullAttentionThreshold: 0, seed: 2,
      kernelInitializer: tf.initializers.randomNormal({ stddev: 0.5, seed: 3 }) });
    const tokens = tf.randomUniformInt([1, 65], 0, VOCAB, 4);
    const inputs = tf.slice(tokens, [0, 0], [1, 64]);
    const targets = tf.slice(tokens, [0, 1], [1, 64]);
    const tensorsBefore = tf.memory().numTensors;
    const printed: string[] = [];
    const progress: string[] = [];
    const report = await approximationReport(model, inputs, {
      nHashes: [1, 2, 4, 8],
      loss: ([logits]) => lmLoss(targets, logits),
      runs: 1,
      print: (table) => printed.push(table),
      onProgress: (line) => progress.push(line),
    });
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect((attentionLayers(model)[0] as LSHSelfAttention).nHashes).toBe(1);
    expect(report.length).toBe(64);
    expect(report.attentionLayers).toEqual({ lsh: 1, full: 1 });
    expect(report.rows.map((row) => row.nHashes)).toEqual([1, 2, 4, 8]);
    const errors = report.rows.map((row) => row.relativeError);
    // Measured (cpu and wasm alike): 0.344, 0.275, 0.135, 0.107; over model seeds 2-6, 1 round
    // 0.34-0.68, 8 rounds 0.11-0.23 (0.30-0.36 of 1 round's), each row below the one before.
    expect(errors[0]).toBeGreaterThan(1e-3); // LSH with chunks of 8 at T=64 is an approximation
    expect(errors[3]).toBeLessThan(errors[0] / 2);
    for (let i = 1; i < errors.length; i++) expect(errors[i]).toBeLessThan(errors[i - 1] * 1.2);
    for (const row of report.rows) {
      expect(row.milliseconds).toBeGreaterThan(0);
      expect(row.peakBytes).toBeGreaterThan(0);
      expect(Number.isFinite(row.loss)).toBe(true);
      expect(row.lossDifference).toBeCloseTo((row.loss as number) - (report.full.loss as number), 6);
    }
    // The loss moves less with 8 rounds than with 1 (measured: −0.394 at 1 round, −0.018 at 8).
    expect(Math.abs(report.rows[3].lossDifference as number)).toBeLessThan(Math.abs(report.rows[0].lossDifference as number));
    expect(report.full.peakBytes).toBeGreaterThan(0);
    expect(printed).toEqual([report.table]);
    expect(report.table).toMatch(/\| full \| – \| 0 \| 0 \| [\d.]+ \| 0 \|/);
    expect(report.table.split('\n').filter((line) => line.startsWith('| lsh |'))).toHaveLength(4);
    expect(progress).toHaveLength(5);
    tf.dispose([tokens, inputs, targets]);
    model.dispose();
  });

  it('randomInputs: token ids in range, padding in the last row, mask inputs; lengths the model cannot take are refused', () => {
    const lm = languageModel(['lsh'], 32);
    const [tokens] = randomInputs(lm, { length: 20, batch: 3 });
    expect(tokens.dtype).toBe('int32');
    expect(tokens.shape).toEqual([3, 20]);
    const ids = Array.from(tokens.dataSync());
    expect(Math.min(...ids)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...ids)).toBeLessThan(VOCAB);
    expect(randomInputs(lm)[0].shape).toEqual([2, 32]); // the model's own length: its position embedding's
    expect(() => randomInputs(lm, { length: 33 })).toThrow(/randomInputs: the model's position embedding .* covers 32 positions, got length 33; use a length ≤ 32/);

    const padded = paddedModel();
    const [withPadding] = randomInputs(padded, { length: 8 });
    const rows = withPadding.arraySync() as number[][];
    expect(rows[0].every((id) => id > 0)).toBe(true);
    expect(rows[1].map((id) => (id > 0 ? 1 : 0))).toEqual([1, 1, 1, 1, 1, 1, 0, 0]);
    expect(() => randomInputs(padded)).toThrow(/randomInputs: the model does not fix its input length .* pass a length/);

    const [x, mask] = randomInputs(maskInputModel(), { length: 4 });
    expect(x.shape).toEqual([2, 4, 8]);
    expect(mask.arraySync()).toEqual([[1, 1, 1, 1], [1, 1, 1, 0]]);

    const fixed = tf.sequential({ layers: [tf.layers.dense({ units: 8, inputShape: [16, 4] }), lshSelfAttention({ numHeads: 2, chunkLength: 8, seed: 1 })] });
    expect(randomInputs(fixed)[0].shape).toEqual([2, 16, 4]);
    expect(() => randomInputs(fixed, { length: 8 })).toThrow(/randomInputs: the model takes sequences of length 16 only \(its input shape is \[null, 16, 4\]\), got length 8; use 16/);
    tf.dispose([tokens, withPadding, x, mask]);
    [lm, padded, fixed].forEach((m) => m.dispose());
  });

  it.each<[string, (model: tf.LayersModel, inputs: tf.Tensor[]) => Promise<unknown>, RegExp]>([
    ['not a model', () => checkEquivalence({} as tf.LayersModel, []), /checkEquivalence: model must be a tf.LayersModel .* got \{\}/],
    ['no LSH layer', (_m, inputs) => checkEquivalence(tf.sequential({ layers: [fullSelfAttention({ numHeads: 2, inputShape: [24, 16] })] }), inputs), /checkEquivalence: the model has no LSHSelfAttention layer \(its layers: FullSelfAttention\); there is nothing to compare/],
    ['two inputs for one', (model, inputs) => checkEquivalence(model, [inputs[0], inputs[0]]), /checkEquivalence: the model has 1 input \(\[null, null\]\), got 2 tensors/],
    ['a wrong rank', (model) => checkEquivalence(model, tf.zeros([2, 24, 3])), /checkEquivalence: inputs\[0\] must have shape \[null, null\] \(null: any size\), got \[2, 24, 3\]/],
    ['a negative tolerance', (model, inputs) => checkEquivalence(model, inputs, { tolerance: -1 }), /checkEquivalence: tolerance must be a finite number ≥ 0, got -1/],
    ['a twin with other layers', (model, inputs) => checkEquivalence(model, inputs, { twin: languageModel(['full']) }), /checkEquivalence: the twin has 1 attention layers but the model has 2/],
    ['rounds not integers', (model, inputs) => approximationReport(model, inputs, { nHashes: [1, 2.5] }), /approximationReport: nHashes must be a non-empty list of positive integers, got \[1,2.5\]/],
  ])('errors: %s', async (_name, call, message) => {
    const model = languageModel(['lsh', 'full']);
    const inputs = randomInputs(model, { length: 24 });
    await expect(call(model, inputs)).rejects.toThrow(message);
    tf.dispose(inputs);
    model.dispose();
  });
});
