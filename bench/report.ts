/**
 * Reports of the attention sweep: a markdown table, a JSON file with every
 * number, and a log–log chart (time and peak memory against T, one line per
 * series) rendered to SVG with vega-lite.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { describeBackend } from '../src/backend.js';
import type { SweepOptions, SweepPoint } from './attention_sweep.js';
import { layerLabel, type LayerPoint, type LayerSweepOptions } from './layer_sweep.js';

/** Everything a run records. */
export interface SweepReport {
  date: string;
  backend: string;
  versions: { tfjs: string; node: string };
  machine: { cores: number; cpu: string; memoryGiB: number };
  settings: SweepOptions;
  /** The backend's best 2-D matMul GFLOP/s in the same run. */
  matMulPeakGflops: number;
  points: SweepPoint[];
  /** The whole-layer sweep (tfjs-layers' MultiHeadAttention against this library's layers), when it ran. */
  layers?: { settings: LayerSweepOptions; points: LayerPoint[] };
}

/** Fills in the header facts. */
export function makeReport(
  settings: SweepOptions,
  matMulPeakGflops: number,
  points: SweepPoint[],
  layers?: { settings: LayerSweepOptions; points: LayerPoint[] },
): SweepReport {
  return {
    ...(layers ? { layers } : {}),
    date: new Date().toISOString(),
    backend: describeBackend(),
    versions: { tfjs: tf.version_core, node: process.version },
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30) },
    settings,
    matMulPeakGflops,
    points,
  };
}

const mib = (bytes: number | undefined) => (bytes === undefined ? '–' : (bytes / 2 ** 20).toFixed(0));
const label = (p: SweepPoint) => (p.variant === 'lsh' ? `lsh R=${p.nHashes}` : p.variant);
/** A chart series: the attention, and its threads when more than one. */
const series = (p: SweepPoint) => `${label(p)}${(p.threads ?? 1) > 1 ? `, ${p.threads} threads` : ''}`;
/** The threads cell: the count, and whether a multi-thread point really split (small calls stay on one thread). */
const threadsCell = (p: SweepPoint) => `${p.threads ?? 1}${(p.threads ?? 1) > 1 && p.split === false ? ' (not split: too small)' : ''}`;

