import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import type { JobBusMessage, JobEventBus } from '../dispatch/job-event-bus.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import { isTerminal, type Job, type JobStore } from '../store/types.js';
import { clientIdOf, withPromptId } from './history-shape.js';
import { PreviewFrames } from './ws-preview.js';
import type { Delivery, EventRelay } from '../cluster/event-relay.js';
import { SocketCursor } from './ws-resume.js';
import { madeUpEnding, newLiveJob, type LiveJob } from './ws-live-job.js';
import { coalescedWrites, type Corkable } from '../worker/coalesced-writes.js';

const OPEN = 1;
/** Text frames from browsers are tiny (`feature_flags`); anything bigger is ignored. */
const MAX_CLIENT_FRAME = 64 * 1024;
/** Preview frames are dropped for a client this far behind (they are only previews). */
const MAX_BUFFERED = 8 * 1024 * 1024;
const MAX_SOCKETS_PER_USER = 32;
/**
 * A safety net only: how long an ended job waits for its worker's `worker_done` before its ending
 * is made up anyway. Normally the worker's own events (or `worker_done`) end it at once.
 */
const WORKER_END_FALLBACK_MS = 30_000;
/** How long a finished job's live state is kept (late events, reconnects). */
const LIVE_TTL_MS = 60_000;
const TERMINAL_EVENTS = new Set(['execution_success', 'execution_error', 'execution_interrupted']);

/** A browser tab's socket on `/<user>/ws`. */
interface Client {
  sid: string;
  user: string;
  socket: WebSocket;
  flags: Record<string, unknown>;
  firstMessage: boolean;
  /** What it was handed of its owner's event log (several processes only, see ws-resume.ts). */
  cursor: SocketCursor | null;
  /** Called before each send: a turn's frames leave in one write (see coalesced-writes.ts). */
  hold: () => void;
}

export interface UserWsHubDeps {
  store: JobStore;
  queue: QueueService;
  bus: JobEventBus | null;
  /**
   * Several processes: every process's job events (instead of `bus`), with their log ids; sockets
   * resume from the durable log after a reconnect.
   */
  events?: EventRelay | null;
  logger: Logger;
  serverFeatures: () => Record<string, unknown>;
  clock?: () => number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A clientId as ComfyUI would accept it; anything odd is replaced by a fresh one. */
export function cleanClientId(raw: unknown): string {
  if (typeof raw === 'string' && /^[\w.:-]{1,128}$/.test(raw)) return raw;
  return randomUUID().replace(/-/g, '');
}

/**
 * The per-user ComfyUI WebSocket. Each participant's sockets see only their own queue
 * (`status.exec_info.queue_remaining` = their pending + running jobs) and the execution events and
 * preview frames of their own jobs. As in ComfyUI, a job's events go to the socket whose clientId
 * queued it; when that tab is gone they go to all of the owner's sockets instead. A socket that
 * reconnects with the same clientId gets the running job's last `executing`, `progress_state` and
 * `progress` again. Preview frames are sent as type 4 (with metadata) to clients that announced
 * `supports_preview_metadata`, as type 1 otherwise.
 */
export class UserWsHub {
  private readonly clients = new Map<string, Map<string, Client>>();
  private readonly live = new Map<string, LiveJob>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly clock: () => number;
  private readonly unsubscribe: (() => void)[] = [];
  private sweepTimer: NodeJS.Timeout;

  constructor(private readonly deps: UserWsHubDeps) {
    this.clock = deps.clock ?? Date.now;
    const onQueue = (e: QueueEvent) => {
      if (e.type === 'settings') return;
      this.inOrder(e.job.user, () => this.onQueueEvent(e));
    };
    deps.queue.on('event', onQueue);
    this.unsubscribe.push(() => deps.queue.off('event', onQueue));
    if (deps.events) {
      const events = deps.events;
      this.unsubscribe.push(
        events.onDelivery((d) => this.inOrder(d.message.user, () => this.onBus(d.message, d))),
      );
      // Live messages from other processes may have been lost while the link was down: those of
      // participants with a socket here are read back from the log.
      this.unsubscribe.push(events.onResync(() => void events.recover([...this.clients.keys()])));
      // A process died holding events of participants with a socket here (event-recovery.ts).
      this.unsubscribe.push(
        events.onRecoverRequest((users) => void events.recover(users.filter((u) => this.clients.has(u)))),
      );
    } else if (deps.bus) {
      this.unsubscribe.push(deps.bus.subscribeAll((m) => this.inOrder(m.user, () => this.onBus(m))));
    }
    this.sweepTimer = setInterval(() => this.sweep(), 10_000);
    this.sweepTimer.unref();
  }

