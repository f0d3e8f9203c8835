import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QueueService } from '../scheduler/queue-service.js';
import { CONFORMANCE_DEFAULTS } from '../store/store.conformance.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/sqlite-store.js';
import { Dispatcher, extraDataOf } from './dispatcher.js';
import { outranks } from './take-back.js';
import { JobEventBus } from './job-event-bus.js';
import { saveEnv } from './env-snapshots.js';
import { requiredModelPaths } from '../comfy/model-requirements.js';
import { WorkerRegistry } from './worker-registry.js';
import { FakeLink } from '../../test/support/fake-link.js';

const PROMPT = { '1': { class_type: 'EmptyImage', inputs: {} } };
const logger = pino({ level: 'silent' });

interface DispatcherRig {
  dir: string;
  store: SqliteStore;
  queue: QueueService;
  registry: WorkerRegistry;
  dispatcher: Dispatcher;
}

/** A started dispatcher over a fresh SQLite store whose settings are `settings` over the defaults. */
async function startDispatcher(opts: {
  settings: Parameters<SqliteStore['updateSettings']>[0];
  affinityWindow: number;
  affinityMaxSkips: number;
}): Promise<DispatcherRig> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-dispatcher-'));
  const store = await openSqliteStore({
    path: join(dir, 'state.db'),
    defaults: structuredClone(CONFORMANCE_DEFAULTS),
  });
  await store.updateSettings(opts.settings);
  const queue = new QueueService(store, {
    leaseMs: 30_000,
    maxAttempts: 3,
    affinityWindow: opts.affinityWindow,
    affinityMaxSkips: opts.affinityMaxSkips,
    historyRetentionMs: 0,
  });
  const registry = new WorkerRegistry({ retentionMs: 60_000 });
  const dispatcher = new Dispatcher(queue, registry, new JobEventBus(), logger);
  dispatcher.start();
  return { dir, store, queue, registry, dispatcher };
}

async function stopDispatcher(
  rig: Partial<Pick<DispatcherRig, 'dir' | 'store' | 'dispatcher'>>,
): Promise<void> {
  await rig.dispatcher?.stop();
  await rig.store?.close();
  if (rig.dir) rmSync(rig.dir, { recursive: true, force: true });
}

