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
const label = (p: SweepPoint) => (p.variant === 'lsh' ? `lsh R=${p.nHashes}` : 'full');

/** The markdown report: header, the main table, speed-ups, and the kernel breakdown at the largest LSH point. */
export function markdown(report: SweepReport): string {
  const s = report.settings;
  const lines: string[] = [];
  lines.push(`Backend: ${report.backend}; Node ${report.versions.node}; ${report.machine.cores} cores (${report.machine.cpu}), ${report.machine.memoryGiB} GiB; ${report.date}`);
  lines.push(
    `Settings: B=${s.batch}, H=${s.heads}, D=${s.depth}, chunkLength=${s.chunkLength}, numChunksBefore=${s.numChunksBefore}, ` +
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
  const ratios = report.points.filter((p) => p.variant === 'lsh' && p.status === 'ok' && full.has(p.length));
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
    title: `LSH vs full attention, ${report.backend.split(' ')[0]}, B=${report.settings.batch} H=${report.settings.heads} D=${report.settings.depth} C=${report.settings.chunkLength}${report.settings.backward ? ', forward+backward' : ''}`,
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
  await writeFile(paths[0], `# Attention sweep\n\n${markdown(report)}\n![chart](./${name}.svg)\n`);
  await writeFile(paths[1], JSON.stringify(report, null, 2));
  await writeFile(paths[2], await chartSvg(report));
  return paths;
}
