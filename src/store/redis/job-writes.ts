/**
 * Everything that changes a job on Redis, each one Lua script (see `lua/`) so each is atomic:
 * enqueue, leases and adoption, the transitions to a final state (complete, fail, cancel) and back
 * (release, requeue of lapsed leases), priority and front of queue, output names, and removing
 * finished jobs (prune, delete history). Claiming is its own part (claim.ts).
 */
import { randomUUID } from 'node:crypto';
import { AppError, QueueLimitError } from '../../errors.js';
import {
  OUTPUT_COUNTERS_NS,
  OUTPUT_NAMES_NS,
  checkClaims,
  outputClaimKey,
  outputCounterKey,
} from '../output-names.js';
import type {
  Job,
  JobError,
  JobOutput,
  NewJob,
  OutputNameClaim,
  Priority,
  RequeueResult,
  TransitionResult,
} from '../types.js';
import { checkPriority, parseJob, type Flat } from './redis-rows.js';
import type { RedisStoreCore } from './store-core.js';

/** Jobs one `requeue-expired` call handles; it is called again while a batch comes back full. */
const REQUEUE_BATCH = 200;
/** Jobs one `prune` / `delete-history` call removes, so no single script blocks Redis for long. */
const DELETE_BATCH = 500;

export class RedisJobWrites {
  constructor(private readonly core: RedisStoreCore) {}

  /** A transition script's reply (tag, job) as the `JobStore` answers it. */
  private transition(r: unknown[]): TransitionResult {
    const tag = r[0] as string;
    switch (tag) {
      case 'ok':
        return { ok: true, job: parseJob(r[1]) };
      case 'late':
        return { ok: true, job: parseJob(r[1]), late: true };
      case 'duplicate':
        return { ok: true, job: parseJob(r[1]), duplicate: true };
      case 'not_found':
        return { ok: false, reason: 'not_found' };
      case 'stale':
      case 'terminal':
      case 'not_running':
        return { ok: false, reason: tag, job: parseJob(r[1]) };
      default:
        throw new Error(`unexpected script reply ${tag}`);
    }
  }

  async enqueue(job: NewJob, now: number): Promise<Job> {
    const k = this.core.keys;
    const id = job.id ?? randomUUID();
    const priority = job.priority ?? 'normal';
    checkPriority(priority);
    const prompt = JSON.stringify(job.prompt);
    const models = JSON.stringify(job.models ?? []);
    const metadata = JSON.stringify(job.metadata ?? {});
    const defaultLimit =
      this.core.defaults.userLimits[job.user]?.maxPendingPerUser ??
      this.core.defaults.limits.maxPendingPerUser;
    const r = await this.core.run(
      'enqueue',
      [...this.core.headsKeys(), k.seq, k.front, k.settings, k.idxAll, k.users],
      [k.prefix, id, job.user, priority, job.front ? '1' : '0', now, prompt, models, metadata, defaultLimit],
    );
    if (r[0] === 'conflict') throw new AppError('CONFLICT', `A job with id ${id} already exists.`);
    if (r[0] === 'limit') throw new QueueLimitError(job.user, Number(r[1]));
    return {
      id,
      seq: Number(r[1]),
      user: job.user,
      status: 'pending',
      priority,
      front: Number(r[2]),
      prompt: JSON.parse(prompt) as Job['prompt'],
      models: JSON.parse(models) as string[],
      metadata: JSON.parse(metadata) as Record<string, unknown>,
      attempts: 0,
      skips: 0,
      workerId: null,
      leaseExpiresAt: null,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      error: null,
      outputs: [],
    };
  }

  async renewLease(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    const k = this.core.keys;
    const r = (await this.core.run(
      'renew-lease',
      [k.leases],
      [k.prefix, jobId, workerId, attempt, now + leaseMs],
    )) as unknown;
    return r === 1;
  }

  async adopt(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    const r = (await this.core.run(
      'adopt',
      [...this.core.transitionKeys(), this.core.keys.served],
      [this.core.keys.prefix, jobId, workerId, attempt, now, now + leaseMs],
    )) as unknown;
    return r === 1;
  }