  /** Number of open sockets of a user (tests, metrics). */
  socketCount(user: string): number {
    return this.clients.get(user)?.size ?? 0;
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    clearInterval(this.sweepTimer);
    for (const t of this.timers) clearTimeout(t);
    for (const byUser of this.clients.values())
      for (const c of byUser.values()) c.socket.close(1001, 'server shutting down');
    this.clients.clear();
    this.live.clear();
  }

  /** Takes over a freshly upgraded socket of `user` (`connection`: the TCP connection under it). */
  attach(user: string, rawClientId: unknown, socket: WebSocket, connection?: Corkable): void {
    const sid = cleanClientId(rawClientId);
    let byUser = this.clients.get(user);
    if (!byUser) this.clients.set(user, (byUser = new Map()));
    // Reusing a clientId (page refresh) replaces the old socket, as in ComfyUI.
    const replaced = byUser.get(sid);
    replaced?.socket.close(1000, 'replaced by a newer connection with the same clientId');
    // Its cursor is saved now, ahead of the new socket's read of it (same Redis connection).
    void replaced?.cursor?.close();
    if (byUser.size >= MAX_SOCKETS_PER_USER) {
      const oldest = byUser.values().next().value as Client;
      byUser.delete(oldest.sid);
      oldest.socket.close(1008, 'too many connections');
    }
    const log = this.deps.events?.log;
    const cursor = log ? new SocketCursor(log, user, sid, this.deps.logger) : null;
    const client: Client = {
      sid,
      user,
      socket,
      flags: {},
      firstMessage: true,
      cursor,
      hold: coalescedWrites(connection),
    };
    byUser.set(sid, client);

    socket.on('message', (data: RawData, isBinary: boolean) => this.onClientMessage(client, data, isBinary));
    socket.on('error', (err) => this.deps.logger.debug({ err, user }, 'participant socket error'));
    socket.on('close', () => {
      const m = this.clients.get(user);
      if (m?.get(sid) === client) {
        m.delete(sid);
        if (m.size === 0) this.clients.delete(user);
      }
      void cursor?.close();
    });

    this.inOrder(user, async () => {
      const remaining = await this.remaining(user);
      this.send(client, {
        type: 'status',
        data: { status: { exec_info: { queue_remaining: remaining } }, sid },
      });
      if (cursor) await this.resume(client, cursor);
      for (const job of this.live.values()) {
        if (job.user !== user || !job.started || job.terminal) continue;
        if (
          job.clientId !== sid &&
          job.clientId !== null &&
          byUser.has(job.clientId) &&
          byUser.get(job.clientId) !== client
        )
          continue;
        if (job.executing) this.send(client, { type: 'executing', data: job.executing });
        if (job.progressState) this.send(client, { type: 'progress_state', data: job.progressState });
        if (job.progress) this.send(client, { type: 'progress', data: job.progress });
      }
    });
  }

  /** Hands a socket that came back (same clientId) the logged events of its jobs it missed. */
  private async resume(client: Client, cursor: SocketCursor): Promise<void> {
    let missed;
    try {
      missed = await cursor.open(this.deps.store);
    } catch (err) {
      this.deps.logger.warn({ err, user: client.user }, 'could not read the event log; no replay');
      return;
    }
    if (client.socket.readyState !== OPEN) return;
    for (const e of missed) {
      const data = isRecord(e.event.data) ? withPromptId(e.event.data, e.jobId) : e.event.data;
      cursor.sending(e.id, e.from);
      this.send(client, { type: e.event.type, data }, () => cursor.handed(e.id, e.from));
    }
  }

  // ---- from the browser ----------------------------------------------------------------------

  private onClientMessage(client: Client, data: RawData, isBinary: boolean): void {
    try {
      if (isBinary) return;
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      if (buf.length > MAX_CLIENT_FRAME) return;
      let msg: unknown;
      try {
        msg = JSON.parse(buf.toString('utf8'));
      } catch {
        this.deps.logger.debug({ user: client.user }, 'ignored a non-JSON frame from a participant socket');
        return;
      }
      const first = client.firstMessage;
      client.firstMessage = false;
      if (first && isRecord(msg) && msg.type === 'feature_flags') {
        client.flags = isRecord(msg.data) ? msg.data : {};
        this.send(client, { type: 'feature_flags', data: this.deps.serverFeatures() });
      }
    } catch (err) {
      this.deps.logger.warn({ err, user: client.user }, 'participant socket message failed');
    }
  }

  // ---- queue changes ---------------------------------------------------------------------------

