import type { Logger } from 'pino';
import { keyedOutputs, outputsOf } from '../comfy/prompt-tools.js';
import type { QueueService } from '../scheduler/queue-service.js';
import type { FileStore } from '../files/file-store.js';
import { userFileKey } from '../files/safe-path.js';
import type { AgentMessage } from '../worker/protocol.js';
import type { JobEventBus, JobEventMessage } from './job-event-bus.js';
import { JobOutcomes, type JobOutcomesDeps } from './job-outcomes.js';
import { TakenNumbers } from './taken-numbers.js';
import { OutputNamer } from './output-names.js';
import type { OutputsInFlight } from './outputs-in-flight.js';
import type { HeldJob, WorkerEntry } from './worker-registry.js';

type Msg<T extends AgentMessage['type']> = Extract<AgentMessage, { type: T }>;

/** Heartbeats in a row a held job may be missing from before it counts as lost by the worker. */
const LOST_AFTER_MISSED_BEATS = 2;
/** ComfyUI's verdicts on a prompt; what follows one is held back until the outcome is recorded. */
const VERDICTS = new Set(['execution_success', 'execution_error', 'execution_interrupted']);

export interface WorkerReportsDeps {
  queue: QueueService;
  bus: JobEventBus;
  logger: Logger;
  clock: () => number;
  /** Asks the dispatcher for a dispatch pass (a slot may have been freed). */
  trigger: () => void;
  /** Users' files: stray outputs of a job's other attempts are removed when it completes. */
  files?: FileStore | undefined;
  /** See {@link JobOutcomesDeps.recoverEvents}. */
  recoverEvents?: JobOutcomesDeps['recoverEvents'];
  /** See {@link JobOutcomesDeps.settle}. */
  settle?: JobOutcomesDeps['settle'];
  /** Other processes share the queue and the durable event log (see `finishedEvent`). */
  clustered?: boolean;
  /**
   * One process: outputs announced before they are stored (`welcome.earlyOutputs`), which `/view`
   * waits for. Absent: every output is stored before it is announced, and so is the job's ending.
   */
  inFlight?: OutputsInFlight | undefined;
}

/**
 * What a registered worker tells the control plane about its jobs (heartbeats, starts, ComfyUI
 * events, previews, outcomes), applied to the registry entry and the queue. The dispatcher owns
 * one and hands it every such message; assigning work stays with the dispatcher. Outcomes are
 * recorded by {@link JobOutcomes} (job-outcomes.ts), which heartbeats and revokes use too.
 */
export class WorkerReports {
  private readonly queue: QueueService;
  private readonly bus: JobEventBus;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly clustered: boolean;
  private readonly trigger: () => void;

  constructor(deps: WorkerReportsDeps) {
    this.queue = deps.queue;
    this.bus = deps.bus;
    this.logger = deps.logger;
    this.clock = deps.clock;
    this.trigger = deps.trigger;
    this.clustered = deps.clustered ?? false;
    this.namer = new OutputNamer(deps.queue.store, deps.files);
    this.inFlight = deps.clustered ? undefined : deps.inFlight;
    this.outcomes = new JobOutcomes({
      queue: deps.queue,
      bus: deps.bus,
      logger: deps.logger,
      trigger: deps.trigger,
      files: deps.files,
      namer: this.namer,
      recoverEvents: deps.recoverEvents,
      settle: deps.settle,
    });
  }

  /** Records outcomes: the outcome messages and the jobs a heartbeat or a revoke ends. */
  private readonly outcomes: JobOutcomes;

  /** Whether a worker's report of this job is being recorded (its `worker_done` follows). */
  isReporting(jobId: string): boolean {
    return this.outcomes.isReporting(jobId);
  }

  /** Participant-facing output names (ComfyUI's own naming; see output-names.ts). */
  private readonly namer: OutputNamer;
  private readonly inFlight: OutputsInFlight | undefined;

