/**
 * How a claimed job's attempt ends or resumes: complete / fail / release under the contract's
 * `(jobId, attempt)` rules, cancel, the lease sweep, and a worker adopting its lapsed attempt.
 *
 * Every method runs inside the IMMEDIATE transaction `sqlite-store.ts` opens around it, so none
 * opens one itself. Kept apart from the store so that these rules (late, duplicate and stale
 * reports) read in one place, next to nothing but the statements and `user_state` deltas they use.
 */
import {
  isTerminal,
  type JobError,
  type JobOutput,
  type RequeueResult,
  type TransitionResult,
} from '../types.js';
import type { JobStatements } from './job-statements.js';
import type { JobReader, JobStateRow } from './rows.js';
import { finishDelta, type UserState } from './user-state.js';

export class JobTransitions {
  constructor(
    private readonly s: JobStatements,
    private readonly jobs: JobReader,
    private readonly users: UserState,
  ) {}

  complete(jobId: string, attempt: number, outputs: JobOutput[], now: number): TransitionResult {
    return this.settle(jobId, attempt, 'completed', (st) => {
      this.s.finish.run('completed', now, st.seq);
      this.s.setOutputs.run(JSON.stringify(outputs), st.seq);
      this.users.apply(
        st.user,
        finishDelta(st.status, 'completed', st.started_at, now),
        st.status === 'pending',
      );
    });
  }

  fail(jobId: string, attempt: number, error: JobError, now: number): TransitionResult {
    return this.settle(jobId, attempt, 'failed', (st) => this.failJob(st, error, now));
  }

  adopt(jobId: string, workerId: string, attempt: number, leaseMs: number, now: number): boolean {
    if (this.s.renew.run(now + leaseMs, jobId, workerId, attempt).changes === 1) return true;
    const st = this.jobs.state(jobId);
    if (!st || st.status !== 'pending' || attempt < 1 || st.attempts !== attempt) return false;
    // Running again uses the user's turn again, exactly as its claim did (a hand-back gave it back).
    const before = this.s.lastServed.get(st.user) ?? 0;
    this.s.adopt.run(workerId, now + leaseMs, now, before, st.seq);
    this.users.apply(st.user, { pending: -1, running: 1, served: this.s.nextServe.get()! }, true);
    return true;
  }

  release(jobId: string, attempt: number): TransitionResult {
    return this.settle(jobId, attempt, 'pending', (st) => {
      this.s.requeue.run(1, st.seq);
      this.users.apply(st.user, { running: -1, pending: 1, unserve: st.served_before }, true);
    });
  }

  cancel(jobId: string, now: number): TransitionResult {
    const st = this.jobs.state(jobId);
    if (!st) return { ok: false, reason: 'not_found' };
    if (isTerminal(st.status)) return { ok: false, reason: 'terminal', job: this.jobs.bySeq(st.seq) };
    this.s.finish.run('cancelled', now, st.seq);
    this.users.apply(
      st.user,
      finishDelta(st.status, 'cancelled', st.started_at, now),
      st.status === 'pending',
    );
    return { ok: true, job: this.jobs.bySeq(st.seq) };
  }

  requeueExpired(now: number, maxAttempts: number): RequeueResult {
    const requeued: number[] = [];
    const failed: number[] = [];
    for (const st of this.s.expired.all(now)) {
      if (st.attempts >= maxAttempts) {
        this.failJob(
          st,
          {
            reason: 'worker_lost',
            message: `The worker running this job stopped renewing its lease; gave up after ${st.attempts} attempt(s).`,
          },
          now,
        );
        failed.push(st.seq);
      } else {
        this.s.requeue.run(0, st.seq);
        this.users.apply(st.user, { running: -1, pending: 1, unserve: st.served_before }, true);
        requeued.push(st.seq);
      }
    }
    return { requeued: this.jobs.bySeqs(requeued), failed: this.jobs.bySeqs(failed) };
  }

  /** complete / fail / release: the shared `(jobId, attempt)` rules of the contract. */
  private settle(
    jobId: string,
    attempt: number,
    to: 'completed' | 'failed' | 'pending',
    apply: (st: JobStateRow) => void,
  ): TransitionResult {
    const st = this.jobs.state(jobId);
    if (!st) return { ok: false, reason: 'not_found' };
    if (st.status === 'running' && st.attempts === attempt) {
      apply(st);
      return { ok: true, job: this.jobs.bySeq(st.seq) };
    }
    if (to !== 'pending' && isLateFinish(st, attempt)) {
      apply(st);
      return { ok: true, job: this.jobs.bySeq(st.seq), late: true };
    }
    const job = this.jobs.bySeq(st.seq);
    // A repeat of the worker's own report is harmless; but an attempt that the lease sweeper
    // already failed as worker_lost was not ended by this worker, so its late report is refused.
    const lostLease = st.status === 'failed' && job.error?.reason === 'worker_lost';
    if (to !== 'pending' && st.status === to && st.attempts === attempt && !lostLease)
      return { ok: true, job, duplicate: true };
    return { ok: false, reason: isTerminal(st.status) ? 'terminal' : 'stale', job };
  }

  /** A pending or running job ends as failed. */
  private failJob(st: JobStateRow, error: JobError, now: number): void {
    this.s.finish.run('failed', now, st.seq);
    this.s.setError.run(JSON.stringify(error), st.seq);
    this.users.apply(st.user, finishDelta(st.status, 'failed', st.started_at, now), st.status === 'pending');
  }
}

/**
 * A finish from an attempt that lost its lease but did run: the job waits in the queue under that
 * same attempt, or a later attempt has claimed it since (the first finish wins).
 */
function isLateFinish(st: JobStateRow, attempt: number): boolean {
  if (attempt < 1) return false;
  return (
    (st.status === 'pending' && st.attempts === attempt) || (st.status === 'running' && st.attempts > attempt)
  );
}
