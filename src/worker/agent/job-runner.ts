/**
 * The agent's jobs between the control plane and ComfyUI: an `assign` is prepared (inputs moved,
 * output prefixes confined to the user; see job-prepare.ts) and queued in ComfyUI; ComfyUI's events
 * are relayed; a finished prompt's outputs are uploaded and its outcome reported; cancel, release
 * and give-back (job-release.ts) make sure ComfyUI does not run a prompt the agent no longer holds.
 * The connection and ComfyUI's health live in {@link WorkerAgent}.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { jobErrorFromOutcome, outcomeFromHistory } from '../../comfy/prompt-outcome.js';
import type {
  BinaryFrame,
  ComfyWsMessage,
  HistoryEntry,
  ObjectInfo,
  OtherWsMessage,
} from '../../comfy/protocol.js';
import { keyedOutputs, outputsFromExecuted } from '../../comfy/prompt-tools.js';
import type { ComfyPrompt, JobError } from '../../store/types.js';
import { encodePreviewFrame, type ServerMessage } from '../protocol.js';
import { isUnreachable } from './comfy-env.js';
import type { ControlLink } from './control-link.js';
import type { ControlPlaneHttp } from './files.js';
import type { HealthMonitor } from './health.js';
import { HttpError } from './http-stream.js';
import type { LoraCache } from './lora-cache.js';
import type { AgentJob, JobTable } from './jobs.js';
import { OutputUploads } from './output-uploads.js';
import { recoverAfterSocketGap, sweepBuried } from './comfy-recovery.js';
import { clampError } from './job-messages.js';
import { prepareAndQueue, type PrepareDeps } from './job-prepare.js';
import { JobRelease } from './job-release.js';

type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

export interface JobRunnerDeps {
  comfy: ComfyClient;
  cp: ControlPlaneHttp;
  jobs: JobTable;
  link: Pick<ControlLink, 'send' | 'sendBinary' | 'sendOutcome' | 'sendEvent' | 'forgetEvents'>;
  health: Pick<HealthMonitor, 'isHealthy' | 'suspect'>;
  log: Logger;
  /** Outputs of one job uploaded at the same time. */
  uploadConcurrency: number;
  /** Tries per output before the job fails with `upload_failed`. */
  uploadAttempts: number;
  /** ComfyUI's object_info, once read. */
  objectInfo: () => ObjectInfo | undefined;
  /** The agent is stopping: take nothing new. */
  stopping: () => boolean;
  /** A job started whose models are now the warm ones. */
  onWarm: (models: string[]) => void;
  /** Participants' own LoRAs: fetched on demand, cached by sha256, named only by the agent. */
  loras: LoraCache;
  /**
   * The server serves an output still on its way (`welcome.earlyOutputs`): an `executed` is
   * relayed at once, not once its files are stored. Default false.
   */
  earlyOutputs?: () => boolean;
  /** ComfyUI's output folder on this machine (`--output-dir`), or null: outputs come from `/view`. */
  outputDir?: string | null;
}

export class JobRunner {
  readonly comfy: ComfyClient;
  readonly jobs: JobTable;
  private readonly link: JobRunnerDeps['link'];
  readonly health: JobRunnerDeps['health'];
  readonly log: Logger;
  private readonly uploads: OutputUploads;
  private readonly release: JobRelease;
  private readonly prepare: PrepareDeps;
  /** Serialises preparing and queueing, so ComfyUI's queue keeps the order jobs were assigned in. */
  private queueChain: Promise<void> = Promise.resolve();

  constructor(private readonly d: JobRunnerDeps) {
    this.comfy = d.comfy;
    this.jobs = d.jobs;
    this.link = d.link;
    this.health = d.health;
    this.log = d.log;
    this.uploads = new OutputUploads({
      comfy: d.comfy,
      cp: d.cp,
      log: d.log,
      concurrency: d.uploadConcurrency,
      attempts: d.uploadAttempts,
      outputDir: d.outputDir ?? null,
    });
    this.release = new JobRelease({
      comfy: d.comfy,
      jobs: d.jobs,
      link: d.link,
      health: d.health,
      log: d.log,
      markStarted: (job) => this.markStarted(job),
    });
    this.prepare = {
      comfy: d.comfy,
      cp: d.cp,
      jobs: d.jobs,
      health: d.health,
      log: d.log,
      objectInfo: () => d.objectInfo(),
      loras: d.loras,
      fail: (job, error) => this.fail(job, error),
      drop: (job, why) => this.release.drop(job, why),
      giveBack: (job, reason) => this.giveBack(job, reason),
    };
  }