  /** Updates health and devices, syncs job states and renews the lease of every job the worker holds. */
  async heartbeat(entry: WorkerEntry, msg: Msg<'heartbeat'>): Promise<void> {
    const now = this.clock();
    const wasHealthy = entry.healthy;
    entry.lastHeartbeatAt = now;
    entry.healthy = msg.healthy;
    if (msg.stopping && !entry.stopping) {
      this.logger.info({ workerId: entry.id }, 'worker stopping; it finishes what it holds');
    }
    entry.stopping = msg.stopping ?? false;
    entry.devices = msg.devices;
    if (wasHealthy !== msg.healthy) {
      this.logger.warn(
        { workerId: entry.id, healthy: msg.healthy },
        msg.healthy ? 'worker healthy again' : 'worker unhealthy',
      );
    }
    const reported = new Map(msg.inFlight.map((f) => [f.jobId, f]));
    let freed = false;
    const renewals: Promise<void>[] = [];
    const lost: HeldJob[] = [];
    for (const held of [...entry.held.values()]) {
      const r = reported.get(held.jobId);
      if (held.cancelRequested) {
        // The agent no longer has it: the cancel is done even if it never said so.
        if (!r) {
          entry.held.delete(held.jobId);
          this.outcomes.workerDone(entry, held);
          freed = true;
        }
        continue;
      }
      if (r && r.attempt === held.attempt) {
        held.missedBeats = 0;
        if (r.state === 'running' && held.state !== 'running') this.markStarted(entry, held, now);
        else if (r.state === 'queued' && held.state === 'assigned') held.state = 'queued';
      }
      // While ComfyUI is unreachable, leases are left to lapse so the jobs return to the queue.
      if (!msg.healthy) continue;
      if (!r || r.attempt !== held.attempt) {
        // One miss can be a heartbeat that crossed the `assign` on the wire; a job missing from
        // two in a row is one the agent no longer has (it never reported an outcome). Without this,
        // its lease would be renewed for as long as the worker stays connected.
        held.missedBeats = (held.missedBeats ?? 0) + 1;
        if (held.missedBeats >= LOST_AFTER_MISSED_BEATS) {
          lost.push(held);
          continue;
        }
      }
      renewals.push(
        this.queue
          .renewLease(held.jobId, entry.id, held.attempt)
          // A lease that lapsed while renewals failed (the store was unreachable) but that nobody
          // claimed since is taken back: the worker is still running the job.
          .then((ok) => ok || this.queue.adopt(held.jobId, entry.id, held.attempt))
          .then((ok) => {
            if (ok || entry.held.get(held.jobId) !== held || held.cancelRequested) return;
            // The store no longer gives this attempt to this worker (lapsed, cancelled, ...).
            entry.held.delete(held.jobId);
            this.outcomes.workerDone(entry, held);
            freed = true;
            entry.link?.send({ type: 'cancel', jobId: held.jobId, attempt: held.attempt });
            this.logger.warn(
              { jobId: held.jobId, attempt: held.attempt, workerId: entry.id },
              'lease lost; told worker to cancel',
            );
          }),
      );
    }
    await Promise.all(renewals);
    for (const held of lost) await this.lostByWorker(entry, held);
    if (freed || lost.length > 0 || (!wasHealthy && msg.healthy)) this.trigger();
  }

  /**
   * A job the worker stopped reporting without an outcome goes back to the queue as a lost
   * attempt (like a lapsed lease): the next claim is a new attempt, so nothing the old one might
   * still report can be mistaken for it, and a prompt that keeps vanishing fails after
   * MAX_ATTEMPTS instead of looping.
   */
  private async lostByWorker(entry: WorkerEntry, held: HeldJob): Promise<void> {
    this.logger.warn(
      { jobId: held.jobId, attempt: held.attempt, workerId: entry.id, state: held.state },
      'worker no longer reports this job; returning it to the queue',
    );
    // In case the agent still has it somewhere: stop it, do not report it.
    entry.link?.send({ type: 'cancel', jobId: held.jobId, attempt: held.attempt });
    await this.outcomes.finish(
      entry,
      held.jobId,
      held.attempt,
      'release',
      (id, a) => this.queue.abandon(id, entry.id, a),
      'lost_by_worker',
    );
  }

