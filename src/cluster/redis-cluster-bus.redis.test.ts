/** The cluster bus on a real redis-server: what one process publishes, the others receive. */
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RedisClusterBus } from './redis-cluster-bus.js';
import { startRedisServer } from '../../test/support/redis-server.js';

const redisUrl = inject('redisUrl');
const open: RedisClusterBus[] = [];
const prefix = () => `test:cluster:${process.pid}:${Math.random().toString(36).slice(2)}:`;

async function bus(url: string, p: string, processId: string): Promise<RedisClusterBus> {
  const b = await RedisClusterBus.open({ url, prefix: p, processId });
  open.push(b);
  return b;
}

function until(cond: () => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - started > 10_000) reject(new Error('timed out'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

describe('RedisClusterBus', () => {
  it('delivers a topic message to the other processes, not back to the sender, and not across prefixes', async () => {
    const p = prefix();
    const [a, b, other] = [
      await bus(redisUrl, p, 'a'),
      await bus(redisUrl, p, 'b'),
      await bus(redisUrl, prefix(), 'x'),
    ];
    const got: string[] = [];
    a.subscribe('queue', (m, from) => got.push(`a<-${from}:${JSON.stringify(m)}`));
    b.subscribe('queue', (m, from) => got.push(`b<-${from}:${JSON.stringify(m)}`));
    other.subscribe('queue', (m, from) => got.push(`x<-${from}:${JSON.stringify(m)}`));
    // Subscriptions are asynchronous: publish until b hears, then check nothing else leaked.
    await new Promise((r) => setTimeout(r, 100));
    await a.publish('queue', { kind: 'enqueued', n: 1 });
    await until(() => got.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual(['b<-a:{"kind":"enqueued","n":1}']);
  });

  it('leases and once-keys have one winner across processes', async () => {
    const p = prefix();
    const [a, b] = [await bus(redisUrl, p, 'a'), await bus(redisUrl, p, 'b')];
    expect(await a.holdLease('backup', 5_000)).toBe(true);
    expect(await b.holdLease('backup', 5_000)).toBe(false);
    expect(await a.holdLease('backup', 5_000)).toBe(true);
    await b.releaseLease('backup'); // not b's: no effect
    expect(await b.holdLease('backup', 5_000)).toBe(false);
    await a.releaseLease('backup');
    expect(await b.holdLease('backup', 5_000)).toBe(true);

    expect(await a.holdLease('short', 50)).toBe(true);
    await new Promise((r) => setTimeout(r, 120));
    expect(await b.holdLease('short', 50)).toBe(true);

    const results = await Promise.all([a.once('alert:disk', 10_000), b.once('alert:disk', 10_000)]);
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('after Redis comes back, subscribers are told to resync and messages flow again', async () => {
    const server = await startRedisServer();
    try {
      const p = prefix();
      const [a, b] = [await bus(server.url, p, 'a'), await bus(server.url, p, 'b')];
      let resyncs = 0;
      const got: unknown[] = [];
      b.onResync(() => resyncs++);
      b.subscribe('t', (m) => got.push(m));
      await new Promise((r) => setTimeout(r, 100));
      const port = server.port;
      await server.kill9();
      const again = await startRedisServer({ port });
      try {
        await until(() => resyncs >= 1);
        await new Promise((r) => setTimeout(r, 200));
        await a.publish('t', 'after');
        await until(() => got.includes('after'));
      } finally {
        await Promise.all(open.splice(0).map((x) => x.close()));
        await again.stop();
      }
    } finally {
      await server.stop();
    }
  });
});
