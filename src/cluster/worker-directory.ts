/**
 * Which workers exist across every control-plane process, and which participants have a ComfyUI
 * tab open anywhere (issue #15: several processes behind a load balancer).
 *
 * A worker's socket lives in one process; its {@link WorkerRegistry} entry exists there only. Each
 * process publishes a compact snapshot of its own registry (and of its participants' open tabs) on
 * the cluster topic {@link PRESENCE_TOPIC}: soon after anything changes (at most every
 * `minIntervalMs`) and at least every `refreshMs`. Every process keeps the others' latest
 * snapshots and forgets one that has not been refreshed for `ttlMs`, so the workers of a process
 * killed with -9 vanish from every dashboard within `ttlMs` (their agents reconnect elsewhere and
 * reappear under the new process). A process that starts, or whose Redis connection came back,
 * asks the others to publish at once instead of waiting for the next refresh; one that stops
 * gracefully says goodbye so its workers vanish at once.
 *
 * A killed process raises no "worker lost" alert for its workers (alerts about a worker come from
 * the process holding its socket). So when a snapshot expires, each worker it listed as connected
 * (and not draining) is looked at again `lostGraceMs` later: if no process lists it connected by
 * then, `lost` fires on every process, and the first to claim it (`ClusterBus.once`) raises the
 * same "worker lost" alert the holder would have (src/admin/alerts.ts).
 *
 * Why pub/sub and not a Redis hash with a TTL: the cluster bus is the one thing the processes
 * share besides the store (no second Redis client), snapshots are small (a few hundred bytes per
 * worker) and live-only by nature, and an expiry kept by each reader needs no key cleanup.
 *
 * Readers (dashboard, `/api/v1/workers`, `/api/v1/status`, the participants' banner, the
 * autoscaler's count) use this directory; the dispatcher and the hub keep using the local
 * registry, since they act on sockets. Remote entries carry `process` (the holder's id) and a link
 * that sends nothing. With the single-process bus (`cluster.shared === false`) every call goes
 * straight to the local registry and nothing is published.
 */
import { EventEmitter } from 'node:events';
import type { ConnectionTracker } from '../admin/connection-tracker.js';
import { WorkerWatcher, type WorkerTransition } from '../admin/worker-watch.js';
import { AGENT_MAX_RECONNECT_MS } from '../worker/protocol.js';
import {
  statusOf,
  toView,
  type HeldJob,
  type WorkerEntry,
  type WorkerLink,
  type WorkerReader,
  type WorkerRegistry,
  type WorkerView,
} from '../dispatch/worker-registry.js';
import type { ClusterBus, Unsubscribe } from './cluster-bus.js';

export const PRESENCE_TOPIC = 'presence';

export interface WorkerDirectoryOptions {
  /** Each process republishes its snapshot at least this often. Default 2 s. */
  refreshMs?: number;
  /** A process's snapshot not refreshed for this long is forgotten (its workers vanish). Default 3 × refreshMs + 1 s. */
  ttlMs?: number;
  /** Changes are published at most this often. Default 500 ms. */
  minIntervalMs?: number;
  /**
   * After a process's snapshot expired, how long its workers get to reconnect elsewhere before
   * `lost` fires for them. Default: the agent's longest reconnect delay (15 s).
   */
  lostGraceMs?: number;
  clock?: () => number;
}

/** What readers show of a held job (no models, priority or dispatch flags: only the holder acts). */
type WireHeld = Pick<
  HeldJob,
  'jobId' | 'attempt' | 'user' | 'state' | 'assignedAt' | 'startedAt' | 'node' | 'progress'
>;

/** One worker as it crosses the bus: its registry entry without the socket. */
interface WireWorker extends Omit<WorkerEntry, 'link' | 'held' | 'process' | 'finished'> {
  connected: boolean;
  held: WireHeld[];
}

/** Bumped when the snapshot's shape changes: during a rolling upgrade, other versions are ignored. */
const WIRE_VERSION = 1;

type PresenceMessage =
  { t: 'snap'; v: number; workers: WireWorker[]; tabs: Record<string, number> } | { t: 'ask' } | { t: 'bye' };

interface RemoteProcess {
  receivedAt: number;
  workers: WorkerEntry[];
}

/** The link of a worker connected to another process: open, but this process cannot send on it. */
const REMOTE_LINK: WorkerLink = {
  open: true,
  send: () => false,
  close: () => {},
  authorized: () => Promise.resolve(false),
};

function toWire(w: WorkerEntry): WireWorker {
  // `finished` only matters to the process holding the socket (events sent again after a reconnect).
  const { link, held, process: _p, finished: _f, ...rest } = w;
  return {
    ...rest,
    connected: link !== null && link.open,
    held: [...held.values()].map((h) => ({
      jobId: h.jobId,
      attempt: h.attempt,
      user: h.user,
      state: h.state,
      assignedAt: h.assignedAt,
      startedAt: h.startedAt,
      node: h.node,
      progress: h.progress,
    })),
  };
}

