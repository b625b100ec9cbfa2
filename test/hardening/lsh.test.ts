/**
 * Hardening sweep, hashing library: real indexes (SimHash, rotation hash,
 * kernelized LSH) are saved with toJSON, then their JSON is corrupted
 * (fields edited, retyped, removed; arrays truncated, bytes flipped) and
 * loading must fail with a message naming the field, what was expected and
 * what was found, leaking no tensor. Then bad calls to the public API:
 * each gives its error or the correct result, never a hang or a silent
 * wrong answer.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { base64ToFloat32, base64ToInt32, float32ToBase64, int32ToBase64 } from '../../src/lsh/encoding.js';
import {
  KernelizedLSH,
  LSHIndex,
  MAX_PROBES,
  RotationHash,
  SimHash,
  customKernel,
  familyFromJSON,
  medianGamma,
  probeSequence,
  rbfKernel,
  type HashFamily,
  type HashFamilyJSON,
  type LSHIndexJSON,
} from '../../src/lsh/index.js';
import { describeBackends, expectNoLeaks, randomTensor } from '../helpers.js';

/** A hang fails the case instead of stalling the run. */
const CASE_TIMEOUT = 20_000;

const [ROWS, DIM] = [40, 4];

type Base = 'simhash' | 'rotation' | 'klsh';
// Saved JSON is edited freely here, field by field, as a user or a broken disk would.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Editable = Record<string, any>;

function makeFamily(base: Base, data: tf.Tensor2D): HashFamily {
  switch (base) {
    case 'simhash':
      return new SimHash({ dim: DIM, nBits: 6, nTables: 2, seed: 3 });
    case 'rotation':
      return new RotationHash({ dim: DIM, nBuckets: 4, hashesPerTable: 2, nTables: 2, seed: 3 });
    case 'klsh':
      return KernelizedLSH.fit(data, { kernel: rbfKernel({ gamma: 0.5 }), nAnchors: 10, nBits: 4, nTables: 2, seed: 3 });
  }
}

/** Saved index texts, one per family, made on the backend under test. */
const saved = new Map<Base, string>();

async function saveIndexes(): Promise<void> {
  const data = randomTensor([ROWS, DIM], 1) as tf.Tensor2D;
  for (const base of ['simhash', 'rotation', 'klsh'] as const) {
    const family = makeFamily(base, data);
    const index = new LSHIndex(family);
    await index.add(data);
    saved.set(base, JSON.stringify(index.toJSON()));
    index.dispose();
    family.dispose();
  }
  data.dispose();
}

function savedJSON(base: Base): Editable {
  return JSON.parse(saved.get(base)!) as Editable;
}

/** Rewrites a base64 float32 field. */
function editFloats(owner: Editable, field: string, edit: (values: Float32Array) => void): void {
  const values = base64ToFloat32('test', field, owner[field], atob(owner[field]).length / 4);
  edit(values);
  owner[field] = float32ToBase64(values);
}

/** Rewrites a base64 int32 field. */
function editInts(owner: Editable, field: string, edit: (values: Int32Array) => void): void {
  const values = base64ToInt32('test', field, owner[field], atob(owner[field]).length / 4);
  edit(values);
  owner[field] = int32ToBase64(values);
}

