/**
 * Cached generation: the attention caches against plain-loop references
 * (LSH: the bucket rule; full: causal attention's last row), and generate()
 * with the cache against generate() without it: identical greedy output and
 * logits for full attention (reversible blocks, learned and axial position
 * embeddings), the switch to the uncached path past the context, the
 * fallback for models the cache cannot run, errors, and no leaked tensors.
 */
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { FullAttentionCache, LSHAttentionCache, fullAttention, randomRotations } from '../src/index.js';
import {
  cachedGenerationSupport,
  fullSelfAttention,
  generate,
  lshSelfAttention,
  reformerLM,
  startCachedGeneration,
  type AttentionKind,
} from '../layers/index.js';
import { exactLSH } from '../layers/testing/index.js';
import { describeBackends, maxAbsDiff, randomTensor } from './helpers.js';
import { referenceCachedFull, referenceCachedLSH } from './reference_cached.js';
import { referenceHashMargin } from './reference.js';

const [B, H, D, PROMPT, NEW] = [2, 2, 8, 12, 10];

/** qk and v of PROMPT + NEW positions, the prompt's padding mask (row 1 pads two positions). */
function inputs(seed: number) {
  const qk = randomTensor([B, H, PROMPT + NEW, D], seed) as tf.Tensor4D;
  const v = randomTensor([B, H, PROMPT + NEW, D], seed + 1) as tf.Tensor4D;
  const mask = [Array(PROMPT).fill(1), Array.from({ length: PROMPT }, (_, i) => (i === 3 || i === 7 ? 0 : 1))];
  return { qk, v, mask, fullMask: mask.map((row) => [...row, ...Array(NEW).fill(1)]) };
}

/** Runs a cache over the inputs: the prompt appended, then each new position stepped. [B, H, NEW, D] as nested arrays. */
function runCache(cache: FullAttentionCache | LSHAttentionCache, qk: tf.Tensor4D, v: tf.Tensor4D, mask: number[][]): number[][][][] {
  const steps: tf.Tensor4D[] = [];
  tf.tidy(() => {
    cache.append(qk.slice([0, 0, 0, 0], [-1, -1, PROMPT, -1]), v.slice([0, 0, 0, 0], [-1, -1, PROMPT, -1]), tf.tensor2d(mask));
    for (let p = PROMPT; p < PROMPT + NEW; p++) {
      steps.push(tf.keep(cache.next(qk.slice([0, 0, p, 0], [-1, -1, 1, -1]), v.slice([0, 0, p, 0], [-1, -1, 1, -1]))));
    }
  });
  const out = tf.concat(steps, 2);
  const nested = out.arraySync() as number[][][][];
  tf.dispose([...steps, out]);
  return nested;
}

function flat(x: number[][][][]): number[] {
  return x.flat(3);
}

