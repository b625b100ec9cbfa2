/**
 * Saving and loading models on the file system in Node without tfjs-node
 * (whose `file://` handler is the usual way, but which does not install
 * everywhere). Writes the same two files tfjs-node does: `model.json` and
 * `weights.bin`, and adds checksums to model.json (`sha256`: one of
 * model.json's own content, one per weights file), so a model whose files
 * were corrupted or changed after saving is refused instead of loading wrong
 * numbers. Files without them (saved by tfjs-node) load unchecked.
 *
 * ```ts
 * import { fileSystem } from 'tfjs-lsh-attention/node';
 * await model.save(fileSystem('./my-model'));
 * const again = await tf.loadLayersModel(fileSystem('./my-model'));
 * ```
 *
 * Loading checks everything tfjs would otherwise trip over later, or not at
 * all: model.json must parse and hold `modelTopology` and a well-typed
 * `weightsManifest`; weight paths must stay inside the model's folder (no
 * `..`, no absolute paths, no symlinks leading out); each group's files must
 * hold exactly the bytes its weights need; checksums, when present, must
 * match (delete `sha256` from model.json to load a file edited on purpose). Every error names the file, what was expected and what was found.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

const MODEL_FILE = 'model.json';
const WEIGHTS_FILE = 'weights.bin';
const WEIGHTS_PATH = `./${WEIGHTS_FILE}`;

/** Bytes per value of each weight dtype a manifest may hold (tfjs's own table, without 'string'). */
const BYTES_PER_VALUE: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8 };
/** Bytes per stored value of a quantized weight. */
const BYTES_PER_QUANTIZED_VALUE: Readonly<Record<string, number>> = { uint8: 1, uint16: 2, float16: 2 };

/** Checksums `save` adds to model.json (hex SHA-256). */
export interface FileSystemChecksums {
  /** Of JSON.stringify(model.json without this `sha256` field). */
  modelJSON: string;
  /** Of each weights file, by its path in the manifest. */
  files: Record<string, string>;
}

/** model.json as `save` writes it: tfjs's fields plus {@link FileSystemChecksums}. */
export interface FileSystemModelJSON extends tf.io.ModelJSON {
  sha256?: FileSystemChecksums;
}

/**
 * An IOHandler that saves to and loads from a directory.
 *
 * @param directory a plain path (not a `file://` URL) to the folder where
 *   `model.json` and `weights.bin` go (created, with its parents, on save).
 */
export function fileSystem(directory: string): tf.io.IOHandler {
  if (typeof directory !== 'string' || directory === '') {
    throw new Error(`fileSystem: directory must be a non-empty path, got ${JSON.stringify(directory)}`);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(directory)) {
    throw new Error(
      `fileSystem: directory must be a plain path, got the URL ${JSON.stringify(directory)}; ` +
        `drop the scheme, e.g. fileSystem('${directory.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '')}')`,
    );
  }
  return {
    save: (artifacts) => saveModel(resolve(directory), artifacts),
    load: () => loadModel(resolve(directory)),
  };
}

async function saveModel(folder: string, artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
  if (artifacts.modelTopology instanceof ArrayBuffer) {
    throw new Error('fileSystem: binary model topologies are not supported; save a LayersModel');
  }
  try {
    await mkdir(folder, { recursive: true });
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new Error(
        `fileSystem: cannot save to ${folder}: it (or a folder above it) is a file, not a folder; pass a folder path (it is created if missing)`,
      );
    }
    throw new Error(`fileSystem: cannot create the folder ${folder} (${describeError(error)}); check the path and its permissions`);
  }
  const weightData = artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
  const weightBytes = new Uint8Array(weightData);
  const modelJSON: FileSystemModelJSON = {
    modelTopology: artifacts.modelTopology as object,
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy,
    weightsManifest: [{ paths: [WEIGHTS_PATH], weights: artifacts.weightSpecs ?? [] }],
  };
  if (artifacts.trainingConfig !== undefined) modelJSON.trainingConfig = artifacts.trainingConfig;
  if (artifacts.userDefinedMetadata !== undefined) modelJSON.userDefinedMetadata = artifacts.userDefinedMetadata;
  modelJSON.sha256 = { modelJSON: sha256(JSON.stringify(modelJSON)), files: { [WEIGHTS_PATH]: sha256(weightBytes) } };
  // Weights first, model.json last, each written whole and renamed into place: a save that
  // stops half-way leaves the previous model.json (or none), never one naming missing weights.
  await writeWhole(join(folder, WEIGHTS_FILE), weightBytes);
  await writeWhole(join(folder, MODEL_FILE), JSON.stringify(modelJSON));
  return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
}

