import { describe, expect, it } from 'vitest';
import { addressKey, MemoryLoginLimiter, type Admission, type LoginPermit } from './login-throttle.js';

function setup() {
  let now = 1_000_000;
  const limiter = new MemoryLoginLimiter(
    {
      pair: { maxFailures: 5, windowMs: 60_000 },
      address: { maxFailures: 100, windowMs: 900_000 },
      account: { maxFailures: 30, windowMs: 180_000 },
      trustedPairMs: 3_600_000,
    },
    () => now,
  );
  const admit = (address: string, account: string) => limiter.admit({ address, account });
  const permit = async (address: string, account: string): Promise<LoginPermit> => {
    const a = await admit(address, account);
    if (!a.ok) throw new Error(`refused: ${a.scope} ${a.retryAfter}s`);
    return a.permit;
  };
  const failTimes = async (n: number, address: string, account: string) => {
    for (let i = 0; i < n; i++) await (await permit(address, account)).fail();
  };
  return { limiter, admit, permit, failTimes, advance: (ms: number) => (now += ms) };
}

const refused = (a: Admission) => (a.ok ? null : { scope: a.scope, retryAfter: a.retryAfter });

describe('MemoryLoginLimiter', () => {
  it('admits a burst only up to the limit, counting attempts still in flight', async () => {
    const { admit } = setup();
    const results = await Promise.all(Array.from({ length: 300 }, () => admit('10.0.0.1', 'bob')));
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    expect(refused(results[5]!)).toEqual({ scope: 'pair', retryAfter: 1 });
  });

  it('releases a reservation without counting a failure', async () => {
    const { admit, permit } = setup();
    for (let i = 0; i < 20; i++) await (await permit('10.0.0.1', 'bob')).release();
    expect((await admit('10.0.0.1', 'bob')).ok).toBe(true);
  });

  it('charges a login refused as busy to the address only', async () => {
    const { admit, permit } = setup();
    for (let i = 0; i < 100; i++) await (await permit('10.0.0.1', 'bob')).busy();
    expect(refused(await admit('10.0.0.1', 'alice'))).toEqual({ scope: 'address', retryAfter: 9 });
    // bob was not charged: from another address his pair and account are untouched.
    expect((await admit('10.0.0.2', 'bob')).ok).toBe(true);
  });

  it('slows one account at one address after the free failures, briefly, and forgets them', async () => {
    const { admit, failTimes, advance } = setup();
    await failTimes(5, '10.0.0.1', 'bob');
    expect(refused(await admit('10.0.0.1', 'bob'))).toEqual({ scope: 'pair', retryAfter: 12 });
    advance(12_000);
    expect((await admit('10.0.0.1', 'bob')).ok).toBe(true);
  });

  it('never refuses other people at the same address because one of them mistyped', async () => {
    const { admit, failTimes } = setup();
    await failTimes(5, '10.0.0.1', 'bob');
    expect((await admit('10.0.0.1', 'alice')).ok).toBe(true);
  });

  it('lets a room behind one NAT type many passwords wrong before the address ceiling', async () => {
    const { admit, failTimes } = setup();
    for (let u = 0; u < 20; u++) await failTimes(4, '10.0.0.1', `user${u}`);
    const a = await admit('10.0.0.1', 'user20');
    expect(a.ok).toBe(true);
    if (a.ok) await a.permit.release();
    for (let u = 20; u < 40; u++) await failTimes(1, '10.0.0.1', `user${u}`);
    expect(refused(await admit('10.0.0.1', 'user99'))).toEqual({ scope: 'address', retryAfter: 9 });
  });

  it('empties the pair after a correct login', async () => {
    const { admit, permit, failTimes } = setup();
    await failTimes(4, '10.0.0.1', 'bob');
    await (await permit('10.0.0.1', 'bob')).succeed();
    await failTimes(4, '10.0.0.1', 'bob');
    expect((await admit('10.0.0.1', 'bob')).ok).toBe(true);
  });

  it('slows guessing of one account from many addresses, without locking out where it signed in', async () => {
    const { admit, permit, failTimes, advance } = setup();
    await (await permit('10.9.9.9', 'alice')).succeed();
    for (let ip = 0; ip < 6; ip++) await failTimes(5, `10.1.0.${ip}`, 'alice');
    expect(refused(await admit('10.2.0.1', 'alice'))).toEqual({ scope: 'account', retryAfter: 6 });
    // Alice's own address signed in before: the guessers' ceiling does not apply to it.
    expect((await admit('10.9.9.9', 'alice')).ok).toBe(true);
    // Elsewhere it only slows: one attempt every 6 s.
    advance(6_000);
    expect((await admit('10.2.0.1', 'alice')).ok).toBe(true);
  });

  it('gives a browser that signed in before its own bucket, outside the account ceiling', async () => {
    const { limiter, admit, failTimes } = setup();
    await failTimes(5, '10.0.0.1', 'alice');
    for (let ip = 0; ip < 5; ip++) await failTimes(5, `10.1.0.${ip}`, 'alice');
    expect(refused(await admit('10.0.0.1', 'alice'))).toMatchObject({ scope: 'pair' });
    expect(refused(await admit('10.2.0.1', 'alice'))).toMatchObject({ scope: 'account' });
    const own = await limiter.admit({ address: '10.0.0.1', account: 'alice', device: 'dev1' });
    expect(own.ok).toBe(true);
  });

  it('keeps a guesser at one address below the account ceiling', async () => {
    const { admit, failTimes, advance } = setup();
    // One attempt per 12 s from one address (the pair rate) for an hour...
    await failTimes(5, '10.1.0.1', 'alice');
    for (let i = 0; i < 300; i++) {
      advance(12_000);
      await failTimes(1, '10.1.0.1', 'alice');
    }
    // ...never fills the account bucket (it drains one per 6 s): alice elsewhere is not slowed.
    expect((await admit('10.3.0.1', 'alice')).ok).toBe(true);
  });

  it('keeps its memory bounded under a flood of distinct addresses and names', async () => {
    const { limiter, failTimes } = setup();
    for (let i = 0; i < 60_000; i++) {
      await failTimes(1, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `name${i}`);
    }
    expect(limiter.size).toBeLessThanOrEqual(50_001 + 3);
  });
});

describe('addressKey', () => {
  it('keeps IPv4, unwraps IPv4-mapped IPv6 and groups IPv6 by /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});
