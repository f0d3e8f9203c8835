/**
 * A worker agent's client for its one ComfyUI: the HTTP API (typed by `protocol.ts`, every request
 * under a timeout), streaming file transfer in both directions, and the WebSocket
 * ({@link ComfySocket}). Paths use ComfyUI's `/api` prefix (ComfyUI serves every route with and
 * without it); the WebSocket is `/ws?clientId=<clientId>`.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import type { z } from 'zod';
import {
  ComfyHttpError,
  ComfyPromptError,
  ComfyProtocolError,
  ComfyTimeoutError,
  ComfyUnavailableError,
} from './client-errors.js';
import { comfyRequest, type ComfyAnswer, type ComfyRequestBody } from './comfy-http.js';
import { ComfySocket, type ComfySocketOptions } from './comfy-socket.js';
import { outcomeFromHistory, type PromptOutcome } from './prompt-outcome.js';
import {
  HistorySchema,
  PromptErrorBodySchema,
  QueueInfoSchema,
  QueuePromptResponseSchema,
  QueueSchema,
  StringListSchema,
  SystemStatsSchema,
  UploadResponseSchema,
  parseObjectInfo,
  type PromptInput,
  type History,
  type ObjectInfo,
  type QueueInfo,
  type QueuePromptRequest,
  type QueuePromptResponse,
  type QueueState,
  type SystemStats,
  type UploadResponse,
} from './protocol.js';

export interface ComfyClientOptions {
  /** ComfyUI's base URL, e.g. `http://127.0.0.1:8188` (a path prefix is kept). */
  baseUrl: string;
  /** Our client id: sent with every prompt and used for the WebSocket. */
  clientId: string;
  /** Per request (until the whole JSON answer, or until the headers of a download). Default 30 s. */
  timeoutMs?: number;
  /** `/object_info` can take long on a cold start with many custom nodes. Default 120 s. */
  objectInfoTimeoutMs?: number;
  /** Whole upload, body included. Default 10 min. */
  uploadTimeoutMs?: number;
  /** Route prefix. Default `/api`; `''` for the bare routes. */
  apiPrefix?: string;
  /** Extra headers for every request and the WebSocket handshake (e.g. a proxy's auth). */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface QueuePromptOptions extends RequestOptions {
  /** Our id for the prompt (ComfyUI's `prompt_id`); ComfyUI makes a UUID when absent. */
  promptId?: string;
  /** Put the prompt first in ComfyUI's queue. */
  front?: boolean;
  /** ComfyUI `extra_data` (`extra_pnginfo`, ...); `client_id` is ours. */
  extraData?: Record<string, unknown>;
  partialExecutionTargets?: string[];
}

export interface FileRefInput {
  filename: string;
  subfolder?: string;
  /** `output` (default), `input` or `temp`. */
  type?: string;
}

export interface ViewOptions extends RequestOptions {
  /** ComfyUI's `preview` query (`webp;90`, `jpeg;80`): a re-encoded preview instead of the file. */
  preview?: string;
  channel?: 'rgba' | 'rgb' | 'a';
  /** Longest pause between two chunks of the body. Default: the request timeout. */
  idleTimeoutMs?: number;
}

/** A `/view` download: a Node Readable with the answer's headers. */
export class ComfyFileStream extends PassThrough {
  contentType: string | null = null;
  /** From `Content-Length`; null when ComfyUI streamed without one. */
  contentLength: number | null = null;
}

export interface UploadOptions extends RequestOptions {
  filename: string;
  subfolder?: string;
  /** Replace a same-named file. ComfyUI otherwise keeps identical bytes' name or renames `x (1).png`. */
  overwrite?: boolean;
  /** ComfyUI's upload `type`: `input` (default), `temp` or `output`. */
  type?: 'input' | 'temp' | 'output';
  /** Byte count of a stream, for a Content-Length header (otherwise chunked). */
  size?: number;
  contentType?: string;
}

