import { EventEmitter } from 'node:events';
import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { acceptsWork, type WorkerReader } from '../dispatch/worker-registry.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import type { JobStore } from '../store/types.js';
import type { AlertEvent, AlertRecord } from './view-types.js';
import type { WorkerTransition } from './worker-watch.js';

export interface Alert {
  event: AlertEvent;
  /** What the rate limit counts by: the event plus its subject (`worker_lost:gpu1:box`). */
  key: string;
  severity: AlertRecord['severity'];
  title: string;
  message: string;
  details: Record<string, unknown>;
}

export interface AlertOptions {
  /** Where to POST; without one, alerts are only logged and shown on the dashboard. */
  webhookUrl?: string | undefined;
  /** ntfy topic (the body then also carries `topic`, and ntfy priority and tags). */
  topic?: string | undefined;
  /** The same key alerts at most once per this many ms. */
  repeatMs: number;
  /** Pending jobs with no usable worker for this long is a stall. */
  stallMs: number;
  /** Free bytes of `dataDir` below this is "disk nearly full". */
  diskMinFree: number;
  dataDir: string;
  /** The queue's MAX_ATTEMPTS: a job failing after this many claims failed on every attempt. */
  maxAttempts: number;
  /** How often the stall condition is checked. Default 15 s. */
  stallCheckMs?: number;
  /** How often free disk space is checked. Default 60 s. */
  diskCheckMs?: number;
  /** Per-request timeout of the webhook. Default 5 s. */
  timeoutMs?: number;
  /** Public URL of the server, linked from alerts. */
  publicUrl?: string | undefined;
  clock?: () => number;
  logger?: Logger | undefined;
  /** Tests replace the disk check. */
  freeBytes?: (dir: string) => Promise<{ free: number; total: number }>;
}

export interface AlertDeps {
  store: JobStore;
  queue: QueueService;
  workers: WorkerReader;
  /**
   * With several control-plane processes (`ClusterBus.once`): every process sees a lost worker or
   * a stalled queue and raises the alert on its own dashboard, but only the first to claim the
   * alert's key within `repeatMs` posts it to the webhook. Absent: this process is the only one.
   */
  once?: (key: string, ttlMs: number) => Promise<boolean>;
}

const SEVERITY_PRIORITY: Record<AlertRecord['severity'], number> = { info: 3, warning: 4, critical: 5 };
const SEVERITY_TAG: Record<AlertRecord['severity'], string> = {
  info: 'information_source',
  warning: 'warning',
  critical: 'rotating_light',
};
const RECENT = 20;

