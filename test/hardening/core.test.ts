/**
 * The hardening sweep of the functional core (issue 10, part B): bad inputs
 * to every public function, each refused with a message that says who, what
 * was expected and what came, with no tensor left behind; the decisions that
 * give a result instead (empty inputs, windows wider than the chunks, mask
 * dtypes); the memory guard's refusals before any allocation; the opt-in
 * finite check.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  WASM_HEAP_LIMIT_BYTES,
  batchMatMul,
  estimateLSHAttentionBytes,
  fullAttention,
  gatherRows,
  gatherRowsSummed,
  hashBuckets,
  lshAttention,
  maskedSoftmax,
  permuteRows,
  randomRotations,
  resolveLSHSettings,
  segmentSum,
  sortItems,
  sortItemsOnHost,
  validLength,
  type LSHAttentionOptions,
} from '../../src/index.js';
import { referenceLSHAttention } from '../reference.js';
import { describeBackends, expectTensorsClose, randomTensor } from '../helpers.js';

/** Inputs shared by the cases of one backend (made after the backend is set, disposed at the end). */
interface Fixtures {
  qk: tf.Tensor4D; // [1, 2, 16, 8]
  v: tf.Tensor4D; // [1, 2, 16, 4]
  ones: tf.Tensor2D; // mask [1, 16]
  half: tf.Tensor2D; // mask with a 0.5 at [0, 3]
  nanMask: tf.Tensor2D; // mask with a NaN at [0, 5]
  twos: tf.Tensor2D; // mask of 2s
  maskRank1: tf.Tensor1D;
  maskString: tf.Tensor;
  intV: tf.Tensor4D;
  qkRank3: tf.Tensor3D;
  disposed: tf.Tensor4D;
  rotations: tf.Tensor3D; // [8, 1, 4]: nBuckets 8
  intRotations: tf.Tensor3D;
  rotationsRank2: tf.Tensor2D;
  rotationsWrongDim: tf.Tensor3D; // [6, 1, 4]
  intQk: tf.Tensor4D;
  buckets: tf.Tensor4D; // int32 [1, 1, 1, 8], values in [0, 8)
  outOfRange: tf.Tensor4D; // int32 with a 9 at [0, 0, 0, 3]
  floatBuckets: tf.Tensor4D;
  a: tf.Tensor3D; // [1, 2, 3]
  b: tf.Tensor3D; // [1, 2, 2]
  rows: tf.Tensor2D; // [4, 2]
  ids: tf.Tensor1D; // int32 [4]
  shortIds: tf.Tensor1D; // int32 [2]
  floatIds: tf.Tensor1D;
  farIndex: tf.Tensor1D; // int32 [5]
  permutation: tf.Tensor1D; // int32 [1, 2, 3, 0]
  notInverse: tf.Tensor1D; // int32 [1, 2, 3, 0] (the inverse is [3, 0, 1, 2])
}

let f: Fixtures;

