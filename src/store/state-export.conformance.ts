/**
 * Export/import conformance: run from `store.conformance.ts` (same store within a backend) and
 * from `migrate.redis.test.ts` (across backends). The helpers build a store that uses every
 * feature the state has, take a complete observable snapshot of a store, and drive two stores
 * through the same operations to show they behave identically.
 */
import { expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { STATE_FORMAT } from './state-records.js';
import type { OpenStore } from './conformance-types.js';
import type { ClaimRequest, ComfyPrompt, Job, JobStore, QueueSettings, StateRecord } from './types.js';

const T0 = 1_700_000_000_000;
const LEASE = 30_000;

function prompt(n: number): ComfyPrompt {
  return {
    '3': {
      class_type: 'KSampler',
      inputs: { seed: n, steps: 20, model: ['4', 0] },
      _meta: { title: `Ä ${n}` },
    },
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'flux2.safetensors' } },
  };
}

export const EXPORT_TEST_DEFAULTS: QueueSettings = {
  mode: 'fifo',
  paused: false,
  limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
  userLimits: {},
};

const BLOBS: [string, string, string][] = [
  ['settings', 'alice', JSON.stringify({ 'Comfy.Theme': 'dark', emoji: '🎨 ünï' })],
  ['settings', 'bob', '{}'],
  ['env', 'gpu-1', JSON.stringify({ object_info: { KSampler: { input: {} } } })],
  ['env', 'gpu/2 spaced', 'x'.repeat(10_000)],
  ['userdata', 'alice/workflows/a b.json', ''],
];

/**
 * Fills a store with every kind of state: settings with per-user limits, accounts, tokens (one
 * revoked), blobs, and jobs in every status — moved to the front, prioritised, skipped by
 * affinity, requeued after a lost lease, failed as worker_lost, with outputs and errors — plus a
 * user whose jobs were all deleted but whose serve state remains.
 */
