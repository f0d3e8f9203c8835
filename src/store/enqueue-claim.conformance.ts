/**
 * Enqueue and claim: a new job's defaults and limits, and which job each claim takes under every
 * queue mode, limit and affinity rule.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { AppError, QueueLimitError } from '../errors.js';
import { QUEUE_MODES, type AffinityOptions, type ComfyPrompt, type Job, type JobStore } from './types.js';
import { T0, UUID, ids, must, prompt, type ConformanceKit } from './kit.conformance.js';

export function enqueueClaimConformance(kit: ConformanceKit): void {
  const { add, claim, drain } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;

  describe('enqueue', () => {
    beforeEach(() => {
      store = kit.store;
    });

    it('creates a pending job with the documented defaults', async () => {
      const j = await store.enqueue({ user: 'alice', prompt: prompt(1) }, T0);
      expect(j.id).toMatch(UUID);
      expect(j).toEqual({
        id: j.id,
        seq: j.seq,
        user: 'alice',
        status: 'pending',
        priority: 'normal',
        front: 0,
        prompt: prompt(1),
        models: [],
        metadata: {},
        attempts: 0,
        skips: 0,
        workerId: null,
        leaseExpiresAt: null,
        createdAt: T0,
        startedAt: null,
        finishedAt: null,
        error: null,
        outputs: [],
      });
      expect(j.seq).toBeGreaterThan(0);
      expect(await store.getJob(j.id)).toEqual(j);
    });

    it('keeps id, priority, models, metadata and the prompt exactly', async () => {
      const p: ComfyPrompt = {
        '1': {
          class_type: 'CLIPTextEncode',
          inputs: { text: 'ünïcødé ✨ "quotes" \\ \n newline', clip: ['2', 1] },
        },
        '2': {
          class_type: 'X',
          inputs: { nested: { a: [1, 2.5, null, true], b: {} } },
          _meta: { title: 'T' },
        },
      };
      const j = await store.enqueue(
        {
          id: 'job-custom-1',
          user: 'bob',
          prompt: p,
          priority: 'high',
          models: ['checkpoints/a.safetensors', 'loras/b.safetensors'],
          metadata: { client_id: 'c1', extra_data: { extra_pnginfo: { workflow: { nodes: [1] } } } },
        },
        T0 + 5,
      );
      expect(j.id).toBe('job-custom-1');
      expect(j.priority).toBe('high');
      const got = must(await store.getJob('job-custom-1'));
      expect(got.prompt).toEqual(p);
      expect(got.models).toEqual(['checkpoints/a.safetensors', 'loras/b.safetensors']);
      expect(got.metadata).toEqual({
        client_id: 'c1',
        extra_data: { extra_pnginfo: { workflow: { nodes: [1] } } },
      });
      expect(got.createdAt).toBe(T0 + 5);
      expect(got).toEqual(j);
    });

    it('numbers jobs with a strictly increasing store-wide seq', async () => {
      const seqs: number[] = [];
      for (let i = 0; i < 6; i++) seqs.push((await add(i % 2 ? 'alice' : 'bob')).seq);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBe(seqs[i - 1]! + 1);
    });

    it('front: true takes the next store-wide front counter', async () => {
      const a = await add('alice', { front: true });
      const b = await add('bob');
      const c = await add('carol', { front: true });
      expect(a.front).toBeGreaterThan(0);
      expect(b.front).toBe(0);
      expect(c.front).toBe(a.front + 1);
      const moved = must(await store.moveToFront(b.id));
      expect(moved.front).toBe(c.front + 1);
    });

    it('rejects a duplicate id with CONFLICT and leaves the original alone', async () => {
      const a = await add('alice', { id: 'dup' });
      const err = await add('bob', { id: 'dup' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('CONFLICT');
      expect(await store.getJob('dup')).toEqual(a);
      expect((await store.countByStatus()).pending).toBe(1);
      expect((await store.countByStatus('bob')).pending).toBe(0);
    });

    it('throws QueueLimitError (429) at the pending limit; running jobs do not count', async () => {
      for (let i = 0; i < 10; i++) await add('alice');
      const err = await add('alice').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QueueLimitError);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).status).toBe(429);
      expect((err as AppError).code).toBe('QUEUE_LIMIT');
      expect((err as AppError).details).toEqual({ user: 'alice', limit: 10 });
      expect((await store.countByStatus('alice')).pending).toBe(10);
      // Other users are unaffected.
      await add('bob');
      // A claimed job no longer counts as pending.
      must(await claim());
      await add('alice');
      await expect(add('alice')).rejects.toBeInstanceOf(QueueLimitError);
      // Cancelling frees a slot too.
      const pending = (await store.listJobs({ user: 'alice', status: 'pending' })).jobs;
      await store.cancel(must(pending[0]).id, T0);
      await add('alice');
    });

    it("uses the user's override of maxPendingPerUser, lower or higher", async () => {
      await store.updateSettings({
        userLimits: { alice: { maxPendingPerUser: 2 }, bob: { maxPendingPerUser: 12 } },
      });
      await add('alice');
      await add('alice');
      const err = await add('alice').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QueueLimitError);
      expect((err as AppError).details).toEqual({ user: 'alice', limit: 2 });
      for (let i = 0; i < 12; i++) await add('bob');
      await expect(add('bob')).rejects.toBeInstanceOf(QueueLimitError);
      // The global limit still holds for others.
      for (let i = 0; i < 10; i++) await add('carol');
      await expect(add('carol')).rejects.toBeInstanceOf(QueueLimitError);
    });

    it('getJob returns null for an unknown id', async () => {
      expect(await store.getJob('nope')).toBeNull();
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe('claim', () => {
    beforeEach(() => {
      store = kit.store;
    });

    it('returns null when nothing is pending', async () => {
      expect(await claim()).toBeNull();
    });

    it('returns null while paused and resumes when unpaused', async () => {
      const a = await add('alice');
      await store.updateSettings({ paused: true });
      expect(await claim()).toBeNull();
      expect(must(await store.getJob(a.id)).status).toBe('pending');
      await store.updateSettings({ paused: false });
      expect(must(await claim()).id).toBe(a.id);
    });

    it('marks the job running with worker, attempt, lease and start time', async () => {
      const a = await add('alice');
      const j = must(await claim('gpu-1', T0 + 100, { leaseMs: 5000 }));
      expect(j).toMatchObject({
        id: a.id,
        status: 'running',
        workerId: 'gpu-1',
        attempts: 1,
        leaseExpiresAt: T0 + 5100,
        startedAt: T0 + 100,
        finishedAt: null,
        seq: a.seq,
      });
      expect(await store.getJob(a.id)).toEqual(j);
      expect(await claim()).toBeNull();
    });

    it('fifo: oldest job first across users', async () => {
      const jobs = [
        await add('alice'),
        await add('alice'),
        await add('bob'),
        await add('alice'),
        await add('carol'),
      ];
      expect(await drain()).toEqual(ids(jobs));
    });

    it("round_robin: B's single job does not wait behind A's ten", async () => {
      await store.updateSettings({ mode: 'round_robin' });
      const a: Job[] = [];
      for (let i = 0; i < 10; i++) a.push(await add('alice'));
      const b = await add('bob');
      expect(await drain()).toEqual([a[0]!.id, b.id, ...ids(a.slice(1))]);
    });

    it('round_robin: users take turns, least recently served first', async () => {
      await store.updateSettings({ mode: 'round_robin' });
      const a = [await add('a'), await add('a'), await add('a')];
      const b = [await add('b'), await add('b'), await add('b')];
      const c = [await add('c'), await add('c')];
      expect(await drain()).toEqual(ids([a[0]!, b[0]!, c[0]!, a[1]!, b[1]!, c[1]!, a[2]!, b[2]!]));
      // A user seen before waits behind one never served.
      const a4 = await add('a');
      const d = await add('d');
      const a5 = await add('a');
      expect(await drain()).toEqual(ids([d, a4, a5]));
    });

    it('priority: instructor > high > normal > low, round robin within a level', async () => {
      await store.updateSettings({ mode: 'priority' });
      const a1 = await add('a', { priority: 'low' });
      const a2 = await add('a', { priority: 'normal' });
      const b1 = await add('b', { priority: 'high' });
      const b2 = await add('b', { priority: 'normal' });
      const c1 = await add('c', { priority: 'instructor' });
      const d1 = await add('d', { priority: 'normal' });
      const d2 = await add('d', { priority: 'low' });
      const expected = ids([c1, b1, a2, d1, b2, a1, d2]);
      expect(ids(await store.pendingInOrder(100))).toEqual(expected);
      expect(ids(await store.pendingInOrder(3))).toEqual(expected.slice(0, 3));
      expect(await drain()).toEqual(expected);
    });

    it('priority mode: setPriority changes the order of pending jobs', async () => {
      await store.updateSettings({ mode: 'priority' });
      const a = await add('a');
      const b = await add('b');
      const c = await add('c');
      must(await store.setPriority(c.id, 'high'));
      must(await store.setPriority(a.id, 'low'));
      expect(await drain()).toEqual(ids([c, b, a]));
    });

    for (const mode of QUEUE_MODES) {
      it(`${mode}: moved-to-front jobs win, most recently moved first`, async () => {
        await store.updateSettings({ mode });
        await add('a', { priority: 'instructor' });
        await add('a');
        const b1 = await add('b');
        const c1 = await add('c', { priority: 'low' });
        await add('c', { priority: 'high' });
        expect(must(await store.moveToFront(c1.id)).front).toBeGreaterThan(0);
        must(await store.moveToFront(b1.id));
        const d1 = await add('d', { priority: 'low', front: true });
        await add('e', { priority: 'instructor' });
        const order = ids(await store.pendingInOrder(100));
        expect(order.slice(0, 3)).toEqual(ids([d1, b1, c1]));
        expect(order).toHaveLength(7);
        const drained = await drain();
        expect(drained).toEqual(order);
      });
    }

    it('moveToFront: unknown → null; not pending → unchanged', async () => {
      expect(await store.moveToFront('nope')).toBeNull();
      const a = await add('a');
      const running = must(await claim());
      const same = must(await store.moveToFront(a.id));
      expect(same.front).toBe(0);
      expect(same).toEqual(running);
      await store.complete(a.id, 1, [], T0);
      const done = must(await store.getJob(a.id));
      expect(await store.moveToFront(a.id)).toEqual(done);
    });

    it('setPriority: pending and running change; terminal unchanged; unknown null', async () => {
      expect(await store.setPriority('nope', 'high')).toBeNull();
      const a = await add('a');
      const b = await add('b');
      expect(must(await store.setPriority(a.id, 'high')).priority).toBe('high');
      must(await claim()); // a
      expect(must(await store.setPriority(a.id, 'low')).priority).toBe('low');
      expect(must(await store.getJob(a.id)).priority).toBe('low');
      await store.cancel(b.id, T0);
      const cancelled = must(await store.getJob(b.id));
      expect(await store.setPriority(b.id, 'instructor')).toEqual(cancelled);
    });

    it('max running per user: passed over while others wait, exceeded when nobody else waits', async () => {
      const a = [await add('a'), await add('a'), await add('a')];
      const b = await add('b');
      expect(must(await claim('w1')).id).toBe(a[0]!.id);
      expect(must(await claim('w2')).id).toBe(b.id);
      // Nobody else waits: a may run a second and third job.
      expect(must(await claim('w3')).id).toBe(a[1]!.id);
      const c = await add('c');
      expect(must(await claim('w4')).id).toBe(c.id);
      expect(must(await claim('w5')).id).toBe(a[2]!.id);
      expect(await claim('w6')).toBeNull();
    });

    it("max running per user honours the user's override", async () => {
      await store.updateSettings({ userLimits: { a: { maxRunningPerUser: 2 } } });
      const a = [await add('a'), await add('a'), await add('a')];
      const b = await add('b');
      expect(ids([must(await claim()), must(await claim()), must(await claim())])).toEqual(
        ids([a[0]!, a[1]!, b]),
      );
    });

    it('a finished job frees its running slot', async () => {
      const a = [await add('a'), await add('a')];
      const b = [await add('b'), await add('b')];
      const j1 = must(await claim());
      expect(j1.id).toBe(a[0]!.id);
      await store.complete(j1.id, j1.attempts, [], T0);
      // a is no longer running anything, so fifo order applies again.
      expect(must(await claim()).id).toBe(a[1]!.id);
      expect(must(await claim()).id).toBe(b[0]!.id);
    });

    it("a worker without a job's model files passes its user over; that user keeps their order", async () => {
      await store.updateSettings({ limits: { maxRunningPerUser: 10 } });
      const a1 = await add('a', { models: ['checkpoints/big.safetensors'] });
      const a2 = await add('a', { models: [] });
      const b1 = await add('b', { models: [] });
      const lacksBig = (models: readonly string[]) => !models.includes('checkpoints/big.safetensors');
      expect(must(await claim('w1', T0, { runnable: lacksBig })).id).toBe(b1.id);
      // a2 needs nothing, but it waits behind a1, which waits for a GPU that has its file.
      expect(await claim('w1', T0, { runnable: lacksBig })).toBeNull();
      expect(must(await claim('w2', T0)).id).toBe(a1.id);
      expect(must(await claim('w1', T0, { runnable: lacksBig })).id).toBe(a2.id);
    });

    describe('model affinity', () => {
      const warm = (warmModels: string[], affinity: AffinityOptions, workerId = 'w') =>
        claim(workerId, T0, { warmModels, affinity });

      beforeEach(async () => {
        await store.updateSettings({ limits: { maxRunningPerUser: 10 } });
      });

      it('takes a warm same-tier job within the window, never beyond maxSkips (skips persisted)', async () => {
        const u0 = await add('u0', { models: ['m/a'] });
        const u1 = await add('u1', { models: ['m/x'] });
        const u2 = await add('u2', { models: ['m/x'] });
        const u3 = await add('u3', { models: ['m/x'] });
        const aff = { window: 4, maxSkips: 2 };
        expect(must(await warm(['m/x'], aff)).id).toBe(u1.id);
        expect(must(await store.getJob(u0.id)).skips).toBe(1);
        expect(must(await warm(['m/x'], aff)).id).toBe(u2.id);
        expect(must(await store.getJob(u0.id)).skips).toBe(2);
        // u0 has been passed over maxSkips times: it must be served now.
        const forced = must(await warm(['m/x'], aff));
        expect(forced.id).toBe(u0.id);
        expect(forced.skips).toBe(2);
        expect(must(await warm(['m/x'], aff)).id).toBe(u3.id);
        expect(must(await store.getJob(u3.id)).skips).toBe(0);
      });

      it('skips every job passed over, and only those', async () => {
        const u0 = await add('u0', { models: ['m/a'] });
        const u1 = await add('u1', { models: ['m/b'] });
        const u2 = await add('u2', { models: ['m/x', 'm/y'] });
        const u3 = await add('u3', { models: ['m/a'] });
        expect(must(await warm(['m/x', 'm/y', 'm/z'], { window: 4, maxSkips: 5 })).id).toBe(u2.id);
        expect(must(await store.getJob(u0.id)).skips).toBe(1);
        expect(must(await store.getJob(u1.id)).skips).toBe(1);
        expect(must(await store.getJob(u3.id)).skips).toBe(0);
      });

      it('only looks within the window; window 1 disables it; partial warmth is not warm', async () => {
        const u0 = await add('u0', { models: ['m/a'] });
        await add('u1', { models: ['m/b'] });
        await add('u2', { models: ['m/x'] });
        await add('u3', { models: ['m/x', 'm/q'] });
        expect(must(await warm(['m/x'], { window: 2, maxSkips: 2 })).id).toBe(u0.id);
        expect(must(await store.getJob(u0.id)).skips).toBe(0);
        await store.release(u0.id, 1, T0);
        expect(must(await warm(['m/x'], { window: 1, maxSkips: 2 })).id).toBe(u0.id);
        await store.release(u0.id, 1, T0);
        // u3 also needs m/x, which is cold now, so only u4 is warm.
        const u = await add('u4', { models: ['m/q'] });
        expect(u.skips).toBe(0);
        expect(must(await warm(['m/q'], { window: 5, maxSkips: 2 })).id).toBe(u.id);
      });

      it('jobs without models are never warm; a warm top candidate is taken directly', async () => {
        const aff = { window: 4, maxSkips: 2 };
        const u0 = await add('u0', { models: [] });
        const u1 = await add('u1', { models: [] });
        expect(must(await warm(['m/x'], aff)).id).toBe(u0.id);
        expect(must(await store.getJob(u1.id)).skips).toBe(0);
        const u2 = await add('u2', { models: ['m/x'] });
        expect(must(await warm(['m/x'], aff)).id).toBe(u2.id);
        expect(must(await store.getJob(u1.id)).skips).toBe(1);
        expect(must(await claim()).id).toBe(u1.id);
        const u4 = await add('u4', { models: ['m/x'] });
        const u5 = await add('u5', { models: ['m/y'] });
        const got = must(await warm(['m/x', 'm/y'], aff));
        expect(got).toMatchObject({ id: u4.id, skips: 0 });
        expect(must(await store.getJob(u5.id)).skips).toBe(0);
      });

      it('never crosses a priority level or the front tier', async () => {
        await store.updateSettings({ mode: 'priority' });
        const hi = await add('u0', { priority: 'high', models: ['m/a'] });
        await add('u1', { models: ['m/x'] });
        expect(must(await warm(['m/x'], { window: 4, maxSkips: 2 })).id).toBe(hi.id);
        await store.updateSettings({ mode: 'fifo' });
        const cold = await add('u2', { models: ['m/a'] });
        must(await store.moveToFront(cold.id));
        expect(must(await warm(['m/x'], { window: 4, maxSkips: 2 })).id).toBe(cold.id);
        expect(must(await store.getJob(cold.id)).skips).toBe(0);
      });
    });
  });
}
