/**
 * Dispatch benchmark: the real control plane (SQLite) in this thread, the real worker agent and
 * the ComfyUI stand-in each in a worker thread of this process (bench/dispatch-threads.ts).
 *
 * - **dispatch latency**: a job is enqueued while the worker is idle → the stand-in accepts its
 *   `POST /prompt`. p50/p99 over N jobs, one at a time (each waits for the previous to finish).
 * - **GPU idle gap**: N jobs of ~50 ms queued at once for one worker (prefetch 1) → for each
 *   consecutive pair, the stand-in's `execution_success` of job k to its `execution_start` of
 *   job k+1. Median/p99.
 *
 * The same figures are measured for the seed design (bench/baseline-poller.ts: it polls for work
 * and `/history` every 2 s) on fewer jobs, with enqueue times spread over its poll period, and the
 * ratios printed.
 *
 * Run alone: `npx tsx bench/dispatch.ts` (env BENCH_DISPATCH_JOBS, default 200;
 * BENCH_BASELINE_JOBS, default 20).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { loadConfig } from '../src/config/load-config.js';
import { startServer, type RunningServer } from '../src/main.js';
import type { Job } from '../src/store/types.js';
import { modelFreePrompt } from '../test/support/prompts.js';
import { PollingWorker } from './baseline-poller.js';
import { clock, nextMessage, tsWorker, type TapEvent } from './dispatch-threads.js';
import { median, percentile } from './stats.js';

type Figures = Record<string, number>;

const JOB_MS = 50;
const POLL_MS = 2000;

/** What the stand-in thread reports, kept by prompt id. */
class Taps {
  readonly received = new Map<string, number>();
  readonly started = new Map<string, number>();
  readonly finished = new Map<string, number>();
  private waiters: ((e: TapEvent) => void)[] = [];

  constructor(thread: Worker) {
    thread.on('message', (m: unknown) => {
      const e = m as Partial<TapEvent>;
      if (typeof e.promptId !== 'string' || typeof e.at !== 'number') return;
      const ev = e as TapEvent;
      this[ev.kind].set(ev.promptId, ev.at);
      if (ev.kind === 'received') for (const w of this.waiters.splice(0)) w(ev);
    });
  }

  /** The next prompt the stand-in accepts. */
  nextReceived(timeoutMs: number): Promise<TapEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no prompt reached the stand-in')), timeoutMs);
      this.waiters.push((e) => {
        clearTimeout(timer);
        resolve(e);
      });
    });
  }
}

let color = 0x010101;
/** A fresh color per job, so ComfyUI's cache never short-cuts one. */
function prompt(sleepMs?: number) {
  color = (color + 0x010203) & 0xffffff;
  return modelFreePrompt({ color, ...(sleepMs ? { sleep: { seconds: sleepMs / 1000, steps: 1 } } : {}) });
}

/** Resolves when every job in `ids` has finished (completed, failed or cancelled). */
function finished(server: RunningServer, ids: Set<string>): Promise<void> {
  return new Promise((resolve) => {
    const left = new Set(ids);
    const on = (e: { type: string; job?: Job }) => {
      if (e.type === 'finished' && e.job && left.delete(e.job.id) && left.size === 0) {
        server.services.queue.off('event', on);
        resolve();
      }
    };
    server.services.queue.on('event', on);
  });
}

async function until(fn: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const round = (n: number) => Math.round(n * 100) / 100;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One job at a time on an idle worker: enqueue → the stand-in accepts `POST /prompt`.
 * `spreadMs` waits a random time before each enqueue, so a polling worker is caught at a random
 * point of its period (a push-based one does not care).
 */
async function dispatchLatencies(
  server: RunningServer,
  taps: Taps,
  n: number,
  spreadMs = 0,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (spreadMs > 0) await pause(Math.random() * spreadMs);
    const received = taps.nextReceived(POLL_MS * 3 + 10_000);
    const t0 = clock();
    const job = await server.services.queue.enqueue({
      user: `u${i % 5}`,
      prompt: prompt(),
      priority: 'normal',
    });
    const done = finished(server, new Set([job.id]));
    out.push((await received).at - t0);
    await done;
  }
  return out;
}

/** n jobs of `JOB_MS` queued at once; gaps between one prompt's end and the next one's start. */
async function idleGaps(server: RunningServer, taps: Taps, n: number, users: string): Promise<number[]> {
  const before = new Set(taps.started.keys());
  const ids = new Set<string>();
  for (let i = 0; i < n; i++) {
    ids.add(
      (
        await server.services.queue.enqueue({
          user: `${users}${i % 3}`,
          prompt: prompt(JOB_MS),
          priority: 'normal',
        })
      ).id,
    );
  }
  await finished(server, ids);
  await until(
    () => [...taps.started.keys()].filter((p) => !before.has(p)).every((p) => taps.finished.has(p)),
    5000,
    'the last tap',
  );
  const runs = [...taps.started.entries()]
    .filter(([pid]) => !before.has(pid) && taps.finished.has(pid))
    .map(([pid, start]) => ({ start, end: taps.finished.get(pid)! }))
    .sort((a, b) => a.start - b.start);
  const gaps: number[] = [];
  for (let i = 1; i < runs.length; i++) gaps.push(runs[i]!.start - runs[i - 1]!.end);
  return gaps;
}

