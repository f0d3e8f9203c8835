/**
 * The request plumbing of {@link ComfyClient}: one request under a deadline tied to the caller's
 * signal, failures turned into the client's errors (client-errors.ts), JSON answers checked
 * against a zod schema. Apart from the client so its file transfer (comfy-files.ts) uses the same
 * plumbing without importing the client.
 */
import type { z } from 'zod';
import {
  ComfyHttpError,
  ComfyProtocolError,
  ComfyTimeoutError,
  ComfyUnavailableError,
} from './client-errors.js';
import { comfyRequest, type ComfyAnswer, type ComfyRequestBody } from './comfy-http.js';

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

type Method = 'GET' | 'POST';

/** A request whose answer's headers arrived. `done()` stops its timer. */
export interface ComfyCall {
  res: ComfyAnswer;
  signal: AbortSignal;
  timedOut: () => boolean;
  done: () => void;
}

/** A timeout controller tied to the caller's signal. `clear()` stops the timer. */
function deadline(
  ms: number,
  outer?: AbortSignal,
): { signal: AbortSignal; timedOut: () => boolean; clear: () => void } {
  const ac = new AbortController();
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    ac.abort(new Error(`timeout after ${ms} ms`));
  }, ms);
  const signal = outer ? AbortSignal.any([outer, ac.signal]) : ac.signal;
  return { signal, timedOut: () => fired, clear: () => clearTimeout(timer) };
}

export class ComfyCalls {
  readonly baseUrl: string;
  readonly apiPrefix: string;
  readonly headers: Record<string, string>;
  /** Default per request (until the whole JSON answer, or until the headers of a download). */
  readonly timeoutMs: number;

  constructor(o: { baseUrl: string; apiPrefix: string; headers: Record<string, string>; timeoutMs: number }) {
    this.baseUrl = o.baseUrl;
    this.apiPrefix = o.apiPrefix;
    this.headers = o.headers;
    this.timeoutMs = o.timeoutMs;
  }

  url(path: string, query?: Record<string, string | undefined>): URL {
    const u = new URL(`${this.baseUrl}${this.apiPrefix}${path}`);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, v);
    return u;
  }

  /**
   * Sends one request; resolves with the response once its headers arrived. The returned
   * `done()` stops the timer (call it after reading the body, or hand the body to a stream).
   */
  async send(
    method: Method,
    path: string,
    init: {
      query?: Record<string, string | undefined>;
      json?: unknown;
      body?: ComfyRequestBody;
      headers?: Record<string, string>;
      timeoutMs: number;
      signal?: AbortSignal;
    },
  ): Promise<ComfyCall> {
    const d = deadline(init.timeoutMs, init.signal);
    const headers: Record<string, string> = { ...this.headers, ...init.headers };
    let body = init.body;
    if (init.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    try {
      const res = await comfyRequest(method, this.url(path, init.query), headers, body, d.signal);
      return { res, signal: d.signal, timedOut: d.timedOut, done: d.clear };
    } catch (err) {
      d.clear();
      throw this.failure(method, path, err, d.timedOut(), init.timeoutMs, init.signal);
    }
  }

  failure(
    method: string,
    path: string,
    err: unknown,
    timedOut: boolean,
    timeoutMs: number,
    outer?: AbortSignal,
  ): unknown {
    if (timedOut) return new ComfyTimeoutError(method, path, timeoutMs);
    if (outer?.aborted) return outer.reason;
    return new ComfyUnavailableError(method, path, err);
  }

  async readText(
    method: string,
    path: string,
    call: ComfyCall,
    timeoutMs: number,
    outer?: AbortSignal,
  ): Promise<string> {
    try {
      return await call.res.text();
    } catch (err) {
      throw this.failure(method, path, err, call.timedOut(), timeoutMs, outer);
    } finally {
      call.done();
    }
  }

  /** A JSON request whose 200 answer must match `schema`. */
  async json<S extends z.ZodType>(
    method: Method,
    path: string,
    schema: S,
    opts: RequestOptions & { json?: unknown; query?: Record<string, string | undefined> } = {},
  ): Promise<z.infer<S>> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const call = await this.send(method, path, { ...opts, timeoutMs });
    const text = await this.readText(method, path, call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError(method, path, call.res.status, text);
    return this.parse(method, path, schema, text);
  }

  parse<S extends z.ZodType>(method: string, path: string, schema: S, text: string): z.infer<S> {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new ComfyProtocolError(method, path, `not JSON: ${text.slice(0, 100)}`);
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) throw new ComfyProtocolError(method, path, parsed.error.message.slice(0, 500));
    return parsed.data;
  }

  /** A request answered with an empty 200 (`/queue`, `/interrupt`, `/history` POSTs). */
  async post(path: string, json: unknown, opts: RequestOptions = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const call = await this.send('POST', path, { json, timeoutMs, signal: opts.signal });
    const text = await this.readText('POST', path, call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
  }
}
