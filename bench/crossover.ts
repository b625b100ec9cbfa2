// Run: npm run bench:crossover -- [flags]   (what LSHSelfAttention's fullAttentionThreshold default comes from)
//
// Where LSH attention starts to beat full attention, and whether the layers'
// rule (exact attention at T <= fullAttentionThreshold) is never slower than
// the faster of the two. At each length the three calls run round-robin (the
// order rotating every run), so a change of machine load hits all three alike;
// the table reports medians, and the median of the per-run ratios.
//
// Flags (defaults in brackets):
//   --lengths 512,768,…,2048  lengths                 --batch 1 --heads 8 --dim 64
//   --hashes 4 --chunk 64     LSH settings            --threshold <DEFAULT_FULL_ATTENTION_THRESHOLD>
//   --runs 7                  timed runs per call      --backward   time forward + backward
//   --backend wasm|cpu        --out bench/results      --name crossover-<backend>[-backward]
//   --tiny                    T = 32, 64, H = 2, D = 8, C = 8, runs 1 (seconds; CI)
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendName } from '../src/backend.js';
import { DEFAULT_FULL_ATTENTION_THRESHOLD, fullAttention, lshAttention } from '../src/index.js';

/** What to measure. */
export interface CrossoverOptions {
  lengths: number[];
  batch: number;
  heads: number;
  dim: number;
  nHashes: number;
  chunkLength: number;
  /** The rule under test: exact attention at T <= threshold. */
  threshold: number;
  runs: number;
  backward: boolean;
}

