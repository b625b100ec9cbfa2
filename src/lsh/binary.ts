/**
 * The binary form of a saved {@link LSHIndex}, written and read as a stream
 * of chunks (so a 1,000,000 × 128 index never becomes one string or one
 * extra copy), little-endian:
 *
 *   magic    8 bytes  "LSHINDEX"
 *   version  u32      1
 *   header   u32 n, then n bytes of UTF-8 JSON: format, version, family,
 *            similarity, dim, size, nextId, idKind ('number' | 'json')
 *   vectors  f32 [size, D], then its checksum (2 × u32)
 *   keys     i32 [size, L], then its checksum
 *   ids      idKind 'number': f64 [size]; 'json': u32 n, n bytes of a JSON
 *            array of ids, padded with spaces to a multiple of 4; then its
 *            checksum
 *   end      8 bytes  "LSHEND\0\0"
 *
 * The checksum of a section is Fletcher-like over its u32 words
 * (a += w, b += a, mod 2^32): a flipped or lost byte changes it.
 */
import { describeValue } from './encoding.js';

/** First bytes of a binary index. */
export const BINARY_MAGIC = 'LSHINDEX';
const END_MARK = 'LSHEND\0\0';
/** Bytes per yielded chunk when saving. */
export const BINARY_CHUNK_BYTES = 1 << 22;

/** The parts of a saved index that the binary form carries. */
export interface BinaryIndexParts {
  header: Record<string, unknown>;
  /** f32 [size · D] (the caller may hand a view over the index's own storage). */
  vectors: Float32Array;
  keys: Int32Array;
  ids: Float64Array | unknown[];
}

/** What can be read from: bytes, chunks, or an async stream of chunks (a Node ReadStream, a web ReadableStream). */
export type BinarySource = Uint8Array | ArrayBuffer | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

function assertLittleEndian(who: string): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error(`${who}: the binary index format needs a little-endian platform; use toJSON / fromJSON here`);
  }
}

class Checksum {
  a = 0;
  b = 0;
  add(bytes: Uint8Array): void {
    // Sections are multiples of 4 bytes, and so are the chunks they are cut into.
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < words.length; i++) {
      a = (a + words[i]) >>> 0;
      b = (b + a) >>> 0;
    }
    this.a = a;
    this.b = b;
  }
  bytes(): Uint8Array {
    return new Uint8Array(new Uint32Array([this.a, this.b]).buffer);
  }
}

function asciiBytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function u32(value: number): Uint8Array {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

/** Yields a section's bytes in chunks (copies: the source may move), then its checksum. */
function* section(bytes: Uint8Array): Generator<Uint8Array> {
  const sum = new Checksum();
  for (let start = 0; start < bytes.byteLength; start += BINARY_CHUNK_BYTES) {
    const chunk = bytes.slice(start, Math.min(bytes.byteLength, start + BINARY_CHUNK_BYTES));
    sum.add(chunk);
    yield chunk;
  }
  yield sum.bytes();
}

/** The chunks of a binary index. `rows()` is called again for each chunk: the storage may be re-made meanwhile. */
export function* writeBinary(who: string, parts: () => BinaryIndexParts): Generator<Uint8Array> {
  assertLittleEndian(who);
  const first = parts();
  const header = new TextEncoder().encode(JSON.stringify(first.header));
  const head = new Uint8Array(16 + header.byteLength);
  head.set(asciiBytes(BINARY_MAGIC), 0);
  head.set(u32(1), 8);
  head.set(u32(header.byteLength), 12);
  head.set(header, 16);
  yield head;
  const { vectors, keys, ids } = first;
  yield* section(new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength));
  yield* section(new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength));
  if (ids instanceof Float64Array) {
    yield* section(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
  } else {
    const text = JSON.stringify(ids);
    const encoded = new TextEncoder().encode(text);
    const padded = new Uint8Array(Math.ceil(encoded.byteLength / 4) * 4).fill(0x20);
    padded.set(encoded);
    yield u32(padded.byteLength);
    yield* section(padded);
  }
  yield asciiBytes(END_MARK);
}

