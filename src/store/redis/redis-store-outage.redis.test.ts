/**
 * The Redis store when its server is out of reach, goes away or restarts: STORE_UNAVAILABLE
 * without hanging or leaking a password, and everything kept across a restart with AOF.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../../../test/support/redis-server.js';
import { AppError } from '../../errors.js';
import { openRedisStore } from './redis-store.js';
import { createRedisClient, redactRedisUrl } from './redis-client.js';
import { DEFAULTS, PROMPT, T0, expectConsistent } from '../../../test/support/redis-store-kit.js';

const redisUrl = inject('redisUrl');

describe('RedisStore (Redis specifics)', () => {
  describe('unreachable Redis', () => {
    it('open fails fast with STORE_UNAVAILABLE and never shows the password', async () => {
      const port = await (await import('../../../test/support/redis-server.js')).freePort();
      const url = `redis://admin:s3cret-pass@127.0.0.1:${port}`;
      const started = Date.now();
      const err = await openRedisStore({ url, defaults: DEFAULTS, connectTimeoutMs: 800 }).catch(
        (e: unknown) => e,
      );
      expect(Date.now() - started).toBeLessThan(3000);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('STORE_UNAVAILABLE');
      expect((err as AppError).status).toBe(503);
      expect((err as AppError).message).toContain(`127.0.0.1:${port}`);
      expect((err as AppError).message).not.toContain('s3cret-pass');
    });

    it('operations fail with STORE_UNAVAILABLE (no hang) when Redis goes away', async () => {
      const server = await startRedisServer();
      try {
        const store = await openRedisStore({ url: server.url, defaults: DEFAULTS, keyPrefix: 'gone:' });
        await store.enqueue({ user: 'a', prompt: PROMPT }, T0);
        await server.kill9();
        const started = Date.now();
        const err = await store.getJob('x').catch((e: unknown) => e);
        expect(Date.now() - started).toBeLessThan(5000);
        expect(err).toBeInstanceOf(AppError);
        expect((err as AppError).code).toBe('STORE_UNAVAILABLE');
        await expect(store.ping()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
        await store.close();
      } finally {
        await server.stop();
      }
    });

    it('redacts passwords in URLs', () => {
      expect(redactRedisUrl('redis://user:pw@h:1/2')).toBe('redis://user:***@h:1/2');
      expect(redactRedisUrl('rediss://:pw@h:1')).toBe('rediss://:***@h:1');
      expect(redactRedisUrl('redis://h:1')).toBe('redis://h:1');
      expect(redactRedisUrl('not a url :pw@x')).not.toContain('pw@');
    });

    it('refuses a client with an ioredis keyPrefix', async () => {
      const client = createRedisClient(redisUrl, {
        name: 'test-prefixed',
        extra: { keyPrefix: 'x:' } as never,
      });
      try {
        await expect(openRedisStore({ client, defaults: DEFAULTS })).rejects.toThrow(/keyPrefix/);
      } finally {
        client.disconnect();
      }
    });
  });

  describe('durability with AOF', () => {
    let dir: string;
    let server: RedisServerHandle | undefined;
    beforeAll(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'cm-aof-'));
    });
    afterAll(async () => {
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    async function scenario(url: string) {
      const store = await openRedisStore({ url, defaults: DEFAULTS, keyPrefix: 'cm:' });
      await store.updateSettings({
        mode: 'priority',
        limits: { maxRunningPerUser: 2 },
        userLimits: { bob: { maxPendingPerUser: 3 } },
      });
      const a1 = await store.enqueue({ user: 'alice', prompt: PROMPT, models: ['m/a'] }, T0);
      const a2 = await store.enqueue({ user: 'alice', prompt: PROMPT, priority: 'high' }, T0 + 1);
      const b1 = await store.enqueue({ user: 'bob', prompt: PROMPT, front: true }, T0 + 2);
      const c1 = await store.enqueue({ user: 'carol', prompt: PROMPT }, T0 + 3);
      const run = await store.claim({
        workerId: 'gpu-1',
        warmModels: [],
        leaseMs: 30_000,
        now: T0 + 10,
        affinity: { window: 1, maxSkips: 0 },
      });
      expect(run?.id).toBe(b1.id);
      const run2 = await store.claim({
        workerId: 'gpu-2',
        warmModels: [],
        leaseMs: 30_000,
        now: T0 + 11,
        affinity: { window: 1, maxSkips: 0 },
      });
      expect(run2?.id).toBe(a2.id);
      await store.complete(
        a2.id,
        1,
        [{ nodeId: '9', filename: 'x.png', subfolder: '', type: 'output', kind: 'images' }],
        T0 + 20,
      );
      await store.cancel(c1.id, T0 + 21);
      await store.putAccount({
        name: 'alice',
        role: 'participant',
        passwordHash: 'h',
        createdAt: T0,
        passwordVersion: 2,
      });
      await store.putWorkerToken({
        name: 'gpu-1',
        tokenHash: 'a'.repeat(64),
        createdAt: T0,
        revokedAt: null,
      });
      await store.putBlob('env', 'gpu-1', '{"vram":24}');
      const snapshot = {
        jobs: await Promise.all([a1, a2, b1, c1].map((j) => store.getJob(j.id))),
        settings: await store.getSettings(),
        counts: await store.countByStatus(),
        users: await store.userCounters(),
        order: (await store.pendingInOrder(10)).map((j) => j.id),
        list: await store.listJobs({ limit: 2 }),
        persistence: await store.persistence(),
      };
      await store.close();
      return { snapshot, ids: { a1: a1.id, a2: a2.id, b1: b1.id, c1: c1.id } };
    }

    async function expectSame(url: string, s: Awaited<ReturnType<typeof scenario>>) {
      const store = await openRedisStore({ url, defaults: DEFAULTS, keyPrefix: 'cm:' });
      try {
        const { snapshot, ids } = s;
        expect(await Promise.all([ids.a1, ids.a2, ids.b1, ids.c1].map((id) => store.getJob(id)))).toEqual(
          snapshot.jobs,
        );
        expect(await store.getSettings()).toEqual(snapshot.settings);
        expect(await store.countByStatus()).toEqual(snapshot.counts);
        expect(await store.userCounters()).toEqual(snapshot.users);
        expect((await store.pendingInOrder(10)).map((j) => j.id)).toEqual(snapshot.order);
        expect(await store.listJobs({ limit: 2 })).toEqual(snapshot.list);
        expect(await store.getAccount('alice')).toMatchObject({ passwordVersion: 2 });
        expect(await store.listWorkerTokens()).toHaveLength(1);
        expect(await store.getBlob('env', 'gpu-1')).toBe('{"vram":24}');
        // The queue carries on where it stopped: counters, leases, limits.
        const next = await store.enqueue({ user: 'dave', prompt: PROMPT }, T0 + 100);
        expect(next.seq).toBe(5);
        expect(await store.renewLease(ids.b1, 'gpu-1', 1, 30_000, T0 + 100)).toBe(true);
        expect((await store.complete(ids.b1, 1, [], T0 + 200)).ok).toBe(true);
        const claimed = await store.claim({
          workerId: 'gpu-3',
          warmModels: [],
          leaseMs: 1000,
          now: T0 + 300,
          affinity: { window: 1, maxSkips: 0 },
        });
        expect([ids.a1, next.id]).toContain(claimed?.id);
        await store.enqueue({ user: 'bob', prompt: PROMPT }, T0 + 400);
        await store.enqueue({ user: 'bob', prompt: PROMPT }, T0 + 401);
        await store.enqueue({ user: 'bob', prompt: PROMPT }, T0 + 402);
        await expect(store.enqueue({ user: 'bob', prompt: PROMPT }, T0 + 403)).rejects.toMatchObject({
          code: 'QUEUE_LIMIT',
        });
        await expectConsistent(store);
      } finally {
        await store.close();
      }
    }

    it('survives SHUTDOWN and restart on the same directory', async () => {
      server = await startRedisServer({ appendonly: true, dir });
      const s = await scenario(server.url);
      expect(s.snapshot.persistence.aofEnabled).toBe(true);
      await server.stop();
      server = await startRedisServer({ appendonly: true, dir });
      await expectSame(server.url, s);
      await server.stop();
      server = undefined;
    });

    it('survives kill -9 with appendfsync always', async () => {
      const dir2 = mkdtempSync(path.join(os.tmpdir(), 'cm-aof9-'));
      let srv = await startRedisServer({ appendonly: true, dir: dir2, args: ['--appendfsync', 'always'] });
      try {
        const s = await scenario(srv.url);
        await srv.kill9();
        srv = await startRedisServer({ appendonly: true, dir: dir2 });
        await expectSame(srv.url, s);
      } finally {
        await srv.stop();
        rmSync(dir2, { recursive: true, force: true });
      }
    });
  });
});
