/**
 * The `tfjs-lsh-attention check <model-dir>` command: loads a model saved
 * with `fileSystem(dir)`, checks its LSH attention against full attention in
 * exact mode on random inputs at a small length, then measures each number
 * of hash rounds against full attention at the model's own length, and
 * prints one table and a verdict line (progress on stderr).
 *
 * {@link runCommand} is the whole command as a function (the tests run it in
 * process); `cli.ts` is the executable around it.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { BACKEND_PREFERENCE, describeBackend, initBackend, type BackendName } from '../../src/backend.js';
import { fileSystem } from '../file_io.js';
import '../index.js'; // registers the layers, so saved models that use them load
import { attentionLayers } from '../lm.js';
import { LSHSelfAttention } from '../self_attention.js';
import { approximationReport, approximationVerdict, formatApproximationTable } from './approximation.js';
import { formatNumber } from './compare.js';
import { DEFAULT_TOLERANCE, checkEquivalence } from './equivalence.js';
import { assertLengthFits, modelLengths, randomInputs } from './inputs.js';

/** The command's name, as package.json's "bin" installs it. */
export const COMMAND = 'tfjs-lsh-attention';

/** The longest length the equivalence check picks by itself (it runs full attention several times). */
export const DEFAULT_CHECK_LENGTH = 32;

export const USAGE = `Usage: ${COMMAND} check <model-dir> [options]

Loads a model saved with fileSystem(dir) from tfjs-lsh-attention/node, checks
that its LSH attention in exact mode (one chunk per round) computes what full
attention computes, on random inputs at a small length (the outputs, each
attention layer, the loss gradients of every weight), then measures each
number of hash rounds against full attention at the model's own length.
Prints one table and a verdict line (which names the fewest rounds within 1%
relative error of full attention); progress goes to stderr.

Options:
  --length T          length of the approximation report (default: the model's
                      own: its fixed input length, else its position embedding's)
  --hashes 1,2,4,8    hash rounds to measure (default 1,2,4,8)
  --check-length T    length of the equivalence check (default: the model's
                      fixed length if it has one, else the smaller of ${DEFAULT_CHECK_LENGTH} and --length)
  --batch B           batch size of the approximation report (default 1)
  --runs N            timed runs per model, after a warm-up; the median is shown (default 3)
  --tolerance X       of the equivalence check, relative to max(1, the output's size) (default ${DEFAULT_TOLERANCE})
  --no-gradients      skip the comparison of the loss gradients
  --backend NAME      ${BACKEND_PREFERENCE.join(', ')} (default: the fastest that loads)
  --seed N            seed of the random inputs (default 1)
  -h, --help          this text

Exit status: 0 equivalent, 2 not equivalent, 1 an error (arguments, folder, model).`;

/** Where the command writes, a line at a time: `out` the table and verdict, `err` progress and errors. */
export interface CommandIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Writes a text of several lines, a line at a time. */
function writeLines(write: (line: string) => void, text: string): void {
  for (const line of text.split('\n')) write(line);
}

