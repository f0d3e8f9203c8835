/**
 * The one conformance suite every `JobStore` backend runs unchanged (see docs/store-contract.md).
 *
 * A backend's test file calls `runStoreConformance('name', open)`. `open(defaults)` must return a
 * fresh, empty store constructed with those default settings; it is called once per test. When the
 * backend can, it also returns `reopen`, which closes the store and opens the same database /
 * keyspace again (the returned store replaces the old one; `cleanup` must then close the new one).
 *
 * Nothing here depends on a particular backend: only the `JobStore` interface, the pure policy and
 * the error classes.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError, QueueLimitError } from '../errors.js';
import { selectJob, serviceOrder, type Candidate, type UserServeState } from '../scheduler/policy.js';
import {
  JOB_STATUSES,
  PRIORITIES,
  QUEUE_MODES,
  isTerminal,
  type AffinityOptions,
  type ClaimRequest,
  type ComfyPrompt,
  type Job,
  type JobError,
  type JobOutput,
  type JobStatus,
  type JobStore,
  type NewJob,
  type Priority,
  type QueueMode,
  type QueueSettings,
} from './types.js';
import { exportImportConformance } from './state-export.conformance.js';
import { signInTokenConformance } from './sign-in-tokens.conformance.js';
import { outputNameConformance } from './output-names.conformance.js';
import type { OpenStore, OpenedStore } from './conformance-types.js';

export type { OpenStore, OpenedStore };

/** The defaults every conformance test store is opened with. */
export const CONFORMANCE_DEFAULTS: QueueSettings = {
  mode: 'fifo',
  paused: false,
  limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
  userLimits: {},
};

const T0 = 1_700_000_000_000;
const LEASE = 30_000;
const NO_AFFINITY: AffinityOptions = { window: 1, maxSkips: 2 };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function prompt(n: number): ComfyPrompt {
  return {
    '3': { class_type: 'KSampler', inputs: { seed: n, steps: 20, model: ['4', 0] } },
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'flux2.safetensors' } },
  };
}

function must<T>(value: T | null | undefined, what = 'value'): T {
  if (value === null || value === undefined) throw new Error(`expected a ${what}`);
  return value;
}

function ids(jobs: readonly { id: string }[]): string[] {
  return jobs.map((j) => j.id);
}

/** A job as the scheduler's policy sees it (the Redis store's own test orders them too). */
export function toCandidate(j: Job): Candidate {
  return {
    id: j.id,
    user: j.user,
    seq: j.seq,
    priority: j.priority,
    front: j.front,
    models: j.models,
    skips: j.skips,
  };
}

