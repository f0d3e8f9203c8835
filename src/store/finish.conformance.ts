/**
 * Ending a job: complete, fail and release (stale attempts, duplicates, outputs) and cancel.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Job, JobError, JobOutput, JobStore } from './types.js';
import { LEASE, T0, ids, must, type ConformanceKit } from './kit.conformance.js';

export function finishConformance(kit: ConformanceKit): void {
  const { add, claim } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;

  describe('complete / fail / release', () => {
    beforeEach(() => {
      store = kit.store;
    });

    const outputs: JobOutput[] = [
      {
        nodeId: '9',
        filename: 'ComfyUI_00001_.png',
        subfolder: '',
        type: 'output',
        kind: 'images',
        size: 123,
        sha256: 'ab',
      },
      { nodeId: '10', filename: 'clip.mp4', subfolder: 'vid', type: 'temp', kind: 'videos' },
    ];
    const error: JobError = {
      reason: 'execution_error',
      message: 'CUDA out of memory',
      nodeId: '3',
      nodeType: 'KSampler',
      exceptionType: 'torch.OutOfMemoryError',
      traceback: ['line 1', 'line 2'],
      details: { vram: 24 },
    };

    it('complete stores outputs, finishedAt, clears the lease, keeps the worker', async () => {
      const a = await add('a');
      must(await claim('gpu-1', T0 + 10));
      const r = await store.complete(a.id, 1, outputs, T0 + 500);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.duplicate).toBeFalsy();
      expect(r.job).toMatchObject({
        status: 'completed',
        finishedAt: T0 + 500,
        startedAt: T0 + 10,
        leaseExpiresAt: null,
        workerId: 'gpu-1',
        attempts: 1,
        outputs,
        error: null,
      });
      expect(await store.getJob(a.id)).toEqual(r.job);
    });

    it('a repeated complete of the same attempt is a duplicate and changes nothing', async () => {
      const a = await add('a');
      must(await claim());
      const first = await store.complete(a.id, 1, outputs, T0 + 500);
      const again = await store.complete(a.id, 1, [], T0 + 900);
      expect(again).toMatchObject({ ok: true, duplicate: true });
      if (!first.ok || !again.ok) throw new Error('unreachable');
      expect(again.job).toEqual(first.job);
      expect(must(await store.getJob(a.id)).finishedAt).toBe(T0 + 500);
    });

    it('fail stores the error; a repeated fail is a duplicate; cross transitions are terminal', async () => {
      const a = await add('a');
      must(await claim());
      const r = await store.fail(a.id, 1, error, T0 + 700);
      expect(r).toMatchObject({
        ok: true,
        job: { status: 'failed', error, finishedAt: T0 + 700, leaseExpiresAt: null },
      });
      expect(r.ok && r.duplicate).toBeFalsy();
      expect(await store.fail(a.id, 1, { reason: 'x', message: 'y' }, T0 + 800)).toMatchObject({
        ok: true,
        duplicate: true,
        job: { error },
      });
      expect(await store.complete(a.id, 1, outputs, T0 + 900)).toMatchObject({
        ok: false,
        reason: 'terminal',
        job: { status: 'failed' },
      });
      const b = await add('b');
      must(await claim());
      await store.complete(b.id, 1, outputs, T0);
      expect(await store.fail(b.id, 1, error, T0)).toMatchObject({ ok: false, reason: 'terminal' });
      expect(must(await store.getJob(b.id)).status).toBe('completed');
    });

    it('unknown → not_found; pending or another attempt → stale; cancelled → terminal', async () => {
      for (const op of ['complete', 'fail', 'release'] as const) {
        const call = (id: string, attempt: number) =>
          op === 'complete'
            ? store.complete(id, attempt, [], T0)
            : op === 'fail'
              ? store.fail(id, attempt, error, T0)
              : store.release(id, attempt, T0);
        expect(await call('nope', 1)).toMatchObject({ ok: false, reason: 'not_found' });
        const a = await add(`a-${op}`);
        expect(await call(a.id, 0)).toMatchObject({ ok: false, reason: 'stale' });
        expect(await call(a.id, 1)).toMatchObject({ ok: false, reason: 'stale' });
        must(await claim());
        expect(await call(a.id, 2)).toMatchObject({
          ok: false,
          reason: 'stale',
          job: { status: 'running' },
        });
        expect(await call(a.id, 0)).toMatchObject({ ok: false, reason: 'stale' });
        expect(must(await store.getJob(a.id)).status).toBe('running');
        await store.cancel(a.id, T0);
        expect(await call(a.id, 1)).toMatchObject({
          ok: false,
          reason: 'terminal',
          job: { status: 'cancelled' },
        });
      }
    });

    it('completing with an older attempt after a later one completed is terminal', async () => {
      const a = await add('a');
      must(await claim('w1', T0));
      await store.requeueExpired(T0 + LEASE, 5);
      must(await claim('w2', T0 + LEASE));
      expect(await store.complete(a.id, 2, [], T0 + LEASE + 1)).toMatchObject({ ok: true });
      expect(await store.complete(a.id, 1, [], T0 + LEASE + 2)).toMatchObject({
        ok: false,
        reason: 'terminal',
      });
    });

    it('release puts a job back at its old place with the attempt uncounted', async () => {
      await store.updateSettings({ limits: { maxRunningPerUser: 5 } });
      const a = await add('a', { priority: 'high' });
      const b = await add('b');
      must(await store.moveToFront(b.id));
      const c = await add('c');
      const jb = must(await claim('w1', T0 + 5));
      expect(jb.id).toBe(b.id);
      const ja = must(await claim('w2', T0 + 6));
      expect(ja.id).toBe(a.id);
      const r = await store.release(b.id, 1, T0 + 10);
      expect(r).toMatchObject({
        ok: true,
        job: {
          id: b.id,
          status: 'pending',
          seq: b.seq,
          front: jb.front,
          attempts: 0,
          workerId: null,
          leaseExpiresAt: null,
          startedAt: null,
          finishedAt: null,
        },
      });
      expect(ids(await store.pendingInOrder(10))).toEqual(ids([b, c]));
      expect(await store.release(b.id, 1, T0 + 11)).toMatchObject({ ok: false, reason: 'stale' });
      const again = must(await claim('w3', T0 + 12));
      expect(again).toMatchObject({ id: b.id, attempts: 1, workerId: 'w3', startedAt: T0 + 12 });
      // Released in the middle: a returns ahead of c.
      expect(await store.release(a.id, 1, T0 + 13)).toMatchObject({
        ok: true,
        job: { attempts: 0, priority: 'high' },
      });
      expect(ids(await store.pendingInOrder(10))).toEqual(ids([a, c]));
    });

    it('release frees the running slot for the user', async () => {
      const a1 = await add('a');
      const a2 = await add('a');
      const b1 = await add('b');
      must(await claim()); // a1
      await store.release(a1.id, 1, T0);
      expect(must(await claim()).id).toBe(a1.id);
      expect(must(await claim()).id).toBe(b1.id);
      expect(must(await claim()).id).toBe(a2.id);
    });

    describe('a job handed back keeps its turn against users who queued after it', () => {
      const handBack = {
        release: (j: Job) => store.release(j.id, j.attempts, T0 + 5),
        'lapsed lease': () => store.requeueExpired(T0 + LEASE, 3),
      };
      for (const [how, giveBack] of Object.entries(handBack)) {
        for (const mode of ['round_robin', 'priority'] as const) {
          it(`${how}, ${mode}`, async () => {
            await store.updateSettings({ mode });
            const b0 = await add('b');
            expect(must(await claim('w0')).id).toBe(b0.id); // b was served before a
            const a1 = await add('a');
            const a2 = await add('a');
            const ja = must(await claim('w1'));
            expect(ja.id).toBe(a1.id);
            // Queued while a1 was on a GPU: without the turn back, c and d would go before a1.
            const c1 = await add('c');
            const d1 = await add('d');
            const b1 = await add('b');
            await store.complete(b0.id, 1, [], T0 + 1);
            await giveBack(ja);
            expect(must(await store.getJob(a1.id)).status).toBe('pending');
            expect(ids(await store.pendingInOrder(10))).toEqual(ids([a1, c1, d1, b1, a2]));
            expect(must(await claim('w2', T0 + LEASE + 1)).id).toBe(a1.id);
          });
        }
      }

      it('two jobs of one user handed back: the earliest turn comes back', async () => {
        await store.updateSettings({ mode: 'round_robin', limits: { maxRunningPerUser: 5 } });
        const a1 = await add('a');
        const a2 = await add('a');
        const b1 = await add('b');
        const b2 = await add('b');
        const ja1 = must(await claim('w1'));
        const jb1 = must(await claim('w2'));
        const ja2 = must(await claim('w3'));
        expect(ids([ja1, jb1, ja2])).toEqual(ids([a1, b1, a2]));
        const c1 = await add('c');
        // a2 is given back after a1: a's mark must end at its value before a1's claim.
        await store.release(a1.id, 1, T0 + 5);
        await store.release(a2.id, 1, T0 + 6);
        expect(ids(await store.pendingInOrder(10))).toEqual(ids([a1, c1, b2, a2]));
      });
    });

    it('release after completion is terminal and changes nothing', async () => {
      const a = await add('a');
      must(await claim());
      await store.complete(a.id, 1, outputs, T0);
      const done = must(await store.getJob(a.id));
      expect(await store.release(a.id, 1, T0)).toMatchObject({ ok: false, reason: 'terminal' });
      expect(await store.getJob(a.id)).toEqual(done);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe('cancel', () => {
    beforeEach(() => {
      store = kit.store;
    });

    it('cancels a pending job: it is never claimed and frees the pending slot', async () => {
      const a = await add('a');
      const b = await add('b');
      const r = await store.cancel(a.id, T0 + 50);
      expect(r).toMatchObject({
        ok: true,
        job: { status: 'cancelled', finishedAt: T0 + 50, leaseExpiresAt: null },
      });
      expect(await store.getJob(a.id)).toMatchObject({ status: 'cancelled' });
      expect(must(await claim()).id).toBe(b.id);
      expect(await claim()).toBeNull();
      expect(ids(await store.pendingInOrder(10))).toEqual([]);
    });

    it('cancels a running job: lease cleared, the worker cannot finish it, the slot is freed', async () => {
      const a1 = await add('a');
      const a2 = await add('a');
      const b1 = await add('b');
      must(await claim('w1', T0));
      const r = await store.cancel(a1.id, T0 + 50);
      expect(r).toMatchObject({
        ok: true,
        job: { status: 'cancelled', finishedAt: T0 + 50, leaseExpiresAt: null },
      });
      expect(await store.renewLease(a1.id, 'w1', 1, LEASE, T0 + 60)).toBe(false);
      expect(await store.complete(a1.id, 1, [], T0 + 70)).toMatchObject({ ok: false, reason: 'terminal' });
      expect(await store.fail(a1.id, 1, { reason: 'interrupted', message: 'x' }, T0 + 70)).toMatchObject({
        ok: false,
        reason: 'terminal',
      });
      expect(await store.requeueExpired(T0 + 10 * LEASE, 3)).toEqual({ requeued: [], failed: [] });
      expect(must(await store.getJob(a1.id)).status).toBe('cancelled');
      // a runs nothing now, so fifo order: a2 before b1.
      expect(must(await claim()).id).toBe(a2.id);
      expect(must(await claim()).id).toBe(b1.id);
    });

    it('terminal jobs stay as they are; unknown is not_found', async () => {
      expect(await store.cancel('nope', T0)).toMatchObject({ ok: false, reason: 'not_found' });
      const a = await add('a');
      must(await claim());
      await store.complete(a.id, 1, [], T0 + 1);
      const done = must(await store.getJob(a.id));
      expect(await store.cancel(a.id, T0 + 2)).toEqual({ ok: false, reason: 'terminal', job: done });
      const b = await add('b');
      await store.cancel(b.id, T0 + 3);
      const cancelled = must(await store.getJob(b.id));
      expect(await store.cancel(b.id, T0 + 4)).toEqual({ ok: false, reason: 'terminal', job: cancelled });
    });
  });
}
