/**
 * Attention on every core in Node: a pool of worker threads, each with its
 * own tfjs wasm backend, to which {@link lshAttention} and
 * {@link fullAttention} hand slices of a call (heads, or batch rows) while
 * the calling thread computes the first slice itself. tfjs-backend-wasm runs
 * one thread in Node (its threaded build starts workers from a `blob:` URL
 * Node cannot load), so without this the other cores idle.
 *
 * Inputs and outputs travel through a SharedArrayBuffer; the calling thread
 * waits with `Atomics.wait`, so the attention functions stay synchronous. The
 * output is bitwise the same as one thread's (each head is computed by the
 * same code on the same numbers). Node only: it uses `node:worker_threads`.
 */
import { availableParallelism, cpus } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { HostTensor, materialize, setParallelRunner, type ParallelFunction, type ParallelMode, type ParallelRunner, type ParallelSlice } from './parallel.js';

/** Header of the shared buffer: [state, error length], Int32. */
const HEADER_BYTES = 16;
/** Room for a worker's error message (UTF-8) after the header. */
const ERROR_BYTES = 4096;
const STATE_BUSY = 0;
const STATE_DONE = 1;
const STATE_FAILED = 2;
/** How long the calling thread waits for a worker before giving up (a worker that died cannot answer). */
const WAIT_MS = 30 * 60 * 1000;

/** The message a worker gets for one slice. */
export interface SliceMessage {
  fn: ParallelFunction;
  /** 'forward': outputs = [out]; 'gradient': inputs end with dy, outputs = [dqk, dv]. */
  mode: ParallelMode;
  buffer: SharedArrayBuffer;
  /** Byte offset in `buffer` and shape of each input (qk, v[, dy]) and output slice. */
  inputs: Array<{ offset: number; shape: number[] }>;
  outputs: Array<{ offset: number; shape: number[] }>;
  options: Record<string, unknown>;
  /** Tensor options as data: name → [values, shape, dtype]. */
  tensors: Record<string, [Float32Array | Int32Array | Uint8Array, number[], tf.DataType]>;
}

/** The file the workers run: thread_worker.ts next to this file (from source, through tsx) or .js (built). */
function workerFile(): string {
  const original = Error.prepareStackTrace;
  try {
    Error.prepareStackTrace = (_error, frames) => frames;
    const frames = new Error().stack as unknown as Array<{ getFileName(): string | null }>;
    const here = frames[0].getFileName();
    if (here === null) throw new Error('no file name on the stack');
    const url = here.startsWith('file:') ? here : pathToFileURL(here).href;
    return url.replace(/threads\.(ts|js)$/, 'thread_worker.$1');
  } finally {
    Error.prepareStackTrace = original;
  }
}

/** The two methods of tfjs-backend-wasm's backend the pool uses to copy straight between its heap and shared memory. */
interface WasmHeap {
  /** A view of a tensor's values in the wasm heap: valid until the heap next grows (take it right before use). */
  typedArrayFromHeap(tensor: tf.TensorInfo): Float32Array;
  /** A new tensor's storage in the heap (values unset). */
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

class Pool implements ParallelRunner {
  /**
   * Each worker's shared buffer, kept between calls and replaced only when a
   * call needs more. Fresh memory is expensive to touch (on this project's
   * VMs, ≈ 80 ms for 32 MiB: every first write of a page faults), so the data
   * path allocates nothing per call: slices go from the wasm heap to these
   * buffers and back, with no intermediate host arrays.
   */
  private readonly buffers: Array<SharedArrayBuffer | undefined>;

  constructor(
    readonly workers: Worker[],
    readonly threads: number,
  ) {
    this.buffers = workers.map(() => undefined);
  }

  /** Worker `w`'s buffer with room for `bytes` (grown by a quarter more than asked, so slowly growing calls do not reallocate each time). */
  private buffer(w: number, bytes: number): SharedArrayBuffer {
    const current = this.buffers[w];
    if (current !== undefined && current.byteLength >= bytes) return current;
    const next = new SharedArrayBuffer(Math.ceil((bytes * 1.25) / 8) * 8);
    this.buffers[w] = next;
    return next;
  }

