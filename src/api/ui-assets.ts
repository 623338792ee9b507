/**
 * The web console's static files at `/ui/` on the client port (kvd --enable-ui, default on).
 *
 * The console is built from ui/ by `npm run build` into dist/console/ (index.html plus
 * content-hashed files under assets/). This handler reads that directory once, when the client
 * listener is built, and keeps every file in memory with its content type, ETag and (from its
 * first gzip request on) its gzip form:
 * the files are small, and every member and front-end then answers from memory without disk I/O.
 *
 * - `/ui` redirects (301) to `/ui/`.
 * - A file that exists is served with its content type; `assets/*` (names carry a content hash)
 *   are cached for a year (`immutable`), everything else is revalidated (`no-cache`, ETag → 304).
 * - Any other path under `/ui/` without a file extension is a client-side route: index.html.
 *   A missing path with an extension is 404, so a stale asset reference fails visibly.
 * - Only GET and HEAD (405 otherwise). With the console off the handler declines every path and the
 *   client port answers Go's `404 page not found`, as for any unknown path.
 *
 * The console talks to the member only through the JSON gateway, like any other client: this
 * handler serves files and nothing else.
 *
 * Bounds: at most {@link UI_FILES_MAX} files and {@link UI_BYTES_MAX} bytes are loaded; a larger
 * directory is a broken build and is refused at start.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BUNDLED } from '../util/bundled.js';

/** Where `npm run build` puts the console (dist/console, beside dist/src). */
export const UI_DIR_DEFAULT = fileURLToPath(new URL(BUNDLED ? '../console/' : '../../console/', import.meta.url));
/** Most files the console directory may hold. */
export const UI_FILES_MAX = 256;
/** Most bytes the console directory may hold. */
export const UI_BYTES_MAX = 32 * 1024 * 1024;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

/**
 * The console may call any member's client URL (the cluster page polls each member's status),
 * so `connect-src` allows http(s) origins; scripts, styles and images come only from here.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

interface Asset {
  readonly body: Buffer;
  /** The gzip form when it is smaller (made at the first request that accepts gzip, then kept). */
  gzip(): Buffer | undefined;
  readonly contentType: string;
  readonly etag: string;
  readonly cacheControl: string;
}

/** Options of {@link createUiHandler}. */
export interface UiHandlerOptions {
  /** --enable-ui: 'off' declines every path (404 from the caller). */
  readonly mode: 'on' | 'off';
  /** The built console; {@link UI_DIR_DEFAULT} unless a test says otherwise. */
  readonly dir?: string;
}

/** Reads every file under `dir` into memory (bounded); undefined when the directory is missing. */
export function loadUiAssets(dir: string): ReadonlyMap<string, Asset> | undefined {
  if (!existsSync(dir)) return undefined;
  const assets = new Map<string, Asset>();
  let bytes = 0;
  const walk = (folder: string): void => {
    for (const name of readdirSync(folder).sort()) {
      const path = join(folder, name);
      if (statSync(path).isDirectory()) {
        walk(path);
        continue;
      }
      const body = readFileSync(path);
      bytes += body.length;
      if (assets.size >= UI_FILES_MAX || bytes > UI_BYTES_MAX) throw new Error(`the web console in ${dir} is larger than ${UI_FILES_MAX} files or ${UI_BYTES_MAX} bytes`);
      const rel = relative(dir, path).split(sep).join('/');
      let gzip: Buffer | 'none' | undefined;
      assets.set(rel, {
        body,
        gzip: () => {
          if (gzip === undefined) {
            const packed = gzipSync(body, { level: 9 });
            gzip = packed.length < body.length ? packed : 'none';
          }
          return gzip === 'none' ? undefined : gzip;
        },
        contentType: CONTENT_TYPES[extname(name)] ?? 'application/octet-stream',
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
        cacheControl: rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
    }
  };
  walk(dir);
  return assets;
}

/**
 * Builds the `/ui/` handler: it returns true when it answered, false for paths it does not
 * serve (everything outside `/ui`, and everything when the console is off).
 */
export function createUiHandler(options: UiHandlerOptions): (request: IncomingMessage, response: ServerResponse) => boolean {
  if (options.mode === 'off') return () => false;
  const assets = loadUiAssets(options.dir ?? UI_DIR_DEFAULT);
  return (request, response) => {
    const url = request.url ?? '/';
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    if (path === '/ui') {
      response.writeHead(301, { Location: `/ui/${queryAt < 0 ? '' : url.slice(queryAt)}`, 'Content-Type': 'text/plain; charset=utf-8' });
      response.end('Moved Permanently\n');
      return true;
    }
    if (!path.startsWith('/ui/')) return false;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      response.end('Method Not Allowed\n');
      return true;
    }
    if (assets === undefined) {
      response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      response.end('kvd: the web console is not built in this installation (npm run build builds it into dist/console)\n');
      return true;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(path.slice('/ui/'.length));
    } catch (error: unknown) {
      void error; // A malformed escape is simply not a file.
      rel = '\0';
    }
    let asset = assets.get(rel === '' ? 'index.html' : rel);
    if (asset === undefined) {
      const last = rel.slice(rel.lastIndexOf('/') + 1);
      // A client-side route (no extension) gets the app; a missing file gets 404.
      if (!last.includes('.') && !rel.startsWith('assets/')) asset = assets.get('index.html');
    }
    if (asset === undefined) {
      response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      response.end('404 page not found\n');
      return true;
    }
    serveAsset(request, response, asset);
    return true;
  };
}

function serveAsset(request: IncomingMessage, response: ServerResponse, asset: Asset): void {
  const headers: Record<string, string | number> = {
    ...SECURITY_HEADERS,
    'Content-Type': asset.contentType,
    'Cache-Control': asset.cacheControl,
    ETag: asset.etag,
    Vary: 'Accept-Encoding',
  };
  if (request.headers['if-none-match'] === asset.etag) {
    response.writeHead(304, headers);
    response.end();
    return;
  }
  const gzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? '')) ? asset.gzip() : undefined;
  const body = gzip ?? asset.body;
  if (gzip !== undefined) headers['Content-Encoding'] = 'gzip';
  headers['Content-Length'] = body.length;
  response.writeHead(200, headers);
  response.end(request.method === 'HEAD' ? undefined : body);
}
