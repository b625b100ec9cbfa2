/**
 * The attention benchmark runs (a tiny sweep, seconds), writes its table,
 * JSON and chart, and reports lengths it cannot run instead of crashing.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { fullUsefulFlops, localUsefulFlops, lshUsefulFlops, runSweep, type SweepOptions, type SweepPoint } from '../bench/attention_sweep.js';
import { crossoverMarkdown, measureCrossover, measuredCrossover, type CrossoverPoint } from '../bench/crossover.js';
import { headline, makeReport, markdown, writeReport, type SweepReport } from '../bench/report.js';
import { describeBackends } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'lsh-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tiny: SweepOptions = {
  lengths: [32, 64],
  batch: 1,
  heads: 2,
  dim: 8,
  nHashes: [1, 2],
  chunkLength: 8,
  numChunksBefore: 1,
  backward: false,
  runs: 1,
  budgetSeconds: 600,
  profile: true,
  full: true,
};

it('counts useful FLOPs as the attended QK and AV products', () => {
  // R·T queries × C·(1 + before) keys × (D + Dv) × 2.
  expect(lshUsefulFlops({ batch: 1, heads: 1, length: 8, dim: 4, nHashes: 2, chunkLength: 4, numChunksBefore: 1 })).toBe(2 * 16 * 8 * 8);
  expect(fullUsefulFlops({ batch: 2, heads: 1, length: 8, dim: 4 })).toBe(2 * 2 * 64 * 8);
});

describeBackends('attention benchmark', (backend) => {
  it('sweeps, and writes the table, the JSON and the chart', async () => {
    const before = tf.memory().numTensors;
    const points = await runSweep(tiny);
    expect(tf.memory().numTensors).toBe(before);
    expect(points.map((p) => `${p.length}:${p.variant}:${p.nHashes}`)).toEqual([
      '32:lsh:1',
      '32:lsh:2',
      '32:full:null',
      '64:lsh:1',
      '64:lsh:2',
      '64:full:null',
    ]);
    for (const p of points) {
      expect(p.status).toBe('ok');
      expect(p.medianMs).toBeGreaterThan(0);
      expect(p.gflops).toBeCloseTo(p.usefulFlops / ((p.medianMs as number) * 1e6), 6);
      expect(p.peakBytes).toBeGreaterThan(0);
      expect(p.kernels?.length).toBeGreaterThan(0);
    }
    const report = makeReport(tiny, 1, points);
    const paths = await writeReport(report, tmp, `tiny-${backend}`);
    for (const path of paths) expect(existsSync(path)).toBe(true);
    const json = JSON.parse(readFileSync(paths[1], 'utf8')) as SweepReport;
    expect(json.points).toEqual(JSON.parse(JSON.stringify(points))); // the measured values, not just as many
    expect(json.backend).toMatch(new RegExp(`^${backend}`));
    const md = readFileSync(paths[0], 'utf8');
    expect(md).toMatch(/\| T \| attention \| threads \| median ms/);
    const label = (p: (typeof points)[number]) => (p.variant === 'lsh' ? `lsh R=${p.nHashes}` : 'full');
    for (const p of points) {
      // Each point's row carries its median.
      expect(md).toContain(`| ${p.length} | ${label(p)} | 1 | ${(p.medianMs as number).toFixed(1)} |`);
      if (p.variant === 'lsh') {
        const full = points.find((q) => q.variant === 'full' && q.length === p.length);
        const speedUp = ((full?.medianMs as number) / (p.medianMs as number)).toFixed(2);
        expect(md).toContain(`| ${p.length} | ${label(p)} | ${speedUp}× |`);
      }
    }
    expect(md).toMatch(/Where the time goes/);
    expect(md).toMatch(/^# Attention sweep\n\nAt T=64 LSH attention with 2 hash rounds is [\d.]+× (faster|slower) than full attention/);
    expect(readFileSync(paths[2], 'utf8')).toMatch(/^<svg/);
  });

  it('with backward: times forward + backward and the forward pass alone in the same runs, and tables their ratios', async () => {
    const options: SweepOptions = { ...tiny, lengths: [32], nHashes: [2], backward: true };
    const before = tf.memory().numTensors;
    const points = await runSweep(options);
    expect(tf.memory().numTensors).toBe(before);
    for (const p of points) {
      expect(p.status).toBe('ok');
      expect(p.forwardMedianMs).toBeGreaterThan(0);
      expect(p.forwardPeakBytes).toBeGreaterThan(0);
      // A tape keeps more than the forward pass alone.
      expect(p.peakBytes as number).toBeGreaterThan(p.forwardPeakBytes as number);
    }
    const md = markdown(makeReport(options, 1, points));
    const lsh = points[0];
    expect(md).toContain(
      `| 32 | lsh R=2 | ${(lsh.forwardMedianMs as number).toFixed(1)} | ${(lsh.medianMs as number).toFixed(1)} | ` +
        `${((lsh.medianMs as number) / (lsh.forwardMedianMs as number)).toFixed(2)}× |`,
    );
  });

  it('local attention is a series of its own, with its speed-up over full attention', async () => {
    const options: SweepOptions = { ...tiny, lengths: [32], nHashes: [1], local: true, profile: false };
    const points = await runSweep(options);
    expect(points.map((p) => `${p.variant}:${p.status}`)).toEqual(['lsh:ok', 'local:ok', 'full:ok']);
    const local = points[1];
    expect(local.usefulFlops).toBe(localUsefulFlops({ batch: 1, heads: 2, length: 32, dim: 8, chunkLength: 8, numChunksBefore: 1 }));
    const speedUp = ((points[2].medianMs as number) / (local.medianMs as number)).toFixed(2);
    expect(markdown(makeReport(options, 1, points))).toContain(`| 32 | local | ${speedUp}× |`);
  });

  it('the crossover benchmark times LSH, full and the threshold rule round-robin', async () => {
    const before = tf.memory().numTensors;
    const options = { lengths: [16, 32], batch: 1, heads: 1, dim: 4, nHashes: 2, chunkLength: 8, threshold: 16, runs: 1, backward: true };
    const points = await measureCrossover(options);
    expect(tf.memory().numTensors).toBe(before);
    expect(points.map((p) => p.ruleRan)).toEqual(['full', 'lsh']);
    for (const p of points) {
      for (const ms of [p.lshMs, p.fullMs, p.ruleMs]) expect(ms).toBeGreaterThan(0);
      expect(p.lshOverFull).toBeCloseTo(p.lshMs / p.fullMs, 6); // one run: the ratio of the medians
    }
    expect(crossoverMarkdown(options, points)).toMatch(/\| 16 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| full \|/);
  });

  it('reports lengths over the time budget or out of memory, and goes on', async () => {
    const points = await runSweep({ ...tiny, lengths: [16, 32], nHashes: [1], budgetSeconds: 1e-9, profile: false });
    expect(points.find((p) => p.length === 32 && p.variant === 'lsh')?.status).toBe('over-budget');
    const huge = await runSweep({ ...tiny, lengths: [1 << 16], heads: 1, dim: 1, nHashes: [], profile: false, memoryLimitBytes: 2 ** 20 });
    expect(huge[0].status).toBe('out-of-memory');
    expect(huge[0].reason).toMatch(/fullAttention: this call needs about/);
  });
});

/** A synthetic measured point: T, variant, median ms, peak MiB (or a status when it did not run). */
function row(length: number, variant: 'lsh' | 'full', ms: number | SweepPoint['status'], peakMiB?: number, nHashes = 4): SweepPoint {
  const base = { variant, nHashes: variant === 'lsh' ? nHashes : null, length, threads: 1, usefulFlops: 1 };
  if (typeof ms === 'string') return { ...base, status: ms, reason: 'synthetic' };
  return { ...base, status: 'ok', medianMs: ms, peakBytes: peakMiB === undefined ? undefined : peakMiB * 2 ** 20 };
}

