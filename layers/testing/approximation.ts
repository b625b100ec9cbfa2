/**
 * What LSH attention costs in accuracy and buys in time and memory, at a
 * model's own length: the model with each number of hash rounds against its
 * full-attention twin, on the same inputs.
 *
 * Legend: B batch, T length, R hash rounds (`nHashes`).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { describeValue } from '../../src/validate.js';
import { attentionLayers, setNHashes } from '../lm.js';
import { LSHSelfAttention } from '../self_attention.js';
import { compareTensors, formatNumber, meanLoss, outputMasks, runModel, type OutputLoss } from './compare.js';
import type { EquivalenceReport } from './equivalence.js';
import { assertLayersModel, inputList, type ModelInputs } from './inputs.js';
import { copyModel, fullAttentionTwin } from './twins.js';

/** Options of {@link approximationReport}. */
export interface ApproximationOptions {
  /** The hash rounds to try, each a positive integer. Default [1, 2, 4, 8]. */
  nHashes?: number[];
  /**
   * A loss of the model's outputs (a list, in the order of `model.outputs`)
   * returning a tensor whose mean is the loss, e.g.
   * `([logits]) => lmLoss(targets, logits)`; when given, each row has the
   * loss and its difference from full attention's. Default: none.
   */
  loss?: OutputLoss;
  /** Timed runs of each model, after one warm-up run; the median is reported. Default 3. */
  runs?: number;
  /**
   * Print the table when done: true prints it with console.log, a function
   * receives its text. Default false.
   */
  print?: boolean | ((table: string) => void);
  /** Receives a line before each model runs (the `check` command prints them on stderr). Default: none. */
  onProgress?: (message: string) => void;
}

/** Time and memory of one model on the inputs. */
export interface Cost {
  /** Median wall time of a prediction, outputs read back (ms). */
  milliseconds: number;
  /** Peak tensor memory during a prediction, above what was allocated before it (bytes; `tf.profile`). */
  peakBytes: number;
  /** The mean loss, when a loss is given, else null. */
  loss: number | null;
}

/** One number of hash rounds. */
export interface ApproximationRow extends Cost {
  /** R, the hash rounds of every LSH layer. */
  nHashes: number;
  /** mean |lsh − full| / mean |full| over the outputs (padded positions left out). */
  relativeError: number;
  /** max |lsh − full| over the outputs. */
  maxDifference: number;
  /** loss − full attention's loss, or null. */
  lossDifference: number | null;
  /** Full attention's time over this row's: above 1, LSH is faster. */
  speedup: number;
  /** Full attention's peak memory over this row's: above 1, LSH needs less. */
  memoryRatio: number;
}