  // ---- assign → ComfyUI queue ----------------------------------------------------------------

  onAssign(m: Msg<'assign'>): void {
    const a = m.job;
    if (this.jobs.get(a.jobId, a.attempt)) return; // duplicate
    const job: AgentJob = {
      jobId: a.jobId,
      attempt: a.attempt,
      user: a.user,
      prompt: a.prompt as ComfyPrompt,
      extraData: a.extraData,
      front: a.front,
      promptId: randomUUID(),
      state: 'preparing',
      outputs: new Map(),
      abort: new AbortController(),
      assignedAt: performance.now(),
      startedAt: null,
      models: [],
      uploads: new Map(),
      relay: null,
      outcome: null,
      settling: false,
      cancelling: false,
    };
    this.jobs.add(job);
    this.log.debug({ jobId: job.jobId, attempt: job.attempt, promptId: job.promptId }, 'job assigned');
    if (this.d.stopping()) {
      void this.giveBack(job, 'worker stopping');
      return;
    }
    if (!this.health.isHealthy) {
      void this.giveBack(job, 'comfyui_unreachable');
      return;
    }
    this.queueChain = this.queueChain.then(() => prepareAndQueue(this.prepare, job));
  }

  // ---- ComfyUI events ------------------------------------------------------------------------

  /**
   * One ComfyUI event about a held prompt. Every event is relayed, in ComfyUI's order, exactly
   * once, up to and including the final `executing {node: null}`; only then is the outcome
   * reported (the control plane frees the slot on the report and relays nothing after it). An
   * `executed` starts uploading its files at once and is relayed when they are stored, so the
   * owner never hears of a file (or of the job's end) before it can be downloaded; unless the
   * server serves files still on their way (`earlyOutputs`): then it goes out at once.
   */
  onComfyMessage(msg: ComfyWsMessage | OtherWsMessage, pid: string | null): void {
    if (pid === null) return; // status, feature_flags, ...
    const job = this.jobs.byPromptId(pid);
    if (!job) {
      if (msg.type === 'execution_start' && this.jobs.isBuried(pid)) {
        this.log.info({ promptId: pid }, 'ComfyUI started a prompt we gave up; interrupting it');
        this.comfy.interrupt(pid).catch(() => undefined);
      }
      return;
    }
    if (msg.type === 'execution_start') this.markStarted(job);
    const m = msg as ComfyWsMessage;
    let wait: Promise<unknown> | null = null;
    let final = false;
    let uploadAfterRelay: (() => void) | null = null;
    switch (m.type) {
      case 'executed': {
        const outs = outputsFromExecuted(m.data);
        for (const [key, out] of keyedOutputs(outs)) job.outputs.set(key, out);
        // Non-file entries (`animated`, `text`, ...) are reported as they are; files move now.
        const files = outs.filter((o) => o.value === undefined);
        if (!job.cancelling && files.length > 0) {
          const upload = () => Promise.all(files.map((o) => this.uploads.start(job, o)));
          // Announced early, the uploads still decide the report: `complete` awaits them (and a
          // failure fails the job there), so nothing here waits. The event goes out first: the
          // control plane names the files on it, which the upload then finds done. The upload
          // (reading a small file at once, 0.6 ms) starts two turns of the loop later: the second
          // turn's I/O phase takes what ComfyUI sent meanwhile (its `execution_success` follows
          // `executed` within 0.2 ms) before the upload's work. No timer: idle, it is microseconds.
          if (this.d.earlyOutputs?.())
            uploadAfterRelay = () =>
              setImmediate(() => setImmediate(() => void upload().catch(() => undefined)));
          else wait = upload();
        }
        break;
      }
      case 'execution_success':
        this.ended(job, { status: 'success' });
        break;
      case 'execution_error':
        this.ended(job, {
          status: 'failed',
          error: jobErrorFromOutcome({ status: 'error', promptId: pid, error: m.data, source: 'socket' })!,
        });
        break;
      case 'execution_interrupted':
        this.ended(job, {
          status: 'failed',
          error: {
            ...jobErrorFromOutcome({
              status: 'interrupted',
              promptId: pid,
              interrupted: m.data,
              source: 'socket',
            })!,
            message:
              'ComfyUI interrupted the job (an interrupt on the GPU machine, not a cancel from comfy-multi).',
          },
        });
        break;
      case 'executing':
        // ComfyUI's last word on a prompt, sent after its history is written.
        final = m.data.node === null;
        break;
      default:
        break;
    }
    this.relay(job, { type: msg.type, data: msg.data }, wait, final);
    uploadAfterRelay?.();
  }

