import type { Logger } from 'pino';
import type { QueueService } from '../scheduler/queue-service.js';
import type { Job, TransitionResult } from '../store/types.js';
import type { FileStore } from '../files/file-store.js';
import { userFileKey } from '../files/safe-path.js';
import { jobSegment } from '../worker/agent/files.js';
import type { AgentMessage } from '../worker/protocol.js';
import type { JobEventBus, JobEventMessage } from './job-event-bus.js';
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
 * one and hands it every such message; assigning work stays with the dispatcher.
 */
export class WorkerReports {
  private readonly queue: QueueService;
  private readonly bus: JobEventBus;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly recoverEvents: WorkerReportsDeps['recoverEvents'];
  private readonly settle: WorkerReportsDeps['settle'];
  private readonly clustered: boolean;
  private readonly trigger: () => void;

  constructor(deps: WorkerReportsDeps) {
    this.queue = deps.queue;
    this.bus = deps.bus;
    this.logger = deps.logger;
    this.clock = deps.clock;
    this.trigger = deps.trigger;
    this.files = deps.files;
    this.recoverEvents = deps.recoverEvents;
    this.settle = deps.settle;
    this.clustered = deps.clustered ?? false;
    this.namer = new OutputNamer(deps.queue.store, deps.files);
    this.inFlight = deps.clustered ? undefined : deps.inFlight;
  }

  private readonly files: FileStore | undefined;
  /** Jobs whose worker's report is being recorded right now (their ending follows it). */
  private readonly reporting = new Set<string>();

  /** Whether a worker's report of this job is being recorded (its `worker_done` follows). */
  isReporting(jobId: string): boolean {
    return this.reporting.has(jobId);
  }
  /** Participant-facing output names (ComfyUI's own naming; see output-names.ts). */
  private readonly namer: OutputNamer;
  private readonly inFlight: OutputsInFlight | undefined;

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
          this.workerDone(entry, held);
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
            this.workerDone(entry, held);
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
    await this.finish(
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
      await this.finish(
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
      this.expectFiles(held, named);
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
      this.bus.publish(ev);
    } else if (!held.cancelRequested && (held.ending || VERDICTS.has(type))) (held.ending ??= []).push(ev);
    else this.bus.publish(ev);
  }

  /**
   * The files an `executed` names (as the participant sees them, a video's `workflow` image too)
   * may still be on their way: `/view` waits for them.
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
        const names = [item.filename, ...(typeof item.workflow === 'string' ? [item.workflow] : [])];
        for (const name of names) {
          try {
            keys.push(userFileKey(held.user, type, subfolder, name));
          } catch {
            // A name that leaves the user's space is never stored, and `/view` refuses it anyway.
          }
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

  /** Nothing more about this attempt will come from the worker (see `worker_done` on the bus). */
  private workerDone(entry: WorkerEntry, held: HeldJob): void {
    this.bus.publish({ kind: 'worker_done', jobId: held.jobId, user: held.user, workerId: entry.id });
  }

  /** A ComfyUI binary frame (preview image) for a held job. */
  preview(entry: WorkerEntry, jobId: string, frame: Buffer): boolean {
    const held = entry.held.get(jobId);
    if (!held) return false;
    this.bus.publish({ kind: 'preview', jobId, user: held.user, workerId: entry.id, preview: frame });
    return true;
  }

  /** The outputs are reported under the job's own names and recorded under the participant's. */
  async jobCompleted(entry: WorkerEntry, msg: Msg<'job_completed'>): Promise<void> {
    // `finish` has just read the job: its owner names the outputs (no second read on the way).
    await this.finish(entry, msg.jobId, msg.attempt, 'complete', async (id, a, job) => {
      const outputs = await this.namer.nameOutputs(job.user, id, msg.outputs);
      return this.queue.complete(id, a, outputs);
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
  private async finish(
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
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
