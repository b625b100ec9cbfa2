// npx tsx examples/10-song-matching.ts           (5,000 songs, a second or two)
// npx tsx examples/10-song-matching.ts --full    (100,000 songs)
//
// The song-matching story of random-projection LSH: a library of song
// fingerprints (vectors), a noisy recording of one song as the query, the
// query's bucket in each hash table, and the match found by searching only
// those buckets instead of scanning the whole library.
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend } from '../src/backend.js';
import { LSHIndex, SimHash, exactSearch, type LSHIndexJSON } from '../src/lsh/index.js';
import { gaussianArray, uniformStream } from '../src/random.js';

const SONGS = process.argv.includes('--full') ? 100_000 : 5_000;
const DIM = 64; // fingerprint size
const GENRES = ['jazz', 'rock', 'folk', 'techno', 'soul', 'metal', 'ambient', 'salsa'];

await initBackend();
console.log(`backend: ${describeBackend()}`);

// 1. The library: each genre has a typical sound (a centre); each song varies on it.
const random = uniformStream(1, 'songs');
const centres = gaussianArray(GENRES.length * DIM, random);
const variation = gaussianArray(SONGS * DIM, random);
const fingerprints = new Float32Array(SONGS * DIM);
for (let s = 0; s < SONGS; s++) {
  const g = s % GENRES.length;
  for (let d = 0; d < DIM; d++) fingerprints[s * DIM + d] = 0.6 * centres[g * DIM + d] + variation[s * DIM + d];
}
const names = Array.from({ length: SONGS }, (_, s) => `song-${String(s).padStart(6, '0')} (${GENRES[s % GENRES.length]})`);
const library = tf.tensor2d(fingerprints, [SONGS, DIM]);

// 2. An index: 8 tables, each a 12-bit SimHash key (4,096 buckets per table).
const simhash = new SimHash({ dim: DIM, nBits: 12, nTables: 8, seed: 1 });
const index = new LSHIndex(simhash);
let start = performance.now();
await index.add(library, names);
const stats = index.stats();
console.log(
  `\nindexed ${SONGS.toLocaleString('en')} songs in ${(performance.now() - start).toFixed(0)} ms: ` +
    `${stats.mean.buckets.toFixed(0)} buckets per table in use, ${stats.mean.meanSize.toFixed(1)} songs per bucket, ` +
    `balance ${stats.mean.balance.toFixed(2)} (1 = perfectly even)`,
);

// 3. A user plays song 4242 through a noisy phone microphone.
const played = 4242 % SONGS;
const noise = gaussianArray(DIM, uniformStream(1, 'microphone'));
const recording = new Float32Array(DIM);
for (let d = 0; d < DIM; d++) recording[d] = fingerprints[played * DIM + d] + 0.5 * noise[d];
const query = tf.tensor2d(recording, [1, DIM]);
const cosine = (a: Float32Array, b: Float32Array, bOffset: number): number => {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let d = 0; d < DIM; d++) {
    dot += a[d] * b[bOffset + d];
    na += a[d] ** 2;
    nb += b[bOffset + d] ** 2;
  }
  return dot / Math.sqrt(na * nb);
};
console.log(`\nthe user plays ${names[played]}; the recording has cosine ${cosine(recording, fingerprints, played * DIM).toFixed(3)} with it`);

// 4. The recording's bucket in each table, and whether the song is in it.
const song = tf.tensor2d(fingerprints.subarray(played * DIM, (played + 1) * DIM), [1, DIM]);
const queryKeys = simhash.hash(query);
const songKeys = simhash.hash(song);
const [qk, sk] = [queryKeys.dataSync(), songKeys.dataSync()];
tf.dispose([song, queryKeys, songKeys]);
console.log('\ntable  recording bucket   song bucket        same?');
for (let t = 0; t < simhash.nTables; t++) {
  const bits = (key: number): string => key.toString(2).padStart(simhash.nBits, '0');
  console.log(`  ${t}    ${bits(qk[t])}       ${bits(sk[t])}     ${qk[t] === sk[t] ? 'yes' : 'no'}`);
}

// 5. Search only those buckets, re-rank by cosine.
start = performance.now();
const [match] = await index.query(query, 3);
const lshMs = performance.now() - start;
console.log(`\nLSH search: looked at ${match.candidates} of ${SONGS} songs (${((100 * match.candidates) / SONGS).toFixed(2)}%) in ${lshMs.toFixed(1)} ms`);
match.ids.forEach((id, i) => console.log(`  ${i + 1}. ${id}  cosine ${match.scores[i].toFixed(3)}`));
console.log(match.ids[0] === names[played] ? '  → the right song.' : '  → missed: try more tables or multi-probe.');

// 6. The same question by scanning the whole library (timed on a second call, after the backend warmed up).
let best = -1;
let scanMs = 0;
for (let run = 0; run < 2; run++) {
  start = performance.now();
  const exact = exactSearch(query, library, 1);
  best = exact.indices.dataSync()[0];
  scanMs = performance.now() - start;
  tf.dispose([exact.indices, exact.scores]);
}
console.log(`linear scan: ${names[best]} after comparing all ${SONGS} songs in ${scanMs.toFixed(1)} ms`);

// 7. A much noisier recording: one bucket per table is not enough, multi-probe looks next door.
const loud = new Float32Array(DIM);
for (let d = 0; d < DIM; d++) loud[d] = fingerprints[played * DIM + d] + 1.2 * noise[d];
const loudQuery = tf.tensor2d(loud, [1, DIM]);
console.log(`\na noisier recording (cosine ${cosine(loud, fingerprints, played * DIM).toFixed(3)} with the song):`);
for (const probes of [0, 16, 64]) {
  const [r] = await index.query(loudQuery, 1, { probes });
  console.log(
    `  probes ${String(probes).padStart(2)}: ${r.buckets} buckets, ${r.candidates} songs examined → ${r.ids[0] ?? 'nothing'}` +
      `${r.ids[0] === names[played] ? ' ✓' : ''}`,
  );
}

// 8. Save the index and load it back: it answers exactly as before.
const saved = JSON.stringify(index.toJSON());
const reloaded = LSHIndex.fromJSON(JSON.parse(saved) as LSHIndexJSON);
const [again] = await reloaded.query(query, 3);
console.log(
  `\nsaved index: ${(saved.length / 2 ** 20).toFixed(1)} MiB of JSON; reloaded answer ${again.ids[0]} ` +
    `(${JSON.stringify(again) === JSON.stringify(match) ? 'identical' : 'DIFFERENT'})`,
);

reloaded.dispose();
simhash.dispose();
tf.dispose([library, query, loudQuery]);
console.log(`tensors left: ${tf.memory().numTensors}`);
