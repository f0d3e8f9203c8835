import type { Job } from '../store/types.js';

/** The public JSON shape of a job in /api/v1. `prompt` only when asked for (it can be large). */
export function jobView(job: Job, opts: { position?: number | null; withPrompt?: boolean } = {}) {
  return {
    id: job.id,
    number: job.seq,
    user: job.user,
    status: job.status,
    priority: job.priority,
    front: job.front > 0,
    position: opts.position ?? null,
    attempts: job.attempts,
    workerId: job.workerId,
    models: job.models,
    metadata: job.metadata,
    createdAt: new Date(job.createdAt).toISOString(),
    startedAt: job.startedAt === null ? null : new Date(job.startedAt).toISOString(),
    finishedAt: job.finishedAt === null ? null : new Date(job.finishedAt).toISOString(),
    error: job.error,
    outputs: job.outputs,
    ...(opts.withPrompt ? { prompt: job.prompt } : {}),
  };
}
