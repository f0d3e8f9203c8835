/**
 * Registering a worker that says `hello`, possibly again after a lost connection: its registry
 * entry, the jobs it still runs re-adopted from the queue, and what carries over from its previous
 * connection (events held back with a job's ending; attempts whose finish was recorded already).
 * Kept apart from the dispatcher because it needs only the registry and the queue, none of the
 * dispatch state (passes, pause, take-backs); the dispatcher activates the worker afterwards.
 */
import type { Logger } from 'pino';
import type { QueueService } from '../scheduler/queue-service.js';
import { isTerminal } from '../store/types.js';
import type { AgentMessage } from '../worker/protocol.js';
import {
  workerIdOf,
  type HeldJob,
  type WorkerEntry,
  type WorkerLink,
  type WorkerRegistry,
} from './worker-registry.js';

export interface WorkerHelloDeps {
  queue: QueueService;
  registry: WorkerRegistry;
  logger: Logger;
  clock: () => number;
}

export interface Registered {
  entry: WorkerEntry;
  /** Jobs the worker reported that are no longer its own: it drops them. */
  forget: { jobId: string; attempt: number }[];
}

/**
 * Registers a worker after `hello`. Re-adopts the in-flight jobs it reports (see
 * {@link QueueService.adopt}: same attempt, held by it or lapsed and still in the queue) and
 * renews their leases; returns the others as `forget`.
 */
export async function registerHello(
  deps: WorkerHelloDeps,
  link: WorkerLink,
  tokenName: string,
  msg: Extract<AgentMessage, { type: 'hello' }>,
): Promise<Registered> {
  const { queue, registry, logger } = deps;
  const id = workerIdOf(tokenName, msg.name);
  // What the previous connection held: events held back with a job's ending (until its finish
  // is recorded) move to the new connection, as the worker's copies sent again are dropped.
  const before = registry.get(id)?.held;
  const { entry, previous } = registry.connect(
    id,
    {
      name: msg.name,
      tokenName,
      agentVersion: msg.agentVersion,
      comfyuiVersion: msg.comfyuiVersion,
      devices: msg.devices,
      prefetch: msg.prefetch,
      envHash: msg.envHash,
      warmModels: msg.warmModels,
      healthy: msg.healthy,
      stopping: msg.stopping ?? false,
      ephemeral: msg.ephemeral,
    },
    link,
  );
  entry.eventSeq = msg.eventSeq === true;
  if (previous) {
    logger.warn({ workerId: id }, 'worker connected again; closing its previous connection');
    previous.close(4000, 'replaced by a newer connection');
  }
  const forget: { jobId: string; attempt: number }[] = [];
  const now = deps.clock();
  for (const f of msg.inFlight) {
    // Re-adopt what the worker still runs: its lease is renewed, or (lapsed while it was away,
    // not claimed since) the job is taken back from the queue, so nothing it runs runs twice.
    const adopted = await queue.adopt(f.jobId, id, f.attempt);
    const job = adopted ? await queue.store.getJob(f.jobId) : null;
    if (job) {
      entry.held.set(job.id, {
        jobId: job.id,
        attempt: f.attempt,
        user: job.user,
        models: job.models,
        state: f.state,
        priority: job.priority,
        front: job.front,
        assignedAt: now,
        startedAt: f.state === 'running' ? (job.startedAt ?? now) : null,
        node: null,
        progress: null,
        releaseRequested: false,
        cancelRequested: false,
        adopted: { seen: new Set() },
        ...carriedOver(before?.get(job.id), f.attempt),
      });
    } else {
      forget.push({ jobId: f.jobId, attempt: f.attempt });
      // Its finish was recorded already (the agent reports it again: the ack never came). The
      // events it sends again before that report may never have reached the owner.
      if (entry.eventSeq) {
        const done = await queue.store.getJob(f.jobId).catch(() => null);
        if (done && isTerminal(done.status) && done.workerId === id && done.attempts === f.attempt)
          (entry.finished ??= new Map()).set(done.id, { user: done.user, attempt: f.attempt });
      }
    }
  }
  logger.info(
    {
      workerId: id,
      comfyuiVersion: msg.comfyuiVersion,
      prefetch: msg.prefetch,
      kept: entry.held.size,
      forget: forget.length,
    },
    'worker registered',
  );
  return { entry, forget };
}

/**
 * What a reconnecting worker's job keeps from the connection before: ComfyUI's held-back ending,
 * and the outputs announced early and the time of the success (the agent does not send again the
 * events this process took already, so they would be lost from `/history` meanwhile).
 */
function carriedOver(
  old: HeldJob | undefined,
  attempt: number,
): Pick<HeldJob, 'ending' | 'announced' | 'succeededAt'> {
  if (old?.attempt !== attempt) return {};
  return {
    ...(old.ending ? { ending: old.ending } : {}),
    ...(old.announced ? { announced: old.announced } : {}),
    ...(old.succeededAt !== undefined ? { succeededAt: old.succeededAt } : {}),
  };
}
