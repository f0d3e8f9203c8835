/**
 * Taking back jobs sent ahead to workers that ComfyUI has not started: all of them while the queue
 * is paused, and, for a pending job that became more urgent while every slot was full, one
 * prefetched job it outranks. Kept apart from the dispatcher's passes because it only asks: the
 * agent answers `job_released`, the job returns to its old place in the queue, and the freed slot
 * is filled by the dispatcher's next pass like any other.
 */
import type { Logger } from 'pino';
import type { QueueService } from '../scheduler/queue-service.js';
import { priorityRank, type Job, type QueueMode } from '../store/types.js';
import { acceptsWork, type HeldJob, type WorkerEntry, type WorkerRegistry } from './worker-registry.js';

export interface TakeBackDeps {
  queue: QueueService;
  registry: WorkerRegistry;
  logger: Logger;
  /** Whether an eligible worker has a free slot (then the dispatch pass serves the urgent job). */
  hasFreeSlot: () => boolean;
}

export class TakeBack {
  /** Pending jobs that became more urgent while every slot was full (see {@link preempt}). */
  readonly urgent = new Set<string>();

  constructor(private readonly deps: TakeBackDeps) {}

  /**
   * Pause means nothing new starts: every job sent ahead to a worker that ComfyUI has not started
   * is asked back. The agent takes it out of ComfyUI's queue (or keeps it, if ComfyUI started it
   * meanwhile) and answers `job_released`; the job returns to its old place in the queue.
   */
  allSentAhead(why: string): void {
    for (const worker of this.deps.registry.online()) {
      for (const held of worker.held.values()) {
        if (held.state !== 'running') this.request(worker, held, why);
      }
    }
  }

  /** Asks the worker to give the job back (once; not for a job being cancelled). */
  request(worker: WorkerEntry, held: HeldJob, why: string): void {
    if (held.releaseRequested || held.cancelRequested || !worker.link?.open) return;
    held.releaseRequested = true;
    const sent = worker.link.send({ type: 'release', jobId: held.jobId, attempt: held.attempt });
    this.deps.logger.info(
      { jobId: held.jobId, workerId: worker.id, why, sent },
      'asked a worker to give a job back',
    );
  }

  /**
   * For each pending job that became more urgent (moved to the front, priority raised, or enqueued
   * that way) while no eligible worker had a free slot: ask one worker to give back a prefetched
   * job that ComfyUI has not started and that the urgent job outranks. When the agent answers
   * `job_released`, the job returns to the queue at its old place and the freed slot goes to the
   * urgent one on the next pass.
   */
  async preempt(): Promise<void> {
    const ids = [...this.urgent];
    this.urgent.clear();
    if (this.deps.hasFreeSlot()) return; // a free slot exists; the pass handles it
    const { store } = this.deps.queue;
    const settings = await store.getSettings();
    if (settings.paused) return;
    for (const id of ids) {
      const job = await store.getJob(id);
      if (!job || job.status !== 'pending') continue;
      // A user at their running limit could not take the freed slot anyway.
      const limit = settings.userLimits[job.user]?.maxRunningPerUser ?? settings.limits.maxRunningPerUser;
      if ((await store.countByStatus(job.user)).running >= limit) continue;
      const victim = this.releasable().find(({ held }) => outranks(job, held, settings.mode));
      if (!victim) continue;
      this.request(victim.worker, victim.held, `a more urgent job: ${job.id}`);
    }
  }

  /** Prefetched jobs ComfyUI has not started, most recently assigned first. */
  private releasable(): { worker: WorkerEntry; held: HeldJob }[] {
    const out: { worker: WorkerEntry; held: HeldJob }[] = [];
    for (const worker of this.deps.registry.online()) {
      if (!acceptsWork(worker)) continue;
      const held = [...worker.held.values()].sort((a, b) => a.assignedAt - b.assignedAt);
      const hasRunning = held.some((h) => h.state === 'running');
      held.forEach((h, i) => {
        // Without a running job, the oldest held job is the one about to start: keep it.
        if (!hasRunning && i === 0) return;
        if (h.state === 'running' || h.releaseRequested || h.cancelRequested) return;
        out.push({ worker, held: h });
      });
    }
    return out.sort((a, b) => b.held.assignedAt - a.held.assignedAt);
  }
}

/** Whether pending job `a` would be served before held job `b` (front first; then level in priority mode). */
export function outranks(
  a: Pick<Job, 'front' | 'priority'>,
  b: Pick<HeldJob, 'front' | 'priority'>,
  mode: QueueMode,
): boolean {
  if (a.front !== b.front) return a.front > b.front;
  if (mode === 'priority') return priorityRank(a.priority) < priorityRank(b.priority);
  return false;
}
