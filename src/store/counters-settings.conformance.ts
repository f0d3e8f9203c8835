/**
 * Per-user counters and history pruning and deletion; settings, accounts, worker tokens and blobs.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Job, JobStore } from './types.js';
import { CONFORMANCE_DEFAULTS, T0, ids, must, type ConformanceKit } from './kit.conformance.js';

export function countersSettingsConformance(kit: ConformanceKit): void {
  const { add, claim } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;

  describe('counters and history', () => {
    beforeEach(() => {
      store = kit.store;
    });

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
      expect(await store.deleteHistory('alice', [must(j.a1).id, must(j.b2).id, must(j.c1).id, 'nope'])).toBe(
        1,
      );
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
    beforeEach(() => {
      store = kit.store;
    });

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
}
