/**
 * A worker agent's client for its one ComfyUI: the HTTP API (typed by `protocol.ts`, every request
 * under a timeout), streaming file transfer in both directions, and the WebSocket
 * ({@link ComfySocket}). Paths use ComfyUI's `/api` prefix (ComfyUI serves every route with and
 * without it); the WebSocket is `/ws?clientId=<clientId>`.
 */
import type { Readable } from 'node:stream';
import { ComfyHttpError, ComfyPromptError, ComfyProtocolError } from './client-errors.js';
import { ComfyCalls, type RequestOptions } from './comfy-calls.js';
import {
  uploadFile,
  viewFile,
  type ComfyFileStream,
  type FileRefInput,
  type UploadOptions,
  type ViewOptions,
} from './comfy-files.js';
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

// The request plumbing and file transfer live in their own modules; their public types are part
// of the client's API, so they are exported from here as before.
export type { RequestOptions } from './comfy-calls.js';
export { ComfyFileStream, type FileRefInput, type UploadOptions, type ViewOptions } from './comfy-files.js';

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

export interface QueuePromptOptions extends RequestOptions {
  /** Our id for the prompt (ComfyUI's `prompt_id`); ComfyUI makes a UUID when absent. */
  promptId?: string;
  /** Put the prompt first in ComfyUI's queue. */
  front?: boolean;
  /** ComfyUI `extra_data` (`extra_pnginfo`, ...); `client_id` is ours. */
  extraData?: Record<string, unknown>;
  partialExecutionTargets?: string[];
}

export type ReadyState =
  { ready: true; systemStats: SystemStats; nodeCount: number } | { ready: false; reason: string };

export class ComfyClient {
  readonly baseUrl: string;
  readonly clientId: string;
  private readonly timeoutMs: number;
  private readonly objectInfoTimeoutMs: number;
  private readonly uploadTimeoutMs: number;
  private readonly headers: Record<string, string>;
  /** Requests under a deadline, answers checked (comfy-calls.ts). */
  private readonly calls: ComfyCalls;

  constructor(options: ComfyClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.clientId = options.clientId;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.objectInfoTimeoutMs = options.objectInfoTimeoutMs ?? 120_000;
    this.uploadTimeoutMs = options.uploadTimeoutMs ?? 600_000;
    this.headers = options.headers ?? {};
    this.calls = new ComfyCalls({
      baseUrl: this.baseUrl,
      apiPrefix: options.apiPrefix ?? '/api',
      headers: this.headers,
      timeoutMs: this.timeoutMs,
    });
  }

  // -------------------------------------------------------------------------------------------
  // Information

  systemStats(opts: RequestOptions = {}): Promise<SystemStats> {
    return this.calls.json('GET', '/system_stats', SystemStatsSchema, opts);
  }

  /**
   * `/object_info`, node by node: definitions that do not parse (odd custom nodes) are left out
   * and named in `invalid`.
   */
  async objectInfoDetailed(
    opts: RequestOptions = {},
  ): Promise<{ objectInfo: ObjectInfo; invalid: string[] }> {
    const timeoutMs = opts.timeoutMs ?? this.objectInfoTimeoutMs;
    const call = await this.calls.send('GET', '/object_info', { timeoutMs, signal: opts.signal });
    const text = await this.calls.readText('GET', '/object_info', call, timeoutMs, opts.signal);
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
    return this.calls.json('GET', '/embeddings', StringListSchema, opts);
  }

  /** Model folder names (`checkpoints`, `loras`, ...). */
  models(opts: RequestOptions = {}): Promise<string[]> {
    return this.calls.json('GET', '/models', StringListSchema, opts);
  }

  /** Files of one model folder; null when ComfyUI has no such folder (its 404). */
  async modelsIn(folder: string, opts: RequestOptions = {}): Promise<string[] | null> {
    try {
      return await this.calls.json('GET', `/models/${encodeURIComponent(folder)}`, StringListSchema, opts);
    } catch (err) {
      if (err instanceof ComfyHttpError && err.status === 404) return null;
      throw err;
    }
  }

