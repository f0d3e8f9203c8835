/**
 * Leases (renew, expiry, requeue) and late finishes: a job whose lease lapsed may still finish or
 * be adopted, but a finished job never runs again.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { JobOutput, JobStore } from './types.js';
import { LEASE, T0, ids, must, type ConformanceKit } from './kit.conformance.js';

export function leaseConformance(kit: ConformanceKit): void {
  const { add, claim } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;
  const reopen = async (): Promise<void> => {
    await kit.reopen();
    store = kit.store;
  };

  describe('leases', () => {
    beforeEach(() => {
      store = kit.store;
    });

    it('renewLease extends only for the holding worker and attempt of a running job', async () => {
      expect(await store.renewLease('nope', 'w1', 1, LEASE, T0)).toBe(false);
      const a = await add('a');
      expect(await store.renewLease(a.id, 'w1', 0, LEASE, T0)).toBe(false);
      must(await claim('w1', T0));
      expect(await store.renewLease(a.id, 'w1', 1, 60_000, T0 + 10)).toBe(true);
      expect(must(await store.getJob(a.id)).leaseExpiresAt).toBe(T0 + 60_010);
      expect(await store.renewLease(a.id, 'w2', 1, LEASE, T0 + 20)).toBe(false);
      expect(await store.renewLease(a.id, 'w1', 2, LEASE, T0 + 20)).toBe(false);
      expect(must(await store.getJob(a.id)).leaseExpiresAt).toBe(T0 + 60_010);
      await store.complete(a.id, 1, [], T0 + 30);
      expect(await store.renewLease(a.id, 'w1', 1, LEASE, T0 + 40)).toBe(false);
    });

    it('an expired lease returns the job to pending at its old place, attempts kept', async () => {
      const a = await add('a');
      const b = await add('b');
      const c = await add('c');
      const ja = must(await claim('w1', T0));
      expect(ja.id).toBe(a.id);
      expect(await store.requeueExpired(T0 + LEASE - 1, 3)).toEqual({ requeued: [], failed: [] });
      const res = await store.requeueExpired(T0 + LEASE, 3);
      expect(res.failed).toEqual([]);
      expect(ids(res.requeued)).toEqual([a.id]);
      const back = must(await store.getJob(a.id));
      expect(res.requeued[0]).toEqual(back);
      expect(back).toMatchObject({
        status: 'pending',
        seq: a.seq,
        front: 0,
        attempts: 1,
        workerId: null,
        leaseExpiresAt: null,
        startedAt: null,
        finishedAt: null,
      });
      expect(ids(await store.pendingInOrder(10))).toEqual(ids([a, b, c]));
      const again = must(await claim('w2', T0 + LEASE + 1));
      expect(again.id).toBe(a.id);
      expect(again.attempts).toBe(2);
      // The lost worker can no longer renew; the new attempt finishes normally.
      expect(await store.renewLease(a.id, 'w1', 1, LEASE, T0 + LEASE + 2)).toBe(false);
      expect(await store.complete(a.id, 2, [], T0 + LEASE + 3)).toMatchObject({ ok: true });
      expect(await store.complete(a.id, 1, [], T0 + LEASE + 4)).toMatchObject({
        ok: false,
        reason: 'terminal',
      });
    });

    it('a moved-to-front job keeps its front when requeued', async () => {
      await add('a');
      const b = await add('b');
      must(await store.moveToFront(b.id));
      const jb = must(await claim());
      expect(jb.id).toBe(b.id);
      await store.requeueExpired(T0 + LEASE, 3);
      const back = must(await store.getJob(b.id));
      expect(back.front).toBe(jb.front);
      expect(must(await claim()).id).toBe(b.id);
    });

    it('a renewed lease is not requeued', async () => {
      const a = await add('a');
      must(await claim('w1', T0));
      expect(await store.renewLease(a.id, 'w1', 1, LEASE, T0 + 1000)).toBe(true);
      expect(await store.requeueExpired(T0 + LEASE, 3)).toEqual({ requeued: [], failed: [] });
      expect(ids((await store.requeueExpired(T0 + 1000 + LEASE, 3)).requeued)).toEqual([a.id]);
    });

    it('fails with worker_lost once attempts reach maxAttempts', async () => {
      const a = await add('a');
      must(await claim('w1', T0));
      expect(ids((await store.requeueExpired(T0 + LEASE, 2)).requeued)).toEqual([a.id]);
      const second = must(await claim('w2', T0 + LEASE + 10));
      expect(second.attempts).toBe(2);
      const t = T0 + 2 * LEASE + 10;
      const res = await store.requeueExpired(t, 2);
      expect(res.requeued).toEqual([]);
      expect(ids(res.failed)).toEqual([a.id]);
      const failed = must(await store.getJob(a.id));
      expect(res.failed[0]).toEqual(failed);
      expect(failed.status).toBe('failed');
      expect(failed.error?.reason).toBe('worker_lost');
      expect(typeof failed.error?.message).toBe('string');
      expect(failed.finishedAt).toBe(t);
      expect(failed.attempts).toBe(2);
      expect(failed.leaseExpiresAt).toBeNull();
      expect(await claim()).toBeNull();
      expect(await store.complete(a.id, 2, [], t + 1)).toMatchObject({ ok: false, reason: 'terminal' });
    });

    it('requeues and fails several jobs at once and frees their running slots', async () => {
      await store.updateSettings({ limits: { maxRunningPerUser: 5 } });
      const a1 = await add('a');
      const a2 = await add('a');
      const b1 = await add('b');
      must(await claim('w1', T0));
      must(await claim('w2', T0));
      must(await claim('w3', T0 + 5000));
      expect(await store.renewLease(a1.id, 'w1', 1, LEASE, T0)).toBe(true);
      const res = await store.requeueExpired(T0 + LEASE, 1);
      expect(ids(res.failed).sort()).toEqual([a1.id, a2.id].sort());
      expect(res.requeued).toEqual([]);
      expect(must(await store.getJob(b1.id)).status).toBe('running');
      expect(await store.countByStatus()).toMatchObject({ running: 1, failed: 2 });
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe('late finishes and adopt (a finished job never runs again)', () => {
    beforeEach(() => {
      store = kit.store;
    });

    const outputs: JobOutput[] = [
      { nodeId: '9', filename: 'x.png', subfolder: 'late', type: 'output', kind: 'images' },
    ];
    const error = { reason: 'execution_error', message: 'boom' };

    it('a finish of the lapsed attempt while the job waits in the queue ends it (complete and fail)', async () => {
      for (const op of ['complete', 'fail'] as const) {
        const a = await add(`u-${op}`);
        const other = await add(`u-${op}`);
        must(await claim('w1', T0));
        expect(ids((await store.requeueExpired(T0 + LEASE, 3)).requeued)).toContain(a.id);
        const r =
          op === 'complete'
            ? await store.complete(a.id, 1, outputs, T0 + LEASE + 5)
            : await store.fail(a.id, 1, error, T0 + LEASE + 5);
        expect(r).toMatchObject({ ok: true, late: true });
        const done = must(await store.getJob(a.id));
        expect(done).toMatchObject({
          status: op === 'complete' ? 'completed' : 'failed',
          attempts: 1,
          finishedAt: T0 + LEASE + 5,
          leaseExpiresAt: null,
        });
        if (op === 'complete') expect(done.outputs).toEqual(outputs);
        else expect(done.error).toEqual(error);
        // It left the queue: the next claim is the user's other job, and the counts add up.
        expect(ids(await store.pendingInOrder(10))).toEqual([other.id]);
        expect(await store.countByStatus(`u-${op}`)).toMatchObject({ pending: 1, running: 0 });
        expect(must(await claim('w2', T0 + LEASE + 6)).id).toBe(other.id);
        await store.complete(other.id, 1, [], T0 + LEASE + 7);
        // The same report again is harmless.
        const again =
          op === 'complete'
            ? await store.complete(a.id, 1, outputs, T0 + LEASE + 8)
            : await store.fail(a.id, 1, error, T0 + LEASE + 8);
        expect(again.ok === true ? again.duplicate : again.reason).toBeTruthy();
        expect(must(await store.getJob(a.id)).finishedAt).toBe(T0 + LEASE + 5);
      }
    });

    it('the first finish wins when a later attempt already runs; the later one changes nothing', async () => {
      const a = await add('a');
      const a2 = await add('a');
      must(await claim('w1', T0));
      await store.requeueExpired(T0 + LEASE, 3);
      expect(must(await claim('w2', T0 + LEASE + 1)).attempts).toBe(2);
      const r = await store.complete(a.id, 1, outputs, T0 + LEASE + 2);
      expect(r).toMatchObject({ ok: true, late: true, job: { status: 'completed', attempts: 2 } });
      expect(must(await store.getJob(a.id)).outputs).toEqual(outputs);
      expect(await store.renewLease(a.id, 'w2', 2, LEASE, T0 + LEASE + 3)).toBe(false);
      // The cancelled later attempt's own report changes nothing (it reads as a repeat).
      expect(await store.complete(a.id, 2, [], T0 + LEASE + 4)).toMatchObject({
        ok: true,
        duplicate: true,
      });
      expect(await store.fail(a.id, 2, error, T0 + LEASE + 4)).toMatchObject({ ok: false });
      expect(must(await store.getJob(a.id))).toMatchObject({ status: 'completed', outputs });
      // The later attempt's running slot is free again: the user's next job can run.
      expect(await store.countByStatus('a')).toMatchObject({ running: 0, pending: 1, completed: 1 });
      expect(must(await claim('w2', T0 + LEASE + 5)).id).toBe(a2.id);
    });

    it('attempts that never ran are not late: 0, beyond the last claim, or given back', async () => {
      const a = await add('a');
      must(await claim('w1', T0));
      expect(await store.release(a.id, 1, T0 + 1)).toMatchObject({ ok: true });
      // Given back unrun: attempt 1 no longer exists.
      expect(await store.complete(a.id, 1, [], T0 + 2)).toMatchObject({ ok: false, reason: 'stale' });
      expect(await store.fail(a.id, 0, error, T0 + 2)).toMatchObject({ ok: false, reason: 'stale' });
      must(await claim('w1', T0 + 3));
      expect(await store.complete(a.id, 2, [], T0 + 4)).toMatchObject({ ok: false, reason: 'stale' });
      expect(must(await store.getJob(a.id)).status).toBe('running');
    });

    it('adopt renews the holder, takes a lapsed attempt back from the queue, and refuses the rest', async () => {
      const a = await add('a');
      const a2 = await add('a');
      expect(await store.adopt(a.id, 'w1', 0, LEASE, T0)).toBe(false);
      expect(await store.adopt('nope', 'w1', 1, LEASE, T0)).toBe(false);
      must(await claim('w1', T0));
      // The holder: a renewal.
      expect(await store.adopt(a.id, 'w1', 1, LEASE, T0 + 10)).toBe(true);
      expect(must(await store.getJob(a.id)).leaseExpiresAt).toBe(T0 + 10 + LEASE);
      expect(await store.adopt(a.id, 'w2', 1, LEASE, T0 + 10)).toBe(false);
      expect(await store.adopt(a.id, 'w1', 2, LEASE, T0 + 10)).toBe(false);
      // Lapsed and back in the queue: the worker that still runs it takes it back, same attempt.
      await store.requeueExpired(T0 + 10 + LEASE, 3);
      expect(must(await store.getJob(a.id)).status).toBe('pending');
      const t = T0 + 20 + LEASE;
      expect(await store.adopt(a.id, 'w1', 2, LEASE, t)).toBe(false);
      expect(await store.adopt(a.id, 'w1', 1, LEASE, t)).toBe(true);
      expect(must(await store.getJob(a.id))).toMatchObject({
        status: 'running',
        workerId: 'w1',
        attempts: 1,
        leaseExpiresAt: t + LEASE,
        startedAt: t,
      });
      expect(ids(await store.pendingInOrder(10))).toEqual([a2.id]);
      expect(await store.countByStatus('a')).toMatchObject({ running: 1, pending: 1 });
      // Its lease is a real one: it lapses again if not renewed.
      expect(ids((await store.requeueExpired(t + LEASE, 3)).requeued)).toEqual([a.id]);
      expect(await store.adopt(a.id, 'w1', 1, LEASE, t + LEASE + 1)).toBe(true);
      expect(await store.complete(a.id, 1, outputs, t + LEASE + 2)).toMatchObject({ ok: true });
      expect(await store.complete(a.id, 1, outputs, t + LEASE + 2)).toMatchObject({ duplicate: true });
      expect(await store.adopt(a.id, 'w1', 1, LEASE, t + LEASE + 3)).toBe(false);
      // Re-claimed by a later attempt: not adoptable.
      must(await claim('w2', t + LEASE + 4));
      await store.requeueExpired(t + 2 * LEASE + 4, 3);
      must(await claim('w3', t + 2 * LEASE + 5));
      expect(await store.adopt(a2.id, 'w2', 1, LEASE, t + 2 * LEASE + 6)).toBe(false);
      expect(await store.countByStatus('a')).toMatchObject({ running: 1, pending: 0, completed: 1 });
    });

    it('adopting a lapsed job uses its user’s turn again, as its claim did', async () => {
      await store.updateSettings({ mode: 'round_robin', limits: { maxRunningPerUser: 5 } });
      const a1 = await add('a');
      const a2 = await add('a');
      must(await claim('w1'));
      const b1 = await add('b');
      await store.requeueExpired(T0 + LEASE, 3);
      // Handed back, a1 goes ahead of b again…
      expect(ids(await store.pendingInOrder(10))).toEqual(ids([a1, b1, a2]));
      // …but once its worker takes it back, a has had its turn: b goes before a2.
      expect(await store.adopt(a1.id, 'w1', 1, LEASE, T0 + LEASE + 1)).toBe(true);
      expect(ids(await store.pendingInOrder(10))).toEqual(ids([b1, a2]));
      // Handed back once more, the turn comes back again.
      await store.release(a1.id, 1, T0 + LEASE + 2);
      expect(ids(await store.pendingInOrder(10))).toEqual(ids([a1, b1, a2]));
    });

    it('adopt survives a reopen like any other state', async () => {
      if (!kit.canReopen) return;
      const a = await add('a');
      must(await claim('w1', T0));
      await store.requeueExpired(T0 + LEASE, 3);
      await reopen();
      expect(await store.adopt(a.id, 'w1', 1, LEASE, T0 + LEASE + 1)).toBe(true);
      await reopen();
      expect(must(await store.getJob(a.id))).toMatchObject({ status: 'running', workerId: 'w1' });
    });
  });
}
