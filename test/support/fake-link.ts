/**
 * A worker's connection as the dispatcher sees it (`WorkerLink`), without a socket: for tests that
 * drive the dispatcher directly and read what it sent to the worker.
 */
import type { WorkerLink } from '../../src/dispatch/worker-registry.js';
import type { ServerMessage } from '../../src/worker/protocol.js';

export class FakeLink implements WorkerLink {
  open = true;
  readonly sent: ServerMessage[] = [];

  send(m: ServerMessage): boolean {
    if (!this.open) return false;
    this.sent.push(m);
    return true;
  }

  close(): void {
    this.open = false;
  }

  /** The ids of the jobs assigned over this link, in order. */
  assigned(): string[] {
    return this.sent.flatMap((m) => (m.type === 'assign' ? [m.job.jobId] : []));
  }
}