  /**
   * The worker's token was revoked: everything it holds goes back to the queue at its old place
   * without counting the attempt (the worker did nothing wrong, and the job must not fail).
   */
  async revoked(entry: WorkerEntry): Promise<void> {
    for (const held of [...entry.held.values()]) {
      await this.outcomes.finish(
        entry,
        held.jobId,
        held.attempt,
        'release',
        (id, a) => this.queue.release(id, a),
        'token_revoked',
      );
    }
  }

  jobStarted(entry: WorkerEntry, msg: Msg<'job_started'>): void {
    const held = entry.held.get(msg.jobId);
    if (!held || held.attempt !== msg.attempt) {
      this.logger.debug(
        { jobId: msg.jobId, attempt: msg.attempt, workerId: entry.id },
        'job_started for a job not held; ignored',
      );
      return;
    }
    if (held.state !== 'running') this.markStarted(entry, held, this.clock());
  }

  private markStarted(entry: WorkerEntry, held: HeldJob, now: number): void {
    held.state = 'running';
    held.startedAt ??= now;
    held.progress = null;
    held.node = null;
    entry.warmModels = held.models;
    this.bus.publish({
      kind: 'status',
      jobId: held.jobId,
      user: held.user,
      status: 'started',
      jobStatus: 'running',
      workerId: entry.id,
      job: null,
    });
  }

  /**
   * A relayed ComfyUI event: updates the worker's progress and goes out on the bus. An `executed`
   * event's files go out under the names the participant sees (the names history, `/view` and the
   * gallery use too); everything else in it stays as ComfyUI sent it. From ComfyUI's verdict on,
   * events wait for the outcome report to be recorded (see {@link HeldJob.ending}); a cancelled
   * job's go out at once (it is already cancelled in the store), so the owner sees ComfyUI's own
   * `execution_interrupted` when ComfyUI has actually stopped. (The worker hub handles one
   * worker's messages one after another, so awaiting the names keeps the events in order.)
   */
  async jobEvent(entry: WorkerEntry, msg: Msg<'job_event'>): Promise<void> {
    const held = entry.held.get(msg.jobId);
    const run = `${msg.jobId}#${msg.attempt}#${msg.run ?? ''}`;
    const key = msg.seq === undefined ? undefined : `${run}#${msg.seq}`;
    if (!held || held.attempt !== msg.attempt) {
      const done = entry.finished?.get(msg.jobId);
      if (key && done?.attempt === msg.attempt && this.clustered)
        await this.finishedEvent(entry, msg, done.user, run, key);
      return;
    }
    // Sent again after a reconnect, and this process took it already.
    if (key && this.taken.had(run, msg.seq!)) return;
    const { type } = msg.event;
    let data = msg.event.data;
    if (type === 'executed' && isRecord(data) && isRecord(data.output)) {
      const named = { ...data, output: await this.namer.nameUi(held.user, held.jobId, data.output) };
      // Only while the attempt is still ours and wanted: a cancelled job's agent uploads nothing,
      // and a job that left this worker meanwhile was settled already (nothing would clear it).
      if (entry.held.get(held.jobId) === held && !held.cancelRequested) {
        this.expectFiles(held, named);
        if (this.inFlight && typeof data.node === 'string') {
          held.announced ??= new Map();
          for (const [k, out] of keyedOutputs(outputsOf(data.node, named.output))) held.announced.set(k, out);
        }
      }
      data = named;
    }
    // Taken (published, or held back with the ending) only once named: a failure means it comes again.
    if (key) this.taken.take(run, msg.seq!);
    const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
    if (held.adopted) {
      if (type === 'execution_start') held.adopted.seen.add(type);
      else if (type === 'executed' && typeof (data as { node?: unknown } | null)?.node === 'string')
        held.adopted.seen.add(`executed:${(data as { node: string }).node}`);
    }
    if (type === 'execution_start' && held.state !== 'running') this.markStarted(entry, held, this.clock());
    else if (type === 'executing') {
      held.node = typeof d.node === 'string' ? d.node : null;
      held.progress = null;
    } else if (type === 'progress' && typeof d.value === 'number' && typeof d.max === 'number') {
      held.progress = { value: d.value, max: d.max };
      if (typeof d.node === 'string') held.node = d.node;
    }
    const ev: JobEventMessage = {
      kind: 'event',
      jobId: held.jobId,
      user: held.user,
      workerId: entry.id,
      event: { type, data },
      ...(key ? { key } : {}),
    };
    // With outputs announced early, ComfyUI's `execution_success` goes out at once, as ComfyUI sends
    // it before it writes the history; its final `executing` still waits for the record.
    const early = type === 'execution_success' && this.inFlight !== undefined && !held.ending;
    if (early && !held.cancelRequested) {
      held.ending = []; // what follows it waits for the record
      // Until then the queue routes show the job completed, as ComfyUI's history does from here.
      held.succeededAt = this.clock();
      this.inFlight!.ended({
        jobId: held.jobId,
        user: held.user,
        attempt: held.attempt,
        at: held.succeededAt,
        outputs: [...(held.announced?.values() ?? [])],
      });
      this.bus.publish(ev);
    } else if (!held.cancelRequested && (held.ending || VERDICTS.has(type))) (held.ending ??= []).push(ev);
    else this.bus.publish(ev);
  }

