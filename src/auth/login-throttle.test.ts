import { describe, expect, it } from 'vitest';
import { LoginThrottle } from './login-throttle.js';

function setup() {
  let now = 1_000_000;
  const t = new LoginThrottle({ maxFailures: 3, windowMs: 60_000, now: () => now });
  return { t, advance: (ms: number) => (now += ms) };
}

describe('LoginThrottle', () => {
  it('allows attempts until the failure limit, then asks to wait', () => {
    const { t } = setup();
    t.fail(['ip:a']);
    t.fail(['ip:a']);
    expect(t.retryAfter(['ip:a'])).toBe(0);
    t.fail(['ip:a']);
    expect(t.retryAfter(['ip:a'])).toBe(60);
  });

  it('locks a user name tried from many addresses', () => {
    const { t } = setup();
    for (const ip of ['1', '2', '3']) t.fail([`ip:${ip}`, 'user:bob']);
    expect(t.retryAfter(['ip:4', 'user:bob'])).toBe(60);
    expect(t.retryAfter(['ip:4', 'user:alice'])).toBe(0);
  });

  it('doubles the lockout for each failure after it, and lifts it in time', () => {
    const { t, advance } = setup();
    for (let i = 0; i < 3; i++) t.fail(['k']);
    advance(60_001);
    expect(t.retryAfter(['k'])).toBe(0);
    t.fail(['k']);
    expect(t.retryAfter(['k'])).toBe(120);
  });

  it('forgets a key after a successful login', () => {
    const { t } = setup();
    for (let i = 0; i < 3; i++) t.fail(['k']);
    t.succeed(['k']);
    expect(t.retryAfter(['k'])).toBe(0);
  });
});
