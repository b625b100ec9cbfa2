/**
 * Hardening sweep, saved models: a real model is saved with fileSystem(dir),
 * then its files are corrupted (truncated, bytes flipped, fields edited,
 * paths pointed outside the folder, files removed) and loading must fail in
 * the handler with a message naming the file, what was expected and what was
 * found, leaking no tensor. A few cases check the correct result instead.
 */
import * as tf from '@tensorflow/tfjs';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { fileSystem, type FileSystemModelJSON } from '../../layers/file_io.js';
import { describeBackends, expectNoLeaks, maxAbsDiff } from '../helpers.js';

/** A hang fails the case instead of stalling the run. */
const CASE_TIMEOUT = 20_000;

const tmp = mkdtempSync(join(tmpdir(), 'hardening-files-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A Dense 8 → 8 model: weights [8, 8] and [8], 288 bytes of float32. */
function smallModel(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.dense({ units: 8, inputShape: [8], kernelInitializer: tf.initializers.randomNormal({ seed: 1 }) }));
  return model;
}

let folders = 0;
/** A freshly saved model's folder. */
async function savedModel(): Promise<string> {
  const dir = join(tmp, `m${folders++}`);
  const model = smallModel();
  await model.save(fileSystem(dir));
  model.dispose();
  return dir;
}

function readModelJSON(dir: string): FileSystemModelJSON {
  return JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as FileSystemModelJSON;
}

function writeModelJSON(dir: string, json: unknown): void {
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
}

/** Edits model.json; `keepChecksum` false drops sha256, as a file saved by tfjs-node would be. */
function editModelJSON(dir: string, edit: (json: FileSystemModelJSON) => void, keepChecksum = true): void {
  const json = readModelJSON(dir);
  if (!keepChecksum) delete json.sha256;
  edit(json);
  writeModelJSON(dir, json);
}

const firstWeight = (json: FileSystemModelJSON): Record<string, unknown> =>
  json.weightsManifest[0].weights[0] as unknown as Record<string, unknown>;

/** [what is wrong, corrupt the saved folder (returns the folder to load), expected message]. */
const corruptions: [string, (dir: string) => string, RegExp][] = [
  [
    'a weight path with ../ out of the folder',
    (dir) => {
      copyFileSync(join(dir, 'weights.bin'), join(tmp, 'outside.bin'));
      editModelJSON(dir, (json) => (json.weightsManifest[0].paths = ['../outside.bin']));
      return dir;
    },
    /fileSystem: .*model\.json: weightsManifest\[0\]\.paths\[0\] is "\.\.\/outside\.bin", which leaves the model's folder .*; weight paths must be relative and stay in the folder/,
  ],
  [
    'an absolute weight path',
    (dir) => {
      editModelJSON(dir, (json) => (json.weightsManifest[0].paths = [join(dir, 'weights.bin')]));
      return dir;
    },
    /weightsManifest\[0\]\.paths\[0\] is ".*weights\.bin", which leaves the model's folder/,
  ],
  [
    'a weight path that climbs out through a subfolder',
    (dir) => {
      editModelJSON(dir, (json) => (json.weightsManifest[0].paths = ['sub/../../outside.bin']));
      return dir;
    },
    /paths\[0\] is "sub\/\.\.\/\.\.\/outside\.bin", which leaves the model's folder/,
  ],
  [
    'weights.bin a symlink to a file outside the folder (same bytes)',
    (dir) => {
      const outside = join(tmp, `outside-${folders}.bin`);
      copyFileSync(join(dir, 'weights.bin'), outside);
      rmSync(join(dir, 'weights.bin'));
      symlinkSync(outside, join(dir, 'weights.bin'));
      return dir;
    },
    /fileSystem: .*weights\.bin is a symlink to .*outside-\d+\.bin, outside the model's folder .*; copy the file into the folder instead of linking it/,
  ],
  [
    'model.json truncated to 200 characters',
    (dir) => {
      truncateSync(join(dir, 'model.json'), 200);
      return dir;
    },
    /fileSystem: .*model\.json is not valid JSON \(truncated\? [^)]*\); save the model again/,
  ],
  [
    'model.json emptied',
    (dir) => {
      truncateSync(join(dir, 'model.json'), 0);
      return dir;
    },
    /fileSystem: .*model\.json is empty \(the save was interrupted or the file was truncated\); save the model again/,
  ],
  [
    'model.json a JSON array',
    (dir) => {
      writeModelJSON(dir, []);
      return dir;
    },
    /model\.json must hold an object \{ modelTopology, weightsManifest, … \}, got an array of length 0; it is not a saved model/,
  ],
  [
    'model.json without modelTopology',
    (dir) => {
      editModelJSON(dir, (json) => delete (json as Partial<FileSystemModelJSON>).modelTopology);
      return dir;
    },
    /model\.json must have a modelTopology object \(the layers\), got nothing; the file is incomplete or edited/,
  ],
  [
    'model.json without weightsManifest (tfjs would load random weights)',
    (dir) => {
      editModelJSON(dir, (json) => delete (json as Partial<FileSystemModelJSON>).weightsManifest);
      return dir;
    },
    /model\.json has no weightsManifest \(the list of weights files\), so the model would load with random weights/,
  ],
  [
    'weightsManifest an object instead of an array',
    (dir) => {
      editModelJSON(dir, (json) => ((json as unknown as Record<string, unknown>).weightsManifest = { paths: ['./weights.bin'] }));
      return dir;
    },
    /model\.json: weightsManifest must be an array of \{ paths, weights \} groups, got an object/,
  ],
  [
    'paths a string instead of an array',
    (dir) => {
      editModelJSON(dir, (json) => ((json.weightsManifest[0] as unknown as Record<string, unknown>).paths = './weights.bin'));
      return dir;
    },
    /weightsManifest\[0\]\.paths must be a non-empty array of file names, got "\.\/weights\.bin"/,
  ],
  [
    'a shape holding a string',
    (dir) => {
      editModelJSON(dir, (json) => (firstWeight(json).shape = [8, '8']));
      return dir;
    },
    /weightsManifest\[0\]\.weights\[0\]\.shape must be an array of non-negative integers, got an array of length 2/,
  ],
  [
    'an unknown dtype',
    (dir) => {
      editModelJSON(dir, (json) => (firstWeight(json).dtype = 'float64'));
      return dir;
    },
    /weightsManifest\[0\]\.weights\[0\]\.dtype must be one of float32, int32, bool, complex64, got "float64"/,
  ],
  [
    'a weight name listed twice',
    (dir) => {
      editModelJSON(dir, (json) => (json.weightsManifest[0].weights[1].name = json.weightsManifest[0].weights[0].name));
      return dir;
    },
    /weightsManifest\[0\]\.weights\[1\]\.name must be unique, got "dense_Dense\d+\/kernel"/,
  ],
  [
    'weights.bin truncated to half',
    (dir) => {
      truncateSync(join(dir, 'weights.bin'), 144);
      return dir;
    },
    /fileSystem: .*weights\.bin has 144 bytes, model\.json's weightsManifest needs 288 \(the file is truncated or from another model\); save the model again/,
  ],
  [
    'weights.bin with bytes appended',
    (dir) => {
      appendFileSync(join(dir, 'weights.bin'), new Uint8Array(16));
      return dir;
    },
    /weights\.bin has 304 bytes, model\.json's weightsManifest needs 288 \(the file is too long or from another model\)/,
  ],
  [
    'weights.bin removed',
    (dir) => {
      rmSync(join(dir, 'weights.bin'));
      return dir;
    },
    /fileSystem: .*weights\.bin is missing; model\.json's weightsManifest lists it: copy the whole model folder or save the model again/,
  ],
  [
    'weights.bin a folder',
    (dir) => {
      rmSync(join(dir, 'weights.bin'));
      mkdirSync(join(dir, 'weights.bin'));
      return dir;
    },
    /fileSystem: .*weights\.bin is a folder, not a file/,
  ],
  [
    'one byte of weights.bin flipped (same length)',
    (dir) => {
      const bytes = readFileSync(join(dir, 'weights.bin'));
      bytes[100] ^= 0xff;
      writeFileSync(join(dir, 'weights.bin'), bytes);
      return dir;
    },
    /fileSystem: .*weights\.bin does not match its SHA-256 in model\.json \(sha256\.files\["\.\/weights\.bin"\]\): the file was changed or corrupted after saving/,
  ],
  [
    'a weight shape edited with the same byte count ([8, 8] → [4, 16])',
    (dir) => {
      editModelJSON(dir, (json) => (firstWeight(json).shape = [4, 16]));
      return dir;
    },
    /fileSystem: .*model\.json does not match its own checksum \(sha256\.modelJSON\): the file was changed or corrupted after saving/,
  ],
  [
    'one character of the topology flipped, still valid JSON (units 8 → 9)',
    (dir) => {
      const text = readFileSync(join(dir, 'model.json'), 'utf8');
      expect(text).toContain('"units":8');
      writeFileSync(join(dir, 'model.json'), text.replace('"units":8', '"units":9'));
      return dir;
    },
    /model\.json does not match its own checksum \(sha256\.modelJSON\)/,
  ],
  [
    'sha256 of the wrong type',
    (dir) => {
      editModelJSON(dir, (json) => ((json as unknown as Record<string, unknown>).sha256 = { modelJSON: 12, files: {} }));
      return dir;
    },
    /model\.json: sha256\.modelJSON must be a hex SHA-256 \(64 digits\), got number 12; the file was edited: save the model again \(or delete sha256 from model\.json to load it unchecked\)/,
  ],
  [
    'a manifest path without its checksum',
    (dir) => {
      copyFileSync(join(dir, 'weights.bin'), join(dir, 'other.bin'));
      editModelJSON(dir, (json) => (json.weightsManifest[0].paths = ['./other.bin']));
      return dir;
    },
    /sha256\.files\["\.\/other\.bin"\] must be a hex SHA-256 \(64 digits\), got nothing/,
  ],
  [
    'model.json removed',
    (dir) => {
      rmSync(join(dir, 'model.json'));
      return dir;
    },
    /fileSystem: no model at .*model\.json; save one there first with model\.save\(fileSystem\(dir\)\)/,
  ],
  [
    'a folder that does not exist',
    (dir) => join(dir, 'nothing-here'),
    /fileSystem: no model at .*nothing-here\/model\.json \(the folder does not exist\)/,
  ],
];