/** One length's medians (ms) and ratios. */
export interface CrossoverPoint {
  length: number;
  lshMs: number;
  fullMs: number;
  /** lshAttention with fullAttentionThreshold = threshold: what the LSH layer runs. */
  ruleMs: number;
  /** Median over runs of lsh / full (> 1: full attention is faster). */
  lshOverFull: number;
  /** Median over runs of rule / min(lsh, full) of the same run. */
  ruleOverBest: number;
  /** Which attention the rule ran. */
  ruleRan: 'full' | 'lsh';
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Measures every length on the current backend. */
export async function measureCrossover(o: CrossoverOptions, progress: (message: string) => void = () => {}): Promise<CrossoverPoint[]> {
  const points: CrossoverPoint[] = [];
  for (const length of o.lengths) {
    const qk = tf.randomNormal([o.batch, o.heads, length, o.dim], 0, 1, 'float32', 1) as tf.Tensor4D;
    const v = tf.randomNormal([o.batch, o.heads, length, o.dim], 0, 1, 'float32', 2) as tf.Tensor4D;
    const lshOptions = { nHashes: o.nHashes, chunkLength: o.chunkLength, seed: 1 };
    const forward: Record<'lsh' | 'full' | 'rule', (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor4D> = {
      lsh: (a, b) => lshAttention(a, b, lshOptions),
      full: (a, b) => fullAttention(a, b),
      rule: (a, b) => lshAttention(a, b, { ...lshOptions, fullAttentionThreshold: o.threshold }),
    };
    const time = async (name: 'lsh' | 'full' | 'rule'): Promise<number> => {
      const start = performance.now();
      const result = o.backward
        ? tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(forward[name](a as tf.Tensor4D, b as tf.Tensor4D)))([qk, v])
        : [forward[name](qk, v)];
      for (const t of result) await t.data();
      const ms = performance.now() - start;
      tf.dispose(result);
      return ms;
    };
    const names = ['lsh', 'full', 'rule'] as const;
    for (const name of names) await time(name); // warm-up
    const runs: Record<'lsh' | 'full' | 'rule', number[]> = { lsh: [], full: [], rule: [] };
    for (let run = 0; run < o.runs; run++) {
      progress(`T=${length}: run ${run + 1}/${o.runs}`);
      for (let k = 0; k < names.length; k++) {
        const name = names[(run + k) % names.length];
        runs[name].push(await time(name));
      }
    }
    tf.dispose([qk, v]);
    points.push({
      length,
      lshMs: median(runs.lsh),
      fullMs: median(runs.full),
      ruleMs: median(runs.rule),
      lshOverFull: median(runs.lsh.map((ms, i) => ms / runs.full[i])),
      ruleOverBest: median(runs.rule.map((ms, i) => ms / Math.min(runs.lsh[i], runs.full[i]))),
      ruleRan: length <= o.threshold ? 'full' : 'lsh',
    });
  }
  return points;
}

/** The largest measured length from which on LSH attention is slower (ratio > 1) nowhere: the crossover, as measured. */
export function measuredCrossover(points: CrossoverPoint[]): number | null {
  let crossover: number | null = null;
  for (let i = points.length - 1; i >= 0 && points[i].lshOverFull < 1; i--) crossover = i > 0 ? points[i - 1].length : null;
  return crossover;
}

/** The markdown table. */
export function crossoverMarkdown(o: CrossoverOptions, points: CrossoverPoint[]): string {
  const lines = [
    `Backend: ${describeBackend()}; Node ${process.version}; ${new Date().toISOString()}`,
    `Settings: B=${o.batch}, H=${o.heads}, D=${o.dim}, R=${o.nHashes}, C=${o.chunkLength}, ${o.backward ? 'forward + backward' : 'forward'}; ` +
      `${o.runs} runs per call after a warm-up, the three calls round-robin; rule = exact attention at T ≤ ${o.threshold}.`,
    '',
    '| T | lsh ms | full ms | lsh / full | rule ran | rule ms | rule / faster of the two |',
    '|---:|---:|---:|---:|---|---:|---:|',
    ...points.map(
      (p) =>
        `| ${p.length} | ${p.lshMs.toFixed(1)} | ${p.fullMs.toFixed(1)} | ${p.lshOverFull.toFixed(2)} | ${p.ruleRan} | ${p.ruleMs.toFixed(1)} | ${p.ruleOverBest.toFixed(2)} |`,
    ),
  ];
  const crossover = measuredCrossover(points);
  lines.push('');
  lines.push(
    crossover === null
      ? 'LSH attention is not faster from any measured length on, or faster at every one: no crossover in this range.'
      : `Full attention is faster up to T=${crossover}; LSH attention from the next measured length on.`,
  );
  return lines.join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values: flags } = parseArgs({
    options: {
      lengths: { type: 'string' },
      batch: { type: 'string', default: '1' },
      heads: { type: 'string' },
      dim: { type: 'string' },
      hashes: { type: 'string', default: '4' },
      chunk: { type: 'string' },
      threshold: { type: 'string', default: String(DEFAULT_FULL_ATTENTION_THRESHOLD) },
      runs: { type: 'string' },
      backward: { type: 'boolean', default: false },
      backend: { type: 'string' },
      out: { type: 'string', default: 'bench/results' },
      name: { type: 'string' },
      tiny: { type: 'boolean', default: false },
    },
  });
  const number = (name: string, value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new Error(`crossover: --${name} must be a non-negative integer, got "${value}"`);
    return n;
  };
  const preset = flags.tiny
    ? { lengths: '32,64', heads: 2, dim: 8, chunk: 8, runs: 1 }
    : { lengths: '512,768,1024,1280,1536,1792,2048', heads: 8, dim: 64, chunk: 64, runs: 7 };
  const options: CrossoverOptions = {
    lengths: (flags.lengths ?? preset.lengths).split(',').map((t) => number('lengths', t)),
    batch: number('batch', flags.batch),
    heads: number('heads', flags.heads ?? String(preset.heads)),
    dim: number('dim', flags.dim ?? String(preset.dim)),
    nHashes: number('hashes', flags.hashes),
    chunkLength: number('chunk', flags.chunk ?? String(preset.chunk)),
    threshold: number('threshold', flags.threshold),
    runs: number('runs', flags.runs ?? String(preset.runs)),
    backward: flags.backward,
  };
  await initBackend(flags.backend ? { backend: flags.backend as BackendName } : {});
  const points = await measureCrossover(options, (message) => process.stderr.write(`${message}\n`));
  const table = crossoverMarkdown(options, points);
  console.log(table);
  const name = flags.name ?? `crossover-${tf.getBackend()}${options.backward ? '-backward' : ''}`;
  await mkdir(flags.out, { recursive: true });
  await writeFile(join(flags.out, `${name}.md`), `# LSH against full attention near the crossover\n\n${table}`);
  await writeFile(join(flags.out, `${name}.json`), JSON.stringify({ options, points }, null, 2));
  console.log(`written: ${join(flags.out, name)}.md, .json`);
}
