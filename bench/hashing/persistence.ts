// npx tsx bench/hashing/persistence.ts [--count 1000000] [--dim 128]
//
// Saving and loading an LSHIndex: the binary format (toBinary / fromBinary
// through Node file streams) at 1,000,000 × 128 floats, and JSON
// (toJSON / fromJSON) next to it at a tenth of the size (a JSON index of
// 1,000,000 × 128 floats would be a string of ~700 MB, past V8's limit).
// Prints seconds and file sizes; wrap timing runs in flock /work/bench.lock.
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend } from '../../src/backend.js';
import { LSHIndex, SimHash, type LSHIndexJSON } from '../../src/lsh/index.js';
import { gaussianArray, uniformStream } from '../../src/random.js';

const arg = (flag: string, fallback: number): number => {
  const at = process.argv.indexOf(flag);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const count = arg('--count', 1_000_000);
const dim = arg('--dim', 128);

await initBackend();
console.log(`${describeBackend()}; Node ${process.version}`);
const dir = mkdtempSync(join(tmpdir(), 'lsh-persist-'));
try {
  for (const [n, json] of [
    [count, false],
    [Math.round(count / 10), true],
  ] as const) {
    const values = gaussianArray(n * dim, uniformStream(3, 'persistence'));
    const data = tf.tensor2d(values, [n, dim], 'float32');
    const family = new SimHash({ dim, nBits: 16, nTables: 8, seed: 1 });
    const index = new LSHIndex(family, { ownsFamily: true });
    let start = performance.now();
    await index.add(data);
    const build = (performance.now() - start) / 1000;
    data.dispose();
    const path = join(dir, 'index.lshx');
    start = performance.now();
    await pipeline(Readable.from(index.toBinary()), createWriteStream(path));
    const save = (performance.now() - start) / 1000;
    start = performance.now();
    const loaded = await LSHIndex.fromBinary(createReadStream(path, { highWaterMark: 1 << 22 }));
    const load = (performance.now() - start) / 1000;
    if (loaded.size !== n) throw new Error(`loaded ${loaded.size} vectors, saved ${n}`);
    console.log(
      `${n} × ${dim}, SimHash b=16, L=8: build ${build.toFixed(2)} s; binary save ${save.toFixed(2)} s, load ${load.toFixed(2)} s, ` +
        `${(statSync(path).size / 2 ** 20).toFixed(1)} MiB; ${index.stats().memory.bytesPerVector.toFixed(0)} bytes per vector in memory`,
    );
    loaded.dispose();
    if (json) {
      const jsonPath = join(dir, 'index.json');
      start = performance.now();
      writeFileSync(jsonPath, JSON.stringify(index.toJSON()));
      const jsonSave = (performance.now() - start) / 1000;
      start = performance.now();
      const fromJson = LSHIndex.fromJSON(JSON.parse(readFileSync(jsonPath, 'utf8')) as LSHIndexJSON);
      const jsonLoad = (performance.now() - start) / 1000;
      console.log(
        `${n} × ${dim}: JSON save ${jsonSave.toFixed(2)} s, load ${jsonLoad.toFixed(2)} s, ${(statSync(jsonPath).size / 2 ** 20).toFixed(1)} MiB`,
      );
      fromJson.dispose();
    }
    index.dispose();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
