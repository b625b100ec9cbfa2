/**
 * The attention benchmark runs (a tiny sweep, seconds), writes its table,
 * JSON and chart, and reports lengths it cannot run instead of crashing.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, expect, it } from 'vitest';
import { fullUsefulFlops, lshUsefulFlops, runSweep, type SweepOptions } from '../bench/attention_sweep.js';
import { makeReport, writeReport, type SweepReport } from '../bench/report.js';
import { describeBackends } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'lsh-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tiny: SweepOptions = {
  lengths: [32, 64],
  batch: 1,
  heads: 2,
  depth: 8,
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
  expect(lshUsefulFlops({ batch: 1, heads: 1, length: 8, depth: 4, nHashes: 2, chunkLength: 4, numChunksBefore: 1 })).toBe(2 * 16 * 8 * 8);
  expect(fullUsefulFlops({ batch: 2, heads: 1, length: 8, depth: 4 })).toBe(2 * 2 * 64 * 8);
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
    expect(md).toMatch(/\| T \| attention \| median ms/);
    const label = (p: (typeof points)[number]) => (p.variant === 'lsh' ? `lsh R=${p.nHashes}` : 'full');
    for (const p of points) {
      // Each point's row carries its median.
      expect(md).toContain(`| ${p.length} | ${label(p)} | ${(p.medianMs as number).toFixed(1)} |`);
      if (p.variant === 'lsh') {
        const full = points.find((q) => q.variant === 'full' && q.length === p.length);
        const speedUp = ((full?.medianMs as number) / (p.medianMs as number)).toFixed(2);
        expect(md).toContain(`| ${p.length} | ${label(p)} | ${speedUp}× |`);
      }
    }
    expect(md).toMatch(/Where the time goes/);
    expect(readFileSync(paths[2], 'utf8')).toMatch(/^<svg/);
  });

  it('reports lengths over the time budget or out of memory, and goes on', async () => {
    const points = await runSweep({ ...tiny, lengths: [16, 32], nHashes: [1], budgetSeconds: 1e-9, profile: false });
    expect(points.find((p) => p.length === 32 && p.variant === 'lsh')?.status).toBe('over-budget');
    const huge = await runSweep({ ...tiny, lengths: [1 << 16], heads: 1, depth: 1, nHashes: [], profile: false });
    expect(huge[0].status).toBe('out-of-memory');
    expect(huge[0].reason).toMatch(/fullAttention: this call needs about/);
  });
});