/** [what is wrong, the saved index it is done to, the edit, expected message]. */
const corruptions: [string, Base, (json: Editable) => void, RegExp][] = [
  // The index's own fields.
  ['nextId a string (made the second add hang)', 'simhash', (j) => (j.nextId = 'abc'), /LSHIndex\.fromJSON: nextId must be an integer in \[0, 9007199254740991\] \(the next default id\), got "abc"; the saved JSON is edited/],
  ['nextId null (Infinity after JSON)', 'simhash', (j) => (j.nextId = Infinity), /nextId must be an integer in \[0, \d+\] \(the next default id\), got null/],
  ['nextId negative', 'simhash', (j) => (j.nextId = -1), /nextId must be an integer in .*, got number -1/],
  ['nextId a fraction', 'simhash', (j) => (j.nextId = 40.5), /nextId must be an integer in .*, got number 40\.5/],
  ['format missing', 'simhash', (j) => delete j.format, /LSHIndex\.fromJSON: expected a saved index with format 'tfjs-lsh-attention\/lsh-index' \(from index\.toJSON\(\)\), got format nothing/],
  ['version 2', 'simhash', (j) => (j.version = 2), /LSHIndex\.fromJSON: version must be 1, got number 2/],
  ['size not the number of ids', 'simhash', (j) => (j.size = 41), /LSHIndex\.fromJSON: ids must list size = 41 ids, got an array of length 40/],
  ['size a string', 'simhash', (j) => (j.size = '40'), /LSHIndex\.fromJSON: size must be a non-negative integer \(the number of stored vectors\), got "40"/],
  ['dim 0', 'simhash', (j) => (j.dim = 0), /LSHIndex\.fromJSON: dim must be a positive integer, got 0/],
  ['dim edited (4 → 5)', 'simhash', (j) => (j.dim = 5), /LSHIndex\.fromJSON: vectors must hold 200 4-byte values \(\[size, dim\] = \[40, 5\]\), got 640 bytes; the saved JSON is truncated or edited/],
  ['an id repeated', 'simhash', (j) => (j.ids[7] = j.ids[3]), /LSHIndex\.fromJSON: ids\[7\] repeats the id 3 \(ids must be unique\); the saved JSON is edited/],
  ['an id null', 'simhash', (j) => (j.ids[2] = null), /LSHIndex\.fromJSON: ids\[2\] must be a string or a finite number, got null/],
  ['an id an object', 'simhash', (j) => (j.ids[0] = { id: 0 }), /LSHIndex\.fromJSON: ids\[0\] must be a string or a finite number, got an object/],
  ['vectors truncated', 'simhash', (j) => (j.vectors = j.vectors.slice(0, -8)), /LSHIndex\.fromJSON: vectors must hold 160 4-byte values \(\[size, dim\] = \[40, 4\]\), got \d+ bytes; the saved JSON is truncated or edited/],
  ['vectors with a character that is not base64', 'simhash', (j) => (j.vectors = `*${j.vectors.slice(1)}`), /LSHIndex\.fromJSON: vectors is not valid base64 \(bad character at 0\)/],
  ['vectors a number', 'simhash', (j) => (j.vectors = 12), /LSHIndex\.fromJSON: vectors must be a base64 string \(length a multiple of 4\), got number 12/],
  ['vector bytes flipped to NaN', 'simhash', (j) => editFloats(j, 'vectors', (v) => (v[9] = NaN)), /LSHIndex\.fromJSON: vectors must be finite, got NaN in row 2; the saved JSON is corrupted/],
  ['keys truncated', 'simhash', (j) => (j.keys = j.keys.slice(0, -4)), /LSHIndex\.fromJSON: keys must hold 80 4-byte values \(\[size, family\.nTables\] = \[40, 2\]\), got \d+ bytes/],
  ['a key outside the key range', 'simhash', (j) => editInts(j, 'keys', (k) => (k[5] = 1 << 20)), /LSHIndex\.fromJSON: keys must be in \[0, 64\) \(the family's 6 digits in base 2\), got 1048576 for row 2, table 1; the keys or the family were edited/],
  ['a key negative', 'simhash', (j) => editInts(j, 'keys', (k) => (k[0] = -1)), /keys must be in \[0, 64\) .*got -1 for row 0, table 0/],
  ['a key edited within range (all its bits flipped)', 'simhash', (j) => editInts(j, 'keys', (k) => (k[0] ^= 63)), /LSHIndex\.fromJSON: the saved keys do not match the family: stored row 0 hashes to \d+ in table 0, the file says \d+; the family .* or the keys were edited/],
  ['similarity with a string gamma', 'simhash', (j) => (j.similarity = { name: 'rbf', params: { gamma: 'x' } }), /LSHIndex\.fromJSON: similarity\.params\.gamma must be a finite number, got "x"/],
  ['similarity with gamma −1', 'simhash', (j) => (j.similarity = { name: 'rbf', params: { gamma: -1 } }), /LSHIndex\.fromJSON \(similarity\.params\): gamma must be a finite number > 0, got number -1/],
  ['similarity params a string', 'simhash', (j) => (j.similarity = { name: 'rbf', params: 'x' }), /LSHIndex\.fromJSON: similarity\.params must be an object of numbers, got "x"/],
  ['similarity linear with a parameter', 'simhash', (j) => (j.similarity = { name: 'linear', params: { gamma: 1 } }), /LSHIndex\.fromJSON: similarity: kernel 'linear' takes no parameters, got params\.gamma; the saved JSON is edited/],
  ['similarity named constructor (found Object.prototype.constructor)', 'simhash', (j) => (j.similarity = { name: 'constructor', params: {} }), /LSHIndex\.fromJSON: kernel 'constructor' is not built in \(linear, rbf, chi2\); pass it when loading/],
  ['similarity without a name', 'simhash', (j) => (j.similarity = { params: {} }), /LSHIndex\.fromJSON: similarity\.name must be a non-empty string, got nothing/],
  // SimHash family.
  ['family.nBits edited (6 → 7): every query found nothing', 'simhash', (j) => (j.family.nBits = 7), /LSHIndex\.fromJSON: the saved keys do not match the family: stored row 0 hashes to \d+ in table 0, the file says \d+/],
  ['family.nBits 40', 'simhash', (j) => (j.family.nBits = 40), /SimHash\.fromJSON: nBits must be an integer in \[1, 30\], got number 40/],
  ['family.seed edited', 'simhash', (j) => (j.family.seed += 1), /the saved keys do not match the family: stored row \d+ hashes to/],
  ['family.seed missing (was redrawn from entropy)', 'simhash', (j) => delete j.family.seed, /SimHash\.fromJSON: seed must be an integer in \[0, 2147483647\], got nothing; the saved JSON is incomplete/],
  ['family.seed a string', 'simhash', (j) => (j.family.seed = '3'), /SimHash\.fromJSON: seed must be an integer in \[0, 2147483647\], got "3"/],
  ['family.seed above 2^31 − 1', 'simhash', (j) => (j.family.seed = 2 ** 31), /SimHash\.fromJSON: seed must be an integer in \[0, 2147483647\], got 2147483648/],
  ['family.nTables edited (2 → 3)', 'simhash', (j) => (j.family.nTables = 3), /LSHIndex\.fromJSON: keys must hold 120 4-byte values \(\[size, family\.nTables\] = \[40, 3\]\), got 320 bytes/],
  ['family.dim edited (4 → 5)', 'simhash', (j) => (j.family.dim = 5), /LSHIndex\.fromJSON: dim must match family\.dim = 5, got 4; the saved JSON is edited/],
  ['family.dim a string', 'simhash', (j) => (j.family.dim = '4'), /SimHash\.fromJSON: dim must be a positive integer, got "4"/],
  ['family.kind unknown', 'simhash', (j) => (j.family.kind = 'minhash'), /familyFromJSON: kind must be 'simhash', 'rotation' or 'klsh', got "minhash"/],
  ['family missing', 'simhash', (j) => delete j.family, /familyFromJSON: kind must be 'simhash', 'rotation' or 'klsh', got nothing/],
  // Rotation-hash family.
  ['family.nBuckets a string', 'rotation', (j) => (j.family.nBuckets = '4'), /RotationHash\.fromJSON: nBuckets must be an even integer ≥ 2, got "4"/],
  ['family.nBuckets odd', 'rotation', (j) => (j.family.nBuckets = 5), /RotationHash\.fromJSON: nBuckets must be an even integer ≥ 2, got 5/],
  ['family.hashesPerTable 0', 'rotation', (j) => (j.family.hashesPerTable = 0), /RotationHash\.fromJSON: hashesPerTable must be a positive integer, got 0/],
  ['family.hashesPerTable too many (4^16 keys)', 'rotation', (j) => (j.family.hashesPerTable = 16), /RotationHash\.fromJSON: nBuckets\^hashesPerTable must be at most 2\^30 \(keys are int32\), got 4\^16/],
  ['family.nBuckets edited (4 → 8)', 'rotation', (j) => (j.family.nBuckets = 8), /LSHIndex\.fromJSON: the saved keys do not match the family/],
  ['family.seed edited', 'rotation', (j) => (j.family.seed = 4), /LSHIndex\.fromJSON: the saved keys do not match the family/],
  // Kernelized LSH family.
  ['family.grandMean null (failed only at hash time)', 'klsh', (j) => (j.family.grandMean = null), /KernelizedLSH\.fromJSON: grandMean must be a finite number \(the mean of the anchor kernel matrix\), got null/],
  ['family.anchors truncated', 'klsh', (j) => (j.family.anchors = j.family.anchors.slice(0, -8)), /KernelizedLSH\.fromJSON: anchors must hold 40 4-byte values \(\[p, D\] = \[10, 4\]\), got \d+ bytes/],
  ['family.nBits edited (4 → 5): weights no longer [p, L·b]', 'klsh', (j) => (j.family.nBits = 5), /KernelizedLSH\.fromJSON: weights must hold 100 4-byte values \(\[p, L·b\] = \[10, 10\]\), got 320 bytes/],
  ['family.nAnchors edited (10 → 9)', 'klsh', (j) => (j.family.nAnchors = 9), /KernelizedLSH\.fromJSON: subsetSize must be an integer in \[1, 9\], got number 10/],
  ['family.nAnchors and subsetSize edited (10 → 9)', 'klsh', (j) => (j.family.nAnchors = j.family.subsetSize = 9), /KernelizedLSH\.fromJSON: anchors must hold 36 4-byte values \(\[p, D\] = \[9, 4\]\), got 160 bytes/],
  ['family.anchors with NaN', 'klsh', (j) => editFloats(j.family, 'anchors', (v) => (v[3] = NaN)), /KernelizedLSH\.fromJSON: anchors must hold finite numbers, got NaN at 3; the saved JSON is corrupted/],
  ['family.bitScales with a zero', 'klsh', (j) => editFloats(j.family, 'bitScales', (v) => (v[1] = 0)), /KernelizedLSH\.fromJSON: bitScales must be positive \(standard deviations\), got 0 at 1/],
  ['family.weights negated (finite, every bit flips)', 'klsh', (j) => editFloats(j.family, 'weights', (v) => v.forEach((w, i) => (v[i] = -w))), /LSHIndex\.fromJSON: the saved keys do not match the family/],
  ['family.rank 0', 'klsh', (j) => (j.family.rank = 0), /KernelizedLSH\.fromJSON: rank must be an integer in \[1, 10\], got number 0/],
  ['family.subsetSize above nAnchors', 'klsh', (j) => (j.family.subsetSize = 11), /KernelizedLSH\.fromJSON: subsetSize must be an integer in \[1, 10\], got number 11/],
  ['family.eigenvalueCutoff 2', 'klsh', (j) => (j.family.eigenvalueCutoff = 2), /KernelizedLSH\.fromJSON: eigenvalueCutoff must be a number in \(0, 1\), got number 2/],
  ['family.kernel missing', 'klsh', (j) => delete j.family.kernel, /KernelizedLSH\.fromJSON: kernel must be a saved kernel \{ name, params \}, got nothing/],
  ['family.kernel gamma 0', 'klsh', (j) => (j.family.kernel.params.gamma = 0), /KernelizedLSH\.fromJSON \(kernel\.params\): gamma must be a finite number > 0, got number 0/],
  ['family.kernel renamed to a custom one not supplied', 'klsh', (j) => (j.family.kernel.name = 'mine'), /KernelizedLSH\.fromJSON: kernel 'mine' is not built in \(linear, rbf, chi2\); pass it when loading, e\.g\. \{ kernels: \{ 'mine': yourKernelFunction \} \}/],
  ['family.seed missing', 'klsh', (j) => delete j.family.seed, /KernelizedLSH\.fromJSON: seed must be an integer in \[0, 2147483647\], got nothing/],
];

/** Bad calls on an index of ROWS vectors (SimHash, 6 bits, 2 tables): each throws this, or returns the right thing. */
interface Context {
  index: LSHIndex;
  family: SimHash;
  data: tf.Tensor2D;
}

const badCalls: [string, (c: Context) => Promise<void>][] = [
  [
    'NaN in a query (was scored 0 and returned)',
    async ({ index }) => {
      const q = tf.tensor2d([[1, NaN, 0, 0]]);
      await expect(index.query(q, 3)).rejects.toThrow(/LSHIndex\.query: queries must be finite, got NaN in row 0; clean or drop that row/);
      q.dispose();
    },
  ],
  [
    'Infinity in vectors to add',
    async ({ index }) => {
      const x = tf.tensor2d([[0, 0, 0, 0], [Infinity, 0, 0, 0]]);
      await expect(index.add(x)).rejects.toThrow(/LSHIndex\.add: vectors must be finite, got Infinity in row 1/);
      expect(index.size).toBe(ROWS);
      x.dispose();
    },
  ],
  [
    'k 0, 1.5, Infinity and a string',
    async ({ index, data }) => {
      for (const k of [0, 1.5, Infinity, '3']) {
        await expect(index.query(data, k as number)).rejects.toThrow(/LSHIndex\.query: k must be a positive integer, got /);
      }
    },
  ],
  [
    'probes −1 and 2.5',
    async ({ index, data }) => {
      for (const probes of [-1, 2.5]) {
        await expect(index.query(data, 3, { probes })).rejects.toThrow(/LSHIndex\.query: probes must be a non-negative integer, got /);
      }
    },
  ],
  [
    'probes 1e9 on 6-bit keys probe every bucket (allocated gigabytes before)',
    async ({ index, data }) => {
      const q = tf.slice(data, [0, 0], [2, DIM]) as tf.Tensor2D;
      const all = await index.query(q, ROWS, { probes: 1e9 });
      const every = await index.query(q, ROWS, { probes: 2 * 63 });
      expect(all).toEqual(every);
      all.forEach((r) => {
        expect(r.buckets).toBe(2 * 64);
        expect(r.candidates).toBe(ROWS);
      });
      q.dispose();
    },
  ],
  [
    'probes above MAX_PROBES on 30-bit keys',
    async ({ data }) => {
      const wide = new SimHash({ dim: DIM, nBits: 30, nTables: 2, seed: 1 });
      const index = new LSHIndex(wide);
      await index.add(data);
      await expect(index.query(data, 3, { probes: MAX_PROBES + 1 })).rejects.toThrow(
        /LSHIndex\.query: probes must be at most MAX_PROBES = 65536 \(each is a bucket looked up per query\), got 65537/,
      );
      expect(() => probeSequence(new Float32Array(4), 0, 1, 1, 2, MAX_PROBES + 1)).toThrow(/probeSequence: count must be at most MAX_PROBES = 65536, got 65537/);
      wide.dispose();
    },
  ],
  [
    'querying an empty index finds nothing, correctly',
    async ({ family, data }) => {
      const empty = new LSHIndex(family);
      const results = await empty.query(data, 5, { probes: 4 });
      expect(results.length).toBe(ROWS);
      results.forEach((r) => expect(r).toEqual({ ids: [], scores: [], candidates: 0, buckets: 2 + 4 }));
      const json = empty.toJSON();
      const loaded = LSHIndex.fromJSON(json);
      expect(loaded.size).toBe(0);
      loaded.dispose();
    },
  ],
  [
    'zero queries give zero results',
    async ({ index }) => {
      const none = tf.zeros([0, DIM]) as tf.Tensor2D;
      expect(await index.query(none, 3)).toEqual([]);
      none.dispose();
    },
  ],
  [
    'queries of the wrong width, rank or dtype',
    async ({ index }) => {
      const wide = tf.zeros([2, DIM + 1]) as tf.Tensor2D;
      const flat = tf.zeros([DIM]);
      const ints = tf.zeros([2, DIM], 'int32') as tf.Tensor2D;
      await expect(index.query(wide, 3)).rejects.toThrow(/LSHIndex\.query: queries must have D = 4 columns .*got shape \[2, 5\]/);
      await expect(index.query(flat as unknown as tf.Tensor2D, 3)).rejects.toThrow(/LSHIndex\.query: queries must have rank 2 \[N, D\], got rank 1/);
      await expect(index.query(ints, 3)).rejects.toThrow(/LSHIndex\.query: queries must be float32, got int32/);
      await expect(index.query([[1, 2, 3, 4]] as unknown as tf.Tensor2D, 3)).rejects.toThrow(/queries must be a float32 tf\.Tensor2D \[N, D\], got an array of length 1/);
      tf.dispose([wide, flat, ints]);
    },
  ],
  [
    'a query tensor disposed before the call',
    async ({ index }) => {
      const q = tf.zeros([1, DIM]) as tf.Tensor2D;
      q.dispose();
      await expect(index.query(q, 3)).rejects.toThrow(/LSHIndex\.query: queries was disposed before this call/);
    },
  ],
  [
    'remove with a Set, null, or an array holding an object',
    async ({ index }) => {
      expect(() => index.remove(new Set([1, 2]) as unknown as number[])).toThrow(/LSHIndex\.remove: ids must be an id \(a string or number\) or an array of ids, got a Set/);
      expect(() => index.remove(null as unknown as number)).toThrow(/LSHIndex\.remove: ids must be an id .*, got null/);
      expect(() => index.remove([1, {}] as unknown as number[])).toThrow(/LSHIndex\.remove: ids must be an id .*, got an object at 1/);
      expect(index.size).toBe(ROWS);
    },
  ],
  [
    'removing unknown ids and the same id twice removes each once',
    async ({ index, data }) => {
      expect(index.remove(['nope', 999])).toBe(0);
      expect(index.remove([3, 3])).toBe(1);
      expect(index.remove(3)).toBe(0);
      expect(index.size).toBe(ROWS - 1);
      const results = await index.query(data, ROWS, { probes: 2 * 63 });
      results.forEach((r) => expect(r.ids).not.toContain(3));
    },
  ],
  [
    'two adds at once with the same id store it once',
    async ({ family, data }) => {
      const index = new LSHIndex(family);
      const row = tf.slice(data, [0, 0], [1, DIM]) as tf.Tensor2D;
      const outcomes = await Promise.allSettled([index.add(row, ['z']), index.add(row, ['z'])]);
      expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
      const failure = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect((failure.reason as Error).message).toMatch(/LSHIndex\.add: id "z" was stored meanwhile by another add \(ids must be unique\); await one add before the next/);
      expect(index.ids()).toEqual(['z']);
      row.dispose();
    },
  ],
  [
    'default ids that would pass 2^53 − 1',
    async ({ family, data }) => {
      const index = new LSHIndex(family);
      const json = { ...index.toJSON(), nextId: Number.MAX_SAFE_INTEGER };
      const loaded = LSHIndex.fromJSON(json);
      await expect(loaded.add(data)).rejects.toThrow(/LSHIndex\.add: default ids ran out \(the next would be 9007199254740991, past 2\^53 − 1\); pass ids yourself/);
      const row = tf.slice(data, [0, 0], [1, DIM]) as tf.Tensor2D;
      await loaded.add(row, ['mine']);
      expect(loaded.ids()).toEqual(['mine']);
      row.dispose();
      loaded.dispose();
    },
  ],
  [
    'an index used after dispose (disposing twice is fine)',
    async ({ index, data }) => {
      const loaded = LSHIndex.fromJSON(index.toJSON());
      loaded.dispose();
      loaded.dispose();
      await expect(loaded.query(data, 3)).rejects.toThrow(/LSHIndex\.query: this index was disposed; build or load a new one/);
      await expect(loaded.add(data)).rejects.toThrow(/LSHIndex\.add: this index was disposed/);
      expect(() => loaded.toJSON()).toThrow(/LSHIndex\.toJSON: this index was disposed/);
    },
  ],
  [
    'an index whose family was disposed',
    async ({ data }) => {
      const family = new SimHash({ dim: DIM, nBits: 4, seed: 1 });
      const index = new LSHIndex(family);
      await index.add(data);
      family.dispose();
      await expect(index.query(data, 3)).rejects.toThrow(/SimHash\.hash: this SimHash was disposed \(its tensors are freed\); build or load a new one/);
      const klsh = KernelizedLSH.fit(data, { nAnchors: 10, nBits: 4, seed: 1 });
      klsh.dispose();
      expect(() => klsh.hash(data)).toThrow(/KernelizedLSH\.hash: this KernelizedLSH was disposed/);
      expect(() => klsh.toJSON()).toThrow(/KernelizedLSH\.toJSON: this KernelizedLSH was disposed/);
      const rotation = new RotationHash({ dim: DIM, nBuckets: 4, seed: 1 });
      rotation.dispose();
      expect(() => rotation.digitScores(data)).toThrow(/RotationHash\.digitScores: this RotationHash was disposed/);
    },
  ],
  [
    'KernelizedLSH.fit on identical rows',
    async ({ data }) => {
      const same = tf.tidy(() => tf.tile(tf.slice(data, [0, 0], [1, DIM]), [30, 1])) as tf.Tensor2D;
      expect(() => KernelizedLSH.fit(same, { nAnchors: 10, seed: 1 })).toThrow(
        /KernelizedLSH\.fit: all 30 rows of data are identical; kernelized LSH needs at least 2 distinct rows \(and nAnchors of them\): pass varied data/,
      );
      same.dispose();
    },
  ],
  [
    'KernelizedLSH.fit with fewer distinct rows than anchors',
    async ({ data }) => {
      const three = tf.tidy(() => tf.tile(tf.slice(data, [0, 0], [3, DIM]), [10, 1])) as tf.Tensor2D;
      expect(() => KernelizedLSH.fit(three, { nAnchors: 10, seed: 1 })).toThrow(
        /KernelizedLSH\.fit: data has only 3 distinct rows, fewer than nAnchors \(p = 10\); pass nAnchors ≤ 3 or more varied data/,
      );
      // With p ≤ the distinct rows it fits, on distinct anchors.
      const klsh = KernelizedLSH.fit(three, { nAnchors: 3, nBits: 4, seed: 1 });
      const anchors = klsh.anchors.arraySync().map((row) => row.join(','));
      expect(new Set(anchors).size).toBe(3);
      klsh.dispose();
      three.dispose();
    },
  ],
  [
    'KernelizedLSH.fit on data with repeats samples distinct anchors',
    async ({ data }) => {
      const repeated = tf.concat([data, data, data]) as tf.Tensor2D; // 120 rows, 40 distinct
      const klsh = KernelizedLSH.fit(repeated, { nAnchors: 40, nBits: 4, seed: 2 });
      expect(new Set(klsh.anchors.arraySync().map((row) => row.join(','))).size).toBe(40);
      expect(klsh.rank).toBeGreaterThan(1);
      klsh.dispose();
      repeated.dispose();
    },
  ],
  [
    'KernelizedLSH.fit on rows distinct only below float32 kernel rounding',
    async ({ data }) => {
      const base = tf.slice(data, [0, 0], [1, DIM]);
      const near = tf.tidy(() => tf.add(tf.tile(base, [20, 1]), tf.mul(randomTensor([20, DIM], 5), 1e-6))) as tf.Tensor2D;
      expect(() => KernelizedLSH.fit(near, { kernel: rbfKernel({ gamma: 0.01 }), nAnchors: 10, seed: 1 })).toThrow(
        /KernelizedLSH\.fit: the centred anchor kernel matrix has no positive eigenvalue above float32 rounding \(largest .*, rounding .*\); the kernel 'rbf' sees all 10 anchors as the same point/,
      );
      tf.dispose([base, near]);
    },
  ],
  [
    'medianGamma on identical rows',
    async ({ data }) => {
      const same = tf.tidy(() => tf.tile(tf.slice(data, [0, 0], [1, DIM]), [5, 1])) as tf.Tensor2D;
      expect(() => medianGamma(same)).toThrow(/medianGamma: all 2000 sampled pairs of rows are identical \(distance 0\); the data has no spread: pass varied data or choose gamma yourself/);
      same.dispose();
    },
  ],
  [
    'loading with kernels that are not kernels',
    async ({ index }) => {
      const json = { ...index.toJSON(), similarity: { name: 'mine', params: {} } };
      expect(() => LSHIndex.fromJSON(json, { kernels: null as unknown as Record<string, never> })).toThrow(/LSHIndex\.fromJSON: kernels must be an object \{ name: kernel \}, got null/);
      expect(() => LSHIndex.fromJSON(json, { kernels: { mine: 'rbf' as unknown as never } })).toThrow(
        /LSHIndex\.fromJSON: kernels\['mine'\] must be a Kernel \(e\.g\. customKernel\(fn\)\) or a kernel function, got "rbf"/,
      );
      const loaded = LSHIndex.fromJSON(json, { kernels: { mine: customKernel((a, b) => tf.matMul(a, b, false, true)) } });
      expect(loaded.size).toBe(ROWS);
      loaded.dispose();
    },
  ],
  [
    'family loaders called directly',
    async ({ index }) => {
      const family = index.toJSON().family;
      expect(() => SimHash.fromJSON({ ...family, kind: 'rotation' } as never)).toThrow(/SimHash\.fromJSON: expected a saved SimHash \(\{ kind: 'simhash', … \} from toJSON\(\)\), got kind "rotation"/);
      expect(() => RotationHash.fromJSON(null as never)).toThrow(/RotationHash\.fromJSON: expected a saved RotationHash .*, got null/);
      expect(() => KernelizedLSH.fromJSON([] as never)).toThrow(/KernelizedLSH\.fromJSON: expected a saved KernelizedLSH .*, got an array of length 0/);
      expect(() => familyFromJSON({ ...family, nTables: 0 } as HashFamilyJSON)).toThrow(/SimHash\.fromJSON: nTables must be a positive integer, got 0/);
    },
  ],
];

describeBackends('hardening: the hashing library', () => {
  beforeAll(saveIndexes);

  it.each(corruptions)(
    'a saved index with %s (%s) is refused naming the field, no tensor leaked',
    async (_, base, edit, message) => {
      const json = savedJSON(base);
      edit(json);
      // Through JSON, as a file would be: Infinity and NaN become null.
      const text = JSON.stringify(json);
      await expectNoLeaks(() => {
        expect(() => LSHIndex.fromJSON(JSON.parse(text) as LSHIndexJSON)).toThrow(message);
      });
    },
    CASE_TIMEOUT,
  );

  it.each(['simhash', 'rotation', 'klsh'] as const)(
    'the uncorrupted %s index loads and answers as saved (the checks accept real files)',
    async (base) => {
      const data = randomTensor([ROWS, DIM], 1) as tf.Tensor2D;
      const family = makeFamily(base, data);
      const index = new LSHIndex(family);
      await index.add(data);
      const loaded = LSHIndex.fromJSON(savedJSON(base) as LSHIndexJSON);
      expect(await loaded.query(data, 5, { probes: 3 })).toEqual(await index.query(data, 5, { probes: 3 }));
      loaded.dispose();
      family.dispose();
      data.dispose();
    },
    CASE_TIMEOUT,
  );

  it.each(badCalls)(
    '%s',
    async (_, run) => {
      const data = randomTensor([ROWS, DIM], 1) as tf.Tensor2D;
      const family = new SimHash({ dim: DIM, nBits: 6, nTables: 2, seed: 3 });
      const index = new LSHIndex(family);
      await index.add(data);
      await expectNoLeaks(() => run({ index, family, data }));
      index.dispose();
      family.dispose();
      data.dispose();
    },
    CASE_TIMEOUT,
  );
});