export async function populateForExport(store: JobStore): Promise<void> {
  let n = 0;
  const add = (user: string, extra: Partial<Parameters<JobStore['enqueue']>[0]> = {}, now = T0 + n) =>
    store.enqueue(
      { user, prompt: prompt(++n), models: [`checkpoints/m${n % 3}.safetensors`], ...extra },
      now,
    );
  const claim = (workerId: string, now: number, extra: Partial<ClaimRequest> = {}) =>
    store.claim({
      workerId,
      warmModels: [],
      leaseMs: LEASE,
      now,
      affinity: { window: 1, maxSkips: 2 },
      ...extra,
    });

  await store.updateSettings({
    mode: 'round_robin',
    limits: { maxRunningPerUser: 2, maxPendingPerUser: 20 },
    userLimits: { alice: { maxPendingPerUser: 8 }, 'dave-ü': { maxRunningPerUser: 1 } },
  });
  await store.putAccount({
    name: 'admin',
    role: 'instructor',
    passwordHash: '$2a$10$abc',
    createdAt: T0,
    passwordVersion: 2,
  });
  await store.putAccount({
    name: 'alice',
    role: 'participant',
    passwordHash: '$2a$10$def',
    createdAt: T0 + 1,
    passwordVersion: 1,
  });
  await store.putWorkerToken({ name: 'gpu-1', tokenHash: 'a'.repeat(64), createdAt: T0, revokedAt: null });
  await store.putWorkerToken({ name: 'gpu-old', tokenHash: 'b'.repeat(64), createdAt: T0, revokedAt: null });
  await store.revokeWorkerToken('gpu-old', T0 + 50);
  for (const [ns, key, value] of BLOBS) await store.putBlob(ns, key, value);

  // A user served once whose history was then cleared: only the serve state remains.
  await add('gone');
  const g = (await claim('w0', T0 + 100))!;
  await store.complete(g.id, g.attempts, [], T0 + 150);
  expect(await store.deleteHistory('gone')).toBe(1);

  for (const u of ['alice', 'bob', 'carol', 'dave-ü']) {
    for (let i = 0; i < 3; i++) {
      await add(u, {
        priority: i === 1 ? 'high' : 'normal',
        metadata: { client_id: `c-${u}`, i, nested: { a: [1, 2] } },
      });
    }
  }
  await add('alice', { front: true });
  await add('erin', { priority: 'low' });
  // Two workers run jobs; one completes with outputs, one fails with ComfyUI's details.
  const r1 = (await claim('w1', T0 + 1000))!;
  const r2 = (await claim('w2', T0 + 1001))!;
  await store.complete(
    r1.id,
    r1.attempts,
    [
      {
        nodeId: '9',
        filename: 'ComfyUI_00001_.png',
        subfolder: '',
        type: 'output',
        kind: 'images',
        size: 123,
        sha256: 'c'.repeat(64),
      },
      { nodeId: '12', filename: 'clip ü.mp4', subfolder: 'vids', type: 'output', kind: 'gifs' },
    ],
    T0 + 5000,
  );
  await store.fail(
    r2.id,
    r2.attempts,
    {
      reason: 'execution_error',
      message: 'CUDA out of memory',
      nodeId: '3',
      nodeType: 'KSampler',
      exceptionType: 'torch.OutOfMemoryError',
      traceback: ['line 1', 'line 2'],
      details: { vram: 24 },
    },
    T0 + 6000,
  );
  // A lost lease requeued (attempts kept), another failed as worker_lost.
  const lost = (await claim('w3', T0 + 7000))!;
  const lost2 = (await claim('w4', T0 + 7001))!;
  expect((await store.requeueExpired(T0 + 7001 + LEASE, 5)).requeued.map((j) => j.id).sort()).toEqual(
    [lost.id, lost2.id].sort(),
  );
  const again = (await claim('w5', T0 + 50_000))!;
  await store.requeueExpired(T0 + 50_000 + LEASE, again.attempts);
  // Affinity passes a job over (skips > 0) for a warm one.
  await claim('w6', T0 + 90_000, {
    warmModels: ['checkpoints/m2.safetensors'],
    affinity: { window: 4, maxSkips: 2 },
  });
  // Still running at export time: a lease in the future.
  await claim('w7', T0 + 91_000);
  const pending = (await store.listJobs({ status: 'pending', limit: 500, order: 'asc' })).jobs;
  expect(pending.length).toBeGreaterThan(4);
  await store.moveToFront(pending[pending.length - 1]!.id);
  await store.setPriority(pending[1]!.id, 'instructor');
  await store.cancel(pending[2]!.id, T0 + 95_000);
  const counts = await store.countByStatus();
  for (const s of ['pending', 'running', 'completed', 'failed', 'cancelled'] as const) {
    expect(counts[s], `populated store has a ${s} job`).toBeGreaterThan(0);
  }
}