describeBackends('attention caches', () => {
  it.each([
    ['one bucket factor', 4, 2],
    ['factorised buckets', [2, 4], 2],
    ['one round', 6, 1],
  ] as const)('LSHAttentionCache follows the bucket rule of the plain-loop reference (%s)', (_name, nBuckets, nHashes) => {
    const { qk, v, mask, fullMask } = inputs(11);
    const rotations = randomRotations({ dim: D, nHashes, nBuckets: nBuckets as number | number[], seed: 3 });
    const reference = {
      qk: qk.arraySync(),
      v: v.arraySync(),
      rotations: rotations.arraySync(),
      nBuckets: nBuckets as number | number[],
      mask: fullMask,
      promptLength: PROMPT,
    };
    // Clear of float32 near-ties, where a bucket may legitimately differ.
    expect(referenceHashMargin(reference.qk, reference.rotations, reference.nBuckets, fullMask)).toBeGreaterThan(1e-4);
    const before = tf.memory().numTensors;
    const cache = new LSHAttentionCache({ batch: B, heads: H, dim: D, rotations, nBuckets: nBuckets as number | number[], capacity: 4 });
    const actual = runCache(cache, qk, v, mask);
    expect(cache.length).toBe(PROMPT + NEW);
    cache.dispose();
    const expected = referenceCachedLSH(reference);
    expect(maxAbsDiff(flat(actual), flat(expected))).toBeLessThan(1e-5);
    // The rule is not full attention: some new position misses some earlier key.
    const full = referenceCachedFull(reference);
    expect(maxAbsDiff(flat(actual), flat(full))).toBeGreaterThan(1e-2);
    tf.dispose([qk, v, rotations]);
    expect(tf.memory().numTensors).toBe(before - 3);
  });

  it('FullAttentionCache: each new position is causal full attention at that position', () => {
    const { qk, v, mask, fullMask } = inputs(21);
    const cache = new FullAttentionCache({ batch: B, heads: H, dim: D, capacity: 3 });
    const actual = runCache(cache, qk, v, mask);
    cache.dispose();
    expect(maxAbsDiff(flat(actual), flat(referenceCachedFull({ qk: qk.arraySync(), v: v.arraySync(), mask: fullMask, promptLength: PROMPT })))).toBeLessThan(1e-5);
    // The library's fullAttention agrees (its last rows).
    const whole = tf.tidy(() => fullAttention(qk, v, { causal: true, mask: tf.tensor2d(fullMask) }).slice([0, 0, PROMPT, 0], [-1, -1, NEW, -1]));
    expect(maxAbsDiff(flat(actual), whole.dataSync())).toBeLessThan(1e-5);
    tf.dispose([qk, v, whole]);
  });

  it('refuse wrong inputs, saying what they expected', () => {
    const rotations = randomRotations({ dim: D, nHashes: 2, nBuckets: 4, seed: 1 });
    expect(() => new LSHAttentionCache({ batch: 1, heads: 1, dim: 6, rotations, nBuckets: 4 })).toThrow(
      /^LSHAttentionCache: rotations must have shape \[D, R, ΣK\/2\] = \[6, R, 2\] for dim 6 and nBuckets 4, got \[8, 2, 2\]/,
    );
    expect(() => new FullAttentionCache({ batch: 0, heads: 1, dim: 4 })).toThrow(/^FullAttentionCache: batch must be a positive integer/);
    const cache = new LSHAttentionCache({ batch: 1, heads: 2, dim: D, rotations, nBuckets: 4 });
    const qk = tf.zeros([1, 2, 3, D]) as tf.Tensor4D;
    expect(() => cache.next(qk, qk)).toThrow(/^LSHAttentionCache: qk must have shape \[B, H, 1, D\] = \[1, 2, 1, 8\], got \[1, 2, 3, 8\]/);
    expect(() => cache.append(qk, tf.zeros([1, 2, 2, D]) as tf.Tensor4D)).toThrow(/^LSHAttentionCache: v must have shape \[1, 2, 3, 8\] to match qk/);
    cache.dispose();
    expect(() => cache.append(qk, qk)).toThrow(/^LSHAttentionCache: the cache was disposed/);
    tf.dispose([rotations, qk]);
  });
});

/** A small causal LM. */
function lm(attention: AttentionKind[], positionEmbedding: 'learned' | 'axial', extra: Record<string, unknown> = {}) {
  return reformerLM({
    vocabSize: 11,
    maxLength: 32,
    modelSize: 16,
    numHeads: 2,
    attention,
    nHashes: 2,
    chunkLength: 4,
    feedForwardUnits: 24,
    positionEmbedding,
    axialShape: [4, 8],
    seed: 5,
    ...extra,
  });
}

