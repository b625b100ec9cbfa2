// Run: npx tsx examples/02-test-your-model.ts [T]     (default T = 1024; EXAMPLE_QUICK=1 for T = 256)
//
// Builds a small causal language model with two LSH attention blocks, proves that
// its LSH attention in exact mode (one chunk per round) equals full attention at
// T = 32 (the outputs, each attention layer, the loss gradients of every weight),
// shows that a twin with one layer's weights changed fails the check naming that
// layer, then measures 1, 2, 4 and 8 hash rounds against full attention at the
// model's own length T, as `approximationReport` prints it.
// Look at: "equivalent", the relative error falling as rounds grow, and the time
// and memory columns. The model is untrained: its attention is diffuse, the case
// LSH approximates worst (it keeps the keys that hash near each query); for a
// trained model, see examples/20-duplication-task.ts.
import * as tf from '@tensorflow/tfjs';
import { attentionLayers, lmLoss, reformerLM } from '../layers/index.js';
import {
  approximationReport,
  checkEquivalence,
  expectEquivalent,
  fullAttentionTwin,
  randomInputs,
} from '../layers/testing/index.js';
import { describeBackend, initBackend } from '../src/backend.js';

const length = Number(process.argv[2] ?? (process.env.EXAMPLE_QUICK ? 256 : 1024));
const checkLength = 32;

await initBackend();
console.log(`backend: ${describeBackend()}; the model's length T = ${length}, equivalence checked at T = ${checkLength}\n`);

const model = reformerLM({
  vocabSize: 64,
  maxLength: length,
  modelSize: 32,
  numHeads: 2,
  attention: ['lsh', 'lsh'],
  nHashes: 2,
  chunkLength: 32,
  fullAttentionThreshold: 0, // LSH attention at every length (the layers' default computes exact attention up to T = 1024)
  seed: 1,
});

// 1. Exact mode equals the full-attention twin at small n.
const small = randomInputs(model, { length: checkLength, batch: 2 }); // token ids [2, 32]
const proof = await expectEquivalent(model, small, { gradients: true });
console.log(`equivalence at T = ${checkLength}: ${proof.summary}`);
for (const layer of proof.layers) {
  console.log(`  ${layer.name} (${layer.className}): max difference ${layer.difference.toExponential(2)}`);
}
console.log(`  largest gradient difference: ${(proof.maxGradientDifference as number).toExponential(2)}\n`);

// 2. The check has teeth: a twin whose last attention layer has other weights fails, naming it.
const broken = fullAttentionTwin(model);
const victim = attentionLayers(broken)[1]; // the second block's, inside the model's ReversibleStack
tf.tidy(() => victim.setWeights(victim.getWeights().map((w) => tf.mul(w, 1.1))));
const failed = await checkEquivalence(model, small, { twin: broken });
console.log(`a twin with ${victim.name}'s weights scaled by 1.1: ${failed.equivalent ? 'equivalent (wrong!)' : `not equivalent: ${failed.summary}`}\n`);
broken.dispose();
tf.dispose(small);

// 3. What LSH costs in accuracy and buys in time at the model's length.
const tokens = tf.randomUniformInt([1, length + 1], 0, 64, 3); // next-token inputs and targets
const inputs = tf.slice(tokens, [0, 0], [1, length]);
const targets = tf.slice(tokens, [0, 1], [1, length]);
const report = await approximationReport(model, inputs, {
  nHashes: [1, 2, 4, 8],
  loss: ([logits]) => lmLoss(targets, logits),
  print: true,
  onProgress: (line) => console.error(line),
});
const [first, last] = [report.rows[0], report.rows[report.rows.length - 1]];
console.log(
  `\nrelative error: ${first.nHashes} round ${first.relativeError.toFixed(3)} → ${last.nHashes} rounds ${last.relativeError.toFixed(3)}; ` +
    `the loss moves by at most ${Math.max(...report.rows.map((row) => Math.abs(row.lossDifference as number))).toFixed(4)}`,
);
tf.dispose([tokens, inputs, targets]);
model.dispose();
console.log(`tensors left: ${tf.memory().numTensors}`);