function fromWire(w: WireWorker, processId: string): WorkerEntry {
  const { connected, held, ...rest } = w;
  return {
    ...rest,
    link: connected ? REMOTE_LINK : null,
    registered: connected && w.registered,
    held: new Map(
      held.map((h): [string, HeldJob] => [
        h.jobId,
        { ...h, models: [], priority: 'normal', front: 0, releaseRequested: false, cancelRequested: false },
      ]),
    ),
    process: processId,
  };
}

const isConnected = (w: WorkerEntry): boolean => w.link !== null && w.registered && w.link.open;

/**
 * The merged list of workers (see the file comment). `change` fires when another process's
 * snapshot changed what this process shows (local changes are the local registry's own).
 */
export class WorkerDirectory
  extends EventEmitter<{ change: []; lost: [WorkerTransition] }>
  implements WorkerReader
{
  private readonly remote = new Map<string, RemoteProcess>();
  private readonly refreshMs: number;
  private readonly ttlMs: number;
  private readonly minIntervalMs: number;
  private readonly lostGraceMs: number;
  /** Workers of expired processes, looked at again after the grace (by worker id). */
  private readonly lostTimers = new Map<string, NodeJS.Timeout>();
  private readonly clock: () => number;
  private readonly watcher: WorkerWatcher;
  private readonly unsubscribes: Unsubscribe[] = [];
  private refreshTimer: NodeJS.Timeout | undefined;
  private soonTimer: NodeJS.Timeout | undefined;
  private lastPublishAt = 0;
  private started = false;
  private merged: WorkerEntry[] | null = null;

  constructor(
    readonly local: WorkerRegistry,
    private readonly cluster: ClusterBus,
    private readonly tracker: ConnectionTracker | null,
    opts: WorkerDirectoryOptions = {},
  ) {
    super();
    this.setMaxListeners(0);
    this.refreshMs = opts.refreshMs ?? 2000;
    this.ttlMs = opts.ttlMs ?? 3 * this.refreshMs + 1000;
    this.minIntervalMs = opts.minIntervalMs ?? 500;
    this.lostGraceMs = opts.lostGraceMs ?? AGENT_MAX_RECONNECT_MS;
    this.clock = opts.clock ?? Date.now;
    // The local registry has no events: a cheap fingerprint check notices what changed. A mere
    // heartbeat is not worth a snapshot of its own; the periodic refresh carries it.
    this.watcher = new WorkerWatcher(local, Math.max(100, Math.min(500, this.minIntervalMs)), false);
  }

  /** This process's id (the `process` of its own workers in merged views). */
  get processId(): string {
    return this.cluster.processId;
  }

  get shared(): boolean {
    return this.cluster.shared;
  }

  /** Starts publishing and listening (no-op with the single-process bus). */
  start(): void {
    if (this.started || !this.cluster.shared) return;
    this.started = true;
    this.unsubscribes.push(
      this.cluster.subscribe(PRESENCE_TOPIC, (m, from) => this.onMessage(m as PresenceMessage, from)),
      this.cluster.onResync(() => this.announce()),
    );
    const onLocal = () => this.publishSoon();
    this.watcher.on('change', onLocal);
    this.unsubscribes.push(() => this.watcher.off('change', onLocal));
    if (this.tracker) {
      const tracker = this.tracker;
      const onTabs = (origin: 'local' | 'remote') => {
        if (origin === 'local') this.publishSoon();
      };
      tracker.on('change', onTabs);
      this.unsubscribes.push(() => tracker.off('change', onTabs));
    }
    this.local.drainedElsewhere = (id) => this.drainedElsewhere(id);
    this.watcher.start();
    this.refreshTimer = setInterval(() => {
      this.expire();
      this.publishNow();
    }, this.refreshMs);
    this.refreshTimer.unref();
    this.announce();
  }

  /** Stops publishing; `goodbye` tells the others to forget this process's workers at once. */
  async stop(goodbye = true): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearInterval(this.refreshTimer);
    clearTimeout(this.soonTimer);
    this.soonTimer = undefined;
    this.watcher.stop();
    for (const t of this.lostTimers.values()) clearTimeout(t);
    this.lostTimers.clear();
    this.local.drainedElsewhere = null;
    for (const u of this.unsubscribes.splice(0)) u();
    if (goodbye) await this.cluster.publish(PRESENCE_TOPIC, { t: 'bye' } satisfies PresenceMessage);
  }

  /** Republishes now (tests; a caller that just changed something and wants it seen at once). */
  publishNow(): void {
    if (!this.started) return;
    clearTimeout(this.soonTimer);
    this.soonTimer = undefined;
    this.lastPublishAt = this.clock();
    const msg: PresenceMessage = {
      t: 'snap',
      v: WIRE_VERSION,
      workers: this.local.all().map(toWire),
      tabs: this.tracker?.localTabs() ?? {},
    };
    void this.cluster.publish(PRESENCE_TOPIC, msg).catch(() => {});
  }

  private publishSoon(): void {
    if (!this.started || this.soonTimer) return;
    const wait = Math.max(0, this.lastPublishAt + this.minIntervalMs - this.clock());
    this.soonTimer = setTimeout(() => this.publishNow(), wait);
    this.soonTimer.unref();
  }

  /** Our snapshot now, and everyone else's please (start, reconnect). */
  private announce(): void {
    this.publishNow();
    void this.cluster.publish(PRESENCE_TOPIC, { t: 'ask' } satisfies PresenceMessage).catch(() => {});
  }

  private onMessage(m: PresenceMessage, from: string): void {
    switch (m.t) {
      case 'ask':
        this.publishSoon();
        return;
      case 'bye':
        this.forget(from);
        return;
      case 'snap': {
        if (m.v !== WIRE_VERSION || !Array.isArray(m.workers)) return;
        const workers = m.workers.map((w) => fromWire(w, from));
        this.remote.set(from, { receivedAt: this.clock(), workers });
        this.merged = null;
        // A worker now connected there that we still list offline: its drain flag is theirs now
        // (an undrain there must not be undone if it comes back here).
        for (const w of workers) {
          const mine = isConnected(w) ? this.local.get(w.id) : undefined;
          if (mine && !isConnected(mine)) mine.draining = w.draining;
        }
        this.tracker?.setRemote(from, m.tabs);
        this.emit('change');
        return;
      }
    }
  }

  /** Whether another process lists this worker as drained. */
  private drainedElsewhere(id: string): boolean {
    for (const p of this.remote.values())
      for (const w of p.workers) if (w.id === id && w.draining) return true;
    return false;
  }

  private forget(processId: string): void {
    const had = this.remote.delete(processId);
    this.merged = null;
    this.tracker?.setRemote(processId, null);
    if (had) this.emit('change');
  }

  /** Forgets processes whose snapshot is older than the TTL (killed, or cut off from Redis). */
  expire(): void {
    const cutoff = this.clock() - this.ttlMs;
    for (const [id, p] of this.remote) {
      if (p.receivedAt >= cutoff) continue;
      this.forget(id);
      for (const w of p.workers) this.watchLost(w);
    }
  }

  /** A worker of an expired process: lost unless some process lists it connected after the grace. */
  private watchLost(w: WorkerEntry): void {
    const from = statusOf(w);
    // As for a socket closing here: a drained (or stopping) worker leaving is no alarm.
    if (from === 'offline' || from === 'draining' || this.lostTimers.has(w.id)) return;
    const timer = setTimeout(() => {
      this.lostTimers.delete(w.id);
      if (!this.started) return;
      const now = this.get(w.id);
      if (now && isConnected(now)) return;
      this.emit('lost', { worker: w, from, to: 'offline' });
    }, this.lostGraceMs);
    timer.unref();
    this.lostTimers.set(w.id, timer);
  }

  /** The processes other than this one that reported recently. */
  processes(): string[] {
    return [...this.remote.keys()].sort();
  }

  // ---- WorkerReader ---------------------------------------------------------------------------

  all(): WorkerEntry[] {
    if (this.remote.size === 0) return this.local.all();
    // One merge per turn of the event loop: the dashboard asks holdersOf() for every running job.
    if (this.merged) return this.merged;
    const merged = this.merge();
    this.merged = merged;
    setImmediate(() => {
      if (this.merged === merged) this.merged = null;
    });
    return merged;
  }

  private merge(): WorkerEntry[] {
    const byId = new Map<string, WorkerEntry>();
    for (const w of this.local.all()) byId.set(w.id, w);
    for (const p of this.remote.values()) {
      for (const w of p.workers) {
        const cur = byId.get(w.id);
        if (!cur || better(w, cur)) byId.set(w.id, w);
      }
    }
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  online(): WorkerEntry[] {
    if (this.remote.size === 0) return this.local.online();
    return this.all().filter(isConnected);
  }

  get(id: string): WorkerEntry | undefined {
    if (this.remote.size === 0) return this.local.get(id);
    return this.all().find((w) => w.id === id);
  }

  holdersOf(jobId: string): { worker: WorkerEntry; held: HeldJob }[] {
    if (this.remote.size === 0) return this.local.holdersOf(jobId);
    const out: { worker: WorkerEntry; held: HeldJob }[] = [];
    for (const worker of this.all()) {
      const held = worker.held.get(jobId);
      if (held) out.push({ worker, held });
    }
    return out;
  }

  view(id: string): WorkerView | null {
    if (!this.cluster.shared) return this.local.view(id);
    const w = this.get(id);
    return w ? this.toView(w) : null;
  }

  list(): WorkerView[] {
    if (!this.cluster.shared) return this.local.list();
    return this.all().map((w) => this.toView(w));
  }

  /** The process holding the worker's connection (or its offline entry), or null when unknown. */
  processOf(id: string): string | null {
    const w = this.get(id);
    return w ? (w.process ?? this.cluster.processId) : null;
  }

  private toView(w: WorkerEntry): WorkerView {
    return { ...toView(w), process: w.process ?? this.cluster.processId };
  }
}

/** Which of two entries for one worker id is the truth: a connected one, else the newest. */
function better(a: WorkerEntry, b: WorkerEntry): boolean {
  const ca = isConnected(a);
  const cb = isConnected(b);
  if (ca !== cb) return ca;
  return a.connectedAt > b.connectedAt;
}