async function writeWhole(path: string, data: Uint8Array | string): Promise<void> {
  const partial = `${path}.partial`;
  try {
    await writeFile(partial, data);
    await rename(partial, path);
  } catch (error) {
    await rm(partial, { force: true }).catch(() => undefined);
    throw new Error(`fileSystem: cannot write ${path} (${describeError(error)}); check the folder's permissions and free space`);
  }
}

async function loadModel(folder: string): Promise<tf.io.ModelArtifacts> {
  const modelPath = join(folder, MODEL_FILE);
  let root: string;
  try {
    root = await realpath(folder);
  } catch {
    throw new Error(`fileSystem: no model at ${modelPath} (the folder does not exist); save one there first with model.save(fileSystem(dir))`);
  }
  const text = (await readInside(root, MODEL_FILE, modelPath, 'model')).toString('utf8');
  const modelJSON = parseModelJSON(modelPath, text);
  const groups = checkManifest(modelPath, root, modelJSON.weightsManifest);
  const checksums = checkChecksums(modelPath, modelJSON, groups);
  return tf.io.getModelArtifactsForJSON(modelJSON, async () => {
    const specs: tf.io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of groups) {
      specs.push(...group.weights);
      const files: { path: string; file: string; bytes: Buffer }[] = [];
      for (const path of group.paths) {
        const file = join(folder, path);
        files.push({ path, file, bytes: await readInside(root, path, file, 'weights') });
      }
      const found = files.reduce((sum, f) => sum + f.bytes.byteLength, 0);
      if (found !== group.bytes) {
        const which = files.length === 1 ? `${files[0].file} has` : `${files.map((f) => f.file).join(' + ')} have`;
        throw new Error(
          `fileSystem: ${which} ${found} bytes, model.json's weightsManifest needs ${group.bytes} ` +
            `(the file is ${found < group.bytes ? 'truncated' : 'too long'} or from another model); save the model again`,
        );
      }
      for (const { path, file, bytes } of files) {
        const expected = checksums?.files[path];
        if (expected !== undefined && sha256(bytes) !== expected.toLowerCase()) {
          throw new Error(
            `fileSystem: ${file} does not match its SHA-256 in model.json (sha256.files[${JSON.stringify(path)}]): ` +
              'the file was changed or corrupted after saving, or belongs to another model; save the model again',
          );
        }
        buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
      }
    }
    return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
  });
}

/**
 * Reads `path` (relative to the model folder `root`, already a real path),
 * refusing anything that resolves outside the folder, through `..`, an
 * absolute path or a symlink.
 */
