/**
 * The WorkerDirectory's rules, with in-process buses (MemoryClusterHub) and real registries:
 * which entry wins when two processes know one worker, expiry after the TTL, goodbye, asking on
 * start and after a reconnect, open tabs, and the single-process bus publishing nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionTracker } from '../admin/connection-tracker.js';
import { WorkerRegistry, type HelloInfo, type WorkerLink } from '../dispatch/worker-registry.js';
import { LocalClusterBus, MemoryClusterHub } from './cluster-bus.js';
import { PRESENCE_TOPIC, WorkerDirectory } from './worker-directory.js';

const started: WorkerDirectory[] = [];
afterEach(async () => {
  for (const d of started.splice(0)) await d.stop(false);
});

function hello(name: string): HelloInfo {
  return {
    name,
    tokenName: 't',
    agentVersion: 'x',
    comfyuiVersion: 'y',
    devices: [],
    prefetch: 0,
    envHash: 'e',
    warmModels: [],
    healthy: true,
  };
}

function link(): WorkerLink & { open: boolean } {
  return { open: true, send: () => true, close() {} };
}

function connect(registry: WorkerRegistry, name: string, at: number): WorkerLink {
  const l = link();
  const { entry } = registry.connect(`t:${name}`, hello(name), l);
  entry.registered = true;
  entry.connectedAt = at;
  return l;
}

function node(hub: MemoryClusterHub, id: string, now: { t: number }, lostGraceMs = 20) {
  const registry = new WorkerRegistry({ retentionMs: 3_600_000, clock: () => now.t });
  const tracker = new ConnectionTracker();
  const directory = new WorkerDirectory(registry, hub.join(id), tracker, {
    refreshMs: 60_000, // the test publishes by hand
    ttlMs: 1000,
    minIntervalMs: 0,
    lostGraceMs,
    clock: () => now.t,
  });
  started.push(directory);
  return { registry, tracker, directory };
}

/** Processes A and B on one cluster bus and clock, their directories started. */
function twoProcesses() {
  const hub = new MemoryClusterHub();
  const now = { t: 1000 };
  const a = node(hub, 'A', now);
  const b = node(hub, 'B', now);
  a.directory.start();
  b.directory.start();
  return { hub, now, a, b };
}

