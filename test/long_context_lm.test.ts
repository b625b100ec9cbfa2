/**
 * The long-context language-model example (Brown corpus) in quick mode: the
 * corpus loads with its tags stripped, both models train and beat the
 * uniform and unigram baselines on held-out text, the full-attention step is
 * timed, and the results file, chart and sample are written.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const directory = mkdtempSync(join(tmpdir(), 'long-context-lm-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

it('30-long-context-lm --quick: trains both contexts on the Brown corpus, scores them against the baselines, writes the results', () => {
  const out = join(directory, 'lm.md');
  const printed = execFileSync(process.execPath, ['--import', 'tsx', 'examples/30-long-context-lm.ts', '--quick', '--out', out], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  // The corpus: 480 + 20 files; tagged, the text is ≈10M characters, plain ≈6M.
  const [, trainFiles, trainChars, heldOutFiles, heldOutChars, vocab] =
    printed.match(/corpus: Brown, (\d+) files for training \((\d+) characters\), (\d+) held out \((\d+)\); (\d+) character ids/) ?? [];
  expect([Number(trainFiles), Number(heldOutFiles)]).toEqual([480, 20]);
  expect(Number(trainChars)).toBeGreaterThan(5e6);
  expect(Number(trainChars)).toBeLessThan(6.5e6);
  expect(Number(heldOutChars)).toBeGreaterThan(1e5);
  // No tag survived: the vocabulary is characters of English text, not the tags' slashes and codes.
  expect(Number(vocab)).toBeGreaterThan(60);
  expect(Number(vocab)).toBeLessThan(100);

  const unigram = Number(printed.match(/\| unigram \(training frequencies\) \| 0 \| ([\d.]+) \|/)?.[1]);
  const models = Array.from(printed.matchAll(/\| reformerLM, LSH 2 rounds \| (\d+) \| ([\d.]+) \|/g), (m) => [Number(m[1]), Number(m[2])]);
  expect(models.map(([context]) => context)).toEqual([256, 64]);
  const uniform = Math.log2(Number(vocab));
  // English characters: the unigram entropy is ≈4.4 bits.
  expect(unigram).toBeGreaterThan(4);
  expect(unigram).toBeLessThan(4.8);
  // Measured (seeds 1-4 of the quick run): context 256 4.07-4.16, context 64 4.09-4.18 bits per character; unigram 4.48.
  for (const [, bits] of models) {
    expect(bits).toBeLessThan(uniform - 1.5);
    expect(bits).toBeLessThan(unigram);
  }
  expect(printed).toMatch(/full attention: one training step of the same model with full attention .* at context 256: [\d.]+ s/);
  expect(printed).toMatch(/sample \(temperature 0\.6\)/);
  expect(printed).toMatch(/tensors left: 0/);

  const markdown = readFileSync(out, 'utf8');
  expect(markdown).toContain('| unigram (training frequencies) | 0 |');
  expect(markdown).toContain('![training loss](./lm.svg)');
  expect(readFileSync(join(directory, 'lm.svg'), 'utf8')).toMatch(/^<svg/);
});
