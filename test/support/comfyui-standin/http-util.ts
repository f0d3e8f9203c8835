/**
 * A very small router and reply helpers that reproduce aiohttp's answers: JSON with
 * `application/json; charset=utf-8`, empty bodies as `application/octet-stream`, the plain-text
 * 404/405/500 pages, and every ComfyUI route reachable both at `/x` and `/api/x`.
 */
import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** A file to stream as the body instead (`size` bytes), as aiohttp's FileResponse does: never read whole. */
  file?: { path: string; size: number };
  /** Runs once the response has been handed to the socket (e.g. "the prompt was accepted"). */
  after?: () => void;
}

export interface RequestCtx {
  req: IncomingMessage;
  url: URL;
  params: Record<string, string>;
  body(): Promise<Buffer>;
  /** `request.json()`: throws on invalid JSON (→ 500, like aiohttp). */
  json(): Promise<unknown>;
}

export type Handler = (ctx: RequestCtx) => Reply | Promise<Reply>;

const SERVER_HEADER = 'Python/3.11 aiohttp/3.8.4 (comfyui-standin)';

export const reply = {
  json(body: unknown, status = 200): Reply {
    return {
      status,
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
      body: JSON.stringify(body),
    };
  },
  /** `web.Response(status=...)`: no body, octet-stream. */
  empty(status = 200): Reply {
    return { status, headers: { 'Content-Type': 'application/octet-stream' }, body: '' };
  },
  text(body: string, status = 200, contentType = 'text/plain; charset=utf-8'): Reply {
    return { status, headers: { 'Content-Type': contentType }, body };
  },
  notFound(): Reply {
    return reply.text('404: Not Found', 404);
  },
  serverError(): Reply {
    return reply.text('500 Internal Server Error\n\nServer got itself in trouble', 500);
  },
};

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

export class Router {
  private readonly routes: Route[] = [];

  /** Registers `path` and, unless `apiAlias` is false, `/api` + `path` (ComfyUI serves both). */
  add(method: string, path: string, handler: Handler, apiAlias = true): void {
    this.routes.push({ method, parts: path.split('/'), handler });
    if (apiAlias) this.routes.push({ method, parts: `/api${path}`.split('/'), handler });
  }

  get(path: string, handler: Handler, apiAlias = true): void {
    this.add('GET', path, handler, apiAlias);
  }

  post(path: string, handler: Handler, apiAlias = true): void {
    this.add('POST', path, handler, apiAlias);
  }

  /** `null`: no such path at all. `'method'`: the path exists with other methods. */
  match(
    method: string,
    pathname: string,
  ): { handler: Handler; params: Record<string, string> } | 'method' | null {
    const parts = pathname.split('/');
    let pathMatched = false;
    for (const route of this.routes) {
      const params = matchParts(route.parts, parts);
      if (!params) continue;
      const wanted = method === 'HEAD' ? 'GET' : method;
      if (route.method === wanted) return { handler: route.handler, params };
      pathMatched = true;
    }
    return pathMatched ? 'method' : null;
  }
}

function matchParts(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const v = parts[i]!;
    if (p.startsWith('{') && p.endsWith('}')) {
      if (v === '') return null;
      params[p.slice(1, -1)] = safeDecode(v);
    } else if (p !== v) {
      return null;
    }
  }
  return params;
}

function safeDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

export function readBody(req: IncomingMessage, limit = 110 * 1024 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function requestCtx(req: IncomingMessage, url: URL, params: Record<string, string>): RequestCtx {
  let cached: Promise<Buffer> | undefined;
  const body = () => (cached ??= readBody(req));
  return {
    req,
    url,
    params,
    body,
    json: async () => JSON.parse((await body()).toString('utf8')) as unknown,
  };
}

export function send(res: ServerResponse, r: Reply, head = false): void {
  if (r.file) return sendFile(res, r, r.file, head);
  const body = typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : (r.body ?? Buffer.alloc(0));
  res.statusCode = r.status;
  res.setHeader('Server', SERVER_HEADER);
  for (const [k, v] of Object.entries(r.headers ?? {})) res.setHeader(k, v);
  if (!res.hasHeader('Content-Type')) res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Content-Length', String(body.length));
  res.end(head ? undefined : body, () => r.after?.());
}

function sendFile(res: ServerResponse, r: Reply, file: { path: string; size: number }, head: boolean): void {
  res.statusCode = r.status;
  res.setHeader('Server', SERVER_HEADER);
  for (const [k, v] of Object.entries(r.headers ?? {})) res.setHeader(k, v);
  res.setHeader('Content-Length', String(file.size));
  if (head) return void res.end(() => r.after?.());
  const stream = createReadStream(file.path, { start: 0, end: Math.max(0, file.size - 1) });
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  res.on('finish', () => r.after?.());
  if (file.size === 0) return void res.end();
  stream.pipe(res);
}

export function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
