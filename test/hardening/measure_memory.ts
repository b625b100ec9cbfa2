/**
 * Measures what attention calls really allocate against what the memory guard
 * estimates (not a test: the sizes are far too large for the suite).
 *
 *     npx tsx test/hardening/measure_memory.ts [--quick] [--backend wasm|cpu] [--from results.json]
 *
 * Each configuration runs in a fresh child process, so the wasm heap's growth
 * is that configuration's alone. Reported per configuration: the peak of the
 * engine's tensor bytes during the call above what was in use before it
 * (every change of the count is seen, not only kernel boundaries), the wasm
 * heap's growth, the guard's estimate, and estimate / peak (the estimate must
 * be an upper bound: ratio ≥ 1). Raw figures go to
 * bench/out/memory-estimate.json; `--from` recomputes the ratios from such a
 * file with the current estimate, without running anything (give the same
 * --backend as the measurement).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** One measured configuration. */
interface Config {
  name: string;
  variant: 'lsh' | 'full';
  batch: number;
  heads: number;
  length: number;
  dim: number;
  valueDim: number;
  nHashes?: number;
  chunkLength?: number;
  nBuckets?: number | number[];
  blockLogits?: number;
  hashFamily?: 'rotation' | 'simhash';
  causal?: boolean;
  /** Forward and backward under a gradient tape. */
  backward: boolean;
}

interface Measured {
  config: Config;
  /** The guard's estimate, computed in the child (on the measured backend). */
  estimate: number;
  startBytes: number;
  peakBytes: number;
  heapGrowthBytes: number | null;
  ms: number;
  error?: string;
}

const lsh = (name: string, over: Partial<Config>): Config => ({
  name, variant: 'lsh', batch: 1, heads: 8, length: 1024, dim: 64, valueDim: 64, nHashes: 4, chunkLength: 64, backward: false, ...over,
});
const full = (name: string, over: Partial<Config>): Config => ({
  name, variant: 'full', batch: 1, heads: 8, length: 1024, dim: 64, valueDim: 64, backward: false, ...over,
});

const CONFIGS: Config[] = [
  lsh('T=1024', { length: 1024 }),
  lsh('T=2048', { length: 2048 }),
  lsh('T=4096', { length: 4096 }),
  lsh('T=8192', { length: 8192 }),
  lsh('T=4096 blockLogits 2^18', { length: 4096, blockLogits: 2 ** 18 }),
  lsh('T=4096 blockLogits 2^22', { length: 4096, blockLogits: 2 ** 22 }),
  lsh('T=4096 blockLogits 2^24', { length: 4096, blockLogits: 2 ** 24 }),
  lsh('T=8192 blockLogits 2^24', { length: 8192, blockLogits: 2 ** 24 }),
  lsh('T=1024 R=8 C=128 before 2 after 1, Dv 32', { length: 1024, nHashes: 8, chunkLength: 128, valueDim: 32 }),
  lsh('T=4096 simhash causal', { length: 4096, hashFamily: 'simhash', causal: true }),
  lsh('T=2048 H=2 R=1 K=2^16 (huge)', { length: 2048, heads: 2, nHashes: 1, nBuckets: 2 ** 16 }),
  lsh('T=1024 H=8 R=2 K=2^14 (huge)', { length: 1024, nHashes: 2, nBuckets: 2 ** 14 }),
  lsh('T=2048 K=[256, 256]', { length: 2048, nBuckets: [256, 256] }),
  lsh('T=1024 B=2 H=4 K=[64, 64, 64]', { length: 1024, batch: 2, heads: 4, nBuckets: [64, 64, 64] }),
  lsh('T=2048 D=128 C=32 Dv 16', { length: 2048, dim: 128, chunkLength: 32, valueDim: 16 }),
  lsh('tape T=1024', { length: 1024, backward: true }),
  lsh('tape T=1024 D=16 C=128', { length: 1024, dim: 16, valueDim: 16, chunkLength: 128, backward: true }),
  lsh('tape T=1024 D=128 C=32', { length: 1024, dim: 128, chunkLength: 32, backward: true }),
  lsh('tape T=2048', { length: 2048, backward: true }),
  lsh('tape T=2048 blockLogits 2^22', { length: 2048, backward: true, blockLogits: 2 ** 22 }),
  lsh('tape T=1024 H=4 R=2 K=2^14 (huge)', { length: 1024, heads: 4, nHashes: 2, nBuckets: 2 ** 14, backward: true }),
  lsh('tape T=512 H=2 R=1 K=2^16 (huge)', { length: 512, heads: 2, nHashes: 1, nBuckets: 2 ** 16, backward: true }),
  full('full T=1024', { length: 1024 }),
  full('full T=2048', { length: 2048 }),
  full('full T=4096', { length: 4096 }),
  full('full tape T=1024', { length: 1024, backward: true }),
  full('full tape T=2048', { length: 2048, backward: true }),
];

const QUICK = new Set(['T=1024', 'T=4096 blockLogits 2^22', 'T=1024 H=8 R=2 K=2^14 (huge)', 'tape T=1024', 'full T=1024', 'full tape T=1024']);

