import { EventEmitter } from 'node:events';
import type { WorkerReader } from '../dispatch/worker-registry.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import type { JobStore } from '../store/types.js';
import type { SamplePoint } from './view-types.js';

export interface SamplerOptions {
  /** One chart point per interval. Default 10 s. */
  intervalMs?: number;
  /** How often workers are looked at within an interval (for the busy share). Default 1 s. */
  tickMs?: number;
  /** How much history is kept. Default 6 hours. */
  keepMs?: number;
  clock?: () => number;
}

/**
 * The dashboard's time series, in memory: every interval (10 s) one point with the queue depth,
 * the age of the oldest waiting job, the average wait of the jobs that started in the interval,
 * and each worker's busy share (how many of the 1 s ticks it was running a job). Keeps ~6 hours.
 */
export class Sampler extends EventEmitter<{ sample: [SamplePoint] }> {
  readonly intervalMs: number;
  private readonly tickMs: number;
  private readonly keep: number;
  private readonly clock: () => number;
  private readonly points: SamplePoint[] = [];
  private busyTicks = new Map<string, number>();
  private ticks = 0;
  private waits: number[] = [];
  private tickTimer: NodeJS.Timeout | undefined;
  private sampleTimer: NodeJS.Timeout | undefined;
  private readonly onQueue = (e: QueueEvent) => {
    if (e.type === 'claimed' && e.job.attempts === 1 && e.job.startedAt !== null) {
      this.waits.push(Math.max(0, e.job.startedAt - e.job.createdAt) / 1000);
    }
  };

  constructor(
    private readonly deps: { store: JobStore; queue: QueueService; workers: WorkerReader },
    opts: SamplerOptions = {},
  ) {
    super();
    this.setMaxListeners(0);
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.tickMs = opts.tickMs ?? 1000;
    this.keep = Math.ceil((opts.keepMs ?? 6 * 3_600_000) / this.intervalMs);
    this.clock = opts.clock ?? Date.now;
  }

  start(): void {
    if (this.tickTimer) return;
    this.deps.queue.on('event', this.onQueue);
    this.tick();
    this.tickTimer = setInterval(() => this.tick(), this.tickMs);
    this.tickTimer.unref();
    this.sampleTimer = setInterval(() => {
      this.sample().catch(() => {
        /* the store is away; the next interval tries again */
      });
    }, this.intervalMs);
    this.sampleTimer.unref();
  }

  stop(): void {
    this.deps.queue.off('event', this.onQueue);
    clearInterval(this.tickTimer);
    clearInterval(this.sampleTimer);
    this.tickTimer = this.sampleTimer = undefined;
  }

  /** Looks at every connected worker once: is it running a job right now? */
  tick(): void {
    this.ticks += 1;
    for (const w of this.deps.workers.online()) {
      const running = [...w.held.values()].some((h) => h.state === 'running');
      this.busyTicks.set(w.id, (this.busyTicks.get(w.id) ?? 0) + (running ? 1 : 0));
    }
  }

  /** Closes the current interval: appends a point and emits it. */
  async sample(): Promise<SamplePoint> {
    const now = this.clock();
    const [counts, oldest] = await Promise.all([
      this.deps.store.countByStatus(),
      this.deps.store.listJobs({ status: 'pending', order: 'asc', limit: 1 }),
    ]);
    const ticks = Math.max(1, this.ticks);
    const busy: Record<string, number> = {};
    for (const [id, n] of this.busyTicks) busy[id] = Math.round((n / ticks) * 1000) / 1000;
    const waits = this.waits;
    const first = oldest.jobs[0];
    const point: SamplePoint = {
      t: now,
      pending: counts.pending,
      running: counts.running,
      waitMax: first ? Math.round(Math.max(0, now - first.createdAt) / 1000) : null,
      waitAvg:
        waits.length > 0 ? Math.round((waits.reduce((s, w) => s + w, 0) / waits.length) * 10) / 10 : null,
      busy,
    };
    this.busyTicks = new Map();
    this.ticks = 0;
    this.waits = [];
    this.points.push(point);
    if (this.points.length > this.keep) this.points.splice(0, this.points.length - this.keep);
    this.emit('sample', point);
    return point;
  }

  /** Every kept point, oldest first. */
  series(): SamplePoint[] {
    return [...this.points];
  }
}