describeBackends('generate with the cache', () => {
  it.each([
    ['full attention, reversible, axial positions', ['full', 'full'], 'axial', {}],
    ['full attention, plain residuals, learned positions', ['full'], 'learned', { reversible: false }],
    // Short contexts are at or below the LSH layers' fullAttentionThreshold (default 1024): exact attention, cached too.
    ['LSH layers at or below their fullAttentionThreshold', ['lsh', 'lsh'], 'axial', {}],
  ] as const)('%s: the same greedy tokens and logits as without the cache', async (_name, attention, positions, extra) => {
    const model = lm([...attention], positions, extra);
    const prompts = [[1, 2, 3, 4, 5], [7, 7, 1, 0, 9]];
    const before = tf.memory().numTensors;
    const cached = await generate(model, prompts, { steps: 12, cache: true });
    expect(tf.memory().numTensors).toBe(before);
    expect(await generate(model, prompts, { steps: 12, cache: false })).toEqual(cached);
    // Step by step, the logits of every new position against a whole-sequence prediction.
    const run = startCachedGeneration(model, 32);
    const sequence = cached.map((s) => s.slice(0, 17));
    let worst = 0;
    const prefill = run.prefill(tf.tensor2d(prompts, undefined, 'int32'));
    const whole = model.predict(tf.tensor2d(sequence, undefined, 'int32')) as tf.Tensor3D;
    worst = Math.max(worst, maxAbsDiff(prefill.dataSync(), whole.slice([0, 0, 0], [-1, 5, -1]).dataSync()));
    for (let p = 5; p < 17; p++) {
      const logits = run.step(tf.tensor2d(sequence.map((s) => [s[p]]), undefined, 'int32'));
      worst = Math.max(worst, maxAbsDiff(logits.dataSync(), whole.slice([0, p, 0], [-1, 1, -1]).dataSync()));
    }
    run.dispose();
    expect(worst).toBeLessThan(1e-4);
    tf.disposeVariables();
  });

  it('LSH layers: cached generation is deterministic, leaks nothing, and equals uncached in exact mode (one chunk per round)', async () => {
    const model = lm(['lsh', 'full'], 'axial');
    const prompts = [[3, 1, 4, 1, 5, 9, 2, 6]];
    const before = tf.memory().numTensors;
    const first = await generate(model, prompts, { steps: 10 });
    expect(await generate(model, prompts, { steps: 10 })).toEqual(first);
    expect(tf.memory().numTensors).toBe(before);
    // Exact mode: the cached LSH layer is full attention, as the uncached one.
    const exact = exactLSH(model);
    expect(await generate(exact, prompts, { steps: 10, cache: true })).toEqual(await generate(exact, prompts, { steps: 10, cache: false }));
    exact.dispose();
  });

  it('past the context the steps run uncached, with the same result as without the cache', async () => {
    const model = lm(['full', 'full'], 'learned');
    const prompts = [[1, 2, 3]];
    const options = { steps: 9, contextLength: 6 };
    expect(await generate(model, prompts, { ...options, cache: true })).toEqual(await generate(model, prompts, { ...options, cache: false }));
  });

  it('a model the cache cannot run: uncached by default, an error with cache: true', async () => {
    const input = tf.input({ shape: [null], dtype: 'int32' });
    const embedded = tf.layers.embedding({ inputDim: 5, outputDim: 8 }).apply(input) as tf.SymbolicTensor;
    const attended = lshSelfAttention({ numHeads: 2, chunkLength: 4, seed: 1 }).apply(embedded) as tf.SymbolicTensor; // not causal
    const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 5 }).apply(attended) as tf.SymbolicTensor });
    const support = cachedGenerationSupport(model);
    expect(support.supported).toBe(false);
    expect(await generate(model, [[1, 2]], { steps: 2, contextLength: 16 })).toHaveLength(1);
    await expect(generate(model, [[1, 2]], { steps: 2, cache: true })).rejects.toThrow(
      /^generate: cache: true, but attention layer .* is not causal .*; pass cache: false/,
    );
    await expect(generate(model, [[1, 2]], { steps: 2, cache: 'yes' as unknown as boolean })).rejects.toThrow(/^generate: cache must be true or false/);
    const causal = tf.model({
      inputs: input,
      outputs: fullSelfAttention({ numHeads: 2, causal: true, seed: 1 }).apply(embedded) as tf.SymbolicTensor,
    });
    expect(cachedGenerationSupport(causal)).toEqual({ supported: true });
  });
});