describeBackends('hardening: saved model files', () => {
  it.each(corruptions)(
    '%s: refused by fileSystem with the file and the fault named, no tensor leaked',
    async (_, corrupt, message) => {
      const dir = corrupt(await savedModel());
      await expectNoLeaks(async () => {
        await expect(tf.loadLayersModel(fileSystem(dir))).rejects.toThrow(message);
      });
    },
    CASE_TIMEOUT,
  );

  it(
    'a model.json without checksums (as tfjs-node writes it) loads unchecked, with the same predictions',
    async () => {
      const dir = await savedModel();
      editModelJSON(dir, () => undefined, false);
      const original = smallModel();
      const loaded = await tf.loadLayersModel(fileSystem(dir));
      tf.tidy(() => {
        const x = tf.ones([2, 8]);
        expect(maxAbsDiff((original.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync())).toBe(0);
      });
      original.dispose();
      loaded.dispose();
    },
    CASE_TIMEOUT,
  );

  it(
    'saving creates missing parent folders, and saving again over a model replaces it whole',
    async () => {
      const dir = join(tmp, `nested-${folders++}`, 'a', 'b');
      const first = smallModel();
      await first.save(fileSystem(dir));
      const second = tf.sequential();
      second.add(tf.layers.dense({ units: 3, inputShape: [8], kernelInitializer: tf.initializers.randomNormal({ seed: 2 }) }));
      await second.save(fileSystem(dir));
      const loaded = await tf.loadLayersModel(fileSystem(dir));
      expect(loaded.outputs[0].shape).toEqual([null, 3]);
      tf.tidy(() => {
        const x = tf.ones([1, 8]);
        expect(maxAbsDiff((second.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync())).toBe(0);
      });
      [first, second, loaded].forEach((m) => m.dispose());
    },
    CASE_TIMEOUT,
  );

  it(
    'saving into a path that is a file, or under one, names it',
    async () => {
      const file = join(tmp, `a-file-${folders++}`);
      writeFileSync(file, 'not a folder');
      const model = smallModel();
      for (const dir of [file, join(file, 'sub')]) {
        await expect(model.save(fileSystem(dir))).rejects.toThrow(
          /fileSystem: cannot save to .*a-file-\d+(\/sub)?: it \(or a folder above it\) is a file, not a folder; pass a folder path/,
        );
      }
      model.dispose();
    },
    CASE_TIMEOUT,
  );

  it('refuses an empty directory and a URL', () => {
    expect(() => fileSystem('')).toThrow(/fileSystem: directory must be a non-empty path, got ""/);
    expect(() => fileSystem(undefined as unknown as string)).toThrow(/fileSystem: directory must be a non-empty path, got undefined/);
    expect(() => fileSystem('file://./my-model')).toThrow(
      /fileSystem: directory must be a plain path, got the URL "file:\/\/\.\/my-model"; drop the scheme, e\.g\. fileSystem\('\.\/my-model'\)/,
    );
  });
});
