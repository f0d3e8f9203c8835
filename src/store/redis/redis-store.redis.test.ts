import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { serviceOrder, type Candidate } from '../../scheduler/policy.js';
import { runStoreConformance } from '../store.conformance.js';
import type { Job, QueueSettings } from '../types.js';
import { loadLuaScripts } from './lua-scripts.js';
import { openRedisStore, type RedisStore } from './redis-store.js';
import {
  DEFAULTS,
  PROMPT,
  T0,
  deleteKeysWithPrefix,
  expectConsistent,
  toCandidate,
  uniquePrefix,
} from '../../../test/support/redis-store-kit.js';

const redisUrl = inject('redisUrl');

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
    // The heads cache lives in the store's claimer (claim.ts).
    type Internals = { heads: { byUser: Map<string, { candidate: Candidate }> }; gather(): Promise<unknown> };
    /** The heads `s` works with after one more (delta) gather. */
    const cached = async (s: RedisStore) => {
      const claimer = (s as unknown as { claimer: Internals }).claimer;
      await claimer.gather();
      return claimer.heads.byUser;
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
});
