/**
 * Job store benchmark, for both backends: enqueue throughput, claim latency with 10,000 and
 * 100,000 pending jobs from 1,000 users, and list-jobs latency over 100,000 jobs of history.
 * Run alone with `npx tsx bench/store.ts [sqlite|redis]`, or through `npm run bench`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobStore, QueueSettings } from '../src/store/types.js';
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { openRedisStore } from '../src/store/redis/redis-store.js';
import { startRedisServer } from '../test/support/redis-server.js';
import { percentile } from './stats.js';

const PROMPT = {
  '1': { class_type: 'EmptyImage', inputs: { width: 512, height: 512, batch_size: 1, color: 0 } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'bench' } },
};

const SETTINGS: QueueSettings = {
  mode: 'round_robin',
  paused: false,
  // The benchmark loads 100 jobs per user; the per-user limit is not what is measured.
  limits: { maxPendingPerUser: 1_000_000, maxRunningPerUser: 1_000_000 },
  userLimits: {},
};

interface Backend {
  name: 'sqlite' | 'redis';
  open(): Promise<JobStore>;
  dispose(): Promise<void>;
}

async function sqliteBackend(): Promise<Backend> {
  const dir = await mkdtemp(join(tmpdir(), 'cm-bench-'));
  let n = 0;
  return {
    name: 'sqlite',
    open: () => openSqliteStore({ path: join(dir, `bench-${n++}.db`), defaults: SETTINGS }),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

async function redisBackend(): Promise<Backend> {
  const server = await startRedisServer({ appendonly: true });
  let n = 0;
  return {
    name: 'redis',
    open: () => openRedisStore({ url: server.url, keyPrefix: `bench${n++}:`, defaults: SETTINGS }),
    dispose: () => server.stop(),
  };
}

async function fill(store: JobStore, count: number, users: number, concurrency: number): Promise<number> {
  const start = performance.now();
  let next = 0;
  const now = Date.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await store.enqueue({ user: `u${i % users}`, prompt: PROMPT }, now + i);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - start) / 1000);
}

async function claimLatency(store: JobStore, samples: number): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    const job = await store.claim({
      workerId: 'bench',
      warmModels: [],
      leaseMs: 30_000,
      now: Date.now(),
      affinity: { window: 4, maxSkips: 2 },
    });
    times.push(performance.now() - t);
    if (!job) throw new Error('queue ran dry during the claim benchmark');
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function listLatency(store: JobStore, samples: number, users: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    await store.listJobs(
      i % 2 === 0 ? { user: `u${i % users}`, limit: 50 } : { status: 'pending', limit: 50 },
    );
    times.push(performance.now() - t);
  }
  return percentile(times, 99);
}

export async function benchStore(which: 'sqlite' | 'redis'): Promise<Record<string, number>> {
  const backend = which === 'sqlite' ? await sqliteBackend() : await redisBackend();
  const out: Record<string, number> = {};
  try {
    for (const pending of [10_000, 100_000]) {
      const store = await backend.open();
      const rate = await fill(store, pending, 1000, which === 'redis' ? 16 : 1);
      if (pending === 10_000) out.enqueue_per_s = Math.round(rate);
      const claim = await claimLatency(store, 1000);
      out[`claim_p50_ms_${pending / 1000}k`] = round(claim.p50);
      out[`claim_p99_ms_${pending / 1000}k`] = round(claim.p99);
      if (pending === 100_000) out.list_p99_ms_100k = round(await listLatency(store, 500, 1000));
      await store.close();
    }
  } finally {
    await backend.dispose();
  }
  return out;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

if (import.meta.url === `file://${process.argv[1]}`) {
  const which = (process.argv[2] ?? 'sqlite') as 'sqlite' | 'redis';
  console.log(JSON.stringify({ [which]: await benchStore(which) }, null, 2));
}
