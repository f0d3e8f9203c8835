import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {} from '@fastify/websocket'; // route option `websocket: true`
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import type { JobStore } from '../store/types.js';
import {
  CLOSE_SERVICE_RESTART,
  CLOSE_TOKEN_REVOKED,
  PROTOCOL_VERSION,
  agentMessage,
  decodePreviewFrame,
  type AgentMessage,
  type ReportType,
  type ServerMessage,
} from '../worker/protocol.js';
import { canonicalJson, sha256Hex } from '../worker/agent/canonical-json.js';
import type { Dispatcher } from './dispatcher.js';
import { getCurrentEnvPointer, hasEnv, saveEnv, setCurrentEnv } from './env-snapshots.js';
import type { JobEventBus } from './job-event-bus.js';
import type { ModelDownloadService } from './model-downloads.js';
import type { WorkerEntry, WorkerLink } from './worker-registry.js';

/** WebSocket close codes the hub uses (4000–4999 are for applications). */
export const CLOSE_CODES = {
  /** The same worker connected again; this older connection is closed. */
  REPLACED: 4000,
  /** Nothing heard for 3 heartbeat intervals. */
  SILENT: 4001,
  /** Too many invalid messages. */
  GARBAGE: 4002,
  /** `hello` spoke a protocol version this server does not. */
  UNSUPPORTED_PROTOCOL: 4003,
  /** The worker token was revoked: do not reconnect with it. */
  TOKEN_REVOKED: CLOSE_TOKEN_REVOKED,
  /** The server is shutting down (kept for agents older than the 1012 handling). */
  GOING_AWAY: 1001,
  /** This process is draining (rolling restart): reconnect now, to another process, keeping jobs. */
  SERVICE_RESTART: CLOSE_SERVICE_RESTART,
} as const;

/** Invalid frames tolerated per minute before the hub hangs up. */
const MAX_BAD_FRAMES_PER_MINUTE = 10;
const OPEN = 1;

export interface WorkerHubOptions {
  leaseMs: number;
  heartbeatMs: number;
  /** Silence after which a connection is dropped; default 3 × heartbeatMs. */
  silenceMs?: number;
  /** Whether agents are asked to offer their ComfyUI frontend (`welcome.mirrorFrontend`). Default false. */
  mirrorFrontend?: () => boolean;
  /** Whether agents are asked to offer ComfyUI's template library (`welcome.mirrorTemplates`). Default false. */
  mirrorTemplates?: () => boolean;
  /** Whether `/view` waits for outputs on their way, so agents may announce them early (`welcome.earlyOutputs`). Default false. */
  earlyOutputs?: boolean;
}

export interface WorkerHubDeps {
  store: JobStore;
  dispatcher: Dispatcher;
  bus: JobEventBus;
  logger: Logger;
  /**
   * Re-checks a connected worker's token by its sha256 (the token's name when still valid). A
   * revoke may happen in another process (the CLI), so it is asked on every heartbeat and before
   * every job is given to the worker. Without it tokens are checked only when connecting.
   */
  verifyTokenHash?: (hash: string) => Promise<string | null>;
  /** Model downloads onto workers (`model_download*` messages); absent: none. */
  models?: ModelDownloadService;
}

/** How many jobs at the head of the queue name the models a fresh worker reads ahead. */
const WARMUP_JOBS = 16;

/** One agent connection. It is the dispatcher's {@link WorkerLink} for that worker. */
class Session implements WorkerLink {
  workerId: string | null = null;
  /** The agent keeps reports until acknowledged (`hello.acks`). */
  acks = false;
  /** The token was revoked: the connection is closing and takes nothing more. */
  revoked = false;
  /** Set by the hub: re-checks the token; false (and the connection closes) once it is revoked. */
  check: (() => Promise<boolean>) | null = null;
  /** Messages are handled strictly in order, one at a time. */
  chain: Promise<void> = Promise.resolve();
  private readonly badFrames: number[] = [];
  timer: NodeJS.Timeout | undefined;
  closeTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: WebSocket,
    readonly tokenName: string,
    readonly tokenHash: string | null,
    readonly remote: string,
  ) {}

  get open(): boolean {
    return this.socket.readyState === OPEN && !this.revoked;
  }

  authorized(): Promise<boolean> {
    return this.check ? this.check() : Promise.resolve(!this.revoked);
  }

  send(message: ServerMessage): boolean {
    if (this.socket.readyState !== OPEN) return false;
    if (this.revoked) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  close(code: number, reason: string): void {
    if (this.socket.readyState === OPEN) this.socket.close(code, reason);
    // Do not wait long for a peer that may be gone for good.
    this.closeTimer ??= setTimeout(() => this.socket.terminate(), 2000);
    this.closeTimer.unref();
  }

  /** Counts one invalid frame; true when the connection sent too many. */
  strike(now: number): boolean {
    this.badFrames.push(now);
    while (this.badFrames.length > 0 && this.badFrames[0]! < now - 60_000) this.badFrames.shift();
    return this.badFrames.length > MAX_BAD_FRAMES_PER_MINUTE;
  }
}

