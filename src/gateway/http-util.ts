import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RouteHandlerMethod,
  RouteShorthandOptions,
} from 'fastify';
import { Transform, type Readable } from 'node:stream';
import { AppError } from '../errors.js';
import { parseJsonBounded } from '../http/json-depth.js';

type Method = 'GET' | 'POST' | 'DELETE' | 'PATCH' | 'PUT';

/**
 * The body limit of the gateway's control routes (queue, history, interrupt, cancel, ...): their
 * bodies are a few ids at most. Routes that take more say so (prompt: BODY_LIMIT, settings:
 * SETTINGS_LIMIT, userdata: USERDATA_LIMIT; uploads are multipart with UPLOAD_LIMIT).
 */
export const CONTROL_BODY_LIMIT = 256 * 1024;

/**
 * Registers a route the way ComfyUI exposes it: both as `/x` and as `/api/x` (ComfyUI adds the
 * `/api` prefix to every route so a dev server can proxy them). Bodies are limited to
 * {@link CONTROL_BODY_LIMIT} unless `opts.bodyLimit` says otherwise.
 */
export function both(
  app: FastifyInstance,
  method: Method,
  path: string,
  handler: RouteHandlerMethod,
  opts: RouteShorthandOptions = {},
): void {
  const o = { bodyLimit: CONTROL_BODY_LIMIT, ...opts };
  app.route({ ...o, method, url: path, handler });
  app.route({ ...o, method, url: `/api${path}`, handler });
}

/** The raw body bytes (the gateway's content-type parsers hand every body over as a Buffer). */
export function rawBody(request: FastifyRequest): Buffer {
  const b = request.body;
  if (Buffer.isBuffer(b)) return b;
  if (b === undefined || b === null) return Buffer.alloc(0);
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  return Buffer.from(JSON.stringify(b), 'utf8');
}

const ignore = () => {};

/**
 * The request body as a stream that fails with PAYLOAD_TOO_LARGE once it passes `limit` bytes
 * (at once when Content-Length says so), for routes that stream their body to a file instead of
 * buffering it. Its errors always have a listener; the consumer sees them through the stream.
 */
export function meteredBody(request: FastifyRequest, limit: number, what: string): Readable {
  const tooLarge = () =>
    new AppError('PAYLOAD_TOO_LARGE', `The body is larger than ${what} (${limit} bytes).`);
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  let seen = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > limit) cb(tooLarge());
      else cb(null, chunk);
    },
  });
  meter.on('error', ignore);
  // Not pipeline(): it would destroy the request, and with it the socket the error answer needs.
  // Past the limit the rest of the body stays unread; the caller closes the connection after
  // answering (see {@link closeAfterReply}).
  const req = request.raw;
  req.on('error', (err) => meter.destroy(err));
  req.on('close', () => {
    if (!req.complete) meter.destroy(new AppError('BAD_REQUEST', 'The request was aborted.'));
  });
  req.pipe(meter);
  return meter;
}

/** Ends the connection after this answer (a body was left unread, so it cannot be reused). */
export function closeAfterReply(reply: FastifyReply): void {
  if (!reply.sent) reply.header('connection', 'close');
}

/**
 * The body parsed as JSON whatever its Content-Type, as aiohttp's `request.json()` does (clients
 * such as the ComfyUI frontend send JSON as text/plain). `undefined` for an empty body.
 */
export function jsonBody(request: FastifyRequest): unknown {
  const buf = rawBody(request);
  const text = buf.toString('utf8').trim();
  if (text === '') return undefined;
  return parseJsonBounded(text);
}

/** Like {@link jsonBody}, but an empty or malformed body counts as `{}` (ComfyUI's /interrupt). */
export function jsonBodyOrEmpty(request: FastifyRequest): unknown {
  try {
    return jsonBody(request) ?? {};
  } catch {
    return {};
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** ComfyUI's bare `web.Response(status=200)`: no body. */
export function emptyOk(reply: FastifyReply, status = 200): FastifyReply {
  return reply.status(status).type('application/octet-stream').send('');
}

/** A `text/plain` answer, as ComfyUI gives for userdata errors ("Directory not found", ...). */
export function textReply(reply: FastifyReply, status: number, text: string): FastifyReply {
  return reply.status(status).type('text/plain; charset=utf-8').send(text);
}

/** The error body ComfyUI's `POST /prompt` uses, which its frontend shows as `message: details`. */
export function comfyPromptError(
  type: string,
  message: string,
  details: string,
  extra: Record<string, unknown> = {},
) {
  return { error: { type, message, details, extra_info: extra }, node_errors: {} };
}

/** Python's `urllib.parse.unquote`: decodes %XX sequences, leaves malformed ones as they are. */
export function pyUnquote(s: string): string {
  const bytes: number[] = [];
  const out: string[] = [];
  const flush = () => {
    if (bytes.length) {
      out.push(Buffer.from(bytes).toString('utf8'));
      bytes.length = 0;
    }
  };
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%' && i + 2 < s.length && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      flush();
      out.push(c);
    }
  }
  flush();
  return out.join('');
}

/** A query parameter as one string (first value when repeated), or undefined. */
export function q(request: FastifyRequest, name: string): string | undefined {
  const v = (request.query as Record<string, unknown> | undefined)?.[name];
  if (Array.isArray(v)) return typeof v[0] === 'string' ? v[0] : undefined;
  return typeof v === 'string' ? v : undefined;
}

/** The `:user` of the route (validated by the access hook before any handler runs). */
export function userOf(request: FastifyRequest): string {
  return (request.params as { user: string }).user;
}
