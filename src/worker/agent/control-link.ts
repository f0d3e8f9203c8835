/**
 * The agent's one outbound WebSocket to the control plane (`<server>/worker/v1/ws`): connects
 * with the worker token, says `hello`, waits for `welcome`, sends heartbeats, reconnects with
 * exponential backoff and jitter, and keeps job reports that could not be sent (completion,
 * failure, cancel, release) until the next connection so no outcome is lost.
 */
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { serverMessage, type AgentMessage, type ServerMessage } from '../protocol.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';

type HelloMessage = Extract<AgentMessage, { type: 'hello' }>;
type HeartbeatMessage = Extract<AgentMessage, { type: 'heartbeat' }>;
type WelcomeMessage = Extract<ServerMessage, { type: 'welcome' }>;
/** Reports that must reach the server even across a reconnect. */
type OutcomeMessage = Extract<
  AgentMessage,
  { type: 'job_completed' | 'job_failed' | 'job_cancelled' | 'job_released' }
>;

export type LinkState = 'connecting' | 'handshake' | 'ready' | 'closed';

export interface ControlLinkOptions {
  serverUrl: string;
  token: string;
  logger: Logger;
  /** Built afresh on every connect, so it carries the current in-flight jobs. */
  hello: () => HelloMessage;
  heartbeat: () => HeartbeatMessage;
  /** After the welcome, before any queued outcome is flushed. */
  onWelcome: (welcome: WelcomeMessage) => void;
  onMessage: (msg: Exclude<ServerMessage, WelcomeMessage>) => void;
  /** Called when a ready connection is lost. */
  onDisconnect?: () => void;
  backoff?: BackoffOptions;
  /** How long to wait for `welcome` after `hello`. Default 10 s. */
  handshakeTimeoutMs?: number;
}