/**
 * The control plane's end of the worker protocol (`GET /worker/v1/ws`). Authentication happens in
 * an onRequest hook before the upgrade (see worker-auth.ts). Every frame is validated with the
 * zod schemas in src/worker/protocol.ts; a bad frame gets an `error` message back, a connection
 * that keeps sending them is closed, nothing crashes. Job logic lives in the {@link Dispatcher}.
 */
export class WorkerHub {
  private readonly sessions = new Set<Session>();
  private readonly silenceMs: number;

  constructor(
    private readonly deps: WorkerHubDeps,
    private readonly opts: WorkerHubOptions,
  ) {
    this.silenceMs = opts.silenceMs ?? 3 * opts.heartbeatMs;
  }

  /** Registers `GET /ws` on `app` (mounted under /worker/v1 with the worker-token hook). */
  routes(app: FastifyInstance): void {
    app.get('/ws', { websocket: true }, (socket: WebSocket, request: FastifyRequest) => {
      this.accept(socket, request);
    });
  }

  /** Number of open agent connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /**
   * Re-checks now the tokens of the connections using `tokenName` (a revoke was announced, e.g. by
   * another process): revoked ones give their jobs back and close with 4004 without waiting for
   * their next heartbeat.
   */
  async recheckTokens(tokenName: string): Promise<void> {
    const checks = [...this.sessions].filter((s) => s.tokenName === tokenName).map((s) => s.authorized());
    await Promise.all(checks);
  }

  /**
   * Closes every agent connection (server shutdown). 1012: the agent reconnects at once, through
   * the load balancer to another process, and keeps its jobs.
   */
  closeAll(): void {
    for (const s of this.sessions) {
      clearTimeout(s.timer);
      clearTimeout(s.closeTimer);
      if (s.socket.readyState === OPEN) s.socket.close(CLOSE_CODES.SERVICE_RESTART, 'server restarting');
      s.socket.terminate();
    }
    this.sessions.clear();
  }

  private accept(socket: WebSocket, request: FastifyRequest): void {
    const tokenName = request.workerTokenName;
    if (!tokenName) {
      socket.terminate();
      return;
    }
    const session = new Session(socket, tokenName, request.workerTokenHash, request.ip);
    const log = this.deps.logger;
    this.sessions.add(session);
    session.check = () => this.checkToken(session);
    session.timer = setTimeout(() => {
      log.warn({ workerId: session.workerId, token: tokenName }, 'worker silent too long; disconnecting');
      session.close(CLOSE_CODES.SILENT, 'no heartbeat');
    }, this.silenceMs);
    session.timer.unref();

    socket.on('message', (data: RawData, isBinary: boolean) => {
      session.timer?.refresh();
      const buf = toBuffer(data);
      session.chain = session.chain
        .then(() => this.handle(session, buf, isBinary))
        .catch((err: unknown) => {
          log.error({ err, workerId: session.workerId }, 'handling a worker message failed');
          session.send({
            type: 'error',
            code: 'internal',
            message: 'The server failed to handle that message.',
          });
        });
    });
    socket.on('close', (code: number) => {
      clearTimeout(session.timer);
      clearTimeout(session.closeTimer);
      this.sessions.delete(session);
      log.info({ workerId: session.workerId, token: tokenName, code }, 'worker connection closed');
      // After any message still being handled, so a late hello cannot resurrect the worker.
      session.chain = session.chain.then(() => {
        if (!session.workerId) return;
        // Only when this was the worker's current connection (not one replaced by a newer one).
        if (this.deps.dispatcher.current(session.workerId, session))
          this.deps.models?.disconnected(session.workerId);
        this.deps.dispatcher.disconnected(session.workerId, session);
      });
    });
    log.info({ token: tokenName, remote: session.remote }, 'worker connected');
  }

