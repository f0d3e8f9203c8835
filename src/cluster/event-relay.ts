/**
 * Carries queue events and job-bus messages between control-plane processes (several processes
 * sharing one Redis), so that every process behaves as if every worker were connected to it:
 *
 * - a participant's `/ws` on any process gets the ComfyUI events and previews of their own jobs,
 *   whichever process holds the worker running them;
 * - every dispatcher wakes when work is enqueued or requeued anywhere and on settings changes
 *   (pause, resume, mode), and reacts to a cancel or delete made on another process exactly as to
 *   a local one (it tells the worker it holds to stop);
 * - gauges and dashboards stay current; per-process counters and alerts ignore forwarded events
 *   (`origin: 'remote'`), so nothing is counted or sent once per process.
 *
 * What crosses: one topic, `jobs`, of small JSON messages, published in the order this process
 * produced them, so the events of one job reach every process in the order its worker sent them.
 * Queue events carry the job without its prompt and ComfyUI `extra_data` (nobody reacting to an
 * event needs them; they are the bulk of a job). `status` bus messages do not cross: every
 * dispatcher derives them from the queue events it sees, local or forwarded. Preview frames cross
 * base64-encoded.
 *
 * ComfyUI events (`event` messages) are first appended to the owner's durable log (event-log.ts)
 * by the process holding the worker, and cross with their log id; the per-user `/ws` hub of every
 * process gets them from {@link EventRelay.onDelivery} (with that id, to keep each socket's
 * resume cursor) instead of from the in-process bus.
 *
 * With one process (`cluster.shared` false) nothing of this is built: the bus and the queue talk
 * to their listeners directly, as before.
 */
import type { Logger } from 'pino';
import type { ClusterBus, Unsubscribe } from './cluster-bus.js';
import type { Appended, EventLog, LogEvent } from './event-log.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import type { EnvChange, JobBusMessage, JobEventBus } from '../dispatch/job-event-bus.js';
import type { Job } from '../store/types.js';

export const JOBS_TOPIC = 'jobs';
/** `{users}`: a process died with their events in hand; read back what sockets here missed. */
export const RECOVER_TOPIC = 'events-recover';

/** A bus message as the per-user `/ws` hubs get it. */
export interface Delivery {
  message: JobBusMessage;
  /** Its id in the owner's event log; null when not logged (previews, worker_done, log down). */
  logId: string | null;
  /** The process that produced it (the one holding the worker). */
  from: string;
  /**
   * Read back from the log after the link between processes was down: its live copy was lost, and
   * later events of the job may already have been delivered.
   */
  recovered?: boolean;
}

/** How far back {@link EventRelay.recover} looks for events lost while the link was down. */
const RECOVER_WINDOW_MS = 60_000;
/** Logged events received live are remembered this long (so a recovery skips them). */
const SEEN_MS = 2 * RECOVER_WINDOW_MS;

/** What crosses on the `jobs` topic. */
type Wire =
  | { t: 'q'; e: QueueEvent }
  /** `lf`: the process that logged it, when not the sender (an event sent again, logged before). */
  | { t: 'b'; m: WireBusMessage; id: string | null; lf?: string }
  | { t: 'env'; e: EnvChange };

type WireBusMessage =
  | Exclude<JobBusMessage, { kind: 'preview' | 'status' }>
  | (Omit<Extract<JobBusMessage, { kind: 'preview' }>, 'preview'> & { preview: string });

export interface EventRelayDeps {
  cluster: ClusterBus;
  queue: QueueService;
  bus: JobEventBus;
  /** The durable per-user event log; null: live only (no resume after a reconnect). */
  log: EventLog | null;
  logger: Logger;
}

/** The job as it crosses: without the prompt and ComfyUI extra_data. */
export function slimJob(job: Job): Job {
  const { extraData: _e, extra_data: _x, ...metadata } = job.metadata;
  return { ...job, prompt: {}, metadata };
}

/**
 * Appends, trying a keyed event again after a failure (a command timeout while Redis is busy may
 * hide an append that happened): the key makes a repeat harmless, and an event that goes out
 * unlogged would reach a page again, under its log id, when its worker sends it once more.
 */
async function appendOnce(log: EventLog, user: string, e: LogEvent): Promise<Appended> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await log.append(user, e);
    } catch (err) {
      if (e.key === undefined || attempt >= APPEND_TRIES) throw err;
    }
  }
}

/** Tries of a keyed append (each bounded by the event log's command timeout). */
const APPEND_TRIES = 3;

