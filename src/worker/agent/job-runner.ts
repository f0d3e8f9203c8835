/**
 * The agent's jobs between the control plane and ComfyUI: an `assign` is prepared (inputs moved,
 * output prefixes confined to the user) and queued in ComfyUI; ComfyUI's events are relayed; a
 * finished prompt's outputs are uploaded and its outcome reported; cancel, release and give-back
 * make sure ComfyUI does not run a prompt the agent no longer holds. The connection and ComfyUI's
 * health live in {@link WorkerAgent}.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { ComfyPromptError } from '../../comfy/client-errors.js';
import { jobErrorFromOutcome, outcomeFromHistory } from '../../comfy/prompt-outcome.js';
import type {
  ApiPrompt,
  BinaryFrame,
  ComfyWsMessage,
  HistoryEntry,
  ObjectInfo,
  OtherWsMessage,
} from '../../comfy/protocol.js';
import {
  extractModels,
  inputReferences,
  keyedOutputs,
  outputsFromExecuted,
  rewriteInputs,
  rewriteOutputPrefixes,
} from '../../comfy/prompt-tools.js';
import type { ComfyPrompt, JobError, JobOutput } from '../../store/types.js';
import { encodePreviewFrame, type ServerMessage } from '../protocol.js';
import { backoffDelay } from './backoff.js';
import { isUnreachable } from './comfy-env.js';
import type { ControlLink } from './control-link.js';
import { confineReference, transferInput, transferOutput, type ControlPlaneHttp } from './files.js';
import type { HealthMonitor } from './health.js';
import { HttpError } from './http-stream.js';
import type { AgentJob, JobTable } from './jobs.js';

type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

export interface JobRunnerDeps {
  comfy: ComfyClient;
  cp: ControlPlaneHttp;
  jobs: JobTable;
  link: Pick<ControlLink, 'send' | 'sendBinary' | 'sendOutcome'>;
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
}

export class JobRunner {
  private readonly comfy: ComfyClient;
  private readonly cp: ControlPlaneHttp;
  private readonly jobs: JobTable;
  private readonly link: JobRunnerDeps['link'];
  private readonly health: JobRunnerDeps['health'];
  private readonly log: Logger;
  private readonly settings: { uploadConcurrency: number; uploadAttempts: number };
  /** Serialises preparing and queueing, so ComfyUI's queue keeps the order jobs were assigned in. */
  private queueChain: Promise<void> = Promise.resolve();

  constructor(private readonly d: JobRunnerDeps) {
    this.comfy = d.comfy;
    this.cp = d.cp;
    this.jobs = d.jobs;
    this.link = d.link;
    this.health = d.health;
    this.log = d.log;
    this.settings = { uploadConcurrency: d.uploadConcurrency, uploadAttempts: d.uploadAttempts };
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
    this.queueChain = this.queueChain.then(() => this.prepareAndQueue(job));
  }

  private async prepareAndQueue(job: AgentJob): Promise<void> {
    if (!this.jobs.holds(job)) return;
    const signal = job.abort.signal;
    const objectInfo = this.d.objectInfo();
    try {
      const ns = { user: job.user, jobId: job.jobId, ...(objectInfo ? { objectInfo } : {}) };
      let prompt = rewriteOutputPrefixes(job.prompt, ns).prompt;
      // Known loaders only: cheap, and all warmModels needs (the server computes its own list).
      job.models = extractModels(prompt);
      const refs = inputReferences(prompt, objectInfo);
      if (refs.length > 0) {
        // Every file reference ends up inside the user's own part of ComfyUI's folders.
        const mapping = new Map<string, string>();
        for (const ref of refs) {
          if (mapping.has(ref.value)) continue;
          if (ref.type === 'input')
            mapping.set(ref.value, await transferInput(this.comfy, this.cp, job, ref, signal));
          else mapping.set(ref.value, confineReference(ref, job.user));
          if (!this.jobs.holds(job)) return;
        }
        prompt = rewriteInputs(prompt, mapping, objectInfo).prompt;
      }
      if (!this.jobs.holds(job)) return;
      job.state = 'queued';
      const res = await this.comfy.queuePrompt(prompt as ApiPrompt, {
        promptId: job.promptId,
        extraData: withoutClientId(job.extraData),
        ...(job.front ? { front: true } : {}),
      });
      if (res.prompt_id !== job.promptId) this.jobs.rekey(job, res.prompt_id);
      if (Object.keys(res.node_errors).length > 0) {
        this.log.warn(
          { jobId: job.jobId, nodeErrors: Object.keys(res.node_errors) },
          'ComfyUI dropped some output nodes that failed validation',
        );
      }
      this.log.debug(
        { jobId: job.jobId, promptId: job.promptId, number: res.number },
        'job queued in ComfyUI',
      );
    } catch (err) {
      if (!this.jobs.holds(job)) return;
      if (err instanceof ComfyPromptError) {
        this.fail(job, { reason: 'invalid_prompt', message: err.message, details: { ...err.body } });
      } else if (err instanceof HttpError) {
        // The control plane failed to hand over an input.
        if (err.status === 401 || err.status === 403 || err.status === 409)
          this.drop(job, `control plane refused input download (${err.status})`);
        else if (err.transient) await this.giveBack(job, 'input download failed; retry elsewhere');
        else
          this.fail(job, {
            reason: 'input_failed',
            message: `${err.message}${err.body ? `: ${err.body.slice(0, 500)}` : ''}`,
          });
      } else if (isUnreachable(err)) {
        this.health.suspect((err as Error).message);
        await this.giveBack(job, 'comfyui_unreachable');
      } else {
        this.log.error({ err, jobId: job.jobId }, 'preparing the job failed');
        this.fail(job, { reason: 'agent_error', message: (err as Error).message ?? String(err) });
      }
    }
  }

  // ---- ComfyUI events ------------------------------------------------------------------------

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
    this.link.send({
      type: 'job_event',
      jobId: job.jobId,
      attempt: job.attempt,
      event: { type: msg.type, data: msg.data },
    });
    const m = msg as ComfyWsMessage;
    switch (m.type) {
      case 'executed':
        for (const [key, out] of keyedOutputs(outputsFromExecuted(m.data))) job.outputs.set(key, out);
        return;
      case 'execution_success':
        void this.finish(job);
        return;
      case 'execution_error':
        this.fail(
          job,
          jobErrorFromOutcome({ status: 'error', promptId: pid, error: m.data, source: 'socket' })!,
        );
        return;
      case 'execution_interrupted':
        this.fail(job, {
          ...jobErrorFromOutcome({
            status: 'interrupted',
            promptId: pid,
            interrupted: m.data,
            source: 'socket',
          })!,
          message:
            'ComfyUI interrupted the job (an interrupt on the GPU machine, not a cancel from comfy-multi).',
        });
        return;
      default:
        return;
    }
  }

  private markStarted(job: AgentJob): void {
    if (job.state !== 'queued' && job.state !== 'preparing') return;
    job.state = 'running';
    job.startedAt = performance.now();
    if (job.models.length > 0) this.d.onWarm(job.models);
    this.link.send({ type: 'job_started', jobId: job.jobId, attempt: job.attempt });
  }

  /** Binary frames (previews, progress text) of a running job, relayed unchanged and tagged with its id. */
  onComfyBinary(_frame: BinaryFrame, pid: string | null, raw: Buffer): void {
    const job = pid ? this.jobs.byPromptId(pid) : undefined;
    if (!job || job.state !== 'running') return;
    this.link.sendBinary(encodePreviewFrame(job.jobId, raw));
  }

  // ---- outcomes ------------------------------------------------------------------------------

  /** ComfyUI finished the prompt: upload the outputs, then report completion. */
  private async finish(job: AgentJob): Promise<void> {
    if (!this.jobs.holds(job)) return;
    job.state = 'finishing';
    const outputs = [...job.outputs.values()];
    try {
      const stored = await this.uploadAll(job, outputs);
      if (!this.jobs.holds(job)) return;
      this.jobs.remove(job);
      this.link.sendOutcome({
        type: 'job_completed',
        jobId: job.jobId,
        attempt: job.attempt,
        outputs: stored,
      });
      this.log.info({ jobId: job.jobId, attempt: job.attempt, outputs: stored.length }, 'job completed');
    } catch (err) {
      if (!this.jobs.holds(job)) return;
      if (err instanceof HttpError && err.status === 401) {
        // The token was revoked: the control plane gives the job back to the queue. Never a failure.
        this.drop(job, 'control plane refused the worker token (revoked?); the job goes back to the queue');
      } else if (
        err instanceof HttpError &&
        (err.status === 403 || err.status === 404 || err.status === 409)
      ) {
        this.drop(job, `control plane refused the upload (${err.status}); the job is no longer ours`);
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
  }

  private async uploadAll(job: AgentJob, outputs: JobOutput[]): Promise<JobOutput[]> {
    const stored: JobOutput[] = new Array<JobOutput>(outputs.length);
    let next = 0;
    const worker = async () => {
      while (next < outputs.length) {
        const i = next++;
        const out = outputs[i]!;
        // Non-file entries (`animated`, `text`, ...) are reported as they are.
        stored[i] = out.value === undefined ? await this.uploadOne(job, out) : out;
      }
    };
    const n = Math.max(1, Math.min(this.settings.uploadConcurrency, outputs.length));
    await Promise.all(Array.from({ length: n }, worker));
    return stored;
  }

  private async uploadOne(job: AgentJob, out: JobOutput): Promise<JobOutput> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await transferOutput(this.comfy, this.cp, job, out, job.abort.signal);
      } catch (err) {
        // Only the control plane's side is retried here; a ComfyUI failure is handled by the caller.
        // A control plane that is away (restarting, no answer, 502-504) is never the job's fault:
        // keep trying for as long as we hold the job, so a finished job is not failed or re-run.
        const away =
          err instanceof HttpError && (err.status === 0 || (err.status >= 502 && err.status <= 504));
        const retry =
          !job.abort.signal.aborted &&
          err instanceof HttpError &&
          err.transient &&
          (away || attempt + 1 < this.settings.uploadAttempts);
        if (!retry) throw err;
        const delay = backoffDelay(Math.min(attempt, 20), { baseMs: 200, maxMs: 5000 });
        this.log.warn(
          { jobId: job.jobId, file: out.filename, err: (err as Error).message, retryInMs: delay },
          'output upload failed; retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private fail(job: AgentJob, error: JobError): void {
    if (!this.jobs.holds(job)) return;
    this.jobs.remove(job, 'failed');
    this.link.sendOutcome({
      type: 'job_failed',
      jobId: job.jobId,
      attempt: job.attempt,
      error: clampError(error),
    });
    this.log.warn(
      { jobId: job.jobId, attempt: job.attempt, reason: error.reason, message: error.message.slice(0, 300) },
      'job failed',
    );
  }

  /** Stops holding a job without reporting it (the control plane already moved on). */
  private drop(job: AgentJob, why: string): void {
    this.jobs.remove(job, why);
    this.log.info({ jobId: job.jobId, attempt: job.attempt, why }, 'job dropped');
  }

  /**
   * Hands a job back to the queue (`job_released`) and makes sure ComfyUI does not run it: out of
   * its queue if queued, interrupted if running. ComfyUI may be unreachable; the prompt id stays
   * buried so it is cleaned up when ComfyUI answers again.
   */
  async giveBack(job: AgentJob, reason: string): Promise<void> {
    if (!this.jobs.holds(job)) return;
    const state = job.state;
    this.jobs.remove(job, reason);
    this.link.sendOutcome({ type: 'job_released', jobId: job.jobId, attempt: job.attempt, reason });
    this.log.info({ jobId: job.jobId, attempt: job.attempt, state, reason }, 'job handed back');
    if (this.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
  }

  /** Stops holding a job the server forgot, making sure ComfyUI does not run it. */
  async abandon(job: AgentJob, reason: string): Promise<void> {
    const state = job.state;
    this.jobs.remove(job, reason);
    if (this.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
  }

  private async purgeFromComfy(promptId: string, state: AgentJob['state']): Promise<void> {
    try {
      if (state === 'queued' || state === 'preparing') await this.comfy.deleteFromQueue([promptId]);
      // Targeted: a no-op unless this very prompt is running (covers a start we have not seen yet).
      if (state !== 'finishing') await this.comfy.interrupt(promptId);
    } catch (err) {
      this.log.debug({ promptId, err: (err as Error).message }, 'could not remove a prompt from ComfyUI');
    }
  }

  async onCancel(jobId: string, attempt: number): Promise<void> {
    const job = this.jobs.get(jobId, attempt);
    if (job) {
      const state = job.state;
      this.jobs.remove(job, 'cancelled');
      if (this.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
      this.log.info({ jobId, attempt, state }, 'job cancelled');
    }
    // Confirm even when we no longer hold it: the control plane frees the slot on this answer.
    this.link.sendOutcome({ type: 'job_cancelled', jobId, attempt });
  }

  async onRelease(jobId: string, attempt: number): Promise<void> {
    const job = this.jobs.get(jobId, attempt);
    if (!job || (job.state !== 'queued' && job.state !== 'preparing')) return; // started: keep it
    if (job.state === 'preparing') return this.giveBack(job, 'released on request');
    try {
      await this.comfy.deleteFromQueue([job.promptId]);
      if (!this.jobs.holds(job) || job.state !== 'queued') return;
      // ComfyUI may have taken it off its queue to run it a moment ago.
      const q = await this.comfy.getQueue();
      if (!this.jobs.holds(job) || job.state !== 'queued') return;
      if (q.queue_running.some((item) => item[1] === job.promptId)) {
        this.markStarted(job);
        return;
      }
      await this.giveBack(job, 'released on request');
    } catch (err) {
      this.log.warn(
        { jobId, err: (err as Error).message },
        'could not take a prefetched job back from ComfyUI; keeping it',
      );
    }
  }

  /** After ComfyUI comes back: make sure no prompt we gave up still waits or runs there. */
  async sweepBuried(): Promise<void> {
    const buried = this.jobs.buried();
    if (buried.length === 0) return;
    try {
      const q = await this.comfy.getQueue();
      const ids = new Set(buried);
      const pending = q.queue_pending.map((i) => i[1]).filter((id) => ids.has(id));
      if (pending.length > 0) await this.comfy.deleteFromQueue(pending);
      for (const item of q.queue_running) if (ids.has(item[1])) await this.comfy.interrupt(item[1]);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not sweep given-up prompts');
    }
  }

  /**
   * The ComfyUI socket was down for a while, so events may be lost. For each job ComfyUI holds,
   * look it up: finished ones are completed from `/history`; ones still queued or running carry on.
   */
  async recoverAfterSocketGap(): Promise<void> {
    const held = this.jobs.all().filter((j) => j.state === 'queued' || j.state === 'running');
    if (held.length === 0) return;
    try {
      const q = await this.comfy.getQueue();
      for (const job of held) {
        if (!this.jobs.holds(job)) continue;
        const running = q.queue_running.some((i) => i[1] === job.promptId);
        const pending = q.queue_pending.some((i) => i[1] === job.promptId);
        if (running) {
          this.markStarted(job);
          continue;
        }
        if (pending) continue;
        const history = await this.comfy.history(job.promptId);
        const entry = history[job.promptId];
        if (!this.jobs.holds(job)) continue;
        if (!entry) {
          await this.giveBack(job, 'ComfyUI lost the prompt (restarted?)');
          continue;
        }
        this.settleFromHistory(job, entry);
      }
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message },
        'could not reconcile jobs after the ComfyUI socket reconnected',
      );
      this.health.suspect((err as Error).message);
    }
  }

  private settleFromHistory(job: AgentJob, entry: HistoryEntry): void {
    const outcome = outcomeFromHistory(job.promptId, entry);
    this.log.info({ jobId: job.jobId, outcome: outcome.status }, 'settled a job from ComfyUI history');
    if (outcome.status !== 'success') return this.fail(job, jobErrorFromOutcome(outcome)!);
    if (job.state === 'queued') this.markStarted(job);
    for (const [key, out] of keyedOutputs(outcome.outputs)) job.outputs.set(key, out);
    void this.finish(job);
  }
}

/** ComfyUI's `client_id` is the agent's; a browser's id in the job's extra_data must not leak in. */
function withoutClientId(extra: Record<string, unknown>): Record<string, unknown> {
  const { client_id: _drop, ...rest } = extra;
  return rest;
}

/** Keeps a JobError inside the protocol's limits. */
function clampError(e: JobError): JobError {
  const out: JobError = { ...e, reason: e.reason.slice(0, 64), message: e.message.slice(0, 20_000) };
  if (e.nodeId) out.nodeId = e.nodeId.slice(0, 64);
  if (e.nodeType) out.nodeType = e.nodeType.slice(0, 256);
  if (e.exceptionType) out.exceptionType = e.exceptionType.slice(0, 256);
  if (e.traceback) out.traceback = e.traceback.slice(-500).map((l) => l.slice(0, 20_000));
  return out;
}
