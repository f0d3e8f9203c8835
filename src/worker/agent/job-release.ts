/**
 * Letting go of a job the agent holds: handing it back to the queue, dropping or abandoning it,
 * cancelling it and releasing a prefetched one, each making sure ComfyUI does not run a prompt
 * the agent no longer holds. Apart from {@link JobRunner} because none of it relays events or
 * uploads outputs: it only needs the job table, the outcome channel and ComfyUI's queue.
 */
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { isUnreachable } from './comfy-env.js';
import type { ControlLink } from './control-link.js';
import type { HealthMonitor } from './health.js';
import type { AgentJob, JobTable } from './jobs.js';

export interface JobReleaseDeps {
  comfy: ComfyClient;
  jobs: JobTable;
  link: Pick<ControlLink, 'sendOutcome' | 'forgetEvents'>;
  health: Pick<HealthMonitor, 'isHealthy' | 'suspect'>;
  log: Logger;
  /** ComfyUI turned out to be running the job already (see {@link JobRunner.markStarted}). */
  markStarted: (job: AgentJob) => void;
}

export class JobRelease {
  constructor(private readonly d: JobReleaseDeps) {}

  /** Stops holding a job without reporting it (the control plane already moved on). */
  drop(job: AgentJob, why: string): void {
    this.d.jobs.remove(job, why);
    // No report will be acknowledged for it: its kept events would be sent again for nothing.
    this.d.link.forgetEvents(job.jobId, job.attempt, job.promptId);
    this.d.log.info({ jobId: job.jobId, attempt: job.attempt, why }, 'job dropped');
  }

  /**
   * Hands a job back to the queue (`job_released`) and makes sure ComfyUI does not run it: out of
   * its queue if queued, interrupted if running. ComfyUI may be unreachable; the prompt id stays
   * buried so it is cleaned up when ComfyUI answers again.
   */
  async giveBack(job: AgentJob, reason: string): Promise<void> {
    if (!this.d.jobs.holds(job)) return;
    // Cancelled already: the control plane waits for our confirmation, not for the job.
    if (job.cancelling) return this.confirmCancel(job);
    const state = job.state;
    this.d.jobs.remove(job, reason);
    this.d.link.sendOutcome(
      { type: 'job_released', jobId: job.jobId, attempt: job.attempt, reason },
      job.promptId,
    );
    this.d.log.info({ jobId: job.jobId, attempt: job.attempt, state, reason }, 'job handed back');
    if (this.d.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
  }

  /** Stops holding a job the server forgot, making sure ComfyUI does not run it. */
  async abandon(job: AgentJob, reason: string): Promise<void> {
    const state = job.state;
    this.d.jobs.remove(job, reason);
    this.d.link.forgetEvents(job.jobId, job.attempt, job.promptId);
    if (this.d.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
  }

  private async purgeFromComfy(promptId: string, state: AgentJob['state']): Promise<void> {
    try {
      if (state === 'queued' || state === 'preparing') await this.d.comfy.deleteFromQueue([promptId]);
      // Targeted: a no-op unless this very prompt is running (covers a start we have not seen yet).
      if (state !== 'finishing') await this.d.comfy.interrupt(promptId);
    } catch (err) {
      this.d.log.debug({ promptId, err: (err as Error).message }, 'could not remove a prompt from ComfyUI');
    }
  }

  async onCancel(jobId: string, attempt: number): Promise<void> {
    const job = this.d.jobs.get(jobId, attempt);
    if (job && (job.state === 'running' || job.state === 'finishing') && this.d.health.isHealthy) {
      // ComfyUI is running it: interrupt it and keep relaying until ComfyUI has actually stopped
      // (its own `execution_interrupted`, or `execution_success` if it got there first, then its
      // final `executing`); the runner's `settle` confirms then. Uploads stop now: a cancelled job
      // keeps nothing.
      if (job.cancelling) return;
      job.cancelling = true;
      job.abort.abort();
      this.d.log.info({ jobId, attempt, state: job.state }, 'cancelling: interrupting ComfyUI');
      try {
        if (job.state === 'running') await this.d.comfy.interrupt(job.promptId);
      } catch (err) {
        this.d.log.warn({ jobId, err: (err as Error).message }, 'could not interrupt ComfyUI');
        if (isUnreachable(err)) this.d.health.suspect((err as Error).message);
      }
      return;
    }
    if (job) {
      const state = job.state;
      this.d.jobs.remove(job, 'cancelled');
      if (this.d.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
      this.d.log.info({ jobId, attempt, state }, 'job cancelled');
    }
    // Confirm even when we no longer hold it: the control plane frees the slot on this answer.
    this.d.link.sendOutcome({ type: 'job_cancelled', jobId, attempt });
  }

  async onRelease(jobId: string, attempt: number): Promise<void> {
    const job = this.d.jobs.get(jobId, attempt);
    if (!job || (job.state !== 'queued' && job.state !== 'preparing')) return; // started: keep it
    if (job.state === 'preparing') return this.giveBack(job, 'released on request');
    try {
      await this.d.comfy.deleteFromQueue([job.promptId]);
      if (!this.d.jobs.holds(job) || job.state !== 'queued') return;
      // ComfyUI may have taken it off its queue to run it a moment ago.
      const q = await this.d.comfy.getQueue();
      if (!this.d.jobs.holds(job) || job.state !== 'queued') return;
      if (q.queue_running.some((item) => item[1] === job.promptId)) {
        this.d.markStarted(job);
        return;
      }
      await this.giveBack(job, 'released on request');
    } catch (err) {
      this.d.log.warn(
        { jobId, err: (err as Error).message },
        'could not take a prefetched job back from ComfyUI; keeping it',
      );
    }
  }

  /** ComfyUI has stopped the cancelled job: the control plane may now free its slot. */
  confirmCancel(job: AgentJob): void {
    if (!this.d.jobs.holds(job)) return;
    this.d.jobs.remove(job, 'cancelled');
    this.d.link.sendOutcome({ type: 'job_cancelled', jobId: job.jobId, attempt: job.attempt }, job.promptId);
    this.d.log.info({ jobId: job.jobId, attempt: job.attempt }, 'job cancelled; ComfyUI has stopped it');
  }
}
