/**
 * Saving and loading models on the file system in Node without tfjs-node
 * (whose `file://` handler is the usual way, but which does not install
 * everywhere). Writes the same two files tfjs-node does: `model.json` and
 * `weights.bin`.
 *
 * ```ts
 * import { fileSystem } from 'tfjs-lsh-attention/node';
 * await model.save(fileSystem('./my-model'));
 * const again = await tf.loadLayersModel(fileSystem('./my-model'));
 * ```
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

const MODEL_FILE = 'model.json';
const WEIGHTS_FILE = 'weights.bin';

/**
 * An IOHandler that saves to and loads from a directory.
 *
 * @param directory where `model.json` and `weights.bin` go (created if missing).
 */
export function fileSystem(directory: string): tf.io.IOHandler {
  if (typeof directory !== 'string' || directory === '') {
    throw new Error(`fileSystem: directory must be a non-empty path, got ${JSON.stringify(directory)}`);
  }
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new Error('fileSystem: binary model topologies are not supported; save a LayersModel');
      }
      await mkdir(directory, { recursive: true });
      const weightData = artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const modelJSON: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [`./${WEIGHTS_FILE}`], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.trainingConfig !== undefined) modelJSON.trainingConfig = artifacts.trainingConfig;
      if (artifacts.userDefinedMetadata !== undefined) modelJSON.userDefinedMetadata = artifacts.userDefinedMetadata;
      await writeFile(join(directory, MODEL_FILE), JSON.stringify(modelJSON));
      await writeFile(join(directory, WEIGHTS_FILE), new Uint8Array(weightData));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const modelPath = join(directory, MODEL_FILE);
      let text: string;
      try {
        text = await readFile(modelPath, 'utf8');
      } catch {
        throw new Error(`fileSystem: no model at ${modelPath}; save one there first with model.save(fileSystem(dir))`);
      }
      const modelJSON = JSON.parse(text) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const path of group.paths) {
            const bytes = await readFile(join(directory, path));
            buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
          }
        }
        return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
      });
    },
  };
}