/** The markdown report: header, the main table, speed-ups, and the kernel breakdown at the largest LSH point. */
export function markdown(report: SweepReport): string {
  const s = report.settings;
  const lines: string[] = [];
  lines.push(`Backend: ${report.backend}; Node ${report.versions.node}; ${report.machine.cores} cores (${report.machine.cpu}), ${report.machine.memoryGiB} GiB; ${report.date}`);
  lines.push(
    `Settings: B=${s.batch}, H=${s.heads}, D=${s.dim}, chunkLength=${s.chunkLength}, numChunksBefore=${s.numChunksBefore}, ` +
      `${s.backward ? 'forward + backward' : 'forward'}, median of ${s.runs} after a warm-up. ` +
      `2-D matMul peak in this run: ${report.matMulPeakGflops.toFixed(1)} GFLOP/s.`,
  );
  if (report.points.length === 0) {
    if (report.layers) lines.push(...layerMarkdown(report.layers));
    return lines.join('\n') + '\n';
  }
  lines.push('');
  lines.push('| T | attention | threads | median ms | ms / 1k tokens | peak MiB (tf.profile) | RSS MiB | useful GFLOP/s | % of matMul peak | hash+sort ms |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const p of report.points) {
    if (p.status !== 'ok') {
      lines.push(`| ${p.length} | ${label(p)} | ${threadsCell(p)} | ${p.status}: ${p.reason ?? ''} | | | | | | |`);
      continue;
    }
    const ms = p.medianMs as number;
    lines.push(
      `| ${p.length} | ${label(p)} | ${threadsCell(p)} | ${ms.toFixed(1)} | ${((ms / p.length) * 1000).toFixed(2)} | ${mib(p.peakBytes)} | ${mib(p.rssBytes)} | ` +
        `${(p.gflops as number).toFixed(2)} | ${((100 * (p.gflops as number)) / report.matMulPeakGflops).toFixed(1)} | ${p.hashSortMs?.toFixed(1) ?? ''} |`,
    );
  }
  // Speed-up and memory ratio of LSH over full where both ran (with the same threads).
  const at = (p: SweepPoint) => `${p.length}:${p.threads ?? 1}`;
  const full = new Map(report.points.filter((p) => p.variant === 'full' && p.status === 'ok').map((p) => [at(p), p]));
  const ratios = report.points.filter((p) => p.variant !== 'full' && p.status === 'ok' && full.has(at(p)));
  if (ratios.length > 0) {
    lines.push('');
    lines.push('| T | attention | speed-up over full | peak memory: full / LSH |');
    lines.push('|---:|---|---:|---:|');
    for (const p of ratios) {
      const f = full.get(at(p)) as SweepPoint;
      const memory = p.peakBytes && f.peakBytes ? (f.peakBytes / p.peakBytes).toFixed(1) : '–';
      lines.push(`| ${p.length} | ${series(p)} | ${((f.medianMs as number) / (p.medianMs as number)).toFixed(2)}× | ${memory}× |`);
    }
  }
  // Several threads against one, same variant and length, same run.
  const single = new Map(
    report.points.filter((p) => (p.threads ?? 1) === 1 && p.status === 'ok').map((p) => [`${p.length}:${label(p)}`, p]),
  );
  const threaded = report.points.filter((p) => (p.threads ?? 1) > 1 && p.status === 'ok' && single.has(`${p.length}:${label(p)}`));
  if (threaded.length > 0) {
    lines.push('');
    lines.push('| T | attention | threads | speed-up over 1 thread |');
    lines.push('|---:|---|---:|---:|');
    for (const p of threaded) {
      const one = single.get(`${p.length}:${label(p)}`) as SweepPoint;
      lines.push(`| ${p.length} | ${label(p)} | ${threadsCell(p)} | ${((one.medianMs as number) / (p.medianMs as number)).toFixed(2)}× |`);
    }
  }
  // Forward + backward against the forward pass alone, timed in the same runs.
  const paired = report.points.filter((p) => p.status === 'ok' && p.forwardMedianMs !== undefined);
  if (paired.length > 0) {
    lines.push('');
    lines.push('| T | attention | forward ms | forward + backward ms | ratio | peak MiB forward | peak MiB forward + backward | ratio |');
    lines.push('|---:|---|---:|---:|---:|---:|---:|---:|');
    for (const p of paired) {
      const f = p.forwardMedianMs as number;
      const peaks = p.peakBytes && p.forwardPeakBytes ? `${(p.peakBytes / p.forwardPeakBytes).toFixed(2)}×` : '–';
      lines.push(
        `| ${p.length} | ${label(p)} | ${f.toFixed(1)} | ${(p.medianMs as number).toFixed(1)} | ${((p.medianMs as number) / f).toFixed(2)}× | ` +
          `${mib(p.forwardPeakBytes)} | ${mib(p.peakBytes)} | ${peaks} |`,
      );
    }
  }
  const profiled = report.points.filter((p) => p.variant === 'lsh' && p.kernels);
  const largest = profiled[profiled.length - 1];
  if (largest?.kernels) {
    const total = largest.kernels.reduce((sum, k) => sum + k.ms, 0);
    lines.push('');
    const wall = largest.profiledWallMs;
    lines.push(
      `Where the time goes: kernels of ${label(largest)} at T=${largest.length} (profiled run: ${total.toFixed(0)} ms in kernels` +
        (wall === undefined ? '' : ` of ${wall.toFixed(0)} ms wall; the rest is host work: the counting sort, index and mask building, dispatch, profiling`) +
        `; hash+sort alone: ${largest.hashSortMs?.toFixed(0) ?? '–'} ms):`,
    );
    lines.push('');
    lines.push('| kernel | ms | share | calls |');
    lines.push('|---|---:|---:|---:|');
    for (const k of largest.kernels.slice(0, 12)) {
      lines.push(`| ${k.name} | ${k.ms.toFixed(1)} | ${((100 * k.ms) / total).toFixed(1)}% | ${k.calls} |`);
    }
  }
  if (report.layers) lines.push(...layerMarkdown(report.layers));
  return lines.join('\n') + '\n';
}

/**
 * The whole-layer section: every layer point (time, peak memory,
 * parameters, speed-up over tfjs-layers' MultiHeadAttention where it ran),
 * and the points that did not run with the reason.
 */
