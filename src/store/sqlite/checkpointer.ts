/**
 * The store's WAL checkpoints, off the event loop. A checkpoint copies the WAL's pages into the
 * database file and syncs it: synchronous I/O that took 1–80 ms per run on a busy disk, during
 * which the control plane answered nothing (every participant's request, every worker's report,
 * the round trip's p90). So a worker thread with its own connection to the same file runs the
 * PASSIVE checkpoint every second; in WAL mode that is safe beside the main connection (and other
 * processes such as the CLI), and PASSIVE never waits for or blocks a reader or writer. Should the
 * thread not start, the checkpoint falls back to a timer on the main thread, as before.
 */
import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const INTERVAL_MS = 1000;

// Runs from source text, so it works alike under tsx/vitest and from dist/ (as bcrypt-pool.ts).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs, fileMustExist: true });
db.pragma('synchronous = NORMAL');
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'close') return;
  clearInterval(timer);
  try { db.close(); } catch {}
  parentPort.postMessage('closed');
  parentPort.close();
});
parentPort.postMessage('ready');
`;

export class Checkpointer {
  private worker: Worker | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database.Database,
    path: string,
    busyTimeoutMs: number,
  ) {
    try {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          driver: createRequire(import.meta.url).resolve('better-sqlite3'),
          path,
          busyTimeoutMs,
          intervalMs: INTERVAL_MS,
        },
      });
      // Checkpoints must not keep the process alive.
      w.unref();
      w.on('error', () => this.fallBack());
      w.on('exit', () => {
        if (this.worker === w) this.fallBack();
      });
      this.worker = w;
    } catch {
      this.fallBack();
    }
  }

  /** The thread is gone (or never came): checkpoint on this thread's timer instead. */
  private fallBack(): void {
    this.worker = null;
    if (this.timer) return;
    this.timer = setInterval(() => this.checkpointHere(), INTERVAL_MS);
    this.timer.unref();
  }

  /** Copies the WAL back into the database without waiting for readers (PASSIVE). */
  private checkpointHere(): void {
    try {
      if (this.db.open) this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy or closing: the next tick tries again, and SQLite's own limit bounds the WAL meanwhile.
    }
  }

  /** Stops checkpointing; the thread closes its connection first. Call before closing `db`. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const w = this.worker;
    this.worker = null;
    if (!w) return;
    const closed = new Promise<void>((resolve) => {
      w.on('message', (m) => m === 'closed' && resolve());
      w.once('exit', () => resolve());
      setTimeout(resolve, 2000).unref();
    });
    w.postMessage('close');
    await closed;
    await w.terminate();
  }
}
