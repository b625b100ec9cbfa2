/**
 * The binary index format: round trips (in one piece and streamed in small
 * chunks, numeric and string ids, after removals) answer exactly as the
 * saved index; truncated, corrupted, wrong or over-long files are clear
 * errors that leak no tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { LSHIndex, RotationHash, SimHash } from '../../src/lsh/index.js';
import { clusteredRows } from './lsh_helpers.js';

const [N, Q, DIM] = [600, 20, 24];

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

async function* pieces(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.slice(i, i + size);
}

describe('LSHIndex binary format [wasm]', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });
  const all = clusteredRows(N + Q, DIM, 20, 0.4, 11);

  async function built(ids?: (number | string)[]): Promise<{ index: LSHIndex; queries: tf.Tensor2D }> {
    const index = new LSHIndex(new RotationHash({ dim: DIM, nBuckets: 8, hashesPerTable: 2, nTables: 4, seed: 5 }));
    const database = tf.tensor2d(all.values.slice(0, N * DIM), [N, DIM]);
    await index.add(database, ids);
    database.dispose();
    return { index, queries: tf.tensor2d(all.values.slice(N * DIM), [Q, DIM]) };
  }

  it('round trips in one piece and in 1,000-byte chunks, with numeric, string and removed ids', async () => {
    const before = tf.memory().numTensors;
    for (const ids of [undefined, Array.from({ length: N }, (_, i) => (i % 2 ? `item-${i}` : i * 10))]) {
      const { index, queries } = await built(ids);
      index.remove(index.ids().filter((_, i) => i % 7 === 3));
      const bytes = concat([...index.toBinary()]);
      const expected = await index.query(queries, 10, { probes: 6 });
      for (const source of [bytes, pieces(bytes, 1000), [...index.toBinary()]]) {
        const loaded = await LSHIndex.fromBinary(source);
        expect(loaded.size).toBe(index.size);
        expect(loaded.ids()).toEqual(index.ids());
        expect(await loaded.query(queries, 10, { probes: 6 })).toEqual(expected);
        // And a loaded index saves to the same bytes.
        expect(Buffer.from(concat([...loaded.toBinary()])).equals(Buffer.from(bytes))).toBe(true);
        loaded.dispose();
      }
      index.family.dispose();
      index.dispose();
      queries.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses truncated, corrupted, foreign and over-long files, naming the problem, without leaking', async () => {
    const { index, queries } = await built();
    const bytes = concat([...index.toBinary()]);
    const before = tf.memory().numTensors;
    const headerEnd = 16 + new Uint32Array(bytes.slice(12, 16).buffer)[0];
    // Cut inside the magic, the header, the vectors, the keys, the ids, the end mark.
    const cuts: [number, RegExp][] = [
      [5, /ends inside the magic bytes/],
      [headerEnd - 3, /ends inside the header/],
      [headerEnd + 100, /ends inside the vectors/],
      [headerEnd + N * DIM * 4 + 8 + 10, /ends inside the keys/],
      [bytes.byteLength - 20, /ends inside the ids/],
      [bytes.byteLength - 2, /ends inside the end mark/],
    ];
    for (const [cut, message] of cuts) {
      await expect(LSHIndex.fromBinary(bytes.slice(0, cut))).rejects.toThrow(message);
      await expect(LSHIndex.fromBinary(bytes.slice(0, cut))).rejects.toThrow(/truncated/);
    }
    const flipped = bytes.slice();
    flipped[headerEnd + 1234] ^= 0x10;
    await expect(LSHIndex.fromBinary(flipped)).rejects.toThrow(/vectors .* do not match their checksum; the file is corrupted/);
    const keysFlipped = bytes.slice();
    keysFlipped[headerEnd + N * DIM * 4 + 8 + 5] ^= 1;
    await expect(LSHIndex.fromBinary(keysFlipped)).rejects.toThrow(/keys .* do not match their checksum/);
    await expect(LSHIndex.fromBinary(new TextEncoder().encode('{"format":"x"}'))).rejects.toThrow(
      /expected a binary index starting with 'LSHINDEX'.*fromJSON/,
    );
    await expect(LSHIndex.fromBinary(concat([bytes, new Uint8Array([1, 2, 3])]))).rejects.toThrow(/goes on past its end mark/);
    const badHeader = bytes.slice();
    badHeader[17] = 0x7b; // '{' in place of the header's '"'
    await expect(LSHIndex.fromBinary(badHeader)).rejects.toThrow(/header is not valid JSON/);
    await expect(LSHIndex.fromBinary(42 as never)).rejects.toThrow(/source must be a Uint8Array.*got number 42/);
    expect(tf.memory().numTensors).toBe(before);
    index.family.dispose();
    index.dispose();
    queries.dispose();
  });

  it('a family edited in the header is caught by the rehash check', async () => {
    const index = new LSHIndex(new SimHash({ dim: DIM, nBits: 10, nTables: 3, seed: 1 }));
    const database = tf.tensor2d(all.values.slice(0, N * DIM), [N, DIM]);
    await index.add(database);
    const bytes = concat([...index.toBinary()]);
    const text = new TextDecoder().decode(bytes);
    const at = text.indexOf('"seed":1');
    const edited = bytes.slice();
    edited[at + 7] = '2'.charCodeAt(0);
    await expect(LSHIndex.fromBinary(edited)).rejects.toThrow(/the saved keys do not match the family/);
    index.family.dispose();
    index.dispose();
    database.dispose();
  });
});
