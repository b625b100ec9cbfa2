// Run: npx tsx examples/01-compare-layers.ts [T]     (default T = 1024; EXAMPLE_QUICK=1 for T = 256)
//
// Builds the same small model twice, once with LSHSelfAttention and once with
// FullSelfAttention sharing its weights, runs both on one input and prints how
// far apart their outputs are (for several hash rounds) and how long each took.
// Look at: the difference shrinking as rounds grow, and the time columns.
import * as tf from '@tensorflow/tfjs';
import { FullSelfAttention, LSHSelfAttention } from '../layers/index.js';
import { describeBackend, initBackend } from '../src/backend.js';

const length = Number(process.argv[2] ?? (process.env.EXAMPLE_QUICK ? 256 : 1024));
const modelSize = 64;
const numHeads = 4;
const vocab = 32;

await initBackend();
console.log(`backend: ${describeBackend()}; T = ${length}, model size ${modelSize}, ${numHeads} heads\n`);

/** tokens → embedding → attention: returns the model and its attention layer. */
function build(attention: tf.layers.Layer): tf.LayersModel {
  const tokens = tf.input({ shape: [length], dtype: 'int32' });
  const embedded = tf.layers
    .embedding({ inputDim: vocab, outputDim: modelSize, embeddingsInitializer: tf.initializers.randomNormal({ stddev: 4, seed: 1 }) })
    .apply(tokens) as tf.SymbolicTensor;
  return tf.model({ inputs: tokens, outputs: attention.apply(embedded) as tf.SymbolicTensor });
}

/** Median wall time of `runs` predictions (after one warm-up), with the result read back. */
async function time(model: tf.LayersModel, input: tf.Tensor, runs = 3): Promise<{ ms: number; out: ArrayLike<number> }> {
  let out: ArrayLike<number> = [];
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const start = performance.now();
    const y = model.predict(input) as tf.Tensor;
    out = await y.data();
    y.dispose();
    if (i > 0) times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], out };
}

const input = tf.tidy(() => tf.cast(tf.mul(tf.randomUniform([1, length], 0, 1, 'float32', 7), vocab), 'int32'));
const full = new FullSelfAttention({ numHeads, seed: 2 });
const fullModel = build(full);
const reference = await time(fullModel, input);
const scale = Array.from(reference.out).reduce((s, x) => s + Math.abs(x), 0) / reference.out.length;

console.log('| attention | rounds | ms (median of 3) | mean abs diff to full | relative |');
console.log('|---|---|---|---|---|');
console.log(`| full | - | ${reference.ms.toFixed(1)} | 0 | 0 |`);
for (const nHashes of [1, 2, 4, 8]) {
  const lsh = new LSHSelfAttention({ numHeads, nHashes, chunkLength: 64, fullAttentionThreshold: 0, seed: 2 }) // LSH even where exact attention is faster;
  const lshModel = build(lsh);
  lshModel.setWeights(fullModel.getWeights()); // same embedding and projections
  const result = await time(lshModel, input);
  let diff = 0;
  for (let i = 0; i < result.out.length; i++) diff += Math.abs(result.out[i] - reference.out[i]);
  diff /= result.out.length;
  console.log(`| lsh | ${nHashes} | ${result.ms.toFixed(1)} | ${diff.toExponential(2)} | ${(diff / scale).toFixed(3)} |`);
  lshModel.dispose();
}
console.log('\n(relative = mean abs diff / mean abs output of full attention. The embeddings are scaled so that');
console.log(' attention is sharp, as in trained models; where attention is diffuse, LSH, which keeps only the');
console.log(' keys that hash near the query, differs more.)');
fullModel.dispose();
input.dispose();
