import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { statusOf, type WorkerRegistry } from '../dispatch/worker-registry.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import { JOB_STATUSES, type JobStore } from '../store/types.js';
import type { BcryptStats } from '../auth/bcrypt-pool.js';
import type { ConnectionTracker, SocketKind } from './connection-tracker.js';

const SOCKET_KINDS: SocketKind[] = ['participant', 'worker', 'admin', 'other'];
/** Seconds: from a few seconds for a small image to an hour for a long video. */
const DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600];

export interface MetricsDeps {
  store: JobStore;
  queue: QueueService;
  workers: WorkerRegistry;
  tracker: ConnectionTracker;
  /** The bcrypt pool's counters (password checks, logins refused as busy). */
  logins?: () => BcryptStats;
}

/**
 * The Prometheus metrics of one control-plane process, in their own prom-client Registry (never the
 * global one, so several apps in one process — tests — do not collide). Gauges are read from the
 * store and the worker registry at scrape time; counters and histograms move with queue events.
 * With several processes, worker, socket and online-participant gauges describe this process's
 * own connections only (the local registry, never the merged directory), so each is reported once
 * and `sum()` over instances gives the whole; queue gauges read the shared store and are the same
 * on every process (use `max()`).
 */
export class AdminMetrics {
  readonly registry = new Registry();
  readonly alertsSent: Counter<'event' | 'delivery'>;
  private readonly submitted: Counter;
  private readonly outcomes: Counter<'outcome' | 'reason'>;
  private readonly requeues: Counter;
  private readonly waitSeconds: Histogram;
  private readonly runSeconds: Histogram<'outcome'>;
  private readonly onQueue = (e: QueueEvent) => this.observe(e);

