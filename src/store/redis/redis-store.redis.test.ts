import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../../../test/support/redis-server.js';
import { AppError } from '../../errors.js';
import { serviceOrder, type Candidate } from '../../scheduler/policy.js';
import { runStoreConformance, toCandidate } from '../store.conformance.js';
import { JOB_STATUSES, type ComfyPrompt, type Job, type QueueSettings } from '../types.js';
import { loadLuaScripts } from './lua-scripts.js';
import { createRedisClient, redactRedisUrl } from './redis-client.js';
import { openRedisStore, type RedisStore } from './redis-store.js';

const redisUrl = inject('redisUrl');

const DEFAULTS: QueueSettings = {
  mode: 'round_robin',
  paused: false,
  limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
  userLimits: {},
};
const T0 = 1_700_000_000_000;
const PROMPT: ComfyPrompt = { '1': { class_type: 'KSampler', inputs: { seed: 1 } } };

let prefixCounter = 0;
function uniquePrefix(tag: string): string {
  return `test:${tag}:${process.pid}:${Date.now().toString(36)}:${++prefixCounter}:`;
}

/** Deletes every key under the prefix (glob characters in it escaped). */
async function deleteKeysWithPrefix(client: Redis, prefix: string): Promise<number> {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) n += await client.unlink(...keys);
  } while (cursor !== '0');
  return n;
}

runStoreConformance('redis', async (defaults) => {
  const keyPrefix = uniquePrefix('conf');
  let store = await openRedisStore({ url: redisUrl, keyPrefix, defaults, name: 'test-conformance' });
  return {
    store,
    reopen: async () => {
      await store.close();
      store = await openRedisStore({ url: redisUrl, keyPrefix, defaults, name: 'test-conformance' });
      return store;
    },
    cleanup: async () => {
      await deleteKeysWithPrefix(store.client, keyPrefix);
      await store.close();
    },
  };
});

/**
 * Checks every derived structure against the job hashes: indexes, per-user pending sets and
 * heads, running counts, leases, users. Cheap enough for the small workloads below.
 */
async function expectConsistent(store: RedisStore): Promise<void> {
  const k = store.keys;
  const c = store.client;
  const ids = await c.zrange(k.idxAll, '0', '-1');
  const jobs: Job[] = [];
  for (const id of ids) {
    const j = await store.getJob(id);
    expect(j, `indexed job ${id} exists`).not.toBeNull();
    jobs.push(j!);
  }
  for (const s of JOB_STATUSES) {
    expect((await c.zrange(k.idxStatus(s), '0', '-1')).sort()).toEqual(
      jobs
        .filter((j) => j.status === s)
        .map((j) => j.id)
        .sort(),
    );
  }
  const users = [...new Set(jobs.map((j) => j.user))].sort();
  expect((await c.smembers(k.users)).sort()).toEqual(users);
  const running: Record<string, string> = {};
  for (const u of users) {
    const mine = jobs.filter((j) => j.user === u);
    for (const s of JOB_STATUSES) {
      expect((await c.zrange(k.idxUserStatus(s, u), '0', '-1')).sort()).toEqual(
        mine
          .filter((j) => j.status === s)
          .map((j) => j.id)
          .sort(),
      );
    }
    const pending = mine.filter((j) => j.status === 'pending');
    const bySeq = [...pending].sort((a, b) => b.front - a.front || a.seq - b.seq).map((j) => j.id);
    expect(await c.zrange(k.pqSeq(u), '0', '-1')).toEqual(bySeq);
    const rank = { instructor: 0, high: 1, normal: 2, low: 3 };
    const byPrio = [...pending]
      .sort((a, b) => b.front - a.front || rank[a.priority] - rank[b.priority] || a.seq - b.seq)
      .map((j) => j.id);
    expect(await c.zrange(k.pqPrio(u), '0', '-1')).toEqual(byPrio);
    const r = mine.filter((j) => j.status === 'running').length;
    const lastServed = Number((await c.hget(k.lastServed, u)) ?? 0);
    const head = (id: string | undefined) => {
      const j = pending.find((p) => p.id === id);
      return j ? [j.id, j.user, j.seq, j.priority, j.front, j.skips, j.models, lastServed, r] : null;
    };
    const hs = await c.hget(k.headsSeq, u);
    const hp = await c.hget(k.headsPrio, u);
    expect(hs === null ? null : JSON.parse(hs), `head of ${u}, seq order`).toEqual(head(bySeq[0]));
    expect(hp === null ? null : JSON.parse(hp), `head of ${u}, priority order`).toEqual(head(byPrio[0]));
    if (r > 0) running[u] = String(r);
  }
  expect(await c.hgetall(k.running)).toEqual(running);
  const leases = await c.zrange(k.leases, '0', '-1', 'WITHSCORES');
  const want = jobs
    .filter((j) => j.status === 'running')
    .sort((a, b) => a.leaseExpiresAt! - b.leaseExpiresAt! || (a.id < b.id ? -1 : 1))
    .flatMap((j) => [j.id, String(j.leaseExpiresAt)]);
  expect(leases).toEqual(want);
}