const processIO: CommandIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** An integer option's value. */
function integerOption(name: string, value: string | undefined, minimum: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < minimum) {
    throw new Error(`--${name} must be an integer ≥ ${minimum}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** The parsed arguments of `check`. */
interface CheckArguments {
  directory: string;
  length?: number;
  checkLength?: number;
  hashes: number[];
  batch: number;
  runs: number;
  tolerance: number;
  gradients: boolean;
  backend?: BackendName;
  seed: number;
}

/** Parses the arguments; null for --help. */
function parse(argv: string[]): CheckArguments | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        length: { type: 'string' },
        hashes: { type: 'string' },
        'check-length': { type: 'string' },
        batch: { type: 'string' },
        runs: { type: 'string' },
        tolerance: { type: 'string' },
        'no-gradients': { type: 'boolean' },
        backend: { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    // parseArgs's messages end with advice about '--' that does not apply here.
    throw new Error(`${(error as Error).message.split('. ')[0]}; run ${COMMAND} --help for the options`);
  }
  const { values, positionals } = parsed;
  if (values.help) return null;
  const [command, directory, ...extra] = positionals;
  if (command !== 'check') {
    throw new Error(
      command === undefined
        ? `no command; run ${COMMAND} check <model-dir> (or ${COMMAND} --help)`
        : `unknown command ${JSON.stringify(command)}; the command is check: ${COMMAND} check <model-dir>`,
    );
  }
  if (directory === undefined) throw new Error(`check needs the model's folder: ${COMMAND} check <model-dir>`);
  if (extra.length > 0) throw new Error(`check takes one folder, got also ${extra.map((e) => JSON.stringify(e)).join(', ')}`);
  const hashes = (values.hashes ?? '1,2,4,8').split(',').map((item) => {
    if (!/^\s*\d+\s*$/.test(item) || Number(item) < 1) {
      throw new Error(`--hashes must be a comma-separated list of positive integers (e.g. 1,2,4,8), got ${JSON.stringify(values.hashes)}`);
    }
    return Number(item);
  });
  const tolerance = values.tolerance === undefined ? DEFAULT_TOLERANCE : Number(values.tolerance);
  if (values.tolerance !== undefined && (values.tolerance.trim() === '' || !Number.isFinite(tolerance) || tolerance < 0)) {
    throw new Error(`--tolerance must be a number ≥ 0 (e.g. 1e-4), got ${JSON.stringify(values.tolerance)}`);
  }
  const backend = values.backend;
  if (backend !== undefined && !(BACKEND_PREFERENCE as readonly string[]).includes(backend)) {
    throw new Error(`--backend must be one of ${BACKEND_PREFERENCE.join(', ')}, got ${JSON.stringify(backend)}`);
  }
  return {
    directory,
    length: integerOption('length', values.length, 1),
    checkLength: integerOption('check-length', values['check-length'], 1),
    hashes,
    batch: integerOption('batch', values.batch, 1) ?? 1,
    runs: integerOption('runs', values.runs, 1) ?? 3,
    tolerance,
    gradients: values['no-gradients'] !== true,
    backend: backend as BackendName | undefined,
    seed: integerOption('seed', values.seed, 0) ?? 1,
  };
}

/** The folder, checked to exist. */
function modelFolder(directory: string): string {
  const folder = resolve(directory);
  let isFolder = false;
  try {
    isFolder = statSync(folder).isDirectory();
  } catch {
    throw new Error(`no folder at ${folder}; pass the folder the model was saved to with model.save(fileSystem(dir))`);
  }
  if (!isFolder) throw new Error(`${folder} is a file, not a folder; pass the folder that holds model.json`);
  return folder;
}

/**
 * Runs the command with these arguments (without `node` and the script).
 *
 * @returns the exit status: 0 equivalent, 2 not equivalent, 1 an error
 *   (reported on `io.err` as one line).
 */
export async function runCommand(argv: string[], io: CommandIO = processIO): Promise<number> {
  try {
    const args = parse(argv);
    if (args === null) {
      writeLines(io.out, USAGE);
      return 0;
    }
    return await check(args, io);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    io.err(`${COMMAND}: ${message.split('\n')[0]}`);
    return 1;
  }
}

async function check(args: CheckArguments, io: CommandIO): Promise<number> {
  const folder = modelFolder(args.directory);
  await initBackend({ backend: args.backend });
  io.err(`loading ${folder} (${describeBackend()})`);
  const model = await tfl.loadLayersModel(fileSystem(folder));
  const inputs: tf.Tensor[] = [];
  try {
    const layers = attentionLayers(model);
    const lsh = layers.filter((layer) => layer instanceof LSHSelfAttention).length;
    if (lsh === 0) {
      const classes = [...new Set(model.layers.map((layer) => layer.getClassName()))].join(', ');
      throw new Error(
        `the model at ${folder} has no LSHSelfAttention layer (its layers: ${classes}); the check compares LSH attention with full attention`,
      );
    }
    const lengths = modelLengths(model);
    const length = args.length ?? lengths.fixed ?? lengths.max;
    if (length === null || length === undefined) {
      throw new Error(
        `the model does not fix its input length (input shape [${model.inputs[0].shape.map(String).join(', ')}]) and has no position embedding; pass --length T`,
      );
    }
    assertLengthFits('--length', model, length);
    const checkLength = args.checkLength ?? lengths.fixed ?? Math.min(DEFAULT_CHECK_LENGTH, length);
    assertLengthFits('--check-length', model, checkLength);

    io.err(`equivalence check at T=${checkLength}: the model in exact mode against its full-attention twin${args.gradients ? ', with gradients' : ''}`);
    inputs.push(...randomInputs(model, { length: checkLength, batch: 2, seed: args.seed }));
    const equivalence = await checkEquivalence(model, inputs, { tolerance: args.tolerance, gradients: args.gradients });
    tf.dispose(inputs.splice(0));

    inputs.push(...randomInputs(model, { length, batch: args.batch, seed: args.seed + 1 }));
    const approximation = await approximationReport(model, inputs, {
      nHashes: args.hashes,
      runs: args.runs,
      onProgress: (line) => io.err(line),
    });

    io.out(`${COMMAND} check ${folder}: ${layers.length} attention layer${layers.length === 1 ? '' : 's'} (${lsh} LSH), backend ${describeBackend()}`);
    io.out('');
    writeLines(io.out, formatApproximationTable(approximation, { length: checkLength, report: equivalence }));
    io.out('');
    if (!equivalence.equivalent) {
      io.out(`verdict: NOT EQUIVALENT at T=${checkLength}: ${equivalence.summary}`);
      return 2;
    }
    const gradients =
      equivalence.maxGradientDifference === null ? '' : `, gradients within ${formatNumber(equivalence.maxGradientDifference)}`;
    io.out(
      `verdict: equivalent to full attention at T=${checkLength} (outputs within ${formatNumber(equivalence.maxOutputDifference)}${gradients}); ` +
        approximationVerdict(approximation),
    );
    return 0;
  } finally {
    tf.dispose(inputs);
    model.dispose();
  }
}
