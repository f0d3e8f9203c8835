import type { JobOutput, Priority } from '../store/types.js';
import type { EphemeralInfo, ServerMessage } from '../worker/protocol.js';
import type { JobEventMessage } from './job-event-bus.js';

/**
 * The live workers the control plane knows, in memory. The hub creates and updates entries as
 * agents connect and talk; the dispatcher reads them to find free slots; `/api/v1/workers` lists
 * them. A worker that disconnects stays listed as `offline` for a while (retentionMs), so the
 * instructor sees it went away, then is forgotten.
 */

export type WorkerStatus = 'idle' | 'busy' | 'unhealthy' | 'draining' | 'offline';

export interface Device {
  name: string;
  type: string;
  vramTotal: number;
  vramFree: number;
}

/** The socket of a connected worker, as the dispatcher sees it. */
export interface WorkerLink {
  /** Sends a message; false when the socket is no longer open (the message is dropped). */
  send(message: ServerMessage): boolean;
  close(code: number, reason: string): void;
  readonly open: boolean;
  /** Whether the worker's token is still valid (re-checked before each job is given to it). */
  authorized?(): Promise<boolean>;
}

export interface JobProgress {
  value: number;
  max: number;
}

/**
 * A job a worker holds (store status `running`, `workerId` = this worker):
 * `assigned` = sent, not yet reported back; `queued` = in ComfyUI's own queue (prefetched);
 * `running` = ComfyUI is executing it.
 */
export interface HeldJob {
  jobId: string;
  attempt: number;
  user: string;
  models: string[];
  state: 'assigned' | 'queued' | 'running';
  /** The job's priority and front counter when assigned (to decide whether a new job outranks it). */
  priority: Priority;
  front: number;
  assignedAt: number;
  startedAt: number | null;
  /** Healthy heartbeats in a row that did not list this job (see Dispatcher.heartbeat). */
  missedBeats?: number;
  /** Current node (from ComfyUI `executing`), null when not known. */
  node: string | null;
  progress: JobProgress | null;
  /** We asked the agent to give it back (a more urgent job needs the slot). */
  releaseRequested: boolean;
  /** We asked the agent to cancel it (the job was cancelled or is no longer ours). */
  cancelRequested: boolean;
  /**
   * ComfyUI's ending (its verdict and the events after it), held back until the outcome report is
   * recorded: the owner hears the job is done only once `/history` and every output say so too.
   */
  ending?: JobEventMessage[];
  /**
   * Outputs announced early (`welcome.earlyOutputs`): what its `executed` events named so far, as
   * the participant sees them, keyed like the agent keys them (`keyedOutputs`), in report order.
   */
  announced?: Map<string, JobOutput>;
  /** When ComfyUI's `execution_success` arrived, with outputs announced early: the record's time. */
  succeededAt?: number;
  /**
   * Taken over when its worker reconnected (to this process, after the one it ran on died): what
   * that process relayed may never have reached the owner. `seen` collects the `execution_start`
   * and `executed:<node>` events relayed here since (see WorkerReportsDeps.recoverEvents).
   */
  adopted?: { seen: Set<string> };
}

export interface WorkerEntry {
  id: string;
  name: string;
  tokenName: string;
  link: WorkerLink | null;
  /** Set once `hello` was accepted on the current link. */
  registered: boolean;
  connectedAt: number;
  disconnectedAt: number | null;
  lastHeartbeatAt: number | null;
  healthy: boolean;
  /** An instructor drained it: no new jobs (kept across reconnects). */
  draining: boolean;
  /** The agent itself is stopping gracefully (`hello`/`heartbeat` `stopping`): no new jobs. */
  stopping: boolean;
  agentVersion: string;
  comfyuiVersion: string;
  devices: Device[];
  prefetch: number;
  envHash: string | null;
  /** Models of its last job (what is probably loaded on the GPU now). */
  warmModels: string[];
  held: Map<string, HeldJob>;
  completed: number;
  failed: number;
  /** Last time anything was assigned to it, to spread jobs evenly among equal workers. */
  lastAssignedAt: number;
  /** Started on demand (the autoscaler's provider and instance); null for a worker started by hand. */
  ephemeral?: EphemeralInfo | null;
  /** Fetching the workshop's models it lacks (see ModelDownloadService): no jobs until done. */
  preparing?: boolean;
  /**
   * The agent numbers its job events and sends them again after a reconnect (`hello.eventSeq`):
   * nothing need be made up for a job taken over (WorkerReportsDeps.recoverEvents).
   */
  eventSeq?: boolean;
  /**
   * Attempts it finished whose report was recorded before it reconnected (by a process that may
   * have died before its owner heard the ending): their events, sent again, still go out.
   */
  finished?: Map<string, { user: string; attempt: number }>;
  /**
   * Its agent takes model downloads (`hello` said `modelDownloads: true` on the current link). Kept
   * on the entry so that other processes see it in the presence snapshots (a download started there).
   */
  modelDownloads?: boolean;
  /**
   * The control-plane process holding its connection, set only on entries another process
   * reported (src/cluster/worker-directory.ts); absent on this process's own entries.
   */
  process?: string;
}

