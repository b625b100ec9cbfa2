/**
 * Backend selection in Node (src/backend.ts) and what it shares with the
 * page's build (src/backend_common.ts): option checks, a backend that cannot
 * start here, per-backend memory budgets. The page's build runs in Chromium
 * (test/browser.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { BACKEND_NAMES, BACKEND_PREFERENCE, describeBackend, initBackend, type BackendName } from '../src/backend.js';
import { backendLimitBytes, DEFAULT_LIMIT_BYTES, GPU_LIMIT_BYTES, WASM_HEAP_LIMIT_BYTES } from '../src/memory.js';
import { hostReadable, softwareWebGPU } from '../src/host_reads.js';

describe('initBackend in Node', () => {
  it('knows every backend name, and prefers tensorflow, wasm, cpu', () => {
    expect(BACKEND_NAMES).toEqual(['tensorflow', 'webgpu', 'webgl', 'wasm', 'cpu']);
    expect(BACKEND_PREFERENCE).toEqual(['tensorflow', 'wasm', 'cpu']);
  });

  it('refuses names it does not know and empty lists, saying which names exist', async () => {
    await expect(initBackend({ backend: 'gpu' as BackendName })).rejects.toThrow(/backend names must be among tensorflow, webgpu, webgl, wasm, cpu, got "gpu"/);
    await expect(initBackend({ backend: [] })).rejects.toThrow(/a non-empty list/);
  });

  it('says why a backend cannot be used here (webgl has no WebGL in Node) and falls back to the next in the list', async () => {
    await expect(initBackend({ backend: 'webgl' })).rejects.toThrow(/none of the backends webgl could be used \(webgl: /);
    expect(await initBackend({ backend: ['webgl', 'cpu'] })).toBe('cpu');
    expect(describeBackend()).toMatch(/^cpu \(tfjs 4\./);
    // Nothing here is software WebGPU: every tensor reads back.
    expect(softwareWebGPU()).toBe(false);
    const x = tf.scalar(1);
    expect(hostReadable(x)).toBe(true);
    x.dispose();
  });
});

describe('memory budgets per backend', () => {
  it('wasm: its heap; webgl and webgpu: GPU_LIMIT_BYTES; others: the default', () => {
    expect(backendLimitBytes('wasm')).toBe(WASM_HEAP_LIMIT_BYTES);
    expect(backendLimitBytes('webgl')).toBe(GPU_LIMIT_BYTES);
    expect(backendLimitBytes('webgpu')).toBe(GPU_LIMIT_BYTES);
    expect(backendLimitBytes('cpu')).toBe(DEFAULT_LIMIT_BYTES);
    expect(GPU_LIMIT_BYTES).toBeLessThan(WASM_HEAP_LIMIT_BYTES);
  });
});
