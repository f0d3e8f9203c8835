/**
 * A worker's final word on a job attempt (completed, failed, given back, cancelled; also a job it
 * lost or held when its token was revoked), recorded in the queue by {@link JobOutcomes.finish}:
 * free the slot, check that the store still gives the attempt to this worker, record it, then let
 * the owner hear ComfyUI's held-back ending and tidy up. Kept apart from worker-reports.ts (the
 * stream of heartbeats and events) because recording is its own ordered sequence with its own
 * failure handling, and the dispatcher must know while one is under way ({@link JobOutcomes.isReporting}).
 */
import type { Logger } from 'pino';
import type { QueueService } from '../scheduler/queue-service.js';
import type { Job, TransitionResult } from '../store/types.js';
import type { FileStore } from '../files/file-store.js';
import { userFileKey } from '../files/safe-path.js';
import { jobSegment } from '../worker/agent/files.js';
import type { AgentMessage } from '../worker/protocol.js';
import type { JobEventBus, JobEventMessage } from './job-event-bus.js';
import type { OutputNamer } from './output-names.js';
import type { HeldJob, WorkerEntry } from './worker-registry.js';

type Msg<T extends AgentMessage['type']> = Extract<AgentMessage, { type: T }>;

export interface JobOutcomesDeps {
  queue: QueueService;
  bus: JobEventBus;
  logger: Logger;
  /** Asks the dispatcher for a dispatch pass (a slot was freed). */
  trigger: () => void;
  /** Users' files: stray outputs of a job's other attempts are removed when it completes. */
  files?: FileStore | undefined;
  /** Names a completed job's outputs as the participant sees them (shared with the relayed events). */
  namer: OutputNamer;
  /**
   * Several processes: when a job taken over from a process that died completes, the ComfyUI
   * events its owner may have missed (`execution_start`, an output node's `executed`) that are
   * neither in the durable event log nor in `seen` — made again from the recorded job, to go out
   * before ComfyUI's ending. Absent (one process): nothing is made up. `makeUp: false` (the worker
   * sent its events again, `hello.eventSeq`): nothing to do.
   */
  recoverEvents?:
    | ((
        job: Job,
        workerId: string,
        seen: ReadonlySet<string>,
        opts?: { ending?: boolean; makeUp?: boolean },
      ) => Promise<JobEventMessage[]>)
    | undefined;
  /**
   * Several processes: resolves once the events published so far are in the durable log. A finish
   * is acknowledged to the agent only after its ending is logged, so a process killed before that
   * gets the report again elsewhere (which then makes up what the log lacks).
   */
  settle?: (() => Promise<void>) | undefined;
}

export class JobOutcomes {
  private readonly queue: QueueService;
  private readonly bus: JobEventBus;
  private readonly logger: Logger;
  private readonly trigger: () => void;
  private readonly files: FileStore | undefined;
  private readonly recoverEvents: JobOutcomesDeps['recoverEvents'];
  private readonly settle: JobOutcomesDeps['settle'];
  private readonly namer: OutputNamer;
  /** Jobs whose worker's report is being recorded right now (their ending follows it). */
  private readonly reporting = new Set<string>();

  constructor(deps: JobOutcomesDeps) {
    this.queue = deps.queue;
    this.bus = deps.bus;
    this.logger = deps.logger;
    this.trigger = deps.trigger;
    this.files = deps.files;
    this.recoverEvents = deps.recoverEvents;
    this.settle = deps.settle;
    this.namer = deps.namer;
  }

  /** Whether a worker's report of this job is being recorded (its `worker_done` follows). */
  isReporting(jobId: string): boolean {
    return this.reporting.has(jobId);
  }

  /** Nothing more about this attempt will come from the worker (see `worker_done` on the bus). */
  workerDone(entry: WorkerEntry, held: HeldJob): void {
    this.bus.publish({ kind: 'worker_done', jobId: held.jobId, user: held.user, workerId: entry.id });
  }