/** The JSON shape of a worker in `GET /api/v1/workers`. */
export interface WorkerView {
  id: string;
  name: string;
  tokenName: string;
  status: WorkerStatus;
  connected: boolean;
  healthy: boolean;
  draining: boolean;
  /** The agent is stopping gracefully, finishing what it holds. */
  stopping: boolean;
  connectedAt: string;
  disconnectedAt: string | null;
  lastHeartbeatAt: string | null;
  agentVersion: string;
  comfyuiVersion: string;
  devices: Device[];
  vram: { used: number; total: number };
  prefetch: number;
  slots: number;
  envHash: string | null;
  warmModels: string[];
  currentJob: {
    jobId: string;
    user: string;
    attempt: number;
    startedAt: string | null;
    node: string | null;
    progress: JobProgress | null;
  } | null;
  heldJobs: { jobId: string; user: string; attempt: number; state: HeldJob['state']; assignedAt: string }[];
  jobsCompleted: number;
  jobsFailed: number;
  /** Started on demand by the autoscaler (provider, instance); null when started by hand. */
  ephemeral: EphemeralInfo | null;
  /** Fetching the workshop's models it lacks: takes no jobs until that is done. */
  preparing: boolean;
  /** With several control-plane processes: the id of the one holding its connection. */
  process?: string;
}

/**
 * What readers of the worker list need (dashboard, `/api/v1/workers`, status, banner, autoscaler):
 * the local {@link WorkerRegistry}, or with several processes the merged WorkerDirectory
 * (src/cluster). The dispatcher and the hub always use the local registry: they act on sockets.
 */
export interface WorkerReader {
  /** Every known worker, sorted by id. */
  all(): WorkerEntry[];
  /** Connected, registered workers. */
  online(): WorkerEntry[];
  get(id: string): WorkerEntry | undefined;
  holdersOf(jobId: string): { worker: WorkerEntry; held: HeldJob }[];
  view(id: string): WorkerView | null;
  list(): WorkerView[];
}

export interface HelloInfo {
  name: string;
  tokenName: string;
  agentVersion: string;
  comfyuiVersion: string;
  devices: Device[];
  prefetch: number;
  envHash: string;
  warmModels: string[];
  healthy: boolean;
  stopping?: boolean;
  ephemeral?: EphemeralInfo | undefined;
}

/** Worker ids combine the token name and the agent's name, so a token can only speak for its own workers. */
export function workerIdOf(tokenName: string, name: string): string {
  return `${tokenName}:${name}`;
}

/** The token name part of a worker id. */
export function tokenNameOfWorker(workerId: string): string {
  const i = workerId.indexOf(':');
  return i < 0 ? workerId : workerId.slice(0, i);
}

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

export class WorkerRegistry implements WorkerReader {
  private readonly workers = new Map<string, WorkerEntry>();
  /**
   * With several processes: whether another process knows this worker as drained (it was
   * connected there before), so a drain survives the worker reconnecting here. Set by the
   * WorkerDirectory (src/cluster).
   */
  drainedElsewhere: ((id: string) => boolean) | null = null;

  constructor(
    private readonly opts: { retentionMs: number; clock?: () => number } = { retentionMs: 3_600_000 },
  ) {}

  private now(): number {
    return (this.opts.clock ?? Date.now)();
  }

  /**
   * Registers a worker on a new link after its `hello`. An entry for the same id keeps its
   * drain flag and counters (a reconnect); held jobs are rebuilt by the caller.
   * Returns the entry and the previous link, if one was still attached (the caller closes it).
   */
  connect(
    id: string,
    info: HelloInfo,
    link: WorkerLink,
  ): { entry: WorkerEntry; previous: WorkerLink | null } {
    const now = this.now();
    const old = this.workers.get(id);
    const previous = old?.link && old.link !== link ? old.link : null;
    const entry: WorkerEntry = {
      id,
      name: info.name,
      tokenName: info.tokenName,
      link,
      // Becomes true once the welcome is sent and reported in-flight jobs are re-attached.
      registered: false,
      connectedAt: now,
      disconnectedAt: null,
      lastHeartbeatAt: now,
      healthy: info.healthy,
      draining: old?.draining ?? this.drainedElsewhere?.(id) ?? false,
      stopping: info.stopping ?? false,
      agentVersion: info.agentVersion,
      comfyuiVersion: info.comfyuiVersion,
      devices: info.devices,
      prefetch: info.prefetch,
      envHash: info.envHash,
      warmModels: info.warmModels.length > 0 ? info.warmModels : (old?.warmModels ?? []),
      held: new Map(),
      completed: old?.completed ?? 0,
      failed: old?.failed ?? 0,
      lastAssignedAt: old?.lastAssignedAt ?? 0,
      ephemeral: info.ephemeral ?? null,
    };
    this.workers.set(id, entry);
    return { entry, previous };
  }

