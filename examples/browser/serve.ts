/**
 * `npm run demo`: builds the demo page (examples/browser/) into
 * examples/browser/dist/ and serves it on 127.0.0.1 with the COOP/COEP
 * headers (so the wasm backend can use threads), printing its URL. PORT=8080
 * picks the port (default 8080, or a free one if taken). Ctrl-C stops it.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveStatic } from '../../scripts/browser/server.js';
import { buildDemo } from './build.js';

const outDir = join(dirname(fileURLToPath(import.meta.url)), 'dist');
await buildDemo(outDir);
const port = Number(process.env.PORT ?? 8080);
const server = await serveStatic(outDir, { port }).catch(() => serveStatic(outDir));
console.log(`The demo page is at ${server.url} (open it in Chrome or Chromium; Ctrl-C stops the server)`);