/** `http://host:8080/base` → `ws://host:8080/base/worker/v1/ws` (https → wss; ws/wss kept). */
export function workerSocketUrl(serverUrl: string): string {
  const u = new URL(serverUrl);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/worker/v1/ws`;
  u.search = '';
  u.hash = '';
  return u.toString();
}

export class ControlLink {
  private ws: WebSocket | undefined;
  private state: LinkState = 'closed';
  private stopped = true;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private welcome: WelcomeMessage | undefined;
  private readonly outbox: OutcomeMessage[] = [];
  private missedPongs = 0;
  private lastError: string | undefined;
  private connects = 0;

  constructor(private readonly opts: ControlLinkOptions) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /** Closes the socket and stops reconnecting. Queued outcomes are dropped (the lease will lapse). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    this.state = 'closed';
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1001, 'agent stopping');
    });
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  status(): {
    state: LinkState;
    workerId: string | null;
    lastError: string | null;
    connects: number;
    outbox: number;
  } {
    return {
      state: this.state,
      workerId: this.welcome?.workerId ?? null,
      lastError: this.lastError ?? null,
      connects: this.connects,
      outbox: this.outbox.length,
    };
  }

  /** Timing the server gave in its last welcome. */
  get timing(): { leaseMs: number; heartbeatMs: number } | null {
    return this.welcome ? { leaseMs: this.welcome.leaseMs, heartbeatMs: this.welcome.heartbeatMs } : null;
  }

  /** Drops the connection and reconnects at once (used when the hello would change). */
  reconnectNow(): void {
    if (this.stopped) return;
    if (this.ws) this.ws.terminate();
    else {
      clearTimeout(this.reconnectTimer);
      this.connect();
    }
  }

  /** Best effort: progress events and heartbeats are dropped while disconnected. */
  send(msg: AgentMessage): boolean {
    if (this.state !== 'ready' || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  sendBinary(frame: Buffer): boolean {
    if (this.state !== 'ready' || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(frame, { binary: true });
    return true;
  }

  /** Sends now, or after the next welcome if disconnected. */
  sendOutcome(msg: OutcomeMessage): void {
    if (!this.send(msg)) this.outbox.push(msg);
  }

  /** Forget queued outcomes of a job (the server no longer knows it). */
  dropOutcomes(jobId: string, attempt: number): void {
    for (let i = this.outbox.length - 1; i >= 0; i--) {
      const m = this.outbox[i]!;
      if (m.jobId === jobId && m.attempt === attempt) this.outbox.splice(i, 1);
    }
  }

  /** Jobs whose outcome waits in the outbox; they still count as in flight for `hello`. */
  pendingOutcomes(): readonly OutcomeMessage[] {
    return this.outbox;
  }

  /** Sends a heartbeat now (e.g. when health changes), outside the regular beat. */
  beat(): void {
    this.send(this.opts.heartbeat());
  }

  private connect(): void {
    if (this.stopped) return;
    this.state = 'connecting';
    const { logger } = this.opts;
    const url = workerSocketUrl(this.opts.serverUrl);
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${this.opts.token}` },
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    let rejected = false;

    ws.on('unexpected-response', (_req, res) => {
      const code = res.statusCode ?? 0;
      rejected = true;
      this.lastError =
        code === 401
          ? 'the control plane rejected the worker token (401)'
          : `the control plane answered the WebSocket upgrade with HTTP ${code}`;
      logger.error({ status: code, url }, `${this.lastError}; retrying`);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      this.state = 'handshake';
      this.missedPongs = 0;
      ws.send(JSON.stringify(this.opts.hello()));
      this.handshakeTimer = setTimeout(() => {
        logger.warn('no welcome from the control plane; reconnecting');
        ws.terminate();
      }, this.opts.handshakeTimeoutMs ?? 10_000);
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      this.handleText(ws, data.toString());
    });
    ws.on('pong', () => {
      this.missedPongs = 0;
    });
    ws.on('error', (err) => {
      if (!rejected) this.lastError = err.message;
      logger.debug({ err: err.message }, 'control-plane socket error');
    });
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      const wasReady = this.state === 'ready';
      this.ws = undefined;
      this.clearTimers();
      this.state = 'closed';
      if (this.stopped) return;
      const delay = backoffDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF);
      if (wasReady) {
        logger.warn(
          { code, reason: reason.toString(), retryInMs: delay },
          'lost the control plane; reconnecting',
        );
        this.opts.onDisconnect?.();
      } else {
        logger.debug({ code, retryInMs: delay }, 'control plane not reachable; retrying');
      }
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private handleText(ws: WebSocket, text: string): void {
    let parsed: ServerMessage;
    try {
      const r = serverMessage.safeParse(JSON.parse(text));
      if (!r.success) {
        this.opts.logger.warn(
          { issues: r.error.issues.slice(0, 3) },
          'ignoring a malformed message from the control plane',
        );
        return;
      }
      parsed = r.data;
    } catch {
      this.opts.logger.warn('ignoring a non-JSON message from the control plane');
      return;
    }
    if (parsed.type === 'welcome') {
      if (this.state !== 'handshake') return;
      clearTimeout(this.handshakeTimer);
      this.welcome = parsed;
      this.state = 'ready';
      this.attempt = 0;
      this.connects++;
      this.lastError = undefined;
      this.opts.logger.info(
        { workerId: parsed.workerId, needEnv: parsed.needEnv },
        'connected to the control plane',
      );
      this.opts.onWelcome(parsed);
      const forget = new Set(parsed.forget.map((f) => `${f.jobId}#${f.attempt}`));
      const queued = this.outbox.splice(0).filter((m) => !forget.has(`${m.jobId}#${m.attempt}`));
      for (const m of queued) this.sendOutcome(m);
      this.startHeartbeat(ws, parsed.heartbeatMs);
      return;
    }
    if (this.state !== 'ready') return;
    this.opts.onMessage(parsed);
  }

  private startHeartbeat(ws: WebSocket, everyMs: number): void {
    const interval = Math.max(50, everyMs);
    this.heartbeatTimer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      // A socket that stopped answering pings for three beats is dead even if TCP has not noticed.
      if (++this.missedPongs > 3) {
        this.opts.logger.warn('control plane stopped answering pings; reconnecting');
        ws.terminate();
        return;
      }
      ws.ping();
      this.send(this.opts.heartbeat());
    }, interval);
  }

  private clearTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.handshakeTimer);
    this.heartbeatTimer = undefined;
    this.handshakeTimer = undefined;
  }
}