export function layerMarkdown(layers: { settings: LayerSweepOptions; points: LayerPoint[] }): string[] {
  const s = layers.settings;
  const lines: string[] = [''];
  lines.push(
    `Whole layers (projections included): input [B=${s.batch}, T, M=${s.heads * s.dim}], self-attention, H=${s.heads}, keyDim=${s.dim}` +
      `, LSH chunkLength=${s.chunkLength}, numChunksBefore=${s.numChunksBefore}; ${s.backward ? 'gradients of the input and every weight (a training step without the update)' : 'forward call'}` +
      `, median of ${s.runs} after a warm-up; budgets ${s.budgetSeconds} s per point (this library's layers), ${s.mhaBudgetSeconds} s (MultiHeadAttention).`,
  );
  lines.push('');
  lines.push('| T | layer | median ms | ms / 1k tokens | peak MiB (tf.profile) | parameters | speed-up over MultiHeadAttention |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|');
  const mha = new Map(layers.points.filter((p) => p.variant === 'mha' && p.status === 'ok').map((p) => [p.length, p]));
  for (const p of layers.points) {
    if (p.status !== 'ok') {
      lines.push(`| ${p.length} | ${layerLabel(p)} | ${p.status}: ${p.reason ?? ''} | | | | |`);
      continue;
    }
    const ms = p.medianMs as number;
    const base = mha.get(p.length);
    const speedUp = p.variant === 'mha' ? '1×' : base ? `${((base.medianMs as number) / ms).toFixed(1)}×` : '–';
    lines.push(
      `| ${p.length} | ${layerLabel(p)} | ${ms.toFixed(1)} | ${((ms / p.length) * 1000).toFixed(2)} | ${mib(p.peakBytes)} | ${p.parameters ?? '–'} | ${speedUp} |`,
    );
  }
  return lines;
}

/**
 * The sentence the layer sweep ends with, from its measured points: at the
 * longest length where tfjs-layers' MultiHeadAttention ran, how much faster
 * the LSH layer (most rounds) and the full layer are; or why it did not run
 * at all (with the first reason), and what the library's layers did instead.
 */
export function layerHeadline(points: LayerPoint[]): string {
  const ok = (variant: LayerPoint['variant']) => points.filter((p) => p.variant === variant && p.status === 'ok');
  const lshAll = ok('lsh');
  const nHashes = lshAll.length > 0 ? Math.max(...lshAll.map((p) => p.nHashes ?? 1)) : undefined;
  const lsh = new Map(lshAll.filter((p) => p.nHashes === nHashes).map((p) => [p.length, p]));
  const full = new Map(ok('full').map((p) => [p.length, p]));
  const mha = ok('mha');
  const ours = (t: number): string[] => {
    const parts: string[] = [];
    const l = lsh.get(t);
    if (l) parts.push(`lshMultiHeadAttention (R=${nHashes}) ${((l.medianMs as number) / 1000).toPrecision(2)} s`);
    const f = full.get(t);
    if (f) parts.push(`fullMultiHeadAttention ${((f.medianMs as number) / 1000).toPrecision(2)} s`);
    return parts;
  };
  if (mha.length === 0) {
    const first = points.find((p) => p.variant === 'mha');
    if (!first) return 'The layer sweep did not run MultiHeadAttention.';
    const longest = Math.max(0, ...[...lsh.keys(), ...full.keys()]);
    const instead = longest > 0 ? `; at T=${longest}: ${ours(longest).join(', ')}` : '';
    return `tfjs-layers' MultiHeadAttention could not run (T=${first.length}: ${first.status}: ${first.reason ?? ''})${instead}.`;
  }
  const longest = Math.max(...mha.map((p) => p.length));
  const base = mha.find((p) => p.length === longest) as LayerPoint;
  const against = (p: LayerPoint | undefined, name: string) => {
    if (!p) return undefined;
    const r = (base.medianMs as number) / (p.medianMs as number);
    return `${name} ${r >= 1 ? `${times(r)}× faster` : `${times(1 / r)}× slower`}`;
  };
  const parts = [against(lsh.get(longest), `lshMultiHeadAttention (R=${nHashes})`), against(full.get(longest), 'fullMultiHeadAttention')].filter(Boolean);
  let sentence = `At T=${longest}, where tfjs-layers' MultiHeadAttention took ${((base.medianMs as number) / 1000).toPrecision(3)} s a call, ${parts.length > 0 ? parts.join(' and ') : 'neither of this library\'s layers ran'}`;
  const stopped = points.find((p) => p.variant === 'mha' && p.status !== 'ok' && p.length > longest);
  const oursLongest = Math.max(0, ...[...lsh.keys()]);
  if (stopped && oursLongest > longest) {
    sentence += `; MultiHeadAttention stopped at T=${stopped.length} (${stopped.status}), while the LSH layer ran up to T=${oursLongest}`;
  }
  return `${sentence}.`;
}

