// GENERATED FILE, do not edit.
// The WebAssembly bytes of src/kernels/rotation_bucket.wat, 215 bytes, base64.
// Regenerate after editing the .wat: npm run build:wasm (npx tsx scripts/build-wasm.ts).

export const ROTATION_BUCKET_WASM_BASE64 = [
  'AGFzbQEAAAABCAFgBH9/f38AAwIBAAUDAQABBxACBm1lbW9yeQIAA3J1bgAACqcBAaQBAwJ/A30CfyAAQQBMIAFBAExyBEAPCwNA',
  'IAIqAgAhByAHIQhBACEJQQAhCkEBIQUgAkEEaiECAkADQCAFIAFPDQEgAioCACEGIAYgB14EQCAGIQcgBSEJCyAGIAhdBEAgBiEI',
  'IAUhCgsgAkEEaiECIAVBAWohBQwACwsgAyAJIAogAWogByAIjGAbNgIAIANBBGohAyAEQQFqIQQgBCAASQ0ACws=',
].join('');
