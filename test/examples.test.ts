/**
 * The examples and the hashing benchmark run end to end at their small
 * default sizes (as a reader would run them), so they cannot rot, and what
 * they print is right: each bound below was measured over several seeds of
 * the example's randomness (wasm; the measured ranges are beside each bound)
 * and sits well outside them, far from what a broken hash or attention gives.
 */
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';

function run(script: string, args: string[] = []): string {
  return execFileSync(process.execPath, ['--import', 'tsx', script, ...args], {
    encoding: 'utf8',
    env: { ...process.env, EXAMPLE_QUICK: '1' },
    timeout: 120_000,
  });
}

/** The numbers of every match of `pattern` (its capture groups), in order. */
function numbers(out: string, pattern: RegExp): number[][] {
  return Array.from(out.matchAll(pattern), (m) => m.slice(1).map(Number));
}

it('01-compare-layers: LSH attention is close to full attention, closer with more rounds', () => {
  const out = run('examples/01-compare-layers.ts');
  expect(out).toMatch(/\| full \| - \| [\d.]+ \| 0 \| 0 \|/);
  const relative = new Map(numbers(out, /\| lsh \| (\d) \| [\d.]+ \| [\d.e+-]+ \| ([\d.]+) \|/g).map(([rounds, r]) => [rounds, r]));
  expect([...relative.keys()]).toEqual([1, 2, 4, 8]);
  // Measured (5 seed variants): 1 round 0.018-0.039, 2 rounds 0.003-0.009, 4 and 8 rounds 0.002-0.004.
  expect(relative.get(1)).toBeLessThan(0.08);
  expect(relative.get(2)).toBeLessThan(0.02);
  expect(relative.get(8)).toBeLessThan(0.01);
  // More rounds, closer (1 round was 4.5-19× further off than 8 rounds).
  expect(relative.get(8) as number).toBeLessThan((relative.get(1) as number) / 2);
});

it('10-song-matching: finds the song in a few buckets, the noisy one with multi-probe, and reloads the index', () => {
  const out = run('examples/10-song-matching.ts');
  // Measured (SimHash seeds 1-5): always the right song, looking at 13-26 of 5,000 songs (0.26-0.52%).
  expect(out).toMatch(/→ the right song\./);
  const [[looked, songs]] = numbers(out, /LSH search: looked at (\d+) of (\d+) songs/g);
  expect(looked / songs).toBeLessThan(0.02);
  // The noisier recording: found with 64 probes for every seed (86-242 songs examined).
  expect(out).toMatch(/probes 64: .*→ song-\d+ \(\w+\) ✓/);
  expect(out).toMatch(/reloaded answer .*\(identical\)/);
  expect(out).toMatch(/tensors left: 0/);
});

it('11-klsh-mnist: KLSH recall@10 against the exact RBF scan, searching a small part of the database', () => {
  const out = run('examples/11-klsh-mnist.ts');
  const rows = numbers(out, /probes (\d+): recall@10 ([\d.]+) against the exact rbf scan, searching ([\d.]+)% of the database/g);
  expect(rows.map(([probes]) => probes)).toEqual([0, 32]);
  const [[, recall0, searched0], [, recall32, searched32]] = rows;
  // Measured (KLSH seeds 1-5): probes 0 recall 0.790-0.820 searching 5.9-6.3%; probes 32 recall 0.877-0.918 searching 9.8-10.5%.
  expect(recall0).toBeGreaterThan(0.7);
  expect(searched0).toBeLessThan(9);
  expect(recall32).toBeGreaterThan(0.8);
  expect(searched32).toBeLessThan(15);
  expect(recall32).toBeGreaterThan(recall0);
  expect(out).toMatch(/tensors left: 0/);
});

it('the hashing benchmark in quick mode: every method finds most true neighbours searching a small part of the data', () => {
  const out = run('bench/hashing/run.ts', ['--quick']);
  const rows = numbers(out, /probes\s+(\d+): recall@10 ([\d.]+), searched ([\d.]+)%/g);
  expect(rows.map(([probes]) => probes)).toEqual([0, 16, 0, 16, 0, 16]); // SimHash, rotation hash, KLSH
  // Measured (seeds 1-4, all methods): probes 0 recall 0.676-0.818 searching 8.6-10.1%;
  // probes 16 recall 0.832-0.926 searching 15.3-16.5%.
  for (let method = 0; method < 3; method++) {
    const [[, recall0, searched0], [, recall16, searched16]] = rows.slice(2 * method, 2 * method + 2);
    expect(recall0).toBeGreaterThan(0.55);
    expect(searched0).toBeLessThan(14);
    expect(recall16).toBeGreaterThan(0.75);
    expect(searched16).toBeLessThan(22);
    expect(recall16).toBeGreaterThan(recall0);
  }
});

it('02-test-your-model: exact mode equals full attention, a changed twin is named, the error falls with rounds', () => {
  const out = run('examples/02-test-your-model.ts');
  // Measured (wasm and cpu): outputs within 8.4e-7, layers within 4.8e-7, gradients within 2.8e-9.
  const [[outputs, layers, gradients]] = numbers(out, /equivalence at T = 32: equivalent: outputs within ([\d.e+-]+) .* each within ([\d.e+-]+), loss gradients of 28 weights within ([\d.e+-]+)/g);
  expect(outputs).toBeLessThan(1e-5);
  expect(layers).toBeLessThan(1e-5);
  expect(gradients).toBeLessThan(1e-5);
  expect(out).toMatch(
    /a twin with (lsh_self_attention_\w+)'s weights scaled by 1\.1: not equivalent: attention layer '\1' \(LSHSelfAttention, the 2nd of 2 attention layers\) differs/,
  );
  expect(out).toMatch(/\| full \| – \| 0 \| 0 \| [\d.]+ \| 0 \|/);
  const errors = numbers(out, /\| lsh \| (\d) \| ([\d.e+-]+) \|/g);
  expect(errors.map(([rounds]) => rounds)).toEqual([1, 2, 4, 8]);
  // Measured at T = 256 (an untrained model: diffuse attention): 0.203, 0.141, 0.107, 0.078.
  for (let i = 1; i < errors.length; i++) expect(errors[i][1]).toBeLessThan(errors[i - 1][1]);
  expect(errors[3][1]).toBeLessThan(errors[0][1] / 2);
  expect(out).toMatch(/tensors left: 0/);
});