export class EventRelay {
  private readonly unsubscribes: Unsubscribe[] = [];
  private readonly deliveries = new Set<(d: Delivery) => void>();
  /** Messages this relay put on the local bus: not to be forwarded again. */
  private readonly fromRemote = new WeakSet<object>();
  /** Forwarding in the order messages were produced (log appends run ahead, in parallel). */
  private tail: Promise<void> = Promise.resolve();
  /** `<user>\n<log id>` of other processes' logged events received here, oldest first, with when. */
  private readonly seen = new Map<string, number>();
  private readonly publishing = new Set<Promise<void>>();
  private readonly recoverListeners = new Set<(users: string[]) => void>();
  private lastPublishWarning = 0;
  private closed = false;

  constructor(private readonly deps: EventRelayDeps) {
    const { cluster, queue, bus } = deps;
    const onQueue = (e: QueueEvent) => {
      if (e.origin !== 'remote') this.forwardQueue(e);
    };
    queue.on('event', onQueue);
    this.unsubscribes.push(() => queue.off('event', onQueue));
    this.unsubscribes.push(
      bus.subscribeAll((m) => {
        if (!this.fromRemote.has(m)) this.forwardBus(m);
      }),
    );
    this.unsubscribes.push(
      bus.onEnv((e) => {
        if (!this.fromRemote.has(e)) this.enqueue(() => this.publish({ t: 'env', e }));
      }),
    );
    this.unsubscribes.push(cluster.subscribe(JOBS_TOPIC, (msg, from) => this.receive(msg as Wire, from)));
    // Messages may have been lost while Redis was away: dispatchers look at the queue again (the
    // settings, which also triggers a dispatch pass).
    this.unsubscribes.push(cluster.onResync(() => void this.resync()));
    this.unsubscribes.push(
      cluster.subscribe(RECOVER_TOPIC, (msg) => {
        const users = (msg as { users?: unknown } | null)?.users;
        if (Array.isArray(users))
          this.recoverRequested(users.filter((u): u is string => typeof u === 'string'));
      }),
    );
  }

  /**
   * A process died with these users' events in hand (its worker reconnected here): every process
   * reads back, for the sockets it holds, the logged events they never received (see `recover`).
   */
  requestRecover(users: string[]): void {
    this.recoverRequested(users);
    void this.deps.cluster.publish(RECOVER_TOPIC, { users }).catch(() => undefined);
  }

  /** Called with the users of a recover request (ws-hub: reads back for its sockets). */
  onRecoverRequest(listener: (users: string[]) => void): Unsubscribe {
    this.recoverListeners.add(listener);
    return () => void this.recoverListeners.delete(listener);
  }

  private recoverRequested(users: string[]): void {
    for (const l of [...this.recoverListeners]) l(users);
  }

  /** Every bus message of every process except `status`, in order, with its log id. */
  onDelivery(listener: (d: Delivery) => void): Unsubscribe {
    this.deliveries.add(listener);
    return () => void this.deliveries.delete(listener);
  }

  /** After the link to the other processes came back: live messages may have been lost. */
  onResync(listener: () => void): Unsubscribe {
    return this.deps.cluster.onResync(listener);
  }

  get log(): EventLog | null {
    return this.deps.log;
  }

  /** Waits until everything produced so far was forwarded (tests, graceful stop). */
  async flushed(): Promise<void> {
    await this.tail;
    await Promise.all([...this.publishing]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const u of this.unsubscribes.splice(0)) u();
    await this.flushed();
    this.deliveries.clear();
    await this.deps.log?.close();
  }

  // ---- out ---------------------------------------------------------------------------------

  private forwardQueue(e: QueueEvent): void {
    const wire: QueueEvent = e.type === 'settings' ? e : { type: e.type, job: slimJob(e.job) };
    this.enqueue(() => this.publish({ t: 'q', e: wire }));
  }

  private forwardBus(m: JobBusMessage): void {
    if (m.kind === 'status') return;
    const from = this.deps.cluster.processId;
    const log = this.deps.log;
    if (m.kind === 'event' && log) {
      // The append starts now (appends pipeline); delivery and publishing wait their turn.
      const e = {
        from,
        jobId: m.jobId,
        workerId: m.workerId,
        event: m.event,
        ...(m.key ? { key: m.key } : {}),
      };
      const appended = appendOnce(log, m.user, e).catch((err: unknown) => {
        this.deps.logger.warn({ err, jobId: m.jobId }, 'could not log a job event; it is sent live only');
        return null;
      });
      this.enqueue(async () => {
        const a = await appended;
        // Sent again by its worker and logged before (by a process that may have died before
        // publishing it): it goes out once more under its first id, which sockets that had it skip.
        const by = a?.from ?? from;
        // A read-back after a link outage must not hand it out again.
        if (a?.duplicate) this.remember(m.user, a.id);
        this.deliver({ message: m, logId: a?.id ?? null, from: by });
        this.publish({ t: 'b', m, id: a?.id ?? null, ...(by !== from ? { lf: by } : {}) });
      });
      return;
    }
    // The attempt is over here: its event keys need only outlive a last repeat from its worker.
    if (m.kind === 'worker_done' && log) void log.settleKeys(m.jobId).catch(() => undefined);
    this.enqueue(() => {
      this.deliver({ message: m, logId: null, from });
      const wire: WireBusMessage = m.kind === 'preview' ? { ...m, preview: m.preview.toString('base64') } : m;
      this.publish({ t: 'b', m: wire, id: null });
    });
  }

