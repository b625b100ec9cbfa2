/**
 * The demo page (examples/browser/index.html): `npm run demo` bundles this
 * file and serves the page. Pick T, rounds, chunk length and backend; run
 * LSH and full attention; see time and memory on a vega-lite chart, and for a
 * short sequence the attention weights (LSH vs full) and every token's bucket
 * in every round. The page sets `window.demoState` for the browser test.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { fullAttention, hashBuckets, lshAttention, randomRotations, totalBuckets } from 'tfjs-lsh-attention';
import { describeBackend, initBackend, type BackendName } from 'tfjs-lsh-attention/backend';
// Registers the library's layer classes, so tf.loadLayersModel can rebuild the saved model.
import { setNHashes } from 'tfjs-lsh-attention/layers';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

interface Point {
  T: number;
  method: 'LSH' | 'full';
  backend: string;
  ms: number;
  MiB: number;
}

interface DemoState {
  runs: number;
  busy: boolean;
  points: Point[];
  description?: string;
  lshRefused?: string;
  errors: string[];
  /** Accuracy on the second copy per number of rounds, after a model run. */
  modelAccuracy?: Record<number, number>;
}

declare global {
  interface Window {
    demoState: DemoState;
  }
}

const state: DemoState = { runs: 0, busy: false, points: [], errors: [] };
window.demoState = state;

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const status = byId<HTMLDivElement>('status');
const say = (text: string): void => {
  status.textContent = text;
};

setWasmPaths(new URL('./', location.href).href);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Median time (ms, result read back) and peak bytes of `fn`. */
async function measure(fn: () => tf.Tensor): Promise<{ ms: number; peakBytes: number }> {
  const warm = fn();
  await warm.data();
  warm.dispose();
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    const out = fn();
    await out.data();
    times.push(performance.now() - start);
    out.dispose();
  }
  let peakBytes = 0;
  const profile = await tf.profile(async () => {
    const out = fn();
    await out.data();
    out.dispose();
  });
  peakBytes = profile.peakBytes;
  return { ms: median(times), peakBytes };
}

async function renderChart(): Promise<void> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    data: { values: state.points },
    hconcat: [
      {
        title: 'time per call (ms)',
        width: 360,
        height: 240,
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'T', type: 'quantitative', scale: { type: 'log', base: 2 } },
          y: { field: 'ms', type: 'quantitative', scale: { type: 'log' } },
          color: { field: 'method', type: 'nominal' },
          strokeDash: { field: 'backend', type: 'nominal' },
          shape: { field: 'backend', type: 'nominal' },
        },
      },
      {
        title: 'peak memory (MiB)',
        width: 360,
        height: 240,
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'T', type: 'quantitative', scale: { type: 'log', base: 2 } },
          y: { field: 'MiB', type: 'quantitative', scale: { type: 'log' } },
          color: { field: 'method', type: 'nominal' },
          strokeDash: { field: 'backend', type: 'nominal' },
          shape: { field: 'backend', type: 'nominal' },
        },
      },
    ],
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'svg', container: '#chart', hover: true });
  await view.runAsync();
}

/** Draws a [rows, cols] matrix of weights in [0, 1] as a grey-scale image. */
function drawMatrix(canvas: HTMLCanvasElement, values: ArrayLike<number>, rows: number, cols: number): void {
  const context = canvas.getContext('2d')!;
  const cellW = canvas.width / cols;
  const cellH = canvas.height / rows;
  let top = 0;
  for (let i = 0; i < values.length; i++) top = Math.max(top, values[i]);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const shade = Math.round(255 * (1 - values[r * cols + c] / (top || 1)));
      context.fillStyle = `rgb(${shade}, ${shade}, ${Math.min(255, shade + 40)})`;
      context.fillRect(c * cellW, r * cellH, Math.ceil(cellW), Math.ceil(cellH));
    }
  }
}

/** Draws buckets [R, T] as coloured cells with the bucket number. */
function drawBuckets(canvas: HTMLCanvasElement, buckets: ArrayLike<number>, rounds: number, length: number, numBuckets: number): void {
  const context = canvas.getContext('2d')!;
  canvas.height = Math.max(32, rounds * 24);
  const cellW = canvas.width / length;
  const cellH = canvas.height / rounds;
  context.font = `${Math.floor(Math.min(cellW, cellH) * 0.6)}px sans-serif`;
  context.textAlign = 'center';
  context.textBaseline = 'middle';
  for (let r = 0; r < rounds; r++) {
    for (let t = 0; t < length; t++) {
      const bucket = buckets[r * length + t];
      context.fillStyle = `hsl(${Math.round((360 * bucket) / numBuckets)}, 65%, 70%)`;
      context.fillRect(t * cellW, r * cellH, Math.ceil(cellW), Math.ceil(cellH));
      context.fillStyle = '#000';
      context.fillText(String(bucket), (t + 0.5) * cellW, (r + 0.5) * cellH);
    }
  }
}

/** A short sequence of four topics: tokens near one of four directions (in turn), so similar tokens share buckets. */
function shortSequence(length: number, dim: number): tf.Tensor4D {
  let seed = 7;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  const topics = Array.from({ length: 4 }, () => Array.from({ length: dim }, next));
  const values = new Float32Array(length * dim);
  for (let t = 0; t < length; t++) {
    const topic = topics[t % 4];
    for (let d = 0; d < dim; d++) values[t * dim + d] = 4 * topic[d] + 0.6 * next();
  }
  return tf.tensor4d(values, [1, 1, length, dim]);
}

