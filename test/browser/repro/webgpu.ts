/**
 * Minimal reproductions of the two WebGPU problems the library works around
 * (for reporting upstream). Open `repro.html?case=transpose` or
 * `?case=canvas-read` in Chromium with --enable-unsafe-webgpu (the browser
 * test does, headless); the outcome lands in `window.reproReport`.
 *
 * transpose: tfjs-backend-webgpu 4.22, `tf.transpose` of an int32 tensor
 *   held on the device, rank 4 (any transpose but 2-D [1, 0]). Its WGSL passes
 *   an i32 element to `setOutputAtIndex(flatIndex : i32, value : f32)`: the
 *   shader does not compile ("type mismatch for argument 2 in call to
 *   'setOutputAtIndex', expected 'f32', got 'i32'"), the command buffer is
 *   invalid, and the result is never written. WGSL has no implicit i32 → f32
 *   conversion, so every conforming WebGPU implementation rejects it: the
 *   bug is tfjs-webgpu's, not the adapter's.
 *
 * canvas-read: plain WebGPU, no tfjs. A buffer is copied into a WebGPU
 *   OffscreenCanvas' texture and the canvas drawn into a 2-D canvas, the path
 *   of tfjs-webgpu's synchronous `dataSync()`. With Chromium 156's software
 *   adapter (SwiftShader, headless) the pixels read back are all zero and the
 *   device is lost afterwards. (Not checked on a hardware adapter: this
 *   machine has no GPU.)
 */
import '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs-core';

export interface ReproReport {
  case: string;
  adapter?: string;
  /** What the reproduction observed. */
  observed: string[];
  /** The values read (transpose: the transposed tensor; canvas-read: the first bytes). */
  values?: number[];
  expected?: number[];
  deviceLost?: string;
}

declare global {
  interface Window {
    reproReport?: ReproReport;
  }
}

interface GPUErrorEventLike {
  error: { message: string };
}

async function transposeCase(report: ReproReport): Promise<void> {
  // Small tensors whose values are on the CPU are computed on the CPU: make everything run on the device.
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  await tf.setBackend('webgpu');
  await tf.ready();
  const device = (tf.backend() as unknown as { device: EventTarget & { lost: Promise<{ message: string }> } }).device;
  device.addEventListener('uncapturederror', (event) => report.observed.push(`uncaptured error: ${(event as unknown as GPUErrorEventLike).error.message.split('\n')[0]}`));
  void device.lost.then((info) => (report.deviceLost = info.message));
  // [1, 1, 2, 3] int32, computed on the device.
  const x = tf.add(tf.tensor4d([1, 2, 3, 4, 5, 6], [1, 1, 2, 3], 'int32'), tf.zeros([1, 1, 2, 3], 'int32'));
  const y = tf.transpose(x, [0, 1, 3, 2]);
  report.expected = [1, 4, 2, 5, 3, 6];
  try {
    report.values = Array.from(await y.data());
  } catch (error) {
    report.observed.push(`reading the result failed: ${(error as Error).message}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
}

async function canvasReadCase(report: ReproReport): Promise<void> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<any> } }).gpu;
  if (gpu === undefined) throw new Error('no navigator.gpu: start Chromium with --enable-unsafe-webgpu');
  const adapter = await gpu.requestAdapter();
  report.adapter = `${adapter.info.vendor} ${adapter.info.architecture}${adapter.info.isFallbackAdapter ? ' (fallback adapter)' : ''}`;
  const device = await adapter.requestDevice();
  void device.lost.then((info: { message: string }) => (report.deviceLost = info.message));
  const bytes = Uint8Array.from({ length: 256 * 4 }, (_, i) => (i * 7 + 3) & 255);
  const usage = globalThis as unknown as { GPUBufferUsage: Record<string, number>; GPUTextureUsage: Record<string, number> };
  const buffer = device.createBuffer({ size: bytes.length, usage: usage.GPUBufferUsage.COPY_SRC | usage.GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, bytes);
  const canvas = new OffscreenCanvas(256, 1);
  const context = canvas.getContext('webgpu') as unknown as { configure(c: object): void; getCurrentTexture(): unknown };
  context.configure({ device, format: 'rgba8unorm', usage: usage.GPUTextureUsage.COPY_DST, alphaMode: 'premultiplied' });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToTexture({ buffer, bytesPerRow: 1024 }, { texture: context.getCurrentTexture() }, { width: 256, height: 1 });
  device.queue.submit([encoder.finish()]);
  const host = new OffscreenCanvas(256, 1).getContext('2d', { willReadFrequently: true })!;
  host.drawImage(canvas, 0, 0);
  report.values = Array.from(host.getImageData(0, 0, 256, 1).data.slice(0, 8));
  report.expected = Array.from(bytes.slice(0, 8));
  await new Promise((resolve) => setTimeout(resolve, 500));
}

async function main(): Promise<void> {
  const which = new URL(location.href).searchParams.get('case') ?? 'transpose';
  const report: ReproReport = { case: which, observed: [] };
  try {
    if (which === 'transpose') await transposeCase(report);
    else await canvasReadCase(report);
  } catch (error) {
    report.observed.push(`error: ${(error as Error).message}`);
  }
  window.reproReport = report;
}

void main();
