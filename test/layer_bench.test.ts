/**
 * The whole-layer benchmark: tfjs-layers' MultiHeadAttention against this
 * library's MultiHeadAttention-style layers. It runs tiny here (seconds),
 * reports where MultiHeadAttention cannot run and why, keeps budgets, and
 * its table, JSON, chart and sentence name it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { layerLabel, predictMs, runLayerSweep, type LayerPoint, type LayerSweepOptions } from '../bench/layer_sweep.js';
import { layerHeadline, makeReport, writeReport, type SweepReport } from '../bench/report.js';
import type { SweepOptions } from '../bench/attention_sweep.js';
import { describeBackends } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'lsh-layer-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tiny: LayerSweepOptions = {
  lengths: [16, 32],
  batch: 1,
  heads: 2,
  dim: 8,
  nHashes: [2],
  chunkLength: 8,
  numChunksBefore: 1,
  backward: false,
  runs: 1,
  budgetSeconds: 600,
  mhaBudgetSeconds: 600,
  profile: true,
};
const M = tiny.heads * tiny.dim;

/** The attention sweep's settings to hang a layers-only report on. */
const sweepSettings: SweepOptions = { ...tiny, nHashes: [2], lengths: tiny.lengths, full: false };

describeBackends('layer benchmark', (backend) => {
  // MultiHeadAttention runs exactly where the backend has an Einsum kernel (cpu has one in tfjs 4.22, wasm has none).
  const hasEinsum = () => tf.getKernel('Einsum', backend) !== undefined;

  it('times every layer, or says why MultiHeadAttention cannot run; writes it into the table, JSON, chart and sentence', async () => {
    const before = tf.memory().numTensors;
    const points = await runLayerSweep(tiny);
    expect(tf.memory().numTensors).toBe(before);
    expect(points.map((p) => `${p.length}:${layerLabel(p)}`)).toEqual([
      '16:MultiHeadAttention (tfjs-layers)',
      '16:fullMultiHeadAttention',
      '16:lshMultiHeadAttention R=2',
      '32:MultiHeadAttention (tfjs-layers)',
      '32:fullMultiHeadAttention',
      '32:lshMultiHeadAttention R=2',
    ]);
    for (const p of points) {
      if (p.variant === 'mha' && !hasEinsum()) {
        expect(p.status).toBe('unsupported');
        expect(p.reason).toMatch(/Einsum/);
        continue;
      }
      expect(p.status).toBe('ok');
      expect(p.medianMs).toBeGreaterThan(0);
      expect(p.peakBytes).toBeGreaterThan(0);
      // Shared QK: three M×M projections with biases against MultiHeadAttention's four.
      expect(p.parameters).toBe((p.variant === 'mha' ? 4 : 3) * M * (M + 1));
    }

    const report = makeReport(sweepSettings, 1, [], { settings: tiny, points });
    const [mdPath, jsonPath, svgPath] = await writeReport(report, tmp, `layers-${backend}`);
    const md = readFileSync(mdPath, 'utf8');
    const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as SweepReport;
    expect(json.layers?.points).toEqual(JSON.parse(JSON.stringify(points)));
    expect(md).toContain(layerHeadline(points));
    const svg = readFileSync(svgPath, 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('MultiHeadAttention (tfjs-layers)'); // in the legend where it ran, under the title where it did not
    for (const p of points) {
      if (p.status !== 'ok') {
        expect(md).toContain(`| ${p.length} | ${layerLabel(p)} | unsupported: ${p.reason} |`);
        continue;
      }
      const base = points.find((q) => q.variant === 'mha' && q.length === p.length && q.status === 'ok');
      const speedUp = p.variant === 'mha' ? '1×' : base ? `${((base.medianMs as number) / (p.medianMs as number)).toFixed(1)}×` : '–';
      const ms = p.medianMs as number;
      expect(md).toContain(
        `| ${p.length} | ${layerLabel(p)} | ${ms.toFixed(1)} | ${((ms / p.length) * 1000).toFixed(2)} | ` +
          `${((p.peakBytes as number) / 2 ** 20).toFixed(0)} | ${p.parameters} | ${speedUp} |\n`,
      );
    }
  });

  it('with backward: the library’s layers give gradients of the input and every weight; MultiHeadAttention has no Einsum gradient', async () => {
    const before = tf.memory().numTensors;
    const points = await runLayerSweep({ ...tiny, lengths: [16], backward: true, profile: false });
    expect(tf.memory().numTensors).toBe(before);
    const mha = points.find((p) => p.variant === 'mha') as LayerPoint;
    expect(mha.status).toBe('unsupported');
    expect(mha.reason).toMatch(hasEinsum() ? /^no gradient registered for Einsum/ : /^Kernel 'Einsum' not registered for backend 'wasm'/);
    for (const p of points.filter((q) => q.variant !== 'mha')) {
      expect(p.status).toBe('ok');
      expect(p.medianMs).toBeGreaterThan(0);
    }
  });

  it('keeps MultiHeadAttention to its own budget: the warm-up predicts the first length, the last time the next', async () => {
    if (!hasEinsum()) return; // it does not get as far as a warm-up here; the first test checks the reason
    const points = await runLayerSweep({ ...tiny, mhaBudgetSeconds: 1e-9, profile: false });
    const mha = points.filter((p) => p.variant === 'mha');
    expect(mha.map((p) => p.status)).toEqual(['over-budget', 'over-budget']);
    expect(mha[0].reason).toMatch(/^the warm-up took [\d.]+ s, so 1 more calls would take/);
    expect(mha[1].reason).toMatch(/^predicted \d+ s for 2 calls > budget 1e-9 s$/);
    // The library's layers have their own budget and ran.
    expect(points.filter((p) => p.variant !== 'mha').every((p) => p.status === 'ok')).toBe(true);
  });
});

describe('layerHeadline', () => {
  const point = (variant: LayerPoint['variant'], length: number, ms: number | LayerPoint['status'], reason = 'synthetic'): LayerPoint => {
    const base = { variant, nHashes: variant === 'lsh' ? 4 : null, length };
    return typeof ms === 'number' ? { ...base, status: 'ok', medianMs: ms } : { ...base, status: ms, reason };
  };

  it('compares at the longest length MultiHeadAttention ran, and says where it stopped', () => {
    const sentence = layerHeadline([
      point('mha', 256, 60000), point('full', 256, 1400), point('lsh', 256, 2300),
      point('mha', 512, 'over-budget'), point('full', 512, 3800), point('lsh', 512, 5500),
    ]);
    expect(sentence).toBe(
      "At T=256, where tfjs-layers' MultiHeadAttention took 60.0 s a call, lshMultiHeadAttention (R=4) 26× faster and fullMultiHeadAttention 43× faster; " +
        'MultiHeadAttention stopped at T=512 (over-budget), while the LSH layer ran up to T=512.',
    );
  });

  it('says why MultiHeadAttention ran nowhere, and what the library’s layers did', () => {
    const reason = "Kernel 'Einsum' not registered for backend 'wasm'";
    const sentence = layerHeadline([point('mha', 1024, 'unsupported', reason), point('full', 1024, 110), point('lsh', 1024, 140)]);
    expect(sentence).toBe(
      `tfjs-layers' MultiHeadAttention could not run (T=1024: unsupported: ${reason}); at T=1024: lshMultiHeadAttention (R=4) 0.14 s, fullMultiHeadAttention 0.11 s.`,
    );
  });
});

describe('predictMs: how the layer sweep predicts the next length', () => {
  it('uses the order of attention with one point, the measured growth (within [1, 2]) with two', () => {
    expect(predictMs('lsh', [{ length: 64, ms: 100 }], 128)).toBeCloseTo(200, 9);
    expect(predictMs('mha', [{ length: 64, ms: 100 }], 128)).toBeCloseTo(400, 9);
    // Measured 1.5 per doubling: below linear, so linear.
    expect(predictMs('mha', [{ length: 64, ms: 100 }, { length: 128, ms: 150 }], 256)).toBeCloseTo(300, 9);
    // Measured 3 per doubling: k = log2 3.
    expect(predictMs('full', [{ length: 64, ms: 100 }, { length: 128, ms: 300 }], 512)).toBeCloseTo(2700, 6);
    // Measured 8 per doubling: capped at quadratic.
    expect(predictMs('full', [{ length: 64, ms: 10 }, { length: 128, ms: 80 }], 256)).toBeCloseTo(320, 9);
  });
});
