/**
 * The test page: `index.html?backend=webgl` registers every backend, sets the
 * one asked for through the library's browser initBackend, runs the cases of
 * cases.ts one after another and leaves the report in `window.testReport`
 * (read by test/browser.test.ts). A backend that cannot be set makes the
 * report carry the reason instead of results.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendName } from 'tfjs-lsh-attention/backend';
import { browserCases } from './cases.js';

export interface CaseResult {
  name: string;
  ok: boolean;
  error?: string;
  ms: number;
}

export interface TestReport {
  backend: string;
  description?: string;
  crossOriginIsolated: boolean;
  backendError?: string;
  results: CaseResult[];
}

declare global {
  interface Window {
    testReport?: TestReport;
  }
}

async function main(): Promise<void> {
  const backend = new URL(location.href).searchParams.get('backend') ?? 'wasm';
  // The .wasm files sit beside this script (test/browser/bundle.ts copies them).
  setWasmPaths(new URL('./', location.href).href);
  const report: TestReport = { backend, crossOriginIsolated, results: [] };
  // Shapes as uniforms: one WebGL program per operation instead of one per shape; SwiftShader compiles each
  // program in software, which otherwise takes most of this page's time. The arithmetic is the same.
  tf.env().set('WEBGL_USE_SHAPES_UNIFORMS', true);
  try {
    const chosen = await initBackend({ backend: backend as BackendName });
    if (chosen !== backend) throw new Error(`initBackend chose ${chosen}`);
    report.description = describeBackend();
  } catch (error) {
    report.backendError = (error as Error).message;
    window.testReport = report;
    return;
  }
  for (const testCase of browserCases()) {
    const start = performance.now();
    try {
      await tf.ready();
      await testCase.run();
      report.results.push({ name: testCase.name, ok: true, ms: performance.now() - start });
    } catch (error) {
      report.results.push({ name: testCase.name, ok: false, error: (error as Error).stack ?? String(error), ms: performance.now() - start });
    }
  }
  window.testReport = report;
}

void main();