/** Pulls exact byte counts out of any {@link BinarySource}. */
export class ChunkReader {
  private readonly iterator: Iterator<Uint8Array> | AsyncIterator<Uint8Array>;
  private pending: Uint8Array = new Uint8Array(0);
  private at = 0;
  /** Bytes consumed so far. */
  offset = 0;

  constructor(
    private readonly who: string,
    source: BinarySource,
  ) {
    assertLittleEndian(who);
    if (source instanceof ArrayBuffer) source = new Uint8Array(source);
    if (source instanceof Uint8Array) {
      this.iterator = [source][Symbol.iterator]();
    } else if (source !== null && typeof source === 'object' && Symbol.asyncIterator in source) {
      this.iterator = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    } else if (source !== null && typeof source === 'object' && Symbol.iterator in source) {
      this.iterator = (source as Iterable<Uint8Array>)[Symbol.iterator]();
    } else {
      throw new Error(
        `${who}: source must be a Uint8Array, an ArrayBuffer, or an (async) iterable of Uint8Array chunks (fs.createReadStream(path), ` +
          `index.toBinary()), got ${describeValue(source)}`,
      );
    }
  }

  /** Fills `target` from the stream; `what` names the part for the truncation error. */
  async readInto(target: Uint8Array, what: string): Promise<void> {
    let filled = 0;
    while (filled < target.byteLength) {
      if (this.at >= this.pending.byteLength) {
        const next = await this.iterator.next();
        if (next.done) {
          throw new Error(
            `${this.who}: the file ends inside ${what}: expected ${target.byteLength} bytes there, got ${filled} ` +
              `(${this.offset + filled} bytes read in all); the file is truncated: save the index again`,
          );
        }
        const chunk = next.value as unknown;
        if (!(chunk instanceof Uint8Array)) {
          throw new Error(`${this.who}: the source must yield Uint8Array chunks, got ${describeValue(chunk)}`);
        }
        this.pending = chunk;
        this.at = 0;
        continue;
      }
      const take = Math.min(target.byteLength - filled, this.pending.byteLength - this.at);
      target.set(this.pending.subarray(this.at, this.at + take), filled);
      this.at += take;
      filled += take;
    }
    this.offset += filled;
  }

  async read(bytes: number, what: string): Promise<Uint8Array> {
    const out = new Uint8Array(bytes);
    await this.readInto(out, what);
    return out;
  }

  async u32(what: string): Promise<number> {
    return new Uint32Array((await this.read(4, what)).buffer)[0];
  }

  /** Reads a section into `target` (in chunks) and checks its checksum. */
  async section(target: Uint8Array, what: string): Promise<void> {
    const sum = new Checksum();
    for (let start = 0; start < target.byteLength; start += BINARY_CHUNK_BYTES) {
      const part = target.subarray(start, Math.min(target.byteLength, start + BINARY_CHUNK_BYTES));
      await this.readInto(part, what);
      sum.add(part);
    }
    const saved = await this.read(8, `the checksum of ${what}`);
    const computed = sum.bytes();
    if (saved.some((byte, i) => byte !== computed[i])) {
      throw new Error(`${this.who}: ${what} do not match their checksum; the file is corrupted: save the index again`);
    }
  }

  /** Throws unless the stream is at its end. */
  async expectEnd(): Promise<void> {
    const mark = await this.read(END_MARK.length, 'the end mark');
    if (String.fromCharCode(...mark) !== END_MARK) {
      throw new Error(`${this.who}: the end mark is missing (found other bytes at offset ${this.offset - END_MARK.length}); the file is corrupted`);
    }
    for (;;) {
      if (this.at < this.pending.byteLength) {
        throw new Error(`${this.who}: the file goes on past its end mark (at offset ${this.offset}); it is not one saved index`);
      }
      const next = await this.iterator.next();
      if (next.done) return;
      this.pending = next.value as Uint8Array;
      this.at = 0;
    }
  }
}
