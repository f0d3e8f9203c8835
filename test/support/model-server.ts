/**
 * A local HTTP server that serves generated "model files" the way Hugging Face and CDNs do
 * (Content-Length, strong ETag, `Range` → 206 with Content-Range, `If-Range`), with modes that
 * misbehave on purpose, for the model download tests:
 * - `cut`: the first full request sends half the bytes and then drops the connection (resume);
 * - `wrong`: the bytes served differ from the file's (checksum refusal);
 * - `slow`: sends in small pieces with pauses (progress, cancel);
 * Unknown paths answer 404. Every request is recorded (path, Range, Authorization).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ServeMode = 'normal' | 'cut' | 'wrong' | 'slow';

export interface ServedFile {
  bytes: Buffer;
  sha256: string;
  mode: ServeMode;
  /** `cut` only once: later requests are served properly. */
  cutDone: boolean;
}

export interface ModelServer {
  url: string;
  /** Adds a file of `size` random bytes at `path` (e.g. `/org/repo/resolve/main/x.safetensors`). */
  add(path: string, size: number, mode?: ServeMode): ServedFile;
  /** `path` answers 302 to `location` (e.g. another server, as Hugging Face sends to its CDN). */
  redirect(path: string, location: string): void;
  requests: { path: string; range: string | null; authorization: string | null }[];
  close(): Promise<void>;
}

export async function startModelServer(
  opts: { slowChunk?: number; slowPauseMs?: number } = {},
): Promise<ModelServer> {
  const files = new Map<string, ServedFile>();
  const redirects = new Map<string, string>();
  const requests: ModelServer['requests'] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const range = req.headers.range ?? null;
    requests.push({ path, range, authorization: req.headers.authorization ?? null });
    const to = redirects.get(path);
    if (to) {
      res.writeHead(302, { location: to }).end();
      return;
    }
    const f = files.get(path);
    if (!f || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
      return;
    }
    const etag = `"${f.sha256.slice(0, 16)}"`;
    let body = f.mode === 'wrong' ? Buffer.from(f.bytes.map((b) => b ^ 0x5a)) : f.bytes;
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(range ?? '');
    const ifRange = req.headers['if-range'];
    const headers: Record<string, string> = {
      etag,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (m && (!ifRange || ifRange === etag)) {
      start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      res.writeHead(206, { ...headers, 'content-length': String(body.length) });
    } else {
      res.writeHead(200, { ...headers, 'content-length': String(body.length) });
    }
    if (req.method === 'HEAD') return void res.end();
    if (f.mode === 'cut' && !f.cutDone && start === 0) {
      f.cutDone = true;
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => {
        // Let the half arrive, then drop the connection mid-body.
        setTimeout(() => req.socket.destroy(), 50);
      });
      return;
    }
    if (f.mode === 'slow') {
      const chunk = opts.slowChunk ?? 4096;
      const pause = opts.slowPauseMs ?? 20;
      let at = 0;
      const next = () => {
        if (res.destroyed) return;
        if (at >= body.length) return void res.end();
        res.write(body.subarray(at, at + chunk));
        at += chunk;
        setTimeout(next, pause);
      };
      next();
      return;
    }
    res.end(body);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    add(path, size, mode = 'normal') {
      const bytes = randomBytes(size);
      const f: ServedFile = {
        bytes,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        mode,
        cutDone: false,
      };
      files.set(path, f);
      return f;
    },
    redirect(path, location) {
      redirects.set(path, location);
    },
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
