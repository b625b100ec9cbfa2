// Run: npm run bench -- [flags]        (the full sweep, T = 512 … 65536)
//      npm start                        (the quick version: a few lengths, under a minute)
//      Both end with one sentence: LSH against full attention at the longest length both ran.
//
// Flags (defaults in brackets):
//   --min 512 --max 65536   lengths, doubling        --batch 1 --heads 8 --dim 64
//   --lengths 512,768,1024  explicit lengths (instead of --min/--max)
//   --hashes 4              rounds, comma list        --chunk 64 --before 1
//   --backward              time forward + backward   --runs 3 --budget 300 (s per point)
//   --backend wasm|cpu|tensorflow                     --out bench/out --name sweep
//   --threads 1,2           thread counts to run each variant with, comma list [the pool's: TFJS_THREADS,
//                           else the machine's cores, on wasm]; a column of the table, and a speed-up table
//   --no-profile            skip the profiled run (peak memory, kernel breakdown)
//   --no-full               LSH only
//   --local                 local attention too (chunks in position order, --chunk, --before)
//   --no-layers             skip the whole-layer sweep (tfjs-layers' MultiHeadAttention against
//                           fullMultiHeadAttention and lshMultiHeadAttention, projections included)
//   --layers-only           only the whole-layer sweep       --mha-budget 300 (s per point, MultiHeadAttention)
//   --quick                 T = 512 … 4096, runs 2 (what npm start runs)
//   --tiny                  T = 64, 128, H = 2, D = 16, C = 16, runs 1 (seconds; CI)
import { parseArgs } from 'node:util';
import { describeBackend, initBackend, type BackendName } from '../src/backend.js';
import { attentionThreads } from '../src/parallel.js';
import { matMulPeakGflops, runSweep, type SweepOptions } from './attention_sweep.js';
import { runLayerSweep, type LayerSweepOptions } from './layer_sweep.js';
import { headline, layerHeadline, makeReport, markdown, writeReport } from './report.js';

const { values: flags } = parseArgs({
  options: {
    min: { type: 'string' },
    max: { type: 'string' },
    lengths: { type: 'string' },
    batch: { type: 'string', default: '1' },
    heads: { type: 'string' },
    dim: { type: 'string' },
    hashes: { type: 'string', default: '4' },
    chunk: { type: 'string' },
    before: { type: 'string', default: '1' },
    backward: { type: 'boolean', default: false },
    runs: { type: 'string' },
    budget: { type: 'string', default: '300' },
    backend: { type: 'string' },
    out: { type: 'string', default: 'bench/out' },
    name: { type: 'string' },
    threads: { type: 'string' },
    'no-profile': { type: 'boolean', default: false },
    'no-full': { type: 'boolean', default: false },
    local: { type: 'boolean', default: false },
    'no-layers': { type: 'boolean', default: false },
    'layers-only': { type: 'boolean', default: false },
    'mha-budget': { type: 'string', default: '300' },
    quick: { type: 'boolean', default: false },
    tiny: { type: 'boolean', default: false },
  },
});

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`bench: --${name} must be a positive integer, got "${value}"`);
  return n;
}

const preset = flags.tiny
  ? { min: 64, max: 128, heads: 2, dim: 16, chunk: 16, runs: 1, name: 'tiny' }
  : flags.quick
    ? { min: 512, max: 4096, heads: 8, dim: 64, chunk: 64, runs: 2, name: 'quick' }
    : { min: 512, max: 65536, heads: 8, dim: 64, chunk: 64, runs: 3, name: 'sweep' };
const min = positiveInteger('min', flags.min ?? String(preset.min));
const max = positiveInteger('max', flags.max ?? String(preset.max));
const lengths: number[] = [];
if (flags.lengths !== undefined) lengths.push(...flags.lengths.split(',').map((t) => positiveInteger('lengths', t)));
else for (let t = min; t <= max; t *= 2) lengths.push(t);

const options: SweepOptions = {
  lengths,
  batch: positiveInteger('batch', flags.batch),
  heads: positiveInteger('heads', flags.heads ?? String(preset.heads)),
  dim: positiveInteger('dim', flags.dim ?? String(preset.dim)),
  nHashes: flags.hashes.split(',').map((h) => positiveInteger('hashes', h)),
  chunkLength: positiveInteger('chunk', flags.chunk ?? String(preset.chunk)),
  numChunksBefore: Number(flags.before),
  backward: flags.backward,
  runs: positiveInteger('runs', flags.runs ?? String(preset.runs)),
  budgetSeconds: positiveInteger('budget', flags.budget),
  profile: !flags['no-profile'],
  full: !flags['no-full'],
  local: flags.local,
};

const threads = flags.threads?.split(',').map((t) => positiveInteger('threads', t));
await initBackend({
  ...(flags.backend ? { backend: flags.backend as BackendName } : {}),
  ...(threads ? { threads: Math.max(...threads) } : {}),
});
if (threads && Math.max(...threads) > attentionThreads()) {
  throw new Error(`bench: --threads ${flags.threads} needs the wasm backend (threads split attention calls only there), got ${describeBackend()}`);
}
options.threads = threads;
console.error(`backend: ${describeBackend()}; lengths ${lengths.join(', ')}`);
const peak = await matMulPeakGflops();
console.error(`2-D matMul peak: ${peak.toFixed(1)} GFLOP/s`);
const interactive = process.stderr.isTTY;
const progress = (message: string) => {
  if (interactive) process.stderr.write(`\r\x1b[K${message}`);
  else process.stderr.write(`${message}\n`);
};
if (flags['layers-only'] && flags['no-layers']) throw new Error('bench: --layers-only and --no-layers contradict each other; give one');
const points = flags['layers-only'] ? [] : await runSweep(options, progress);
if (interactive) process.stderr.write('\n');
let layers: { settings: LayerSweepOptions; points: Awaited<ReturnType<typeof runLayerSweep>> } | undefined;
if (!flags['no-layers']) {
  const settings: LayerSweepOptions = {
    lengths,
    batch: options.batch,
    heads: options.heads,
    dim: options.dim,
    nHashes: options.nHashes,
    chunkLength: options.chunkLength,
    numChunksBefore: options.numChunksBefore,
    backward: options.backward,
    runs: options.runs,
    budgetSeconds: options.budgetSeconds,
    mhaBudgetSeconds: positiveInteger('mha-budget', flags['mha-budget']),
    profile: options.profile,
  };
  layers = { settings, points: await runLayerSweep(settings, progress) };
  if (interactive) process.stderr.write('\n');
}
const report = makeReport(options, peak, points, layers);
console.log(markdown(report));
const paths = await writeReport(report, flags.out, flags.name ?? preset.name);
console.log(`written: ${paths.join(', ')}`);
if (points.length > 0) console.log(`\n${headline(points)}`);
if (layers) console.log(`${points.length > 0 ? '' : '\n'}${layerHeadline(layers.points)}`);