async function heatMaps(rounds: number): Promise<void> {
  const length = 32;
  const dim = 16;
  const chunkLength = 8;
  const nBuckets = 8;
  const qk = shortSequence(length, dim);
  const identity = tf.reshape(tf.eye(length), [1, 1, length, length]) as tf.Tensor4D;
  const rotations = randomRotations({ dim, nHashes: rounds, nBuckets, seed: 3 });
  try {
    const full = fullAttention(qk, identity);
    drawMatrix(byId('heat-full'), await full.data(), length, length);
    full.dispose();
    byId('lsh-refused').textContent = '';
    state.lshRefused = undefined;
    const buckets = hashBuckets(qk, rotations, { nBuckets });
    drawBuckets(byId('buckets'), await buckets.data(), rounds, length, totalBuckets(nBuckets));
    buckets.dispose();
    try {
      const lsh = lshAttention(qk, identity, { nHashes: rounds, nBuckets, chunkLength, rotations });
      drawMatrix(byId('heat-lsh'), await lsh.data(), length, length);
      lsh.dispose();
    } catch (error) {
      // Software WebGPU: LSH attention refuses (see README, In the browser); say so on the page.
      state.lshRefused = (error as Error).message;
      byId('lsh-refused').textContent = `LSH attention did not run: ${(error as Error).message}`;
    }
  } finally {
    tf.dispose([qk, identity, rotations]);
  }
}

async function run(): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  const length = Number(byId<HTMLInputElement>('length').value);
  const rounds = Number(byId<HTMLInputElement>('rounds').value);
  const chunkLength = Number(byId<HTMLInputElement>('chunk').value);
  const backend = byId<HTMLSelectElement>('backend').value as BackendName;
  try {
    say(`Setting the ${backend} backend…`);
    await initBackend({ backend });
    state.description = describeBackend();
    const lines = [`Backend: ${state.description}`];
    say(lines.join('\n'));
    await heatMaps(rounds);
    const qk = tf.randomNormal([1, 4, length, 64], 0, 1, 'float32', 1) as tf.Tensor4D;
    const v = tf.randomNormal([1, 4, length, 64], 0, 1, 'float32', 2) as tf.Tensor4D;
    try {
      const runs: Array<[Point['method'], () => tf.Tensor]> = [
        ['LSH', () => lshAttention(qk, v, { nHashes: rounds, chunkLength, seed: 1 })],
        ['full', () => fullAttention(qk, v)],
      ];
      for (const [method, fn] of runs) {
        try {
          const { ms, peakBytes } = await measure(fn);
          state.points.push({ T: length, method, backend: tf.getBackend(), ms, MiB: peakBytes / 2 ** 20 });
          lines.push(`${method}: ${ms.toFixed(1)} ms, peak ${(peakBytes / 2 ** 20).toFixed(1)} MiB`);
        } catch (error) {
          lines.push(`${method}: did not run: ${(error as Error).message}`);
        }
        say(lines.join('\n'));
      }
    } finally {
      tf.dispose([qk, v]);
    }
    await renderChart();
    state.runs++;
  } catch (error) {
    state.errors.push((error as Error).message);
    say(`Error: ${(error as Error).message}`);
  } finally {
    state.busy = false;
  }
}

/** The duplication task as the model was trained on it (examples/20-duplication-task.ts --quick). */
const TASK = { length: 16, vocab: 6 };

async function evaluateModel(): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  const table = byId<HTMLTableElement>('model-result');
  try {
    const backend = byId<HTMLSelectElement>('backend').value as BackendName;
    await initBackend({ backend });
    state.description = describeBackend();
    say(`Backend: ${state.description}\nLoading the model…`);
    const model = await tfl.loadLayersModel(new URL('./model/lsh/model.json', location.href).href);
    const { length, vocab } = TASK;
    const half = length / 2;
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const sequences = Array.from({ length: 64 }, () => {
      const w = Array.from({ length: half - 1 }, () => 1 + Math.floor(random() * (vocab - 1)));
      return [0, ...w, 0, ...w];
    });
    const xs = tf.tensor2d(sequences, [sequences.length, length], 'int32');
    const accuracy: Record<number, number> = {};
    try {
      for (const rounds of [1, 2, 4, 8]) {
        setNHashes(model, rounds);
        const predicted = tf.tidy(() => tf.argMax(model.predict(xs) as tf.Tensor, -1));
        const values = await predicted.data();
        predicted.dispose();
        let right = 0;
        let counted = 0;
        sequences.forEach((sequence, n) => {
          // Position t predicts token t + 1; the second copy is positions half … T − 2.
          for (let t = half; t < length - 1; t++, counted++) if (values[n * length + t] === sequence[t + 1]) right++;
        });
        accuracy[rounds] = right / counted;
      }
    } finally {
      xs.dispose();
      model.dispose();
    }
    state.modelAccuracy = accuracy;
    table.innerHTML =
      '<tr><th>rounds</th><th>accuracy on the second copy</th></tr>' +
      Object.entries(accuracy).map(([rounds, value]) => `<tr><td>${rounds}</td><td>${(100 * value).toFixed(1)}%</td></tr>`).join('');
    say(`Backend: ${state.description}\nModel evaluated on 64 fresh sequences.`);
  } catch (error) {
    state.errors.push((error as Error).message);
    say(`Error: ${(error as Error).message}`);
  } finally {
    state.busy = false;
  }
}

byId<HTMLButtonElement>('model-run').addEventListener('click', () => void evaluateModel());

byId<HTMLFormElement>('controls').addEventListener('submit', (event) => {
  event.preventDefault();
  void run();
});
say('Pick a configuration and press Run.');