export async function benchDispatch(): Promise<Figures> {
  const n = Number(process.env.BENCH_DISPATCH_JOBS ?? 200);
  const nBase = Number(process.env.BENCH_BASELINE_JOBS ?? 20);
  const dataDir = await mkdtemp(join(tmpdir(), 'cm-bench-dispatch-'));
  const standinThread = tsWorker('./dispatch-standin-thread.ts', { delayMs: JOB_MS });
  let agentThread: Worker | null = null;
  let server: RunningServer | null = null;
  try {
    const taps = new Taps(standinThread);
    const { url: comfyuiUrl } = await nextMessage(
      standinThread,
      (m): m is { kind: 'ready'; url: string } => (m as { kind?: string }).kind === 'ready',
    );
    const token = 'bench-worker-token';
    server = await startServer(
      loadConfig({
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
        ADMIN_PASSWORD: 'bench-admin-password',
        WORKER_TOKENS: `bench:${token}`,
        QUEUE_MODE: 'fifo',
        MAX_PENDING_PER_USER: '100000',
        MAX_RUNNING_PER_USER: '1000',
        LEASE_MS: '60000',
        HEARTBEAT_MS: '5000',
        HISTORY_RETENTION_DAYS: '0',
      }),
    );
    const srv = server;
    agentThread = tsWorker('./dispatch-agent-thread.ts', {
      serverUrl: srv.url,
      token,
      comfyuiUrl,
      prefetch: 1,
    });
    await until(
      () => srv.services.workers.list().some((w) => w.status === 'idle'),
      30_000,
      'the agent to register',
    );

    await dispatchLatencies(srv, taps, 20); // warm-up (JIT, connections), not counted
    const dispatch = await dispatchLatencies(srv, taps, n);
    if (process.env.BENCH_DEBUG)
      console.log(
        'dispatch top',
        [...dispatch]
          .sort((a, b) => b - a)
          .slice(0, 15)
          .map(round),
      );
    const gaps = await idleGaps(srv, taps, n, 'g');
    if (process.env.BENCH_DEBUG)
      console.log(
        'gaps top',
        [...gaps]
          .sort((a, b) => b - a)
          .slice(0, 15)
          .map(round),
      );

    agentThread.postMessage('stop');
    await nextMessage(agentThread, (m): m is 'stopped' => m === 'stopped');
    await agentThread.terminate();
    agentThread = null;
    await until(
      () => srv.services.workers.list().every((w) => w.status === 'offline'),
      10_000,
      'the agent to leave',
    );

    // The seed design against the same control plane and stand-in.
    const poller = new PollingWorker(srv.services.queue, comfyuiUrl, POLL_MS);
    poller.start();
    let baseDispatch: number[];
    let baseGaps: number[];
    try {
      baseDispatch = await dispatchLatencies(srv, taps, nBase, POLL_MS);
      baseGaps = await idleGaps(srv, taps, Math.max(3, Math.ceil(nBase / 2)), 'b');
    } finally {
      poller.stop();
    }

    const f: Figures = {
      jobs: n,
      dispatch_p50_ms: round(median(dispatch)),
      dispatch_p99_ms: round(percentile(dispatch, 99)),
      idle_gap_median_ms: round(median(gaps)),
      idle_gap_p99_ms: round(percentile(gaps, 99)),
      baseline_jobs: nBase,
      baseline_dispatch_p50_ms: round(median(baseDispatch)),
      baseline_dispatch_p99_ms: round(percentile(baseDispatch, 99)),
      baseline_idle_gap_median_ms: round(median(baseGaps)),
      baseline_idle_gap_p99_ms: round(percentile(baseGaps, 99)),
    };
    // Seed ÷ ours: how many times shorter ours is (a figure under 0.01 ms counts as 0.01 ms).
    f.dispatch_p50_ratio = round(f.baseline_dispatch_p50_ms! / Math.max(0.01, f.dispatch_p50_ms!));
    f.dispatch_p99_ratio = round(f.baseline_dispatch_p99_ms! / Math.max(0.01, f.dispatch_p99_ms!));
    f.idle_gap_median_ratio = round(f.baseline_idle_gap_median_ms! / Math.max(0.01, f.idle_gap_median_ms!));
    return f;
  } finally {
    if (agentThread) await agentThread.terminate();
    await server?.close();
    standinThread.postMessage('close');
    await nextMessage(standinThread, (m): m is 'closed' => m === 'closed', 5000).catch(() => undefined);
    await standinThread.terminate();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const f = await benchDispatch();
  console.log(JSON.stringify(f, null, 2));
  console.log(
    `\nours: dispatch p50 ${f.dispatch_p50_ms} ms, p99 ${f.dispatch_p99_ms} ms (target p99 ≤ 20); ` +
      `idle gap median ${f.idle_gap_median_ms} ms, p99 ${f.idle_gap_p99_ms} ms (target median ≤ 10)\n` +
      `seed: dispatch p50 ${f.baseline_dispatch_p50_ms} ms, p99 ${f.baseline_dispatch_p99_ms} ms; ` +
      `idle gap median ${f.baseline_idle_gap_median_ms} ms, p99 ${f.baseline_idle_gap_p99_ms} ms\n` +
      `seed ÷ ours: dispatch p50 ×${f.dispatch_p50_ratio}, p99 ×${f.dispatch_p99_ratio}; idle gap median ×${f.idle_gap_median_ratio}`,
  );
  process.exit(0);
}
