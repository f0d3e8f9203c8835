import { EventEmitter } from 'node:events';
import {
  statusOf,
  type WorkerEntry,
  type WorkerReader,
  type WorkerStatus,
} from '../dispatch/worker-registry.js';

/** Rounded so that VRAM jitter does not count as a change. */
const VRAM_STEP = 256 * 1024 ** 2;

function fingerprint(w: WorkerEntry, heartbeats: boolean): string {
  const held = [...w.held.values()]
    .map(
      (h) =>
        `${h.jobId}/${h.attempt}/${h.state}/${h.node ?? ''}/${h.progress?.value ?? ''}/${h.progress?.max ?? ''}`,
    )
    .join(',');
  const vram = w.devices.map(
    (d) => `${Math.round(d.vramFree / VRAM_STEP)}/${Math.round(d.vramTotal / VRAM_STEP)}`,
  );
  return [
    statusOf(w),
    w.draining,
    w.healthy,
    heartbeats ? w.lastHeartbeatAt : '',
    w.warmModels.join('|'),
    vram.join(','),
    held,
  ].join(';');
}

export interface WorkerTransition {
  worker: WorkerEntry;
  from: WorkerStatus;
  to: WorkerStatus;
}

/**
 * Watches the in-memory worker registry (which has no events of its own) and reports changes:
 * `change` when anything the dashboard shows changed, `transition` for each status change (e.g.
 * busy → offline when a worker's connection is lost). Comparing a few strings per worker per
 * tick is cheap; call {@link check} to look at once (e.g. right after a socket closed).
 */
export class WorkerWatcher extends EventEmitter<{ change: []; transition: [WorkerTransition] }> {
  private readonly prints = new Map<string, string>();
  private readonly statuses = new Map<string, WorkerStatus>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly registry: WorkerReader,
    private readonly intervalMs = 1000,
    /** Whether a heartbeat alone counts as a change (the dashboard shows "last heard"). */
    private readonly heartbeats = true,
  ) {
    super();
    this.setMaxListeners(0);
  }

  start(): void {
    if (this.timer) return;
    this.check();
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  check(): void {
    let changed = false;
    const seen = new Set<string>();
    for (const w of this.registry.all()) {
      seen.add(w.id);
      const print = fingerprint(w, this.heartbeats);
      if (this.prints.get(w.id) !== print) {
        this.prints.set(w.id, print);
        changed = true;
      }
      const status = statusOf(w);
      const before = this.statuses.get(w.id);
      this.statuses.set(w.id, status);
      if (before !== undefined && before !== status)
        this.emit('transition', { worker: w, from: before, to: status });
    }
    for (const id of [...this.prints.keys()]) {
      if (seen.has(id)) continue;
      this.prints.delete(id);
      this.statuses.delete(id);
      changed = true;
    }
    if (changed) this.emit('change');
  }
}
