/**
 * The HTTP transport of {@link ComfyClient}: node:http(s) over a keep-alive agent, with Nagle off.
 * Every job crosses it twice on its critical path (`POST /prompt`, then `/view` of each output),
 * and Node's global fetch (undici behind WHATWG streams) cost several milliseconds more per request
 * than this on a busy machine (see README, Performance). Bodies stay streams both ways.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A request body: whole (Buffer or string) or streamed (chunked unless a length header is set). */
export type ComfyRequestBody = Buffer | string | Readable;

/** An answer whose headers arrived; its body is read once, by one of the methods. */
export interface ComfyAnswer {
  status: number;
  header(name: string): string | null;
  text(): Promise<string>;
  /** The body as a Node stream (errors if the connection breaks or the request is aborted). */
  stream(): Readable;
  /** Throws the body away. */
  discard(): void;
}

/**
 * Idle connections are closed after this long. Well below ComfyUI's (aiohttp's) 75 s and Node's 5 s
 * server keep-alive, so we seldom send on a connection the server is closing; when we do (a reset
 * on a reused connection before any answer), a request with a whole body is sent once more.
 */
const IDLE_MS = 4000;

const agents = {
  'http:': new http.Agent({ keepAlive: true, timeout: IDLE_MS, maxSockets: 32 }),
  'https:': new https.Agent({ keepAlive: true, timeout: IDLE_MS, maxSockets: 32 }),
};

function answerOf(res: IncomingMessage): ComfyAnswer {
  return {
    status: res.statusCode ?? 0,
    header(name) {
      const v = res.headers[name.toLowerCase()];
      if (v === undefined) return null;
      return Array.isArray(v) ? v.join(', ') : v;
    },
    text() {
      return new Promise<string>((resolve, reject) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.once('error', reject);
        // An answer cut short without an error event (the connection closed mid-body).
        res.once('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the whole answer arrived'));
        });
      });
    },
    stream: () => res,
    discard: () => void res.resume(),
  };
}

/** Sends one request; resolves once the answer's headers arrived. */
export function comfyRequest(
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: ComfyRequestBody | undefined,
  signal: AbortSignal,
): Promise<ComfyAnswer> {
  const h: Record<string, string> = { ...headers };
  if (body !== undefined && !(body instanceof Readable) && !hasHeader(h, 'content-length'))
    h['Content-Length'] = String(Buffer.byteLength(body));
  const send = (retry: boolean): Promise<ComfyAnswer> =>
    new Promise<ComfyAnswer>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(url, {
        method,
        headers: h,
        agent: agents[url.protocol as 'http:'],
        signal,
      });
      let answered = false;
      req.once('response', (res) => {
        answered = true;
        resolve(answerOf(res));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // The server closed a kept-alive connection just as we reused it: nothing reached it.
        if (retry && !answered && req.reusedSocket && err.code === 'ECONNRESET' && !signal.aborted)
          send(false).then(resolve, reject);
        else reject(err);
      });
      if (body instanceof Readable) pipeline(body, req).catch(() => undefined);
      else req.end(body);
    });
  return send(body === undefined || !(body instanceof Readable));
}

function hasHeader(h: Record<string, string>, name: string): boolean {
  return Object.keys(h).some((k) => k.toLowerCase() === name);
}