describe('RedisStore (Redis specifics)', () => {
  const opened: { store: RedisStore; prefix: string }[] = [];
  async function fresh(defaults: QueueSettings = DEFAULTS, url = redisUrl): Promise<RedisStore> {
    const prefix = uniquePrefix('own');
    const store = await openRedisStore({ url, keyPrefix: prefix, defaults });
    opened.push({ store, prefix });
    return store;
  }
  afterAll(async () => {
    for (const { store, prefix } of opened) {
      try {
        await deleteKeysWithPrefix(store.client, prefix);
      } catch {
        // the store's server may be gone (restart tests)
      }
      await store.close();
    }
  });

  describe('Lua scripts', () => {
    const scripts = loadLuaScripts();

    it('are files named verb-<numKeys>.lua, one per verb', () => {
      expect(scripts.length).toBeGreaterThanOrEqual(15);
      const verbs = scripts.map((s) => s.verb);
      expect(new Set(verbs).size).toBe(verbs.length);
      for (const s of scripts) expect(path.basename(s.file)).toBe(`${s.verb}-${s.numberOfKeys}.lua`);
    });

    for (const s of loadLuaScripts()) {
      it(`${path.basename(s.file)}: header lists exactly its KEYS and every ARGV it reads`, () => {
        const source = readFileSync(s.file, 'utf8');
        const header = /^--\[\[([\s\S]*?)\]\]/.exec(source);
        expect(header, 'starts with a --[[ ... ]] header').not.toBeNull();
        const doc = header![1]!;
        const body = s.lua.slice(header![0].length);
        const documentedKeys = [...doc.matchAll(/^\s*KEYS\[(\d+)\]/gm)].map((m) => Number(m[1]));
        expect(documentedKeys).toEqual(Array.from({ length: s.numberOfKeys }, (_, i) => i + 1));
        const usedKeys = [...body.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]));
        for (const i of usedKeys) expect(i, `KEYS[${i}] within numKeys`).toBeLessThanOrEqual(s.numberOfKeys);
        const documentedArgv = [...doc.matchAll(/^\s*ARGV\[(\d+)\](\.\.\.)?/gm)].map((m) => ({
          n: Number(m[1]),
          rest: m[2] !== undefined,
        }));
        expect(documentedArgv.length).toBeGreaterThan(0);
        const restFrom = documentedArgv.find((a) => a.rest)?.n ?? Infinity;
        const usedArgv = new Set([...body.matchAll(/ARGV\[(\d+)\]/g)].map((m) => Number(m[1])));
        for (const n of usedArgv) {
          expect(documentedArgv.some((a) => a.n === n) || n >= restFrom, `ARGV[${n}] documented`).toBe(true);
        }
        expect(doc).toMatch(/Returns/);
      });
    }

    it('run against Redis (each one compiles)', async () => {
      const store = await fresh();
      for (const s of scripts) {
        const sha = (await store.client.script('LOAD', s.lua)) as string;
        expect(sha).toMatch(/^[0-9a-f]{40}$/);
      }
    });
  });

  it('keeps all state under its key prefix', async () => {
    const store = await fresh();
    const j = await store.enqueue({ user: 'alice:with:colons', prompt: PROMPT, models: ['m/a'] }, T0);
    await store.updateSettings({ paused: false });
    await store.putAccount({
      name: 'alice',
      role: 'participant',
      passwordHash: 'h',
      createdAt: T0,
      passwordVersion: 1,
    });
    await store.putBlob('ns', 'k', 'v');
    const c = await store.claim({
      workerId: 'w',
      warmModels: [],
      leaseMs: 1000,
      now: T0,
      affinity: { window: 1, maxSkips: 0 },
    });
    expect(c?.id).toBe(j.id);
    await store.complete(j.id, 1, [], T0 + 10);
    let cursor = '0';
    const all: string[] = [];
    do {
      const [next, keys] = await store.client.scan(cursor, 'MATCH', `${store.keys.prefix}*`, 'COUNT', 1000);
      cursor = next;
      all.push(...keys);
    } while (cursor !== '0');
    expect(all.length).toBeGreaterThan(10);
    expect(all.every((key) => key.startsWith(store.keys.prefix))).toBe(true);
    await expectConsistent(store);
  });

  it('claims from many connections at once never hand out a job twice', async () => {
    const defaults = { ...DEFAULTS, limits: { maxPendingPerUser: 50, maxRunningPerUser: 3 } };
    const first = await fresh(defaults);
    const prefix = first.keys.prefix;
    const users = Array.from({ length: 30 }, (_, i) => `u${i}`);
    const models = ['m/a', 'm/b', 'm/c'];
    await Promise.all(
      Array.from({ length: 600 }, (_, i) =>
        first.enqueue({ user: users[i % users.length]!, prompt: PROMPT, models: [models[i % 3]!] }, T0 + i),
      ),
    );
    // Twelve stores, each with its own connection, on the same keyspace.
    const stores = [first];
    for (let i = 1; i < 12; i++) {
      const s = await openRedisStore({ url: redisUrl, keyPrefix: prefix, defaults });
      opened.push({ store: s, prefix });
      stores.push(s);
    }
    const claimed = await Promise.all(
      stores.flatMap((s, si) =>
        [0, 1].map(async (w) => {
          const mine: Job[] = [];
          for (;;) {
            const j = await s.claim({
              workerId: `w${si}-${w}`,
              warmModels: [models[(si + w) % 3]!],
              leaseMs: 60_000,
              now: T0 + 1000,
              affinity: { window: 4, maxSkips: 2 },
            });
            if (!j) return mine;
            mine.push(j);
            // Finish some so running limits and heads keep moving.
            if (mine.length % 2 === 0) await s.complete(j.id, j.attempts, [], T0 + 2000);
          }
        }),
      ),
    );
    const all = claimed.flat();
    expect(all).toHaveLength(600);
    expect(new Set(all.map((j) => j.id)).size).toBe(600);
    expect(all.every((j) => j.attempts === 1)).toBe(true);
    const counts = await first.countByStatus();
    expect(counts.pending).toBe(0);
    expect(counts.running + counts.completed).toBe(600);
    await expectConsistent(first);
  });

  it('stays consistent through a mixed random workload', async () => {
    const store = await fresh({ ...DEFAULTS, limits: { maxPendingPerUser: 6, maxRunningPerUser: 2 } });
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const modes = ['fifo', 'round_robin', 'priority'] as const;
    const prios = ['instructor', 'high', 'normal', 'low'] as const;
    let now = T0;
    for (let step = 0; step < 400; step++) {
      now += 100;
      const op = rnd(10);
      const live = (await store.listJobs({ status: ['pending', 'running'], limit: 500 })).jobs;
      const any = live[rnd(Math.max(1, live.length))];
      if (op <= 2) {
        await store
          .enqueue(
            {
              user: `u${rnd(5)}`,
              prompt: PROMPT,
              priority: prios[rnd(4)]!,
              front: rnd(8) === 0,
              models: [`m${rnd(3)}`],
            },
            now,
          )
          .catch(() => null);
      } else if (op <= 4) {
        await store.claim({
          workerId: `w${rnd(3)}`,
          warmModels: [`m${rnd(3)}`],
          leaseMs: 500 + rnd(1000),
          now,
          affinity: { window: 3, maxSkips: 1 },
        });
      } else if (op === 5 && any?.status === 'running') {
        await store.complete(any.id, any.attempts, [], now);
      } else if (op === 6 && any) {
        await store.cancel(any.id, now);
      } else if (op === 7 && any) {
        if (rnd(2)) await store.moveToFront(any.id);
        else await store.setPriority(any.id, prios[rnd(4)]!);
      } else if (op === 8) {
        await store.requeueExpired(now, 2);
      } else if (op === 9) {
        if (any?.status === 'running' && rnd(2)) await store.release(any.id, any.attempts, now);
        else await store.updateSettings({ mode: modes[rnd(3)] });
      }
      if (step % 50 === 49) await expectConsistent(store);
    }
    await store.pruneHistory(now - 10_000);
    for (let u = 0; u < 5; u++) if (u % 2) await store.deleteHistory(`u${u}`);
    await expectConsistent(store);
    // Per-user counters agree with the jobs that are left.
    const rows = await store.userCounters();
    for (const row of rows) {
      const c = await store.countByStatus(row.user);
      expect({ ...row, user: undefined, gpuMs: undefined, lastActivityAt: undefined }).toMatchObject(c);
    }
  });

  it("a claimer's cached heads follow changes made through other connections", async () => {
    const defaults = { ...DEFAULTS, limits: { maxPendingPerUser: 20, maxRunningPerUser: 5 } };
    const a = await fresh(defaults);
    const b = await openRedisStore({ url: redisUrl, keyPrefix: a.keys.prefix, defaults });
    opened.push({ store: b, prefix: a.keys.prefix });
    type Internals = { heads: { byUser: Map<string, { candidate: Candidate }> }; gather(): Promise<unknown> };
    /** The heads `s` works with after one more (delta) gather. */
    const cached = async (s: RedisStore) => {
      await (s as unknown as Internals).gather();
      return (s as unknown as Internals).heads.byUser;
    };
    const claim = (s: RedisStore, now: number) =>
      s.claim({ workerId: 'w', warmModels: [], leaseMs: 1000, now, affinity: { window: 1, maxSkips: 0 } });
    let now = T0;
    for (let i = 0; i < 30; i++) await a.enqueue({ user: `u${i % 6}`, prompt: PROMPT }, ++now);
    await claim(a, ++now);
    // Changes through b: a cancel, a move to the front, a priority change, claims, a mode switch.
    const pending = (await b.listJobs({ status: 'pending', order: 'asc', limit: 100 })).jobs;
    await b.cancel(pending[0]!.id, ++now);
    await b.moveToFront(pending[7]!.id);
    await b.setPriority(pending[3]!.id, 'high');
    await claim(b, ++now);
    await claim(b, ++now);
    for (const mode of ['round_robin', 'priority', 'fifo'] as const) {
      await b.updateSettings({ mode });
      const want = pending.length > 0 ? (await b.pendingInOrder(1))[0]?.id : undefined;
      const got = await claim(a, ++now);
      expect(got?.id).toBe(want);
      const key = mode === 'priority' ? a.keys.headsPrio : a.keys.headsSeq;
      const stored = Object.entries(await a.client.hgetall(key)).map(([u, text]) => [u, JSON.parse(text)[0]]);
      const mine = [...(await cached(a))].map(([u, h]) => [u, h.candidate.id]);
      expect(mine.sort()).toEqual(stored.sort());
    }
    // The keyspace is wiped under the running store: its cache must not survive.
    await deleteKeysWithPrefix(a.client, a.keys.prefix);
    expect(await claim(a, ++now)).toBeNull();
    const fresh1 = await b.enqueue({ user: 'new', prompt: PROMPT }, ++now);
    expect((await claim(a, ++now))?.id).toBe(fresh1.id);
    expect(await claim(a, now + 1)).toBeNull();
  });

  it('pendingInOrder matches serviceOrder when it loads only part of each queue', async () => {
    for (const mode of ['fifo', 'round_robin', 'priority'] as const) {
      const store = await fresh({
        ...DEFAULTS,
        mode,
        limits: { maxPendingPerUser: 200, maxRunningPerUser: 50 },
      });
      const prios = ['instructor', 'high', 'normal', 'low'] as const;
      let now = T0;
      // One heavy user (so fifo and priority need deep prefixes), many light ones.
      for (let i = 0; i < 120; i++) {
        await store.enqueue({ user: 'heavy', prompt: PROMPT, priority: prios[i % 3]! }, ++now);
        if (i % 4 === 0) {
          await store.enqueue(
            { user: `light${i % 24}`, prompt: PROMPT, priority: prios[(i / 4) % 4]!, front: i % 44 === 0 },
            ++now,
          );
        }
      }
      for (let i = 0; i < 7; i++) {
        await store.claim({
          workerId: 'w',
          warmModels: [],
          leaseMs: 1000,
          now: ++now,
          affinity: { window: 1, maxSkips: 0 },
        });
      }
      const pending = (await store.listJobs({ status: 'pending', limit: 500 })).jobs;
      const served = await store.client.hgetall(store.keys.lastServed);
      const users = new Map(
        Object.entries(served).map(([u, n]) => [u, { lastServed: Number(n), running: 0 }]),
      );
      const want = serviceOrder(mode, pending.map(toCandidate), users).map((c) => c.id);
      for (const n of [1, 2, 5, 17, 40, 100, 500]) {
        expect(
          (await store.pendingInOrder(n)).map((j) => j.id),
          `${mode}, n=${n}`,
        ).toEqual(want.slice(0, n));
      }
    }
  });

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
