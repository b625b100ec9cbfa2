// Type-checked, not run, by test/consumer.test.ts in the installed projects
// (moduleResolution node16 as ESM and as CommonJS, and bundler).
import * as tf from '@tensorflow/tfjs';
import { lshAttention } from 'tfjs-lsh-attention';
import { initBackend, type BackendName } from 'tfjs-lsh-attention/backend';
import { LSHSelfAttention, lshSelfAttention } from 'tfjs-lsh-attention/layers';
import { SimHash } from 'tfjs-lsh-attention/lsh';
import { fileSystem } from 'tfjs-lsh-attention/node';
import { checkEquivalence, fullAttentionTwin, type EquivalenceReport } from 'tfjs-lsh-attention/testing';

export async function buildModel(): Promise<tf.Sequential> {
  const backend: BackendName = await initBackend({ backend: ['wasm', 'cpu'] });
  // The library's layer is the app's tf.layers.Layer (one tfjs-layers, so one class).
  const attention: tf.layers.Layer = lshSelfAttention({ numHeads: 2, nHashes: 2, chunkLength: 8, causal: true });
  const model = tf.sequential({ layers: [tf.layers.embedding({ inputDim: 8, outputDim: 16, inputLength: 16 }), attention] });
  model.add(tf.layers.dense({ units: 8, activation: 'softmax' }));
  const qk: tf.Tensor4D = tf.randomNormal([1, 2, 16, 4]);
  const attended: tf.Tensor4D = lshAttention(qk, qk, { chunkLength: 8 });
  const handler: tf.io.IOHandler = fileSystem('/tmp/model');
  console.log(backend, attended.shape, handler, attention instanceof LSHSelfAttention, typeof SimHash);
  return model;
}

export async function checkModel(model: tf.LayersModel, tokens: tf.Tensor): Promise<EquivalenceReport> {
  const twin: tf.LayersModel = fullAttentionTwin(model);
  twin.dispose();
  const report = await checkEquivalence(model, tokens, { gradients: true, tolerance: 1e-4 });
  const worst: number = report.layers[0].difference;
  console.log(worst);
  // @ts-expect-error tolerance is a number
  await checkEquivalence(model, tokens, { tolerance: 'small' });
  return report;
}

// The declarations are typed (not any): these must be errors.
// @ts-expect-error nHashes is a number
lshSelfAttention({ nHashes: 'two' });
// @ts-expect-error 'gpu' is not a backend name (webgl and webgpu are, for a page)
initBackend({ backend: 'gpu' });
// @ts-expect-error lshAttention takes rank-4 tensors
lshAttention(tf.zeros([2, 3]), tf.zeros([2, 3]));
