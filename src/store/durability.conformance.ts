/**
 * What survives closing and opening the store again, and what holds when several claimers and
 * writers run at once.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { QueueLimitError } from '../errors.js';
import { isTerminal, type Job, type JobStore } from './types.js';
import { LEASE, T0, ids, must, prompt, type ConformanceKit } from './kit.conformance.js';

export function durabilityConformance(kit: ConformanceKit): void {
  const { add, claim, drain } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;
  const reopen = async (): Promise<void> => {
    await kit.reopen();
    store = kit.store;
  };

  describe('durability across reopen', () => {
    beforeEach(() => {
      store = kit.store;
    });

    it('keeps every job, counter, account, token, blob and setting', async ({ skip }) => {
      if (!kit.canReopen) skip();
      await store.updateSettings({
        mode: 'round_robin',
        limits: { maxRunningPerUser: 2 },
        userLimits: { a: { maxPendingPerUser: 3 } },
      });
      const a1 = await add('a', { models: ['m/a'] });
      const b1 = await add('b', { models: ['m/x'] });
      const a2 = await add('a', { priority: 'high', metadata: { x: 1 } });
      const running = must(
        await claim('w1', T0, { warmModels: ['m/x'], affinity: { window: 4, maxSkips: 2 } }),
      );
      expect(running.id).toBe(b1.id);
      const done = await add('c');
      must(await claim('w2', T0 + 1)); // a1 (c never served but a1 older... a vs c: both never served → seq)
      await store.cancel(done.id, T0 + 2);
      await store.putAccount({
        name: 'alice',
        role: 'participant',
        passwordHash: 'h',
        createdAt: T0,
        passwordVersion: 3,
      });
      await store.putWorkerToken({
        name: 'gpu',
        tokenHash: 'f'.repeat(64),
        createdAt: T0,
        revokedAt: null,
      });
      await store.revokeWorkerToken('gpu', T0 + 5);
      await store.putBlob('env', 'gpu', '{"ok":true}');
      const snapshot = await Promise.all([a1, b1, a2, done].map((j) => store.getJob(j.id)));
      const settings = await store.getSettings();
      const counts = await store.countByStatus();
      const order = ids(await store.pendingInOrder(10));

      await reopen();

      expect(await Promise.all([a1, b1, a2, done].map((j) => store.getJob(j.id)))).toEqual(snapshot);
      expect(await store.getSettings()).toEqual(settings);
      expect(await store.countByStatus()).toEqual(counts);
      expect(ids(await store.pendingInOrder(10))).toEqual(order);
      expect(await store.getAccount('alice')).toMatchObject({ passwordVersion: 3 });
      expect(await store.listWorkerTokens()).toEqual([
        { name: 'gpu', tokenHash: 'f'.repeat(64), createdAt: T0, revokedAt: T0 + 5 },
      ]);
      expect(await store.getBlob('env', 'gpu')).toBe('{"ok":true}');
      // Counters carry on.
      const next = await add('d', { front: true });
      expect(next.seq).toBeGreaterThan(done.seq);
      expect(next.front).toBeGreaterThan(0);
      const moved = must(await store.moveToFront(a2.id));
      expect(moved.front).toBe(next.front + 1);
      // The running job can still be finished by its worker.
      expect(await store.complete(b1.id, 1, [], T0 + 10)).toMatchObject({ ok: true });
      // Limits survive: a has 1 pending of 3 allowed.
      await add('a');
      await add('a');
      await expect(add('a')).rejects.toBeInstanceOf(QueueLimitError);
    });

    it('keeps serve order (lastServed) and skips across reopen', async ({ skip }) => {
      if (!kit.canReopen) skip();
      await store.updateSettings({ mode: 'round_robin', limits: { maxRunningPerUser: 10 } });
      const a = [await add('a', { models: ['m/a'] }), await add('a', { models: ['m/a'] })];
      const b = [await add('b'), await add('b')];
      const c = [await add('c', { models: ['m/x'] })];
      // Serve a (a0) then c via affinity (b0 skipped once).
      expect(must(await claim()).id).toBe(a[0]!.id);
      expect(
        must(await claim('w', T0, { warmModels: ['m/x'], affinity: { window: 4, maxSkips: 1 } })).id,
      ).toBe(c[0]!.id);
      await reopen();
      expect(must(await store.getJob(b[0]!.id)).skips).toBe(1);
      // b0 has used up its skips (maxSkips 1): affinity may not pass it over again.
      expect(
        must(await claim('w', T0, { warmModels: ['m/a'], affinity: { window: 4, maxSkips: 1 } })).id,
      ).toBe(b[0]!.id);
      // b was served last, then a's turn.
      expect(await drain()).toEqual(ids([a[1]!, b[1]!]));
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe('concurrency', () => {
    beforeEach(() => {
      store = kit.store;
    });

    it('20 parallel claimers over 200 jobs: every job claimed exactly once', async () => {
      const users = Array.from({ length: 20 }, (_, i) => `user${i}`);
      const jobs = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          store.enqueue({ user: users[i % 20]!, prompt: prompt(i) }, T0 + i),
        ),
      );
      expect(new Set(jobs.map((j) => j.seq)).size).toBe(200);
      expect(new Set(ids(jobs)).size).toBe(200);
      const claimed = await Promise.all(
        Array.from({ length: 20 }, async (_, w) => {
          const mine: Job[] = [];
          for (;;) {
            const j = await claim(`worker-${w}`, T0 + 1000);
            if (!j) return mine;
            mine.push(j);
          }
        }),
      );
      const all = claimed.flat();
      expect(all).toHaveLength(200);
      expect(new Set(ids(all)).size).toBe(200);
      expect(all.every((j) => j.attempts === 1 && j.status === 'running')).toBe(true);
      expect(await store.countByStatus()).toMatchObject({ pending: 0, running: 200 });
      // Finish them concurrently, each with a racing duplicate: exactly one non-duplicate success each.
      const results = await Promise.all(
        all.flatMap((j) => [store.complete(j.id, 1, [], T0 + 2000), store.complete(j.id, 1, [], T0 + 2001)]),
      );
      expect(results.every((r) => r.ok)).toBe(true);
      expect(results.filter((r) => r.ok && !r.duplicate)).toHaveLength(200);
      expect(await store.countByStatus()).toMatchObject({ pending: 0, running: 0, completed: 200 });
    });

    it('racing complete, fail, cancel and requeue on one job: exactly one wins', async () => {
      await store.updateSettings({ limits: { maxRunningPerUser: 50 } });
      const jobs: Job[] = [];
      for (let i = 0; i < 30; i++) jobs.push(await add(`u${i % 3}`));
      for (let i = 0; i < 30; i++) must(await claim(`w${i}`, T0));
      const outcomes = await Promise.all(
        jobs.map(async (j) => {
          const [c, f, x] = await Promise.all([
            store.complete(j.id, 1, [], T0 + 5),
            store.fail(j.id, 1, { reason: 'execution_error', message: 'x' }, T0 + 5),
            store.cancel(j.id, T0 + 5),
            store.requeueExpired(T0 + LEASE, 1),
          ]);
          const winners = [c, f, x].filter((r) => r.ok && !r.duplicate);
          const final = must(await store.getJob(j.id));
          return { winners: winners.length, final };
        }),
      );
      for (const o of outcomes) {
        expect(isTerminal(o.final.status)).toBe(true);
        // requeueExpired (maxAttempts 1) may have won instead: then it failed the job as worker_lost
        // (and a later fail of the same attempt is a duplicate).
        expect(o.winners).toBe(o.final.error?.reason === 'worker_lost' ? 0 : 1);
      }
      const counts = await store.countByStatus();
      expect(counts.completed + counts.failed + counts.cancelled).toBe(30);
      expect(counts.pending + counts.running).toBe(0);
    });

    it('parallel enqueues respect the pending limit exactly', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 25 }, (_, i) => add('greedy', {}, T0 + i)),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected).toHaveLength(15);
      for (const r of rejected) expect(r.reason).toBeInstanceOf(QueueLimitError);
      expect((await store.countByStatus('greedy')).pending).toBe(10);
    });
  });
}
