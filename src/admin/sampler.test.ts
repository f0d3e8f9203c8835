import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import type { WorkerEntry, WorkerRegistry } from '../dispatch/worker-registry.js';
import { ConnectionTracker, classifySocketPath } from './connection-tracker.js';
import { Sampler } from './sampler.js';

const PROMPT = { '1': { class_type: 'EmptyImage', inputs: {} } };

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A registry stand-in: workers whose held jobs are running or not, as the test says. */
function fakeWorkers(state: Record<string, boolean>): WorkerRegistry {
  return {
    online: () =>
      Object.entries(state).map(
        ([id, running]) =>
          ({ id, held: new Map(running ? [['j', { state: 'running' }]] : []) }) as unknown as WorkerEntry,
      ),
  } as unknown as WorkerRegistry;
}

describe('Sampler', () => {
  it('takes one point per interval: depth, oldest wait, average wait of started jobs, busy share', async () => {
    h = await startHarness();
    let now = 1_000_000;
    const busy: Record<string, boolean> = { 'a:gpu1': true, 'a:gpu2': false };
    const s = new Sampler(
      { store: h.services.store, queue: h.services.queue, workers: fakeWorkers(busy) },
      { clock: () => now },
    );
    const { queue } = h.services;
    await queue.enqueue({ user: 'alice', prompt: PROMPT });
    await queue.enqueue({ user: 'bob', prompt: PROMPT });
    s.start(); // ticks once; its timers (1 s, 10 s) do not fire before the test ends
    s.tick();
    busy['a:gpu2'] = true;
    s.tick();
    s.tick();
    busy['a:gpu1'] = false;
    s.tick();
    await queue.claim('a:gpu1', []);
    now = Date.now() + 30_000;
    const p = await s.sample();
    // 5 ticks (start() ticked once): gpu1 running in the first 4, gpu2 in the last 3.
    expect(p).toMatchObject({ t: now, pending: 1, running: 1, busy: { 'a:gpu1': 0.8, 'a:gpu2': 0.6 } });
    expect(p.waitMax).toBeGreaterThanOrEqual(30);
    expect(p.waitAvg).not.toBeNull();
    const q = await s.sample();
    expect(q.waitAvg).toBeNull();
    expect(s.series()).toEqual([p, q]);
    s.stop();
  });

  it('keeps only the last hours', async () => {
    h = await startHarness();
    const s = new Sampler(
      { store: h.services.store, queue: h.services.queue, workers: fakeWorkers({}) },
      { intervalMs: 10_000, keepMs: 30_000 },
    );
    for (let i = 0; i < 5; i++) await s.sample();
    expect(s.series()).toHaveLength(3);
  });
});

describe('ConnectionTracker', () => {
  it('classifies WebSocket paths', () => {
    expect(classifySocketPath('/worker/v1/ws')).toEqual({ kind: 'worker', user: null });
    expect(classifySocketPath('/admin/api/live')).toEqual({ kind: 'admin', user: null });
    expect(classifySocketPath('/user003/ws?clientId=abc')).toEqual({ kind: 'participant', user: 'user003' });
    expect(classifySocketPath('/user003/api/ws')).toEqual({ kind: 'participant', user: 'user003' });
    expect(classifySocketPath('/Bad User/ws')).toEqual({ kind: 'other', user: null });
  });

  it('counts tabs per user until they close', () => {
    const t = new ConnectionTracker();
    const closers: (() => void)[] = [];
    const socket = () => ({ once: (_e: 'close', l: () => void) => closers.push(l) });
    t.track('participant', 'alice', socket());
    t.track('participant', 'alice', socket());
    t.track('worker', null, socket());
    expect(t.tabsOf('alice')).toBe(2);
    expect(t.onlineUsers()).toEqual(['alice']);
    closers[0]!();
    closers[1]!();
    closers[2]!();
    expect(t.onlineUsers()).toEqual([]);
    expect(t.clients()).toEqual({ participant: 0, worker: 0, admin: 0, other: 0 });
  });
});
