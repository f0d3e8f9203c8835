import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { AGENT_MAX_RECONNECT_MS } from '../worker/protocol.js';
import type {
  ComfyPrompt,
  Job,
  JobError,
  JobOutput,
  JobStore,
  NewJob,
  Priority,
  QueueSettings,
  StatusCounts,
  TransitionResult,
} from '../store/types.js';
import { AppError } from '../errors.js';
import { effectivePriority, saveUserLevel, userLevels, type UserLevel } from './user-priority.js';

export interface QueueServiceOptions {
  /** Default 30 000. */
  leaseMs: number;
  /** Default 3. */
  maxAttempts: number;
  affinityWindow: number;
  affinityMaxSkips: number;
  /** 0 keeps history forever. */
  historyRetentionMs: number;
  /** How often expired leases are looked for. Default 1000 ms. */
  sweepIntervalMs?: number;
  /** Reads the model files a prompt needs; defaults to none. */
  modelsOf?: (prompt: ComfyPrompt) => string[];
  clock?: () => number;
  logger?: Logger;
}

/**
 * What changed, for live views (per-user `/ws`, the dashboard) and the dispatcher. With several
 * processes (src/cluster/event-relay.ts) another process's events are emitted here too, marked
 * `origin: 'remote'` and carrying the job without its prompt and ComfyUI extra_data: gauges, live
 * views and dispatchers react to them; per-process counters and alerts skip them.
 */
export type QueueEvent = (
  | { type: 'enqueued'; job: Job }
  | { type: 'claimed'; job: Job }
  | { type: 'finished'; job: Job }
  | { type: 'requeued'; job: Job }
  | { type: 'updated'; job: Job }
  | { type: 'settings'; settings: QueueSettings }
) & { origin?: 'remote' };

export interface QueueSnapshot {
  mode: QueueSettings['mode'];
  paused: boolean;
  limits: QueueSettings['limits'];
  counts: StatusCounts;
  byUser: Record<string, StatusCounts>;
  /** Pending jobs in service order (first = next to run), at most 500. */
  pending: {
    id: string;
    user: string;
    position: number;
    priority: Priority;
    front: boolean;
    createdAt: number;
  }[];
  running: {
    id: string;
    user: string;
    workerId: string | null;
    startedAt: number | null;
    attempts: number;
  }[];
}

/**
 * The queue as the rest of the control plane sees it: the store's operations plus events, the
 * lease sweeper and history retention. Owns no state of its own besides timers.
 */
export class QueueService extends EventEmitter<{ event: [QueueEvent] }> {
  private sweepTimer: NodeJS.Timeout | undefined;
  private lastPrune = 0;
  private readonly clock: () => number;
  /** The pending order, shared by every reader until the queue changes (see {@link pendingOrder}). */
  private order: { at: number; jobs: Promise<Job[]> } | null = null;
  /** A store call failed since the last good sweep: leases may have lapsed without anyone's fault. */
  private storeTrouble = false;
  /** Renews the leases of jobs live workers still hold (the dispatcher), run before a doubtful sweep. */
  private leaseKeeper: (() => Promise<void>) | null = null;
  /** Set by {@link start} until every running lease got a fresh lease after the (re)start. */
  private startGrace: Promise<void> | null = null;

  constructor(
    readonly store: JobStore,
    private readonly opts: QueueServiceOptions,
  ) {
    super();
    this.setMaxListeners(0);
    this.clock = opts.clock ?? Date.now;
    // Any change this process makes invalidates the cached order at once.
    this.on('event', () => (this.order = null));
  }

  /**
   * Pending jobs in service order, at most 500. Queue positions are read by every participant's
   * banner, the dashboard and the API; computing the order costs milliseconds (hundreds on Redis at
   * 100k pending), so one computation is shared until this process changes the queue, or for at most
   * one second (changes made by another process sharing a Redis store).
   */
  pendingOrder(): Promise<Job[]> {
    const now = Date.now();
    if (!this.order || now - this.order.at > 1000) {
      const jobs = this.store.pendingInOrder(500);
      this.order = { at: now, jobs };
      jobs.catch(() => {
        if (this.order?.jobs === jobs) this.order = null;
      });
    }
    return this.order.jobs;
  }

