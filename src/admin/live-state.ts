import type { AccountService } from '../auth/account-service.js';
import { workflowName } from '../comfy/prompt-tools.js';
import { sentAheadJobs, statusOf, type WorkerEntry, type WorkerReader } from '../dispatch/worker-registry.js';
import type { QueueService } from '../scheduler/queue-service.js';
import { userLevels } from '../scheduler/user-priority.js';
import { loraUsageByUser, type LoraUsage } from '../loras/lora-library.js';
import type { Job, JobStore } from '../store/types.js';
import type { AuditLog } from './audit-log.js';
import type { BroadcastService } from '../broadcast/broadcast.js';
import type { ConnectionTracker } from './connection-tracker.js';
import type {
  FailureRow,
  HealthInfo,
  HeldRow,
  LiveSections,
  OrphanRow,
  ParticipantRow,
  PendingRow,
  QueueInfo,
  SectionName,
  WorkerRow,
} from './view-types.js';

export interface LiveStateDeps {
  store: JobStore;
  queue: QueueService;
  workers: WorkerReader;
  accounts: AccountService;
  tracker: ConnectionTracker;
  audit: AuditLog;
  broadcast: BroadcastService;
  health: () => HealthInfo;
  /** GPUs on demand; absent or null when autoscaling is off. */
  autoscale?: () => LiveSections['autoscale'];
  /** This process's id when several share the store (shown on its own workers' cards). */
  processId?: string;
  /** LORA_QUOTA, shown beside each participant's own LoRAs. */
  loraQuota?: number;
}

const MAX_PENDING_ROWS = 500;

function loraRow(u: LoraUsage | undefined, quotaBytes: number): ParticipantRow['loras'] {
  return u && u.count > 0 ? { count: u.count, bytes: u.bytes, quotaBytes } : null;
}
const MAX_FAILURES = 25;
const MAX_AUDIT = 100;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A human name for a job's workflow: `metadata.workflow`, else read from ComfyUI's extra_data. */
export function workflowOf(job: Pick<Job, 'metadata'>): string | null {
  const m = job.metadata;
  if (typeof m.workflow === 'string' && m.workflow.trim() !== '') return m.workflow.trim().slice(0, 120);
  return workflowName(isRecord(m.extra_data) ? m.extra_data : isRecord(m.extraData) ? m.extraData : null);
}

/** `KSampler "Refiner" (#12)`-style label of a prompt node, or null. */
export function nodeLabel(
  prompt: Job['prompt'] | undefined,
  nodeId: string | null | undefined,
): string | null {
  if (!nodeId || !prompt) return null;
  const node = prompt[nodeId];
  if (!node) return null;
  const meta = isRecord(node._meta) ? node._meta : {};
  const title = typeof meta.title === 'string' && meta.title !== node.class_type ? meta.title : null;
  return title ? `${node.class_type} "${title.slice(0, 60)}"` : node.class_type;
}

interface JobInfo {
  number: number;
  user: string;
  workflow: string | null;
  prompt: Job['prompt'];
}

/**
 * Computes the sections of the dashboard's state from the services. Store reads happen only for
 * the sections asked for; what workers hold comes from the in-memory registry, with a small cache
 * of the held jobs' prompts (for node names) filled from queue events.
 */
export class LiveState {
  private readonly jobs = new Map<string, JobInfo>();

  constructor(private readonly deps: LiveStateDeps) {}

  /** Remembers a running job's static facts (queue events carry the whole job); forgets the others. */
  noteJob(job: Job): void {
    if (job.status === 'running') {
      this.jobs.set(job.id, {
        number: job.seq,
        user: job.user,
        workflow: workflowOf(job),
        prompt: job.prompt,
      });
    } else {
      this.jobs.delete(job.id);
    }
  }

  async compute<K extends SectionName>(name: K): Promise<LiveSections[K]> {
    return (await this.computeAny(name)) as LiveSections[K];
  }

