/**
 * Backend selection: tfjs-node ('tensorflow') where it loads, else wasm, else
 * cpu. `TFJS_BACKEND=tensorflow|wasm|cpu` forces one. Nothing fails because
 * tfjs-node is absent: it is an optional dependency that cannot install
 * everywhere.
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerSegmentSumKernels } from './kernels/segment_sum.js';
import { attentionThreads } from './parallel.js';
import { startThreads, stopThreads } from './threads.js';

/** The backends this library knows how to load, fastest first. */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

/** The preference order when nothing is forced. */
export const BACKEND_PREFERENCE: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

// Module names in variables so bundlers and the type checker do not require them.
const TFJS_NODE = '@tensorflow/tfjs-node';
const TFJS_WASM = '@tensorflow/tfjs-backend-wasm';
const TFJS_CPU = '@tensorflow/tfjs-backend-cpu';
const TFJS_LAYERS = '@tensorflow/tfjs-layers';

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /**
   * Backend to use, or an ordered list to try. Default: the TFJS_BACKEND
   * environment variable when set, else {@link BACKEND_PREFERENCE}.
   */
  backend?: BackendName | readonly BackendName[];
  /** Print the chosen backend to stderr. Default false. */
  verbose?: boolean;
  /**
   * Give the wasm backend the `UnsortedSegmentSum` kernel it lacks, so
   * `tf.gather`'s gradient (and `embedding` training) work there. It adds a
   * missing kernel and replaces nothing. Default true.
   */
  addWasmSegmentSum?: boolean;
  /**
   * Replace the cpu backend's `UnsortedSegmentSum` (O(segments · rows): it can
   * dominate training steps of models with embeddings) by this library's
   * linear-time kernel, for every model in the process. The attention
   * functions do not need it (they use the fast kernel under its own name).
   * Default false.
   */
  replaceCpuSegmentSum?: boolean;
  /**
   * Threads the attention functions split large calls across on the wasm
   * backend (worker threads, each with its own wasm backend; the calling
   * thread is one of them): 1 for none. Other backends run on one thread
   * (tfjs-node has its own threads). See {@link startThreads}. Default: the
   * TFJS_THREADS environment variable, else the machine's cores.
   */
  threads?: number;
}

function isBackendName(name: string): name is BackendName {
  return (BACKEND_PREFERENCE as readonly string[]).includes(name);
}

function envBackend(): BackendName | undefined {
  const value = typeof process !== 'undefined' ? process.env?.TFJS_BACKEND : undefined;
  if (value === undefined || value === '') return undefined;
  if (!isBackendName(value)) {
    throw new Error(
      `initBackend: TFJS_BACKEND must be one of ${BACKEND_PREFERENCE.join(', ')}, got "${value}"; unset it to choose automatically`,
    );
  }
  return value;
}

async function load(name: BackendName): Promise<void> {
  if (name === 'tensorflow') await import(TFJS_NODE);
  else if (name === 'wasm') await import(TFJS_WASM);
  else await import(TFJS_CPU);
}

/**
 * Loads and sets the fastest available backend (or the one asked for).
 * Safe to call many times.
 *
 * @returns the name of the backend in use.
 * @throws when a forced backend (option or TFJS_BACKEND) cannot be loaded.
 *
 * ```ts
 * import { initBackend } from 'tfjs-lsh-attention/backend';
 * console.log(await initBackend()); // 'wasm' here, 'tensorflow' with tfjs-node
 * ```
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendName> {
  const forced = options.backend ?? envBackend();
  const candidates: readonly BackendName[] =
    forced === undefined ? BACKEND_PREFERENCE : typeof forced === 'string' ? [forced] : forced;
  // tfjs-core alone has no gradients: @tensorflow/tfjs-layers registers them (as @tensorflow/tfjs does).
  await import(TFJS_LAYERS);
  const failures: string[] = [];
  for (const name of candidates) {
    try {
      await load(name);
      if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false`);
      await tf.ready();
      registerSegmentSumKernels({ wasm: options.addWasmSegmentSum ?? true, replaceCpu: options.replaceCpuSegmentSum ?? false });
      if (name === 'wasm') await startThreads(options.threads);
      else await stopThreads();
      if (options.verbose) console.error(`tfjs-lsh-attention: using the ${describeBackend()} backend`);
      return name;
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    `initBackend: none of the backends ${candidates.join(', ')} could be loaded (${failures.join('; ')}). ` +
      `Install @tensorflow/tfjs-backend-wasm or @tensorflow/tfjs-backend-cpu, or unset TFJS_BACKEND`,
  );
}

/** A one-line description of the backend in use, e.g. "wasm (tfjs 4.22.0, simd, 1 thread)". */
export function describeBackend(): string {
  const name = tf.getBackend();
  const details = [`tfjs ${tf.version_core}`];
  if (name === 'wasm') {
    details.push(tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'simd' : 'no simd');
    details.push(tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? 'multi-thread' : '1 thread');
    const threads = attentionThreads();
    if (threads > 1) details.push(`attention split across ${threads} threads`);
  }
  return `${name} (${details.join(', ')})`;
}

export { machineCores, startThreads, stopThreads } from './threads.js';
export { attentionThreads } from './parallel.js';