/** What {@link approximationReport} measured. */
export interface ApproximationReport {
  /** T, the inputs' length (axis 1 of the first input). */
  length: number;
  /** B */
  batch: number;
  /** The backend it ran on. */
  backend: string;
  /** The model's attention layers: how many LSH and full. */
  attentionLayers: { lsh: number; full: number };
  /** The full-attention twin. */
  full: Cost;
  /** One row per number of hash rounds, in the order asked. */
  rows: ApproximationRow[];
  /** The table, as {@link formatApproximationTable} writes it. */
  table: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs, times and profiles one model; returns its outputs (kept) and cost. */
async function measure(model: tfl.LayersModel, inputs: tf.Tensor[], runs: number, loss: OutputLoss | undefined): Promise<{ outputs: tf.Tensor[]; cost: Cost }> {
  let outputs: tf.Tensor[] = [];
  const times: number[] = [];
  for (let run = 0; run <= runs; run++) {
    tf.dispose(outputs);
    const start = performance.now();
    outputs = runModel(model, inputs);
    for (const output of outputs) await output.data();
    if (run > 0) times.push(performance.now() - start);
  }
  const before = tf.memory().numBytes;
  const info = await tf.profile(() => {
    tf.dispose(runModel(model, inputs));
  });
  const lossValue = loss === undefined ? null : await scalarValue(meanLoss(loss, outputs));
  return { outputs, cost: { milliseconds: median(times), peakBytes: Math.max(0, info.peakBytes - before), loss: lossValue } };
}

async function scalarValue(x: tf.Scalar): Promise<number> {
  const [value] = await x.data();
  x.dispose();
  return value;
}

/**
 * The model with each number of hash rounds against its full-attention twin
 * on the same inputs (in inference, so the rotations are fixed by each
 * layer's seed): the relative error of the outputs, the loss and its
 * difference when a loss is given, and the time and peak memory of both:
 * what to choose `nHashes` by, and what LSH attention buys at this length.
 * The inputs' length is the one measured: use the model's real one.
 *
 * Runs on copies (the model's own nHashes is left alone); leaves no tensors
 * behind. Full attention costs O(T²): at long T, it is the slow row.
 *
 * @param model a built tf.LayersModel with at least one LSHSelfAttention layer.
 * @param inputs what `model.predict` takes: a tensor [B, T, …] or one per model input.
 *
 * ```ts
 * const report = await approximationReport(model, tokens, { nHashes: [1, 2, 4, 8], print: true });
 * const enough = report.rows.find((row) => row.relativeError < 0.01)?.nHashes;
 * ```
 */
export async function approximationReport(
  model: tfl.LayersModel,
  inputs: ModelInputs,
  options: ApproximationOptions = {},
): Promise<ApproximationReport> {
  const who = 'approximationReport';
  assertLayersModel(who, model);
  if (options === null || typeof options !== 'object') throw new Error(`${who}: options must be an object, got ${describeValue(options)}`);
  const rounds = options.nHashes ?? [1, 2, 4, 8];
  if (!Array.isArray(rounds) || rounds.length === 0 || rounds.some((r) => !Number.isInteger(r) || r < 1)) {
    throw new Error(`${who}: nHashes must be a non-empty list of positive integers, got ${describeValue(rounds)}; e.g. nHashes: [1, 2, 4, 8]`);
  }
  const runs = options.runs ?? 3;
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`${who}: runs must be a positive integer, got ${describeValue(runs)}`);
  if (options.loss !== undefined && typeof options.loss !== 'function') {
    throw new Error(`${who}: loss must be a function of the outputs (a list) returning a tensor, got ${describeValue(options.loss)}`);
  }
  const print = options.print ?? false;
  if (typeof print !== 'boolean' && typeof print !== 'function') throw new Error(`${who}: print must be true, false or a function, got ${describeValue(print)}`);
  const layers = attentionLayers(model);
  const lsh = layers.filter((layer) => layer instanceof LSHSelfAttention).length;
  if (lsh === 0) {
    const classes = [...new Set(model.layers.map((layer) => layer.getClassName()))].join(', ');
    throw new Error(`${who}: the model has no LSHSelfAttention layer (its layers: ${classes}); there are no hash rounds to compare`);
  }
  const inputTensors = inputList(who, model, inputs);
  const progress = options.onProgress ?? (() => undefined);
  const [batch, length] = inputTensors[0].shape;
  const at = `T=${length ?? '?'}, B=${batch}`;

  const held: tf.Tensor[] = [];
  const models: tfl.LayersModel[] = [];
  try {
    const twin = fullAttentionTwin(model);
    models.push(twin);
    progress(`full attention at ${at}: a warm-up and ${runs} timed run${runs === 1 ? '' : 's'}`);
    const full = await measure(twin, inputTensors, runs, options.loss);
    held.push(...full.outputs);
    const masks = outputMasks(twin, inputTensors);
    held.push(...masks.filter((mask): mask is tf.Tensor => mask !== null));

    const approximate = copyModel(who, model);
    models.push(approximate);
    const rows: ApproximationRow[] = [];
    for (const nHashes of rounds) {
      setNHashes(approximate, nHashes);
      progress(`LSH attention with ${nHashes} hash round${nHashes === 1 ? '' : 's'} at ${at}`);
      const measured = await measure(approximate, inputTensors, runs, options.loss);
      let sumDifference = 0;
      let sumScale = 0;
      let maxDifference = 0;
      for (let k = 0; k < measured.outputs.length; k++) {
        const comparison = await compareTensors(measured.outputs[k], full.outputs[k], masks[k]);
        // relativeError = mean diff / mean scale per output; weigh outputs by their size.
        const size = full.outputs[k].size;
        sumDifference += comparison.relativeError * size;
        sumScale += size;
        maxDifference = comparison.maxDifference <= maxDifference ? maxDifference : comparison.maxDifference;
      }
      tf.dispose(measured.outputs);
      const cost = measured.cost;
      rows.push({
        nHashes,
        relativeError: sumDifference / sumScale,
        maxDifference,
        ...cost,
        lossDifference: cost.loss === null || full.cost.loss === null ? null : cost.loss - full.cost.loss,
        speedup: full.cost.milliseconds / cost.milliseconds,
        memoryRatio: cost.peakBytes === 0 ? Number.NaN : full.cost.peakBytes / cost.peakBytes,
      });
    }
    const report: ApproximationReport = {
      length: length ?? 0,
      batch,
      backend: tf.getBackend(),
      attentionLayers: { lsh, full: layers.length - lsh },
      full: full.cost,
      rows,
      table: '',
    };
    report.table = formatApproximationTable(report);
    if (print === true) console.log(report.table);
    else if (typeof print === 'function') print(report.table);
    return report;
  } finally {
    tf.dispose(held);
    for (const copy of models) copy.dispose();
  }
}