  run(
    fn: ParallelFunction,
    mode: ParallelMode,
    inputs: tf.Tensor4D[],
    outputShapes: (slice: ParallelSlice) => number[][],
    options: Record<string, unknown>,
    axis: 0 | 1,
    slices: ParallelSlice[],
    local: (inputs: tf.Tensor4D[], options: Record<string, unknown>) => tf.Tensor4D[],
  ): tf.Tensor4D[] {
    const heap = tf.backend() as unknown as WasmHeap;
    const engine = tf.engine();
    const plain: Record<string, unknown> = {};
    const tensors: SliceMessage['tensors'] = {};
    for (const [key, value] of Object.entries(options)) {
      if (value instanceof HostTensor) tensors[key] = [value.values, value.shape, value.dtype];
      else if (value !== undefined) plain[key] = value;
    }
    const sliceShape = (shape: number[], s: ParallelSlice): number[] => {
      const out = [...shape];
      out[axis] = s.end - s.start;
      return out;
    };
    /**
     * Copies between a whole [B, H, T, X] array and slice `s` of it ([B, h, T, X] or [b, H, T, X]):
     * `toSlice` true copies whole → slice, false slice → whole.
     */
    const copy = (whole: Float32Array, shape: number[], s: ParallelSlice, slice: Float32Array, toSlice: boolean) => {
      const [batch, heads] = shape;
      const row = shape[2] * shape[3]; // one head's T·X values
      const runs = axis === 0 ? 1 : batch;
      const width = axis === 0 ? (s.end - s.start) * heads * row : (s.end - s.start) * row;
      for (let b = 0; b < runs; b++) {
        const at = axis === 0 ? s.start * heads * row : (b * heads + s.start) * row;
        if (toSlice) slice.set(whole.subarray(at, at + width), b * width);
        else whole.set(slice.subarray(b * width, (b + 1) * width), at);
      }
    };

    // Hand every slice but the first to a worker: copied from the heap into the worker's shared buffer.
    const pending: Array<{ buffer: SharedArrayBuffer; outputs: SliceMessage['outputs']; slice: ParallelSlice; worker: number }> = [];
    for (let i = 1; i < slices.length; i++) {
      const s = slices[i];
      let offset = HEADER_BYTES + ERROR_BYTES;
      const place = (shape: number[]) => {
        const at = { offset, shape };
        offset += count(shape) * 4;
        return at;
      };
      const inputPlaces = inputs.map((x) => place(sliceShape(x.shape, s)));
      const outputPlaces = outputShapes(s).map(place);
      const buffer = this.buffer(i - 1, offset);
      new Int32Array(buffer, 0, 2).fill(0); // STATE_BUSY, no error
      inputs.forEach((x, k) => copy(heap.typedArrayFromHeap(x), x.shape, s, new Float32Array(buffer, inputPlaces[k].offset, count(inputPlaces[k].shape)), true));
      const message: SliceMessage = { fn, mode, buffer, inputs: inputPlaces, outputs: outputPlaces, options: plain, tensors };
      this.workers[i - 1].postMessage(message);
      pending.push({ buffer, outputs: outputPlaces, slice: s, worker: i - 1 });
    }

    // The first slice here, meanwhile: its inputs cut from the heap into new heap tensors (tf.slice of a middle axis is slow on wasm).
    const first = slices[0];
    const firstOutputs = tf.tidy(() => {
      const infos = inputs.map((x) => heap.makeOutput(sliceShape(x.shape, first), 'float32'));
      // Views only after every allocation (an allocation can grow the heap, which detaches earlier views).
      inputs.forEach((x, k) => copy(heap.typedArrayFromHeap(x), x.shape, first, heap.typedArrayFromHeap(infos[k]), true));
      const sliceInputs = infos.map((info) => engine.makeTensorFromTensorInfo(info) as tf.Tensor4D);
      return local(sliceInputs, materialize(options));
    });

    // Whole outputs in the heap, filled from the calling thread's slice and the workers' buffers.
    let wholes: tf.Tensor4D[] = [];
    let failure: Error | undefined;
    try {
      const wholeShapes = firstOutputs.map((out) => {
        const shape = [...out.shape];
        shape[axis] = slices[slices.length - 1].end;
        return shape;
      });
      wholes = wholeShapes.map((shape) => engine.makeTensorFromTensorInfo(heap.makeOutput(shape, 'float32')) as tf.Tensor4D);
      firstOutputs.forEach((out, k) => copy(heap.typedArrayFromHeap(wholes[k]), wholeShapes[k], first, heap.typedArrayFromHeap(out), false));
      for (const { buffer, outputs, slice, worker } of pending) {
        const header = new Int32Array(buffer, 0, 2);
        if (Atomics.wait(header, 0, STATE_BUSY, WAIT_MS) === 'timed-out') {
          failure ??= new Error(`attention thread ${worker + 1} did not answer within ${WAIT_MS / 60000} minutes`);
          continue;
        }
        if (Atomics.load(header, 0) === STATE_FAILED) {
          const text = new TextDecoder().decode(new Uint8Array(buffer, HEADER_BYTES, header[1]).slice());
          failure ??= new Error(`attention thread ${worker + 1} failed: ${text}`);
          continue;
        }
        outputs.forEach(({ offset, shape }, k) =>
          copy(heap.typedArrayFromHeap(wholes[k]), wholeShapes[k], slice, new Float32Array(buffer, offset, count(shape)), false),
        );
      }
    } finally {
      tf.dispose(firstOutputs);
    }
    if (failure) {
      tf.dispose(wholes);
      throw failure;
    }
    return wholes;
  }
}

let pool: Pool | undefined;

/** The machine's cores (what {@link startThreads} uses by default). */
export function machineCores(): number {
  return typeof availableParallelism === 'function' ? availableParallelism() : cpus().length;
}

/**
 * Starts (or restarts with another count) the thread pool the attention
 * functions split their calls across: `threads − 1` workers, each loading
 * the wasm backend, plus the calling thread. 1 stops the pool. Gradients
 * are split too. Calls on other backends, with dropout, or too small to
 * gain run on the calling thread as before.
 *
 * @param threads total threads, the calling one included: a positive integer. Default: the TFJS_THREADS environment variable, else the machine's cores.
 * @returns the number of threads in use.
 */
export async function startThreads(threads?: number): Promise<number> {
  const fromEnv = process.env.TFJS_THREADS;
  let count = threads;
  if (count === undefined && fromEnv !== undefined && fromEnv !== '') {
    count = Number(fromEnv);
    if (!Number.isInteger(count) || count < 1) {
      throw new Error(`startThreads: TFJS_THREADS must be a positive integer, got "${fromEnv}"; unset it to use the machine's ${machineCores()} cores`);
    }
  }
  count ??= machineCores();
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(`startThreads: threads must be a positive integer, got ${String(threads)}; give 1 for one thread or leave it out for the machine's cores`);
  }
  if (pool?.threads === count) return count;
  await stopThreads();
  if (count === 1) return 1;
  const file = workerFile();
  // From source (tests, tsx), the worker registers tsx to load TypeScript; a built package runs plain .js.
  const code = file.endsWith('.ts')
    ? `(async () => { const { register } = await import('tsx/esm/api'); register(); await import(${JSON.stringify(file)}); })()`
    : `import(${JSON.stringify(file)})`;
  const workers = await Promise.all(
    Array.from({ length: count - 1 }, async () => {
      const worker = new Worker(code, { eval: true });
      await new Promise<void>((resolve, reject) => {
        worker.once('message', (m: unknown) => (m === 'ready' ? resolve() : reject(new Error(`startThreads: a worker said ${String(m)}`))));
        worker.once('error', (error) => reject(new Error(`startThreads: a worker failed to start: ${error.message}`)));
      });
      worker.unref(); // idle workers do not keep the process alive
      return worker;
    }),
  );
  pool = new Pool(workers, count);
  setParallelRunner(pool);
  return count;
}

/** Stops the worker threads (calls run on one thread again). */
export async function stopThreads(): Promise<void> {
  const current = pool;
  pool = undefined;
  setParallelRunner(undefined);
  if (current) await Promise.all(current.workers.map((w) => w.terminate()));
}

export { HEADER_BYTES, ERROR_BYTES, STATE_DONE, STATE_FAILED };
