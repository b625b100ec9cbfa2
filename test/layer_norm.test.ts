/**
 * The library's layer norm against tfjs-layers' layerNormalization (values
 * and gradients, including the weights'), and its save/load round trip.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
import { LayerNorm, layerNorm } from '../layers/index.js';
import { describeBackends, expectNoLeaks, expectTensorsClose, randomTensor } from './helpers.js';

describeBackends('LayerNorm', () => {
  it('equals tfjs-layers layerNormalization, values and gradients', async () => {
    const ours = layerNorm({ epsilon: 1e-3 });
    const theirs = tfl.layers.layerNormalization({ epsilon: 1e-3 });
    ours.apply(tfl.input({ shape: [5, 6] }));
    theirs.apply(tfl.input({ shape: [5, 6] }));
    // Non-trivial scale and offset, the same in both.
    const gamma = randomTensor([6], 2, 0.5);
    const beta = randomTensor([6], 3, 0.5);
    ours.setWeights([gamma, beta]);
    theirs.setWeights([gamma, beta]);
    const x = randomTensor([3, 5, 6], 1, 2);
    const upstream = randomTensor([3, 5, 6], 4);
    await expectNoLeaks(() => {
      tf.tidy(() => {
        expectTensorsClose(ours.apply(x) as tf.Tensor, theirs.apply(x) as tf.Tensor, 1e-5);
        const loss = (layer: tfl.layers.Layer) => () => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, upstream)) as tf.Scalar;
        const a = tf.variableGrads(loss(ours), ours.trainableWeights.map((w) => w.read() as tf.Variable));
        const b = tf.variableGrads(loss(theirs), theirs.trainableWeights.map((w) => w.read() as tf.Variable));
        expect(Object.keys(a.grads)).toHaveLength(2);
        Object.values(a.grads).forEach((g, i) => expectTensorsClose(g, Object.values(b.grads)[i], 1e-4));
        const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(ours.apply(input) as tf.Tensor, upstream)))(x);
        const dxTheirs = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(theirs.apply(input) as tf.Tensor, upstream)))(x);
        expectTensorsClose(dx, dxTheirs, 1e-4);
      });
    });
    [gamma, beta, x, upstream].forEach((t) => t.dispose());
  });

  it('round-trips its config and refuses a bad epsilon', () => {
    const layer = new LayerNorm({ epsilon: 1e-4, name: 'norm' });
    const copy = LayerNorm.fromConfig(LayerNorm, layer.getConfig()) as LayerNorm;
    expect(copy.epsilon).toBe(1e-4);
    expect(() => layerNorm({ epsilon: 0 })).toThrow(/LayerNorm: epsilon must be a positive finite number, got 0/);
    expect(() => layerNorm({ epsilon: Number.NaN })).toThrow(/got NaN/);
  });
});