const MiB = 2 ** 20;

function ratio(x: number): string {
  return Number.isFinite(x) ? `${x >= 10 ? x.toFixed(0) : x.toFixed(1)}×` : '–';
}

/** An equivalence check to show as the table's first row. */
export interface CheckRow {
  /** T of the check. */
  length: number;
  report: EquivalenceReport;
}

/**
 * The report as a markdown table: one row for full attention, one per
 * number of hash rounds, with the loss columns when a loss was given; with
 * `check`, a first row for the exact-mode model at the check's length (✓
 * equivalent, ✗ not).
 */
export function formatApproximationTable(report: ApproximationReport, check?: CheckRow): string {
  const withLoss = report.full.loss !== null;
  const header = ['attention', 'rounds', 'relative error', 'max difference', ...(withLoss ? ['loss', 'loss − full'] : []), 'ms', 'peak MiB', 'speed-up', 'memory ÷'];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const lines = [
    `T = ${report.length}, B = ${report.batch}, ${report.backend} backend; ${report.attentionLayers.lsh} LSH attention layer${report.attentionLayers.lsh === 1 ? '' : 's'}` +
      (report.attentionLayers.full > 0 ? ` (and ${report.attentionLayers.full} full)` : '') +
      '; relative error = mean |LSH − full| / mean |full| of the outputs; ms = median prediction time; peak = tf.profile, above what was held before' +
      (check === undefined ? '' : `; exact LSH = one chunk per round at T = ${check.length} (✓ within the check's tolerance)`),
    '',
    line(header),
    line(header.map((_, i) => (i < 2 ? '---' : '---:'))),
    ...(check === undefined
      ? []
      : [
          line([
            `exact LSH ${check.report.equivalent ? '✓' : '✗'} (T = ${check.length})`,
            '–',
            formatNumber(Math.max(0, ...check.report.outputs.map((output) => output.relativeError))),
            formatNumber(check.report.maxOutputDifference),
            ...header.slice(4).map(() => '–'),
          ]),
        ]),
    line([
      'full',
      '–',
      '0',
      '0',
      ...(withLoss ? [(report.full.loss as number).toFixed(4), '0'] : []),
      report.full.milliseconds.toFixed(1),
      (report.full.peakBytes / MiB).toFixed(2),
      '1×',
      '1×',
    ]),
    ...report.rows.map((row) =>
      line([
        'lsh',
        String(row.nHashes),
        formatNumber(row.relativeError),
        formatNumber(row.maxDifference),
        ...(withLoss ? [(row.loss as number).toFixed(4), `${(row.lossDifference as number) >= 0 ? '+' : ''}${(row.lossDifference as number).toFixed(4)}`] : []),
        row.milliseconds.toFixed(1),
        (row.peakBytes / MiB).toFixed(2),
        ratio(row.speedup),
        ratio(row.memoryRatio),
      ]),
    ),
  ];
  return lines.join('\n');
}

/**
 * One sentence on the report: the fewest rounds within `threshold` relative
 * error of full attention, and what they cost or save.
 *
 * @param threshold the relative error that counts as close. Default 0.01.
 */
export function approximationVerdict(report: ApproximationReport, threshold = 0.01): string {
  const close = report.rows.filter((row) => row.relativeError <= threshold).sort((a, b) => a.nHashes - b.nHashes)[0];
  const speed = (row: ApproximationRow) =>
    row.speedup >= 1 ? `${ratio(row.speedup)} faster than full attention` : `${ratio(1 / row.speedup)} slower than full attention`;
  const memory = (row: ApproximationRow) =>
    !Number.isFinite(row.memoryRatio) ? '' : row.memoryRatio >= 1 ? `, ${ratio(row.memoryRatio)} less peak memory` : `, ${ratio(1 / row.memoryRatio)} more peak memory`;
  if (close) {
    return (
      `at T=${report.length}, ${close.nHashes} hash round${close.nHashes === 1 ? '' : 's'} come${close.nHashes === 1 ? 's' : ''} within ` +
      `${formatNumber(100 * close.relativeError)}% of full attention (≤ ${formatNumber(100 * threshold)}%), ${speed(close)}${memory(close)}`
    );
  }
  const best = report.rows.reduce((a, b) => (b.relativeError < a.relativeError ? b : a));
  return (
    `at T=${report.length}, no number of rounds tried comes within ${formatNumber(100 * threshold)}% of full attention ` +
    `(the closest: ${best.nHashes} rounds, ${formatNumber(100 * best.relativeError)}%, ${speed(best)}); more rounds, or longer chunks, come closer`
  );
}