describe('Dispatcher', () => {
  let dir: string;
  let store: SqliteStore;
  let queue: QueueService;
  let registry: WorkerRegistry;
  let dispatcher: Dispatcher;

  beforeEach(async () => {
    ({ dir, store, queue, registry, dispatcher } = await startDispatcher({
      settings: { limits: { maxPendingPerUser: 1000, maxRunningPerUser: 1000 } },
      affinityWindow: 4,
      affinityMaxSkips: 2,
    }));
  });

  afterEach(() => stopDispatcher({ dir, store, dispatcher }));

  async function worker(name: string, prefetch: number, envHash = 'a'.repeat(64)): Promise<FakeLink> {
    const link = new FakeLink();
    const { entry } = await dispatcher.hello(link, 'tok', {
      type: 'hello',
      protocol: 1,
      name,
      agentVersion: 't',
      comfyuiVersion: 'x',
      devices: [],
      envHash,
      prefetch,
      inFlight: [],
      warmModels: [],
      healthy: true,
    });
    dispatcher.activate(entry, link);
    return link;
  }

  it('assigns every job exactly once under a burst of concurrent enqueues, never beyond capacity', async () => {
    const links = [await worker('a', 1), await worker('b', 2), await worker('c', 0)];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => queue.enqueue({ user: `u${i % 7}`, prompt: PROMPT })),
    );
    await dispatcher.idle();
    const all = links.flatMap((l) => l.assigned());
    expect(new Set(all).size).toBe(all.length);
    expect(links.map((l) => l.assigned().length)).toEqual([2, 3, 1]);
    expect((await store.countByStatus()).running).toBe(6);

    // Completing everything drains the queue through the same three workers.
    let done = 0;
    while (done < 40) {
      for (const name of ['a', 'b', 'c']) {
        const entry = registry.get(`tok:${name}`)!;
        for (const h of [...entry.held.values()]) {
          await dispatcher.reports.jobCompleted(entry, {
            type: 'job_completed',
            jobId: h.jobId,
            attempt: h.attempt,
            outputs: [],
          });
          done++;
        }
      }
      await dispatcher.idle();
    }
    const assigned = links.flatMap((l) => l.assigned());
    expect(assigned).toHaveLength(40);
    expect(new Set(assigned).size).toBe(40);
    expect((await store.countByStatus()).completed).toBe(40);
  });

  it('sends a job only to a GPU that has its model files, when another GPU lacks them', async () => {
    const env = (models: Record<string, string[]>) => ({
      comfyuiVersion: '0.3.64',
      objectInfo: {},
      embeddings: [],
      models,
      extensions: [],
      systemStats: {},
    });
    // Model requirement sets as the server computes them (known loaders).
    await dispatcher.stop();
    queue = new QueueService(store, {
      leaseMs: 30_000,
      maxAttempts: 3,
      affinityWindow: 4,
      affinityMaxSkips: 2,
      historyRetentionMs: 0,
      modelsOf: (prompt) => requiredModelPaths(prompt),
    });
    dispatcher = new Dispatcher(queue, registry, new JobEventBus(), logger);
    dispatcher.start();
    const [flux, ltx] = ['f'.repeat(64), 'e'.repeat(64)];
    await saveEnv(store, flux, env({ checkpoints: ['flux.safetensors'], loras: ['shared.safetensors'] }));
    await saveEnv(store, ltx, env({ checkpoints: ['ltx.safetensors'], loras: ['shared.safetensors'] }));
    const a = await worker('flux-gpu', 4, flux);
    const b = await worker('ltx-gpu', 4, ltx);
    const job = (user: string, ckpt: string, lora?: string) =>
      queue.enqueue({
        user,
        prompt: {
          '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
          ...(lora
            ? {
                '2': {
                  class_type: 'LoraLoader',
                  inputs: { lora_name: lora, model: ['1', 0], clip: ['1', 1] },
                },
              }
            : {}),
        },
      });
    const ltxJobs = [await job('u1', 'ltx.safetensors'), await job('u2', 'ltx.safetensors')];
    const fluxJobs = [await job('u3', 'flux.safetensors', 'shared.safetensors')];
    // A file no GPU lists (a participant's own LoRA, fetched on demand) steers nothing.
    const anywhere = await job('u4', 'flux.safetensors', 'own.safetensors');
    expect(anywhere.models).toEqual(['checkpoints/flux.safetensors', 'loras/own.safetensors']);
    await dispatcher.idle();
    expect(b.assigned()).toEqual(expect.arrayContaining(ltxJobs.map((j) => j.id)));
    expect(a.assigned()).toEqual(expect.arrayContaining(fluxJobs.map((j) => j.id)));
    expect(a.assigned()).toContain(anywhere.id);
    expect(a.assigned()).not.toEqual(expect.arrayContaining([ltxJobs[0]!.id]));
    expect(b.assigned()).not.toContain(fluxJobs[0]!.id);
  });

  it('waits while the queue is paused and dispatches on resume', async () => {
    const link = await worker('a', 0);
    await queue.updateSettings({ paused: true });
    await queue.enqueue({ user: 'alice', prompt: PROMPT });
    await dispatcher.idle();
    expect(link.assigned()).toEqual([]);
    await queue.updateSettings({ paused: false });
    await dispatcher.idle();
    expect(link.assigned()).toHaveLength(1);
  });

  it('gives a claimed job back when the worker is gone before it can be sent', async () => {
    const link = await worker('a', 0);
    link.open = false; // socket died, close event not processed yet
    const job = await queue.enqueue({ user: 'alice', prompt: PROMPT });
    await dispatcher.idle();
    expect(await store.getJob(job.id)).toMatchObject({ status: 'pending', attempts: 0 });
  });
});

