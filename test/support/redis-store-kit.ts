/**
 * Helpers for the Redis store's tests (not used by the server): default settings, unique key
 * prefixes and their cleanup, and a check of every derived structure against the job hashes.
 */
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { JOB_STATUSES, type ComfyPrompt, type Job, type QueueSettings } from '../../src/store/types.js';
import type { RedisStore } from '../../src/store/redis/redis-store.js';

export const DEFAULTS: QueueSettings = {
  mode: 'round_robin',
  paused: false,
  limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
  userLimits: {},
};
export const T0 = 1_700_000_000_000;
export const PROMPT: ComfyPrompt = { '1': { class_type: 'KSampler', inputs: { seed: 1 } } };

// One mapping for every suite (the conformance kit's).
export { toCandidate } from '../../src/store/kit.conformance.js';

let prefixCounter = 0;
export function uniquePrefix(tag: string): string {
  return `test:${tag}:${process.pid}:${Date.now().toString(36)}:${++prefixCounter}:`;
}

/** Deletes every key under the prefix (glob characters in it escaped). */
export async function deleteKeysWithPrefix(client: Redis, prefix: string): Promise<number> {
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

/**
 * Checks every derived structure against the job hashes: indexes, per-user pending sets and
 * heads, running counts, leases, users. Cheap enough for the small workloads below.
 */
export async function expectConsistent(store: RedisStore): Promise<void> {
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
