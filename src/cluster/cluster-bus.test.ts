import { describe, expect, it } from 'vitest';
import { LocalClusterBus, MemoryClusterHub } from './cluster-bus.js';

describe('cluster bus (in-process)', () => {
  it('alone, publishing reaches no one and every lease and once-key is ours', async () => {
    const bus = new LocalClusterBus('solo');
    const got: unknown[] = [];
    bus.subscribe('t', (m) => got.push(m));
    await bus.publish('t', { a: 1 });
    expect(got).toEqual([]);
    expect(bus.shared).toBe(false);
    expect(await bus.holdLease('backup', 1000)).toBe(true);
    expect(await bus.once('alert:x', 1000)).toBe(true);
  });

  it('joined to a hub, a message reaches every other process once, as JSON, not the sender', async () => {
    const hub = new MemoryClusterHub();
    const [a, b, c] = [hub.join('a'), hub.join('b'), hub.join('c')];
    const seen: string[] = [];
    for (const bus of [a, b, c]) {
      bus.subscribe('queue', (m, from) => seen.push(`${bus.processId}<-${from}:${JSON.stringify(m)}`));
    }
    await a.publish('queue', { at: new Date(0) });
    expect(seen.sort()).toEqual([
      'b<-a:{"at":"1970-01-01T00:00:00.000Z"}',
      'c<-a:{"at":"1970-01-01T00:00:00.000Z"}',
    ]);
  });

  it('a lease has one holder until it lapses or is released; once-keys have one winner per ttl', async () => {
    let t = 0;
    const hub = new MemoryClusterHub(() => t);
    const [a, b] = [hub.join('a'), hub.join('b')];
    expect(await a.holdLease('backup', 100)).toBe(true);
    expect(await b.holdLease('backup', 100)).toBe(false);
    t = 50;
    expect(await a.holdLease('backup', 100)).toBe(true); // renewed until 150
    t = 120;
    expect(await b.holdLease('backup', 100)).toBe(false);
    t = 151;
    expect(await b.holdLease('backup', 100)).toBe(true); // a died: b takes over
    await b.releaseLease('backup');
    expect(await a.holdLease('backup', 100)).toBe(true);

    expect(await a.once('alert', 100)).toBe(true);
    expect(await b.once('alert', 100)).toBe(false);
    t = 300;
    expect(await b.once('alert', 100)).toBe(true);
  });
});
