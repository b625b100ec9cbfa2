/**
 * The examples and the hashing benchmark run end to end at their small
 * default sizes (as a reader would run them), so they cannot rot.
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

it('01-compare-layers: prints the comparison table', () => {
  const out = run('examples/01-compare-layers.ts');
  expect(out).toMatch(/\| full \| - \|/);
  expect(out).toMatch(/\| lsh \| 8 \|/);
});

it('10-song-matching: finds the song and reloads the index', () => {
  const out = run('examples/10-song-matching.ts');
  expect(out).toMatch(/reloaded answer .*\(identical\)/);
  expect(out).toMatch(/tensors left: 0/);
});

it('11-klsh-mnist: searches MNIST with an RBF kernel', () => {
  const out = run('examples/11-klsh-mnist.ts');
  expect(out).toMatch(/recall@10 [\d.]+ against the exact rbf scan/);
  expect(out).toMatch(/tensors left: 0/);
});

it('the hashing benchmark runs in quick mode', () => {
  const out = run('bench/hashing/run.ts', ['--quick']);
  expect(out).toMatch(/recall@10/);
});
