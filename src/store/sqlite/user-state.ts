/**
 * Maintenance of `user_state`: every transition that changes a user's jobs applies a delta here, in
 * the same transaction. When the user's set of pending jobs (or their order) changed, the head
 * sort keys are recomputed from the head indexes with two `LIMIT 1` look-ups. With no pending job
 * left the head keys mean nothing (the `users_*` indexes leave such rows out, and `checkUserState`
 * does not compare them): a claim of the last one skips the look-ups, and the next enqueue sets them.
 */
import type Database from 'better-sqlite3';
import type { JobStatus, StatusCounts, UserCounters } from '../types.js';

export interface UserDelta {
  pending?: number;
  running?: number;
  completed?: number;
  failed?: number;
  cancelled?: number;
  gpuMs?: number;
  /** A createdAt / finishedAt to fold into `last_activity` (max). */
  activity?: number;
  /** New `last_served`. */
  served?: number;
  /**
   * A job handed back: `last_served` returns to this (its value before that job's claim) unless it
   * is already lower, so the user gets back the turn the claim used. Null: unknown, no change.
   */
  unserve?: number | null;
}

/** The delta for one job leaving `from` (pending/running) for the terminal `to`. */
export function finishDelta(
  from: JobStatus,
  to: 'completed' | 'failed' | 'cancelled',
  startedAt: number | null,
  now: number,
): UserDelta {
  return {
    [from]: -1,
    [to]: 1,
    gpuMs: startedAt === null ? 0 : now - startedAt,
    activity: now,
  };
}

interface CountsRow {
  user: string;
  pending: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  gpu_ms: number;
  last_activity: number | null;
}

const DELTA_SET = `pending = pending + @pending, running = running + @running,
  completed = completed + @completed, failed = failed + @failed, cancelled = cancelled + @cancelled,
  gpu_ms = gpu_ms + @gpuMs,
  last_activity = CASE WHEN @activity IS NULL THEN last_activity
    WHEN last_activity IS NULL OR last_activity < @activity THEN @activity ELSE last_activity END,
  last_served = CASE WHEN @unserve IS NOT NULL AND @unserve < last_served THEN @unserve
    ELSE coalesce(@served, last_served) END`;

const HEAD = `FROM jobs WHERE user = @user AND status = 'pending' ORDER BY front DESC, seq LIMIT 1`;
const PHEAD = `FROM jobs WHERE user = @user AND status = 'pending' ORDER BY front DESC, prio_rank, seq LIMIT 1`;
const HEADS_SET = `head_front = coalesce((SELECT front ${HEAD}), 0),
  head_seq = coalesce((SELECT seq ${HEAD}), 0),
  phead_rank = coalesce((SELECT prio_rank ${PHEAD}), 0),
  phead_seq = coalesce((SELECT seq ${PHEAD}), 0)`;

export class UserState {
  private readonly enqueueStmt: Database.Statement;
  private readonly deltaStmt: Database.Statement;
  private readonly deltaHeadsStmt: Database.Statement;
  private readonly pendingStmt: Database.Statement<[string], number>;
  private readonly countsStmt: Database.Statement<[string], CountsRow>;
  private readonly allCountsStmt: Database.Statement<[], string>;
  private readonly totalsStmt: Database.Statement<[], StatusCounts>;
  private readonly activityStmt: Database.Statement;

  constructor(db: Database.Database) {
    // A new job is the head when the user had none pending or it is moved to the front (its front
    // is the largest); otherwise only the priority head can change, to a more urgent level.
    this.enqueueStmt = db.prepare(`
      INSERT INTO user_state (user, pending, last_activity, head_front, head_seq, phead_rank, phead_seq)
      VALUES (@user, 1, @now, @front, @seq, @rank, @seq)
      ON CONFLICT (user) DO UPDATE SET
        head_front = CASE WHEN pending = 0 OR @front > 0 THEN @front ELSE head_front END,
        head_seq = CASE WHEN pending = 0 OR @front > 0 THEN @seq ELSE head_seq END,
        phead_rank = CASE WHEN pending = 0 OR @front > 0 OR (head_front = 0 AND @rank < phead_rank)
          THEN @rank ELSE phead_rank END,
        phead_seq = CASE WHEN pending = 0 OR @front > 0 OR (head_front = 0 AND @rank < phead_rank)
          THEN @seq ELSE phead_seq END,
        pending = pending + 1,
        last_activity = CASE WHEN last_activity IS NULL OR last_activity < @now THEN @now ELSE last_activity END`);
    this.deltaStmt = db.prepare(`UPDATE user_state SET ${DELTA_SET} WHERE user = @user`);
    this.deltaHeadsStmt = db.prepare(`UPDATE user_state SET ${DELTA_SET}, ${HEADS_SET} WHERE user = @user`);
    this.pendingStmt = db.prepare<[string], number>('SELECT pending FROM user_state WHERE user = ?').pluck();
    const cols = 'user, pending, running, completed, failed, cancelled, gpu_ms, last_activity';
    this.countsStmt = db.prepare<[string], CountsRow>(`SELECT ${cols} FROM user_state WHERE user = ?`);
    // One JSON string instead of a row object per user: materialising rows cost ~3x more.
    this.allCountsStmt = db
      .prepare<[], string>(
        `SELECT json_group_array(json_array(${cols})) FROM
         (SELECT ${cols} FROM user_state WHERE pending + running + completed + failed + cancelled > 0 ORDER BY user)`,
      )
      .pluck();
    this.totalsStmt = db.prepare<[], StatusCounts>(`SELECT coalesce(sum(pending), 0) AS pending,
      coalesce(sum(running), 0) AS running, coalesce(sum(completed), 0) AS completed,
      coalesce(sum(failed), 0) AS failed, coalesce(sum(cancelled), 0) AS cancelled FROM user_state`);
    this.activityStmt = db.prepare(`UPDATE user_state SET last_activity =
      (SELECT max(max(created_at), coalesce(max(finished_at), 0)) FROM jobs WHERE user = @user) WHERE user = @user`);
  }