/** The child: runs one configuration and prints its figures as JSON. */
async function child(config: Config, backend: string): Promise<void> {
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs');
  const { initBackend } = await import('../../src/backend.js');
  const { fullAttention, lshAttention } = await import('../../src/attention.js');
  await initBackend({ backend: backend as 'wasm' });
  const heap = (): number | null => {
    const b = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
    return b.wasm ? b.wasm.HEAPU8.buffer.byteLength : null;
  };
  const { batch, heads, length, dim, valueDim } = config;
  const qk = tf.randomNormal([batch, heads, length, dim]) as import('@tensorflow/tfjs-core').Tensor4D;
  const v = tf.randomNormal([batch, heads, length, valueDim]) as import('@tensorflow/tfjs-core').Tensor4D;
  const attend = (a: typeof qk, b: typeof v) =>
    config.variant === 'lsh'
      ? lshAttention(a, b, {
          nHashes: config.nHashes, chunkLength: config.chunkLength, nBuckets: config.nBuckets, blockLogits: config.blockLogits,
          hashFamily: config.hashFamily, causal: config.causal, seed: 1, numChunksBefore: config.name.includes('before 2') ? 2 : undefined,
          numChunksAfter: config.name.includes('after 1') ? 1 : undefined, memoryLimitBytes: Number.MAX_SAFE_INTEGER,
        })
      : fullAttention(a, b, { causal: config.causal, memoryLimitBytes: Number.MAX_SAFE_INTEGER });
  // Every change of the engine's byte count is seen: the true peak, not only kernel boundaries.
  const state = tf.engine().state as unknown as { numBytes: number };
  let current = state.numBytes;
  let peak = current;
  Object.defineProperty(state, 'numBytes', {
    get: () => current,
    set: (value: number) => {
      current = value;
      if (value > peak) peak = value;
    },
  });
  const heapBefore = heap();
  const startBytes = current;
  peak = current;
  const started = performance.now();
  const result: Measured = { config, estimate: await estimateOf(config), startBytes, peakBytes: 0, heapGrowthBytes: null, ms: 0 };
  try {
    const out = config.backward
      ? tf.grads((a: import('@tensorflow/tfjs-core').Tensor, b: import('@tensorflow/tfjs-core').Tensor) => tf.sum(attend(a as typeof qk, b as typeof v)))([qk, v])
      : [attend(qk, v)];
    await out[0].data();
    tf.dispose(out);
  } catch (error) {
    result.error = (error as Error).message;
  }
  result.ms = performance.now() - started;
  result.peakBytes = peak;
  const heapAfter = heap();
  result.heapGrowthBytes = heapBefore === null || heapAfter === null ? null : heapAfter - heapBefore;
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

const MiB = 2 ** 20;

async function estimateOf(c: Config): Promise<number> {
  const { estimateFullAttentionBytes, estimateLSHAttentionBytes, resolveLSHSettings } = await import('../../src/attention.js');
  const shape = { batch: c.batch, heads: c.heads, length: c.length, dim: c.dim, valueDim: c.valueDim };
  if (c.variant === 'full') return estimateFullAttentionBytes(shape, c.backward);
  const settings = resolveLSHSettings('measure', c.length, c.dim, {
    nHashes: c.nHashes, chunkLength: c.chunkLength, nBuckets: c.nBuckets, hashFamily: c.hashFamily, blockLogits: c.blockLogits,
    numChunksBefore: c.name.includes('before 2') ? 2 : undefined, numChunksAfter: c.name.includes('after 1') ? 1 : undefined,
  } as Parameters<typeof resolveLSHSettings>[3]);
  return estimateLSHAttentionBytes(shape, settings, c.backward);
}

async function report(results: Measured[], recompute: boolean): Promise<void> {
  console.log('| configuration | start MiB | peak − start MiB | heap growth MiB | estimate MiB | estimate / peak | s |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  const ratios: number[] = [];
  for (const r of results) {
    const used = r.peakBytes - r.startBytes;
    const estimate = recompute ? await estimateOf(r.config) : r.estimate;
    const ratio = estimate / used;
    if (!r.error) ratios.push(ratio);
    const cells = [
      r.config.name, (r.startBytes / MiB).toFixed(1), (used / MiB).toFixed(1),
      r.heapGrowthBytes === null ? '–' : (r.heapGrowthBytes / MiB).toFixed(0), (estimate / MiB).toFixed(1),
      r.error ? `failed: ${r.error.slice(0, 80)}` : ratio.toFixed(2), (r.ms / 1000).toFixed(1),
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
  if (ratios.length > 0) console.log(`\nestimate / peak: min ${Math.min(...ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)}`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const backend = flag('--backend') ?? 'wasm';
  const childConfig = flag('--child');
  if (childConfig !== undefined) return child(JSON.parse(childConfig) as Config, backend);
  const from = flag('--from');
  if (from !== undefined) {
    // The estimate depends on the backend (cpu runs the softmax as tf ops): recompute on the one measured.
    const { initBackend } = await import('../../src/backend.js');
    await initBackend({ backend: backend as 'wasm' });
    return report(JSON.parse(readFileSync(from, 'utf8')) as Measured[], true);
  }
  const only = flag('--only');
  const configs = CONFIGS.filter((c) => (!args.includes('--quick') || QUICK.has(c.name)) && (only === undefined || c.name.includes(only)));
  const results: Measured[] = [];
  const self = fileURLToPath(import.meta.url);
  for (const config of configs) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', JSON.stringify(config), '--backend', backend], {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    const line = run.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (line === undefined) {
      console.error(`${config.name}: no result (exit ${run.status}): ${run.stderr.slice(-500)}`);
      continue;
    }
    const measured = JSON.parse(line.slice('RESULT '.length)) as Measured;
    console.error(`${config.name}: peak − start ${((measured.peakBytes - measured.startBytes) / MiB).toFixed(1)} MiB${measured.error ? ` (${measured.error})` : ''}`);
    results.push(measured);
  }
  mkdirSync('bench/out', { recursive: true });
  writeFileSync(`bench/out/memory-estimate-${backend}.json`, JSON.stringify(results, null, 1));
  await report(results, false);
}

await main();