  private ended(job: AgentJob, outcome: NonNullable<AgentJob['outcome']>): void {
    job.outcome ??= outcome;
    if (job.state === 'running' || job.state === 'queued') job.state = 'finishing';
  }

  /**
   * Sends the event once everything before it went out (and `wait`, its uploads, is done); with
   * `final`, reports the outcome after it. A null event only queues the report behind the rest.
   */
  private relay(
    job: AgentJob,
    event: { type: string; data: unknown } | null,
    wait: Promise<unknown> | null,
    final: boolean,
  ): void {
    const send = () => {
      if (!event || !this.jobs.holds(job)) return;
      this.link.sendEvent({
        type: 'job_event',
        jobId: job.jobId,
        attempt: job.attempt,
        event,
        run: job.promptId,
      });
    };
    if (!job.relay && !wait) {
      // Nothing waiting: straight out, no extra turn of the event loop.
      send();
      if (final) void this.settle(job);
      return;
    }
    this.behindRelay(job, async () => {
      if (wait) {
        try {
          await wait;
        } catch (err) {
          // A cancelled job's uploads are aborted; its events still tell the owner what ComfyUI did.
          if (!job.cancelling) {
            await this.uploadFailed(job, err);
            return;
          }
        }
      }
      send();
      if (final) await this.settle(job);
    });
  }

  /** Runs `task` once everything queued on the job's relay before it is done. */
  private behindRelay(job: AgentJob, task: () => Promise<void> | void): void {
    const step = (job.relay ?? Promise.resolve()).then(task);
    job.relay = step;
    void step.then(() => {
      if (job.relay === step) job.relay = null;
    });
  }

  markStarted(job: AgentJob): void {
    if (job.state !== 'queued' && job.state !== 'preparing') return;
    job.state = 'running';
    job.startedAt = performance.now();
    if (job.models.length > 0) this.d.onWarm(job.models);
    this.link.send({ type: 'job_started', jobId: job.jobId, attempt: job.attempt });
  }

  /**
   * Binary frames (previews, progress text) of a running job, relayed unchanged and tagged with its
   * id, behind any text event still waiting (a preview belongs to the node announced before it).
   */
  onComfyBinary(_frame: BinaryFrame, pid: string | null, raw: Buffer): void {
    const job = pid ? this.jobs.byPromptId(pid) : undefined;
    if (!job || job.state !== 'running') return;
    const frame = encodePreviewFrame(job.jobId, raw);
    if (!job.relay) {
      this.link.sendBinary(frame);
      return;
    }
    this.behindRelay(job, () => {
      if (this.jobs.holds(job)) this.link.sendBinary(frame);
    });
  }

  // ---- outcomes ------------------------------------------------------------------------------

  /** ComfyUI is done with the prompt and every event went out: report the outcome. */
  private async settle(job: AgentJob): Promise<void> {
    if (!this.jobs.holds(job) || job.settling) return;
    if (job.cancelling) return this.release.confirmCancel(job);
    const outcome = job.outcome ?? { status: 'success' };
    if (outcome.status === 'failed') return this.fail(job, outcome.error);
    await this.complete(job);
  }

