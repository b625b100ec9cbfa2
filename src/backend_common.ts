/**
 * What the Node and the browser builds of `tfjs-lsh-attention/backend` share:
 * the backend names, choosing among backends tfjs has registered, and
 * describing the one in use. Imports tfjs-core only (no dynamic imports), so
 * a bundler takes it as it is.
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerSegmentSumKernels } from './kernels/segment_sum.js';
import { softwareWebGL, softwareWebGPU } from './host_reads.js';
import { attentionThreads } from './parallel.js';

/** The backends this library knows. `tensorflow` is tfjs-node (Node only). */
export type BackendName = 'tensorflow' | 'webgpu' | 'webgl' | 'wasm' | 'cpu';

/** Every backend name, for validation. */
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'webgpu', 'webgl', 'wasm', 'cpu'];

/** Options of `initBackend` (the same in Node and in a page). */
export interface InitBackendOptions {
  /**
   * Backend to use, or an ordered list to try. Default: in Node, the
   * TFJS_BACKEND environment variable when set, else ['tensorflow', 'wasm',
   * 'cpu']; in a page, ['webgl', 'wasm', 'webgpu', 'cpu'] (see README, In the browser).
   */
  backend?: BackendName | readonly BackendName[];
  /** Print the chosen backend to stderr (the console in a page). Default false. */
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
   * Node only (ignored in a page, where the wasm backend's own threads need
   * cross-origin isolation): threads the attention functions split large
   * calls across on the wasm backend (worker threads, each with its own wasm
   * backend; the calling thread is one of them): 1 for none. Other backends
   * run on one thread (tfjs-node has its own threads). See `startThreads`.
   * Default: the TFJS_THREADS environment variable, else 1 (opt-in: on the
   * 2-core machine it was measured on it gains at most 1.35×, and LSH
   * attention at T ≥ 32768 was slower; bench/RESULTS.md).
   */
  threads?: number;
}

export function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}

/** Checks a `backend` option and returns the list to try. */
export function candidateList(backend: BackendName | readonly BackendName[], who: string): readonly BackendName[] {
  const list = typeof backend === 'string' ? [backend] : backend;
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`${who}: backend must be a backend name or a non-empty list of them (${BACKEND_NAMES.join(', ')}), got ${JSON.stringify(backend)}`);
  }
  for (const name of list) {
    if (typeof name !== 'string' || !isBackendName(name)) {
      throw new Error(`${who}: backend names must be among ${BACKEND_NAMES.join(', ')}, got ${JSON.stringify(name)}`);
    }
  }
  return list;
}

/**
 * Tries the candidates in order: `load(name)` may make a backend available
 * (Node imports its package); then it must be registered with tfjs, set, and
 * ready. Returns the first that works, or throws listing why each failed.
 */
export async function selectBackend(
  candidates: readonly BackendName[],
  options: InitBackendOptions,
  load: (name: BackendName) => Promise<void>,
  howToRegister: (name: BackendName) => string,
  afterSet: (name: BackendName) => Promise<void> = async () => {},
): Promise<BackendName> {
  const failures: string[] = [];
  for (const name of candidates) {
    try {
      await load(name);
      if (tf.findBackendFactory(name) === null) throw new Error(`not registered: ${howToRegister(name)}`);
      if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false (the backend could not start here)`);
      await tf.ready();
      registerSegmentSumKernels({ wasm: options.addWasmSegmentSum ?? true, replaceCpu: options.replaceCpuSegmentSum ?? false });
      await afterSet(name);
      if (options.verbose) console.error(`tfjs-lsh-attention: using the ${describeBackend()} backend`);
      return name;
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`initBackend: none of the backends ${candidates.join(', ')} could be used (${failures.join('; ')})`);
}

interface WebGPUBackendLike {
  adapterInfo?: { vendor?: string; architecture?: string };
}

/**
 * A one-line description of the backend in use, e.g. "wasm (tfjs 4.22.0,
 * simd, 1 thread)", "webgl (tfjs 4.22.0, WebGL 2)" or "webgpu (tfjs 4.22.0,
 * google swiftshader adapter, software)"; "software" marks a GPU backend with
 * no GPU behind it (SwiftShader).
 */
export function describeBackend(): string {
  const name = tf.getBackend();
  const details = [`tfjs ${tf.version_core}`];
  if (name === 'wasm') {
    details.push(tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'simd' : 'no simd');
    details.push(tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? 'multi-thread' : '1 thread');
    const threads = attentionThreads();
    if (threads > 1) details.push(`attention split across ${threads} threads`);
  } else if (name === 'webgl') {
    details.push(`WebGL ${tf.env().getNumber('WEBGL_VERSION')}`);
    if (softwareWebGL()) details.push('software');
  } else if (name === 'webgpu') {
    const info = (tf.backend() as unknown as WebGPUBackendLike).adapterInfo;
    details.push(`${info?.vendor || 'unknown vendor'} ${info?.architecture || 'unknown architecture'} adapter`);
    if (softwareWebGPU()) details.push('software');
  }
  return `${name} (${details.join(', ')})`;
}
