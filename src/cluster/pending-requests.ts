/**
 * Requests one process sends another over the cluster bus and the answers it waits for: the
 * drain/undrain/revoke commands (worker-commands.ts) and model downloads (model-download-relay.ts)
 * both run on the process holding a worker's socket and answer the asker. Each request has a fresh
 * id; no answer within its time (the other process was killed, or cut off from Redis) is
 * `WORKER_UNREACHABLE`, and so is every open request when this process stops.
 */
import { randomBytes } from 'node:crypto';
import { AppError, ERROR_CODES, type ErrorCode } from '../errors.js';

/** An answer as it crosses: the value, or the error the other process met. */
export type Answer<T> =
  { id: string; ok: true; value: T } | { id: string; ok: false; code: string; message: string };

interface Pending<T> {
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

export class PendingRequests<T> {
  private readonly pending = new Map<string, Pending<T>>();

  /**
   * Sends a request (`send` publishes it with the id given) and resolves with its answer; rejects
   * with `WORKER_UNREACHABLE` and `unreachable` as the message when none came within `timeoutMs`,
   * or with the publish's error.
   */
  ask(send: (id: string) => Promise<void>, timeoutMs: number, unreachable: string): Promise<T> {
    const id = randomBytes(8).toString('hex');
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AppError('WORKER_UNREACHABLE', unreachable));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      send(id).catch((err: unknown) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      });
    });
  }

  /** An answer came: settles its request (none here: another process's, or one that came too late). */
  settle(answer: Answer<T>): void {
    const p = this.pending.get(answer.id);
    if (!p) return;
    this.pending.delete(answer.id);
    clearTimeout(p.timer);
    if (answer.ok) p.resolve(answer.value);
    else {
      const code: ErrorCode = answer.code in ERROR_CODES ? (answer.code as ErrorCode) : 'INTERNAL';
      p.reject(new AppError(code, answer.message));
    }
  }

  /** This process is stopping: every open request fails at once. */
  failAll(): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new AppError('WORKER_UNREACHABLE', 'This process is stopping.'));
      this.pending.delete(id);
    }
  }
}