  private computeAny(name: SectionName): Promise<LiveSections[SectionName]> {
    switch (name) {
      case 'queue':
        return this.queueInfo();
      case 'pending':
        return this.pending();
      case 'workers':
        return this.workerRows();
      case 'orphans':
        return this.orphans();
      case 'participants':
        return this.participants();
      case 'failures':
        return this.failures();
      case 'audit':
        return this.deps.audit.recent(MAX_AUDIT);
      case 'broadcast':
        return this.deps.broadcast.get();
      case 'health':
        return Promise.resolve(this.deps.health());
      case 'autoscale':
        return Promise.resolve(this.deps.autoscale?.() ?? null);
    }
  }

  async all(): Promise<LiveSections> {
    const names: SectionName[] = [
      'queue',
      'pending',
      'workers',
      'orphans',
      'participants',
      'failures',
      'audit',
      'broadcast',
      'health',
      'autoscale',
    ];
    const values = await Promise.all(names.map((n) => this.computeAny(n)));
    return Object.fromEntries(names.map((n, i) => [n, values[i]])) as unknown as LiveSections;
  }

  private async queueInfo(): Promise<QueueInfo> {
    const [settings, counts] = await Promise.all([
      this.deps.store.getSettings(),
      this.deps.store.countByStatus(),
    ]);
    const next = Math.min(sentAheadJobs(this.deps.workers.online()).size, counts.running);
    return {
      mode: settings.mode,
      paused: settings.paused,
      limits: settings.limits,
      counts: { ...counts, running: counts.running - next },
      next,
    };
  }

  private async pending(): Promise<PendingRow[]> {
    const jobs = (await this.deps.queue.pendingOrder()).slice(0, MAX_PENDING_ROWS);
    return jobs.map((j, i) => ({
      id: j.id,
      number: j.seq,
      position: i + 1,
      user: j.user,
      workflow: workflowOf(j),
      models: j.models,
      createdAt: j.createdAt,
      priority: j.priority,
      front: j.front > 0,
      attempts: j.attempts,
    }));
  }

  private async infoOf(jobId: string): Promise<JobInfo | null> {
    const hit = this.jobs.get(jobId);
    if (hit) return hit;
    const job = await this.deps.store.getJob(jobId);
    if (!job) return null;
    this.noteJob(job);
    return (
      this.jobs.get(jobId) ?? {
        number: job.seq,
        user: job.user,
        workflow: workflowOf(job),
        prompt: job.prompt,
      }
    );
  }

  private async workerRows(): Promise<WorkerRow[]> {
    const entries = this.deps.workers.all();
    return Promise.all(entries.map((w) => this.workerRow(w)));
  }

  private async workerRow(w: WorkerEntry): Promise<WorkerRow> {
    const held: HeldRow[] = [];
    const status = statusOf(w);
    // An offline worker's jobs are listed as orphans until their leases lapse, not on its card.
    const list = [...(status === 'offline' ? [] : w.held.values())].sort(
      (a, b) =>
        (a.state === 'running' ? 0 : 1) - (b.state === 'running' ? 0 : 1) || a.assignedAt - b.assignedAt,
    );
    for (const h of list) {
      const info = await this.infoOf(h.jobId);
      held.push({
        jobId: h.jobId,
        number: info?.number ?? null,
        user: h.user,
        workflow: info?.workflow ?? null,
        attempt: h.attempt,
        state: h.state,
        startedAt: h.startedAt,
        node: h.node,
        nodeType: nodeLabel(info?.prompt, h.node),
        progress: h.progress,
      });
    }
    const vramTotal = w.devices.reduce((s, d) => s + d.vramTotal, 0);
    const vramFree = w.devices.reduce((s, d) => s + d.vramFree, 0);
    return {
      id: w.id,
      name: w.name,
      status,
      healthy: w.healthy,
      draining: w.draining,
      stopping: w.stopping,
      connected: w.link !== null,
      comfyuiVersion: w.comfyuiVersion,
      agentVersion: w.agentVersion,
      gpus: w.devices.map((d) => d.name),
      vramUsed: Math.max(0, vramTotal - vramFree),
      vramTotal,
      connectedAt: w.connectedAt,
      disconnectedAt: w.disconnectedAt,
      lastHeartbeatAt: w.lastHeartbeatAt,
      warmModels: w.warmModels,
      slots: 1 + w.prefetch,
      held,
      jobsCompleted: w.completed,
      jobsFailed: w.failed,
      ...((w.process ?? this.deps.processId) ? { process: w.process ?? this.deps.processId } : {}),
    };
  }

