/**
 * The Brown genres example in quick mode: the corpus loads (500 files, 15
 * genres, the held-out split), the baselines and the encoder are scored on
 * the same held-out windows, training runs, nothing leaks, and the results
 * file is written.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const directory = mkdtempSync(join(tmpdir(), 'brown-genres-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

it('40-brown-genres --quick: loads the genres, scores both baselines and the encoder on held-out windows, writes the results', () => {
  const out = join(directory, 'genres.md');
  const printed = execFileSync(process.execPath, ['--import', 'tsx', 'examples/40-brown-genres.ts', '--quick', '--out', out], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const [, trainFiles, heldOutFiles, genres, vocab, windows, length] =
    printed.match(/corpus: Brown, (\d+) files for training, (\d+) held out, (\d+) genres; (\d+) character ids; (\d+) test windows of (\d+) characters/) ?? [];
  // Every 5th file of each genre held out: 93 of 500, all 15 genres in training.
  expect([Number(trainFiles), Number(heldOutFiles), Number(genres)]).toEqual([407, 93, 15]);
  expect(Number(vocab)).toBeGreaterThan(60);
  expect(Number(vocab)).toBeLessThan(100);
  expect([Number(windows), Number(length)]).toEqual([90, 256]);
  const percent = (pattern: RegExp) => Number(printed.match(pattern)?.[1]);
  const majority = percent(/\| most frequent genre \(cj, learned\) \| ([\d.]+)% \|/);
  const bag = percent(/\| bag of characters \(softmax regression\) \| ([\d.]+)% \|/);
  const encoder = percent(/\| reformerEncoder, LSH 1 round, mean pooling \| ([\d.]+)% \|/);
  // "learned" (cj) is the largest genre: 16 of the 90 quick test windows.
  expect(majority).toBeCloseTo((100 * 16) / 90, 1);
  // Measured (seeds 1-4): bag of characters 18.9-23.3%, never below the majority class.
  expect(bag).toBeGreaterThanOrEqual(majority);
  expect(encoder).toBeGreaterThanOrEqual(0);
  expect(encoder).toBeLessThanOrEqual(100);
  const [, first, last] = printed.match(/loss ([\d.]+) → ([\d.]+) nats/) ?? [];
  // Near ln 15 = 2.71 at the start (an untrained head), finite at the end.
  expect(Number(first)).toBeGreaterThan(2);
  expect(Number(first)).toBeLessThan(3.5);
  expect(Number.isFinite(Number(last))).toBe(true);
  // Every test window is counted once in the per-genre table.
  const perGenre = Array.from(printed.matchAll(/\| c[a-r] [^|]+ \| (\d+) \| (\d+) \|/g), (m) => [Number(m[1]), Number(m[2])]);
  expect(perGenre).toHaveLength(15);
  expect(perGenre.reduce((a, [n]) => a + n, 0)).toBe(90);
  expect(perGenre.reduce((a, [, c]) => a + c, 0)).toBe(Math.round((encoder * 90) / 100));
  expect(printed).toMatch(/tensors left: 0/);
  expect(readFileSync(out, 'utf8')).toContain('| bag of characters (softmax regression) |');
});