async function statfsFree(dir: string): Promise<{ free: number; total: number }> {
  const s = await statfs(dir);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

function gb(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
}

/**
 * Sends alerts to an optional webhook (ALERT_WEBHOOK_URL) when something needs the instructor:
 * a worker lost its connection, a job failed on every attempt, the queue stalled (jobs waiting
 * but no usable worker for ALERT_STALL_MINUTES), or DATA_DIR is nearly full.
 *
 * The body is one JSON object that common receivers understand as is: Slack-compatible incoming
 * webhooks (and Mattermost, Rocket.Chat, Discord's /slack endpoint) read `text`; ntfy reads
 * `topic`, `title`, `message`, `priority`, `tags` when posted to its root URL with a topic; any other
 * receiver gets `event`, `severity`, `details` and `time` too.
 *
 * Each alert key (event + subject) is sent at most once per `repeatMs`; repeats in between are
 * counted and the count goes out with the next alert of that key, so a flapping worker cannot
 * flood anyone. Every alert, sent or not, is kept in a short list the dashboard shows. With several
 * control-plane processes each raises it but only one posts it (see {@link AlertDeps.once}).
 */
export class AlertService extends EventEmitter<{ alert: [AlertRecord] }> {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  private readonly recentAlerts: AlertRecord[] = [];
  private readonly clock: () => number;
  private stallSince: number | null = null;
  private stallAlerted = false;
  private diskAlerted = false;
  private stallTimer: NodeJS.Timeout | undefined;
  private diskTimer: NodeJS.Timeout | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly onQueue = (e: QueueEvent) => this.onQueueEvent(e);

  constructor(
    private readonly deps: AlertDeps,
    private readonly opts: AlertOptions,
  ) {
    super();
    this.setMaxListeners(0);
    this.clock = opts.clock ?? Date.now;
  }

  get webhookConfigured(): boolean {
    return Boolean(this.opts.webhookUrl);
  }

  start(): void {
    if (this.stallTimer) return;
    this.deps.queue.on('event', this.onQueue);
    this.stallTimer = setInterval(
      () => void this.checkStall().catch(() => {}),
      this.opts.stallCheckMs ?? 15_000,
    );
    this.stallTimer.unref();
    this.diskTimer = setInterval(
      () => void this.checkDisk().catch(() => {}),
      this.opts.diskCheckMs ?? 60_000,
    );
    this.diskTimer.unref();
    void this.checkDisk().catch(() => {});
  }

  /** Stops the checks and waits for webhook calls still under way. */
  async stop(): Promise<void> {
    this.deps.queue.off('event', this.onQueue);
    clearInterval(this.stallTimer);
    clearInterval(this.diskTimer);
    this.stallTimer = this.diskTimer = undefined;
    await Promise.allSettled([...this.inflight]);
  }

  /** The most recent alerts, newest first. */
  recent(): AlertRecord[] {
    return [...this.recentAlerts].reverse();
  }

  /** A worker changed status: its connection going away (while not draining) is "worker lost". */
  onWorkerTransition(t: WorkerTransition): void {
    void this.workerLost(t);
  }

  private async workerLost(t: WorkerTransition): Promise<void> {
    if (t.to !== 'offline' || t.from === 'offline' || t.from === 'draining') return;
    const w = t.worker;
    const held = [...w.held.values()].map((h) => h.jobId);
    await this.notify({
      event: 'worker_lost',
      key: `worker_lost:${w.id}`,
      severity: 'warning',
      title: `GPU worker ${w.name} lost`,
      message:
        `Worker ${w.id} (${w.devices.map((d) => d.name).join(', ') || 'GPU'}) disconnected while ${t.from}.` +
        (held.length > 0 ? ` Its ${held.length} job(s) return to the queue when their leases lapse.` : ''),
      details: { workerId: w.id, name: w.name, previousStatus: t.from, jobs: held },
    });
  }

  /**
   * A worker of a killed control-plane process that came back on no other process (the worker
   * directory's `lost`, seen by every surviving process): raised by the first process to claim
   * it, so it is raised once, as the holder of its socket would have. A process that cannot
   * reach Redis stays quiet: it cannot tell a lost worker from its own isolation.
   */
  async onOrphanLost(t: WorkerTransition): Promise<void> {
    if (this.deps.once) {
      const key = `orphan_lost:${t.worker.id}:${t.worker.connectedAt}`;
      if (!(await this.deps.once(key, this.opts.repeatMs).catch(() => false))) return;
    }
    await this.workerLost(t);
  }

  private onQueueEvent(e: QueueEvent): void {
    // Another process's event: that process alerts.
    if (e.origin === 'remote' || e.type !== 'finished' || e.job.status !== 'failed') return;
    const j = e.job;
    const reason = j.error?.reason ?? 'unknown';
    // A ComfyUI error fails a job at once: the participant's own problem, shown on the dashboard.
    // Alert only when every attempt was used up (worker_lost after MAX_ATTEMPTS claims, or a failure
    // on the last allowed attempt).
    if (reason !== 'worker_lost' && j.attempts < this.opts.maxAttempts) return;
    void this.notify({
      event: 'job_failed',
      key: 'job_failed',
      severity: 'warning',
      title: `A job of ${j.user} failed on every attempt`,
      message: `Job #${j.seq} of ${j.user} failed after ${j.attempts} attempt(s): ${reason}: ${(j.error?.message ?? '').slice(0, 300)}`,
      details: {
        jobId: j.id,
        user: j.user,
        attempts: j.attempts,
        reason,
        node: j.error?.nodeType ?? j.error?.nodeId ?? null,
      },
    });
  }

  /** Jobs waiting, the queue not paused, and no connected, healthy, non-draining worker. */
  async checkStall(): Promise<void> {
    const now = this.clock();
    const usable = this.deps.workers.online().filter(acceptsWork).length;
    let waiting = 0;
    if (usable === 0) {
      const [settings, counts] = await Promise.all([
        this.deps.store.getSettings(),
        this.deps.store.countByStatus(),
      ]);
      waiting = settings.paused ? 0 : counts.pending;
    }
    if (usable > 0 || waiting === 0) {
      this.stallSince = null;
      this.stallAlerted = false;
      return;
    }
    this.stallSince ??= now;
    if (this.stallAlerted || now - this.stallSince < this.opts.stallMs) return;
    this.stallAlerted = true;
    const minutes = Math.round((now - this.stallSince) / 60_000);
    await this.notify({
      event: 'queue_stalled',
      key: 'queue_stalled',
      severity: 'critical',
      title: 'Queue stalled: no GPU worker',
      message: `${waiting} job(s) have been waiting ${minutes} min with no usable GPU worker (none connected, healthy and not draining).`,
      details: { pending: waiting, minutes, workersKnown: this.deps.workers.all().length },
    });
  }

  /** Free space of DATA_DIR below the threshold. */
  async checkDisk(): Promise<void> {
    const { free, total } = await (this.opts.freeBytes ?? statfsFree)(this.opts.dataDir);
    if (free >= this.opts.diskMinFree) {
      this.diskAlerted = false;
      return;
    }
    if (this.diskAlerted) return;
    this.diskAlerted = true;
    await this.notify({
      event: 'disk_low',
      key: 'disk_low',
      severity: 'critical',
      title: 'Disk nearly full',
      message: `Only ${gb(free)} of ${gb(total)} free in ${this.opts.dataDir} (alert below ${gb(this.opts.diskMinFree)}). Outputs and uploads fail when it is full.`,
      details: {
        dataDir: this.opts.dataDir,
        freeBytes: free,
        totalBytes: total,
        thresholdBytes: this.opts.diskMinFree,
      },
    });
  }

  /** Sends (or counts, within the rate limit) one alert. Never throws. */
  async notify(alert: Alert): Promise<AlertRecord> {
    const now = this.clock();
    const prev = this.last.get(alert.key);
    if (prev && now - prev.at < this.opts.repeatMs) {
      prev.suppressed += 1;
      return this.remember(alert, now, 'suppressed');
    }
    const suppressed = prev?.suppressed ?? 0;
    this.last.set(alert.key, { at: now, suppressed: 0 });
    const log = this.opts.logger;
    log?.warn({ event: alert.event, key: alert.key, details: alert.details }, `alert: ${alert.title}`);
    if (!this.opts.webhookUrl) return this.remember(alert, now, 'local');
    // Another process already sent this one: shown here, not posted twice. When the cluster cannot
    // be asked (Redis down), post anyway: twice is better than never.
    const ours = this.deps.once
      ? await this.deps.once(`alert:${alert.key}`, this.opts.repeatMs).catch(() => true)
      : true;
    if (!ours) return this.remember(alert, now, 'elsewhere');
    const p = this.post(alert, now, suppressed);
    this.inflight.add(p);
    try {
      const ok = await p;
      return this.remember(alert, now, ok ? 'sent' : 'failed');
    } finally {
      this.inflight.delete(p);
    }
  }

  /** The JSON body: Slack-compatible `text`, ntfy fields, and everything for generic receivers. */
  body(alert: Alert, now: number, suppressed = 0): Record<string, unknown> {
    const more = suppressed > 0 ? ` (${suppressed} more like this since the last alert)` : '';
    const link = this.opts.publicUrl ? ` ${this.opts.publicUrl.replace(/\/$/, '')}/admin/` : '';
    const message = `${alert.message}${more}`;
    const body: Record<string, unknown> = {
      text: `[comfy-multi] ${alert.title}: ${message}${link}`,
      title: `comfy-multi: ${alert.title}`,
      message,
      severity: alert.severity,
      event: alert.event,
      details: { ...alert.details, ...(suppressed > 0 ? { suppressedSinceLast: suppressed } : {}) },
      time: new Date(now).toISOString(),
    };
    if (this.opts.topic) {
      body.topic = this.opts.topic;
      body.priority = SEVERITY_PRIORITY[alert.severity];
      body.tags = [SEVERITY_TAG[alert.severity], 'comfy-multi'];
      if (this.opts.publicUrl) body.click = `${this.opts.publicUrl.replace(/\/$/, '')}/admin/`;
    }
    return body;
  }

  private async post(alert: Alert, now: number, suppressed: number): Promise<boolean> {
    const url = this.opts.webhookUrl!;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(this.body(alert, now, suppressed)),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) {
        this.opts.logger?.error(
          { event: alert.event, status: res.status },
          'alert webhook refused the alert',
        );
        return false;
      }
      return true;
    } catch (err) {
      this.opts.logger?.error(
        { event: alert.event, err: (err as Error).message },
        'alert webhook unreachable',
      );
      return false;
    }
  }

  private remember(alert: Alert, now: number, delivery: AlertRecord['delivery']): AlertRecord {
    const rec: AlertRecord = {
      at: now,
      event: alert.event,
      severity: alert.severity,
      title: alert.title,
      message: alert.message,
      delivery,
    };
    this.recentAlerts.push(rec);
    if (this.recentAlerts.length > RECENT) this.recentAlerts.shift();
    this.emit('alert', rec);
    return rec;
  }
}
