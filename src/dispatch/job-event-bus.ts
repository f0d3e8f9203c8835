import { EventEmitter } from 'node:events';
import type { Job, JobStatus } from '../store/types.js';

/**
 * The in-process bus between the worker hub and whoever shows jobs live: each participant's
 * ComfyUI `/ws` (subscribe by user) and the dashboard (subscribe to everything).
 *
 * Three kinds of message:
 * - `event`: one ComfyUI WebSocket event a worker relayed for a job (`execution_start`,
 *   `executing`, `progress`, `progress_state`, `executed`, `execution_success`,
 *   `execution_error`, `execution_interrupted`, ...), `data` exactly as ComfyUI sent it.
 * - `preview`: one ComfyUI binary WebSocket frame (preview image, header included), unchanged, so
 *   a facade can forward it to the browser as is.
 * - `status`: the job changed state in the central queue (see {@link JobStatusChange}).
 * - `worker_done`: the worker that held the job let it go (it reported the outcome, confirmed a
 *   cancel, or is gone): nothing more about this attempt will come from it. Every event it relayed
 *   was published before this.
 *
 * Plus `env`: a worker brought a new ComfyUI environment snapshot (see env-snapshots.ts).
 *
 * Listeners run synchronously; a listener that throws is logged by the emitter's caller, never
 * breaks the hub. Keep listeners cheap (queue work, do not await inside).
 */

export interface JobEventMessage {
  kind: 'event';
  jobId: string;
  user: string;
  workerId: string;
  event: { type: string; data: unknown };
  /**
   * The event's identity as its worker numbered it (`<jobId>#<attempt>#<seq>`), when it did: a
   * worker that reconnects sends a job's events again, and the event log keeps each key once.
   */
  key?: string;
}

export interface JobPreviewMessage {
  kind: 'preview';
  jobId: string;
  user: string;
  workerId: string;
  /** The ComfyUI binary frame as ComfyUI sent it (`[u32 BE event type][payload]`). */
  preview: Buffer;
}

/**
 * What happened to a job in the central queue:
 * - `queued`: enqueued (pending).
 * - `assigned`: claimed and sent to a worker (store status `running`, ComfyUI may not have started).
 * - `started`: ComfyUI started executing it.
 * - `requeued`: back to pending (released by a worker, or its lease lapsed).
 * - `updated`: priority or place changed.
 * - `completed` / `failed` / `cancelled`: terminal.
 */
export type JobStatusKind =
  'queued' | 'assigned' | 'started' | 'requeued' | 'updated' | 'completed' | 'failed' | 'cancelled';

export interface JobStatusChange {
  kind: 'status';
  jobId: string;
  user: string;
  status: JobStatusKind;
  /** The job's store status after the change. */
  jobStatus: JobStatus;
  workerId: string | null;
  /** The job as it was right after the change; null for `started` (reported by the worker). */
  job: Job | null;
}

/** See `worker_done` above. */
export interface WorkerDoneMessage {
  kind: 'worker_done';
  jobId: string;
  user: string;
  workerId: string;
}

export type JobBusMessage = JobEventMessage | JobPreviewMessage | JobStatusChange | WorkerDoneMessage;

export interface EnvChange {
  hash: string;
  workerId: string;
}

type Events = {
  message: [JobBusMessage];
  env: [EnvChange];
};

export type Unsubscribe = () => void;

export class JobEventBus {
  private readonly emitter = new EventEmitter<Events>();
  private readonly byUser = new Map<string, Set<(m: JobBusMessage) => void>>();

  constructor(private readonly onListenerError: (err: unknown) => void = () => {}) {
    this.emitter.setMaxListeners(0);
  }

  /** Every message of one user's jobs (a per-user ComfyUI `/ws`). */
  subscribeUser(user: string, listener: (m: JobBusMessage) => void): Unsubscribe {
    let set = this.byUser.get(user);
    if (!set) this.byUser.set(user, (set = new Set()));
    set.add(listener);
    return () => {
      const s = this.byUser.get(user);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.byUser.delete(user);
    };
  }

  /** Every message of every user (dashboard, metrics). */
  subscribeAll(listener: (m: JobBusMessage) => void): Unsubscribe {
    this.emitter.on('message', listener);
    return () => this.emitter.off('message', listener);
  }

  /** Environment snapshot changes (a per-user ComfyUI may drop its cached object_info). */
  onEnv(listener: (e: EnvChange) => void): Unsubscribe {
    this.emitter.on('env', listener);
    return () => this.emitter.off('env', listener);
  }

  /** Number of per-user subscribers (for tests and metrics). */
  userListenerCount(user: string): number {
    return this.byUser.get(user)?.size ?? 0;
  }

  publish(message: JobBusMessage): void {
    for (const l of [...(this.byUser.get(message.user) ?? [])]) this.safely(l, message);
    for (const l of this.emitter.listeners('message')) this.safely(l, message);
  }

  publishEnv(change: EnvChange): void {
    for (const l of this.emitter.listeners('env')) this.safely(l, change);
  }

  private safely<T>(listener: (m: T) => void, message: T): void {
    try {
      listener(message);
    } catch (err) {
      this.onListenerError(err);
    }
  }
}
