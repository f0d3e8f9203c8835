/** The login throttle on Redis: several processes (limiters on their own connections) share it. */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Admission, LoginLimits, LoginPermit } from './login-throttle.js';
import { RedisLoginLimiter } from './redis-login-limiter.js';

const redisUrl = inject('redisUrl');
const limits: LoginLimits = {
  pair: { maxFailures: 5, windowMs: 60_000 },
  address: { maxFailures: 100, windowMs: 900_000 },
  account: { maxFailures: 30, windowMs: 180_000 },
  trustedPairMs: 3_600_000,
};
const refused = (a: Admission) => (a.ok ? null : { scope: a.scope, retryAfter: a.retryAfter });

describe('RedisLoginLimiter', () => {
  const clients: Redis[] = [];
  let n = 0;
  let now = 1_000_000;

  /** Three "processes": each its own connection and limiter, one prefix, one clock. */
  function processes(count = 3) {
    const prefix = `test:login:${process.pid}:${Date.now().toString(36)}:${n++}:`;
    const limiters = Array.from({ length: count }, () => {
      const c = new Redis(redisUrl);
      clients.push(c);
      return new RedisLoginLimiter(c, prefix, limits, () => now);
    });
    return { prefix, limiters };
  }
  async function permit(l: RedisLoginLimiter, address: string, account: string): Promise<LoginPermit> {
    const a = await l.admit({ address, account });
    if (!a.ok) throw new Error(`refused: ${a.scope} ${a.retryAfter}s`);
    return a.permit;
  }

  beforeAll(() => {
    now = 1_000_000;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.quit()));
  });

  it('throttles a failure storm spread over three processes as if it hit one', async () => {
    const { limiters } = processes();
    // 5 failures for one pair, one from each process in turn.
    for (let i = 0; i < 5; i++) await (await permit(limiters[i % 3]!, '10.0.0.1', 'bob')).fail();
    for (const l of limiters) {
      expect(refused(await l.admit({ address: '10.0.0.1', account: 'bob' }))).toEqual({
        scope: 'pair',
        retryAfter: 12,
      });
    }
    // Someone else at the same address is not slowed, on any process.
    expect((await limiters[2]!.admit({ address: '10.0.0.1', account: 'alice' })).ok).toBe(true);
    now += 12_000;
    expect((await limiters[1]!.admit({ address: '10.0.0.1', account: 'bob' })).ok).toBe(true);
  });

  it('admits a concurrent burst over all processes only up to the limit (in-flight counted)', async () => {
    const { limiters } = processes();
    const results = await Promise.all(
      Array.from({ length: 90 }, (_, i) => limiters[i % 3]!.admit({ address: '10.0.0.2', account: 'carol' })),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(5);
  });

  it('forgets a released attempt; a success empties the pair and trusts it past the account ceiling', async () => {
    const { limiters } = processes();
    const [a, b, c] = limiters as [RedisLoginLimiter, RedisLoginLimiter, RedisLoginLimiter];
    for (let i = 0; i < 20; i++) await (await permit(a, '10.0.0.3', 'dan')).release();
    await (await permit(b, '10.0.0.3', 'dan')).release();
    const p = await permit(c, '10.9.9.9', 'dan');
    await p.succeed();
    // Guessers elsewhere fill dan's account bucket.
    for (let ip = 0; ip < 6; ip++)
      for (let i = 0; i < 5; i++) await (await permit(limiters[i % 3]!, `10.1.0.${ip}`, 'dan')).fail();
    expect(refused(await a.admit({ address: '10.2.0.1', account: 'dan' }))).toMatchObject({
      scope: 'account',
    });
    // Where dan signed in, on any process: not slowed.
    expect((await b.admit({ address: '10.9.9.9', account: 'dan' })).ok).toBe(true);
  });

  it('charges a busy refusal to the address only', async () => {
    const { limiters } = processes();
    for (let i = 0; i < 100; i++) await (await permit(limiters[i % 3]!, '10.0.0.4', 'erin')).busy();
    expect(refused(await limiters[0]!.admit({ address: '10.0.0.4', account: 'frank' }))).toEqual({
      scope: 'address',
      retryAfter: 9,
    });
    expect((await limiters[1]!.admit({ address: '10.0.0.5', account: 'erin' })).ok).toBe(true);
  });

  it('gives every key it writes a TTL (bounded memory) and a dead process does not hold a place', async () => {
    const { prefix, limiters } = processes(1);
    const l = limiters[0]!;
    for (let i = 0; i < 4; i++) await (await permit(l, `10.3.0.${i}`, `name${i}`)).fail();
    // Admitted but never finished (its process was killed): lapses after a minute.
    for (let i = 0; i < 5; i++) await l.admit({ address: '10.4.0.1', account: 'gina' });
    expect((await l.admit({ address: '10.4.0.1', account: 'gina' })).ok).toBe(false);
    now += 61_000;
    expect((await l.admit({ address: '10.4.0.1', account: 'gina' })).ok).toBe(true);
    const keys = await clients.at(-1)!.keys(`${prefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) {
      const ttl = await clients.at(-1)!.pttl(k);
      expect(ttl, k).toBeGreaterThan(0);
      expect(ttl, k).toBeLessThanOrEqual(900_000);
    }
  });
});
