/**
 * Preloaded (`node --import`) into the process of each README block: as the
 * process exits, it writes which backend tfjs was using, so the test can
 * tell a block that ended up on a backend tfjs picked by itself (cpu in
 * Node) from one that asked initBackend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_MARKER } from './blocks.js';

process.on('exit', () => {
  // backendName is null until some backend is set; reading it does not set one.
  process.stderr.write(`\n${BACKEND_MARKER}${tf.engine().backendName ?? 'none'}\n`);
});