  /**
   * Whether the session's token is still valid. A revoked one closes the connection with
   * {@link CLOSE_CODES.TOKEN_REVOKED} after giving the worker's jobs back to the queue (their
   * attempts do not count), so a revoke never fails a job.
   */
  private async checkToken(session: Session): Promise<boolean> {
    if (session.revoked) return false;
    const verify = this.deps.verifyTokenHash;
    if (!verify || !session.tokenHash) return true;
    let name: string | null;
    try {
      name = await verify(session.tokenHash);
    } catch (err) {
      // The store is away: keep the worker (its heartbeats keep leases alive); check again later.
      this.deps.logger.debug({ err, workerId: session.workerId }, 'could not re-check a worker token');
      return true;
    }
    if (name === session.tokenName) return true;
    if (session.revoked) return false;
    session.revoked = true;
    const log = this.deps.logger;
    log.warn(
      { workerId: session.workerId, token: session.tokenName },
      'worker token revoked; giving back its jobs and closing the connection',
    );
    const entry = session.workerId ? this.deps.dispatcher.current(session.workerId, session) : null;
    if (entry) await this.deps.dispatcher.reports.revoked(entry);
    if (session.socket.readyState === OPEN)
      session.socket.close(CLOSE_CODES.TOKEN_REVOKED, 'worker token revoked');
    session.closeTimer ??= setTimeout(() => session.socket.terminate(), 2000);
    session.closeTimer.unref();
    return false;
  }

  private bad(session: Session, code: string, message: string): void {
    session.send({ type: 'error', code, message });
    if (session.strike(Date.now())) {
      this.deps.logger.warn(
        { workerId: session.workerId, token: session.tokenName },
        'worker sent too many invalid messages; disconnecting',
      );
      session.close(CLOSE_CODES.GARBAGE, 'too many invalid messages');
    }
  }

