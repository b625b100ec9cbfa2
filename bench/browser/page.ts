/**
 * The attention sweep of bench/attention_sweep.ts, in a page: `bench.html?
 * backend=webgl&settings=<JSON SweepOptions>` sets the backend through the
 * library's browser initBackend, runs the sweep, and leaves the result in
 * `window.benchResult` for bench/browser/run.ts.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendName } from 'tfjs-lsh-attention/backend';
import { softwareWebGPU } from '../../src/host_reads.js';
import { matMulPeakGflops, runSweep, type SweepOptions, type SweepPoint } from '../attention_sweep.js';
import { runLayerSweep, type LayerPoint, type LayerSweepOptions } from '../layer_sweep.js';
import { runWebGPUBench, type WebGPUBench } from './webgpu.js';

export interface BenchResult {
  description?: string;
  crossOriginIsolated: boolean;
  userAgent: string;
  matMulPeakGflops?: number;
  points?: SweepPoint[];
  /** The whole-layer sweep (tfjs-layers' MultiHeadAttention against the library's layers), when asked for. */
  layers?: { settings: LayerSweepOptions; points: LayerPoint[] };
  /** On webgpu: LSH attention through lshAttentionAsync, and the WGSL kernels against the tf ops they replace. */
  webgpu?: WebGPUBench;
  progress: string[];
  error?: string;
}

declare global {
  interface Window {
    benchResult?: BenchResult;
    benchProgress?: string[];
  }
}

async function main(): Promise<void> {
  const params = new URL(location.href).searchParams;
  const backend = (params.get('backend') ?? 'wasm') as BackendName;
  const settings = JSON.parse(params.get('settings') ?? '{}') as SweepOptions;
  const kernelsOnly = params.get('kernelsOnly') === '1';
  const layerSettings = params.has('layers') ? (JSON.parse(params.get('layers') as string) as LayerSweepOptions) : undefined;
  setWasmPaths(new URL('./', location.href).href);
  const progress: string[] = [];
  window.benchProgress = progress;
  const result: BenchResult = { crossOriginIsolated, userAgent: navigator.userAgent, progress };
  try {
    await initBackend({ backend });
    result.description = describeBackend();
    if (kernelsOnly) {
      // Only the webgpu part (bench/browser/run.ts --webgpu-kernels-only).
      if (backend === 'webgpu') result.webgpu = await runWebGPUBench(settings, (message) => progress.push(message));
      result.points = [];
      await tf.ready();
      window.benchResult = result;
      return;
    }
    result.matMulPeakGflops = await matMulPeakGflops(512, 3);
    // On software WebGPU, lshAttention refuses to run (its synchronous host reads break the device there): full
    // attention in the sweep, LSH attention through lshAttentionAsync below.
    const lshRefused = softwareWebGPU();
    const points = await runSweep({ ...settings, nHashes: lshRefused ? [] : settings.nHashes }, (message) => progress.push(message));
    if (lshRefused) {
      for (const nHashes of settings.nHashes) {
        for (const length of settings.lengths) {
          points.push({ variant: 'lsh', nHashes, length, status: 'failed', reason: 'lshAttention refuses on software WebGPU: see lshAttentionAsync (browser-webgpu-kernels.md)' } as SweepPoint);
        }
      }
    }
    result.points = points;
    if (backend === 'webgpu') result.webgpu = await runWebGPUBench(settings, (message) => progress.push(message));
    if (layerSettings) {
      // On software WebGPU the LSH layer refuses as LSH attention does: the layers' own points say so.
      const layerPoints = await runLayerSweep(lshRefused ? { ...layerSettings, nHashes: [] } : layerSettings, (message) => progress.push(message));
      result.layers = { settings: layerSettings, points: layerPoints };
    }
  } catch (error) {
    result.error = (error as Error).stack ?? String(error);
  }
  await tf.ready();
  window.benchResult = result;
}

void main();
