/**
 * The whole-layer sweep: the attention a TF.js user has today, tfjs-layers'
 * `MultiHeadAttention`, against this library's MultiHeadAttention-style
 * layers (`fullMultiHeadAttention`, `lshMultiHeadAttention`) at the same
 * shapes, projections included, so the comparison is like for like. Used by
 * `bench/run.ts` after the attention sweep, and by a test that runs it tiny.
 *
 * `MultiHeadAttention` is not in `tf.layers` in tfjs 4.22; it comes from a
 * deep import, and it needs tfjs' chained tensor methods (`x.add(…)`), which
 * the `@tensorflow/tfjs` package registers. It runs on a backend only where
 * that backend has an `Einsum` kernel (cpu and tensorflow do, wasm does not)
 * and it has no gradient (tfjs-core has none for `Einsum`). Where it cannot
 * run, the point says why; it is never left out silently.
 *
 * Legend: B batch, T length, H heads, D head size (keyDim), M = H·D the
 * model size, R rounds, C chunk length.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { fullMultiHeadAttention, lshMultiHeadAttention } from '../layers/index.js';
import { timeOnce } from './attention_sweep.js';

/** What to sweep. */
export interface LayerSweepOptions {
  lengths: number[];
  batch: number;
  heads: number;
  /** D, keyDim of every layer; the model size is M = heads·dim. */
  dim: number;
  /** Hash rounds of the LSH layer: one series each. */
  nHashes: number[];
  chunkLength: number;
  numChunksBefore: number;
  /** Time a training step's gradients (input and weights) instead of the forward call. */
  backward: boolean;
  /** Timed runs per point after one warm-up (median reported). */
  runs: number;
  /** Time budget (s) per point of this library's layers (predicted warm-up, runs and profile). */
  budgetSeconds: number;
  /** Time budget (s) per point of tfjs-layers' MultiHeadAttention: it is far slower, so it has its own. */
  mhaBudgetSeconds: number;
  /** Peak tensor memory (tf.profile) in a separate run per point. */
  profile: boolean;
}

/** The layers compared. */
export type LayerVariant = 'mha' | 'full' | 'lsh';

/** One measured (or not run) point. */
export interface LayerPoint {
  variant: LayerVariant;
  /** R for LSH; null otherwise. */
  nHashes: number | null;
  length: number;
  /**
   * `unsupported`: the layer cannot run this on the backend (a missing kernel
   * or gradient; `reason` has the error); `over-budget`: predicted over its
   * budget (`reason` has the prediction); `out-of-memory`: refused by the
   * memory guard; `failed`: any other error.
   */
  status: 'ok' | 'unsupported' | 'over-budget' | 'out-of-memory' | 'failed';
  reason?: string;
  /** Median wall time (ms) of the call, result read back. */
  medianMs?: number;
  runsMs?: number[];
  /** Peak bytes of tensors during the call (tf.profile). */
  peakBytes?: number;
  /** Trainable parameters of the layer. */
  parameters?: number;
}

/** The display name of a layer series. */
export function layerLabel(p: { variant: LayerVariant; nHashes: number | null }): string {
  return p.variant === 'mha' ? 'MultiHeadAttention (tfjs-layers)' : p.variant === 'full' ? 'fullMultiHeadAttention' : `lshMultiHeadAttention R=${p.nHashes}`;
}

/**
 * The predicted time (ms) of a series at `length` from its earlier points
 * (oldest first): the last time scaled by (length / its length)^k, where k
 * is the growth measured between the last two points, kept within [1, 2]
 * (a layer is at least linear in T, and attention at most quadratic), or,
 * with one point, the attention part's order (1 for LSH, 2 for the
 * others). Measured growth matters: MultiHeadAttention on cpu spends most
 * of its time in projections at short lengths (36.6 s at T=64, 50.6 s at
 * 128 in one run), where T² would predict 4× per doubling.
 */
export function predictMs(variant: LayerVariant, history: Array<{ length: number; ms: number }>, length: number): number {
  const last = history[history.length - 1];
  let order = variant === 'lsh' ? 1 : 2;
  if (history.length >= 2) {
    const before = history[history.length - 2];
    const measured = Math.log(last.ms / before.ms) / Math.log(last.length / before.length);
    order = Math.min(2, Math.max(1, measured));
  }
  return last.ms * (length / last.length) ** order;
}

/** A layer with one call form: `run(x)` → [B, T, M], and its weights. */
interface Subject {
  layer: tfl.layers.Layer;
  run: (x: tf.Tensor) => tf.Tensor;
  /** Its weight variables (MultiHeadAttention keeps them in sublayers its own `weights` does not list). */
  weights: () => tfl.LayerVariable[];
}