function makeFixtures(): Fixtures {
  const withValue = (value: number, at: number): tf.Tensor2D => {
    const values = new Float32Array(16).fill(1);
    values[at] = value;
    return tf.tensor2d(values, [1, 16]);
  };
  const disposed = tf.zeros([1, 2, 16, 8]) as tf.Tensor4D;
  disposed.dispose();
  return {
    qk: randomTensor([1, 2, 16, 8], 1) as tf.Tensor4D,
    v: randomTensor([1, 2, 16, 4], 2) as tf.Tensor4D,
    ones: tf.ones([1, 16]) as tf.Tensor2D,
    half: withValue(0.5, 3),
    nanMask: withValue(NaN, 5),
    twos: tf.fill([1, 16], 2) as tf.Tensor2D,
    maskRank1: tf.ones([16]) as tf.Tensor1D,
    maskString: tf.tensor2d([Array.from({ length: 16 }, () => '1')] as unknown as number[][], [1, 16], 'string' as 'float32'),
    intV: tf.zeros([1, 2, 16, 4], 'int32') as tf.Tensor4D,
    qkRank3: tf.zeros([2, 16, 8]) as tf.Tensor3D,
    disposed,
    rotations: randomTensor([8, 1, 4], 3) as tf.Tensor3D,
    intRotations: tf.zeros([8, 1, 4], 'int32') as tf.Tensor3D,
    rotationsRank2: tf.zeros([8, 4]) as tf.Tensor2D,
    rotationsWrongDim: tf.zeros([6, 1, 4]) as tf.Tensor3D,
    intQk: tf.zeros([1, 2, 16, 8], 'int32') as tf.Tensor4D,
    buckets: tf.tensor4d([0, 1, 2, 3, 4, 5, 6, 7], [1, 1, 1, 8], 'int32'),
    outOfRange: tf.tensor4d([0, 1, 2, 9, 4, 5, 6, 7], [1, 1, 1, 8], 'int32'),
    floatBuckets: tf.zeros([1, 1, 1, 8]) as tf.Tensor4D,
    a: tf.ones([1, 2, 3]) as tf.Tensor3D,
    b: tf.ones([1, 2, 2]) as tf.Tensor3D,
    rows: tf.ones([4, 2]) as tf.Tensor2D,
    ids: tf.tensor1d([0, 1, 1, 3], 'int32'),
    shortIds: tf.tensor1d([0, 1], 'int32'),
    floatIds: tf.tensor1d([0, 1, 1, 3]),
    farIndex: tf.tensor1d([5], 'int32'),
    permutation: tf.tensor1d([1, 2, 3, 0], 'int32'),
    notInverse: tf.tensor1d([1, 2, 3, 0], 'int32'),
  };
}

const lsh = (options: Record<string, unknown>, qk?: () => unknown, v?: () => unknown) => () =>
  lshAttention((qk?.() ?? f.qk) as tf.Tensor4D, (v?.() ?? f.v) as tf.Tensor4D, { chunkLength: 8, seed: 1, ...options } as LSHAttentionOptions);
const full = (options: Record<string, unknown>, qk?: () => unknown) => () =>
  fullAttention((qk?.() ?? f.qk) as tf.Tensor4D, f.v, options as LSHAttentionOptions);