async function readInside(root: string, path: string, shown: string, kind: 'model' | 'weights'): Promise<Buffer> {
  const target = resolve(root, path);
  if (!isInside(root, target)) {
    throw new Error(`fileSystem: ${JSON.stringify(path)} leaves the model's folder ${root}; weight paths must stay in the folder`);
  }
  let real: string;
  try {
    real = await realpath(target);
  } catch (error) {
    if (kind === 'model' && errorCode(error) === 'ENOENT') {
      throw new Error(`fileSystem: no model at ${shown}; save one there first with model.save(fileSystem(dir))`);
    }
    if (errorCode(error) === 'ENOENT') {
      throw new Error(
        `fileSystem: ${shown} is missing; model.json's weightsManifest lists it: copy the whole model folder or save the model again`,
      );
    }
    throw new Error(`fileSystem: cannot read ${shown} (${describeError(error)})`);
  }
  if (!isInside(root, real)) {
    throw new Error(
      `fileSystem: ${shown} is a symlink to ${real}, outside the model's folder ${root}; ` +
        'copy the file into the folder instead of linking it',
    );
  }
  try {
    return await readFile(real);
  } catch (error) {
    if (errorCode(error) === 'EISDIR') throw new Error(`fileSystem: ${shown} is a folder, not a file; remove it and save the model again`);
    throw new Error(`fileSystem: cannot read ${shown} (${describeError(error)})`);
  }
}

function isInside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

function parseModelJSON(modelPath: string, text: string): FileSystemModelJSON {
  if (text.trim() === '') {
    throw new Error(`fileSystem: ${modelPath} is empty (the save was interrupted or the file was truncated); save the model again`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(' in JSON', '') : String(error);
    throw new Error(`fileSystem: ${modelPath} is not valid JSON (truncated? ${reason}); save the model again`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(
      `fileSystem: ${modelPath} must hold an object { modelTopology, weightsManifest, … }, got ${describe(parsed)}; ` +
        'it is not a saved model: save the model again',
    );
  }
  const json = parsed as Record<string, unknown>;
  const topology = json.modelTopology;
  if (topology === null || typeof topology !== 'object' || Array.isArray(topology)) {
    throw new Error(
      `fileSystem: ${modelPath} must have a modelTopology object (the layers), got ${describe(topology)}; ` +
        'the file is incomplete or edited: save the model again',
    );
  }
  if (json.weightsManifest === undefined) {
    // tfjs would build the model with fresh random weights and say nothing.
    throw new Error(
      `fileSystem: ${modelPath} has no weightsManifest (the list of weights files), so the model would load with random weights; ` +
        'the file is incomplete or edited: save the model again',
    );
  }
  return json as unknown as FileSystemModelJSON;
}

interface CheckedGroup {
  paths: string[];
  weights: tf.io.WeightsManifestEntry[];
  /** Bytes the group's weights take, all its files together. */
  bytes: number;
}

/** Checks the types in weightsManifest and works out the bytes each group needs. */
function checkManifest(modelPath: string, folder: string, manifest: unknown): CheckedGroup[] {
  const where = `${modelPath}: weightsManifest`;
  const fail = (what: string, expected: string, got: unknown): never => {
    throw new Error(`fileSystem: ${where}${what} must be ${expected}, got ${describe(got)}; the file is edited or corrupted: save the model again`);
  };
  if (!Array.isArray(manifest)) fail('', 'an array of { paths, weights } groups', manifest);
  const names = new Set<string>();
  return (manifest as unknown[]).map((group, g) => {
    if (group === null || typeof group !== 'object' || Array.isArray(group)) fail(`[${g}]`, 'an object { paths, weights }', group);
    const { paths, weights } = group as { paths?: unknown; weights?: unknown };
    if (!Array.isArray(paths) || paths.length === 0) fail(`[${g}].paths`, 'a non-empty array of file names', paths);
    (paths as unknown[]).forEach((path, i) => {
      if (typeof path !== 'string' || path === '') fail(`[${g}].paths[${i}]`, 'a file name', path);
      if (isAbsolute(path as string) || !isInside(folder, resolve(folder, path as string))) {
        throw new Error(
          `fileSystem: ${where}[${g}].paths[${i}] is ${JSON.stringify(path)}, which leaves the model's folder ${folder}; ` +
            `weight paths must be relative and stay in the folder (like "${WEIGHTS_PATH}"): fix model.json or save the model again`,
        );
      }
    });
    if (!Array.isArray(weights)) fail(`[${g}].weights`, 'an array of { name, shape, dtype }', weights);
    let bytes = 0;
    (weights as unknown[]).forEach((spec, i) => {
      const at = `[${g}].weights[${i}]`;
      if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) fail(at, 'an object { name, shape, dtype }', spec);
      const { name, shape, dtype, quantization } = spec as Record<string, unknown>;
      if (typeof name !== 'string' || name === '') fail(`${at}.name`, 'a non-empty string', name);
      if (names.has(name as string)) fail(`${at}.name`, 'unique', name);
      names.add(name as string);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
        fail(`${at}.shape`, 'an array of non-negative integers', shape);
      }
      if (typeof dtype !== 'string' || !(dtype in BYTES_PER_VALUE)) {
        fail(`${at}.dtype`, `one of ${Object.keys(BYTES_PER_VALUE).join(', ')}`, dtype);
      }
      let perValue = BYTES_PER_VALUE[dtype as string];
      if (quantization !== undefined) {
        const q = quantization as { dtype?: unknown } | null;
        if (q === null || typeof q !== 'object' || typeof q.dtype !== 'string' || !(q.dtype in BYTES_PER_QUANTIZED_VALUE)) {
          fail(`${at}.quantization`, `an object with dtype ${Object.keys(BYTES_PER_QUANTIZED_VALUE).join(', ')}`, q?.dtype ?? q);
        }
        perValue = BYTES_PER_QUANTIZED_VALUE[(q as { dtype: string }).dtype];
      }
      bytes += (shape as number[]).reduce((a, b) => a * b, 1) * perValue;
    });
    return { paths: paths as string[], weights: weights as tf.io.WeightsManifestEntry[], bytes };
  });
}

