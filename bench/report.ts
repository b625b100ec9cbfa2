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
}

/** Fills in the header facts. */
export function makeReport(settings: SweepOptions, matMulPeakGflops: number, points: SweepPoint[]): SweepReport {
  return {
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
  lines.push('');
  lines.push('| T | attention | median ms | ms / 1k tokens | peak MiB (tf.profile) | RSS MiB | useful GFLOP/s | % of matMul peak | hash+sort ms |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const p of report.points) {
    if (p.status !== 'ok') {
      lines.push(`| ${p.length} | ${label(p)} | ${p.status}: ${p.reason ?? ''} | | | | | | |`);
      continue;
    }
    const ms = p.medianMs as number;
    lines.push(
      `| ${p.length} | ${label(p)} | ${ms.toFixed(1)} | ${((ms / p.length) * 1000).toFixed(2)} | ${mib(p.peakBytes)} | ${mib(p.rssBytes)} | ` +
        `${(p.gflops as number).toFixed(2)} | ${((100 * (p.gflops as number)) / report.matMulPeakGflops).toFixed(1)} | ${p.hashSortMs?.toFixed(1) ?? ''} |`,
    );
  }
  // Speed-up and memory ratio of LSH over full where both ran.
  const full = new Map(report.points.filter((p) => p.variant === 'full' && p.status === 'ok').map((p) => [p.length, p]));
  const ratios = report.points.filter((p) => p.variant !== 'full' && p.status === 'ok' && full.has(p.length));
  if (ratios.length > 0) {
    lines.push('');
    lines.push('| T | attention | speed-up over full | peak memory: full / LSH |');
    lines.push('|---:|---|---:|---:|');
    for (const p of ratios) {
      const f = full.get(p.length) as SweepPoint;
      const memory = p.peakBytes && f.peakBytes ? (f.peakBytes / p.peakBytes).toFixed(1) : '–';
      lines.push(`| ${p.length} | ${label(p)} | ${((f.medianMs as number) / (p.medianMs as number)).toFixed(2)}× | ${memory}× |`);
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
  return lines.join('\n') + '\n';
}

/** The chart: time and peak memory against T, log–log, one line per series. */
export async function chartSvg(report: SweepReport): Promise<string> {
  const values = report.points
    .filter((p) => p.status === 'ok')
    .flatMap((p) => [
      { T: p.length, series: label(p), measure: 'median time (ms)', value: p.medianMs },
      ...(p.peakBytes ? [{ T: p.length, series: label(p), measure: 'peak memory (MiB)', value: p.peakBytes / 2 ** 20 }] : []),
    ]);
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `LSH vs full attention, ${report.backend.split(' ')[0]}, B=${report.settings.batch} H=${report.settings.heads} D=${report.settings.dim} C=${report.settings.chunkLength}${report.settings.backward ? ', forward+backward' : ''}`,
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
  await writeFile(paths[0], `# Attention sweep\n\n${headline(report.points)}\n\n${markdown(report)}\n![chart](./${name}.svg)\n`);
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
export function headline(points: SweepPoint[]): string {
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
