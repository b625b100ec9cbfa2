/**
 * Seeded randomness. Everything random in the library comes from here, so a
 * seed reproduces a result on every backend (the numbers are drawn in
 * JavaScript, not by a backend kernel).
 */
import seedrandom from 'seedrandom';

/**
 * A seed: an integer in [0, 2^31 − 1], the range tfjs's initializers and
 * dropout take and a saved config holds exactly. The same seed gives the same
 * numbers.
 */
export type Seed = number;

/** The largest seed, 2^31 − 1. */
export const MAX_SEED = 0x7fffffff;

/** A stream of uniform numbers in [0, 1). */
export type Uniform = () => number;

/**
 * A seeded uniform stream. `purpose` names one use of the seed, so that
 * several uses of one seed (a layer's training rotations, its inference
 * rotations, …) draw independent numbers. Without a seed, the stream is
 * seeded from the environment's entropy (different every call).
 */
export function uniformStream(seed?: Seed, purpose?: string): Uniform {
  if (seed === undefined) return seedrandom(undefined, { entropy: true });
  return seedrandom(purpose === undefined ? String(seed) : `${seed}:${purpose}`);
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
export function nextSeed(random: Uniform): Seed {
  return Math.floor(random() * MAX_SEED);
}

/** A seed for one purpose of a seed: the first seed of `uniformStream(seed, purpose)`. */
export function purposeSeed(seed: Seed, purpose: string): Seed {
  return nextSeed(uniformStream(seed, purpose));
}

/**
 * The seed of a layer's `salt`-th weight initializer. Layers seed each of
 * their weights differently from one layer seed; the prime multiplier keeps
 * the weights of layers with neighbouring seeds apart (seed·7919 + salt is
 * distinct for every seed and salt < 7919).
 */
export function initializerSeed(seed: Seed, salt: number): Seed {
  return (seed * 7919 + salt) % MAX_SEED;
}

/** A seed drawn from entropy: the default of a seeded object, recorded so it can be saved. */
export function freshSeed(): Seed {
  return nextSeed(uniformStream());
}

/**
 * Throws unless `seed` is undefined or a {@link Seed} (an integer in [0, 2^31 − 1]).
 * @param who the caller, for the message.
 */
export function assertSeed(who: string, seed: unknown, what = 'seed'): asserts seed is Seed | undefined {
  if (seed === undefined) return;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    const shown = typeof seed === 'string' ? `"${seed}"` : typeof seed === 'number' ? String(seed) : typeof seed;
    throw new Error(`${who}: ${what} must be an integer in [0, ${MAX_SEED}], got ${shown}; pass e.g. ${what}: 1`);
  }
}