  /** Marks the worker offline if `link` is still its current link; returns the entry if so. */
  disconnect(id: string, link: WorkerLink): WorkerEntry | null {
    const entry = this.workers.get(id);
    if (!entry || entry.link !== link) return null;
    entry.link = null;
    entry.registered = false;
    entry.disconnectedAt = this.now();
    return entry;
  }

  get(id: string): WorkerEntry | undefined {
    return this.workers.get(id);
  }

  /** Connected, registered workers. */
  online(): WorkerEntry[] {
    return [...this.workers.values()].filter((w) => w.link !== null && w.registered && w.link.open);
  }

  /** All entries (offline ones past retention are forgotten first), sorted by id. */
  all(): WorkerEntry[] {
    this.prune();
    return [...this.workers.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The workers holding this job (normally at most one). */
  holdersOf(jobId: string): { worker: WorkerEntry; held: HeldJob }[] {
    const out: { worker: WorkerEntry; held: HeldJob }[] = [];
    for (const worker of this.workers.values()) {
      const held = worker.held.get(jobId);
      if (held) out.push({ worker, held });
    }
    return out;
  }

  /** Forgets offline workers that have been gone longer than the retention. */
  prune(): void {
    const cutoff = this.now() - this.opts.retentionMs;
    for (const [id, w] of this.workers) {
      if (w.link === null && w.disconnectedAt !== null && w.disconnectedAt < cutoff) this.workers.delete(id);
    }
  }

  /** Forgets every worker (shutdown, tests). */
  clear(): void {
    this.workers.clear();
  }

  view(id: string): WorkerView | null {
    const w = this.workers.get(id);
    return w ? toView(w) : null;
  }

  list(): WorkerView[] {
    return this.all().map(toView);
  }
}

export function capacityOf(w: WorkerEntry): number {
  return 1 + w.prefetch;
}

/** Connected workers may get new jobs when healthy, neither drained nor stopping, nor fetching workshop models. */
export function acceptsWork(w: WorkerEntry): boolean {
  return w.healthy && !w.draining && !w.stopping && w.preparing !== true;
}

export function statusOf(w: WorkerEntry): WorkerStatus {
  if (w.link === null || !w.registered) return 'offline';
  if (!w.healthy) return 'unhealthy';
  if (w.draining || w.stopping) return 'draining';
  return w.held.size > 0 ? 'busy' : 'idle';
}

/** The job ComfyUI runs now, else the oldest one assigned. */
export function currentJobOf(w: WorkerEntry): HeldJob | null {
  let first: HeldJob | null = null;
  for (const h of w.held.values()) {
    if (h.state === 'running') return h;
    if (!first || h.assignedAt < first.assignedAt) first = h;
  }
  return first;
}

export function toView(w: WorkerEntry): WorkerView {
  const total = w.devices.reduce((s, d) => s + d.vramTotal, 0);
  const free = w.devices.reduce((s, d) => s + d.vramFree, 0);
  const cur = currentJobOf(w);
  return {
    id: w.id,
    name: w.name,
    tokenName: w.tokenName,
    status: statusOf(w),
    connected: w.link !== null,
    healthy: w.healthy,
    draining: w.draining,
    stopping: w.stopping,
    connectedAt: new Date(w.connectedAt).toISOString(),
    disconnectedAt: iso(w.disconnectedAt),
    lastHeartbeatAt: iso(w.lastHeartbeatAt),
    agentVersion: w.agentVersion,
    comfyuiVersion: w.comfyuiVersion,
    devices: w.devices,
    vram: { used: Math.max(0, total - free), total },
    prefetch: w.prefetch,
    slots: capacityOf(w),
    envHash: w.envHash,
    warmModels: w.warmModels,
    currentJob: cur
      ? {
          jobId: cur.jobId,
          user: cur.user,
          attempt: cur.attempt,
          startedAt: iso(cur.startedAt),
          node: cur.node,
          progress: cur.progress,
        }
      : null,
    heldJobs: [...w.held.values()]
      .sort((a, b) => a.assignedAt - b.assignedAt)
      .map((h) => ({
        jobId: h.jobId,
        user: h.user,
        attempt: h.attempt,
        state: h.state,
        assignedAt: new Date(h.assignedAt).toISOString(),
      })),
    jobsCompleted: w.completed,
    jobsFailed: w.failed,
    ephemeral: w.ephemeral ?? null,
    preparing: w.preparing === true,
    ...(w.process ? { process: w.process } : {}),
  };
}

/**
 * Jobs sent ahead: held by a connected worker but not started by its ComfyUI (assigned, or waiting
 * in ComfyUI's own queue), as job id → user. The store counts them `running`; every view shows
 * them as next instead, so "running" is only what ComfyUI executes.
 */
export function sentAheadJobs(
  online: readonly { held: ReadonlyMap<string, { user: string; state: string }> }[],
  user?: string,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const w of online)
    for (const [jobId, h] of w.held)
      if (h.state !== 'running' && (user === undefined || h.user === user)) out.set(jobId, h.user);
  return out;
}
