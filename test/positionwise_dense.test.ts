/**
 * PositionwiseDense (reformerLM's logits) against tfjs-layers' Dense with the
 * same weights: values and gradients (inputs and weights), on every test
 * backend; its config round trip and its input errors.
 */
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { PositionwiseDense, positionwiseDense } from '../layers/index.js';
import { describeBackends, randomTensor } from './helpers.js';

describeBackends('PositionwiseDense', () => {
  it('equals tf.layers.dense with the same weights: output and the gradients of input, kernel and bias', () => {
    const [B, T, M, U] = [2, 5, 6, 7];
    const ours = positionwiseDense({ units: U, seed: 3 });
    const theirs = tf.layers.dense({ units: U });
    ours.build([B, T, M]);
    theirs.build([B, T, M]);
    theirs.setWeights(ours.getWeights());
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = randomTensor([B, T, M], 1) as tf.Tensor3D;
      const dy = randomTensor([B, T, U], 2);
      const [a, b] = [ours, theirs].map((layer) => {
        const value = layer.apply(x) as tf.Tensor;
        const { value: _loss, grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, dy)) as tf.Scalar, layer.trainableWeights.map((w) => w.read() as tf.Variable));
        const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input) as tf.Tensor, dy)))(x);
        return { value, grads: Object.values(grads), dx };
      });
      const close = (p: tf.Tensor, q: tf.Tensor) => expect(tf.max(tf.abs(tf.sub(p, q))).dataSync()[0]).toBeLessThan(1e-5);
      close(a.value, b.value);
      close(a.dx, b.dx);
      expect(a.grads.map((g) => g.shape)).toEqual([[M, U], [U]]);
      a.grads.forEach((g, i) => close(g, b.grads[i]));
      // Not trivially equal: the gradients are not zero.
      expect(tf.max(tf.abs(a.grads[0])).dataSync()[0]).toBeGreaterThan(1e-2);
    });
    expect(tf.memory().numTensors).toBe(before);
    for (const layer of [ours, theirs]) for (const weight of layer.weights) weight.dispose();
  });

  it('round-trips its config (same seed, same initial kernel) and refuses bad input', () => {
    const layer = new PositionwiseDense({ units: 4, useBias: false, seed: 9 });
    const copy = tf.serialization.SerializationMap.getMap().classNameMap.PositionwiseDense[1](
      tf.serialization.SerializationMap.getMap().classNameMap.PositionwiseDense[0],
      layer.getConfig(),
    ) as PositionwiseDense;
    expect(copy.getConfig()).toEqual(layer.getConfig());
    tf.tidy(() => {
      const x = randomTensor([1, 3, 5], 4);
      const y1 = layer.apply(x) as tf.Tensor;
      const y2 = copy.apply(x) as tf.Tensor;
      expect(Array.from(y2.dataSync())).toEqual(Array.from(y1.dataSync()));
      expect(layer.getWeights().length).toBe(1);
    });
    expect(() => new PositionwiseDense({ units: 0 })).toThrow(/PositionwiseDense: units must be a positive integer, got 0/);
    expect(() => positionwiseDense({ units: 2 }).apply(tf.zeros([2, 3]))).toThrow(/PositionwiseDense: input must have shape \[B, T, M\] with M known, got \[2, 3\]/);
    layer.dispose();
    copy.dispose();
  });
});