  /** Frontend extension scripts ComfyUI serves. */
  extensions(opts: RequestOptions = {}): Promise<string[]> {
    return this.calls.json('GET', '/extensions', StringListSchema, opts);
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
    const call = await this.calls.send('POST', path, { json: body, timeoutMs, signal: opts.signal });
    const text = await this.calls.readText('POST', path, call, timeoutMs, opts.signal);
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
    return this.calls.parse('POST', path, QueuePromptResponseSchema, text);
  }

  getQueue(opts: RequestOptions = {}): Promise<QueueState> {
    return this.calls.json('GET', '/queue', QueueSchema, opts);
  }

  /** `GET /prompt`: how many prompts are queued or running. */
  queueInfo(opts: RequestOptions = {}): Promise<QueueInfo> {
    return this.calls.json('GET', '/prompt', QueueInfoSchema, opts);
  }

  /** Removes pending prompts (a running one is not affected; see {@link interrupt}). */
  deleteFromQueue(ids: string[], opts: RequestOptions = {}): Promise<void> {
    return this.calls.post('/queue', { delete: ids }, opts);
  }

  clearQueue(opts: RequestOptions = {}): Promise<void> {
    return this.calls.post('/queue', { clear: true }, opts);
  }

  /**
   * Interrupts the running prompt; with `promptId`, only if that prompt is the one running
   * (ComfyUI's targeted interrupt). Takes effect at ComfyUI's next interruption check.
   */
  async interrupt(promptId?: string, opts: RequestOptions = {}): Promise<void> {
    const path = '/interrupt';
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const call = await this.calls.send('POST', path, {
      ...(promptId !== undefined ? { json: { prompt_id: promptId } } : {}),
      timeoutMs,
      signal: opts.signal,
    });
    const text = await this.calls.readText('POST', path, call, timeoutMs, opts.signal);
    if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
  }

  /** `GET /history/{id}`: `{}` until the prompt has finished, then `{[id]: entry}`. */
  history(promptId: string, opts: RequestOptions = {}): Promise<History> {
    return this.calls.json('GET', `/history/${encodeURIComponent(promptId)}`, HistorySchema, opts);
  }

  /** Drops finished prompts from ComfyUI's history (it keeps up to 10000). */
  deleteHistory(ids: string[], opts: RequestOptions = {}): Promise<void> {
    return this.calls.post('/history', { delete: ids }, opts);
  }

  // -------------------------------------------------------------------------------------------
  // Files
  /**
   * Streams a file from `/view`. Resolves once ComfyUI answered 200; the body then flows without
   * buffering, ending with a {@link ComfyTimeoutError} if it stalls for `idleTimeoutMs`. A missing
   * file rejects with a 404 {@link ComfyHttpError}.
   */
  view(ref: FileRefInput, opts: ViewOptions = {}): Promise<ComfyFileStream> {
    return viewFile(this.calls, ref, opts);
  }

  /**
   * `POST /upload/image` (multipart), streaming `data` without buffering it. Resolves with the
   * name ComfyUI stored the file under (it may rename: `x (1).png`).
   */
  uploadImage(data: Readable | Buffer | Uint8Array, opts: UploadOptions): Promise<UploadResponse> {
    return uploadFile(this.calls, data, opts, this.uploadTimeoutMs);
  }

  // -------------------------------------------------------------------------------------------
  // Liveness

  /** ComfyUI's HTTP server answers at all (any status below 500 within the timeout). */
  async health(opts: RequestOptions = {}): Promise<boolean> {
    const timeoutMs = opts.timeoutMs ?? Math.min(this.timeoutMs, 5000);
    try {
      const call = await this.calls.send('GET', '/system_stats', { timeoutMs, signal: opts.signal });
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
