/** Logout revocations on the Redis backend: seen by every process sharing the store. */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openRedisStore, type RedisStore } from '../store/redis/redis-store.js';
import { SessionRevocations } from './session-revocations.js';

const redisUrl = inject('redisUrl');
const defaults = {
  mode: 'round_robin' as const,
  paused: false,
  limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
  userLimits: {},
};

describe('SessionRevocations on Redis', () => {
  let a: RedisStore;
  let b: RedisStore;

  beforeAll(async () => {
    const keyPrefix = `test:revocations:${process.pid}:${Date.now().toString(36)}:`;
    a = await openRedisStore({ url: redisUrl, keyPrefix, defaults, name: 'test-revocations-a' });
    b = await openRedisStore({ url: redisUrl, keyPrefix, defaults, name: 'test-revocations-b' });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('a logout on one process is seen by another, and expired entries are dropped', async () => {
    const now = 2_000_000_000;
    const claims = (e: number, s: string) => ({ u: 'alice', v: 1, e, s, c: 1 });
    await new SessionRevocations(a).revoke(claims(now + 10, 'aaaaaaaaaaaaaaaaaaaaaa'), now);
    const other = new SessionRevocations(b);
    expect(await other.isRevoked(claims(now + 10, 'aaaaaaaaaaaaaaaaaaaaaa'))).toBe(true);
    expect(await other.isRevoked(claims(now + 10, 'bbbbbbbbbbbbbbbbbbbbbb'))).toBe(false);
    expect(await other.prune(now + 11)).toBe(1);
    expect(await other.isRevoked(claims(now + 10, 'aaaaaaaaaaaaaaaaaaaaaa'))).toBe(false);
  });
});