  /**
   * The files an `executed` names (as the participant sees them) may still be on their way: `/view`
   * waits for them. Only the listed files: a video's `workflow` image is not uploaded on its own.
   */
  private expectFiles(held: HeldJob, data: { output: Record<string, unknown> }): void {
    if (!this.inFlight) return;
    const keys: string[] = [];
    for (const items of Object.values(data.output)) {
      if (!Array.isArray(items)) continue;
      for (const item of items as unknown[]) {
        if (!isRecord(item) || typeof item.filename !== 'string' || item.filename === '') continue;
        const type = item.type === undefined ? 'output' : item.type;
        if (type !== 'output' && type !== 'temp') continue;
        const subfolder = typeof item.subfolder === 'string' ? item.subfolder : '';
        try {
          keys.push(userFileKey(held.user, type, subfolder, item.filename));
        } catch {
          // A name that leaves the user's space is never stored, and `/view` refuses it anyway.
        }
      }
    }
    this.inFlight.expect(held.jobId, keys);
  }

  /**
   * An event of an attempt whose finish another process recorded before the worker reconnected
   * here, sent again: it goes out as it is (the job is done), and the durable event log keeps it
   * once, so a participant who had it does not get it twice. Several processes only: one process
   * has no log to tell which ones its participants had.
   */
  private async finishedEvent(
    entry: WorkerEntry,
    msg: Msg<'job_event'>,
    user: string,
    run: string,
    key: string,
  ): Promise<void> {
    if (this.taken.had(run, msg.seq!)) return;
    let data = msg.event.data;
    if (msg.event.type === 'executed' && isRecord(data) && isRecord(data.output))
      data = { ...data, output: await this.namer.nameUi(user, msg.jobId, data.output) };
    this.taken.take(run, msg.seq!);
    this.bus.publish({
      kind: 'event',
      jobId: msg.jobId,
      user,
      workerId: entry.id,
      event: { type: msg.event.type, data },
      key,
    });
  }

  /** Event numbers this process took (a worker sends its events again after a reconnect). */
  private readonly taken = new TakenNumbers();

  /** A ComfyUI binary frame (preview image) for a held job. */
  preview(entry: WorkerEntry, jobId: string, frame: Buffer): boolean {
    const held = entry.held.get(jobId);
    if (!held) return false;
    this.bus.publish({ kind: 'preview', jobId, user: held.user, workerId: entry.id, preview: frame });
    return true;
  }

  /** The outcome reports: recorded by {@link JobOutcomes}. */
  jobCompleted(entry: WorkerEntry, msg: Msg<'job_completed'>): Promise<void> {
    return this.outcomes.jobCompleted(entry, msg);
  }

  jobFailed(entry: WorkerEntry, msg: Msg<'job_failed'>): Promise<void> {
    return this.outcomes.jobFailed(entry, msg);
  }

  jobReleased(entry: WorkerEntry, msg: Msg<'job_released'>): Promise<void> {
    return this.outcomes.jobReleased(entry, msg);
  }

  jobCancelled(entry: WorkerEntry, msg: Msg<'job_cancelled'>): Promise<void> {
    return this.outcomes.jobCancelled(entry, msg);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
