import type { Logger } from 'pino';
import { ModelPlacement } from './model-placement.js';
import { AppError } from '../errors.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import type { Job, JobStatus } from '../store/types.js';
import type { AgentMessage } from '../worker/protocol.js';
import type { JobEventBus, JobStatusKind } from './job-event-bus.js';
import { WorkerReports, type WorkerReportsDeps } from './worker-reports.js';
import type { FileStore } from '../files/file-store.js';
import { TakeBack } from './take-back.js';
import { registerHello, type Registered } from './worker-hello.js';
import {
  acceptsWork,
  capacityOf,
  toView,
  type HeldJob,
  type WorkerEntry,
  type WorkerLink,
  type WorkerRegistry,
  type WorkerView,
} from './worker-registry.js';

type Msg<T extends AgentMessage['type']> = Extract<AgentMessage, { type: T }>;

export interface DispatcherOptions {
  clock?: () => number;
  /** Users' files, to remove stray outputs of a job's other attempts when it completes. */
  files?: FileStore;
  /**
   * Other processes share the queue (src/cluster): a job no worker of ours holds may be held by a
   * worker connected elsewhere, so its ending is not made up here (see {@link jobLeftWorker}).
   */
  clustered?: boolean;
  /** See {@link WorkerReportsDeps.recoverEvents}. */
  recoverEvents?: WorkerReportsDeps['recoverEvents'];
  /** See {@link WorkerReportsDeps.settle}. */
  settle?: WorkerReportsDeps['settle'];
  /** See {@link WorkerReportsDeps.inFlight}. */
  inFlight?: WorkerReportsDeps['inFlight'];
}

/**
 * Pushes work to workers and applies what they report, keeping the central queue (QueueService)
 * and the registry of live workers in step.
 *
 * Dispatch is event-driven: every queue event (enqueued, finished, requeued, updated, settings)
 * and every worker event that frees capacity (hello, completion, release, undrain, healthy again)
 * triggers a dispatch pass. Passes run one at a time; triggers during a pass coalesce into one more
 * pass. A pass repeatedly picks the eligible worker (connected, healthy, not draining) with the
 * fewest held jobs, claims the next job for it (`queue.claim` with its warm models) and sends
 * `assign`, until no worker has a free slot (1 running + `prefetch` queued) or nothing is claimable.
 * So idle workers fill before anyone prefetches, and no loop ever sleeps or polls. Jobs sent ahead
 * are asked back (pause, a more urgent job) through {@link TakeBack} (take-back.ts); a worker's
 * `hello` is registered by {@link registerHello} (worker-hello.ts).
 */
export class Dispatcher {
  private readonly clock: () => number;
  private readonly clustered: boolean;
  private readonly onEvent = (e: QueueEvent): void => this.handleQueueEvent(e);
  private started = false;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private again = false;
  /** Asks workers for jobs sent ahead: when the queue is paused, or for a more urgent job. */
  private readonly takeBack: TakeBack;
  /** The queue is paused (as of the last settings event): jobs sent ahead are taken back. */
  private paused = false;
  /** Applies what workers report about their jobs (heartbeats, events, outcomes). */
  readonly reports: WorkerReports;
  private readonly placement: ModelPlacement;

  constructor(
    private readonly queue: QueueService,
    private readonly registry: WorkerRegistry,
    private readonly bus: JobEventBus,
    private readonly logger: Logger,
    opts: DispatcherOptions = {},
  ) {
    this.clock = opts.clock ?? Date.now;
    this.placement = new ModelPlacement(queue.store);
    this.clustered = opts.clustered ?? false;
    this.takeBack = new TakeBack({
      queue,
      registry,
      logger,
      hasFreeSlot: () => this.eligible().length > 0,
    });
    this.reports = new WorkerReports({
      queue,
      bus,
      logger,
      clock: this.clock,
      trigger: () => this.trigger(),
      files: opts.files,
      recoverEvents: opts.recoverEvents,
      settle: opts.settle,
      clustered: this.clustered,
      inFlight: opts.inFlight,
    });
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopped = false;
    this.queue.on('event', this.onEvent);
    this.queue.setLeaseKeeper(() => this.keepLeases());
    this.trigger();
    // Paused before this process started: settings events only report changes.
    this.queue.store.getSettings().then(
      (s) => {
        if (!s.paused || this.paused) return;
        this.paused = true;
        this.takeBack.allSentAhead('queue paused');
      },
      (err: unknown) => this.logger.warn({ err }, 'could not read the queue settings'),
    );
  }

