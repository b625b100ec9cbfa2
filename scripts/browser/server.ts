/**
 * A static file server for the browser tests, the demo and the browser
 * benchmark: 127.0.0.1 only, on a free port, with the cross-origin isolation
 * headers (COOP/COEP) that let the wasm backend use threads
 * (SharedArrayBuffer) in a page.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.bin': 'application/octet-stream',
  '.map': 'application/json',
};

/** Headers that make a page cross-origin isolated (so `crossOriginIsolated` is true and SharedArrayBuffer exists). */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export interface StaticServer {
  /** e.g. "http://127.0.0.1:41234/" */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves the files under `root`; `mounts` maps a URL prefix ("/wasm/") to
 * another folder. Directories serve their index.html. `isolate: false`
 * leaves out the COOP/COEP headers (to see the page as a plain host would
 * serve it). Default port 0: a free one.
 */
export async function serveStatic(
  root: string,
  options: { mounts?: Record<string, string>; isolate?: boolean; port?: number; host?: string } = {},
): Promise<StaticServer> {
  const mounts = Object.entries(options.mounts ?? {}).sort((a, b) => b[0].length - a[0].length);
  const isolate = options.isolate ?? true;
  const server: Server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    let base = root;
    let rest = path;
    for (const [prefix, folder] of mounts) {
      if (path.startsWith(prefix)) {
        base = folder;
        rest = path.slice(prefix.length - 1);
        break;
      }
    }
    let file = normalize(join(base, rest));
    if (file !== base && !file.startsWith(base.endsWith(sep) ? base : base + sep)) {
      response.writeHead(403).end('outside the served folder');
      return;
    }
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      const size = statSync(file).size;
      response.writeHead(200, {
        'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
        'Content-Length': String(size),
        'Cache-Control': 'no-store',
        ...(isolate ? ISOLATION_HEADERS : {}),
      });
      if (request.method === 'HEAD') response.end();
      else createReadStream(file).pipe(response);
    } catch {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end(`not found: ${path}`);
    }
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://${host}:${port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