/** The chart: time and peak memory against T, log–log, one line per series. */
export async function chartSvg(report: SweepReport): Promise<string> {
  const values = report.points
    .filter((p) => p.status === 'ok')
    .flatMap((p) => [
      { T: p.length, series: series(p), measure: 'median time (ms)', value: p.medianMs },
      ...(p.peakBytes ? [{ T: p.length, series: series(p), measure: 'peak memory (MiB)', value: p.peakBytes / 2 ** 20 }] : []),
    ]);
  // The whole layers, as their own series (their times include the projections).
  const layerPoints = report.layers?.points ?? [];
  for (const p of layerPoints.filter((q) => q.status === 'ok')) {
    const series = `layer: ${layerLabel(p)}`;
    values.push({ T: p.length, series, measure: 'median time (ms)', value: p.medianMs });
    if (p.peakBytes) values.push({ T: p.length, series, measure: 'peak memory (MiB)', value: p.peakBytes / 2 ** 20 });
  }
  // A layer that ran nowhere is named under the title, with why.
  const subtitle = [...new Set(layerPoints.map((p) => `${p.variant}:${p.nHashes}`))]
    .map((key) => layerPoints.filter((p) => `${p.variant}:${p.nHashes}` === key))
    .filter((series) => series.every((p) => p.status !== 'ok'))
    .map((series) => `${layerLabel(series[0])} did not run: ${series[0].status}: ${series[0].reason ?? ''}`.slice(0, 140));
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `LSH vs full attention${report.layers ? ' (and whole layers)' : ''}, ${report.backend.split(' ')[0]}, B=${report.settings.batch} H=${report.settings.heads} D=${report.settings.dim} C=${report.settings.chunkLength}${report.settings.backward ? ', forward+backward' : ''}`,
      ...(subtitle.length > 0 ? { subtitle } : {}),
    },
    data: { values },
    facet: { column: { field: 'measure', type: 'nominal', title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 320,
      height: 240,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'T', type: 'quantitative', scale: { type: 'log', base: 2 }, title: 'sequence length T' },
        y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: null },
        color: { field: 'series', type: 'nominal', title: 'attention' },
      },
    },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

/** Writes `<name>.md`, `<name>.json` and `<name>.svg` into `directory`; returns their paths. */
export async function writeReport(report: SweepReport, directory: string, name: string): Promise<string[]> {
  await mkdir(directory, { recursive: true });
  const paths = ['md', 'json', 'svg'].map((ext) => join(directory, `${name}.${ext}`));
  const sentences = [
    ...(report.points.length > 0 ? [headline(report.points)] : []),
    ...(report.layers ? [layerHeadline(report.layers.points)] : []),
  ].join(' ');
  await writeFile(paths[0], `# Attention sweep\n\n${sentences}\n\n${markdown(report)}\n![chart](./${name}.svg)\n`);
  await writeFile(paths[1], JSON.stringify(report, null, 2));
  await writeFile(paths[2], await chartSvg(report));
  return paths;
}

/** 5.59 → "5.6", 12.3 → "12": two figures are all a sweep of two runs per point can support. */
function times(ratio: number): string {
  return ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(1);
}

/** 1218 → 1200: a length read off an interpolation, to two significant figures. */
function roughLength(length: number): number {
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(length)) - 1);
  return Math.round(length / unit) * unit;
}

/** Why a point did not run, in words. */
function whyNot(p: SweepPoint): string {
  return p.status === 'out-of-memory' ? 'out of memory' : p.status === 'over-budget' ? 'over the time budget' : 'it failed';
}

/**
 * The one sentence a sweep ends with, computed from its measured points only:
 * at the longest length where both attentions ran, how much faster LSH
 * attention is than full attention and how much less peak tensor memory it
 * uses; the length from which it is faster (interpolated log–log between the
 * last measured length where it was not and the first where it was, from
 * there on to the longest); and where full attention could not run. With
 * several LSH series, the one with the most hash rounds (the slowest and most
 * accurate) speaks. Says so plainly when LSH never wins in the range, or when
 * there is nothing to compare with.
 */