  /**
   * Renews (or takes back) the lease of every job a connected, healthy worker holds. The queue
   * runs this before the first sweep after store trouble, when heartbeat renewals may have failed
   * although the workers kept running their jobs.
   */
  async keepLeases(): Promise<void> {
    for (const worker of this.registry.online()) {
      if (!worker.registered || !worker.healthy) continue;
      for (const held of [...worker.held.values()]) {
        if (held.cancelRequested) continue;
        await this.queue.adopt(held.jobId, worker.id, held.attempt);
      }
    }
  }

  /** Stops reacting to events and waits for a running pass to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.started = false;
    this.queue.off('event', this.onEvent);
    this.queue.setLeaseKeeper(null);
    await this.idle();
  }

  /** Resolves when no dispatch pass is running (tests use it to wait for a quiet moment). */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /** Asks for a dispatch pass; coalesces with one already running. */
  trigger(): void {
    if (this.stopped || !this.started) return;
    if (this.loop) {
      this.again = true;
      return;
    }
    this.loop = this.runLoop().finally(() => {
      this.loop = null;
    });
  }

  private async runLoop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.pass();
        if (this.takeBack.urgent.size > 0) await this.takeBack.preempt();
      } catch (err) {
        this.logger.error({ err }, 'dispatch pass failed');
      }
    } while (this.again && !this.stopped);
  }

  private eligible(): WorkerEntry[] {
    return this.registry.online().filter((w) => acceptsWork(w) && w.held.size < capacityOf(w));
  }

  private async pass(): Promise<void> {
    // Workers whose token this pass has re-checked in the store (see below).
    const checked = new Set<WorkerEntry>();
    for (;;) {
      if (this.stopped) return;
      const candidates = this.eligible();
      if (candidates.length === 0) return;
      candidates.sort((a, b) => a.held.size - b.held.size || a.lastAssignedAt - b.lastAssignedAt);
      const worker = candidates[0]!;
      // A job whose model files only other GPUs have is left for them (model-placement.ts).
      const connected = this.registry.online();
      if (this.placement.needsLoad(connected)) await this.placement.load(connected);
      const job = await this.queue.claim(
        worker.id,
        this.warmModelsForClaim(worker),
        this.placement.runnableFor(worker, connected),
      );
      if (!job) return;
      // A revoke may come from another process: never hand a job to a worker whose token is gone.
      // Asked once per pass, and only once there is a job to hand over (a pass that finds nothing
      // reads no tokens); a revoked worker's job goes straight back to its place in the queue.
      if (!checked.has(worker) && worker.link?.authorized) {
        if (!(await worker.link.authorized())) {
          await this.queue.release(job.id, job.attempts);
          continue;
        }
        checked.add(worker);
      }
      // The worker may have gone away, or been drained, while the claim ran.
      const stillEligible = worker.link?.open && worker.registered && acceptsWork(worker);
      if (!stillEligible || !this.assign(worker, job)) {
        this.logger.info(
          { jobId: job.id, workerId: worker.id },
          'worker left during assignment; job given back',
        );
        await this.queue.release(job.id, job.attempts);
      }
    }
  }

  /** The models that will be loaded when this worker gets to a new job: those of its last job. */
  private warmModelsForClaim(worker: WorkerEntry): string[] {
    let latest: HeldJob | null = null;
    for (const h of worker.held.values()) if (!latest || h.assignedAt >= latest.assignedAt) latest = h;
    return latest ? latest.models : worker.warmModels;
  }

  private assign(worker: WorkerEntry, job: Job): boolean {
    const now = this.clock();
    const held: HeldJob = {
      jobId: job.id,
      attempt: job.attempts,
      user: job.user,
      models: job.models,
      state: 'assigned',
      priority: job.priority,
      front: job.front,
      assignedAt: now,
      startedAt: null,
      node: null,
      progress: null,
      releaseRequested: false,
      cancelRequested: false,
    };
    worker.held.set(job.id, held);
    worker.lastAssignedAt = now;
    const sent = worker.link?.send({
      type: 'assign',
      job: {
        jobId: job.id,
        attempt: job.attempts,
        user: job.user,
        prompt: job.prompt,
        extraData: extraDataOf(job),
        front: job.front > 0,
      },
    });
    if (!sent) {
      worker.held.delete(job.id);
      return false;
    }
    this.logger.debug({ jobId: job.id, attempt: job.attempts, workerId: worker.id }, 'job assigned');
    // Claimed just before a pause took effect: it must not start either.
    if (this.paused) this.takeBack.request(worker, held, 'queue paused');
    return true;
  }

  // ---- queue events -------------------------------------------------------------------------------

  private handleQueueEvent(e: QueueEvent): void {
    try {
      if (e.type === 'settings') {
        this.paused = e.settings.paused;
        if (this.paused) this.takeBack.allSentAhead('queue paused');
        this.trigger();
        return;
      }
      const job = e.job;
      this.publishStatus(job, statusKindOf(e.type, job.status));
      switch (e.type) {
        case 'enqueued':
          if (job.front > 0 || job.priority === 'instructor' || job.priority === 'high')
            this.takeBack.urgent.add(job.id);
          break;
        case 'updated':
          if (job.status === 'pending') this.takeBack.urgent.add(job.id);
          break;
        case 'claimed':
          return; // we claimed it ourselves
        case 'finished':
          this.jobLeftWorker(job, job.status === 'cancelled' ? 'cancelled' : 'finished', e.origin);
          // Its worker's report ended it: the report asks for a pass once the owner has been told
          // the job ended, so that announcement never waits behind a pass's store calls.
          if (this.reports.isReporting(job.id)) return;
          break;
        case 'requeued':
          this.jobLeftWorker(job, 'requeued', e.origin);
          break;
      }
      this.trigger();
    } catch (err) {
      this.logger.error({ err }, 'handling a queue event failed');
    }
  }

  /**
   * A job ended or went back to the queue without its worker saying so (cancelled by a user, lease
   * lapsed): tell the worker holding it to stop. A cancelled job keeps its slot until the agent
   * confirms (ComfyUI is still busy interrupting it); otherwise the slot is freed at once.
   */
  private jobLeftWorker(job: Job, why: 'cancelled' | 'finished' | 'requeued', origin?: 'remote'): void {
    const holders = this.registry.holdersOf(job.id);
    // No connected worker holds it (e.g. ours restarted and its worker has not come back), and no
    // report of it is being recorded: nobody will relay its ending. With other processes, a worker
    // connected to one of them may still hold it and relay the ending; only a job that ended here
    // because its worker was lost is known to have nobody left.
    if (
      holders.length === 0 &&
      job.workerId !== null &&
      !this.reports.isReporting(job.id) &&
      (!this.clustered || (origin !== 'remote' && job.error?.reason === 'worker_lost'))
    )
      this.bus.publish({ kind: 'worker_done', jobId: job.id, user: job.user, workerId: job.workerId });
    for (const { worker, held } of holders) {
      const online = worker.link?.open === true;
      if (online && !held.cancelRequested) {
        worker.link!.send({ type: 'cancel', jobId: held.jobId, attempt: held.attempt });
        this.logger.info(
          { jobId: job.id, attempt: held.attempt, workerId: worker.id, why },
          'told worker to cancel job',
        );
      }
      if (why === 'cancelled' && online) held.cancelRequested = true;
      else {
        worker.held.delete(job.id);
        // A worker that lost its connection here may be connected to another process by now and
        // relay the ending from there (it sends its events again): "done" would have every
        // owner's page make one up first. Should it never come, the page's fallback ends the job.
        // A cancel is ended at once all the same (a worker that comes back is told to forget it).
        if (online || !this.clustered || why === 'cancelled')
          this.bus.publish({ kind: 'worker_done', jobId: job.id, user: job.user, workerId: worker.id });
      }
    }
  }

  private publishStatus(job: Job, status: JobStatusKind): void {
    this.bus.publish({
      kind: 'status',
      jobId: job.id,
      user: job.user,
      status,
      jobStatus: job.status,
      workerId: job.workerId,
      job,
    });
  }

  // ---- worker lifecycle (called by the hub) ---------------------------------------------------------

  /** The worker entry if `link` is still its current connection (messages from a replaced link are ignored). */
  current(workerId: string, link: WorkerLink): WorkerEntry | null {
    const entry = this.registry.get(workerId);
    return entry && entry.link === link ? entry : null;
  }

  /**
   * Registers a worker after `hello` and re-adopts the jobs it still runs (see {@link registerHello}).
   * Call {@link activate} once the welcome is sent.
   */
  hello(link: WorkerLink, tokenName: string, msg: Msg<'hello'>): Promise<Registered> {
    const { queue, registry, logger, clock } = this;
    return registerHello({ queue, registry, logger, clock }, link, tokenName, msg);
  }

  /** The welcome went out: the worker may now receive jobs. */
  activate(entry: WorkerEntry, link: WorkerLink): void {
    if (entry.link !== link) return;
    if (!link.open) {
      this.disconnected(entry.id, link);
      return;
    }
    entry.registered = true;
    // Jobs it re-announced but ComfyUI has not started stay off the GPU while the queue is paused.
    if (this.paused) {
      for (const held of entry.held.values())
        if (held.state !== 'running') this.takeBack.request(entry, held, 'queue paused');
    }
    this.trigger();
  }

  /**
   * The connection ended. The worker is shown offline; its jobs stay claimed until their leases
   * lapse (the sweeper requeues them), so a quick reconnect loses nothing.
   */
  disconnected(workerId: string, link: WorkerLink): void {
    const entry = this.registry.disconnect(workerId, link);
    if (entry) this.logger.warn({ workerId, held: entry.held.size }, 'worker disconnected');
    // A cancelled job's ending will not come over this connection: the owner's page may end it.
    for (const held of entry?.held.values() ?? []) {
      if (held.cancelRequested)
        this.bus.publish({ kind: 'worker_done', jobId: held.jobId, user: held.user, workerId });
    }
  }

  setDraining(workerId: string, draining: boolean): WorkerView {
    const entry = this.registry.get(workerId);
    if (!entry) throw new AppError('WORKER_NOT_FOUND', `No worker with id ${workerId}.`);
    if (entry.draining !== draining) {
      entry.draining = draining;
      this.logger.info({ workerId, draining }, draining ? 'worker draining' : 'worker no longer draining');
    }
    if (entry.link?.open) entry.link.send({ type: 'drain', draining });
    if (!draining) this.trigger();
    return toView(entry);
  }
}

/** ComfyUI `extra_data` for a job: `metadata.extraData` (or `extra_data`) when it is an object. */
export function extraDataOf(job: Pick<Job, 'metadata'>): Record<string, unknown> {
  const m = job.metadata;
  const v = m.extraData ?? m.extra_data;
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function statusKindOf(type: Exclude<QueueEvent['type'], 'settings'>, status: JobStatus): JobStatusKind {
  switch (type) {
    case 'enqueued':
      return 'queued';
    case 'claimed':
      return 'assigned';
    case 'requeued':
      return 'requeued';
    case 'updated':
      return 'updated';
    case 'finished':
      return status === 'completed' ? 'completed' : status === 'failed' ? 'failed' : 'cancelled';
  }
}