  private async onQueueEvent(e: Exclude<QueueEvent, { type: 'settings' }>): Promise<void> {
    const job = e.job;
    if (e.type === 'claimed' || e.type === 'enqueued') {
      const l = this.liveOf(job.id, job.user, clientIdOf(job));
      if (e.type === 'claimed') {
        l.expires = null;
        l.workerDone = false;
        l.awaitingEnd = null;
        l.madeUp = false;
      }
    }
    if (e.type === 'requeued') {
      const l = this.live.get(job.id);
      if (l?.started && !l.terminal) {
        // Its worker went away mid-run: end what the browser shows; the job waits to run again.
        this.toJob(l, { type: 'executing', data: { node: null, prompt_id: job.id } });
      }
      if (l) {
        l.started = false;
        l.terminal = false;
        l.executing = l.progress = l.progressState = null;
        l.awaitingEnd = null;
        l.madeUp = false;
      }
    }
    if (this.clients.has(job.user)) {
      // A new job's status messages (ComfyUI sends one as it queues a prompt and one as it takes
      // it up) go out once the job is on its way to a GPU: counting and writing them first held
      // the `assign` back on every job's round trip. Still in order among the user's messages.
      if (e.type === 'enqueued' || e.type === 'claimed') this.statusSoon(job.user);
      else await this.sendStatus(job.user);
    }
    if (e.type === 'finished') this.finished(job);
  }

  private async sendStatus(user: string): Promise<void> {
    if (!this.clients.has(user)) return;
    const remaining = await this.remaining(user);
    this.toUser(user, { type: 'status', data: { status: { exec_info: { queue_remaining: remaining } } } });
  }

  /** {@link sendStatus} after the current turn of the event loop (its I/O and what it triggered). */
  private statusSoon(user: string): void {
    setImmediate(() => this.inOrder(user, () => this.sendStatus(user)));
  }

