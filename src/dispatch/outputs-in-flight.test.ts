import { describe, expect, it } from 'vitest';
import { OutputsInFlight } from './outputs-in-flight.js';

const KEY = 'alice/output/bar_00001_.png';

/** Whether `p` has settled by the time the timers and I/O queued now have run. */
async function settledSoon(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('outputs announced before they are stored', () => {
  it('nothing announced under a name: no wait at all', async () => {
    const f = new OutputsInFlight();
    await expect(f.wait(KEY)).resolves.toBe(false);
  });

  it('a waiter wakes the moment the upload stores the file, and only then', async () => {
    const f = new OutputsInFlight();
    f.expect('job-1', [KEY, 'alice/output/bar_00002_.png']);
    const waiting = f.wait(KEY);
    expect(await settledSoon(waiting)).toBe(false);
    f.stored('alice/output/bar_00002_.png');
    expect(await settledSoon(waiting)).toBe(false);
    f.stored(KEY);
    await expect(waiting).resolves.toBe(true);
    expect(f.size).toBe(0);
  });

  it('a job that ends without storing it wakes its waiters (they then answer 404)', async () => {
    const f = new OutputsInFlight();
    f.expect('job-1', [KEY]);
    f.expect('job-2', ['bob/output/x.png']);
    const waiting = f.wait(KEY);
    f.settled('job-1');
    await expect(waiting).resolves.toBe(true);
    await expect(f.wait(KEY)).resolves.toBe(false);
    expect(f.size).toBe(1);
  });

  it('a client that goes away stops waiting; the bound ends a wait for an upload that never comes', async () => {
    const f = new OutputsInFlight();
    f.expect('job-1', [KEY]);
    const gone = new AbortController();
    const waiting = f.wait(KEY, 60_000, gone.signal);
    gone.abort();
    await expect(waiting).resolves.toBe(true);
    const t0 = performance.now();
    await expect(f.wait(KEY, 30)).resolves.toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it('an entry nobody settled is forgotten after ten minutes', async () => {
    let now = 0;
    const f = new OutputsInFlight(() => now);
    f.expect('job-1', [KEY]);
    now = 10 * 60_000 + 1;
    await expect(f.wait(KEY)).resolves.toBe(false);
    expect(f.size).toBe(0);
  });

  it('bytes that arrived wake the waiters and are in hand until stored; a failed store drops them', async () => {
    const f = new OutputsInFlight(() => 1234);
    f.expect('job-1', [KEY]);
    const waiting = f.wait(KEY);
    expect(f.inHand(KEY)).toBeUndefined();
    f.arrived(KEY, Buffer.from('png'));
    await expect(waiting).resolves.toBe(true);
    expect(f.inHand(KEY)).toEqual({ bytes: Buffer.from('png'), at: 1234 });
    // In hand: nothing to wait for.
    await expect(f.wait(KEY)).resolves.toBe(false);
    f.notStored(KEY);
    expect(f.inHand(KEY)).toBeUndefined();
    // Still announced: the agent may upload it again, and a /view waits for that.
    expect(await settledSoon(f.wait(KEY))).toBe(false);
    f.arrived(KEY, Buffer.from('png again'));
    f.stored(KEY);
    expect(f.inHand(KEY)).toBeUndefined();
    expect(f.size).toBe(0);
  });

  it('bytes of a file nobody announced are not kept', () => {
    const f = new OutputsInFlight();
    f.arrived(KEY, Buffer.from('png'));
    expect(f.inHand(KEY)).toBeUndefined();
    expect(f.size).toBe(0);
  });
});