  private async handle(session: Session, buf: Buffer, isBinary: boolean): Promise<void> {
    const { dispatcher } = this.deps;
    if (!session.open) return;
    if (isBinary) {
      if (!session.workerId) return this.bad(session, 'hello_required', 'Send hello first.');
      const frame = decodePreviewFrame(buf);
      if (!frame)
        return this.bad(
          session,
          'invalid_frame',
          'A binary frame must be a preview frame (see protocol.ts).',
        );
      const entry = dispatcher.current(session.workerId, session);
      if (entry) dispatcher.reports.preview(entry, frame.jobId, frame.comfyFrame);
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(buf.toString('utf8'));
    } catch {
      return this.bad(session, 'invalid_json', 'A text frame must hold one JSON message.');
    }
    if (isObject(raw) && raw.type === 'hello' && raw.protocol !== PROTOCOL_VERSION) {
      session.send({
        type: 'error',
        code: 'unsupported_protocol',
        message: `This server speaks worker protocol ${PROTOCOL_VERSION}; upgrade the agent or the server.`,
      });
      session.close(CLOSE_CODES.UNSUPPORTED_PROTOCOL, 'unsupported protocol version');
      return;
    }
    const parsed = agentMessage.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue
        ? `${issue.path.join('.') || 'message'}: ${issue.message}`
        : 'does not match the protocol';
      return this.bad(session, 'invalid_message', `Invalid message (${where}).`);
    }
    const msg = parsed.data;
    if (msg.type === 'hello') {
      if (session.workerId)
        return this.bad(session, 'duplicate_hello', 'hello was already accepted on this connection.');
      return this.hello(session, msg);
    }
    if (!session.workerId) return this.bad(session, 'hello_required', 'Send hello first.');
    const entry = dispatcher.current(session.workerId, session);
    if (!entry) return; // replaced by a newer connection
    if (msg.type === 'heartbeat' && !(await session.authorized())) return;
    await this.route(entry, msg);
    // Only now is the report recorded (a store failure threw above): the agent may forget it.
    if (session.acks && isReport(msg)) {
      session.send({ type: 'ack', report: msg.type, jobId: msg.jobId, attempt: msg.attempt });
    }
  }

  private async hello(session: Session, msg: Extract<AgentMessage, { type: 'hello' }>): Promise<void> {
    const { dispatcher, store } = this.deps;
    const { entry, forget } = await dispatcher.hello(session, session.tokenName, msg);
    session.workerId = entry.id;
    session.acks = msg.acks === true;
    const needEnv = !(await hasEnv(store, msg.envHash));
    if (!needEnv) await this.makeCurrent(msg.envHash, entry.id);
    session.send({
      type: 'welcome',
      protocol: PROTOCOL_VERSION,
      workerId: entry.id,
      leaseMs: this.opts.leaseMs,
      heartbeatMs: this.opts.heartbeatMs,
      needEnv,
      forget,
      mirrorFrontend: this.opts.mirrorFrontend?.() ?? false,
      mirrorTemplates: this.opts.mirrorTemplates?.() ?? false,
      acks: true,
      outputEntries: true,
      eventSeq: true,
      ...(this.opts.earlyOutputs ? { earlyOutputs: true } : {}),
      ...(msg.inFlight.length === 0 ? { warmup: await this.warmupModels() } : {}),
    });
    if (entry.draining) session.send({ type: 'drain', draining: true });
    // Before activating: a worker that must first fetch the workshop's models gets no job meanwhile.
    await this.deps.models?.hello(entry, msg);
    dispatcher.activate(entry, session);
  }

  /**
   * The model files of the jobs at the head of the queue, in queue order: what a worker that holds
   * nothing (just started, or idle) will most likely load first. Best effort: a store hiccup
   * costs the warm-up, never the registration.
   */
  private async warmupModels(): Promise<string[]> {
    try {
      const out = new Set<string>();
      for (const job of await this.deps.store.pendingInOrder(WARMUP_JOBS))
        for (const m of job.models) if (out.size < 64) out.add(m);
      return [...out];
    } catch {
      return [];
    }
  }

  private async route(entry: WorkerEntry, msg: AgentMessage): Promise<void> {
    const { dispatcher, store } = this.deps;
    switch (msg.type) {
      case 'hello':
        return;
      case 'env':
        if (envHashOf(msg.snapshot) !== msg.hash) {
          // Stored anyway (the agent will not send it again while the hash stays), but worth knowing.
          this.deps.logger.warn(
            { workerId: entry.id, hash: msg.hash },
            'env snapshot hash does not match its content',
          );
        }
        await saveEnv(store, msg.hash, msg.snapshot);
        entry.envHash = msg.hash;
        await this.makeCurrent(msg.hash, entry.id);
        this.deps.logger.info({ workerId: entry.id, hash: msg.hash }, 'stored ComfyUI environment snapshot');
        return;
      case 'heartbeat':
        return dispatcher.reports.heartbeat(entry, msg);
      case 'job_started':
        return dispatcher.reports.jobStarted(entry, msg);
      case 'job_event':
        return dispatcher.reports.jobEvent(entry, msg);
      case 'job_completed':
        return dispatcher.reports.jobCompleted(entry, msg);
      case 'job_failed':
        return dispatcher.reports.jobFailed(entry, msg);
      case 'job_released':
        return dispatcher.reports.jobReleased(entry, msg);
      case 'job_cancelled':
        return dispatcher.reports.jobCancelled(entry, msg);
      case 'model_download_progress':
        return this.deps.models?.progress(entry, msg);
    }
  }

  /** Points `env/current` at `hash` and tells the bus when it changed. */
  private async makeCurrent(hash: string, workerId: string): Promise<void> {
    const { store, bus } = this.deps;
    const before = await getCurrentEnvPointer(store);
    await setCurrentEnv(store, { hash, workerId, at: Date.now() });
    if (before?.hash !== hash) bus.publishEnv({ hash, workerId });
  }
}

/** The agent's hash of a snapshot: sha256 of its canonical JSON (keys sorted, no whitespace). */
export function envHashOf(snapshot: unknown): string {
  return sha256Hex(canonicalJson(snapshot));
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function isReport(m: AgentMessage): m is Extract<AgentMessage, { type: ReportType }> {
  return (
    m.type === 'job_completed' ||
    m.type === 'job_failed' ||
    m.type === 'job_released' ||
    m.type === 'job_cancelled'
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