  constructor(private readonly deps: MetricsDeps) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'comfy_multi_' });

    new Gauge({
      name: 'comfy_multi_store_up',
      help: 'Whether the state store answered a ping during this scrape (1) or not (0).',
      registers,
      collect: async function (this: Gauge) {
        try {
          await deps.store.ping();
          this.set(1);
        } catch {
          this.set(0);
        }
      },
    });

    new Gauge({
      name: 'comfy_multi_jobs',
      help: 'Jobs in the central queue by status (pending = waiting, running = on a GPU).',
      labelNames: ['status'],
      registers,
      collect: async function (this: Gauge<'status'>) {
        const counts = await deps.store.countByStatus().catch(() => null);
        this.reset();
        if (!counts) return;
        for (const s of JOB_STATUSES) this.set({ status: s }, counts[s]);
      },
    });

    new Gauge({
      name: 'comfy_multi_user_jobs',
      help: 'Waiting and running jobs per user.',
      labelNames: ['user', 'status'],
      registers,
      collect: async function (this: Gauge<'user' | 'status'>) {
        const rows = await deps.store.userCounters().catch(() => []);
        this.reset();
        for (const r of rows) {
          this.set({ user: r.user, status: 'pending' }, r.pending);
          this.set({ user: r.user, status: 'running' }, r.running);
        }
      },
    });

    new Gauge({
      name: 'comfy_multi_user_gpu_seconds',
      help: 'GPU time used by each user’s finished jobs, in seconds (claimed to finished).',
      labelNames: ['user'],
      registers,
      collect: async function (this: Gauge<'user'>) {
        const rows = await deps.store.userCounters().catch(() => []);
        this.reset();
        for (const r of rows) this.set({ user: r.user }, r.gpuMs / 1000);
      },
    });

    const logins = deps.logins;
    if (logins) {
      new Counter({
        name: 'comfy_multi_login_password_checks_total',
        help: 'Passwords checked with bcrypt (logins that passed the throttle and the queue).',
        registers,
        collect: function (this: Counter) {
          this.reset();
          this.inc(logins().compares);
        },
      });
      new Counter({
        name: 'comfy_multi_login_busy_total',
        help: 'Logins refused with LOGIN_BUSY because too many password checks were waiting.',
        registers,
        collect: function (this: Counter) {
          this.reset();
          this.inc(logins().refused);
        },
      });
      new Gauge({
        name: 'comfy_multi_login_checks_waiting',
        help: 'Password checks waiting for a free bcrypt thread right now.',
        registers,
        collect: function (this: Gauge) {
          this.set(logins().queued);
        },
      });
    }

    new Gauge({
      name: 'comfy_multi_queue_paused',
      help: 'Whether an instructor paused the queue (1) or not (0).',
      registers,
      collect: async function (this: Gauge) {
        const s = await deps.store.getSettings().catch(() => null);
        if (s) this.set(s.paused ? 1 : 0);
      },
    });

    const workerGauge = (
      name: string,
      help: string,
      value: (w: ReturnType<WorkerRegistry['all']>[number]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['worker'],
        registers,
        collect: function (this: Gauge<'worker'>) {
          this.reset();
          for (const w of deps.workers.all()) this.set({ worker: w.id }, value(w));
        },
      });
    workerGauge(
      'comfy_multi_worker_up',
      'Whether a known worker is connected and healthy (1) or not (0).',
      (w) => (['idle', 'busy', 'draining'].includes(statusOf(w)) ? 1 : 0),
    );
    workerGauge(
      'comfy_multi_worker_busy',
      'Whether the worker is running a job right now (1) or not (0).',
      (w) => (statusOf(w) !== 'offline' && [...w.held.values()].some((h) => h.state === 'running') ? 1 : 0),
    );
    workerGauge('comfy_multi_worker_draining', 'Whether the worker is draining (1) or not (0).', (w) =>
      w.draining || w.stopping ? 1 : 0,
    );
    workerGauge(
      'comfy_multi_worker_held_jobs',
      'Jobs the worker holds (running plus prefetched).',
      (w) => w.held.size,
    );
    workerGauge('comfy_multi_worker_vram_total_bytes', 'Total VRAM of the worker’s GPUs, in bytes.', (w) =>
      w.devices.reduce((s, d) => s + d.vramTotal, 0),
    );
    workerGauge('comfy_multi_worker_vram_used_bytes', 'VRAM in use on the worker’s GPUs, in bytes.', (w) =>
      Math.max(
        0,
        w.devices.reduce((s, d) => s + d.vramTotal - d.vramFree, 0),
      ),
    );

    new Gauge({
      name: 'comfy_multi_websocket_clients',
      help: 'Open WebSocket connections by kind: participant ComfyUI tabs, worker agents, dashboards.',
      labelNames: ['kind'],
      registers,
      collect: function (this: Gauge<'kind'>) {
        const c = deps.tracker.clients();
        for (const k of SOCKET_KINDS) this.set({ kind: k }, c[k]);
      },
    });

    new Gauge({
      name: 'comfy_multi_participants_online',
      help: 'Users with at least one ComfyUI tab open on this process.',
      registers,
      collect: function (this: Gauge) {
        // Each process reports its own tabs (and workers, sockets), so a sum over instances is right.
        this.set(deps.tracker.localOnlineUsers().length);
      },
    });

    this.submitted = new Counter({
      name: 'comfy_multi_jobs_submitted_total',
      help: 'Jobs accepted into the queue.',
      registers,
    });
    this.outcomes = new Counter({
      name: 'comfy_multi_job_outcomes_total',
      help: 'Jobs that ended, by outcome (completed, failed, cancelled) and, for failures, reason.',
      labelNames: ['outcome', 'reason'],
      registers,
    });
    this.requeues = new Counter({
      name: 'comfy_multi_job_requeues_total',
      help: 'Jobs that went back to the queue (released by a worker, or its lease lapsed).',
      registers,
    });
    this.waitSeconds = new Histogram({
      name: 'comfy_multi_job_wait_seconds',
      help: 'Time from submission until a worker first took the job.',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.runSeconds = new Histogram({
      name: 'comfy_multi_job_run_seconds',
      help: 'Time from a worker taking the job until it ended, by outcome.',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.alertsSent = new Counter({
      name: 'comfy_multi_alerts_total',
      help: 'Alerts raised, by event and delivery (sent, failed, suppressed by the rate limit, local, elsewhere: posted by another process).',
      labelNames: ['event', 'delivery'],
      registers,
    });
    for (const o of ['completed', 'failed', 'cancelled']) this.outcomes.inc({ outcome: o, reason: '' }, 0);

    deps.queue.on('event', this.onQueue);
  }

  /** Stops listening to the queue. */
  close(): void {
    this.deps.queue.off('event', this.onQueue);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text. prom-client writes NaN as `Nan`; the format spells it `NaN`. */
  async text(): Promise<string> {
    return (await this.registry.metrics()).replace(/ Nan$/gm, ' NaN');
  }

  private observe(e: QueueEvent): void {
    // Another process's event: that process counts it.
    if (e.origin === 'remote') return;
    switch (e.type) {
      case 'enqueued':
        this.submitted.inc();
        return;
      case 'claimed':
        if (e.job.attempts === 1 && e.job.startedAt !== null) {
          this.waitSeconds.observe(Math.max(0, e.job.startedAt - e.job.createdAt) / 1000);
        }
        return;
      case 'requeued':
        this.requeues.inc();
        return;
      case 'finished': {
        const j = e.job;
        const outcome = j.status;
        if (outcome !== 'completed' && outcome !== 'failed' && outcome !== 'cancelled') return;
        this.outcomes.inc({
          outcome,
          reason: outcome === 'failed' ? (j.error?.reason ?? 'unknown').slice(0, 40) : '',
        });
        if (j.startedAt !== null && j.finishedAt !== null) {
          this.runSeconds.observe({ outcome }, Math.max(0, j.finishedAt - j.startedAt) / 1000);
        }
        return;
      }
      default:
        return;
    }
  }
}