describe('headline: the sentence a sweep ends with', () => {
  // The quick sweep measured on this machine (wasm): LSH slower at 512 and 1024, faster from 2048.
  const quick = [
    row(512, 'lsh', 173.4, 49), row(512, 'full', 73.6, 11),
    row(1024, 'lsh', 386.7, 54), row(1024, 'full', 258.3, 32),
    row(2048, 'lsh', 375.4, 64), row(2048, 'full', 1236.9, 104),
    row(4096, 'lsh', 613.2, 101), row(4096, 'full', 3429.8, 367),
  ];

  it('gives speed-up and memory at the longest common length, and the interpolated crossover', () => {
    // Speed-ups 0.668 at 1024 and 3.295 at 2048: 1024·2^(ln(1/0.668)/ln(3.295/0.668)) ≈ 1220 → 1200.
    expect(headline(quick)).toBe(
      'At T=4096 LSH attention with 4 hash rounds is 5.6× faster than full attention and uses 3.6× less peak tensor memory; ' +
        'it wins from T≈1200 (interpolated between the measured 1024 and 2048).',
    );
  });

  it('says when LSH is faster everywhere, and leaves memory out when it was not profiled', () => {
    const sentence = headline([row(512, 'lsh', 10), row(512, 'full', 20), row(1024, 'lsh', 20), row(1024, 'full', 80)]);
    expect(sentence).toBe('At T=1024 LSH attention with 4 hash rounds is 4.0× faster than full attention; it is faster at every length measured, from T=512.');
  });

  it('says so honestly when LSH never wins in the range', () => {
    const sentence = headline([row(512, 'lsh', 30, 8), row(512, 'full', 10, 4), row(1024, 'lsh', 60, 16), row(1024, 'full', 40, 12)]);
    expect(sentence).toBe(
      'At T=1024 LSH attention with 4 hash rounds is 1.5× slower than full attention and uses 1.3× more peak tensor memory; ' +
        'it is not faster at any length measured (T=512…1024), so it would win, if at all, only at longer sequences.',
    );
  });

  it('does not claim a crossover when LSH is ahead only before the longest length', () => {
    const sentence = headline([row(512, 'lsh', 10), row(512, 'full', 20), row(1024, 'lsh', 50), row(1024, 'full', 40)]);
    expect(sentence).toMatch(/1\.3× slower .*not faster at the longest length measured \(only at T=512\)/);
  });

  it('uses the first winning length after a noisy early win, not the early win', () => {
    const sentence = headline([
      row(256, 'lsh', 10), row(256, 'full', 11),
      row(512, 'lsh', 30), row(512, 'full', 20),
      row(1024, 'lsh', 40), row(1024, 'full', 80),
    ]);
    expect(sentence).toMatch(/wins from T≈\d+ \(interpolated between the measured 512 and 1024\)/);
  });

  it('reports where full attention could not run, comparing at the longest length where both did', () => {
    const sentence = headline([...quick, row(8192, 'lsh', 1300, 180), row(8192, 'full', 'out-of-memory'), row(16384, 'lsh', 2700, 330), row(16384, 'full', 'out-of-memory')]);
    expect(sentence).toMatch(/^At T=4096 .* 5\.6× faster/);
    expect(sentence).toMatch(/; full attention could not run from T=8192 \(out of memory\), while LSH attention ran up to T=16384\.$/);
  });

  it('says there is no comparison when full attention ran nowhere or was not run', () => {
    expect(headline([row(512, 'lsh', 100), row(1024, 'lsh', 210), row(512, 'full', 'over-budget'), row(1024, 'full', 'over-budget')])).toBe(
      'Full attention could not run at any length measured (T=512: over the time budget), while LSH attention with 4 hash rounds ran up to T=1024 (210 ms).',
    );
    expect(headline([row(512, 'lsh', 100)])).toBe('Full attention was not run, so there is no comparison: LSH attention with 4 hash rounds ran up to T=512 (100 ms).');
  });

  it('speaks for the series with the most hash rounds', () => {
    const sentence = headline([row(512, 'lsh', 5, undefined, 1), row(512, 'lsh', 40, undefined, 8), row(512, 'full', 20)]);
    expect(sentence).toBe('At T=512 LSH attention with 8 hash rounds is 2.0× slower than full attention; it is not faster at any length measured, so it would win, if at all, only at longer sequences.');
  });

  it('says when LSH could not run at all, or was not run', () => {
    expect(headline([row(512, 'lsh', 'failed'), row(512, 'full', 10)])).toBe(
      'LSH attention with 4 hash rounds could not run at any length measured (T=512: it failed), so there is nothing to compare.',
    );
    expect(headline([row(512, 'full', 10)])).toBe('The sweep ran no LSH attention, so there is nothing to report.');
  });
});

describe('measuredCrossover', () => {
  const point = (length: number, lshOverFull: number): CrossoverPoint => ({
    length, lshMs: lshOverFull, fullMs: 1, ruleMs: 1, lshOverFull, ruleOverBest: 1, ruleRan: 'full',
  });
  it('is the last length where full attention is faster, before LSH wins at every longer one', () => {
    expect(measuredCrossover([point(512, 2), point(1024, 1.2), point(1536, 0.8), point(2048, 0.5)])).toBe(1024);
    // A noisy win in the middle does not count: LSH must win from there on.
    expect(measuredCrossover([point(512, 0.9), point(1024, 1.2), point(1536, 0.8)])).toBe(1024);
    expect(measuredCrossover([point(512, 1.5), point(1024, 1.2)])).toBeNull(); // never wins
    expect(measuredCrossover([point(512, 0.5), point(1024, 0.4)])).toBeNull(); // wins everywhere measured
  });
});