  /** The outputs are reported under the job's own names and recorded under the participant's. */
  async jobCompleted(entry: WorkerEntry, msg: Msg<'job_completed'>): Promise<void> {
    // Announced early (`welcome.earlyOutputs`): recorded at the time its success went out, so the
    // record matches the history entry clients were shown meanwhile.
    const held = entry.held.get(msg.jobId);
    const at = held?.attempt === msg.attempt ? held.succeededAt : undefined;
    // `finish` has just read the job: its owner names the outputs (no second read on the way).
    await this.finish(entry, msg.jobId, msg.attempt, 'complete', async (id, a, job) => {
      const outputs = await this.namer.nameOutputs(job.user, id, msg.outputs);
      return this.queue.complete(id, a, outputs, at);
    });
  }

  async jobFailed(entry: WorkerEntry, msg: Msg<'job_failed'>): Promise<void> {
    await this.finish(entry, msg.jobId, msg.attempt, 'fail', (id, a) => this.queue.fail(id, a, msg.error));
  }

  async jobReleased(entry: WorkerEntry, msg: Msg<'job_released'>): Promise<void> {
    const held = entry.held.get(msg.jobId);
    // A job that was running when its ComfyUI died may be what killed it (an out-of-memory video,
    // say). Counting that attempt means such a prompt fails after MAX_ATTEMPTS instead of taking
    // down every GPU in turn; a job given back before it started costs nothing.
    const lostWhileRunning =
      held?.attempt === msg.attempt && held.state === 'running' && msg.reason === 'comfyui_unreachable';
    await this.finish(
      entry,
      msg.jobId,
      msg.attempt,
      'release',
      (id, a) => (lostWhileRunning ? this.queue.abandon(id, entry.id, a) : this.queue.release(id, a)),
      msg.reason,
    );
  }

  /** The agent cancelled the job in ComfyUI. If nobody asked for it, the job fails as `interrupted`. */
  async jobCancelled(entry: WorkerEntry, msg: Msg<'job_cancelled'>): Promise<void> {
    const held = entry.held.get(msg.jobId);
    const asked = held?.attempt === msg.attempt && held.cancelRequested;
    if (asked || !held || held.attempt !== msg.attempt) {
      if (held?.attempt === msg.attempt) {
        entry.held.delete(msg.jobId);
        this.workerDone(entry, held);
      }
      this.trigger();
      return;
    }
    await this.finish(entry, msg.jobId, msg.attempt, 'fail', (id, a) =>
      this.queue.fail(id, a, {
        reason: 'interrupted',
        message: 'The worker cancelled the job without being asked to.',
      }),
    );
  }

