/**
 * listJobs keyset pages and history deletion.
 *
 * Pages are keyed by `seq`. With a status filter, each status is read from its own index range
 * (`(status, seq)` or `(user, status, seq)`) and the ranges are merged, so a page costs
 * O(statuses × limit) however large the history is.
 */
import type Database from 'better-sqlite3';
import { AppError } from '../../errors.js';
import { JOB_STATUSES, TERMINAL_STATUSES, type JobQuery, type JobStatus } from '../types.js';
import { decodeCursor, encodeCursor } from './rows.js';
import type { UserState } from './user-state.js';

type Order = 'asc' | 'desc';
type SeqStmt<P extends unknown[]> = Database.Statement<P, number>;

interface GroupRow {
  user: string;
  status: 'completed' | 'failed' | 'cancelled';
  n: number;
  gpu: number;
}

const TERMINAL_SQL = TERMINAL_STATUSES.map((s) => `'${s}'`).join(', ');
const GPU = 'sum(CASE WHEN started_at IS NOT NULL THEN finished_at - started_at ELSE 0 END)';

export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return 50;
  return Math.min(500, Math.max(1, Math.trunc(limit)));
}

export class History {
  private readonly all: Record<Order, SeqStmt<[number, number]>>;
  private readonly byStatus: Record<Order, SeqStmt<[string, number, number]>>;
  private readonly byUserStatus: Record<Order, SeqStmt<[string, string, number, number]>>;
  private readonly pruneGroups: Database.Statement<[number], GroupRow>;
  private readonly pruneDelete: Database.Statement<[number], unknown>;
  private readonly pruneChunkEnd: Database.Statement<[number, number], { f: number }>;
  private readonly userGroups: Database.Statement<[string], GroupRow>;
  private readonly userDelete: Database.Statement<[string], unknown>;
  private readonly idsGroups: Database.Statement<[string, string], GroupRow>;
  private readonly idsDelete: Database.Statement<[string, string], unknown>;

  constructor(
    db: Database.Database,
    private readonly users: UserState,
  ) {
    const make = <P extends unknown[]>(where: string, order: Order): SeqStmt<P> =>
      db
        .prepare<P, number>(
          `SELECT seq FROM jobs WHERE ${where} seq ${order === 'desc' ? '<' : '>'} ? ORDER BY seq ${order} LIMIT ?`,
        )
        .pluck();
    this.all = { asc: make('', 'asc'), desc: make('', 'desc') };
    this.byStatus = { asc: make('status = ? AND', 'asc'), desc: make('status = ? AND', 'desc') };
    this.byUserStatus = {
      asc: make('user = ? AND status = ? AND', 'asc'),
      desc: make('user = ? AND status = ? AND', 'desc'),
    };
    const groups = (where: string, index = '') =>
      `SELECT user, status, count(*) AS n, ${GPU} AS gpu FROM jobs ${index}
       WHERE ${where} AND status IN (${TERMINAL_SQL}) GROUP BY user, status`;
    const idsWhere = 'user = ? AND id IN (SELECT value FROM json_each(?))';
    // Pinned to the finished_at range: without statistics the planner walks every terminal job.
    const pruneWhere = 'finished_at IS NOT NULL AND finished_at < ?';
    this.pruneGroups = db.prepare<[number], GroupRow>(groups(pruneWhere, 'INDEXED BY jobs_finished'));
    this.pruneDelete = db.prepare<[number], unknown>(
      `DELETE FROM jobs INDEXED BY jobs_finished WHERE ${pruneWhere} AND status IN (${TERMINAL_SQL})`,
    );
    this.pruneChunkEnd = db.prepare<[number, number], { f: number }>(
      `SELECT finished_at AS f FROM jobs INDEXED BY jobs_finished WHERE ${pruneWhere}
       ORDER BY finished_at LIMIT 1 OFFSET ?`,
    );
    this.userGroups = db.prepare<[string], GroupRow>(groups('user = ?'));
    this.userDelete = db.prepare<[string], unknown>(
      `DELETE FROM jobs WHERE user = ? AND status IN (${TERMINAL_SQL})`,
    );
    this.idsGroups = db.prepare<[string, string], GroupRow>(groups(idsWhere));
    this.idsDelete = db.prepare<[string, string], unknown>(
      `DELETE FROM jobs WHERE ${idsWhere} AND status IN (${TERMINAL_SQL})`,
    );
  }

  /** The seqs of one page, and the cursor of the next (null on the last page). */
  page(q: JobQuery): { seqs: number[]; nextCursor: string | null } {
    const limit = clampLimit(q.limit);
    const order: Order = q.order === 'asc' ? 'asc' : 'desc';
    let after = order === 'desc' ? Number.MAX_SAFE_INTEGER : 0;
    if (q.cursor !== undefined && q.cursor !== '') {
      const c = decodeCursor(q.cursor);
      if (c === null) throw new AppError('BAD_REQUEST', 'The page cursor is not valid.');
      after = c;
    }
    const statuses = normaliseStatuses(q.status);
    const take = limit + 1;
    let seqs: number[];
    if (statuses.length === JOB_STATUSES.length && q.user === undefined) {
      seqs = this.all[order].all(after, take);
    } else {
      seqs = [];
      for (const s of statuses) {
        seqs.push(
          ...(q.user === undefined
            ? this.byStatus[order].all(s, after, take)
            : this.byUserStatus[order].all(q.user, s, after, take)),
        );
      }
      if (statuses.length > 1) seqs.sort(order === 'desc' ? (a, b) => b - a : (a, b) => a - b);
      seqs = seqs.slice(0, take);
    }
    if (seqs.length <= limit) return { seqs, nextCursor: null };
    seqs = seqs.slice(0, limit);
    return { seqs, nextCursor: encodeCursor(seqs[seqs.length - 1]!) };
  }

  /** Deletes terminal jobs finished before `before`. Call inside a transaction. */
  /**
   * A cut-off no later than `before` with about `rows` finished jobs before it, so a big prune can
   * run as several short transactions instead of one long one that blocks every writer.
   */
  pruneChunk(before: number, rows: number): number {
    const row = this.pruneChunkEnd.get(before, rows);
    return row ? Math.min(before, row.f) : before;
  }

  prune(before: number): number {
    return this.remove(this.pruneGroups.all(before), () => this.pruneDelete.run(before).changes);
  }

  /** Deletes a user's terminal jobs, or only the listed ones. Call inside a transaction. */
  deleteUser(user: string, ids?: readonly string[]): number {
    if (ids === undefined)
      return this.remove(this.userGroups.all(user), () => this.userDelete.run(user).changes);
    if (ids.length === 0) return 0;
    const list = JSON.stringify(ids);
    return this.remove(this.idsGroups.all(user, list), () => this.idsDelete.run(user, list).changes);
  }

  private remove(groups: GroupRow[], del: () => number): number {
    if (groups.length === 0) return 0;
    for (const g of groups) this.users.apply(g.user, { [g.status]: -g.n, gpuMs: -g.gpu }, false);
    const n = del();
    for (const user of new Set(groups.map((g) => g.user))) this.users.refreshActivity(user);
    return n;
  }
}

function normaliseStatuses(status: JobQuery['status']): JobStatus[] {
  if (status === undefined) return [...JOB_STATUSES];
  const list = Array.isArray(status) ? status : [status];
  if (list.length === 0) return [...JOB_STATUSES];
  for (const s of list) {
    if (!JOB_STATUSES.includes(s)) throw new AppError('BAD_REQUEST', `Unknown job status: ${String(s)}.`);
  }
  return [...new Set(list)];
}