export function headline(allPoints: SweepPoint[]): string {
  // With several thread counts, the most threads speak (the comparison is within one count).
  const mostThreads = Math.max(1, ...allPoints.map((p) => p.threads ?? 1));
  const points = allPoints.filter((p) => (p.threads ?? 1) === mostThreads);
  const lshPoints = points.filter((p) => p.variant === 'lsh');
  if (lshPoints.length === 0) return 'The sweep ran no LSH attention, so there is nothing to report.';
  const nHashes = Math.max(...lshPoints.map((p) => p.nHashes ?? 1));
  const lshName = `LSH attention with ${nHashes} hash round${nHashes === 1 ? '' : 's'}`;
  const lsh = new Map(lshPoints.filter((p) => p.nHashes === nHashes && p.status === 'ok').map((p) => [p.length, p]));
  const fullPoints = points.filter((p) => p.variant === 'full');
  const full = new Map(fullPoints.filter((p) => p.status === 'ok').map((p) => [p.length, p]));

  if (lsh.size === 0) {
    const first = lshPoints.find((p) => p.nHashes === nHashes) as SweepPoint;
    return `${lshName} could not run at any length measured (T=${first.length}: ${whyNot(first)}), so there is nothing to compare.`;
  }
  const lshLongest = Math.max(...lsh.keys());
  const lshRan = `${lshName} ran up to T=${lshLongest} (${(lsh.get(lshLongest)?.medianMs as number).toFixed(0)} ms)`;
  if (fullPoints.length === 0) return `Full attention was not run, so there is no comparison: ${lshRan}.`;
  const both = [...lsh.keys()].filter((t) => full.has(t)).sort((a, b) => a - b);
  if (both.length === 0) {
    const first = fullPoints[0];
    return `Full attention could not run at any length measured (T=${first.length}: ${whyNot(first)}), while ${lshRan}.`;
  }

  const speedUp = (t: number) => (full.get(t)?.medianMs as number) / (lsh.get(t)?.medianMs as number);
  const longest = both[both.length - 1];
  const fullAtLongest = full.get(longest) as SweepPoint;
  const lshAtLongest = lsh.get(longest) as SweepPoint;
  const speed = speedUp(longest);
  let sentence = `At T=${longest} ${lshName} is ${speed > 1 ? `${times(speed)}× faster` : `${times(1 / speed)}× slower`} than full attention`;
  if (fullAtLongest.peakBytes && lshAtLongest.peakBytes) {
    const memory = fullAtLongest.peakBytes / lshAtLongest.peakBytes;
    sentence += ` and uses ${memory >= 1 ? `${times(memory)}× less` : `${times(1 / memory)}× more`} peak tensor memory`;
  }

  // The first length from which LSH is faster at every longer length measured.
  let from = both.length;
  while (from > 0 && speedUp(both[from - 1]) > 1) from--;
  if (from === 0) {
    sentence += both.length === 1 ? '' : `; it is faster at every length measured, from T=${both[0]}`;
  } else if (from === both.length) {
    const ahead = both.filter((t) => speedUp(t) > 1);
    sentence +=
      ahead.length === 0
        ? `; it is not faster at any length measured${both.length === 1 ? '' : ` (T=${both[0]}…${longest})`}, so it would win, if at all, only at longer sequences`
        : `; it is not faster at the longest length measured (only at T=${ahead.join(', ')}), so this range shows no clear win`;
  } else {
    const [t0, t1] = [both[from - 1], both[from]];
    const [s0, s1] = [speedUp(t0), speedUp(t1)];
    // log speed-up is about linear in log T between neighbouring lengths: find where it crosses 0.
    const crossing = Math.exp(Math.log(t0) + ((Math.log(t1) - Math.log(t0)) * -Math.log(s0)) / (Math.log(s1) - Math.log(s0)));
    sentence += `; it wins from T≈${roughLength(crossing)} (interpolated between the measured ${t0} and ${t1})`;
  }

  const fullFailed = fullPoints.find((p) => p.status !== 'ok' && p.length > longest);
  if (fullFailed && lshLongest > longest) {
    sentence += `; full attention could not run from T=${fullFailed.length} (${whyNot(fullFailed)}), while LSH attention ran up to T=${lshLongest}`;
  }
  return `${sentence}.`;
}