describe('WorkerDirectory', () => {
  it('merges the other processes’ workers; a connected entry beats an offline one, then the newest', () => {
    const { a, b } = twoProcesses();
    // gpu1 was on B, went away, and is now on A.
    const l = connect(b.registry, 'gpu1', 100);
    b.registry.disconnect('t:gpu1', l);
    connect(a.registry, 'gpu1', 500);
    connect(b.registry, 'gpu2', 600);
    a.directory.publishNow();
    b.directory.publishNow();
    expect(a.directory.all().map((w) => [w.id, w.process ?? 'local', w.link !== null])).toEqual([
      ['t:gpu1', 'local', true],
      ['t:gpu2', 'B', true],
    ]);
    expect(b.directory.list().map((w) => [w.id, w.process, w.status])).toEqual([
      ['t:gpu1', 'A', 'idle'],
      ['t:gpu2', 'B', 'idle'],
    ]);
    expect(b.directory.online().map((w) => w.id)).toEqual(['t:gpu1', 't:gpu2']);
    expect(b.directory.processOf('t:gpu1')).toBe('A');
    expect(b.directory.processOf('t:nope')).toBeNull();
    // The remote entry cannot be written to: nothing is sent on its link.
    expect(b.directory.get('t:gpu1')!.link!.send({ type: 'drain', draining: true })).toBe(false);
  });

  it('forgets a silent process after the TTL, and one that says goodbye at once', async () => {
    const hub = new MemoryClusterHub();
    const now = { t: 1000 };
    const a = node(hub, 'A', now);
    const b = node(hub, 'B', now);
    const c = node(hub, 'C', now);
    for (const n of [a, b, c]) n.directory.start();
    connect(a.registry, 'gpu1', 900);
    connect(c.registry, 'gpu3', 900);
    a.directory.publishNow();
    c.directory.publishNow();
    expect(b.directory.all().map((w) => w.id)).toEqual(['t:gpu1', 't:gpu3']);
    now.t += 999;
    b.directory.expire();
    expect(b.directory.all()).toHaveLength(2);
    now.t += 2;
    c.directory.publishNow(); // C is alive, A is not
    b.directory.expire();
    expect(b.directory.all().map((w) => w.id)).toEqual(['t:gpu3']);
    await c.directory.stop();
    expect(b.directory.all()).toEqual([]);
  });

  it('a silent process’s workers that reconnect nowhere within the grace are `lost` (not drained ones)', async () => {
    const { now, a, b } = twoProcesses();
    connect(a.registry, 'gone', 900);
    connect(a.registry, 'drained', 900);
    a.registry.get('t:drained')!.draining = true;
    connect(a.registry, 'moved', 900);
    a.directory.publishNow();
    const lost: [string, string][] = [];
    b.directory.on('lost', (t) => lost.push([t.worker.id, t.from]));
    await a.directory.stop(false); // killed: no goodbye
    connect(b.registry, 'moved', 1500); // its agent came back here
    now.t += 2000;
    b.directory.expire();
    expect(b.directory.all().map((w) => w.id)).toEqual(['t:moved']);
    // A timer of the same length set after the directory's ones fires after them.
    await new Promise((r) => setTimeout(r, 20));
    expect(lost).toEqual([['t:gone', 'idle']]);
  });

  it('asks the others on start and after a reconnect instead of waiting for their refresh', () => {
    const hub = new MemoryClusterHub();
    const now = { t: 1000 };
    const a = node(hub, 'A', now);
    a.directory.start();
    connect(a.registry, 'gpu1', 900);
    const seen: unknown[] = [];
    const late = node(hub, 'B', now);
    // B starts: it asks, A answers (publishSoon with minIntervalMs 0 is a zero timer).
    late.directory.start();
    return new Promise<void>((resolve) =>
      setTimeout(() => {
        expect(late.directory.all().map((w) => w.id)).toEqual(['t:gpu1']);
        // A reconnect (resync) makes everyone publish again.
        const spy = hub.join('spy');
        spy.subscribe(PRESENCE_TOPIC, (m) => seen.push(m));
        hub.resyncAll();
        setTimeout(() => {
          expect(seen.filter((m) => (m as { t: string }).t === 'snap').length).toBeGreaterThanOrEqual(2);
          resolve();
        }, 20);
      }, 20),
    );
  });

  it('counts participants’ tabs open on other processes, and forgets them with their process', async () => {
    const { a, b } = twoProcesses();
    const close: (() => void)[] = [];
    const socket = { once: (_e: 'close', l: () => void) => close.push(l) };
    a.tracker.track('participant', 'alice', socket);
    a.tracker.track('participant', 'alice', socket);
    b.tracker.track('participant', 'bob', socket);
    a.directory.publishNow();
    b.directory.publishNow();
    expect(b.tracker.tabsOf('alice')).toBe(2);
    expect(b.tracker.onlineUsers()).toEqual(['alice', 'bob']);
    expect(b.tracker.localOnlineUsers()).toEqual(['bob']);
    expect(b.tracker.clients().participant).toBe(1);
    await a.directory.stop();
    expect(b.tracker.tabsOf('alice')).toBe(0);
  });

  it('with the single-process bus it is the local registry and publishes nothing', () => {
    const registry = new WorkerRegistry();
    const bus = new LocalClusterBus('solo');
    const published: unknown[] = [];
    bus.publish = (topic, m) => {
      published.push([topic, m]);
      return Promise.resolve();
    };
    const directory = new WorkerDirectory(registry, bus, new ConnectionTracker());
    directory.start();
    connect(registry, 'gpu1', 1);
    directory.publishNow();
    expect(published).toEqual([]);
    expect(directory.list()).toEqual(registry.list());
    expect(directory.list()[0]).not.toHaveProperty('process');
  });
});