  /**
   * Applies a worker's final word on an attempt: frees its slot, then completes, fails or releases
   * the job in the store keyed by `(jobId, attempt)`, but only when the store still gives that
   * job to this worker. A duplicate report of the same attempt is harmless; a stale one is logged
   * and ignored.
   */
  async finish(
    entry: WorkerEntry,
    jobId: string,
    attempt: number,
    what: 'complete' | 'fail' | 'release',
    apply: (jobId: string, attempt: number, job: Job) => Promise<TransitionResult>,
    note?: string,
  ): Promise<void> {
    const held = entry.held.get(jobId);
    // Free the slot first, so the queue's `finished` event does not look like a cancellation.
    const freed = held && held.attempt === attempt ? held : null;
    if (freed) {
      entry.held.delete(jobId);
      this.reporting.add(jobId);
    }
    try {
      const job = await this.queue.store.getJob(jobId);
      // A finish may come late, from an attempt whose lease lapsed (the control plane or the store
      // was away): it ran, so the store accepts it while the job waits in the queue under that
      // attempt or a later attempt runs elsewhere. Never the same attempt number held by another
      // worker (an attempt given back and claimed again reuses its number).
      const late =
        what !== 'release' &&
        job !== null &&
        (attempt < job.attempts || (job.status === 'pending' && attempt === job.attempts));
      if (!job || (job.workerId !== entry.id && !late)) {
        this.logger.warn(
          { jobId, attempt, workerId: entry.id, holder: job?.workerId ?? null, what },
          'report for a job this worker does not hold; ignored',
        );
        return;
      }
      const r = await apply(jobId, attempt, job);
      if (!r.ok) {
        this.logger.warn(
          { jobId, attempt, workerId: entry.id, what, reason: r.reason },
          'stale report ignored',
        );
        return;
      }
      if (r.duplicate) {
        this.logger.debug({ jobId, attempt, workerId: entry.id, what }, 'duplicate report; nothing to do');
        // Sent again because its ack never came: the process that recorded it may have died before
        // its owner heard the ending (several processes only; one process makes nothing up).
        if (what === 'complete' && this.recoverEvents && r.job) {
          const missed = await this.recoverEvents(r.job, entry.id, new Set(), {
            ending: true,
            makeUp: entry.eventSeq !== true,
          }).catch(() => []);
          for (const ev of missed) this.bus.publish(ev);
        }
        // Its events, sent again before it, are logged before the ack (which lets the agent forget them).
        if (what !== 'release') await this.settle?.();
        return;
      }
      // Taken over from a process that died: first what the owner may have missed with it.
      if (what === 'complete' && freed?.adopted && this.recoverEvents && r.job) {
        // ComfyUI's ending, held back until the finish is recorded, died with that process when the
        // worker relayed it there: then it is made up too.
        const ending = !(freed.ending ?? []).some((e) => e.event.type === 'execution_success');
        const missed = await this.recoverEvents(r.job, entry.id, freed.adopted.seen, {
          ending,
          makeUp: entry.eventSeq !== true,
        }).catch((err: unknown) => {
          this.logger.warn({ err, jobId }, 'could not recover the events of a job taken over');
          return [];
        });
        for (const ev of missed) this.bus.publish(ev);
      }
      // Recorded: now the owner may hear how ComfyUI ended it (`/history` and the outputs agree).
      if (what !== 'release') {
        for (const ev of freed?.ending ?? []) this.bus.publish(ev);
        await this.settle?.();
      }
      if ('late' in r && r.late) {
        this.logger.warn(
          { jobId, attempt, workerId: entry.id, what, attempts: r.job?.attempts },
          'late report of an attempt that lost its lease accepted; the job is done and runs nowhere else',
        );
      }
      if (what === 'complete') {
        entry.completed += 1;
        entry.warmModels = job.models;
        await this.removeStrayOutputs(r.job);
      } else if (what === 'fail') entry.failed += 1;
      this.logger.info(
        { jobId, attempt, workerId: entry.id, what, ...(note ? { reason: note } : {}) },
        `job ${what}d by worker`,
      );
    } catch (err) {
      // The store did not take it (unreachable?): the job is still ours until the agent's repeat
      // of the report gets through, so keep renewing its lease meanwhile.
      if (freed && !entry.held.has(jobId)) entry.held.set(jobId, freed);
      throw err;
    } finally {
      if (freed) this.reporting.delete(jobId);
      if (freed && !entry.held.has(jobId)) this.workerDone(entry, freed);
      this.trigger();
    }
  }

  /**
   * A job completed: files in its output folders that its outputs do not list came from another
   * attempt (one that uploaded part of its outputs, then lost its worker or the race to finish).
   * They go, so the user's space holds exactly one set of the job's outputs. Best effort.
   */
  private async removeStrayOutputs(job: Job): Promise<void> {
    if (!this.files || job.outputs.length === 0) return;
    const seg = jobSegment(job.id);
    const keep = new Set<string>();
    const areas = new Set<'output' | 'temp'>();
    for (const o of job.outputs) {
      if (o.value !== undefined) continue;
      areas.add(o.type);
      keep.add(userFileKey(job.user, o.type, o.subfolder, o.filename));
    }
    try {
      for (const area of areas) {
        for (const f of await this.files.list(userFileKey(job.user, area, seg))) {
          if (keep.has(f.key)) continue;
          await this.files.delete(f.key);
          this.logger.info({ jobId: job.id, key: f.key }, 'removed an output of another attempt of the job');
        }
      }
    } catch (err) {
      this.logger.warn({ err, jobId: job.id }, 'could not remove stray outputs of a completed job');
    }
  }
}
