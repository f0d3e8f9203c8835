import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { BcryptPool } from './bcrypt-pool.js';

const HASH = bcrypt.hashSync('right', 4);
let pool: BcryptPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe.each([0, 1, 2])('BcryptPool with %i threads', (threads) => {
  it('checks and hashes passwords, never more at once than it has threads', async () => {
    pool = new BcryptPool({ threads, maxQueued: 100, rounds: 4 });
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, pool!.stats().running)), 1);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => pool!.compare(i % 3 === 0 ? 'right' : 'wrong', HASH)),
    );
    clearInterval(watch);
    expect(results.filter(Boolean)).toHaveLength(4);
    expect(peak).toBeLessThanOrEqual(Math.max(1, threads));
    const hash = await pool.hash('new-password');
    expect(bcrypt.compareSync('new-password', hash)).toBe(true);
    expect(pool.stats()).toMatchObject({ compares: 12, hashes: 1, refused: 0, running: 0, queued: 0 });
  });

  it('refuses checks beyond the queue with LOGIN_BUSY, but never a new hash', async () => {
    pool = new BcryptPool({ threads, maxQueued: 2, rounds: 4 });
    const all = Array.from({ length: 10 }, () =>
      pool!.compare('wrong', HASH).then(
        () => 'checked',
        (err: unknown) => (err instanceof AppError ? err.code : 'other'),
      ),
    );
    const hashes = Array.from({ length: 5 }, () => pool!.hash('x'));
    const outcomes = await Promise.all(all);
    expect(outcomes.filter((o) => o === 'LOGIN_BUSY').length).toBeGreaterThanOrEqual(
      10 - 2 - Math.max(1, threads),
    );
    expect(outcomes.filter((o) => o === 'other')).toEqual([]);
    expect(await Promise.all(hashes)).toHaveLength(5);
  });
});
