/**
 * Reading jobs with `listJobs`: filters, order and cursors.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { JOB_STATUSES, type Job, type JobStatus, type JobStore } from './types.js';
import { T0, ids, must, type ConformanceKit } from './kit.conformance.js';

export function listJobsConformance(kit: ConformanceKit): void {
  const { add, claim, raisePendingLimit } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;

  describe('listJobs', () => {
    beforeEach(() => {
      store = kit.store;
    });

    async function pageAll(
      q: Parameters<JobStore['listJobs']>[0],
      between?: () => Promise<void>,
    ): Promise<Job[]> {
      const out: Job[] = [];
      let cursor: string | undefined;
      for (let guard = 0; guard < 1000; guard++) {
        const page = await store.listJobs({ ...q, ...(cursor ? { cursor } : {}) });
        out.push(...page.jobs);
        if (!page.nextCursor) return out;
        expect(typeof page.nextCursor).toBe('string');
        cursor = page.nextCursor;
        if (between) await between();
      }
      throw new Error('pagination did not end');
    }

    it('is newest first by default with a default limit of 50', async () => {
      await raisePendingLimit();
      const all: Job[] = [];
      for (let i = 0; i < 60; i++) all.push(await add(i % 3 ? 'a' : 'b'));
      const page = await store.listJobs({});
      expect(page.jobs).toHaveLength(50);
      expect(ids(page.jobs)).toEqual(ids(all.slice(10).reverse()));
      expect(page.jobs[0]).toEqual(all[59]);
      expect(page.nextCursor).not.toBeNull();
      const rest = await store.listJobs({ cursor: must(page.nextCursor) });
      expect(ids(rest.jobs)).toEqual(ids(all.slice(0, 10).reverse()));
      expect(rest.nextCursor).toBeNull();
    });

    it('clamps limit to 1…500', async () => {
      await raisePendingLimit();
      for (let i = 0; i < 505; i++) await add(`u${i % 7}`);
      expect((await store.listJobs({ limit: 0 })).jobs).toHaveLength(1);
      expect((await store.listJobs({ limit: -5 })).jobs).toHaveLength(1);
      const big = await store.listJobs({ limit: 10_000 });
      expect(big.jobs).toHaveLength(500);
      expect(big.nextCursor).not.toBeNull();
    });

    it('returns an empty last page with a null cursor; a full last page also ends', async () => {
      expect(await store.listJobs({})).toEqual({ jobs: [], nextCursor: null });
      for (let i = 0; i < 6; i++) await add('a');
      const p1 = await store.listJobs({ limit: 3, order: 'asc' });
      const p2 = await store.listJobs({ limit: 3, order: 'asc', cursor: must(p1.nextCursor) });
      expect(p2.jobs).toHaveLength(3);
      expect(p2.nextCursor).toBeNull();
      expect((await store.listJobs({ limit: 6 })).nextCursor).toBeNull();
    });

    it('pages never repeat or skip a job while jobs are added (desc and asc)', async () => {
      await raisePendingLimit();
      const initial: Job[] = [];
      for (let i = 0; i < 25; i++) initial.push(await add(`u${i % 4}`));
      const added: Job[] = [];
      const addSome = async () => {
        for (let i = 0; i < 3; i++) added.push(await add(`u${i}`));
      };
      const desc = await pageAll({ limit: 7 }, addSome);
      expect(ids(desc)).toEqual(ids(initial).reverse());
      expect(added).toHaveLength(9);
      // Ascending, jobs added between pages show up at the end, each exactly once.
      const asc = await pageAll({ limit: 7, order: 'asc' }, addSome);
      expect(added.length).toBeGreaterThan(9);
      expect(ids(asc)).toEqual(ids([...initial, ...added]));
    });

    it('filters by user and by one or several statuses, with cursors', async () => {
      await raisePendingLimit();
      await store.updateSettings({ limits: { maxRunningPerUser: 100 } });
      const jobs: Job[] = [];
      for (let i = 0; i < 30; i++) jobs.push(await add(i % 2 ? 'alice' : 'bob'));
      // Make a mix of statuses.
      for (let i = 0; i < 18; i++) must(await claim(`w${i}`));
      const running = (await store.listJobs({ status: 'running', limit: 500 })).jobs;
      expect(running).toHaveLength(18);
      for (const [i, j] of running.entries()) {
        if (i % 3 === 0) await store.complete(j.id, 1, [], T0 + i);
        else if (i % 3 === 1)
          await store.fail(j.id, 1, { reason: 'execution_error', message: 'boom' }, T0 + i);
      }
      const pend = (await store.listJobs({ status: 'pending', limit: 500 })).jobs;
      await store.cancel(must(pend[0]).id, T0);
      await store.cancel(must(pend[1]).id, T0);

      const all = await Promise.all(jobs.map(async (j) => must(await store.getJob(j.id))));
      const expectQuery = async (
        q: { user?: string; status?: JobStatus | JobStatus[]; order?: 'asc' | 'desc' },
        pred: (j: Job) => boolean,
      ) => {
        let want = all.filter(pred).sort((x, y) => y.seq - x.seq);
        if (q.order === 'asc') want = want.reverse();
        expect(ids(await pageAll({ ...q, limit: 4 }))).toEqual(ids(want));
        expect(ids((await store.listJobs({ ...q, limit: 500 })).jobs)).toEqual(ids(want));
      };
      const statuses = (s: JobStatus[]) => (j: Job) => s.includes(j.status);
      await expectQuery({ user: 'alice' }, (j) => j.user === 'alice');
      await expectQuery({ user: 'bob', order: 'asc' }, (j) => j.user === 'bob');
      for (const s of JOB_STATUSES) await expectQuery({ status: s }, (j) => j.status === s);
      await expectQuery(
        { status: ['completed', 'failed', 'cancelled'] },
        statuses(['completed', 'failed', 'cancelled']),
      );
      await expectQuery({ status: ['pending', 'running'], order: 'asc' }, statuses(['pending', 'running']));
      await expectQuery({ status: ['completed'] }, statuses(['completed']));
      await expectQuery(
        { user: 'alice', status: ['completed', 'failed'] },
        (j) => j.user === 'alice' && ['completed', 'failed'].includes(j.status),
      );
      await expectQuery(
        { user: 'bob', status: 'running', order: 'asc' },
        (j) => j.user === 'bob' && j.status === 'running',
      );
      await expectQuery({ user: 'nobody' }, () => false);
      // Each listed job is the full job.
      const one = must((await store.listJobs({ status: 'completed', limit: 1 })).jobs[0]);
      expect(one).toEqual(await store.getJob(one.id));
    });
  });
}