  private async orphans(): Promise<OrphanRow[]> {
    const page = await this.deps.store.listJobs({ status: 'running', limit: 500, order: 'asc' });
    const rows: OrphanRow[] = [];
    for (const j of page.jobs) {
      const heldOnline = this.deps.workers
        .holdersOf(j.id)
        .some(({ worker }) => worker.link !== null && worker.registered);
      if (heldOnline) continue;
      rows.push({
        id: j.id,
        number: j.seq,
        user: j.user,
        workflow: workflowOf(j),
        workerId: j.workerId,
        startedAt: j.startedAt,
        attempts: j.attempts,
        leaseExpiresAt: j.leaseExpiresAt,
      });
    }
    return rows;
  }

  private async participants(): Promise<ParticipantRow[]> {
    const [accounts, counters, settings, levels, loras] = await Promise.all([
      this.deps.accounts.list(),
      this.deps.store.userCounters(),
      this.deps.store.getSettings(),
      userLevels(this.deps.store),
      loraUsageByUser(this.deps.store),
    ]);
    const byUser = new Map(counters.map((c) => [c.user, c]));
    const roles = new Map(accounts.map((a) => [a.name, a.role]));
    // Every participant account, plus anyone else (an instructor) who has jobs.
    const names = new Set<string>(accounts.filter((a) => a.role === 'participant').map((a) => a.name));
    for (const c of counters)
      if (c.pending + c.running + c.completed + c.failed + c.cancelled > 0) names.add(c.user);
    const nextByUser = new Map<string, number>();
    for (const u of sentAheadJobs(this.deps.workers.online()).values())
      nextByUser.set(u, (nextByUser.get(u) ?? 0) + 1);
    const rows: ParticipantRow[] = [];
    for (const user of names) {
      const c = byUser.get(user);
      const next = Math.min(nextByUser.get(user) ?? 0, c?.running ?? 0);
      const override = settings.userLimits[user];
      rows.push({
        user,
        role: roles.get(user) ?? 'participant',
        online: this.deps.tracker.tabsOf(user),
        pending: c?.pending ?? 0,
        running: (c?.running ?? 0) - next,
        next,
        completed: c?.completed ?? 0,
        failed: c?.failed ?? 0,
        cancelled: c?.cancelled ?? 0,
        gpuSeconds: Math.round((c?.gpuMs ?? 0) / 1000),
        lastActivityAt: c?.lastActivityAt ?? null,
        limits: override && Object.keys(override).length > 0 ? { ...override } : null,
        priority: levels[user] ?? null,
        loras: loraRow(loras.get(user), this.deps.loraQuota ?? 0),
      });
    }
    return rows.sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  }

  private async failures(): Promise<FailureRow[]> {
    const page = await this.deps.store.listJobs({ status: 'failed', limit: MAX_FAILURES, order: 'desc' });
    return page.jobs
      .map((j) => ({
        id: j.id,
        number: j.seq,
        user: j.user,
        workflow: workflowOf(j),
        finishedAt: j.finishedAt,
        reason: j.error?.reason ?? 'unknown',
        message: (j.error?.message ?? 'The job failed.').slice(0, 2000),
        nodeId: j.error?.nodeId ?? null,
        nodeType: j.error?.nodeType ?? nodeLabel(j.prompt, j.error?.nodeId),
        exceptionType: j.error?.exceptionType ?? null,
        workerId: j.workerId,
        attempts: j.attempts,
      }))
      .sort((a, b) => (b.finishedAt ?? 0) - (a.finishedAt ?? 0));
  }
}
