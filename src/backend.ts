/**
 * Backend selection in Node: tfjs-node ('tensorflow') where it loads, else
 * wasm, else cpu. `TFJS_BACKEND=tensorflow|wasm|cpu` forces one. Nothing
 * fails because tfjs-node is absent: it is an optional dependency that cannot
 * install everywhere.
 *
 * This is the Node build of `tfjs-lsh-attention/backend`: it imports the
 * backend packages by name at run time. Bundlers for the browser get
 * backend.browser.ts instead (package.json's "browser" condition), which
 * imports nothing and chooses among the backends the app registered.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  BACKEND_NAMES,
  candidateList,
  isBackendName,
  selectBackend,
  type BackendName,
  type InitBackendOptions,
} from './backend_common.js';
import { startThreads, stopThreads } from './threads.js';

export { BACKEND_NAMES, describeBackend, type BackendName, type InitBackendOptions } from './backend_common.js';

/** The preference order in Node when nothing is forced. */
export const BACKEND_PREFERENCE: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

// Module names in variables so the type checker does not require them (this file is Node's; bundlers get backend.browser.ts).
const PACKAGES: Partial<Record<BackendName, string>> = {
  tensorflow: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
  webgl: '@tensorflow/tfjs-backend-webgl',
  webgpu: '@tensorflow/tfjs-backend-webgpu',
};
const TFJS_LAYERS = '@tensorflow/tfjs-layers';

function envBackend(): BackendName | undefined {
  const value = typeof process !== 'undefined' ? process.env?.TFJS_BACKEND : undefined;
  if (value === undefined || value === '') return undefined;
  if (!isBackendName(value)) {
    throw new Error(
      `initBackend: TFJS_BACKEND must be one of ${BACKEND_NAMES.join(', ')}, got "${value}"; unset it to choose automatically`,
    );
  }
  return value;
}

async function load(name: BackendName): Promise<void> {
  if (tf.findBackendFactory(name) !== null) return;
  const module = PACKAGES[name];
  if (module !== undefined) await import(module);
}

/**
 * Loads and sets the fastest available backend (or the one asked for).
 * Safe to call many times.
 *
 * @returns the name of the backend in use.
 * @throws when no candidate (a forced backend: option or TFJS_BACKEND) can be loaded.
 *
 * ```ts
 * import { initBackend } from 'tfjs-lsh-attention/backend';
 * console.log(await initBackend()); // 'wasm' here, 'tensorflow' with tfjs-node
 * ```
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendName> {
  const forced = options.backend ?? envBackend();
  const candidates = forced === undefined ? BACKEND_PREFERENCE : candidateList(forced, 'initBackend');
  // tfjs-core alone has no gradients: @tensorflow/tfjs-layers registers them (as @tensorflow/tfjs does).
  await import(TFJS_LAYERS);
  try {
    return await selectBackend(
      candidates,
      options,
      load,
      (name) => `install ${PACKAGES[name] ?? name}`,
      // Worker threads for the attention functions on wasm (Node only: src/threads.ts).
      async (name) => {
        // Opt-in (measured on a 2-core machine: at most 1.35× faster, and slower for LSH at T ≥ 32768).
        const env = typeof process !== 'undefined' ? process.env?.TFJS_THREADS : undefined;
        if (name === 'wasm') await startThreads(options.threads ?? (env !== undefined && env !== '' ? undefined : 1));
        else await stopThreads();
      },
    );
  } catch (error) {
    throw new Error(
      `${(error as Error).message}. Install @tensorflow/tfjs-backend-wasm or @tensorflow/tfjs-backend-cpu, or unset TFJS_BACKEND`,
    );
  }
}

export { machineCores, startThreads, stopThreads } from './threads.js';
export { attentionThreads } from './parallel.js';
