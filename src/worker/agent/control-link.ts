/**
 * The agent's one outbound WebSocket to the control plane (`<server>/worker/v1/ws`): connects
 * with the worker token, says `hello`, waits for `welcome`, sends heartbeats, reconnects with
 * exponential backoff and jitter, and keeps every job report (completion, failure, cancel,
 * release) until the control plane acknowledges it (`ack`, sent once the store recorded it):
 * unacknowledged reports go out again, in order, first thing after every welcome and again when
 * an ack is overdue. So a job that finished is reported even across a control-plane restart or a
 * store outage, and never runs twice.
 *
 * A job's ComfyUI events are numbered and kept the same way until its report is acknowledged
 * (when the server takes numbered events, `welcome.eventSeq`): the process that got them may have
 * died before logging or publishing some, and the agent cannot know which, so after a reconnect it
 * sends all of them again, before the reports; the server keeps each number once.
 */
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { coalescedWrites } from '../coalesced-writes.js';
import {
  CLOSE_SERVICE_RESTART,
  CLOSE_TOKEN_REVOKED,
  SERVICE_RESTART_JITTER_MS,
  serverMessage,
  type AgentMessage,
  type ServerMessage,
} from '../protocol.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { KeptEvents, type JobEvent } from './kept-events.js';

type HelloMessage = Extract<AgentMessage, { type: 'hello' }>;
type HeartbeatMessage = Extract<AgentMessage, { type: 'heartbeat' }>;
type WelcomeMessage = Extract<ServerMessage, { type: 'welcome' }>;
/** Reports that must reach the server even across a reconnect. */
export type OutcomeMessage = Extract<
  AgentMessage,
  { type: 'job_completed' | 'job_failed' | 'job_cancelled' | 'job_released' }
>;

interface OutboxEntry {
  msg: OutcomeMessage;
  /** When it last went out on a connection (performance.now()), null while unsent. */
  sentAt: number | null;
  /** The run it reports (its kept events go once it is acknowledged); absent: every run. */
  run: string | undefined;
}

