/** The event relay between simulated processes (MemoryClusterHub), over one shared SQLite store. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load-config.js';
import { JobEventBus, type JobBusMessage } from '../dispatch/job-event-bus.js';
import { QueueService, type QueueEvent } from '../scheduler/queue-service.js';
import { defaultSettings } from '../store/index.js';
import { openSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { JobStore } from '../store/types.js';
import { LocalClusterBus, MemoryClusterHub } from './cluster-bus.js';
import { openEventRelay } from './events.js';
import { MemoryEventLog, wanted } from './event-log.js';
import { EventRelay, type Delivery } from './event-relay.js';

const logger = pino({ level: 'silent' });
const PROMPT = {
  '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
};

interface Proc {
  id: string;
  queue: QueueService;
  bus: JobEventBus;
  relay: EventRelay;
  queueEvents: QueueEvent[];
  busMessages: JobBusMessage[];
  deliveries: Delivery[];
}

let dir: string;
let store: JobStore;
let procs: Proc[];
let log: MemoryEventLog;
let hub: MemoryClusterHub;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-relay-'));
  const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: 'silent' });
  store = await openSqliteStore({ path: join(dir, 'state.db'), defaults: defaultSettings(config) });
  hub = new MemoryClusterHub();
  log = new MemoryEventLog();
  procs = ['a', 'b', 'c'].map((id) => {
    const queue = new QueueService(store, {
      leaseMs: 30_000,
      maxAttempts: 3,
      affinityWindow: 1,
      affinityMaxSkips: 0,
      historyRetentionMs: 0,
    });
    const bus = new JobEventBus();
    const relay = new EventRelay({ cluster: hub.join(id), queue, bus, log, logger });
    const p: Proc = { id, queue, bus, relay, queueEvents: [], busMessages: [], deliveries: [] };
    queue.on('event', (e) => p.queueEvents.push(e));
    bus.subscribeAll((m) => p.busMessages.push(m));
    relay.onDelivery((d) => p.deliveries.push(d));
    return p;
  });
});

afterEach(async () => {
  for (const p of procs) await p.relay.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const settle = async () => {
  for (const p of procs) await p.relay.flushed();
};

describe('EventRelay', () => {
  it('queue events reach every other process once, marked remote, without the prompt', async () => {
    const [a, b, c] = procs as [Proc, Proc, Proc];
    const job = await b.queue.enqueue({
      user: 'alice',
      prompt: PROMPT,
      metadata: { client_id: 'tab1', extra_data: { extra_pnginfo: { workflow: 'big' } } },
    });
    await b.queue.updateSettings({ paused: true });
    await settle();
    expect(b.queueEvents.map((e) => [e.type, e.origin])).toEqual([
      ['enqueued', undefined],
      ['settings', undefined],
    ]);
    for (const p of [a, c]) {
      expect(p.queueEvents.map((e) => [e.type, e.origin])).toEqual([
        ['enqueued', 'remote'],
        ['settings', 'remote'],
      ]);
      const e = p.queueEvents[0] as Extract<QueueEvent, { type: 'enqueued' }>;
      expect(e.job).toMatchObject({ id: job.id, user: 'alice', status: 'pending', prompt: {} });
      expect(e.job.metadata).toEqual({ client_id: 'tab1' });
      expect(p.queueEvents[1]).toMatchObject({ settings: { paused: true } });
    }
  });

  it("a worker's events reach every process in order with their log ids; previews as bytes; status stays local", async () => {
    const [a, b, c] = procs as [Proc, Proc, Proc];
    const base = { jobId: 'j1', user: 'alice', workerId: 'gpu1' };
    const sent: JobBusMessage[] = [
      { kind: 'event', ...base, event: { type: 'execution_start', data: { prompt_id: 'x' } } },
      ...[1, 2, 3].map((i): JobBusMessage => ({
        kind: 'event',
        ...base,
        event: { type: 'progress', data: { value: i, max: 3 } },
      })),
      { kind: 'preview', ...base, preview: Buffer.from([0, 0, 0, 1, 0xff, 0xd8, 0, 7]) },
      { kind: 'event', ...base, event: { type: 'execution_success', data: {} } },
      { kind: 'status', ...base, status: 'started', jobStatus: 'running', workerId: 'gpu1', job: null },
      { kind: 'worker_done', ...base },
    ];
    for (const m of sent) a.bus.publish(m);
    a.bus.publishEnv({ hash: 'h1', workerId: 'gpu1' });
    await settle();

    const crossing = sent.filter((m) => m.kind !== 'status');
    const shape = (ds: Delivery[]) =>
      ds.map((d) => ({ ...d.message, from: d.from, logged: d.logId !== null }));
    const expected = crossing.map((m) => ({ ...m, from: 'a', logged: m.kind === 'event' }));
    // The holder's own hub gets them through the relay too (with ids), in the order sent.
    expect(shape(a.deliveries)).toEqual(expected);
    expect(shape(b.deliveries)).toEqual(expected);
    expect(shape(c.deliveries)).toEqual(expected);
    expect(b.deliveries.map((d) => d.logId)).toEqual(a.deliveries.map((d) => d.logId));
    // Other local listeners (dashboard) see the remote messages on their own bus, once.
    expect(b.busMessages).toEqual(crossing);
    expect(c.busMessages).toEqual(crossing);

    // The log holds the ComfyUI events, in order, written once by the holder.
    const logged = await log.after('alice', '0-0', 100);
    expect(logged.map((e) => [e.from, e.event.type])).toEqual([
      ['a', 'execution_start'],
      ['a', 'progress'],
      ['a', 'progress'],
      ['a', 'progress'],
      ['a', 'execution_success'],
    ]);
    expect(logged.map((e) => e.id)).toEqual(a.deliveries.filter((d) => d.logId).map((d) => d.logId));
  });

  it('an environment change crosses once', async () => {
    const [a, b, c] = procs as [Proc, Proc, Proc];
    const seen: string[] = [];
    for (const p of procs) p.bus.onEnv((e) => seen.push(`${p.id}:${e.hash}`));
    b.bus.publishEnv({ hash: 'h2', workerId: 'gpu9' });
    await settle();
    expect(seen.sort()).toEqual(['a:h2', 'b:h2', 'c:h2']);
    expect(a.deliveries).toEqual([]);
    expect(c.deliveries).toEqual([]);
  });

  it('after the link was down, recover() delivers the logged events whose live copies were lost, once', async () => {
    const [a, b] = procs as [Proc, Proc];
    const ev = (i: number): JobBusMessage => ({
      kind: 'event',
      jobId: 'j1',
      user: 'alice',
      workerId: 'gpu1',
      event: { type: 'progress', data: { value: i, max: 6 } },
    });
    const values = (ds: Delivery[]) =>
      ds.map((d) => (d.message as { event: { data: { value: number } } }).event.data.value);
    a.bus.publish(ev(1));
    await settle();
    // b's link drops: what a publishes meanwhile never reaches b.
    const bBus = [...hub.buses].find((x) => x.processId === 'b')!;
    hub.buses.delete(bBus);
    a.bus.publish(ev(2));
    a.bus.publish(ev(3));
    await settle();
    hub.buses.add(bBus);
    a.bus.publish(ev(4));
    await settle();
    expect(values(b.deliveries)).toEqual([1, 4]);

    await b.relay.recover(['alice', 'bob']);
    expect(values(b.deliveries)).toEqual([1, 4, 2, 3]);
    expect(b.deliveries.map((d) => d.recovered ?? false)).toEqual([false, false, true, true]);
    expect(b.deliveries.slice(2).map((d) => d.from)).toEqual(['a', 'a']);
    // Dashboards on b see them too; a second recovery finds nothing new; a's own are never recovered.
    expect(b.busMessages).toHaveLength(4);
    await b.relay.recover(['alice']);
    await a.relay.recover(['alice']);
    expect(b.deliveries).toHaveLength(4);
    expect(a.deliveries).toHaveLength(4);
  });

  it('with one process nothing is relayed: no relay is built, the bus and the queue stay direct', async () => {
    const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: 'silent' });
    const deps = { config, queue: procs[0]!.queue, bus: procs[0]!.bus, logger };
    expect(await openEventRelay({ ...deps, cluster: new LocalClusterBus('solo') })).toBeNull();
    const relay = await openEventRelay({ ...deps, cluster: new MemoryClusterHub().join('x'), log });
    expect(relay).toBeInstanceOf(EventRelay);
    await relay!.close();
  });

  it('a cursor replays exactly what a socket was not handed, whatever order writers reached the log', () => {
    // Writers a and b append interleaved; the socket got a's 1 and 3 and b's 2, then dropped.
    const cursor = { base: '0-0', w: { a: '3-0', b: '2-0' } };
    const entries = [
      ['1-0', 'a'],
      ['2-0', 'b'],
      ['3-0', 'a'],
      ['4-0', 'b'],
      ['5-0', 'c'],
    ] as const;
    expect(entries.filter(([id, from]) => wanted(cursor, id, from)).map(([id]) => id)).toEqual([
      '4-0',
      '5-0',
    ]);
    // Nothing from before the clientId's first connection.
    expect(wanted({ base: '4-0', w: {} }, '3-0', 'c')).toBe(false);
  });
});
