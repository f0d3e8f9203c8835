/**
 * One WebSocket to one ComfyUI (`/ws?clientId=<id>`), as an event emitter: parsed text messages,
 * decoded binary frames, each matched to the prompt it belongs to; reconnection with exponential
 * backoff under the same client id (ComfyUI then routes that client's messages to the new socket);
 * a ping heartbeat that detects dead connections; per-prompt subscriptions that replay what
 * arrived before the caller knew the prompt id (ComfyUI may start a prompt before its `POST
 * /prompt` answer arrives).
 *
 * Matching: a message naming `prompt_id` belongs to that prompt. Frames that do not name one
 * (`executing` re-sent on reconnect, `progress` without id, PREVIEW_IMAGE / TEXT binary frames)
 * belong to the prompt running at the time: the last `execution_start` / `executing` seen, until
 * `executing` with `node: null`. ComfyUI runs one prompt at a time, so this is exact.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import type { JobOutput } from '../store/types.js';
import type { PromptOutcome } from './prompt-outcome.js';
import { uniqueOutputs } from './prompt-outcome.js';
import type { BinaryFrame, ComfyWsMessage, OtherWsMessage } from './protocol.js';
import { BinaryFrameError, decodeBinaryFrame, parseWsText, promptIdOf } from './protocol.js';
import { outputsFromExecuted } from './prompt-tools.js';

export interface ReconnectOptions {
  /** First delay. Default 250 ms. */
  initialDelayMs?: number;
  /** Largest delay. Default 10 s. */
  maxDelayMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /** ± fraction of random spread. Default 0.2. */
  jitter?: number;
}

export interface ComfySocketOptions {
  /** `ws://host:port/ws?clientId=...`. */
  url: string;
  /** Reconnect after an unexpected close. Default true (with the default backoff). */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Sent as the first message of every connection (ComfyUI answers with its own flags).
   * Default `{supports_preview_metadata: true}`, so previews arrive as PREVIEW_IMAGE_WITH_METADATA
   * frames that name their prompt. `null` sends nothing.
   */
  featureFlags?: Record<string, unknown> | null;
  /** Ping interval; a connection without a pong for one interval is dropped. 0 disables. Default 30 s. */
  heartbeatMs?: number;
  /** WebSocket handshake timeout. Default 10 s. */
  handshakeTimeoutMs?: number;
  headers?: Record<string, string>;
  /** How many prompts' early events are kept for later subscribers. Default 32. */
  bufferedPrompts?: number;
}

export type PromptEvent =
  { kind: 'message'; message: ComfyWsMessage } | { kind: 'binary'; frame: BinaryFrame };

export interface ComfySocketEvents {
  /** Every (re)connection. `attempt` is 0 for the first. */
  open: [info: { reconnected: boolean; attempt: number }];
  close: [info: { code: number; reason: string; willReconnect: boolean }];
  reconnecting: [info: { attempt: number; delayMs: number }];
  message: [message: ComfyWsMessage, promptId: string | null];
  /** A text message of an unknown type or unexpected shape (custom nodes, `logs`, ...). */
  other: [message: OtherWsMessage];
  binary: [frame: BinaryFrame, promptId: string | null, raw: Buffer];
  /** Socket and decoding errors. Only emitted while someone listens. */
  error: [error: Error];
}

export class SocketClosedError extends Error {
  constructor() {
    super('The ComfyUI WebSocket was closed');
    this.name = 'SocketClosedError';
  }
}

const TERMINAL = new Set(['execution_success', 'execution_error', 'execution_interrupted']);
const MAX_BUFFERED_EVENTS = 500;

export class ComfySocket extends EventEmitter<ComfySocketEvents> {
  readonly url: string;
  private ws: WebSocket | null = null;
  private closed = false;
  private attempt = 0;
  private opens = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private alive = true;
  private current: string | null = null;
  private readonly reconnect: Required<ReconnectOptions> | null;
  private readonly subscribers = new Map<string, Set<(ev: PromptEvent) => void>>();
  /** Text events per prompt, oldest prompt first, for subscribers that come late. */
  private readonly buffers = new Map<string, PromptEvent[]>();
  private lastQueueRemaining: number | null = null;

  constructor(private readonly options: ComfySocketOptions) {
    super();
    this.url = options.url;
    const r = options.reconnect ?? true;
    this.reconnect =
      r === false
        ? null
        : {
            initialDelayMs: 250,
            maxDelayMs: 10_000,
            factor: 2,
            jitter: 0.2,
            ...(r === true ? {} : r),
          };
    this.connect();
  }