export type ReadyState =
  { ready: true; systemStats: SystemStats; nodeCount: number } | { ready: false; reason: string };

type Method = 'GET' | 'POST';

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

/** Closes the file stream with a timeout error when no chunk arrives for `ms`. */
class IdleTimeout extends Transform {
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly ms: number,
    private readonly onIdle: () => Error,
  ) {
    super();
    this.arm();
  }
  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.destroy(this.onIdle()), this.ms);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.arm();
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    clearTimeout(this.timer);
    cb();
  }
  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    clearTimeout(this.timer);
    cb(err);
  }
}

function quoteHeaderValue(s: string): string {
  return s.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

export class ComfyClient {
  readonly baseUrl: string;
  readonly clientId: string;
  private readonly timeoutMs: number;
  private readonly objectInfoTimeoutMs: number;
  private readonly uploadTimeoutMs: number;
  private readonly apiPrefix: string;
  private readonly headers: Record<string, string>;

  constructor(options: ComfyClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.clientId = options.clientId;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.objectInfoTimeoutMs = options.objectInfoTimeoutMs ?? 120_000;
    this.uploadTimeoutMs = options.uploadTimeoutMs ?? 600_000;
    this.apiPrefix = options.apiPrefix ?? '/api';
    this.headers = options.headers ?? {};
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing

  private url(path: string, query?: Record<string, string | undefined>): URL {
    const u = new URL(`${this.baseUrl}${this.apiPrefix}${path}`);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, v);
    return u;
  }

  /**
   * Sends one request; resolves with the response once its headers arrived. The returned
   * `done()` stops the timer (call it after reading the body, or hand the body to a stream).
   */
  private async send(
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
  ): Promise<{ res: ComfyAnswer; signal: AbortSignal; timedOut: () => boolean; done: () => void }> {
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

  private failure(
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

  private async readText(
    method: string,
    path: string,
    call: Awaited<ReturnType<ComfyClient['send']>>,
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
  private async json<S extends z.ZodType>(
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

  private parse<S extends z.ZodType>(method: string, path: string, schema: S, text: string): z.infer<S> {
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
  private async post(path: string, json: unknown, opts: RequestOptions = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const call = await this.send('POST', path, { json, timeoutMs, signal: opts.signal });
    const text = await this.readText('POST', path, call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
  }

  // -------------------------------------------------------------------------------------------
  // Information

  systemStats(opts: RequestOptions = {}): Promise<SystemStats> {
    return this.json('GET', '/system_stats', SystemStatsSchema, opts);
  }

  /**
   * `/object_info`, node by node: definitions that do not parse (odd custom nodes) are left out
   * and named in `invalid`.
   */
  async objectInfoDetailed(
    opts: RequestOptions = {},
  ): Promise<{ objectInfo: ObjectInfo; invalid: string[] }> {
    const timeoutMs = opts.timeoutMs ?? this.objectInfoTimeoutMs;
    const call = await this.send('GET', '/object_info', { timeoutMs, signal: opts.signal });
    const text = await this.readText('GET', '/object_info', call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError('GET', '/object_info', call.res.status, text);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
      return parseObjectInfo(raw);
    } catch (err) {
      throw new ComfyProtocolError('GET', '/object_info', (err as Error).message);
    }
  }

  async objectInfo(opts: RequestOptions = {}): Promise<ObjectInfo> {
    return (await this.objectInfoDetailed(opts)).objectInfo;
  }

  embeddings(opts: RequestOptions = {}): Promise<string[]> {
    return this.json('GET', '/embeddings', StringListSchema, opts);
  }

  /** Model folder names (`checkpoints`, `loras`, ...). */
  models(opts: RequestOptions = {}): Promise<string[]> {
    return this.json('GET', '/models', StringListSchema, opts);
  }

  /** Files of one model folder; null when ComfyUI has no such folder (its 404). */
  async modelsIn(folder: string, opts: RequestOptions = {}): Promise<string[] | null> {
    try {
      return await this.json('GET', `/models/${encodeURIComponent(folder)}`, StringListSchema, opts);
    } catch (err) {
      if (err instanceof ComfyHttpError && err.status === 404) return null;
      throw err;
    }
  }

  /** Frontend extension scripts ComfyUI serves. */
  extensions(opts: RequestOptions = {}): Promise<string[]> {
    return this.json('GET', '/extensions', StringListSchema, opts);
  }

  // -------------------------------------------------------------------------------------------
  // Queue

  /**
   * `POST /prompt` with our client id. Rejects with {@link ComfyPromptError} (ComfyUI's 400 body)
   * when the prompt fails validation.
   */
  async queuePrompt(prompt: PromptInput, opts: QueuePromptOptions = {}): Promise<QueuePromptResponse> {
    const body: QueuePromptRequest = { prompt, client_id: this.clientId };
    if (opts.promptId !== undefined) body.prompt_id = opts.promptId;
    if (opts.front) body.front = true;
    if (opts.extraData !== undefined) body.extra_data = opts.extraData;
    if (opts.partialExecutionTargets !== undefined)
      body.partial_execution_targets = opts.partialExecutionTargets;
    const path = '/prompt';
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const call = await this.send('POST', path, { json: body, timeoutMs, signal: opts.signal });
    const text = await this.readText('POST', path, call, timeoutMs, opts.signal);
    if (call.res.status === 400) {
      let raw: unknown = null;
      try {
        raw = JSON.parse(text);
      } catch {
        // not JSON: a plain HTTP error below
      }
      const parsed = PromptErrorBodySchema.safeParse(raw);
      if (parsed.success) throw new ComfyPromptError(path, parsed.data, text);
    }
    if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
    return this.parse('POST', path, QueuePromptResponseSchema, text);
  }

  getQueue(opts: RequestOptions = {}): Promise<QueueState> {
    return this.json('GET', '/queue', QueueSchema, opts);
  }

  /** `GET /prompt`: how many prompts are queued or running. */
  queueInfo(opts: RequestOptions = {}): Promise<QueueInfo> {
    return this.json('GET', '/prompt', QueueInfoSchema, opts);
  }

  /** Removes pending prompts (a running one is not affected; see {@link interrupt}). */
  deleteFromQueue(ids: string[], opts: RequestOptions = {}): Promise<void> {
    return this.post('/queue', { delete: ids }, opts);
  }

  clearQueue(opts: RequestOptions = {}): Promise<void> {
    return this.post('/queue', { clear: true }, opts);
  }

  /**
   * Interrupts the running prompt; with `promptId`, only if that prompt is the one running
   * (ComfyUI's targeted interrupt). Takes effect at ComfyUI's next interruption check.
   */
  async interrupt(promptId?: string, opts: RequestOptions = {}): Promise<void> {
    const path = '/interrupt';
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const call = await this.send('POST', path, {
      ...(promptId !== undefined ? { json: { prompt_id: promptId } } : {}),
      timeoutMs,
      signal: opts.signal,
    });
    const text = await this.readText('POST', path, call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
  }

  /** `GET /history/{id}`: `{}` until the prompt has finished, then `{[id]: entry}`. */
  history(promptId: string, opts: RequestOptions = {}): Promise<History> {
    return this.json('GET', `/history/${encodeURIComponent(promptId)}`, HistorySchema, opts);
  }

  /** Drops finished prompts from ComfyUI's history (it keeps up to 10000). */
  deleteHistory(ids: string[], opts: RequestOptions = {}): Promise<void> {
    return this.post('/history', { delete: ids }, opts);
  }

  // -------------------------------------------------------------------------------------------
  // Files

  /**
   * Streams a file from `/view`. Resolves once ComfyUI answered 200; the body then flows without
   * buffering, ending with a {@link ComfyTimeoutError} if it stalls for `idleTimeoutMs`. A missing
   * file rejects with a 404 {@link ComfyHttpError}.
   */
  async view(ref: FileRefInput, opts: ViewOptions = {}): Promise<ComfyFileStream> {
    const path = '/view';
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const query: Record<string, string | undefined> = {
      filename: ref.filename,
      subfolder: ref.subfolder ?? '',
      type: ref.type ?? 'output',
      preview: opts.preview,
      channel: opts.channel,
    };
    // The request is aborted on our own signal only after headers; the body has its idle timer.
    const ac = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal;
    const call = await this.send('GET', path, { query, timeoutMs, signal });
    const { res } = call;
    if (res.status !== 200) {
      const text = await this.readText('GET', path, call, timeoutMs, opts.signal).catch(() => '');
      throw new ComfyHttpError('GET', path, res.status, text);
    }
    call.done();
    const out = new ComfyFileStream();
    // The caller's signal can abort the body before the caller has attached its own listeners (a
    // job dropped while its upload is opening): that error must reach whoever reads the stream,
    // never crash the process for want of a listener.
    out.on('error', () => undefined);
    out.contentType = res.header('content-type');
    const len = res.header('content-length');
    out.contentLength = len !== null && /^\d+$/.test(len) ? Number(len) : null;
    const source = res.stream();
    const idleMs = opts.idleTimeoutMs ?? timeoutMs;
    const idle = new IdleTimeout(idleMs, () => new ComfyTimeoutError('GET', path, idleMs));
    const fail = (err: Error) => {
      ac.abort(err);
      source.destroy();
      out.destroy(err);
    };
    source.on('error', (err) => fail(opts.signal?.aborted ? (opts.signal.reason as Error) : err));
    idle.on('error', fail);
    out.on('close', () => {
      if (!source.readableEnded) {
        ac.abort();
        source.destroy();
      }
      idle.destroy();
    });
    source.pipe(idle).pipe(out);
    return out;
  }

  /**
   * `POST /upload/image` (multipart), streaming `data` without buffering it. Resolves with the
   * name ComfyUI stored the file under (it may rename: `x (1).png`).
   */
  async uploadImage(data: Readable | Buffer | Uint8Array, opts: UploadOptions): Promise<UploadResponse> {
    const path = '/upload/image';
    const boundary = `----comfy-multi-${randomBytes(12).toString('hex')}`;
    const field = (name: string, value: string) =>
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
        'utf8',
      );
    const head = Buffer.concat([
      field('type', opts.type ?? 'input'),
      ...(opts.subfolder ? [field('subfolder', opts.subfolder)] : []),
      ...(opts.overwrite ? [field('overwrite', 'true')] : []),
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${quoteHeaderValue(opts.filename)}"\r\n` +
          `Content-Type: ${opts.contentType ?? 'application/octet-stream'}\r\n\r\n`,
        'utf8',
      ),
    ]);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');
    const size = Buffer.isBuffer(data) || data instanceof Uint8Array ? data.byteLength : opts.size;
    const headers: Record<string, string> = { 'Content-Type': `multipart/form-data; boundary=${boundary}` };
    if (size !== undefined) headers['Content-Length'] = String(head.length + size + tail.length);
    let sourceError: unknown = null;
    async function* parts(): AsyncGenerator<Uint8Array> {
      yield head;
      if (data instanceof Readable) {
        try {
          for await (const chunk of data) {
            yield typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
          }
        } catch (err) {
          sourceError = err;
          throw err;
        }
      } else yield data;
      yield tail;
    }
    const body = Readable.from(parts());
    const timeoutMs = opts.timeoutMs ?? this.uploadTimeoutMs;
    let call: Awaited<ReturnType<ComfyClient['send']>>;
    try {
      call = await this.send('POST', path, { body, headers, timeoutMs, signal: opts.signal });
    } catch (err) {
      // A failing source stream is the caller's problem, not an unreachable ComfyUI.
      throw sourceError ?? err;
    }
    const text = await this.readText('POST', path, call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
    return this.parse('POST', path, UploadResponseSchema, text);
  }

  // -------------------------------------------------------------------------------------------
  // Liveness

  /** ComfyUI's HTTP server answers at all (any status below 500 within the timeout). */
  async health(opts: RequestOptions = {}): Promise<boolean> {
    const timeoutMs = opts.timeoutMs ?? Math.min(this.timeoutMs, 5000);
    try {
      const call = await this.send('GET', '/system_stats', { timeoutMs, signal: opts.signal });
      call.done();
      call.res.discard();
      return call.res.status < 500;
    } catch {
      return false;
    }
  }

  /**
   * Ready for jobs: `/system_stats` answers and parses, and `/object_info` lists nodes (ComfyUI
   * has finished importing node packs).
   */
  async ready(opts: RequestOptions = {}): Promise<ReadyState> {
    try {
      const systemStats = await this.systemStats(opts);
      const objectInfo = await this.objectInfo(opts);
      const nodeCount = Object.keys(objectInfo).length;
      if (nodeCount === 0) return { ready: false, reason: 'object_info lists no nodes yet' };
      return { ready: true, systemStats, nodeCount };
    } catch (err) {
      return { ready: false, reason: (err as Error).message };
    }
  }

  // -------------------------------------------------------------------------------------------
  // WebSocket

  /** The WebSocket URL for our client id. */
  socketUrl(path = '/ws'): string {
    const u = new URL(`${this.baseUrl}${path}`);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('clientId', this.clientId);
    return u.toString();
  }

  /** Opens the one WebSocket (`/ws?clientId=`), reconnecting with backoff unless told otherwise. */
  openSocket(options: Omit<ComfySocketOptions, 'url'> & { path?: string } = {}): ComfySocket {
    const { path, ...rest } = options;
    return new ComfySocket({
      ...rest,
      url: this.socketUrl(path),
      headers: { ...this.headers, ...rest.headers },
    });
  }

  /**
   * How `promptId` ended: from the socket when given (fast), and from `/history` every
   * `pollIntervalMs` and after each reconnection (messages sent while disconnected are lost).
   */
  waitForCompletion(
    promptId: string,
    opts: { socket?: ComfySocket; signal?: AbortSignal; pollIntervalMs?: number } = {},
  ): Promise<PromptOutcome> {
    const pollMs = opts.pollIntervalMs ?? 5000;
    return new Promise<PromptOutcome>((resolve, reject) => {
      const stop = new AbortController();
      const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let polling = false;
      const onAbort = () => finish(() => reject(opts.signal?.reason));
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.socket?.off('open', onOpen);
        opts.signal?.removeEventListener('abort', onAbort);
        stop.abort(new Error('settled'));
        fn();
      };
      const poll = async () => {
        if (settled || polling) return;
        polling = true;
        clearTimeout(timer);
        try {
          const entry = (await this.history(promptId, { signal }))[promptId];
          if (entry) return finish(() => resolve(outcomeFromHistory(promptId, entry)));
        } catch (err) {
          if (opts.signal?.aborted) return finish(() => reject(opts.signal?.reason));
          // ComfyUI briefly unreachable: keep trying.
          void err;
        } finally {
          polling = false;
        }
        if (!settled) timer = setTimeout(() => void poll(), pollMs);
      };
      const onOpen = (info: { reconnected: boolean }) => {
        if (info.reconnected) void poll();
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.socket) {
        opts.socket.on('open', onOpen);
        opts.socket.waitForPrompt(promptId, { signal }).then(
          (outcome) => finish(() => resolve(outcome)),
          () => undefined, // closed or settled: history polling carries on
        );
      }
      timer = setTimeout(() => void poll(), opts.socket ? pollMs : 0);
    });
  }
}