  private enqueue(task: () => Promise<void> | void): void {
    if (this.closed) return;
    this.tail = this.tail.then(task).catch((err: unknown) => {
      this.deps.logger.warn({ err }, 'could not forward a job event to the other processes');
    });
  }

  /**
   * Not awaited: publishes leave in call order on one connection, and a slow or absent Redis must
   * not hold up the next message (nor this process's own sockets).
   */
  private publish(w: Wire): void {
    const p = this.deps.cluster.publish(JOBS_TOPIC, w).catch((err: unknown) => {
      const now = Date.now();
      if (now - this.lastPublishWarning < 10_000) return;
      this.lastPublishWarning = now;
      this.deps.logger.warn({ err }, 'could not forward job events to the other processes');
    });
    this.publishing.add(p);
    void p.finally(() => this.publishing.delete(p));
  }

  private deliver(d: Delivery): void {
    for (const l of [...this.deliveries]) {
      try {
        l(d);
      } catch (err) {
        this.deps.logger.error({ err }, 'job event delivery failed');
      }
    }
  }

  // ---- in ----------------------------------------------------------------------------------

  private receive(w: Wire, from: string): void {
    if (this.closed || !w || typeof w !== 'object') return;
    if (w.t === 'q') {
      this.deps.queue.emit('event', { ...w.e, origin: 'remote' } as QueueEvent);
    } else if (w.t === 'b') {
      // Already read back from the log by a recovery: delivered once.
      if (w.id && !this.remember(w.m.user, w.id)) return;
      const m: JobBusMessage =
        w.m.kind === 'preview' ? { ...w.m, preview: Buffer.from(w.m.preview, 'base64') } : w.m;
      this.fromRemote.add(m);
      this.deliver({ message: m, logId: w.id, from: w.lf ?? from });
      // Dashboards and other local listeners see every worker's events too.
      this.deps.bus.publish(m);
    } else if (w.t === 'env') {
      this.fromRemote.add(w.e);
      this.deps.bus.publishEnv(w.e);
    }
  }

  /** False when this logged event was seen already; else remembers it. */
  private remember(user: string, id: string): boolean {
    const key = `${user}\n${id}`;
    if (this.seen.has(key)) return false;
    const now = Date.now();
    this.seen.set(key, now);
    for (const [k, at] of this.seen) {
      if (at > now - SEEN_MS && this.seen.size <= 200_000) break;
      this.seen.delete(k);
    }
    return true;
  }

  /**
   * After the link to the other processes was down: delivers the logged events of `users` from the
   * last minute that other processes published and this one never received (their live copies were
   * lost), marked `recovered`. Events whose append failed too are gone.
   */
  async recover(users: Iterable<string>): Promise<void> {
    const log = this.deps.log;
    if (!log) return;
    const since = `${Date.now() - RECOVER_WINDOW_MS}-0`;
    for (const user of users) {
      let entries;
      try {
        entries = await log.after(user, since, 5000);
      } catch (err) {
        this.deps.logger.warn({ err, user }, 'could not read the event log to recover lost events');
        continue;
      }
      for (const e of entries) {
        if (this.closed) return;
        // Our own events never crossed the link; others' received live are skipped.
        if (e.from === this.deps.cluster.processId || !this.remember(user, e.id)) continue;
        const m: JobBusMessage = {
          kind: 'event',
          jobId: e.jobId,
          user,
          workerId: e.workerId,
          event: e.event,
        };
        this.fromRemote.add(m);
        this.deliver({ message: m, logId: e.id, from: e.from, recovered: true });
        this.deps.bus.publish(m);
      }
    }
  }

  private async resync(): Promise<void> {
    try {
      const settings = await this.deps.queue.store.getSettings();
      this.deps.queue.emit('event', { type: 'settings', settings, origin: 'remote' });
    } catch (err) {
      this.deps.logger.warn({ err }, 'could not re-read the queue settings after a cluster reconnect');
    }
  }
}