  async complete(
    jobId: string,
    attempt: number,
    outputs: JobOutput[],
    now: number,
  ): Promise<TransitionResult> {
    const k = this.core.keys;
    return this.transition(
      await this.core.run('finish', this.core.transitionKeys(), [
        k.prefix,
        jobId,
        attempt,
        'completed',
        'outputs',
        JSON.stringify(outputs),
        now,
      ]),
    );
  }

  async fail(jobId: string, attempt: number, error: JobError, now: number): Promise<TransitionResult> {
    const k = this.core.keys;
    return this.transition(
      await this.core.run('finish', this.core.transitionKeys(), [
        k.prefix,
        jobId,
        attempt,
        'failed',
        'error',
        JSON.stringify(error),
        now,
      ]),
    );
  }

  async release(jobId: string, attempt: number, _now: number): Promise<TransitionResult> {
    return this.transition(
      await this.core.run('release', this.core.transitionKeys(), [this.core.keys.prefix, jobId, attempt]),
    );
  }

  async cancel(jobId: string, now: number): Promise<TransitionResult> {
    return this.transition(
      await this.core.run('cancel', this.core.transitionKeys(), [this.core.keys.prefix, jobId, now]),
    );
  }

  async requeueExpired(now: number, maxAttempts: number): Promise<RequeueResult> {
    const out: RequeueResult = { requeued: [], failed: [] };
    for (;;) {
      const r = await this.core.run('requeue-expired', this.core.transitionKeys(), [
        this.core.keys.prefix,
        now,
        maxAttempts,
        REQUEUE_BATCH,
      ]);
      for (const flat of r[1] as Flat[]) out.requeued.push(parseJob(flat));
      for (const flat of r[2] as Flat[]) out.failed.push(parseJob(flat));
      if (Number(r[0]) < REQUEUE_BATCH) return out;
    }
  }

  async setPriority(jobId: string, priority: Priority): Promise<Job | null> {
    checkPriority(priority);
    const k = this.core.keys;
    const r = await this.core.run('set-priority', this.core.headsKeys(), [k.prefix, jobId, priority]);
    return r[0] === 'ok' ? parseJob(r[1]) : null;
  }

  async moveToFront(jobId: string): Promise<Job | null> {
    const k = this.core.keys;
    const r = await this.core.run('move-to-front', [...this.core.headsKeys(), k.front], [k.prefix, jobId]);
    return r[0] === 'ok' ? parseJob(r[1]) : null;
  }

  async pruneHistory(before: number): Promise<number> {
    const k = this.core.keys;
    let total = 0;
    for (;;) {
      const r = await this.core.run(
        'prune',
        [k.idxAll, k.idxFinished, k.users, k.gpu],
        [k.prefix, before, DELETE_BATCH],
      );
      total += Number(r[1]);
      if (Number(r[0]) < DELETE_BATCH) return total;
    }
  }

  async nameOutputs(user: string, jobId: string, claims: readonly OutputNameClaim[]): Promise<number[]> {
    checkClaims(claims);
    if (claims.length === 0) return [];
    const args: (string | number)[] = [jobId];
    for (const c of claims) args.push(outputCounterKey(user, c), outputClaimKey(c), c.floor ?? 0);
    const k = this.core.keys;
    const r = await this.core.run(
      'name-outputs',
      [k.blob(OUTPUT_COUNTERS_NS), k.blob(OUTPUT_NAMES_NS)],
      args,
    );
    return r.map(Number);
  }

  async deleteHistory(user: string, ids?: string[]): Promise<number> {
    const k = this.core.keys;
    const keys = [k.idxAll, k.idxFinished, k.users, k.gpu];
    let total = 0;
    if (ids) {
      const unique = [...new Set(ids)];
      for (let i = 0; i < unique.length; i += DELETE_BATCH) {
        const r = await this.core.run('delete-history', keys, [
          k.prefix,
          user,
          DELETE_BATCH,
          ...unique.slice(i, i + DELETE_BATCH),
        ]);
        total += Number(r[1]);
      }
      return total;
    }
    for (;;) {
      const r = await this.core.run('delete-history', keys, [k.prefix, user, DELETE_BATCH]);
      total += Number(r[1]);
      if (Number(r[0]) < DELETE_BATCH || Number(r[1]) === 0) return total;
    }
  }
}
