/**
 * The multi-probe sequence against brute force: the cheapest valid sets of
 * digit moves, in order, across tables, never a home bucket, never twice.
 * Plain JavaScript (no backend involved).
 */
import { describe, expect, it } from 'vitest';
import { probeSequence } from '../../src/lsh/index.js';
import { uniformStream } from '../../src/random.js';

/** Every valid probe of every table by brute force, cheapest first. */
function bruteForce(scores: number[], nTables: number, M: number, A: number): { table: number; key: number; cost: number }[] {
  const out: { table: number; key: number; cost: number }[] = [];
  for (let t = 0; t < nTables; t++) {
    const digits: { best: number; values: number[] }[] = [];
    for (let j = 0; j < M; j++) {
      const values = scores.slice((t * M + j) * A, (t * M + j + 1) * A);
      digits.push({ best: values.indexOf(Math.max(...values)), values });
    }
    // Every assignment of values to digits except the home one.
    const total = A ** M;
    for (let code = 0; code < total; code++) {
      let cost = 0;
      let key = 0;
      let moved = false;
      for (let j = 0, rest = code; j < M; j++, rest = Math.floor(rest / A)) {
        const value = rest % A;
        const { best, values } = digits[j];
        if (value !== best) {
          moved = true;
          cost += (values[best] - values[value]) ** 2;
        }
        key += value * A ** j;
      }
      if (moved) out.push({ table: t, key, cost });
    }
  }
  return out.sort((a, b) => a.cost - b.cost);
}

function randomScores(size: number, seed: number): number[] {
  const random = uniformStream(seed);
  return Array.from({ length: size }, () => random() * 4 - 2);
}

describe('probeSequence', () => {
  it.each([
    [1, 4, 2, 15],
    [3, 5, 2, 40],
    [2, 3, 4, 30],
    [2, 2, 6, 35],
  ])('L=%i, M=%i, A=%i: the %i cheapest probes, as brute force finds them', (L, M, A, count) => {
    for (let seed = 0; seed < 5; seed++) {
      const scores = randomScores(L * M * A, seed);
      const expected = bruteForce(scores, L, M, A).slice(0, count);
      const probes = probeSequence(scores, 0, L, M, A, count);
      expect(probes.length).toBe(expected.length);
      probes.forEach((probe, i) => expect(probe.cost).toBeCloseTo(expected[i].cost, 9));
      // Same buckets (order among equal costs aside).
      const asKey = (p: { table: number; key: number }): string => `${p.table}:${p.key}`;
      expect(new Set(probes.map(asKey))).toEqual(new Set(expected.map(asKey)));
      expect(new Set(probes.map(asKey)).size).toBe(probes.length);
    }
  });

  it('sign bits: the first probe flips the bit nearest its hyperplane', () => {
    // Scores [−s, s] per bit with s = 3, 0.2, −1 ⇒ bits 1, 1, 0 ⇒ home key 0b011 = 3.
    const scores = [-3, 3, -0.2, 0.2, 1, -1];
    const probes = probeSequence(scores, 0, 1, 3, 2, 4);
    expect(probes.map((p) => p.key)).toEqual([
      0b001, // flip bit 1: cost (2·0.2)² = 0.16
      0b111, // flip bit 2: cost 2² = 4
      0b101, // flip both: 4.16
      0b010, // flip bit 0: 6² = 36
    ]);
    expect(probes.map((p) => p.cost)).toEqual([0.16, 4, 4.16, 36].map((c) => expect.closeTo(c, 9) as unknown as number));
  });

  it('reads one query at an offset, returns nothing for count 0, and stops when all buckets are listed', () => {
    const one = randomScores(2 * 3 * 2, 1);
    const padded = [...randomScores(12, 9), ...one];
    expect(probeSequence(padded, 12, 2, 3, 2, 5)).toEqual(probeSequence(one, 0, 2, 3, 2, 5));
    expect(probeSequence(one, 0, 2, 3, 2, 0)).toEqual([]);
    // Asked for more than exist: every non-home bucket of both tables, once each.
    const all = probeSequence(one, 0, 2, 3, 2, 1000);
    const asKey = (p: { table: number; key: number }): string => `${p.table}:${p.key}`;
    expect(all).toHaveLength(2 * (2 ** 3 - 1));
    expect(new Set(all.map(asKey))).toEqual(new Set(bruteForce(one, 2, 3, 2).map(asKey)));
  });
});
