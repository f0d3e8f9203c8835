import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import bcrypt from 'bcryptjs';
import { AppError } from '../errors.js';

/**
 * Bounded bcrypt work. bcryptjs is pure JavaScript: one check at cost 10 is ~60 ms of CPU during
 * which the thread running it does nothing else. Unbounded, a burst of logins queues hundreds of
 * checks and `/health` and every participant's request wait behind them. So:
 *
 * - at most `threads` checks run at once (one per worker thread; `threads: 0` runs them one at a
 *   time on the main thread, each blocking it ~60 ms);
 * - at most `maxQueued` login checks wait; beyond that a login is refused at once with
 *   `LOGIN_BUSY` (503, `Retry-After`) instead of growing a queue nobody can serve in time;
 * - hashing a new password (accounts created or reset by an instructor) waits in the same queue
 *   but is never refused.
 */
export interface BcryptPoolOptions {
  /** Worker threads running bcrypt; 0 runs it on the main thread. */
  threads: number;
  /** Login checks allowed to wait for a free thread. */
  maxQueued: number;
  /** bcrypt cost for new hashes. */
  rounds: number;
}

export interface BcryptStats {
  compares: number;
  hashes: number;
  /** Logins refused because the queue was full. */
  refused: number;
  running: number;
  queued: number;
}

type Task =
  { op: 'compare'; password: string; hash: string } | { op: 'hash'; password: string; rounds: number };

interface Job {
  task: Task;
  resolve: (v: string | boolean) => void;
  reject: (e: Error) => void;
}

/** A check takes about this long at cost 10 on a small server; only used to estimate Retry-After. */
const ESTIMATED_CHECK_MS = 80;

// The worker runs from source text, so it works alike under tsx/vitest and from dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptPath);
parentPort.on('message', async (m) => {
  try {
    const result = m.op === 'compare' ? await bcrypt.compare(m.password, m.hash) : await bcrypt.hash(m.password, m.rounds);
    parentPort.postMessage({ id: m.id, result });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.message || err) });
  }
});
`;

class Lane {
  private worker: Worker | null = null;
  private current: { id: number; job: Job } | null = null;
  private nextId = 1;

  constructor(private readonly onIdle: () => void) {}

  get busy(): boolean {
    return this.current !== null;
  }

  run(job: Job): void {
    const id = this.nextId++;
    this.current = { id, job };
    this.spawn().postMessage({ id, ...job.task });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    const cur = this.current;
    this.current = null;
    cur?.job.reject(new Error('bcrypt pool closed'));
    if (w) await w.terminate();
  }

  private spawn(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { bcryptPath: createRequire(import.meta.url).resolve('bcryptjs') },
    });
    // An idle pool must not keep the process alive.
    w.unref();
    w.on('message', (m: { id: number; result?: string | boolean; error?: string }) => {
      const cur = this.current;
      if (!cur || cur.id !== m.id) return;
      this.current = null;
      if (m.error !== undefined) cur.job.reject(new Error(m.error));
      else cur.job.resolve(m.result!);
      this.onIdle();
    });
    const fail = (err: Error) => {
      if (this.worker === w) this.worker = null;
      const cur = this.current;
      this.current = null;
      cur?.job.reject(err);
      this.onIdle();
    };
    w.on('error', fail);
    w.on('exit', (code) => {
      if (this.worker === w) fail(new Error(`bcrypt worker exited with code ${code}`));
    });
    this.worker = w;
    return w;
  }
}

export class BcryptPool {
  private readonly queue: Job[] = [];
  private readonly lanes: Lane[];
  private running = 0;
  private closed = false;
  private readonly counts = { compares: 0, hashes: 0, refused: 0 };

  constructor(private readonly opts: BcryptPoolOptions) {
    this.lanes = Array.from({ length: opts.threads }, () => new Lane(() => this.pump()));
  }

  /**
   * Checks a password against a bcrypt hash. Rejects with `LOGIN_BUSY` when `maxQueued` checks
   * are already waiting.
   */
  compare(password: string, hash: string): Promise<boolean> {
    if (this.queue.length >= this.opts.maxQueued) {
      this.counts.refused++;
      const capacity = Math.max(1, this.opts.threads);
      const seconds = Math.ceil(((this.queue.length / capacity + 1) * ESTIMATED_CHECK_MS) / 1000);
      return Promise.reject(
        new AppError('LOGIN_BUSY', undefined, { retryAfter: Math.max(1, Math.min(seconds, 30)) }),
      );
    }
    return this.enqueue({ op: 'compare', password, hash }) as Promise<boolean>;
  }

  /** Hashes a new password; waits its turn but is never refused. */
  hash(password: string): Promise<string> {
    return this.enqueue({ op: 'hash', password, rounds: this.opts.rounds }) as Promise<string>;
  }

  stats(): BcryptStats {
    return { ...this.counts, running: this.running, queued: this.queue.length };
  }

  /** Stops the threads; checks still waiting or running fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('bcrypt pool closed'));
    await Promise.all(this.lanes.map((l) => l.close()));
  }

  private enqueue(task: Task): Promise<string | boolean> {
    if (this.closed) return Promise.reject(new Error('bcrypt pool closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.opts.threads === 0) {
      if (this.running > 0) return;
      const job = this.queue.shift();
      if (job) void this.runInline(job);
      return;
    }
    this.running = this.lanes.filter((l) => l.busy).length;
    for (const lane of this.lanes) {
      if (lane.busy) continue;
      const job = this.queue.shift();
      if (!job) break;
      this.count(job.task);
      lane.run(job);
      this.running++;
    }
  }

  private async runInline(job: Job): Promise<void> {
    this.running = 1;
    this.count(job.task);
    try {
      const t = job.task;
      job.resolve(
        t.op === 'compare'
          ? await bcrypt.compare(t.password, t.hash)
          : await bcrypt.hash(t.password, t.rounds),
      );
    } catch (err) {
      job.reject(err as Error);
    } finally {
      this.running = 0;
      // Let pending I/O (health checks, participants' requests) run between two checks.
      setImmediate(() => this.pump());
    }
  }

  private count(task: Task): void {
    if (task.op === 'compare') this.counts.compares++;
    else this.counts.hashes++;
  }
}