/** [name, call, message]: every call must throw that message and leave no tensor behind. */
const badInputs: Array<[string, () => unknown, RegExp]> = [
  // lshAttention: tensors
  ['lshAttention: qk not a tensor', lsh({}, () => [[1]]), /^lshAttention: qk must be a tf\.Tensor \[B, H, T, D\], got \[\[1\]\]; make one/],
  ['lshAttention: qk disposed', lsh({}, () => f.disposed), /^lshAttention: qk has been disposed \(shape \[1, 2, 16, 8\]\); keep it alive/],
  ['lshAttention: v int32', lsh({}, undefined, () => f.intV), /^lshAttention: v must be float32, got int32; cast it/],
  ['lshAttention: options not an object', () => lshAttention(f.qk, f.v, 5 as unknown as LSHAttentionOptions), /^lshAttention: options must be an object, got 5/],
  // lshAttention: masks
  [
    'lshAttention: mask value 0.5',
    () => lsh({ mask: f.half })(),
    /^lshAttention: mask must hold only 0 \(padding\) and 1 \(keep\), got 0\.5 at \[0, 3\]; make it binary, e\.g\. tf\.cast\(tf\.notEqual\(mask, 0\), 'float32'\)/,
  ],
  ['lshAttention: mask NaN', () => lsh({ mask: f.nanMask })(), /^lshAttention: mask must hold only 0 \(padding\) and 1 \(keep\), got NaN at \[0, 5\]; make it binary/],
  ['lshAttention: mask rank 1', () => lsh({ mask: f.maskRank1 })(), /^lshAttention: mask must have rank 2 \[B, T\], got rank 1 with shape \[16\]/],
  ['lshAttention: mask of strings', () => lsh({ mask: f.maskString })(), /^lshAttention: mask must be float32, int32 or bool, got string/],
  // lshAttention: numeric and other options
  ['lshAttention: seed -1', () => lsh({ seed: -1 })(), /^lshAttention: seed must be an integer in \[0, 2147483647\], got -1; pass e.g\. seed: 1/],
  ['lshAttention: seed "one"', () => lsh({ seed: 'one' })(), /^lshAttention: seed must be an integer in \[0, 2147483647\], got "one"/],
  ['lshAttention: dropoutSeed 1.5', () => lsh({ dropout: 0.1, dropoutSeed: 1.5 })(), /^lshAttention: dropoutSeed must be an integer in \[0, 2147483647\], got 1\.5/],
  ['lshAttention: dropout NaN', () => lsh({ dropout: NaN })(), /^lshAttention: dropout must be a number in \[0, 1\), got NaN/],
  ['lshAttention: causal "false"', () => lsh({ causal: 'false' })(), /^lshAttention: causal must be true or false, got "false"/],
  ['lshAttention: hashFamily minhash', () => lsh({ hashFamily: 'minhash' })(), /^lshAttention: hashFamily must be 'rotation' or 'simhash', got "minhash"/],
  ['lshAttention: nHashes "two"', () => lsh({ nHashes: 'two' })(), /^lshAttention: nHashes must be a positive integer, got "two"/],
  ['lshAttention: nHashes Infinity', () => lsh({ nHashes: Infinity })(), /^lshAttention: nHashes must be a positive integer, got Infinity/],
  ['lshAttention: chunkLength 2.5', () => lsh({ chunkLength: 2.5 })(), /^lshAttention: chunkLength must be a positive integer, got 2\.5/],
  ['lshAttention: numChunksBefore -1', () => lsh({ numChunksBefore: -1 })(), /^lshAttention: numChunksBefore must be a non-negative integer, got -1/],
  ['lshAttention: numChunksAfter NaN', () => lsh({ numChunksAfter: NaN })(), /^lshAttention: numChunksAfter must be a non-negative integer, got NaN/],
  ['lshAttention: blockLogits 0', () => lsh({ blockLogits: 0 })(), /^lshAttention: blockLogits must be a positive integer, got 0/],
  ['lshAttention: nBuckets []', () => lsh({ nBuckets: [] })(), /^lshAttention: nBuckets must be an even number or a non-empty list of even numbers, got \[\]/],
  ['lshAttention: nBuckets "8"', () => lsh({ nBuckets: '8' })(), /^lshAttention: nBuckets must be even \(each factor an even integer ≥ 2\), got "8"/],
  ['lshAttention: K beyond int32', () => lsh({ nBuckets: [2 ** 16, 2 ** 16] })(), /^lshAttention: nBuckets \[65536,65536\] makes K = 4294967296 buckets, more than 2\^30/],
  [
    'lshAttention: more sort keys than 2^24',
    () => lsh({ nHashes: 8, nBuckets: 2 ** 22 })(),
    /^lshAttention: nHashes·\(K\+1\) = 8·4194305 = 33554440 sort keys, more than 2\^24.*use fewer buckets/,
  ],
  ['lshAttention: simhash with 12 buckets', () => lsh({ hashFamily: 'simhash', nBuckets: 12 })(), /with hashFamily 'simhash', nBuckets must be a power of two, got 12; use e\.g\. 16/],
  ['lshAttention: rotations int32', () => lsh({ rotations: f.intRotations })(), /^lshAttention: rotations must be float32, got int32/],
  ['lshAttention: rotations rank 2', () => lsh({ rotations: f.rotationsRank2 })(), /^lshAttention: rotations must have rank 3 \[D, R, K\/2\], got rank 2/],
  ['lshAttention: memoryLimitBytes NaN', () => lsh({ memoryLimitBytes: NaN })(), /^lshAttention: memoryLimitBytes must be a positive number of bytes, got NaN/],
  ['lshAttention: memoryLimitBytes -5', () => lsh({ memoryLimitBytes: -5 })(), /^lshAttention: memoryLimitBytes must be a positive number of bytes, got -5/],
  ['lshAttention: checkFinite "yes"', () => lsh({ checkFinite: 'yes' })(), /^lshAttention: checkFinite must be true or false, got "yes"/],
  // fullAttention
  ['fullAttention: qk rank 3', full({}, () => f.qkRank3), /^fullAttention: qk must have rank 4 \[B, H, T, D\], got rank 3 with shape \[2, 16, 8\]/],
  ['fullAttention: mask of 2s', () => full({ mask: f.twos })(), /^fullAttention: mask must hold only 0 \(padding\) and 1 \(keep\), got 2 at \[0, 0\] and 15 more values that are neither/],
  ['fullAttention: dropoutSeed -1', () => full({ dropout: 0.5, dropoutSeed: -1 })(), /^fullAttention: dropoutSeed must be an integer in \[0, 2147483647\], got -1/],
  ['fullAttention: memoryLimitBytes 0', () => full({ memoryLimitBytes: 0 })(), /^fullAttention: memoryLimitBytes must be a positive number of bytes, got 0/],
  ['fullAttention: causal 1', () => full({ causal: 1 })(), /^fullAttention: causal must be true or false, got 1/],
  // hashBuckets
  ['hashBuckets: x int32', () => hashBuckets(f.intQk, f.rotations), /^hashBuckets: x must be float32, got int32/],
  ['hashBuckets: mask 0.5', () => hashBuckets(f.qk, f.rotations, { mask: f.half }), /^hashBuckets: mask must hold only 0 \(padding\) and 1 \(keep\), got 0\.5 at \[0, 3\]/],
  ['hashBuckets: hashFamily', () => hashBuckets(f.qk, f.rotations, { hashFamily: 'x' as 'simhash' }), /^hashBuckets: hashFamily must be 'rotation' or 'simhash', got "x"/],
  ['hashBuckets: rotations for another D', () => hashBuckets(f.qk, f.rotationsWrongDim), /^hashBuckets: rotations must have shape \[D, R, ΣK\/2\] = \[8, R, 4\].*got \[6, 1, 4\]/],
  ['hashBuckets: rotations int32', () => hashBuckets(f.qk, f.intRotations), /^hashBuckets: rotations must be float32, got int32/],
  // randomRotations
  ['randomRotations: seed 2^31', () => randomRotations({ dim: 4, nHashes: 1, nBuckets: 4, seed: 2 ** 31 }), /^randomRotations: seed must be an integer in \[0, 2147483647\], got 2147483648/],
  ['randomRotations: dim NaN', () => randomRotations({ dim: NaN, nHashes: 1, nBuckets: 4 }), /^randomRotations: dim must be a positive integer, got NaN/],
  ['randomRotations: hashFamily', () => randomRotations({ dim: 4, nHashes: 1, nBuckets: 4, hashFamily: 'x' as 'simhash' }), /^randomRotations: hashFamily must be 'rotation' or 'simhash', got "x"/],
  ['randomRotations: no options', () => randomRotations(null as unknown as { dim: 1; nHashes: 1; nBuckets: 2 }), /^randomRotations: options must be an object \{ dim, nHashes, nBuckets \}, got null/],
  // sorting
  ['sortItems: float32 buckets', () => sortItems(f.floatBuckets, 8), /^sortItems: buckets must be int32, got float32/],
  ['sortItems: bucket 9 of K = 8', () => sortItems(f.outOfRange, 8), /^sortItems: buckets must be in \[0, K\] = \[0, 8\] \(K marks padding\), got 9 at \[0, 0, 0, 3\]/],
  ['sortItems: numBuckets 0', () => sortItems(f.buckets, 0), /^sortItems: numBuckets must be a positive integer, got 0/],
  ['sortItemsOnHost: bucket -1', () => sortItemsOnHost(Int32Array.from([0, -1]), 1, 1, 2, 4), /^sortItemsOnHost: bucket ids must be in \[0, K\] = \[0, 4\].*got -1 at index 1/],
  ['sortItemsOnHost: groups 0', () => sortItemsOnHost(new Int32Array(0), 0, 1, 2, 4), /^sortItemsOnHost: groups must be a positive integer, got 0/],
  ['sortItemsOnHost: plain array', () => sortItemsOnHost([0, 1] as unknown as Int32Array, 1, 1, 2, 4), /^sortItemsOnHost: buckets must be an Int32Array, got \[0,1\]/],
  // kernels and gathers
  ['batchMatMul: inner sizes', () => batchMatMul(f.a, f.b), /^batchMatMul: inner dimensions expected to match, got 3 \(a \[1, 2, 3\]\) and 2 \(b \[1, 2, 2\]\)/],
  ['batchMatMul: transposeA "yes"', () => batchMatMul(f.b, f.b, 'yes' as unknown as boolean), /^batchMatMul: transposeA must be true or false, got "yes"/],
  ['maskedSoftmax: fill shape', () => maskedSoftmax(f.a, f.b), /^maskedSoftmax: logits and fill expected equal shapes, got \[1, 2, 3\] and \[1, 2, 2\]/],
  ['segmentSum: float ids', () => segmentSum(f.rows, f.floatIds, 4), /^segmentSum: segmentIds must be int32, got float32/],
  ['segmentSum: fewer ids than rows', () => segmentSum(f.rows, f.shortIds, 4), /^segmentSum: segmentIds must have the leading shape of x \(one id per row\), got \[2\] for x \[4, 2\]/],
  ['segmentSum: numSegments NaN', () => segmentSum(f.rows, f.ids, NaN), /^segmentSum: numSegments must be a non-negative integer, got NaN/],
  ['gatherRows: index out of range', () => gatherRows(f.rows, f.farIndex), /^gatherRows: indices must be row numbers in \[0, N\) = \[0, 4\) for x \[4, 2\], got 5 at \[0\]/],
  ['gatherRowsSummed: index out of range', () => gatherRowsSummed(f.rows, f.farIndex), /^gatherRowsSummed: indices must be row numbers in \[0, N\) = \[0, 4\)/],
  ['permuteRows: not the inverse', () => permuteRows(f.rows, f.permutation, f.notInverse), /^permuteRows: inverse must be the inverse of permutation/],
  // helpers
  ['validLength: nHashes "two"', () => validLength(16, 'two' as unknown as number, 8), /^validLength: nHashes must be a positive integer, got "two"/],
  ['resolveLSHSettings: options null', () => resolveLSHSettings('me', 16, 8, null as unknown as LSHAttentionOptions), /^me: options must be an object, got null/],
];
// (Cases that need fixtures read them when they run: the fixtures exist only once the backend is set.)

