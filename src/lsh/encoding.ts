/**
 * Plain-JavaScript helpers the hashing library shares: seeds that can be
 * saved, seeded sampling without replacement, and base64 for the float32 and
 * int32 arrays a saved index carries (works in Node and browsers alike).
 */
import { freshSeed, type Seed, type Uniform } from '../random.js';

/**
 * The seed to record: the one given, or a fresh one drawn from entropy, so a
 * family built without a seed can still be saved and rebuilt exactly.
 */
export function resolveSeed(seed: Seed | undefined): Seed {
  return seed ?? freshSeed();
}

/**
 * `count` distinct integers from [0, n), in draw order (a partial
 * Fisher–Yates shuffle on the seeded stream).
 */
export function sampleWithoutReplacement(n: number, count: number, random: Uniform): number[] {
  const pool = new Int32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (n - i));
    const picked = pool[j];
    pool[j] = pool[i];
    pool[i] = picked;
    out.push(picked);
  }
  return out;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

/** Standard base64 (with padding) of a byte array. */
export function bytesToBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  const CHUNK = 3 * 4096;
  for (let start = 0; start < bytes.length; start += CHUNK) {
    const end = Math.min(bytes.length, start + CHUNK);
    let s = '';
    for (let i = start; i < end; i += 3) {
      const b0 = bytes[i];
      const b1 = i + 1 < end ? bytes[i + 1] : 0;
      const b2 = i + 2 < end ? bytes[i + 2] : 0;
      s += ALPHABET[b0 >> 2] + ALPHABET[((b0 & 3) << 4) | (b1 >> 4)];
      s += i + 1 < end ? ALPHABET[((b1 & 15) << 2) | (b2 >> 6)] : '=';
      s += i + 2 < end ? ALPHABET[b2 & 63] : '=';
    }
    parts.push(s);
  }
  return parts.join('');
}

/** Decodes standard base64; `who` and `what` name the field in errors. */
export function base64ToBytes(who: string, what: string, text: unknown): Uint8Array {
  if (typeof text !== 'string' || text.length % 4 !== 0) {
    throw new Error(`${who}: ${what} must be a base64 string (length a multiple of 4), got ${describeValue(text)}`);
  }
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - padding);
  const sextet = (at: number): number => {
    if (at >= text.length - padding) return 0; // the '=' padding
    const code = text.charCodeAt(at);
    const v = code < 128 ? LOOKUP[code] : -1;
    if (v < 0) throw new Error(`${who}: ${what} is not valid base64 (bad character at ${at})`);
    return v;
  };
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const triple = (sextet(i) << 18) | (sextet(i + 1) << 12) | (sextet(i + 2) << 6) | sextet(i + 3);
    if (o < out.length) out[o++] = (triple >> 16) & 255;
    if (o < out.length) out[o++] = (triple >> 8) & 255;
    if (o < out.length) out[o++] = triple & 255;
  }
  return out;
}

/** Little-endian float32 values as base64. */
export function float32ToBase64(values: Float32Array): string {
  return bytesToBase64(littleEndianBytes(values));
}

/** Little-endian int32 values as base64. */
export function int32ToBase64(values: Int32Array): string {
  return bytesToBase64(littleEndianBytes(values));
}

/**
 * Decodes base64 float32 values and checks the count.
 * @param shape the array's shape for messages, e.g. '[p, D] = [300, 64]'.
 */
export function base64ToFloat32(who: string, what: string, text: unknown, expectedLength: number, shape?: string): Float32Array {
  const bytes = base64ToBytes(who, what, text);
  checkLength(who, what, bytes.length, expectedLength, shape);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(expectedLength);
  for (let i = 0; i < expectedLength; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

/** Decodes base64 int32 values and checks the count (`shape` as for {@link base64ToFloat32}). */
export function base64ToInt32(who: string, what: string, text: unknown, expectedLength: number, shape?: string): Int32Array {
  const bytes = base64ToBytes(who, what, text);
  checkLength(who, what, bytes.length, expectedLength, shape);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int32Array(expectedLength);
  for (let i = 0; i < expectedLength; i++) out[i] = view.getInt32(4 * i, true);
  return out;
}

function checkLength(who: string, what: string, byteLength: number, expectedLength: number, shape?: string): void {
  if (byteLength !== 4 * expectedLength) {
    const of = shape === undefined ? '' : ` (${shape})`;
    throw new Error(
      `${who}: ${what} must hold ${expectedLength} 4-byte values${of}, got ${byteLength} bytes; the saved JSON is truncated or edited`,
    );
  }
}

function littleEndianBytes(values: Float32Array | Int32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  const isFloat = values instanceof Float32Array;
  for (let i = 0; i < values.length; i++) {
    if (isFloat) view.setFloat32(4 * i, values[i], true);
    else view.setInt32(4 * i, values[i], true);
  }
  return out;
}

/** A short description of any value, for error messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'string') return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'object') {
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    return name && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return `${typeof value} ${String(value)}`;
}