  pendingOf(user: string): number {
    return this.pendingStmt.get(user) ?? 0;
  }

  enqueued(user: string, seq: number, front: number, rank: number, now: number): void {
    this.enqueueStmt.run({ user, seq, front, rank, now });
  }

  /** Applies a delta; `heads` recomputes the head keys (the user's pending set or order changed). */
  apply(user: string, d: UserDelta, heads: boolean): void {
    (heads ? this.deltaHeadsStmt : this.deltaStmt).run({
      user,
      pending: d.pending ?? 0,
      running: d.running ?? 0,
      completed: d.completed ?? 0,
      failed: d.failed ?? 0,
      cancelled: d.cancelled ?? 0,
      gpuMs: d.gpuMs ?? 0,
      activity: d.activity ?? null,
      served: d.served ?? null,
      unserve: d.unserve ?? null,
    });
  }

  /** Recomputes `last_activity` after jobs were deleted. */
  refreshActivity(user: string): void {
    this.activityStmt.run({ user });
  }

  counts(user?: string): StatusCounts {
    if (user === undefined) return { ...this.totalsStmt.get()! };
    const r = this.countsStmt.get(user);
    return {
      pending: r?.pending ?? 0,
      running: r?.running ?? 0,
      completed: r?.completed ?? 0,
      failed: r?.failed ?? 0,
      cancelled: r?.cancelled ?? 0,
    };
  }

  counters(): UserCounters[] {
    const rows = JSON.parse(this.allCountsStmt.get() ?? '[]') as [string, ...number[]][];
    return rows.map(([user, pending, running, completed, failed, cancelled, gpuMs, lastActivityAt]) => ({
      user,
      pending: pending!,
      running: running!,
      completed: completed!,
      failed: failed!,
      cancelled: cancelled!,
      gpuMs: gpuMs!,
      lastActivityAt: lastActivityAt ?? null,
    }));
  }
}

/**
 * Recomputes `user_state` from `jobs` and lists every difference (empty when consistent). For
 * tests and `comfy-multi doctor`-style checks; it scans everything.
 */
export function checkUserState(db: Database.Database): string[] {
  const rows = db
    .prepare(
      `WITH agg AS (
        SELECT user,
          sum(status = 'pending') AS pending, sum(status = 'running') AS running,
          sum(status = 'completed') AS completed, sum(status = 'failed') AS failed,
          sum(status = 'cancelled') AS cancelled,
          sum(CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL THEN finished_at - started_at ELSE 0 END) AS gpu_ms,
          max(max(created_at), coalesce(max(finished_at), 0)) AS last_activity
        FROM jobs GROUP BY user)
      SELECT u.user, u.pending, u.running, u.completed, u.failed, u.cancelled, u.gpu_ms, u.last_activity,
        u.head_front, u.head_seq, u.phead_rank, u.phead_seq,
        coalesce(a.pending, 0) AS a_pending, coalesce(a.running, 0) AS a_running,
        coalesce(a.completed, 0) AS a_completed, coalesce(a.failed, 0) AS a_failed,
        coalesce(a.cancelled, 0) AS a_cancelled, coalesce(a.gpu_ms, 0) AS a_gpu_ms, a.last_activity AS a_last_activity,
        (SELECT front ${HEAD.replaceAll('@user', 'u.user')}) AS h_front,
        (SELECT seq ${HEAD.replaceAll('@user', 'u.user')}) AS h_seq,
        (SELECT prio_rank ${PHEAD.replaceAll('@user', 'u.user')}) AS p_rank,
        (SELECT seq ${PHEAD.replaceAll('@user', 'u.user')}) AS p_seq
      FROM user_state u LEFT JOIN agg a ON a.user = u.user
      UNION ALL
      SELECT a.user, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        a.pending, a.running, a.completed, a.failed, a.cancelled, a.gpu_ms, a.last_activity, NULL, NULL, NULL, NULL
      FROM agg a WHERE a.user NOT IN (SELECT user FROM user_state)`,
    )
    .all() as Record<string, number | string | null>[];
  const problems: string[] = [];
  for (const r of rows) {
    const diff = (field: string, want: unknown) => {
      if (r[field] !== want)
        problems.push(`${String(r.user)}: ${field} = ${String(r[field])}, expected ${String(want)}`);
    };
    for (const f of ['pending', 'running', 'completed', 'failed', 'cancelled', 'gpu_ms', 'last_activity']) {
      diff(f, r[`a_${f}`] ?? null);
    }
    if (r.pending !== null && Number(r.pending) > 0) {
      diff('head_front', r.h_front);
      diff('head_seq', r.h_seq);
      diff('phead_rank', r.p_rank);
      diff('phead_seq', r.p_seq);
    }
  }
  return problems;
}
