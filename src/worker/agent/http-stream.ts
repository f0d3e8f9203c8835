/**
 * Streaming HTTP to the control plane (output uploads, input downloads) over node:http(s) with a
 * keep-alive agent: bodies flow through with backpressure, never whole in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }),
};

/** An HTTP answer that is not 2xx. `status` 0 means no answer at all (network error). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  /** Worth retrying: no answer, 408, 429 or 5xx. */
  get transient(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

function requestFn(url: URL) {
  return url.protocol === 'https:' ? https.request : http.request;
}

async function readText(res: IncomingMessage, limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    const b = c as Buffer;
    if (size < limit) chunks.push(b.subarray(0, limit - size));
    size += b.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** GET that resolves with the response stream once the headers are in; non-2xx rejects. */
export function getStream(
  url: string,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<IncomingMessage> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = requestFn(u)(
      u,
      { method: 'GET', headers, agent: agents[u.protocol as 'http:'], signal },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(res);
        readText(res).then(
          (body) => reject(new HttpError(status, `GET ${u.pathname} answered HTTP ${status}`, body)),
          () => reject(new HttpError(status, `GET ${u.pathname} answered HTTP ${status}`)),
        );
      },
    );
    req.on('error', (err) =>
      reject(signal?.aborted ? err : new HttpError(0, `GET ${u.pathname} failed: ${err.message}`)),
    );
    req.end();
  });
}

/** Counts and hashes what passes through. */
export class Meter extends Transform {
  size = 0;
  private readonly hash: Hash = createHash('sha256');
  constructor() {
    super({
      transform: (chunk: Buffer, _enc, cb) => {
        this.size += chunk.length;
        this.hash.update(chunk);
        cb(null, chunk);
      },
    });
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * PUT a stream, or bytes in hand; resolves with the parsed JSON answer (or null) and the size and
 * sha256 of what was sent. Non-2xx rejects with {@link HttpError}.
 */
export async function putStream(
  url: string,
  headers: Record<string, string>,
  body: Readable | Buffer,
  signal?: AbortSignal,
): Promise<{ status: number; json: unknown; size: number; sha256: string }> {
  const u = new URL(url);
  const meter = new Meter();
  const inHand = Buffer.isBuffer(body);
  const req = requestFn(u)(u, {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      ...headers,
      ...(inHand ? { 'content-length': String(body.length) } : {}),
    },
    agent: agents[u.protocol as 'http:'],
    signal,
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  let sent: Promise<Error | undefined>;
  if (inHand) {
    // Bytes in hand (an image read from ComfyUI's folder): headers and body in one write, so the
    // server has the whole request at once.
    req.end(body);
    sent = new Promise((resolve) => {
      req.once('finish', () => resolve(undefined));
      req.once('error', (err) => resolve(err));
    });
  } else {
    // Headers go out now, not with the first bytes of the body: the server starts on the request
    // (checks, naming) while the body is still on its way to us.
    req.flushHeaders();
    // A server may answer (e.g. 409) before reading the whole body; the answer matters more.
    sent = pipeline(body, meter, req).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
  }
  let res: IncomingMessage;
  try {
    res = await response;
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new HttpError(0, `PUT ${u.pathname} failed: ${(err as Error).message}`);
  }
  const text = await readText(res);
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    if (!inHand) body.destroy();
    throw new HttpError(status, `PUT ${u.pathname} answered HTTP ${status}`, text);
  }
  const sendError = await sent;
  if (sendError) throw new HttpError(0, `PUT ${u.pathname} failed while sending: ${sendError.message}`);
  if (inHand)
    return {
      status,
      json: parseJson(text),
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    };
  return { status, json: parseJson(text), size: meter.size, sha256: meter.digest() };
}

/**
 * A small JSON request (POST/PUT with a JSON body, or none); resolves with the parsed answer of a
 * 2xx. Non-2xx rejects with {@link HttpError} carrying the body (up to `maxAnswerBytes`).
 */
export async function requestJson(
  method: string,
  url: string,
  headers: Record<string, string>,
  body: unknown,
  opts: { signal?: AbortSignal; maxAnswerBytes?: number } = {},
): Promise<{ status: number; json: unknown }> {
  const u = new URL(url);
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body), 'utf8');
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = requestFn(u)(u, {
      method,
      headers: {
        accept: 'application/json',
        ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        ...headers,
      },
      agent: agents[u.protocol as 'http:'],
      signal: opts.signal,
    });
    req.on('response', resolve);
    req.on('error', (err) =>
      reject(opts.signal?.aborted ? err : new HttpError(0, `${method} ${u.pathname} failed: ${err.message}`)),
    );
    req.end(payload ?? undefined);
  });
  let text: string;
  try {
    text = await readText(res, opts.maxAnswerBytes ?? 8 * 1024 * 1024);
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw new HttpError(0, `${method} ${u.pathname} failed while reading: ${(err as Error).message}`);
  }
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300)
    throw new HttpError(status, `${method} ${u.pathname} answered HTTP ${status}`, text);
  return { status, json: parseJson(text) };
}

/** `a/b c/d.png` → `a/b%20c/d.png`: each segment encoded, slashes kept. */
export function encodePath(path: string): string {
  return path
    .split('/')
    .filter((s) => s !== '')
    .map(encodeURIComponent)
    .join('/');
}

function parseJson(text: string): unknown {
  try {
    return text ? (JSON.parse(text) as unknown) : null;
  } catch {
    return null;
  }
}
