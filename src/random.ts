/**
 * Seeded randomness. Everything random in the library comes from here, so a
 * seed reproduces a result on every backend (the numbers are drawn in
 * JavaScript, not by a backend kernel).
 */
import seedrandom from 'seedrandom';

/** A seed: any string or number; the same seed gives the same stream. */
export type Seed = string | number;

/** A stream of uniform numbers in [0, 1). */
export type Uniform = () => number;

/**
 * A seeded uniform stream. Without a seed, the stream is seeded from the
 * environment's entropy (different every call).
 */
export function uniformStream(seed?: Seed): Uniform {
  return seed === undefined ? seedrandom(undefined, { entropy: true }) : seedrandom(String(seed));
}

/**
 * Fills a Float32Array with i.i.d. N(0, 1) numbers (Box–Muller on the uniform
 * stream, both outputs used).
 */
export function gaussianArray(size: number, random: Uniform): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    let u = random();
    while (u <= Number.MIN_VALUE) u = random();
    const radius = Math.sqrt(-2 * Math.log(u));
    const angle = 2 * Math.PI * random();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < size) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/** A new seed drawn from a stream: how a seeded layer makes a fresh seed per step. */
export function nextSeed(random: Uniform): number {
  return Math.floor(random() * 0x7fffffff);
}