describe('Dispatcher: urgent jobs', () => {
  let dir: string;
  let store: SqliteStore;
  let queue: QueueService;
  let dispatcher: Dispatcher;

  beforeEach(async () => {
    ({ dir, store, queue, dispatcher } = await startDispatcher({
      settings: { limits: { maxRunningPerUser: 1 }, mode: 'round_robin' },
      affinityWindow: 1,
      affinityMaxSkips: 0,
    }));
  });

  afterEach(() => stopDispatcher({ dir, store, dispatcher }));

  it('does not take back a prefetched job for a user who is at the running limit', async () => {
    const link = new FakeLink();
    const { entry } = await dispatcher.hello(link, 'tok', {
      type: 'hello',
      protocol: 1,
      name: 'a',
      agentVersion: 't',
      comfyuiVersion: 'x',
      devices: [],
      envHash: 'a'.repeat(64),
      prefetch: 1,
      inFlight: [],
      warmModels: [],
      healthy: true,
    });
    dispatcher.activate(entry, link);
    const a1 = await queue.enqueue({ user: 'alice', prompt: PROMPT });
    const b1 = await queue.enqueue({ user: 'bob', prompt: PROMPT });
    await dispatcher.idle();
    expect(link.assigned()).toEqual([a1.id, b1.id]);
    dispatcher.reports.jobStarted(entry, { type: 'job_started', jobId: a1.id, attempt: 1 });

    const a2 = await queue.enqueue({ user: 'alice', prompt: PROMPT });
    await queue.update(a2.id, { front: true });
    await dispatcher.idle();
    expect(link.sent.filter((m) => m.type === 'release')).toEqual([]);

    const c1 = await queue.enqueue({ user: 'carol', prompt: PROMPT });
    await queue.update(c1.id, { front: true });
    await dispatcher.idle();
    expect(link.sent.filter((m) => m.type === 'release')).toEqual([
      { type: 'release', jobId: b1.id, attempt: 1 },
    ]);
  });
});

describe('WorkerRegistry', () => {
  it('lists offline workers for the retention period, then forgets them', () => {
    let now = 0;
    const registry = new WorkerRegistry({ retentionMs: 1000, clock: () => now });
    const link = new FakeLink();
    registry.connect(
      'tok:a',
      {
        name: 'a',
        tokenName: 'tok',
        agentVersion: '',
        comfyuiVersion: '',
        devices: [],
        prefetch: 0,
        envHash: '',
        warmModels: [],
        healthy: true,
      },
      link,
    );
    registry.disconnect('tok:a', link);
    now = 900;
    expect(registry.list().map((w) => [w.id, w.status])).toEqual([['tok:a', 'offline']]);
    now = 1100;
    expect(registry.list()).toEqual([]);
  });
});

describe('outranks / extraDataOf', () => {
  it('front beats not-front, later front beats earlier; levels only count in priority mode', () => {
    expect(outranks({ front: 1, priority: 'low' }, { front: 0, priority: 'instructor' }, 'fifo')).toBe(true);
    expect(outranks({ front: 2, priority: 'normal' }, { front: 3, priority: 'normal' }, 'fifo')).toBe(false);
    expect(outranks({ front: 0, priority: 'high' }, { front: 0, priority: 'normal' }, 'priority')).toBe(true);
    expect(outranks({ front: 0, priority: 'high' }, { front: 0, priority: 'normal' }, 'round_robin')).toBe(
      false,
    );
    expect(outranks({ front: 0, priority: 'normal' }, { front: 0, priority: 'normal' }, 'priority')).toBe(
      false,
    );
  });

  it('reads extra_data from metadata', () => {
    expect(extraDataOf({ metadata: { extraData: { a: 1 } } })).toEqual({ a: 1 });
    expect(extraDataOf({ metadata: { extra_data: { b: 2 } } })).toEqual({ b: 2 });
    expect(extraDataOf({ metadata: { extraData: 'x' } })).toEqual({});
    expect(extraDataOf({ metadata: {} })).toEqual({});
  });
});