  /** Every output is stored (or is being stored): report completion once all are. */
  private async complete(job: AgentJob): Promise<void> {
    if (!this.jobs.holds(job) || job.settling) return;
    job.settling = true;
    job.state = 'finishing';
    try {
      const stored = await this.uploads.all(job);
      if (!this.jobs.holds(job)) return;
      if (job.cancelling) return this.release.confirmCancel(job);
      this.jobs.remove(job);
      this.link.sendOutcome(
        { type: 'job_completed', jobId: job.jobId, attempt: job.attempt, outputs: stored },
        job.promptId,
      );
      this.log.info({ jobId: job.jobId, attempt: job.attempt, outputs: stored.length }, 'job completed');
    } catch (err) {
      if (job.cancelling) return this.release.confirmCancel(job);
      await this.uploadFailed(job, err);
    }
  }

  private async uploadFailed(job: AgentJob, err: unknown): Promise<void> {
    if (!this.jobs.holds(job)) return;
    if (err instanceof HttpError && err.status === 401) {
      // The token was revoked: the control plane gives the job back to the queue. Never a failure.
      this.release.drop(
        job,
        'control plane refused the worker token (revoked?); the job goes back to the queue',
      );
    } else if (err instanceof HttpError && (err.status === 403 || err.status === 404 || err.status === 409)) {
      this.release.drop(job, `control plane refused the upload (${err.status}); the job is no longer ours`);
    } else if (isUnreachable(err)) {
      this.health.suspect((err as Error).message);
      await this.giveBack(job, 'comfyui_unreachable');
    } else {
      this.fail(job, {
        reason: 'upload_failed',
        message: `Uploading the job's outputs failed: ${(err as Error).message}`,
      });
    }
  }

  private fail(job: AgentJob, error: JobError): void {
    if (!this.jobs.holds(job)) return;
    this.jobs.remove(job, 'failed');
    this.link.sendOutcome(
      { type: 'job_failed', jobId: job.jobId, attempt: job.attempt, error: clampError(error) },
      job.promptId,
    );
    this.log.warn(
      { jobId: job.jobId, attempt: job.attempt, reason: error.reason, message: error.message.slice(0, 300) },
      'job failed',
    );
  }

  /** Hands a job back to the queue and makes sure ComfyUI does not run it: see {@link JobRelease.giveBack}. */
  giveBack(job: AgentJob, reason: string): Promise<void> {
    return this.release.giveBack(job, reason);
  }

  /** Stops holding a job the server forgot, making sure ComfyUI does not run it. */
  abandon(job: AgentJob, reason: string): Promise<void> {
    return this.release.abandon(job, reason);
  }

  onCancel(jobId: string, attempt: number): Promise<void> {
    return this.release.onCancel(jobId, attempt);
  }

  onRelease(jobId: string, attempt: number): Promise<void> {
    return this.release.onRelease(jobId, attempt);
  }

  /** After ComfyUI comes back: make sure no prompt we gave up still waits or runs there. */
  sweepBuried(): Promise<void> {
    return sweepBuried(this);
  }

  /** The ComfyUI socket was down for a while, so events may be lost: see {@link recoverAfterSocketGap}. */
  recoverAfterSocketGap(): Promise<void> {
    return recoverAfterSocketGap(this);
  }

  /** ComfyUI's history says how the prompt ended (its events were lost): report that. */
  settleFromHistory(job: AgentJob, entry: HistoryEntry): void {
    const outcome = outcomeFromHistory(job.promptId, entry);
    this.log.info({ jobId: job.jobId, outcome: outcome.status }, 'settled a job from ComfyUI history');
    if (job.state === 'queued') this.markStarted(job);
    if (outcome.status === 'success')
      for (const [key, out] of keyedOutputs(outcome.outputs)) job.outputs.set(key, out);
    this.ended(
      job,
      outcome.status === 'success'
        ? { status: 'success' }
        : { status: 'failed', error: jobErrorFromOutcome(outcome)! },
    );
    // Behind whatever events are still on their way out.
    this.relay(job, null, null, true);
  }
}