describeBackends('hardening: bad inputs to the core are refused, with who, what and got, and no leak', () => {
  beforeAll(() => {
    f = makeFixtures();
  });
  afterAll(() => {
    tf.dispose(Object.values(f).filter((t) => !t.isDisposed));
  });

  it('covers at least 50 bad inputs', () => {
    expect(badInputs.length).toBeGreaterThanOrEqual(50);
  });

  it.each(badInputs)('%s', (_name, call, message) => {
    const before = tf.memory();
    expect(call).toThrow(message);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
  });
});

describeBackends('hardening: decisions that give a result', () => {
  beforeAll(() => {
    f = makeFixtures();
  });
  afterAll(() => {
    tf.dispose(Object.values(f).filter((t) => !t.isDisposed));
  });

  it.each<[string, number[], number[]]>([
    ['B = 0', [0, 2, 16, 8], [0, 2, 16, 4]],
    ['T = 0', [1, 2, 0, 8], [1, 2, 0, 4]],
  ])('empty inputs (%s) give an empty result of the right shape, in both attention functions', (_name, qkShape, vShape) => {
    const qk = tf.zeros<tf.Rank>(qkShape) as tf.Tensor4D;
    const v = tf.zeros<tf.Rank>(vShape) as tf.Tensor4D;
    const mask = tf.zeros([qkShape[0], qkShape[2]]) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    for (const out of [lshAttention(qk, v, { chunkLength: 8, seed: 1, mask }), fullAttention(qk, v, { mask })]) {
      expect(out.shape).toEqual([qkShape[0], 2, qkShape[2], 4]);
      expect(out.dtype).toBe('float32');
      out.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    // Options are validated all the same.
    expect(() => lshAttention(qk, v, { chunkLength: 8, seed: -1 })).toThrow(/seed must be an integer/);
    tf.dispose([qk, v, mask]);
  });

  it('a window of more chunks than there are attends to each chunk once (no key counted twice)', () => {
    // T = 16, C = 8, one round: N = 2 chunks. before 1 + after 1 would see the other chunk twice.
    const rotations = f.rotations;
    const run = (numChunksBefore: number, numChunksAfter: number) =>
      lshAttention(f.qk, f.v, { rotations, chunkLength: 8, numChunksBefore, numChunksAfter });
    const once = run(1, 0);
    const wide = run(1, 1);
    const wider = run(5, 3);
    expectTensorsClose(wide, once, 0);
    expectTensorsClose(wider, once, 0);
    // The contract's plain roll-over (the float64 reference) counts the other chunk twice and differs:
    // the clamp changes the result only where keys would have been counted unevenly.
    const input = {
      qk: f.qk.arraySync(),
      v: f.v.arraySync(),
      rotations: rotations.arraySync(),
      nBuckets: 8,
      chunkLength: 8,
      causal: false,
      mask: null,
    };
    const twice = tf.tensor(referenceLSHAttention({ ...input, numChunksBefore: 1, numChunksAfter: 1 }));
    const reference = tf.tensor(referenceLSHAttention({ ...input, numChunksBefore: 1, numChunksAfter: 0 }));
    expectTensorsClose(once, reference, 1e-5);
    expect(tf.max(tf.abs(tf.sub(twice, once))).dataSync()[0]).toBeGreaterThan(1e-3);
    tf.dispose([once, wide, wider, twice, reference]);
  });

  it('binary masks of float32, int32 and bool give the same result', () => {
    const values = Array.from({ length: 16 }, (_, i) => (i < 11 ? 1 : 0));
    const masks = (['float32', 'int32', 'bool'] as const).map((dtype) => tf.tensor2d([values], [1, 16], dtype));
    const outs = masks.map((mask) => lshAttention(f.qk, f.v, { chunkLength: 8, seed: 1, mask: mask as tf.Tensor2D }));
    const fulls = masks.map((mask) => fullAttention(f.qk, f.v, { mask: mask as tf.Tensor2D }));
    for (let i = 1; i < 3; i++) {
      expectTensorsClose(outs[i], outs[0], 0);
      expectTensorsClose(fulls[i], fulls[0], 0);
    }
    const buckets = masks.map((mask) => hashBuckets(f.qk, f.rotations, { mask: mask as tf.Tensor2D }));
    expect(buckets[2].arraySync()).toEqual(buckets[0].arraySync());
    tf.dispose([...masks, ...outs, ...fulls, ...buckets]);
  });
});

describeBackends('hardening: the memory guard counts what a call allocates, and refuses before allocating', () => {
  it('counts the hashing step: many buckets are refused before any tensor is made, naming the bytes and the fix', () => {
    // K = 2^14 at T = 256: projections [256, 8192] floats, 8 MiB (16 MiB as tfjs counts them). Without the hashing
    // step in the estimate, this call was estimated at < 2 MiB.
    const qk = randomTensor([1, 1, 256, 16], 5) as tf.Tensor4D;
    const settings = resolveLSHSettings('test', 256, 16, { nBuckets: 2 ** 14 });
    const shape = { batch: 1, heads: 1, length: 256, dim: 16, valueDim: 16 };
    expect(estimateLSHAttentionBytes(shape, settings)).toBeGreaterThan(16 * 2 ** 20);
    const before = tf.memory();
    expect(() => lshAttention(qk, qk, { nBuckets: 2 ** 14, seed: 1, memoryLimitBytes: 8 * 2 ** 20 })).toThrow(
      /^lshAttention: this call needs about [\d.]+ MiB \(hashing [\d.]+ MiB: B·H·R·T = 256 vectors × 8192 projections; .*\)[^]*Use fewer buckets \(nBuckets\), or factorise them/,
    );
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    // Factorised, the same number of buckets costs 2·64 projections, and the call runs under the same limit.
    const out = lshAttention(qk, qk, { nBuckets: [128, 128], seed: 1, memoryLimitBytes: 8 * 2 ** 20 });
    expect(out.shape).toEqual([1, 1, 256, 16]);
    tf.dispose([qk, out]);
  });

  it('the Reformer-size mistake (nBuckets 2^23 at T = 2048) is estimated far beyond the wasm heap', () => {
    // Arithmetic only: running it would corrupt the wasm heap.
    const settings = resolveLSHSettings('test', 2048, 64, { nBuckets: 2 ** 23 });
    const bytes = estimateLSHAttentionBytes({ batch: 1, heads: 1, length: 2048, dim: 64, valueDim: 64 }, settings);
    expect(bytes).toBeGreaterThan(2048 * 2 ** 22 * 4); // at least the projections [B·H·T·R, K/2] once
    expect(bytes).toBeGreaterThan(WASM_HEAP_LIMIT_BYTES);
  });

  it('counts blockLogits: a large block is refused where the default fits, and the advice names blockLogits', () => {
    // G = 8 groups of N = 16 chunks of C = 16 attending to L = 32 keys: 65536 logits in all.
    const qk = randomTensor([1, 8, 64, 16], 6) as tf.Tensor4D;
    const shape = { batch: 1, heads: 8, length: 64, dim: 16, valueDim: 16 };
    const small = estimateLSHAttentionBytes(shape, resolveLSHSettings('test', 64, 16, { nHashes: 4, chunkLength: 16, blockLogits: 2 ** 10 }));
    const large = estimateLSHAttentionBytes(shape, resolveLSHSettings('test', 64, 16, { nHashes: 4, chunkLength: 16, blockLogits: 2 ** 16 }));
    expect(large - small).toBeGreaterThan(12 * (2 ** 16 - 2 ** 10)); // at least logits, fill and weights per logit
    const limit = (small + large) / 2;
    const options = { nHashes: 4, chunkLength: 16, seed: 1, memoryLimitBytes: limit };
    const before = tf.memory();
    expect(() => lshAttention(qk, qk, { ...options, blockLogits: 2 ** 16 })).toThrow(
      /^lshAttention: this call needs about [\d.]+ MiB .*in blocks of ≤ 65536 logits[^]*or a smaller blockLogits \(default 1048576\)/,
    );
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    const out = lshAttention(qk, qk, { ...options, blockLogits: 2 ** 10 });
    expectTensorsClose(out, lshAttention(qk, qk, { nHashes: 4, chunkLength: 16, seed: 1 }), 1e-6);
    tf.dispose([qk, out]);
  });

  it('its advice about raising the limit is true to the backend', () => {
    const qk = tf.zeros([1, 1, 64, 4]) as tf.Tensor4D;
    const call = () => lshAttention(qk, qk, { chunkLength: 8, memoryLimitBytes: 1024 });
    if (tf.getBackend() === 'wasm') {
      expect(call).toThrow(/or raise memoryLimitBytes \(an option of the attention functions, an argument of the attention layers\), but not beyond the default 3\.25 GiB on wasm: past ≈3\.6 GiB its heap corrupts data silently\.$/);
    } else {
      expect(call).toThrow(/or raise memoryLimitBytes \(an option of the attention functions, an argument of the attention layers\) if you know the backend can hold it\.$/);
    }
    qk.dispose();
  });
});

describeBackends('hardening: checkFinite', () => {
  /** qk [1, 2, 16, 8] and v [1, 2, 16, 4] with the given values set. */
  function inputs(qkValues: Array<[number, number]>, vValues: Array<[number, number]> = []): [tf.Tensor4D, tf.Tensor4D] {
    const qk = randomTensor([1, 2, 16, 8], 11).dataSync() as Float32Array;
    const v = randomTensor([1, 2, 16, 4], 12).dataSync() as Float32Array;
    for (const [at, value] of qkValues) qk[at] = value;
    for (const [at, value] of vValues) v[at] = value;
    return [tf.tensor4d(qk, [1, 2, 16, 8]), tf.tensor4d(v, [1, 2, 16, 4])];
  }
  const at = (h: number, t: number, d: number, size: number) => (h * 16 + t) * size + d;

  it.each([
    ['one NaN in qk', [[at(1, 5, 3, 8), NaN]], [], /^lshAttention: qk has 1 non-finite value \(NaN at \[0, 1, 5, 3\]\); every output that attends to it would be NaN/],
    ['an Infinity in v', [], [[at(0, 9, 2, 4), Infinity]], /^lshAttention: v has 1 non-finite value \(Infinity at \[0, 0, 9, 2\]\)/],
    ['three in qk', [[at(0, 2, 0, 8), -Infinity], [at(1, 0, 0, 8), NaN], [at(1, 15, 7, 8), NaN]], [], /^lshAttention: qk has 3 non-finite values \(the first: -Infinity at \[0, 0, 2, 0\]\)/],
  ] as Array<[string, Array<[number, number]>, Array<[number, number]>, RegExp]>)('refuses %s, in both attention functions, leaving nothing behind', (_name, qkValues, vValues, message) => {
    const [qk, v] = inputs(qkValues, vValues);
    const before = tf.memory().numTensors;
    expect(() => lshAttention(qk, v, { chunkLength: 8, seed: 1, checkFinite: true })).toThrow(message);
    expect(() => fullAttention(qk, v, { checkFinite: true })).toThrow(new RegExp(message.source.replace('lshAttention', 'fullAttention')));
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([qk, v]);
  });

  it('off by default: a NaN propagates to the outputs that attend to it, as in other tfjs ops', () => {
    const [qk, v] = inputs([[at(1, 5, 3, 8), NaN]]);
    const out = lshAttention(qk, v, { chunkLength: 8, seed: 1 });
    const values = out.dataSync();
    const head0 = values.slice(0, 16 * 4);
    const head1 = values.slice(16 * 4);
    expect(head0.every(Number.isFinite)).toBe(true); // the other head is untouched
    expect(head1.filter((x) => Number.isNaN(x)).length).toBeGreaterThan(0);
    tf.dispose([qk, v, out]);
  });

  it('a NaN in v at a padded key still reaches the outputs (0 · NaN is NaN): the check covers padded positions too', () => {
    const [qk, v] = inputs([], [[at(0, 15, 0, 4), NaN]]);
    const mask = tf.tensor2d([Array.from({ length: 16 }, (_, i) => (i < 12 ? 1 : 0))]);
    const out = fullAttention(qk, v, { mask });
    expect(Number.isNaN(out.dataSync()[0])).toBe(true); // position 0 of head 0, unpadded
    expect(() => fullAttention(qk, v, { mask, checkFinite: true })).toThrow(/^fullAttention: v has 1 non-finite value \(NaN at \[0, 0, 15, 0\]\)/);
    tf.dispose([qk, v, mask, out]);
  });

  it('finite inputs pass and give the same result as without the check', () => {
    const [qk, v] = inputs([]);
    const checked = lshAttention(qk, v, { chunkLength: 8, seed: 1, checkFinite: true });
    const unchecked = lshAttention(qk, v, { chunkLength: 8, seed: 1 });
    expectTensorsClose(checked, unchecked, 0);
    tf.dispose([qk, v, checked, unchecked]);
  });
});