let mhaClass: (new (args: { numHeads: number; keyDim: number }) => tfl.layers.Layer) | undefined;

/**
 * tfjs-layers' MultiHeadAttention class (loaded on first use: its module
 * and `@tensorflow/tfjs`, which registers the chained tensor methods it
 * uses).
 */
export async function loadMultiHeadAttention(): Promise<new (args: { numHeads: number; keyDim: number }) => tfl.layers.Layer> {
  if (!mhaClass) {
    const backend = tf.getBackend();
    await import('@tensorflow/tfjs');
    const module = await import('@tensorflow/tfjs-layers/dist/layers/nlp/multihead_attention.js');
    mhaClass = module.MultiHeadAttention as unknown as typeof mhaClass;
    // Importing the union package registers backends; keep the one in use.
    if (tf.getBackend() !== backend) await tf.setBackend(backend);
  }
  return mhaClass as NonNullable<typeof mhaClass>;
}

async function makeSubject(variant: LayerVariant, nHashes: number | null, o: LayerSweepOptions): Promise<Subject> {
  if (variant === 'mha') {
    const MultiHeadAttention = await loadMultiHeadAttention();
    const layer = new MultiHeadAttention({ numHeads: o.heads, keyDim: o.dim });
    // Its apply() hands [query, value] to call() as the query when given concrete tensors (tfjs 4.22), so call() it is.
    const mha = layer as unknown as {
      call(q: tf.Tensor, kwargs: { value: tf.Tensor }): tf.Tensor;
      queryDense?: tfl.layers.Layer;
      keyDense?: tfl.layers.Layer;
      valueDense?: tfl.layers.Layer;
      outputDense?: tfl.layers.Layer;
    };
    return {
      layer,
      run: (x) => mha.call(x, { value: x }),
      weights: () => [mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense].flatMap((sub) => sub?.weights ?? []),
    };
  }
  const layer =
    variant === 'full'
      ? fullMultiHeadAttention({ numHeads: o.heads, keyDim: o.dim, seed: 1 })
      : lshMultiHeadAttention({
          numHeads: o.heads,
          keyDim: o.dim,
          nHashes: nHashes as number,
          chunkLength: o.chunkLength,
          numChunksBefore: o.numChunksBefore,
          fullAttentionThreshold: 0, // the LSH series measures LSH attention at every length (the layer's default runs full attention up to T = 1024)
          seed: 1,
        });
  return { layer, run: (x) => layer.apply(x, { value: x }) as tf.Tensor, weights: () => layer.weights };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Why tfjs-layers' MultiHeadAttention cannot run on the current backend, or
 * undefined: it computes with `tf.einsum`, so it needs the backend's
 * `Einsum` kernel, and for gradients a registered `Einsum` gradient.
 */
export function missingForMultiHeadAttention(backward: boolean): string | undefined {
  const backend = tf.getBackend();
  if (tf.getKernel('Einsum', backend) === undefined) return `Kernel 'Einsum' not registered for backend '${backend}' (tfjs ${tf.version_core})`;
  if (backward && tf.getGradient('Einsum') === undefined) return `no gradient registered for Einsum (tfjs ${tf.version_core}), so it cannot train`;
  return undefined;
}

/** A failed call's status: what the error means. */
function classify(message: string): LayerPoint['status'] {
  if (/not registered for backend|gradient function not found/i.test(message)) return 'unsupported';
  if (/needs about/.test(message)) return 'out-of-memory';
  return 'failed';
}

/**
 * Runs the layer sweep on the current backend: at each T, tfjs-layers'
 * MultiHeadAttention, fullMultiHeadAttention, then lshMultiHeadAttention for
 * each R, on the same input x [B, T, M] (self-attention: query = value = x).
 * A point is skipped as over budget when the series' earlier times
 * ({@link predictMs}) predict more than its budget for the
 * warm-up, runs and profile; at the first length the warm-up itself is
 * the prediction. A variant that is unsupported on the backend is tried once
 * and reported at every length.
 *
 * @returns every point, in the order run.
 */
export async function runLayerSweep(options: LayerSweepOptions, progress: (message: string) => void = () => {}): Promise<LayerPoint[]> {
  const { batch, heads, dim } = options;
  const model = heads * dim;
  const variants: Array<{ variant: LayerVariant; nHashes: number | null }> = [
    { variant: 'mha', nHashes: null },
    { variant: 'full', nHashes: null },
    ...options.nHashes.map((r) => ({ variant: 'lsh' as const, nHashes: r })),
  ];
  const subjects = new Map<string, Subject>();
  const previous = new Map<string, Array<{ length: number; ms: number }>>();
  const remember = (key: string, length: number, ms: number) => previous.set(key, [...(previous.get(key) ?? []), { length, ms }]);
  const unsupported = new Map<string, string>();
  const points: LayerPoint[] = [];
  const started = performance.now();
  const say = (message: string) => progress(`${message} (elapsed ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  const callsPerPoint = options.runs + 1 + (options.profile ? 1 : 0);

  try {
    for (const length of options.lengths) {
      // With backward, the input is a trainable variable, so one variableGrads call gives its gradient and the weights'.
      const values = tf.randomNormal([batch, length, model], 0, 1, 'float32', 3);
      const x: tf.Tensor = options.backward ? tf.variable(values, true) : values;
      if (options.backward) values.dispose();
      for (const { variant, nHashes } of variants) {
        const key = `${variant}:${nHashes}`;
        const label = layerLabel({ variant, nHashes });
        const point: LayerPoint = { variant, nHashes, length, status: 'ok' };
        points.push(point);
        const known = unsupported.get(key);
        if (known !== undefined) {
          point.status = 'unsupported';
          point.reason = known;
          continue;
        }
        const budget = variant === 'mha' ? options.mhaBudgetSeconds : options.budgetSeconds;
        const history = previous.get(key);
        if (history) {
          const predicted = (predictMs(variant, history, length) * callsPerPoint) / 1000;
          if (predicted > budget) {
            point.status = 'over-budget';
            point.reason = `predicted ${predicted.toFixed(0)} s for ${callsPerPoint} calls > budget ${budget} s`;
            say(`layers T=${length} ${label}: skipped, ${point.reason}`);
            continue;
          }
        }
        if (variant === 'mha') {
          // Checked before a call: a failed gradient leaves the tape's saved tensors behind (tfjs frees them only when backprop completes).
          const missing = missingForMultiHeadAttention(options.backward);
          if (missing) {
            point.status = 'unsupported';
            point.reason = missing;
            unsupported.set(key, missing);
            say(`layers T=${length} ${label}: unsupported: ${missing}`);
            continue;
          }
        }
        try {
          let subject = subjects.get(key);
          if (!subject) {
            subject = await makeSubject(variant, nHashes, options);
            subjects.set(key, subject);
            // Create the weights before a gradient call (variableGrads takes the trainable variables that exist when it starts).
            const build = subject.run;
            if (options.backward) tf.dispose(tf.tidy(() => build(x.slice([0, 0, 0], [batch, Math.min(length, 2 * options.chunkLength), model]))));
          }
          const { run, weights } = subject;
          const call = (): tf.Tensor | tf.Tensor[] =>
            options.backward
              ? tf.tidy(() => {
                  // A training step's gradients: of the input and of every trainable weight, in one pass.
                  const { grads } = tf.variableGrads(() => tf.sum(run(x)) as tf.Scalar);
                  return Object.values(grads);
                })
              : tf.tidy(() => run(x));
          const runs: number[] = [];
          for (let i = 0; i <= options.runs; i++) {
            say(`layers T=${length} ${label}: ${i === 0 ? 'warm-up' : `run ${i}/${options.runs}`}`);
            const ms = await timeOnce(call);
            if (i > 0) runs.push(ms);
            else if (!history && (ms * (callsPerPoint - 1)) / 1000 > budget) {
              point.status = 'over-budget';
              point.reason = `the warm-up took ${(ms / 1000).toFixed(1)} s, so ${callsPerPoint - 1} more calls would take ≈${((ms * (callsPerPoint - 1)) / 1000).toFixed(0)} s > budget ${budget} s`;
              remember(key, length, ms);
              break;
            }
          }
          if (point.status !== 'ok') {
            say(`layers T=${length} ${label}: stopped, ${point.reason}`);
            continue;
          }
          point.runsMs = runs;
          point.medianMs = median(runs);
          point.parameters = weights().reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
          remember(key, length, point.medianMs);
          if (options.profile) {
            say(`layers T=${length} ${label}: profiling`);
            const info = await tf.profile(() => {
              tf.dispose(call());
            });
            point.peakBytes = info.peakBytes;
          }
        } catch (error) {
          const message = (error as Error).message;
          point.status = classify(message);
          point.reason = message.split(';')[0];
          if (point.status === 'unsupported') unsupported.set(key, point.reason);
          say(`layers T=${length} ${label}: ${point.status}: ${point.reason}`);
        }
      }
      x.dispose();
    }
  } finally {
    for (const { weights } of subjects.values()) for (const w of weights()) w.dispose();
  }
  return points;
}