export function runStoreConformance(name: string, open: OpenStore): void {
  describe(`JobStore conformance: ${name}`, () => {
    let ctx: OpenedStore;
    let store: JobStore;

    beforeEach(async () => {
      ctx = await open(structuredClone(CONFORMANCE_DEFAULTS));
      store = ctx.store;
    });

    afterEach(async () => {
      await ctx.cleanup();
    });

    // ---- helpers (they read `store`, so they follow a reopen) ----

    let promptCounter = 0;
    const add = (user: string, extra: Partial<NewJob> = {}, now = T0): Promise<Job> =>
      store.enqueue({ user, prompt: prompt(++promptCounter), ...extra }, now);

    const claim = (workerId = 'w1', now = T0, extra: Partial<ClaimRequest> = {}): Promise<Job | null> =>
      store.claim({ workerId, warmModels: [], leaseMs: LEASE, now, affinity: NO_AFFINITY, ...extra });

    /** Claims and completes until nothing is left, so running limits never interfere. */
    async function drain(now = T0): Promise<string[]> {
      const order: string[] = [];
      for (;;) {
        const j = await claim('drainer', now);
        if (!j) return order;
        order.push(j.id);
        const r = await store.complete(j.id, j.attempts, [], now + 1);
        expect(r.ok).toBe(true);
      }
    }

    async function raisePendingLimit(n = 10_000): Promise<void> {
      await store.updateSettings({ limits: { maxPendingPerUser: n } });
    }

    async function reopen(): Promise<void> {
      store = await must(ctx.reopen, 'reopen')();
    }

    async function expectPendingOrderMatchesPolicy(): Promise<void> {
      const settings = await store.getSettings();
      const pending = (await store.listJobs({ status: 'pending', limit: 500 })).jobs;
      const users = await serveStates();
      const expected = serviceOrder(settings.mode, pending.map(toCandidate), users);
      expect(ids(await store.pendingInOrder(1000))).toEqual(ids(expected));
    }

    /**
     * Users' serve states as the policy sees them. Stores do not expose `lastServed`, so tests
     * that need it rebuild it from the order of claims; this helper is only used where every
     * user with pending jobs was served in a known order (see `served`).
     */
    let served: string[] = [];
    async function serveStates(): Promise<Map<string, UserServeState>> {
      const m = new Map<string, UserServeState>();
      served.forEach((u, i) => m.set(u, { lastServed: i + 1, running: 0 }));
      for (const j of (await store.listJobs({ status: 'running', limit: 500 })).jobs) {
        const s = m.get(j.user) ?? { lastServed: 0, running: 0 };
        m.set(j.user, { ...s, running: s.running + 1 });
      }
      return m;
    }
    beforeEach(() => {
      served = [];
    });

    // ---------------------------------------------------------------------------------------------
    describe('enqueue', () => {
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

    // ---------------------------------------------------------------------------------------------
    describe('leases', () => {
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
        if (!ctx.reopen) return;
        const a = await add('a');
        must(await claim('w1', T0));
        await store.requeueExpired(T0 + LEASE, 3);
        await reopen();
        expect(await store.adopt(a.id, 'w1', 1, LEASE, T0 + LEASE + 1)).toBe(true);
        await reopen();
        expect(must(await store.getJob(a.id))).toMatchObject({ status: 'running', workerId: 'w1' });
      });
    });

    // ---------------------------------------------------------------------------------------------
    describe('complete / fail / release', () => {
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

    // ---------------------------------------------------------------------------------------------
    describe('listJobs', () => {
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

    // ---------------------------------------------------------------------------------------------
    describe('pendingInOrder', () => {
      for (const mode of QUEUE_MODES) {
        it(`${mode}: matches serviceOrder from the policy, honours limit, excludes non-pending`, async () => {
          await raisePendingLimit();
          await store.updateSettings({ mode, limits: { maxRunningPerUser: 100 } });
          const users = ['ann', 'ben', 'cat', 'dan', 'eve'];
          let k = 0;
          for (let i = 0; i < 40; i++) {
            const u = users[(i * 7 + (i >> 2)) % users.length]!;
            await add(u, { priority: PRIORITIES[(i * 5 + 1) % 4]!, front: i % 13 === 5 });
          }
          // Serve a few users so lastServed differs, and leave some running.
          for (let i = 0; i < 6; i++) {
            const j = must(await claim(`w${k++}`));
            served = served.filter((u) => u !== j.user).concat(j.user);
            if (i % 2) await store.complete(j.id, 1, [], T0);
          }
          const pend = (await store.listJobs({ status: 'pending', limit: 500 })).jobs;
          must(await store.moveToFront(must(pend[20]).id));
          await store.cancel(must(pend[3]).id, T0);
          await expectPendingOrderMatchesPolicy();
          const full = ids(await store.pendingInOrder(1000));
          expect(full).toHaveLength(40 - 6 - 1);
          expect(ids(await store.pendingInOrder(5))).toEqual(full.slice(0, 5));
          expect(ids(await store.pendingInOrder(1))).toEqual(full.slice(0, 1));
          // The order it promises is the order claims follow (no affinity, no running limits).
          expect(await drain()).toEqual(full);
        });
      }

      for (const mode of QUEUE_MODES) {
        it(`${mode}: with many users, every limit gives a prefix of the policy's order`, async () => {
          await store.updateSettings({ mode, limits: { maxRunningPerUser: 100 } });
          const users = Array.from({ length: 70 }, (_, i) => `user${String(i).padStart(2, '0')}`);
          for (let round = 0; round < 3; round++) {
            for (const [i, u] of users.entries()) {
              await add(u, { priority: PRIORITIES[(i + round) % 4]!, front: (i * 7 + round) % 31 === 0 });
            }
          }
          // Serve 25 users in a scrambled order so lastServed differs.
          for (let i = 0; i < 25; i++) {
            const j = must(await claim(`w${i}`));
            served = served.filter((u) => u !== j.user).concat(j.user);
            await store.complete(j.id, 1, [], T0);
          }
          await expectPendingOrderMatchesPolicy();
          const full = ids(await store.pendingInOrder(1000));
          expect(full).toHaveLength(210 - 25);
          for (const limit of [1, 2, 3, 63, 64, 65, 100, 128, 129, 184, 185, 500]) {
            expect(ids(await store.pendingInOrder(limit))).toEqual(full.slice(0, limit));
          }
        });
      }

      it('returns full jobs', async () => {
        const a = await add('a', { models: ['m/a'], metadata: { k: 1 } });
        expect(await store.pendingInOrder(10)).toEqual([a]);
      });

      it('model-based: random operations agree with a reference model on claims and order', async () => {
        let run = 0;
        // Mostly `normal`, rarely moved: affinity only acts within a tier, so keep tiers crowded.
        const priorityArb = fc.oneof(
          { weight: 3, arbitrary: fc.constant<Priority>('normal') },
          fc.constantFrom(...PRIORITIES),
        );
        const modelsArb = fc.subarray(['m/a', 'm/b', 'm/c'], { minLength: 1, maxLength: 2 });
        const opArb = fc.oneof(
          {
            weight: 6,
            arbitrary: fc.record({
              t: fc.constant('enqueue' as const),
              user: fc.nat(4),
              priority: priorityArb,
              front: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
              models: fc.oneof(modelsArb, fc.constant<string[]>([])),
            }),
          },
          {
            weight: 4,
            arbitrary: fc.record({
              t: fc.constant('claim' as const),
              warm: modelsArb,
              window: fc.integer({ min: 1, max: 4 }),
              maxSkips: fc.integer({ min: 0, max: 2 }),
            }),
          },
          { weight: 3, arbitrary: fc.record({ t: fc.constant('complete' as const), pick: fc.nat() }) },
          { weight: 1, arbitrary: fc.record({ t: fc.constant('cancel' as const), pick: fc.nat() }) },
          { weight: 1, arbitrary: fc.record({ t: fc.constant('release' as const), pick: fc.nat() }) },
          { weight: 1, arbitrary: fc.record({ t: fc.constant('moveToFront' as const), pick: fc.nat() }) },
          {
            weight: 1,
            arbitrary: fc.record({
              t: fc.constant('setPriority' as const),
              pick: fc.nat(),
              priority: fc.constantFrom(...PRIORITIES),
            }),
          },
          {
            weight: 1,
            arbitrary: fc.record({ t: fc.constant('mode' as const), mode: fc.constantFrom(...QUEUE_MODES) }),
          },
          { weight: 1, arbitrary: fc.record({ t: fc.constant('expire' as const) }) },
        );

        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...QUEUE_MODES),
            fc.constantFrom(1, 2, 5),
            fc.array(opArb, { minLength: 1, maxLength: 40, size: 'max' }),
            async (startMode, maxRunning, ops) => {
              run++;
              // A failed (shrinking) run may leave jobs behind: finish them so each run starts clean.
              for (const status of ['pending', 'running'] as const) {
                for (const j of (await store.listJobs({ status, limit: 500 })).jobs)
                  await store.cancel(j.id, T0);
              }
              const userName = (u: number) => `r${run}u${u}`;
              let mode: QueueMode = startMode;
              const limits = { maxPendingPerUser: 4, maxRunningPerUser: maxRunning };
              await store.updateSettings({ mode, limits, userLimits: {} });
              interface MJob extends Candidate {
                status: JobStatus;
                attempts: number;
                lease: number;
                /** The user's lastServed before the claim that started it: a hand-back restores it. */
                servedBefore: number;
              }
              const jobs = new Map<string, MJob>();
              const order: string[] = [];
              const users = new Map<string, UserServeState>();
              let serveCounter = 0;
              let maxFront = 0;
              let now = T0 + run * 1_000_000;
              const lease = 5;
              const maxAttempts = 2;
              const pick = (n: number, pred: (j: MJob) => boolean): MJob | undefined => {
                const list = order.map((id) => jobs.get(id)!).filter(pred);
                return list.length ? list[n % list.length] : undefined;
              };
              const user = (u: string) => users.get(u) ?? { lastServed: 0, running: 0 };
              const pendingCandidates = () =>
                order.map((id) => jobs.get(id)!).filter((j) => j.status === 'pending');
              const toPending = (j: MJob) => {
                j.status = 'pending';
                const u = user(j.user);
                users.set(j.user, {
                  lastServed: Math.min(u.lastServed, j.servedBefore),
                  running: u.running - 1,
                });
              };
              const toTerminal = (j: MJob, status: JobStatus) => {
                if (j.status === 'running')
                  users.set(j.user, { ...user(j.user), running: user(j.user).running - 1 });
                j.status = status;
              };

              for (const op of ops) {
                now += 1;
                switch (op.t) {
                  case 'enqueue': {
                    const u = userName(op.user);
                    const pendingCount = pendingCandidates().filter((j) => j.user === u).length;
                    const res = await store
                      .enqueue(
                        {
                          user: u,
                          prompt: prompt(now),
                          priority: op.priority,
                          models: op.models,
                          front: op.front,
                        },
                        now,
                      )
                      .catch((e: unknown) => e);
                    if (pendingCount >= limits.maxPendingPerUser) {
                      expect(res).toBeInstanceOf(QueueLimitError);
                      break;
                    }
                    if (!(res && typeof res === 'object' && 'id' in res)) throw res;
                    const j = res as Job;
                    if (op.front) {
                      expect(j.front).toBeGreaterThan(maxFront);
                      maxFront = j.front;
                    } else expect(j.front).toBe(0);
                    jobs.set(j.id, {
                      ...toCandidate(j),
                      status: 'pending',
                      attempts: 0,
                      lease: 0,
                      servedBefore: 0,
                    });
                    order.push(j.id);
                    break;
                  }
                  case 'claim': {
                    const affinity = { window: op.window, maxSkips: op.maxSkips };
                    const sel = selectJob({
                      mode,
                      candidates: pendingCandidates(),
                      users,
                      limits,
                      userLimits: {},
                      warmModels: new Set(op.warm),
                      affinity,
                    });
                    const got = await store.claim({
                      workerId: 'w',
                      warmModels: op.warm,
                      leaseMs: lease,
                      now,
                      affinity,
                    });
                    expect(got?.id ?? null).toBe(sel?.job.id ?? null);
                    if (!sel || !got) break;
                    const j = jobs.get(sel.job.id)!;
                    j.status = 'running';
                    j.attempts += 1;
                    j.lease = now + lease;
                    j.servedBefore = user(j.user).lastServed;
                    expect(got.attempts).toBe(j.attempts);
                    users.set(j.user, { lastServed: ++serveCounter, running: user(j.user).running + 1 });
                    for (const s of sel.skipped) jobs.get(s.id)!.skips += 1;
                    break;
                  }
                  case 'complete': {
                    const j = pick(op.pick, (x) => x.status === 'running');
                    if (!j) break;
                    expect(await store.complete(j.id, j.attempts, [], now)).toMatchObject({ ok: true });
                    toTerminal(j, 'completed');
                    break;
                  }
                  case 'cancel': {
                    const j = pick(op.pick, () => true);
                    if (!j) break;
                    const r = await store.cancel(j.id, now);
                    if (isTerminal(j.status)) expect(r).toMatchObject({ ok: false, reason: 'terminal' });
                    else {
                      expect(r).toMatchObject({ ok: true, job: { status: 'cancelled' } });
                      toTerminal(j, 'cancelled');
                    }
                    break;
                  }
                  case 'release': {
                    const j = pick(op.pick, (x) => x.status === 'running');
                    if (!j) break;
                    expect(await store.release(j.id, j.attempts, now)).toMatchObject({ ok: true });
                    j.attempts -= 1;
                    toPending(j);
                    break;
                  }
                  case 'moveToFront': {
                    const j = pick(op.pick, () => true);
                    if (!j) break;
                    const r = must(await store.moveToFront(j.id));
                    if (j.status === 'pending') {
                      expect(r.front).toBeGreaterThan(maxFront);
                      maxFront = r.front;
                      j.front = r.front;
                    } else expect(r.front).toBe(j.front);
                    break;
                  }
                  case 'setPriority': {
                    const j = pick(op.pick, () => true);
                    if (!j) break;
                    const r = must(await store.setPriority(j.id, op.priority));
                    if (!isTerminal(j.status)) j.priority = op.priority;
                    expect(r.priority).toBe(j.priority);
                    break;
                  }
                  case 'mode': {
                    mode = op.mode;
                    await store.updateSettings({ mode });
                    break;
                  }
                  case 'expire': {
                    const res = await store.requeueExpired(now, maxAttempts);
                    const expired = order
                      .map((id) => jobs.get(id)!)
                      .filter((j) => j.status === 'running' && j.lease <= now);
                    const wantFailed = expired.filter((j) => j.attempts >= maxAttempts);
                    const wantRequeued = expired.filter((j) => j.attempts < maxAttempts);
                    expect(ids(res.failed).sort()).toEqual(ids(wantFailed).sort());
                    expect(ids(res.requeued).sort()).toEqual(ids(wantRequeued).sort());
                    for (const j of wantFailed) toTerminal(j, 'failed');
                    for (const j of wantRequeued) toPending(j);
                    break;
                  }
                }
                const expected = serviceOrder(mode, pendingCandidates(), users);
                expect(ids(await store.pendingInOrder(1000))).toEqual(ids(expected));
              }

              // Every job: the store agrees on status, attempts and skips.
              for (const j of jobs.values()) {
                expect(await store.getJob(j.id)).toMatchObject({
                  status: j.status,
                  attempts: j.attempts,
                  skips: j.skips,
                  front: j.front,
                  priority: j.priority,
                });
              }
              // Finish everything: every accepted job ends in exactly one terminal state.
              for (const j of jobs.values()) if (!isTerminal(j.status)) await store.cancel(j.id, now + 1);
              for (const u of new Set([...jobs.values()].map((j) => j.user))) {
                const c = await store.countByStatus(u);
                const mine = [...jobs.values()].filter((j) => j.user === u);
                expect(c.pending + c.running).toBe(0);
                expect(c.completed + c.failed + c.cancelled).toBe(mine.length);
                expect(c.completed).toBe(mine.filter((j) => j.status === 'completed').length);
                expect(c.failed).toBe(mine.filter((j) => j.status === 'failed').length);
              }
              expect(await store.pendingInOrder(10)).toEqual([]);
            },
          ),
          { numRuns: 40 },
        );
      });
    });

    // ---------------------------------------------------------------------------------------------
    describe('counters and history', () => {
      async function scenario(): Promise<Record<string, Job>> {
        await store.updateSettings({ limits: { maxRunningPerUser: 10 } });
        const j: Record<string, Job> = {};
        j.a1 = await add('alice', {}, T0);
        j.a2 = await add('alice', {}, T0 + 10);
        j.a3 = await add('alice', {}, T0 + 20);
        j.b1 = await add('bob', {}, T0 + 30);
        j.b2 = await add('bob', {}, T0 + 40);
        j.c1 = await add('carol', {}, T0 + 50);
        must(await claim('w', T0 + 100)); // a1
        must(await claim('w', T0 + 200)); // a2
        must(await claim('w', T0 + 300)); // a3
        must(await claim('w', T0 + 400)); // b1
        await store.complete(j.a1.id, 1, [], T0 + 1100); // 1000 ms
        await store.fail(j.a2.id, 1, { reason: 'execution_error', message: 'x' }, T0 + 700); // 500 ms
        await store.cancel(j.a3.id, T0 + 800); // running → cancelled, 500 ms
        await store.cancel(j.b2.id, T0 + 900); // pending → cancelled, never started
        return j;
      }

      it('countByStatus has all five keys, globally and per user', async () => {
        const zero = { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0 };
        expect(await store.countByStatus()).toEqual(zero);
        expect(await store.countByStatus('nobody')).toEqual(zero);
        await scenario();
        expect(await store.countByStatus()).toEqual({
          pending: 1,
          running: 1,
          completed: 1,
          failed: 1,
          cancelled: 2,
        });
        expect(await store.countByStatus('alice')).toEqual({
          pending: 0,
          running: 0,
          completed: 1,
          failed: 1,
          cancelled: 1,
        });
        expect(await store.countByStatus('bob')).toEqual({
          pending: 0,
          running: 1,
          completed: 0,
          failed: 0,
          cancelled: 1,
        });
        expect(await store.countByStatus('carol')).toEqual({ ...zero, pending: 1 });
      });

      it('userCounters: counts, gpuMs over finished started jobs, lastActivityAt', async () => {
        expect(await store.userCounters()).toEqual([]);
        await scenario();
        const rows = (await store.userCounters()).sort((x, y) => x.user.localeCompare(y.user));
        expect(rows).toEqual([
          {
            user: 'alice',
            pending: 0,
            running: 0,
            completed: 1,
            failed: 1,
            cancelled: 1,
            gpuMs: 2000,
            lastActivityAt: T0 + 1100,
          },
          {
            user: 'bob',
            pending: 0,
            running: 1,
            completed: 0,
            failed: 0,
            cancelled: 1,
            gpuMs: 0,
            lastActivityAt: T0 + 900,
          },
          {
            user: 'carol',
            pending: 1,
            running: 0,
            completed: 0,
            failed: 0,
            cancelled: 0,
            gpuMs: 0,
            lastActivityAt: T0 + 50,
          },
        ]);
      });

      it('pruneHistory deletes terminal jobs finished strictly before the cutoff', async () => {
        const j = await scenario();
        expect(await store.pruneHistory(T0 + 700)).toBe(0);
        expect(await store.pruneHistory(T0 + 801)).toBe(2); // a2 (700), a3 (800)
        expect(await store.getJob(must(j.a2).id)).toBeNull();
        expect(await store.getJob(must(j.a3).id)).toBeNull();
        expect(await store.pruneHistory(T0 + 1_000_000)).toBe(2); // b2, a1
        expect(await store.countByStatus()).toEqual({
          pending: 1,
          running: 1,
          completed: 0,
          failed: 0,
          cancelled: 0,
        });
        expect(ids((await store.listJobs({})).jobs).sort()).toEqual([must(j.b1).id, must(j.c1).id].sort());
        expect((await store.userCounters()).map((r) => r.user).sort()).toEqual(['bob', 'carol']);
        // Seq keeps counting after the newest jobs are pruned.
        const last = await add('dave');
        expect(last.seq).toBeGreaterThan(must(j.c1).seq);
      });

      it("deleteHistory deletes the user's terminal jobs, or only the listed ones", async () => {
        const j = await scenario();
        expect(
          await store.deleteHistory('alice', [must(j.a1).id, must(j.b2).id, must(j.c1).id, 'nope']),
        ).toBe(1);
        expect(await store.getJob(must(j.a1).id)).toBeNull();
        expect(await store.getJob(must(j.b2).id)).not.toBeNull();
        expect(await store.deleteHistory('alice', [])).toBe(0);
        expect(await store.deleteHistory('bob')).toBe(1); // b2 only, b1 is running
        expect(must(await store.getJob(must(j.b1).id)).status).toBe('running');
        expect(await store.deleteHistory('alice')).toBe(2);
        expect(await store.deleteHistory('alice')).toBe(0);
        expect(await store.deleteHistory('carol')).toBe(0);
        expect(await store.countByStatus()).toEqual({
          pending: 1,
          running: 1,
          completed: 0,
          failed: 0,
          cancelled: 0,
        });
      });
    });

    // ---------------------------------------------------------------------------------------------
    describe('settings, accounts, tokens, blobs', () => {
      it('getSettings returns the defaults until changed; updateSettings merges and persists', async () => {
        expect(await store.getSettings()).toEqual(CONFORMANCE_DEFAULTS);
        const s1 = await store.updateSettings({ mode: 'priority' });
        expect(s1).toEqual({ ...CONFORMANCE_DEFAULTS, mode: 'priority' });
        const s2 = await store.updateSettings({ limits: { maxRunningPerUser: 3 }, paused: true });
        expect(s2).toEqual({
          mode: 'priority',
          paused: true,
          limits: { maxPendingPerUser: 10, maxRunningPerUser: 3 },
          userLimits: {},
        });
        const s3 = await store.updateSettings({ userLimits: { alice: { maxPendingPerUser: 1 } } });
        expect(s3.userLimits).toEqual({ alice: { maxPendingPerUser: 1 } });
        const s4 = await store.updateSettings({ userLimits: { bob: { maxRunningPerUser: 2 } } });
        expect(s4.userLimits).toEqual({ bob: { maxRunningPerUser: 2 } });
        expect(await store.updateSettings({})).toEqual(s4);
        expect(await store.getSettings()).toEqual(s4);
        // The returned object is a copy.
        s4.limits.maxPendingPerUser = 999;
        expect((await store.getSettings()).limits.maxPendingPerUser).toBe(10);
      });

      it('accounts: create, replace, list sorted by name, delete', async () => {
        expect(await store.getAccount('alice')).toBeNull();
        expect(await store.listAccounts()).toEqual([]);
        const acc = (name: string, v = 1) => ({
          name,
          role: name === 'teacher' ? ('instructor' as const) : ('participant' as const),
          passwordHash: `$2b$10$hash-${name}-${v}`,
          createdAt: T0 + v,
          passwordVersion: v,
        });
        await store.putAccount(acc('teacher'));
        await store.putAccount(acc('bob'));
        await store.putAccount(acc('alice'));
        expect(await store.getAccount('teacher')).toEqual(acc('teacher'));
        await store.putAccount(acc('bob', 2));
        expect(await store.getAccount('bob')).toEqual(acc('bob', 2));
        expect(await store.listAccounts()).toEqual([acc('alice'), acc('bob', 2), acc('teacher')]);
        expect(await store.deleteAccount('bob')).toBe(true);
        expect(await store.deleteAccount('bob')).toBe(false);
        expect(await store.getAccount('bob')).toBeNull();
        expect((await store.listAccounts()).map((a) => a.name)).toEqual(['alice', 'teacher']);
      });

      it('worker tokens: put, list, revoke (idempotent, first revocation time kept)', async () => {
        expect(await store.listWorkerTokens()).toEqual([]);
        const h = (c: string) => c.repeat(64);
        await store.putWorkerToken({ name: 'gpu-2', tokenHash: h('b'), createdAt: T0, revokedAt: null });
        await store.putWorkerToken({ name: 'gpu-1', tokenHash: h('a'), createdAt: T0 + 1, revokedAt: null });
        const list = (await store.listWorkerTokens()).sort((x, y) => x.name.localeCompare(y.name));
        expect(list).toEqual([
          { name: 'gpu-1', tokenHash: h('a'), createdAt: T0 + 1, revokedAt: null },
          { name: 'gpu-2', tokenHash: h('b'), createdAt: T0, revokedAt: null },
        ]);
        expect(await store.revokeWorkerToken('gpu-1', T0 + 50)).toBe(true);
        expect(await store.revokeWorkerToken('nope', T0 + 50)).toBe(false);
        expect(await store.revokeWorkerToken('gpu-1', T0 + 90)).toBe(true);
        const after = (await store.listWorkerTokens()).find((t) => t.name === 'gpu-1');
        expect(after).toEqual({ name: 'gpu-1', tokenHash: h('a'), createdAt: T0 + 1, revokedAt: T0 + 50 });
        // Replacing a token by name (e.g. rotation) stores the new hash.
        await store.putWorkerToken({
          name: 'gpu-1',
          tokenHash: h('c'),
          createdAt: T0 + 100,
          revokedAt: null,
        });
        expect((await store.listWorkerTokens()).find((t) => t.name === 'gpu-1')).toEqual({
          name: 'gpu-1',
          tokenHash: h('c'),
          createdAt: T0 + 100,
          revokedAt: null,
        });
      });

      it('blobs: namespaced strings, overwrite, delete, sorted listing with prefix', async () => {
        expect(await store.getBlob('ns', 'k')).toBeNull();
        expect(await store.listBlobs('ns')).toEqual([]);
        const big = 'x'.repeat(200_000) + 'ünïcødé ✨';
        await store.putBlob('ns', 'users/bob/b.json', '{"b":1}');
        await store.putBlob('ns', 'users/alice/a.json', big);
        await store.putBlob('ns', 'users/alice/z.json', '');
        await store.putBlob('ns', 'other', 'o');
        await store.putBlob('ns2', 'users/alice/a.json', 'other-ns');
        expect(await store.getBlob('ns', 'users/alice/a.json')).toBe(big);
        expect(await store.getBlob('ns', 'users/alice/z.json')).toBe('');
        expect(await store.getBlob('ns2', 'users/alice/a.json')).toBe('other-ns');
        expect(await store.listBlobs('ns')).toEqual([
          'other',
          'users/alice/a.json',
          'users/alice/z.json',
          'users/bob/b.json',
        ]);
        expect(await store.listBlobs('ns', 'users/alice/')).toEqual([
          'users/alice/a.json',
          'users/alice/z.json',
        ]);
        expect(await store.listBlobs('ns', 'users/alice/a')).toEqual(['users/alice/a.json']);
        expect(await store.listBlobs('ns', 'users/%')).toEqual([]);
        expect(await store.listBlobs('ns', 'nothing')).toEqual([]);
        await store.putBlob('ns', 'other', 'o2');
        expect(await store.getBlob('ns', 'other')).toBe('o2');
        expect(await store.deleteBlob('ns', 'other')).toBe(true);
        expect(await store.deleteBlob('ns', 'other')).toBe(false);
        expect(await store.getBlob('ns', 'other')).toBeNull();
        expect(await store.listBlobs('ns2')).toEqual(['users/alice/a.json']);
      });

      it('ping resolves and backend is named', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
        expect(['sqlite', 'redis']).toContain(store.backend);
      });
    });

    // ---------------------------------------------------------------------------------------------
    describe('durability across reopen', () => {
      it('keeps every job, counter, account, token, blob and setting', async ({ skip }) => {
        if (!ctx.reopen) skip();
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
        if (!ctx.reopen) skip();
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
          all.flatMap((j) => [
            store.complete(j.id, 1, [], T0 + 2000),
            store.complete(j.id, 1, [], T0 + 2001),
          ]),
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

    // ---------------------------------------------------------------------------------------------
    describe('export/import', () => {
      exportImportConformance(() => store, open);
    });

    describe('output names', () => {
      outputNameConformance(
        () => store,
        () => (ctx.reopen ? reopen().then(() => store) : null),
      );
    });

    describe('sign-in links', () => {
      signInTokenConformance(
        () => store,
        open,
        () => (ctx.reopen ? reopen().then(() => store) : null),
      );
    });
  });
}