async function allJobs(store: JobStore): Promise<Job[]> {
  const out: Job[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.listJobs({ limit: 7, order: 'asc', ...(cursor ? { cursor } : {}) });
    out.push(...page.jobs);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return out;
}

/** Everything a store shows through its interface, in a comparable form. */
export async function storeSnapshot(store: JobStore): Promise<Record<string, unknown>> {
  const jobs = await allJobs(store);
  const users = [...new Set(jobs.map((j) => j.user))].sort();
  const blobs: Record<string, Record<string, string | null>> = {};
  for (const ns of [...new Set(BLOBS.map(([ns]) => ns))]) {
    blobs[ns] = {};
    for (const key of await store.listBlobs(ns)) blobs[ns][key] = await store.getBlob(ns, key);
  }
  return {
    jobs: jobs.map((j) => ({ ...j, prompt: j.prompt })),
    byId: await Promise.all(jobs.map(async (j) => ({ ...(await store.getJob(j.id))! }))).then((a) =>
      a.map((j) => ({ ...j, prompt: j.prompt })),
    ),
    pageDesc: (await store.listJobs({ limit: 5 })).jobs.map((j) => j.id),
    perUser: await Promise.all(
      users.map(async (u) => (await store.listJobs({ user: u, limit: 500 })).jobs.map((j) => j.id)),
    ),
    byStatus: await Promise.all(
      (['pending', 'running', 'completed', 'failed', 'cancelled'] as const).map(async (s) =>
        (await store.listJobs({ status: s, limit: 500 })).jobs.map((j) => j.id),
      ),
    ),
    pendingOrder: (await store.pendingInOrder(1000)).map((j) => j.id),
    counts: await store.countByStatus(),
    countsPerUser: await Promise.all(users.map((u) => store.countByStatus(u))),
    userCounters: await store.userCounters(),
    settings: await store.getSettings(),
    accounts: await store.listAccounts(),
    tokens: await store.listWorkerTokens(),
    blobs,
  };
}

/** The records without the header (which names the backend and the time of export). */
export function comparableRecords(records: StateRecord[]): StateRecord[] {
  return records
    .filter((r) => r.type !== 'header')
    .map((r) => (r.type === 'job' ? { ...r, job: { ...r.job, prompt: r.job.prompt } } : r));
}

export async function collectRecords(store: JobStore): Promise<StateRecord[]> {
  const out: StateRecord[] = [];
  for await (const r of store.exportState()) out.push(r);
  return out;
}

/**
 * Drives every store through the same operations and expects the same answers from each: every
 * claim (with affinity), completions, releases, late reports from lost workers, new enqueues,
 * moves to the front; and at the end the same snapshot.
 */
export async function expectSameBehaviour(...stores: JobStore[]): Promise<void> {
  const all = async <T>(fn: (s: JobStore) => Promise<T>): Promise<T[]> => {
    const out: T[] = [];
    for (const s of stores) out.push(await fn(s));
    return out;
  };
  const same = <T>(values: T[], what: string) => {
    for (let i = 1; i < values.length; i++)
      expect(values[i], `${what}: store ${i} vs store 0`).toEqual(values[0]);
  };
  const norm = (j: Job | null | undefined) => (j ? { ...j, prompt: j.prompt } : null);
  // A worker that lost its lease reports late. (The backends differ on this answer — SQLite says
  // duplicate, Redis terminal — so it is compared only when all stores share one backend.)
  if (stores.every((s) => s.backend === stores[0]!.backend)) {
    const late = await all(async (s) => {
      const failed = (await s.listJobs({ status: 'failed', limit: 500 })).jobs.find(
        (j) => j.error?.reason === 'worker_lost',
      );
      expect(failed, 'a worker_lost job').toBeDefined();
      const r = await s.fail(
        failed!.id,
        failed!.attempts,
        { reason: 'execution_error', message: 'late' },
        T0 + 200_000,
      );
      return { ok: r.ok, reason: r.ok ? null : r.reason, job: norm(r.job) };
    });
    same(late, 'late report');
  }
  const expired = await all(async (s) => {
    const r = await s.requeueExpired(T0 + 10_000_000, 2);
    return { requeued: r.requeued.map(norm), failed: r.failed.map(norm) };
  });
  same(expired, 'requeueExpired');
  for (let i = 0; i < 60; i++) {
    const req: ClaimRequest = {
      workerId: `w${i % 3}`,
      warmModels: i % 2 ? ['checkpoints/m1.safetensors'] : [],
      leaseMs: LEASE,
      now: T0 + 300_000 + i,
      affinity: { window: 4, maxSkips: 2 },
    };
    const claimed = await all((s) => s.claim(req));
    same(claimed.map(norm), `claim ${i}`);
    const c = claimed[0];
    if (!c) break;
    const done = await all(async (s) => {
      const r =
        i % 4 === 3
          ? await s.release(c.id, c.attempts, req.now + 1)
          : await s.complete(c.id, c.attempts, [], req.now + 10);
      return { ok: r.ok, job: norm(r.job) };
    });
    same(done, `finish ${i}`);
    same(await all(async (s) => (await s.pendingInOrder(100)).map((j) => j.id)), `pending order after ${i}`);
  }
  same(
    (
      await all((s) =>
        s.enqueue({ id: 'after-import', user: 'alice', prompt: prompt(999), front: true }, T0 + 400_000),
      )
    ).map(norm),
    'enqueue after import',
  );
  same(
    await all(async (s) => {
      const j = await s.enqueue({ id: 'zed-job', user: 'zed', prompt: prompt(1000) }, T0 + 400_001);
      return s.moveToFront(j.id).then((m) => ({ seq: m!.seq, front: m!.front }));
    }),
    'moveToFront',
  );
  same(await all((s) => storeSnapshot(s)), 'snapshot');
}

/** The `describe('export/import')` block of the store conformance suite. */
export function exportImportConformance(current: () => JobStore, open: OpenStore): void {
  const withFresh = async (fn: (fresh: JobStore) => Promise<void>): Promise<void> => {
    const other = await open(structuredClone(EXPORT_TEST_DEFAULTS));
    try {
      await fn(other.store);
    } finally {
      await other.cleanup();
    }
  };

  it('round-trips a populated store into a fresh one: every job field, index, counter and setting', async () => {
    const store = current();
    await store.updateSettings({ mode: 'fifo' }); // replaced by populate; proves nothing leaks
    await populateForExport(store);
    const records = await collectRecords(store);
    expect(records[0]).toMatchObject({
      type: 'header',
      format: STATE_FORMAT,
      version: 1,
      backend: store.backend,
    });
    expect(records.filter((r) => r.type === 'user').map((r) => (r as { user: string }).user)).toContain(
      'gone',
    );
    const before = await storeSnapshot(store);
    await withFresh(async (fresh) => {
      const counts = await fresh.importState(records);
      expect(counts).toMatchObject({
        settings: 1,
        accounts: 2,
        workerTokens: 2,
        blobs: BLOBS.length,
        jobs: (before.jobs as Job[]).length,
      });
      expect(await storeSnapshot(fresh)).toEqual(before);
      expect(comparableRecords(await collectRecords(fresh))).toEqual(comparableRecords(records));
      await expectSameBehaviour(store, fresh);
    });
  });

  it('refuses to import into a store that is not empty, unless replace', async () => {
    const store = current();
    await populateForExport(store);
    const records = await collectRecords(store);
    await withFresh(async (fresh) => {
      await fresh.putAccount({
        name: 'someone',
        role: 'participant',
        passwordHash: 'h',
        createdAt: T0,
        passwordVersion: 1,
      });
      const err = await fresh.importState(records).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('CONFLICT');
      expect((await fresh.listAccounts()).map((a) => a.name)).toEqual(['someone']);
      await fresh.enqueue({ user: 'x', prompt: prompt(1) }, T0);
      await fresh.importState(records, { replace: true });
      expect(await storeSnapshot(fresh)).toEqual(await storeSnapshot(store));
      // Importing again over itself (replace) is idempotent.
      await fresh.importState(records, { replace: true });
      expect(await storeSnapshot(fresh)).toEqual(await storeSnapshot(store));
    });
  });

  it('an empty store exports a header, counters and null settings, and imports into another', async () => {
    const records = await collectRecords(current());
    expect(records.map((r) => r.type)).toEqual(['header', 'counters', 'settings']);
    expect(records[1]).toEqual({ type: 'counters', seq: 0, front: 0, serve: 0 });
    expect(records[2]).toEqual({ type: 'settings', settings: null });
    await withFresh(async (fresh) => {
      expect(await fresh.importState(records)).toEqual({
        settings: 1,
        accounts: 0,
        workerTokens: 0,
        blobs: 0,
        users: 0,
        jobs: 0,
      });
      expect((await fresh.enqueue({ user: 'a', prompt: prompt(1) }, T0)).seq).toBe(1);
    });
  });

  it('refuses a newer format version and duplicate jobs before writing them', async () => {
    const store = current();
    const header: StateRecord = {
      type: 'header',
      format: STATE_FORMAT,
      version: 99,
      backend: 'sqlite',
      exportedAt: T0,
    };
    await expect(store.importState([header])).rejects.toThrow(/newer/);
    const job = await store.enqueue({ user: 'a', prompt: prompt(1) }, T0);
    const records = await collectRecords(store);
    await withFresh(async (fresh) => {
      const dup = [...records, { type: 'job', job: { ...job, seq: 77 } } as StateRecord];
      await expect(fresh.importState(dup)).rejects.toThrow(/appears twice/);
      // Counters continue after the highest seq even when the counters record lags behind.
      await fresh.importState(
        records.map((r) => (r.type === 'counters' ? { ...r, seq: 0 } : r)),
        { replace: true },
      );
      expect((await fresh.enqueue({ user: 'b', prompt: prompt(2) }, T0)).seq).toBe(job.seq + 1);
    });
  });
}