  /**
   * A job ended in the store. Its worker relays ComfyUI's own ending: a finished job's right after
   * this (the worker's report is what ended it), a cancelled one's once ComfyUI has actually
   * stopped. Only when the worker let the job go without it (`worker_done`: lost, no relay, events
   * missed) or never had it is ComfyUI's ending made up, so the participant's UI never keeps
   * showing a job as running and never sees a made-up ending before the real one.
   */
  private finished(job: Job): void {
    const l = this.liveOf(job.id, job.user, clientIdOf(job));
    l.expires = this.clock() + LIVE_TTL_MS;
    if (l.terminal) return;
    if (!l.started && job.startedAt === null && job.status === 'cancelled') return;
    if (l.workerDone || job.workerId === null) {
      this.synthesizeEnd(job, l);
      return;
    }
    l.awaitingEnd = job;
    if (l.fallback) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      l.fallback = null;
      this.inOrder(job.user, () => this.endWithoutWorker(l));
    }, WORKER_END_FALLBACK_MS);
    t.unref();
    this.timers.add(t);
    l.fallback = t;
  }

  /** The job ended and its worker has nothing more to say: make up the ending it did not relay. */
  private endWithoutWorker(l: LiveJob): void {
    const job = l.awaitingEnd;
    l.awaitingEnd = null;
    if (l.fallback) {
      clearTimeout(l.fallback);
      this.timers.delete(l.fallback);
      l.fallback = null;
    }
    if (job && !l.terminal) this.synthesizeEnd(job, l);
  }

  /** Sends the made-up ending (ws-live-job.ts); the worker's own, should it still come, is dropped. */
  private synthesizeEnd(job: Job, l: LiveJob): void {
    for (const msg of madeUpEnding(job, l, this.clock())) this.toJob(l, msg);
    l.terminal = true;
    l.started = true;
    l.madeUp = true;
  }

  // ---- worker events -------------------------------------------------------------------------

  private async onBus(m: JobBusMessage, d?: Delivery): Promise<void> {
    if (m.kind === 'status') return;
    if (m.kind === 'worker_done') {
      const l = this.live.get(m.jobId);
      if (!l || l.user !== m.user) return;
      l.workerDone = true;
      this.endWithoutWorker(l);
      return;
    }
    let l = this.live.get(m.jobId);
    if (!l) {
      const job = await this.deps.store.getJob(m.jobId).catch(() => null);
      if (job && job.user !== m.user) return;
      l = this.liveOf(m.jobId, m.user, job ? clientIdOf(job) : null);
      // A late event of a job that already ended: keep its state only briefly.
      if (!job || isTerminal(job.status)) l.expires = this.clock() + LIVE_TTL_MS;
    }
    // Never a second ending (the safety net fired before a very slow interrupt finished).
    if (l.madeUp) return;
    if (m.kind === 'preview') {
      this.previewToJob(l, m.preview);
      return;
    }
    const type = m.event.type;
    // An `executed` output already names files as the participant sees them (the dispatcher
    // renamed them, see dispatch/output-names.ts).
    const data = isRecord(m.event.data) ? withPromptId(m.event.data, m.jobId) : m.event.data;
    if (isRecord(data)) {
      if (type === 'execution_start') l.started = true;
      else if (type === 'executing') {
        l.started = true;
        l.executing = data;
        l.progress = null;
        if (data.node === null || data.node === undefined) l.terminal = true;
      } else if (type === 'progress') l.progress = data;
      else if (type === 'progress_state') l.progressState = data;
    }
    if (TERMINAL_EVENTS.has(type)) l.terminal = true;
    if (d?.logId) this.loggedToJob(l, { type, data }, d.logId, d.from, d.recovered === true);
    else this.toJob(l, { type, data });
  }

  /** A logged event: skipped by sockets it was replayed to, and moves the cursors of the others. */
  private loggedToJob(l: LiveJob, msg: unknown, id: string, from: string, recovered: boolean): void {
    for (const c of this.targetsOf(l)) {
      const cursor = c.cursor;
      if (!cursor) this.send(c, msg);
      // A recovered event may be older than its writer's mark (later ones came live first).
      else if (recovered ? cursor.wantsRecovered(id, from) : cursor.wants(id, from)) {
        cursor.sending(id, from);
        this.send(c, msg, () => cursor.handed(id, from));
      }
    }
  }

  private previewToJob(l: LiveJob, frame: Buffer): void {
    const targets = this.targetsOf(l);
    if (targets.length === 0) return;
    const shapes = new PreviewFrames(frame, l.jobId, l.executing);
    for (const c of targets) {
      if (c.socket.readyState !== OPEN || c.socket.bufferedAmount > MAX_BUFFERED) continue;
      try {
        c.hold();
        c.socket.send(shapes.for(c.flags.supports_preview_metadata === true), { binary: true });
      } catch (err) {
        this.deps.logger.debug({ err }, 'preview send failed');
      }
    }
  }

  // ---- delivery ------------------------------------------------------------------------------

  /** The owner's socket that queued the job; all of the owner's sockets when that one is gone. */
  private targetsOf(l: LiveJob): Client[] {
    const byUser = this.clients.get(l.user);
    if (!byUser) return [];
    const own = l.clientId ? byUser.get(l.clientId) : undefined;
    if (own && own.socket.readyState === OPEN) return [own];
    return [...byUser.values()];
  }

  private toJob(l: LiveJob, msg: unknown): void {
    for (const c of this.targetsOf(l)) this.send(c, msg);
  }

  private toUser(user: string, msg: unknown): void {
    for (const c of this.clients.get(user)?.values() ?? []) this.send(c, msg);
  }

  /** `onSent`: once the frame was written to the connection. */
  private send(c: Client, msg: unknown, onSent?: () => void): void {
    if (c.socket.readyState !== OPEN) return;
    try {
      c.hold();
      if (onSent) c.socket.send(JSON.stringify(msg), (err) => err || onSent());
      else c.socket.send(JSON.stringify(msg));
    } catch (err) {
      this.deps.logger.debug({ err }, 'participant socket send failed');
    }
  }

  private async remaining(user: string): Promise<number> {
    const c = await this.deps.store.countByStatus(user);
    return c.pending + c.running;
  }

  private liveOf(jobId: string, user: string, clientId: string | null): LiveJob {
    let l = this.live.get(jobId);
    if (!l) {
      l = newLiveJob(jobId, user, clientId);
      this.live.set(jobId, l);
    } else if (clientId && !l.clientId) l.clientId = clientId;
    return l;
  }

  /** Runs work for one user strictly in order (events must reach the browser in order). */
  private inOrder(user: string, task: () => Promise<void> | void): void {
    const prev = this.chains.get(user) ?? Promise.resolve();
    const next = prev
      .then(task)
      .catch((err: unknown) => this.deps.logger.warn({ err, user }, 'participant socket update failed'));
    this.chains.set(user, next);
    void next.then(() => {
      if (this.chains.get(user) === next) this.chains.delete(user);
    });
  }

  private sweep(): void {
    const now = this.clock();
    for (const [id, l] of this.live) if (l.expires !== null && l.expires < now) this.live.delete(id);
    // Jobs enqueued but never claimed keep no state worth holding for long.
    if (this.live.size > 10_000) {
      for (const [id, l] of this.live) if (!l.started) this.live.delete(id);
    }
  }
}
