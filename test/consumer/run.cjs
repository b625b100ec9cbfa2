/**
 * What both consumer apps do once they have loaded tfjs and the library (one
 * with `import`, one with `require`): check every subpath's main export, pick
 * a backend, train one step of embedding → lshSelfAttention → dense in the
 * app's tf.sequential, predict, rebuild the model from its JSON, check it
 * against its full-attention twin (tfjs-lsh-attention/testing), save it for
 * the `tfjs-lsh-attention check` command, and say which tfjs-core each side
 * resolves. Prints one JSON line for test/consumer.test.ts.
 */
'use strict';
const { createRequire } = require('node:module');

/** Each subpath and the export that shows it loaded. */
const SUBPATH_EXPORTS = {
  '.': 'lshAttention',
  './layers': 'lshSelfAttention',
  './backend': 'initBackend',
  './node': 'fileSystem',
  './lsh': 'SimHash',
  './testing': 'checkEquivalence',
};

/** Where the app saves its model, for the command (relative to the app's folder). */
const SAVED_MODEL = 'saved-model';

/** The file `@tensorflow/tfjs-core` resolves to from `fromFile`. */
function coreSeenFrom(fromFile) {
  return createRequire(fromFile).resolve('@tensorflow/tfjs-core');
}

/**
 * @param tf the app's `@tensorflow/tfjs`
 * @param library the library's modules by subpath ('.', './layers', …)
 */
async function run(tf, library) {
  const subpaths = {};
  for (const [subpath, name] of Object.entries(SUBPATH_EXPORTS)) subpaths[subpath] = typeof library[subpath][name];

  const backend = await library['./backend'].initBackend();

  const batch = 4;
  const length = 16;
  const vocab = 8;
  const attention = library['./layers'].lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 8, causal: true, seed: 1 });
  const model = tf.sequential({
    layers: [
      tf.layers.embedding({ inputDim: vocab, outputDim: 16, inputLength: length }),
      attention,
      tf.layers.dense({ units: vocab, activation: 'softmax' }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'sparseCategoricalCrossentropy' });
  // Task: predict the previous token.
  const rows = Array.from({ length: batch }, (_, r) => Array.from({ length }, (_, i) => (r + 3 * i) % vocab));
  const x = tf.tensor2d(rows, [batch, length], 'int32');
  const y = tf.tensor3d(rows.map((row) => row.map((_, i) => [i === 0 ? 0 : row[i - 1]])), [batch, length, 1]);
  const before = attention.getWeights()[0].dataSync().slice();
  const history = await model.fit(x, y, { epochs: 1, batchSize: batch, verbose: 0 });
  const after = attention.getWeights()[0].dataSync();
  const prediction = model.predict(x);
  const rowSums = await tf.sum(prediction, -1).data();

  const rebuilt = await tf.models.modelFromJSON(JSON.parse(model.toJSON()));

  // The app's model against its full-attention twin, in exact mode.
  const equivalence = await library['./testing'].checkEquivalence(model, x, { gradients: true });
  const twin = library['./testing'].fullAttentionTwin(model);
  const twinClasses = twin.layers.map((layer) => layer.getClassName());
  twin.dispose();
  await model.save(library['./node'].fileSystem(SAVED_MODEL));

  const libraryEntry = require.resolve('tfjs-lsh-attention');
  const tfjsEntry = require.resolve('@tensorflow/tfjs');
  return {
    subpaths,
    backend,
    appTfjsVersion: tf.version.tfjs,
    appCoreVersion: tf.version_core,
    coreSeenByLibrary: coreSeenFrom(libraryEntry),
    coreSeenByTfjs: coreSeenFrom(tfjsEntry),
    loss: history.history.loss[0],
    attentionWeightsChanged: after.some((value, i) => value !== before[i]),
    predictionShape: prediction.shape,
    worstRowSumError: Math.max(...Array.from(rowSums, (sum) => Math.abs(sum - 1))),
    rebuiltLayerClasses: rebuilt.layers.map((layer) => layer.getClassName()),
    equivalent: equivalence.equivalent,
    maxOutputDifference: equivalence.maxOutputDifference,
    twinLayerClasses: twinClasses,
    savedModel: SAVED_MODEL,
  };
}

module.exports = { run };