  /** True while the WebSocket is open. */
  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** The prompt ComfyUI is running, as far as this socket has seen. */
  get currentPromptId(): string | null {
    return this.current;
  }

  /** `queue_remaining` of the last `status` message. */
  get queueRemaining(): number | null {
    return this.lastQueueRemaining;
  }

  /** Resolves when the socket is (or next becomes) open. */
  opened(timeoutMs = 30_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    if (this.closed) return Promise.reject(new SocketClosedError());
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('open', onOpen);
        this.off('close', onClose);
      };
      const onOpen = () => {
        cleanup();
        resolve();
      };
      const onClose = (info: { willReconnect: boolean }) => {
        if (info.willReconnect) return;
        cleanup();
        reject(new SocketClosedError());
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`WebSocket not open after ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('open', onOpen);
      this.on('close', onClose);
    });
  }

  /** Sends a JSON text message; false when not connected. */
  sendJson(message: unknown): boolean {
    if (!this.connected || !this.ws) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /**
   * Calls `listener` with every event of `promptId`, first replaying the text messages that
   * arrived before (not progress messages nor binary frames). Returns the unsubscribe function.
   */
  onPrompt(promptId: string, listener: (ev: PromptEvent) => void): () => void {
    let set = this.subscribers.get(promptId);
    if (!set) this.subscribers.set(promptId, (set = new Set()));
    set.add(listener);
    for (const ev of this.buffers.get(promptId) ?? []) listener(ev);
    return () => {
      const s = this.subscribers.get(promptId);
      s?.delete(listener);
      if (s?.size === 0) this.subscribers.delete(promptId);
    };
  }

  /**
   * Resolves with how `promptId` ended: `execution_success` (with the files of its `executed`
   * messages), `execution_error` or `execution_interrupted`. Messages lost while disconnected are
   * not recovered here; {@link ComfyClient.waitForCompletion} adds the `/history` fallback.
   */
  waitForPrompt(promptId: string, opts: { signal?: AbortSignal } = {}): Promise<PromptOutcome> {
    if (this.closed) return Promise.reject(new SocketClosedError());
    return new Promise<PromptOutcome>((resolve, reject) => {
      const outputs: JobOutput[] = [];
      let unsubscribe: () => void = () => {};
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        unsubscribe();
        this.off('close', onClose);
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onClose = (info: { willReconnect: boolean }) => {
        if (!info.willReconnect) finish(() => reject(new SocketClosedError()));
      };
      const onAbort = () => finish(() => reject(opts.signal?.reason));
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.on('close', onClose);
      unsubscribe = this.onPrompt(promptId, (ev) => {
        if (ev.kind !== 'message') return;
        const m = ev.message;
        if (m.type === 'executed') outputs.push(...outputsFromExecuted(m));
        else if (m.type === 'execution_success') {
          finish(() =>
            resolve({ status: 'success', promptId, outputs: uniqueOutputs(outputs), source: 'socket' }),
          );
        } else if (m.type === 'execution_error') {
          finish(() => resolve({ status: 'error', promptId, error: m.data, source: 'socket' }));
        } else if (m.type === 'execution_interrupted') {
          finish(() => resolve({ status: 'interrupted', promptId, interrupted: m.data, source: 'socket' }));
        }
      });
      if (settled) unsubscribe();
    });
  }

  /** Closes for good: no reconnection; pending waits reject with {@link SocketClosedError}. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    const done = new Promise<void>((resolve) => {
      if (!ws || ws.readyState === WebSocket.CLOSED) return resolve();
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000);
      setTimeout(() => (ws.terminate(), resolve()), 2000).unref();
    });
    this.emit('close', { code: 1000, reason: 'closed by client', willReconnect: false });
    this.subscribers.clear();
    this.buffers.clear();
    return done;
  }

  private connect(): void {
    if (this.closed) return;
    const ws = new WebSocket(this.url, {
      // No permessage-deflate, though ComfyUI (aiohttp) offers it: ComfyUI is on this machine, and
      // compressing each of its messages in Python and inflating it here (zlib on Node's thread
      // pool, one message after another) held back every event: through comfy-multi, a client
      // heard of ComfyUI's `execution_success` 7 ms (median) after ComfyUI stamped it, 4 ms without
      // (`BENCH_DEBUG=1 npm run bench -- roundtrip`, real ComfyUI).
      perMessageDeflate: false,
      handshakeTimeout: this.options.handshakeTimeoutMs ?? 10_000,
      headers: this.options.headers,
    });
    this.ws = ws;
    ws.on('open', () => {
      if (this.ws !== ws) return;
      const reconnected = this.opens > 0;
      this.opens++;
      const attempt = this.attempt;
      this.attempt = 0;
      this.alive = true;
      const flags =
        this.options.featureFlags === undefined
          ? { supports_preview_metadata: true }
          : this.options.featureFlags;
      if (flags) ws.send(JSON.stringify({ type: 'feature_flags', data: flags }));
      this.startHeartbeat(ws);
      this.emit('open', { reconnected, attempt });
    });
    ws.on('message', (data, isBinary) => {
      if (this.ws !== ws) return;
      this.alive = true;
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      if (isBinary) this.handleBinary(buf);
      else this.handleText(buf.toString('utf8'));
    });
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('error', (err) => this.emitError(err));
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopHeartbeat();
      const willReconnect = !this.closed && this.reconnect !== null;
      this.emit('close', { code, reason: reason.toString('utf8'), willReconnect });
      if (willReconnect) this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    const r = this.reconnect;
    if (!r || this.closed) return;
    this.attempt++;
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * r.factor ** (this.attempt - 1));
    const delayMs = Math.max(0, Math.round(base * (1 + r.jitter * (Math.random() * 2 - 1))));
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  private startHeartbeat(ws: WebSocket): void {
    const every = this.options.heartbeatMs ?? 30_000;
    if (every <= 0) return;
    this.heartbeatTimer = setInterval(() => {
      if (!this.alive) {
        ws.terminate();
        return;
      }
      this.alive = false;
      try {
        ws.ping();
      } catch {
        // closing already
      }
    }, every);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private handleText(text: string): void {
    const parsed = parseWsText(text);
    if (parsed.kind === 'invalid') {
      this.emitError(new Error(`Invalid WebSocket message from ComfyUI: ${parsed.error}`));
      return;
    }
    if (parsed.kind === 'other') {
      this.emit('other', parsed.message);
      return;
    }
    const m = parsed.message;
    let promptId = promptIdOf(m);
    if (m.type === 'status') this.lastQueueRemaining = m.data.status.exec_info.queue_remaining;
    if (m.type === 'execution_start') this.current = m.data.prompt_id;
    if (m.type === 'executing') {
      if (m.data.node === null) {
        promptId ??= this.current;
        this.current = null;
      } else {
        if (promptId) this.current = promptId;
        promptId ??= this.current;
      }
    }
    if (m.type === 'progress') promptId ??= this.current;
    this.emit('message', m, promptId);
    // Progress is transient and can be large (progress_state lists every node): not replayed.
    const keep = m.type !== 'progress' && m.type !== 'progress_state';
    if (promptId) this.dispatch(promptId, { kind: 'message', message: m }, keep);
    if (promptId && TERMINAL.has(m.type)) this.trimBuffers();
  }

  private handleBinary(raw: Buffer): void {
    let frame: BinaryFrame;
    try {
      frame = decodeBinaryFrame(raw);
    } catch (err) {
      this.emitError(err instanceof BinaryFrameError ? err : new Error(String(err)));
      return;
    }
    const promptId =
      (frame.name === 'PREVIEW_IMAGE_WITH_METADATA' ? frame.metadata.prompt_id : undefined) ?? this.current;
    this.emit('binary', frame, promptId, raw);
    if (promptId) this.dispatch(promptId, { kind: 'binary', frame }, false);
  }

  private dispatch(promptId: string, ev: PromptEvent, keep: boolean): void {
    if (keep) {
      let buf = this.buffers.get(promptId);
      if (!buf) {
        buf = [];
        this.buffers.set(promptId, buf);
        this.trimBuffers();
      }
      if (buf.length < MAX_BUFFERED_EVENTS) buf.push(ev);
    }
    for (const fn of [...(this.subscribers.get(promptId) ?? [])]) {
      try {
        fn(ev);
      } catch (err) {
        this.emitError(err as Error);
      }
    }
  }

  private trimBuffers(): void {
    const limit = this.options.bufferedPrompts ?? 32;
    for (const id of this.buffers.keys()) {
      if (this.buffers.size <= limit) break;
      if (id !== this.current) this.buffers.delete(id);
    }
  }
}
