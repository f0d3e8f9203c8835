/**
 * The lease sweeper and history retention run on every process (each QueueService has its own
 * timer): on one Redis they are atomic store operations, so a lapsed job is requeued once (one
 * attempt used, one `requeued` event across all processes) and history is pruned once.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { QueueService, type QueueEvent } from '../scheduler/queue-service.js';
import { openRedisStore, type RedisStore } from '../store/redis/redis-store.js';
import { modelFreePrompt } from '../../test/support/prompts.js';

const redisUrl = inject('redisUrl');

describe('sweeper and retention on every process (Redis)', () => {
  const stores: RedisStore[] = [];
  let now = 1_800_000_000_000;
  let queues: QueueService[];

  beforeAll(async () => {
    const keyPrefix = `test:sweep:${process.pid}:${Math.random().toString(36).slice(2)}:`;
    const defaults = {
      mode: 'fifo' as const,
      paused: false,
      limits: { maxPendingPerUser: 100, maxRunningPerUser: 100 },
      userLimits: {},
    };
    for (let i = 0; i < 3; i++) {
      stores.push(await openRedisStore({ url: redisUrl, keyPrefix, defaults, name: `test-sweep-${i}` }));
    }
    queues = stores.map(
      (s) =>
        new QueueService(s, {
          leaseMs: 10_000,
          maxAttempts: 3,
          affinityWindow: 4,
          affinityMaxSkips: 4,
          historyRetentionMs: 86_400_000,
          clock: () => now,
        }),
    );
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  it('requeues each lapsed job once and prunes history once, however many processes sweep', async () => {
    const [a] = queues as [QueueService];
    const events: QueueEvent[] = [];
    for (const q of queues) q.on('event', (e) => events.push(e));
    const jobs = [];
    for (let i = 0; i < 20; i++) jobs.push(await a.enqueue({ user: `u${i % 4}`, prompt: modelFreePrompt() }));
    for (let i = 0; i < 20; i++) expect(await a.claim(`w:${i}`, [])).not.toBeNull();
    now += 11_000;
    await Promise.all(queues.map((q) => q.sweep()));
    const requeued = events.filter((e) => e.type === 'requeued');
    expect(requeued).toHaveLength(20);
    expect(new Set(requeued.map((e) => (e as { job: { id: string } }).job.id)).size).toBe(20);
    for (const j of jobs) {
      const got = (await stores[0]!.getJob(j.id))!;
      expect(got).toMatchObject({ status: 'pending', attempts: 1 });
    }

    // Finish them all, then let them age past the retention: pruned once, by whoever sweeps first.
    for (let i = 0; i < 20; i++) {
      const j = (await a.claim(`w:${i}`, []))!;
      await stores[0]!.complete(j.id, j.attempts, [], now);
    }
    now += 2 * 86_400_000;
    const pruned = await Promise.all(stores.map((s) => s.pruneHistory(now - 86_400_000)));
    expect(pruned.reduce((x, y) => x + y, 0)).toBe(20);
    for (const j of jobs) expect(await stores[1]!.getJob(j.id)).toBeNull();
  });
});
