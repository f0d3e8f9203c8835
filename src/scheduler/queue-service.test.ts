/**
 * The lease sweeper around restarts and store trouble: what the control plane does so that a job a
 * worker still runs is not sent to another worker. Real SQLite store, controlled clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { JobStore } from '../store/types.js';
import { QueueService } from './queue-service.js';
import { AGENT_MAX_RECONNECT_MS } from '../worker/protocol.js';

const LEASE = 30_000;
const PROMPT = { '1': { class_type: 'EmptyImage', inputs: {} } };
let now = 1_700_000_000_000;
const stores: JobStore[] = [];
const queues: QueueService[] = [];

async function setup(): Promise<{ store: JobStore; queue: QueueService }> {
  const store = await openSqliteStore({
    path: ':memory:',
    defaults: {
      mode: 'fifo',
      paused: false,
      limits: { maxPendingPerUser: 10, maxRunningPerUser: 10 },
      userLimits: {},
    },
  });
  const queue = new QueueService(store, {
    leaseMs: LEASE,
    maxAttempts: 3,
    affinityWindow: 1,
    affinityMaxSkips: 0,
    historyRetentionMs: 0,
    sweepIntervalMs: 3_600_000, // the tests sweep by hand
    clock: () => now,
  });
  stores.push(store);
  queues.push(queue);
  return { store, queue };
}

afterEach(async () => {
  for (const q of queues.splice(0)) q.stop();
  for (const s of stores.splice(0)) await s.close();
});

describe('QueueService leases', () => {
  it('on start gives every running job a fresh lease, so a restart longer than the lease requeues nothing', async () => {
    const { store, queue } = await setup();
    const job = await queue.enqueue({ user: 'alice', prompt: PROMPT });
    expect((await queue.claim('w1', []))?.id).toBe(job.id);
    // The control plane was down for twice the lease.
    now += 2 * LEASE;
    queue.start();
    await queue.sweep();
    // A whole lease past the agents' longest reconnect back-off: an agent still backing off after
    // the outage reconnects and reports before anyone else may claim the job.
    expect(await store.getJob(job.id)).toMatchObject({
      status: 'running',
      leaseExpiresAt: now + LEASE + AGENT_MAX_RECONNECT_MS,
    });
    // A worker that never comes back loses it then.
    now += LEASE + AGENT_MAX_RECONNECT_MS;
    await queue.sweep();
    expect(await store.getJob(job.id)).toMatchObject({ status: 'pending', attempts: 1 });
  });

  it('after store trouble, renews what live workers hold before the first sweep that works again', async () => {
    const { store, queue } = await setup();
    const job = await queue.enqueue({ user: 'alice', prompt: PROMPT });
    await queue.claim('w1', []);
    const renew = store.renewLease.bind(store);
    let down = true;
    store.renewLease = (...args) =>
      down ? Promise.reject(new Error('Connection is closed.')) : renew(...args);
    await expect(queue.renewLease(job.id, 'w1', 1)).rejects.toThrow();
    const kept: string[] = [];
    queue.setLeaseKeeper(async () => {
      kept.push(job.id);
      expect(await queue.adopt(job.id, 'w1', 1)).toBe(true);
    });
    // The store is back after the lease ran out; the worker kept running the job.
    down = false;
    now += LEASE + 1;
    await queue.sweep();
    expect(kept).toEqual([job.id]);
    expect(await store.getJob(job.id)).toMatchObject({ status: 'running', workerId: 'w1', attempts: 1 });
    // Trouble over: the keeper is not asked again.
    await queue.sweep();
    expect(kept).toHaveLength(1);
  });

  it('adopt takes a lapsed job back for the worker still running it and tells the views', async () => {
    const { store, queue } = await setup();
    const job = await queue.enqueue({ user: 'alice', prompt: PROMPT });
    await queue.claim('w1', []);
    now += LEASE;
    await queue.sweep();
    expect((await store.getJob(job.id))?.status).toBe('pending');
    const events: string[] = [];
    queue.on('event', (e) => events.push(e.type));
    expect(await queue.adopt(job.id, 'w1', 1)).toBe(true);
    expect(events).toEqual(['claimed']);
    expect(await store.getJob(job.id)).toMatchObject({ status: 'running', workerId: 'w1', attempts: 1 });
  });
});
