/**
 * The `tfjs-lsh-attention check <model-dir>` command on models saved with
 * fileSystem(dir): one table and a verdict line on stdout, progress on
 * stderr; a model whose LSH layer is not what its twin computes is
 * reported NOT EQUIVALENT (status 2); bad input is one line on stderr and
 * status 1, without a stack trace (run as a process, as a user would).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fullSelfAttention, lshSelfAttention, reformerLM } from '../layers/index.js';
import { fileSystem } from '../layers/file_io.js';
import { runCommand } from '../layers/testing/command.js';
import { initBackend } from '../src/backend.js';

const tmp = mkdtempSync(join(tmpdir(), 'lsh-check-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const lmDir = join(tmp, 'lm');
const fixedDir = join(tmp, 'fixed');
const fullOnlyDir = join(tmp, 'full-only');

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  const lm = reformerLM({ vocabSize: 16, maxLength: 48, modelSize: 16, numHeads: 2, attention: ['lsh', 'full'], nHashes: 2, chunkLength: 8, seed: 1 });
  await lm.save(fileSystem(lmDir));
  const fixed = tf.sequential({ layers: [tf.layers.dense({ units: 8, inputShape: [16, 4] }), lshSelfAttention({ numHeads: 2, chunkLength: 8, seed: 2 })] });
  await fixed.save(fileSystem(fixedDir));
  const fullOnly = tf.sequential({ layers: [fullSelfAttention({ numHeads: 2, inputShape: [16, 4], seed: 3 })] });
  await fullOnly.save(fileSystem(fullOnlyDir));
  writeFileSync(join(tmp, 'a-file'), 'not a folder');
  [lm, fixed, fullOnly].forEach((model) => model.dispose());
});

/** Runs the command in process; returns the status and what it wrote. */
async function check(...argv: string[]): Promise<{ status: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await runCommand(argv, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { status, out, err };
}

describe('tfjs-lsh-attention check', () => {
  it('a reformerLM: the equivalence row, a row per round at its own length, a verdict; progress on stderr; no leaks', async () => {
    const before = tf.memory().numTensors;
    const { status, out, err } = await check('check', lmDir, '--hashes', '1,4', '--runs', '1', '--backend', 'cpu');
    expect(tf.memory().numTensors).toBe(before);
    expect(status).toBe(0);
    const text = out.join('\n');
    expect(out[0]).toMatch(/^tfjs-lsh-attention check .*lm: 2 attention layers \(1 LSH\), backend cpu/);
    expect(text).toMatch(/T = 48, B = 1, cpu backend; 1 LSH attention layer \(and 1 full\)/);
    const exactRow = out.find((line) => line.startsWith('| exact LSH'));
    expect(exactRow).toMatch(/^\| exact LSH ✓ \(T = 32\) \| – \| [\d.e-]+ \| [\d.e-]+ \|/);
    expect(out.filter((line) => /^\| lsh \| [14] \|/.test(line))).toHaveLength(2);
    expect(out.at(-1)).toMatch(/^verdict: equivalent to full attention at T=32 \(outputs within [\d.e-]+, gradients within [\d.e-]+\); at T=48, /);
    expect(err[0]).toMatch(/^loading .*lm \(cpu/);
    expect(err.some((line) => /^equivalence check at T=32: .*with gradients/.test(line))).toBe(true);
    expect(err.filter((line) => /^LSH attention with [14] hash rounds? at T=48, B=1$/.test(line))).toHaveLength(2);
  });

  it('a model of fixed length: both at that length; --length must agree', async () => {
    const { status, out } = await check('check', fixedDir, '--hashes', '2', '--runs', '1', '--no-gradients', '--backend', 'cpu');
    expect(status).toBe(0);
    expect(out.find((line) => line.startsWith('| exact LSH'))).toMatch(/\(T = 16\)/);
    expect(out.at(-1)).toMatch(/^verdict: equivalent to full attention at T=16 \(outputs within [\d.e-]+\); at T=16, /);
    const wrong = await check('check', fixedDir, '--length', '20', '--backend', 'cpu');
    expect(wrong.status).toBe(1);
    expect(wrong.err).toEqual([
      expect.stringMatching(/^loading /),
      'tfjs-lsh-attention: --length: the model takes sequences of length 16 only (its input shape is [null, 16, 4]), got length 20; use 16, or rebuild the model with the length left open (null)',
    ]);
  });

  it('NOT EQUIVALENT (status 2) when exact mode is not full attention: a tolerance of 0 on float32 rounding', async () => {
    // With tolerance 0 the rounding differences of the exact mode count, so the first layer is named.
    const { status, out } = await check('check', lmDir, '--hashes', '1', '--runs', '1', '--tolerance', '0', '--no-gradients', '--backend', 'cpu');
    expect(status).toBe(2);
    expect(out.find((line) => line.startsWith('| exact LSH'))).toMatch(/^\| exact LSH ✗/);
    expect(out.at(-1)).toMatch(/^verdict: NOT EQUIVALENT at T=32: attention layer '.*' \(LSHSelfAttention, the 1st of 2 attention layers\) differs/);
  });

  it.each<[string, string[], RegExp]>([
    ['no command', [], /^tfjs-lsh-attention: no command; run tfjs-lsh-attention check <model-dir>/],
    ['another command', ['fix', 'x'], /^tfjs-lsh-attention: unknown command "fix"; the command is check/],
    ['no folder given', ['check'], /^tfjs-lsh-attention: check needs the model's folder/],
    ['no such folder', ['check', join(tmp, 'nowhere')], /^tfjs-lsh-attention: no folder at .*nowhere; pass the folder the model was saved to with model\.save\(fileSystem\(dir\)\)$/],
    ['a file', ['check', join(tmp, 'a-file')], /^tfjs-lsh-attention: .*a-file is a file, not a folder/],
    ['a folder without a model', ['check', tmp, '--backend', 'cpu'], /^tfjs-lsh-attention: fileSystem: no model at .*model\.json/],
    ['no LSH layer', ['check', fullOnlyDir, '--backend', 'cpu'], /^tfjs-lsh-attention: the model at .* has no LSHSelfAttention layer \(its layers: FullSelfAttention\)/],
    ['a length over the position embedding', ['check', lmDir, '--length', '64', '--backend', 'cpu'], /^tfjs-lsh-attention: --length: the model's position embedding .* covers 48 positions, got length 64; use a length ≤ 48$/],
    ['bad hashes', ['check', lmDir, '--hashes', '1,two'], /^tfjs-lsh-attention: --hashes must be a comma-separated list of positive integers \(e\.g\. 1,2,4,8\), got "1,two"$/],
    ['a zero length', ['check', lmDir, '--length', '0'], /^tfjs-lsh-attention: --length must be an integer ≥ 1, got "0"$/],
    ['an unknown option', ['check', lmDir, '--lenght', '8'], /^tfjs-lsh-attention: Unknown option '--lenght'; run tfjs-lsh-attention --help for the options$/],
    ['a bad backend', ['check', lmDir, '--backend', 'webgl'], /^tfjs-lsh-attention: --backend must be one of tensorflow, wasm, cpu, got "webgl"$/],
  ])('bad input: %s → status 1, one line', async (_name, argv, message) => {
    const { status, out, err } = await check(...argv);
    expect(status).toBe(1);
    expect(out).toEqual([]);
    const errors = err.filter((line) => !line.startsWith('loading '));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(message);
  });

  it('--help prints the usage, status 0', async () => {
    const { status, out } = await check('--help');
    expect(status).toBe(0);
    expect(out.join('\n')).toMatch(/^Usage: tfjs-lsh-attention check <model-dir> \[options\]/);
  });

  it('as a process: status 1 and one line on stderr, no stack trace', async () => {
    const run = promisify(execFile);
    const failure = await run(process.execPath, ['--import', 'tsx', 'layers/testing/cli.ts', 'check', join(tmp, 'nowhere')]).then(
      () => ({ code: 0, stdout: '', stderr: '' }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(failure.code).toBe(1);
    expect(failure.stdout).toBe('');
    expect(failure.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^tfjs-lsh-attention: no folder at /)]);
  });
});