/**
 * Checks model.json's checksums, when it has them (files saved by tfjs-node
 * do not): their types, one per weights file, and model.json's own.
 * @returns the weights files' checksums, or undefined.
 */
function checkChecksums(modelPath: string, modelJSON: FileSystemModelJSON, groups: CheckedGroup[]): FileSystemChecksums | undefined {
  const checksums: unknown = modelJSON.sha256;
  if (checksums === undefined) return undefined;
  const isHex = (value: unknown): value is string => typeof value === 'string' && /^[0-9a-f]{64}$/i.test(value);
  const fail = (what: string, expected: string, got: unknown): never => {
    throw new Error(
      `fileSystem: ${modelPath}: sha256${what} must be ${expected}, got ${describe(got)}; ` +
        'the file was edited: save the model again (or delete sha256 from model.json to load it unchecked)',
    );
  };
  if (checksums === null || typeof checksums !== 'object' || Array.isArray(checksums)) {
    fail('', 'an object { modelJSON, files }', checksums);
  }
  const { modelJSON: own, files } = checksums as { modelJSON?: unknown; files?: unknown };
  if (!isHex(own)) fail('.modelJSON', 'a hex SHA-256 (64 digits)', own);
  if (files === null || typeof files !== 'object' || Array.isArray(files)) fail('.files', 'an object { path: hex SHA-256 }', files);
  for (const group of groups) {
    for (const path of group.paths) {
      const value = Object.hasOwn(files as object, path) ? (files as Record<string, unknown>)[path] : undefined;
      if (!isHex(value)) fail(`.files[${JSON.stringify(path)}]`, 'a hex SHA-256 (64 digits)', value);
    }
  }
  const { sha256: _ignored, ...content } = modelJSON;
  if (sha256(JSON.stringify(content)) !== (own as string).toLowerCase()) {
    throw new Error(
      `fileSystem: ${modelPath} does not match its own checksum (sha256.modelJSON): the file was changed or corrupted ` +
        'after saving; save the model again (or delete sha256 from model.json to load it unchecked)',
    );
  }
  return checksums as FileSystemChecksums;
}

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

function describeError(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  return code !== undefined && !message.startsWith(code) ? `${code}: ${message}` : message;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'string') return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}