  /**
   * Starts the lease sweeper. Every running job first gets a fresh lease (now + leaseMs + the
   * agents' longest reconnect back-off): after a restart or an outage its worker gets a whole lease
   * past its next reconnect attempt to say it still runs (or finished) it, so a restart never sends
   * such a job to another worker.
   */
  start(): void {
    if (this.sweepTimer) return;
    this.startGrace = this.extendRunningLeases().catch((err: unknown) => {
      this.opts.logger?.warn({ err }, 'could not extend running leases after the start');
    });
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.opts.logger?.error({ err }, 'lease sweep failed'));
    }, this.opts.sweepIntervalMs ?? 1000);
    this.sweepTimer.unref();
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  async enqueue(input: Omit<NewJob, 'models'>): Promise<Job> {
    const models = this.opts.modelsOf?.(input.prompt) ?? [];
    const level = (await userLevels(this.store))[input.user];
    const priority = effectivePriority(input.priority ?? 'normal', level);
    const job = await this.store.enqueue({ ...input, priority, models }, this.clock());
    this.emit('event', { type: 'enqueued', job });
    return job;
  }

  async claim(
    workerId: string,
    warmModels: string[],
    runnable?: (models: readonly string[]) => boolean,
  ): Promise<Job | null> {
    const job = await this.store.claim({
      workerId,
      warmModels,
      ...(runnable ? { runnable } : {}),
      leaseMs: this.opts.leaseMs,
      now: this.clock(),
      affinity: { window: this.opts.affinityWindow, maxSkips: this.opts.affinityMaxSkips },
    });
    if (job) this.emit('event', { type: 'claimed', job });
    return job;
  }

  /** Who renews the leases live workers hold before a sweep that follows store trouble. */
  setLeaseKeeper(keeper: (() => Promise<void>) | null): void {
    this.leaseKeeper = keeper;
  }

  async renewLease(jobId: string, workerId: string, attempt: number): Promise<boolean> {
    try {
      return await this.store.renewLease(jobId, workerId, attempt, this.opts.leaseMs, this.clock());
    } catch (err) {
      this.storeTrouble = true;
      throw err;
    }
  }

  /**
   * A worker still runs this attempt: renew its lease, or take the job back from the queue for it
   * when the lease lapsed and nobody claimed it since (see {@link JobStore.adopt}).
   */
  async adopt(jobId: string, workerId: string, attempt: number): Promise<boolean> {
    const before = await this.store.getJob(jobId);
    if (!before) return false;
    const ok = await this.store.adopt(jobId, workerId, attempt, this.opts.leaseMs, this.clock());
    if (ok && before.status === 'pending') {
      const job = await this.store.getJob(jobId);
      this.opts.logger?.info({ jobId, attempt, workerId }, 'worker still runs a lapsed job; taken back');
      if (job) this.emit('event', { type: 'claimed', job });
    }
    return ok;
  }

  /** `at`: when it finished (default now), e.g. when its success was announced ahead of the record. */
  async complete(
    jobId: string,
    attempt: number,
    outputs: JobOutput[],
    at?: number,
  ): Promise<TransitionResult> {
    return this.finished(await this.store.complete(jobId, attempt, outputs, at ?? this.clock()));
  }

  async fail(jobId: string, attempt: number, error: JobError): Promise<TransitionResult> {
    return this.finished(await this.store.fail(jobId, attempt, error, this.clock()));
  }

  async release(jobId: string, attempt: number): Promise<TransitionResult> {
    const r = await this.store.release(jobId, attempt, this.clock());
    if (r.ok) this.emit('event', { type: 'requeued', job: r.job });
    return r;
  }

  /**
   * Gives a claimed job back as a lost attempt: its lease ends now and the sweeper requeues it
   * (attempt counted) or fails it with `worker_lost` once it has used every attempt.
   */
  async abandon(jobId: string, workerId: string, attempt: number): Promise<TransitionResult> {
    const held = await this.store.renewLease(jobId, workerId, attempt, 0, this.clock());
    if (!held) return { ok: false, reason: 'stale' };
    await this.sweep();
    const job = await this.store.getJob(jobId);
    if (!job) return { ok: false, reason: 'not_found' };
    // The sweep has already emitted `requeued` or `finished`, so callers must not announce it again.
    return { ok: true, job, duplicate: true };
  }

  /** Cancels a job; throws JOB_NOT_FOUND or JOB_FINISHED. */
  async cancel(jobId: string): Promise<Job> {
    const r = await this.store.cancel(jobId, this.clock());
    if (!r.ok) {
      if (r.reason === 'not_found') throw new AppError('JOB_NOT_FOUND');
      throw new AppError('JOB_FINISHED', `Job ${jobId} has already ${r.job?.status ?? 'finished'}.`);
    }
    this.emit('event', { type: 'finished', job: r.job });
    return r.job;
  }

  async update(jobId: string, patch: { priority?: Priority; front?: boolean }): Promise<Job> {
    let job = await this.store.getJob(jobId);
    if (!job) throw new AppError('JOB_NOT_FOUND');
    if (job.status !== 'pending' && job.status !== 'running') {
      throw new AppError('JOB_FINISHED', `Job ${jobId} has already ${job.status}.`);
    }
    if (patch.priority && patch.priority !== job.priority)
      job = (await this.store.setPriority(jobId, patch.priority)) ?? job;
    if (patch.front) job = (await this.store.moveToFront(jobId)) ?? job;
    this.emit('event', { type: 'updated', job });
    return job;
  }

  /**
   * Gives a participant their own level (null: back to `normal`), for the jobs they queue from now
   * on and those waiting now: each waiting job at the default (or at the old level) moves to the new
   * one. Returns the old level and how many waiting jobs changed.
   */
  async setUserLevel(
    user: string,
    level: UserLevel | null,
  ): Promise<{ from: UserLevel | null; changed: number }> {
    const from = (await userLevels(this.store))[user] ?? null;
    // Stored first: a job queued meanwhile gets the new level from enqueue, or is found below.
    await saveUserLevel(this.store, user, level);
    const target: Priority = level ?? 'normal';
    let changed = 0;
    let cursor: string | undefined;
    do {
      const page = await this.store.listJobs({
        user,
        status: 'pending',
        limit: 500,
        ...(cursor ? { cursor } : {}),
      });
      for (const j of page.jobs) {
        if (j.priority === target || (j.priority !== 'normal' && j.priority !== from)) continue;
        const job = await this.store.setPriority(j.id, target);
        if (job?.status !== 'pending') continue;
        changed++;
        this.emit('event', { type: 'updated', job });
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return { from, changed };
  }

  async updateSettings(patch: Parameters<JobStore['updateSettings']>[0]): Promise<QueueSettings> {
    const settings = await this.store.updateSettings(patch);
    this.emit('event', { type: 'settings', settings });
    return settings;
  }

  /** Requeues jobs whose lease lapsed, and prunes old history once an hour. */
  async sweep(): Promise<void> {
    if (this.startGrace) await this.startGrace;
    try {
      // After store trouble the renewals of live workers may have failed: renew what they still hold
      // before anything counts as lapsed.
      if (this.storeTrouble && this.leaseKeeper) await this.leaseKeeper();
      await this.requeueLapsed();
      this.storeTrouble = false;
    } catch (err) {
      this.storeTrouble = true;
      throw err;
    }
  }

  /** Every running job gets a lease of now + leaseMs (its worker keeps it by renewing). */
  private async extendRunningLeases(): Promise<void> {
    let cursor: string | undefined;
    let n = 0;
    do {
      const page = await this.store.listJobs({
        status: 'running',
        limit: 500,
        order: 'asc',
        ...(cursor ? { cursor } : {}),
      });
      for (const j of page.jobs) {
        if (
          j.workerId &&
          (await this.store.renewLease(
            j.id,
            j.workerId,
            j.attempts,
            this.opts.leaseMs + AGENT_MAX_RECONNECT_MS,
            this.clock(),
          ))
        )
          n++;
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    if (n > 0)
      this.opts.logger?.info({ jobs: n }, 'running jobs keep a fresh lease while their workers reconnect');
    this.startGrace = null;
  }

  private async requeueLapsed(): Promise<void> {
    const now = this.clock();
    const { requeued, failed } = await this.store.requeueExpired(now, this.opts.maxAttempts);
    for (const job of requeued) {
      this.opts.logger?.warn(
        { jobId: job.id, user: job.user, attempts: job.attempts },
        'lease expired; job requeued',
      );
      this.emit('event', { type: 'requeued', job });
    }
    for (const job of failed) {
      this.opts.logger?.error({ jobId: job.id, user: job.user }, 'job failed on every attempt (worker_lost)');
      this.emit('event', { type: 'finished', job });
    }
    if (this.opts.historyRetentionMs > 0 && now - this.lastPrune > 3_600_000) {
      this.lastPrune = now;
      await this.store.pruneHistory(now - this.opts.historyRetentionMs);
    }
  }

  async snapshot(): Promise<QueueSnapshot> {
    const [settings, counts, users, pending, running] = await Promise.all([
      this.store.getSettings(),
      this.store.countByStatus(),
      this.store.userCounters(),
      this.pendingOrder(),
      this.store.listJobs({ status: 'running', limit: 500, order: 'asc' }),
    ]);
    const byUser: Record<string, StatusCounts> = {};
    for (const u of users) {
      const { user: name, gpuMs: _g, lastActivityAt: _l, ...c } = u;
      byUser[name] = c;
    }
    return {
      mode: settings.mode,
      paused: settings.paused,
      limits: settings.limits,
      counts,
      byUser,
      pending: pending.map((j, i) => ({
        id: j.id,
        user: j.user,
        position: i + 1,
        priority: j.priority,
        front: j.front > 0,
        createdAt: j.createdAt,
      })),
      running: running.jobs.map((j) => ({
        id: j.id,
        user: j.user,
        workerId: j.workerId,
        startedAt: j.startedAt,
        attempts: j.attempts,
      })),
    };
  }

  /** 1-based place of a pending job in service order, or null (not pending, or beyond 500). */
  async positionOf(jobId: string): Promise<number | null> {
    const pending = await this.pendingOrder();
    const i = pending.findIndex((j) => j.id === jobId);
    return i < 0 ? null : i + 1;
  }

  private finished(r: TransitionResult): TransitionResult {
    if (r.ok && !r.duplicate) this.emit('event', { type: 'finished', job: r.job });
    return r;
  }
}