const reportKey = (m: { type: string; jobId: string; attempt: number }): string =>
  `${m.type}:${m.jobId}#${m.attempt}`;

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
  /**
   * The control plane closed the connection because the worker token was revoked (close code
   * 4004). The link has stopped; it does not reconnect with that token.
   */
  onRevoked?: () => void;
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
  /** Called before each send on the current connection (see coalesced-writes.ts). */
  private hold: () => void = () => {};
  private state: LinkState = 'closed';
  private stopped = true;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private welcome: WelcomeMessage | undefined;
  /** Reports not yet acknowledged, oldest first. */
  private readonly outbox: OutboxEntry[] = [];
  /**
   * Per run (`<jobId>#<attempt>#<run>`): its events so far. A run, not an attempt: an attempt
   * handed back keeps its number, and its next run (here or on another worker) numbers anew.
   */
  private readonly events = new KeptEvents();
  /** The attempts the last `hello` announced: kept events of any other attempt are moot. */
  private announced = new Set<string>();
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
    this.hold();
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  sendBinary(frame: Buffer): boolean {
    if (this.state !== 'ready' || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.hold();
    this.ws.send(frame, { binary: true });
    return true;
  }

  /**
   * Relays one ComfyUI event of a job. To a server that takes numbered events, the event is
   * numbered and kept until the attempt's report is acknowledged (see the file comment); to one
   * that does not, it is sent once if connected, as before.
   */
  sendEvent(msg: Omit<JobEvent, 'seq'>): void {
    if (this.welcome && this.welcome.eventSeq !== true) {
      const { run: _run, ...plain } = msg;
      this.send(plain);
      return;
    }
    const numbered = this.events.number(msg);
    this.send(numbered);
  }

  /**
   * Forgets the kept events of an attempt (of its one run `run`, else of all its runs): its report
   * was acknowledged, or it ended without one (nothing will acknowledge it).
   */
  forgetEvents(jobId: string, attempt: number, run?: string): void {
    this.events.forget(jobId, attempt, run);
  }

  /** Attempts whose events are kept (status, tests). */
  keptEvents(): number {
    return this.events.size;
  }

  /**
   * Sends a report now (or after the next welcome when disconnected) and keeps it until the
   * control plane acknowledges it. A server that does not acknowledge (`welcome.acks` absent) gets
   * each report once, as before.
   */
  sendOutcome(msg: OutcomeMessage, run?: string): void {
    const key = reportKey(msg);
    if (this.outbox.some((e) => reportKey(e.msg) === key)) return;
    const entry: OutboxEntry = { msg, sentAt: null, run };
    this.outbox.push(entry);
    this.transmit(entry);
  }

  private transmit(entry: OutboxEntry): void {
    if (!this.send(forServer(entry.msg, this.welcome?.outputEntries === true))) return;
    entry.sentAt = performance.now();
    if (this.welcome?.acks !== true) {
      this.outbox.splice(this.outbox.indexOf(entry), 1);
      this.forgetEvents(entry.msg.jobId, entry.msg.attempt, entry.run);
    }
  }

  /** Reports not yet acknowledged, oldest first; finished jobs among them count as in flight for `hello`. */
  pendingOutcomes(): readonly OutcomeMessage[] {
    return this.outbox.map((e) => e.msg);
  }

  /** Resolves once every report is acknowledged, or after `timeoutMs` (at once when not connected). */
  whenAcknowledged(timeoutMs: number): Promise<void> {
    if (this.outbox.length === 0 || !this.ready) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.drainWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.drainWaiters.add(done);
    });
  }

  /** Callers of {@link whenAcknowledged} waiting for the outbox to empty. */
  private readonly drainWaiters = new Set<() => void>();

  /** Forgets every unacknowledged report (the token was revoked: nobody will take them). */
  clearOutbox(): void {
    this.outbox.length = 0;
    this.events.clear();
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
    this.hold = () => {};
    // The events of one read from ComfyUI go to the control plane in one write (coalesced-writes.ts).
    ws.once('upgrade', (res) => {
      if (this.ws === ws) this.hold = coalescedWrites(res.socket);
    });
    let rejected = false;

    ws.on('unexpected-response', (_req, res) => {
      const code = res.statusCode ?? 0;
      rejected = true;
      this.lastError =
        code === 401
          ? 'the control plane rejected the worker token (401)'
          : `the control plane answered the WebSocket upgrade with HTTP ${code}`;
      logger.error(
        { status: code, url },
        code === 401
          ? `${this.lastError}: it is wrong or was revoked; asking again in a minute`
          : `${this.lastError}; retrying`,
      );
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      this.state = 'handshake';
      this.missedPongs = 0;
      const hello = this.opts.hello();
      this.announced = new Set(hello.inFlight.map((f) => `${f.jobId}#${f.attempt}`));
      ws.send(JSON.stringify(hello));
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
      if (code === CLOSE_TOKEN_REVOKED) {
        this.stopped = true;
        this.lastError = 'the worker token was revoked';
        logger.error(
          'the control plane revoked this worker token; not reconnecting. Create a new one with `comfy-multi workers token create NAME` and restart the agent with it',
        );
        this.opts.onRevoked?.();
        return;
      }
      // A refused token will not become valid by itself: ask again rarely instead of hammering.
      // A draining process (rolling restart) asks for a reconnect now: the load balancer sends it
      // to another one; a little jitter keeps a fleet from arriving in one burst.
      const delay = rejected
        ? Math.max(60_000, backoffDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF))
        : code === CLOSE_SERVICE_RESTART
          ? Math.round(Math.random() * SERVICE_RESTART_JITTER_MS)
          : backoffDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF);
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
      // Unacknowledged reports first, in order. A finish is sent even for a job the server
      // "forgot" (its lease lapsed and it may run elsewhere): the store still accepts the first
      // finish, so the job does not run again. A give-back or cancel of a forgotten job is moot.
      const forget = new Set(parsed.forget.map((f) => `${f.jobId}#${f.attempt}`));
      for (let i = this.outbox.length - 1; i >= 0; i--) {
        const m = this.outbox[i]!.msg;
        const moot = m.type === 'job_released' || m.type === 'job_cancelled';
        if (moot && forget.has(`${m.jobId}#${m.attempt}`)) this.outbox.splice(i, 1);
      }
      this.resendEvents(parsed, forget);
      for (const e of [...this.outbox]) this.transmit(e);
      this.startHeartbeat(ws, parsed.heartbeatMs);
      return;
    }
    if (this.state !== 'ready') return;
    if (parsed.type === 'ack') {
      const key = reportKey({ type: parsed.report, jobId: parsed.jobId, attempt: parsed.attempt });
      const i = this.outbox.findIndex((e) => reportKey(e.msg) === key);
      const run = i >= 0 ? this.outbox[i]!.run : undefined;
      if (i >= 0) this.outbox.splice(i, 1);
      // The attempt's outcome is recorded, and with it every event before it (the server
      // acknowledges a report only once its events are logged and published).
      this.forgetEvents(parsed.jobId, parsed.attempt, run);
      if (this.outbox.length === 0) for (const w of [...this.drainWaiters]) w();
      return;
    }
    this.opts.onMessage(parsed);
  }

  /**
   * After a welcome: every kept event again, attempt by attempt in the order they began, except
   * for attempts the server forgot that have no finish to report (they run elsewhere, or not at
   * all). A server that does not take numbered events gets none, and nothing is kept for it.
   */
  private resendEvents(welcome: WelcomeMessage, forget: ReadonlySet<string>): void {
    if (welcome.eventSeq !== true) {
      // Numbers are not reused should a later welcome take them again.
      this.events.emptyAll();
      return;
    }
    const finishing = new Set(
      this.outbox
        .filter((e) => e.msg.type === 'job_completed' || e.msg.type === 'job_failed')
        .map((e) => `${e.msg.jobId}#${e.msg.attempt}`),
    );
    const keep = (attempt: string): boolean => {
      // Neither held nor waiting for a report (dropped, say): nobody will acknowledge it.
      const moot =
        !this.announced.has(attempt) && !this.outbox.some((e) => reportKey(e.msg).endsWith(`:${attempt}`));
      return !moot && !(forget.has(attempt) && !finishing.has(attempt));
    };
    for (const m of this.events.again(keep)) if (!this.send(m)) return;
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
      // An ack overdue by three beats: the server could not record the report (its store was
      // away?). Send it again; a report recorded twice is harmless.
      const now = performance.now();
      for (const e of [...this.outbox]) {
        if (e.sentAt !== null && now - e.sentAt > 3 * interval) this.transmit(e);
      }
    }, interval);
  }

  private clearTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.handshakeTimer);
    this.heartbeatTimer = undefined;
    this.handshakeTimer = undefined;
  }
}

/**
 * A report as this server takes it: one that does not record non-file output entries
 * (`welcome.outputEntries` absent, an older control plane) gets the files only, without `extra`,
 * which its stricter schema would refuse.
 */
export function forServer(msg: OutcomeMessage, outputEntries: boolean): OutcomeMessage {
  if (outputEntries || msg.type !== 'job_completed') return msg;
  return {
    ...msg,
    outputs: msg.outputs.filter((o) => o.value === undefined).map(({ extra: _extra, ...o }) => o),
  };
}
