/**
 * Backend selection in a page (the browser build of
 * `tfjs-lsh-attention/backend`, chosen by bundlers through package.json's
 * "browser" condition). It imports no backend: the app imports the ones it
 * wants (`import '@tensorflow/tfjs-backend-wasm'`, …), each of which
 * registers itself with tfjs, and `initBackend` chooses among those, in
 * {@link BACKEND_PREFERENCE} order. No dynamic imports, no Node built-ins.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's gradients (as @tensorflow/tfjs and tfjs-layers register them), so the attention functions can train.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { candidateList, selectBackend, type BackendName, type InitBackendOptions } from './backend_common.js';
import { softwareWebGL, softwareWebGPU } from './host_reads.js';

export { BACKEND_NAMES, describeBackend, type BackendName, type InitBackendOptions } from './backend_common.js';

/**
 * The preference order in a page when nothing is forced: the GPU first
 * (webgl: on a GPU it is tfjs's fastest backend for large work), then wasm,
 * webgpu, cpu. A GPU backend that turns out to run in software (SwiftShader,
 * on a machine without a usable GPU) is passed over for the next one that
 * starts: measured in headless Chromium without a GPU, wasm is several times
 * faster than software webgl (bench/results/browser-*.md), and on software
 * webgpu the attention functions cannot run (README, In the browser).
 */
export const BACKEND_PREFERENCE: readonly BackendName[] = ['webgl', 'wasm', 'webgpu', 'cpu'];

const PACKAGES: Record<BackendName, string> = {
  tensorflow: '@tensorflow/tfjs-node (Node only)',
  webgpu: '@tensorflow/tfjs-backend-webgpu',
  webgl: '@tensorflow/tfjs-backend-webgl',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

/**
 * Sets the first backend, among those the app registered, that starts here
 * (or the one asked for). Safe to call many times.
 *
 * @returns the name of the backend in use.
 * @throws when no candidate is registered and starts, saying why for each.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendName> {
  const forced = options.backend !== undefined;
  const candidates = forced ? candidateList(options.backend!, 'initBackend') : BACKEND_PREFERENCE;
  const load = async (name: BackendName): Promise<void> => {
    if (name === 'tensorflow') throw new Error('tfjs-node runs in Node only');
  };
  const register = (n: BackendName): string => `import '${PACKAGES[n]}' in the app before initBackend`;
  const name = await selectBackend(candidates, options, load, register);
  if (!forced && (softwareWebGL() || softwareWebGPU())) {
    // Chosen by default, but a GPU backend without a GPU: the next that starts, if any.
    const rest = candidates.slice(candidates.indexOf(name) + 1);
    try {
      if (rest.length > 0) return await selectBackend(rest, options, load, register);
    } catch {
      // None of the rest starts: keep the software one.
    }
    await tf.setBackend(name);
  }
  return name;
}

export { attentionThreads } from './parallel.js';

/** The logical cores the page may use (`navigator.hardwareConcurrency`), as Node's build reports the machine's. */
export function machineCores(): number {
  return typeof navigator !== 'undefined' && navigator.hardwareConcurrency > 0 ? navigator.hardwareConcurrency : 1;
}

/**
 * Node only: the attention functions' worker threads (src/threads.ts) need
 * `node:worker_threads`. In a page the wasm backend runs its own threads
 * when the page is cross-origin isolated (README, In the browser).
 * @throws always, saying so.
 */
export async function startThreads(threads?: number): Promise<number> {
  throw new Error(
    `startThreads(${threads ?? ''}): the attention functions' worker threads run in Node only; in a page the wasm backend ` +
      `uses threads of its own when the page is cross-origin isolated (COOP/COEP headers)`,
  );
}

/** Nothing to stop in a page (see {@link startThreads}). */
export async function stopThreads(): Promise<void> {}
