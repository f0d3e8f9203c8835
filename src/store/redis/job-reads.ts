/**
 * Reading jobs on Redis: one job, pages of jobs (script `list-jobs`), the pending jobs in the order
 * they would be served (script `pending-order` plus the policy's `serviceOrder`), counts by status
 * and per user. None of these change anything.
 */
import { AppError } from '../../errors.js';
import { serviceOrder } from '../../scheduler/policy.js';
import {
  JOB_STATUSES,
  type Job,
  type JobPage,
  type JobQuery,
  type QueueMode,
  type StatusCounts,
  type UserCounters,
} from '../types.js';
import {
  byCodePoint,
  clampLimit,
  decodeCursor,
  encodeCursor,
  headFrom,
  jobFrom,
  onlyContenders,
  parseJob,
  usersOf,
  type Flat,
  type HeadTuple,
} from './redis-rows.js';
import type { RedisStoreCore } from './store-core.js';

export class RedisJobReads {
  constructor(private readonly core: RedisStoreCore) {}

  async getJob(id: string): Promise<Job | null> {
    const h = await this.core.io(this.core.client.hgetall(this.core.keys.job(id)));
    return h.id === undefined ? null : jobFrom(h);
  }

  async listJobs(q: JobQuery): Promise<JobPage> {
    const k = this.core.keys;
    const limit = clampLimit(q.limit);
    const statuses =
      q.status === undefined ? [] : [...new Set(Array.isArray(q.status) ? q.status : [q.status])];
    for (const s of statuses) {
      if (!JOB_STATUSES.includes(s)) throw new AppError('BAD_REQUEST', `Unknown job status ${String(s)}.`);
    }
    const cursor = q.cursor ? decodeCursor(q.cursor) : '';
    const order = q.order === 'asc' ? 'asc' : 'desc';
    const r = await this.core.run(
      'list-jobs',
      [k.idxAll],
      [k.prefix, q.user === undefined ? '0' : '1', q.user ?? '', order, cursor, limit, ...statuses],
    );
    const jobs = (r[1] as Flat[]).map(parseJob);
    const last = jobs[jobs.length - 1];
    return { jobs, nextCursor: r[0] === '1' && last ? encodeCursor(last.seq) : null };
  }

  async pendingInOrder(limit: number): Promise<Job[]> {
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    let jobs: Job[] = [];
    for (let attempt = 0; attempt < 5; attempt++) {
      const ids = await this.pendingOrderIds(n);
      if (ids.length === 0) return [];
      const multi = this.core.client.multi();
      for (const id of ids) multi.hgetall(this.core.keys.job(id));
      const res = (await this.core.io(multi.exec())) ?? [];
      jobs = [];
      let consistent = true;
      for (const [err, h] of res) {
        if (err) this.core.raise(err);
        const fields = h as Record<string, string | undefined>;
        if (fields.id === undefined || fields.status !== 'pending') {
          consistent = false;
          continue;
        }
        jobs.push(jobFrom(fields));
      }
      // Between the two round trips a job was claimed or cancelled: compute again.
      if (consistent) return jobs;
    }
    return jobs;
  }

  /**
   * The ids of the first `n` pending jobs in service order. Loads, per user, only a prefix of the
   * user's jobs in head order; the result is exact as long as no user whose prefix was cut short
   * runs out of loaded jobs before the n-th pick, else that user's prefix grows and it repeats.
   */
  private async pendingOrderIds(n: number): Promise<string[]> {
    const k = this.core.keys;
    let defaultK = 0; // automatic: twice each user's share of n
    const perUser = new Map<string, number>();
    for (let round = 0; ; round++) {
      const exact = round >= 20;
      const args: (string | number)[] = [k.prefix, this.core.defaults.mode, n, exact ? n : defaultK];
      if (!exact) for (const [u, kk] of perUser) args.push(u, kk);
      const r = await this.core.run('pending-order', [...this.core.headsKeys(), k.settings], args);
      const mode = r[0] as QueueMode;
      const names = JSON.parse(r[1] as string) as string[];
      const totals = JSON.parse(r[2] as string) as number[];
      const heads = (JSON.parse(r[3] as string) as HeadTuple[]).map(headFrom);
      const users = usersOf(heads);
      const candidates = heads.map((h) => h.candidate);
      const loaded = new Map<string, number>();
      for (const c of candidates) loaded.set(c.user, (loaded.get(c.user) ?? 0) + 1);
      const cut = new Set(names.filter((u, i) => (loaded.get(u) ?? 0) < (totals[i] ?? 0)));
      const order = serviceOrder(mode, onlyContenders(mode, candidates, users, n), users, n);
      if (exact) return order.map((c) => c.id);
      const taken = new Map<string, number>();
      let short: string | undefined;
      for (let i = 0; i < order.length && i < n - 1; i++) {
        const u = order[i]!.user;
        const t = (taken.get(u) ?? 0) + 1;
        taken.set(u, t);
        if (cut.has(u) && t === loaded.get(u)) {
          short = u;
          break;
        }
      }
      if (short === undefined) return order.map((c) => c.id);
      perUser.set(short, Math.min(n, Math.max(4, loaded.get(short)! * 4)));
      // When few jobs were loaded overall, everyone probably needs more: double the default too.
      const usedK = defaultK || Math.max(...loaded.values());
      defaultK = candidates.length < 4 * n ? Math.min(n, usedK * 2) : usedK;
    }
  }

  async countByStatus(user?: string): Promise<StatusCounts> {
    const k = this.core.keys;
    const multi = this.core.client.multi();
    for (const s of JOB_STATUSES) multi.zcard(user === undefined ? k.idxStatus(s) : k.idxUserStatus(s, user));
    const res = (await this.core.io(multi.exec())) ?? [];
    const counts = {} as StatusCounts;
    JOB_STATUSES.forEach((s, i) => {
      const entry = res[i];
      if (entry?.[0]) this.core.raise(entry[0]);
      counts[s] = Number(entry?.[1] ?? 0);
    });
    return counts;
  }

  async userCounters(): Promise<UserCounters[]> {
    const k = this.core.keys;
    const rows = (await this.core.run('user-counters', [k.users, k.gpu], [k.prefix])) as unknown[][];
    return rows
      .map((row): UserCounters => ({
        user: row[0] as string,
        pending: Number(row[1]),
        running: Number(row[2]),
        completed: Number(row[3]),
        failed: Number(row[4]),
        cancelled: Number(row[5]),
        gpuMs: Number(row[6]),
        lastActivityAt: row[7] === '' ? null : Number(row[7]),
      }))
      .sort((a, b) => byCodePoint(a.user, b.user));
  }
}
