/**
 * A worker of the attention thread pool (src/threads.ts): loads the wasm
 * backend, then computes the slices it is sent with the library's own
 * attention functions, writing each output into the shared buffer and
 * waking the calling thread. Errors go back through the buffer too (the
 * calling thread is blocked in Atomics.wait and cannot take messages).
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { fullAttention, lshAttention } from './attention.js';
import { initBackend } from './backend.js';
import { ERROR_BYTES, HEADER_BYTES, STATE_DONE, STATE_FAILED, type SliceMessage } from './threads.js';

const port = parentPort;
if (port === null) throw new Error('thread_worker: run it as a worker thread (src/threads.ts starts it)');

/** Computes one slice into the shared buffer and wakes the calling thread. */
function compute(m: SliceMessage): void {
  const header = new Int32Array(m.buffer, 0, 2);
  try {
    tf.tidy(() => {
      const [qk, v, dy] = m.inputs.map(
        ({ offset, shape }) => tf.tensor<tf.Rank>(new Float32Array(m.buffer, offset, shape.reduce((a, b) => a * b, 1)), shape) as tf.Tensor4D,
      );
      const options: Record<string, unknown> = { ...m.options };
      for (const [key, [values, shape, dtype]] of Object.entries(m.tensors)) options[key] = tf.tensor(values, shape, dtype);
      if (m.fn !== 'lsh' && m.fn !== 'full') throw new Error(`thread_worker: unknown function "${String(m.fn)}", expected "lsh" or "full"`);
      const attend = (a: tf.Tensor, b: tf.Tensor) =>
        m.fn === 'lsh' ? lshAttention(a as tf.Tensor4D, b as tf.Tensor4D, options) : fullAttention(a as tf.Tensor4D, b as tf.Tensor4D, options);
      const outputs = m.mode === 'gradient' ? tf.grads(attend)([qk, v], dy) : [attend(qk, v)];
      // Straight from the wasm heap into the shared buffer (no host copy: fresh memory is slow to touch).
      const heap = tf.backend() as unknown as { typedArrayFromHeap(t: tf.TensorInfo): Float32Array };
      outputs.forEach((out, k) => new Float32Array(m.buffer, m.outputs[k].offset, out.size).set(heap.typedArrayFromHeap(out)));
    });
    Atomics.store(header, 0, STATE_DONE);
  } catch (error) {
    const bytes = new TextEncoder().encode((error as Error).message).slice(0, ERROR_BYTES);
    new Uint8Array(m.buffer, HEADER_BYTES, bytes.length).set(bytes);
    header[1] = bytes.length;
    Atomics.store(header, 0, STATE_FAILED);
  }
  Atomics.notify(header, 0);
}

// No top-level await: the CommonJS build has this file too.
void initBackend({ backend: 'wasm', threads: 1 }).then(
  () => {
    port.on('message', compute);
    port.postMessage('ready');
  },
  (error: Error) => port.postMessage(`failed to load the wasm backend: ${error.message}`),
);
