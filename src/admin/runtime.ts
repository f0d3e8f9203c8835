import type { Services } from '../services.js';
import type { FrontendStatus } from '../frontend/index.js';
import type { QueueEvent } from '../scheduler/queue-service.js';
import { VERSION } from '../version.js';
import { AlertService, type AlertOptions } from './alerts.js';
import type { AuditLog } from './audit-log.js';
import { CsrfTokens } from './csrf.js';
import { LiveHub } from './live-hub.js';
import { LiveState } from './live-state.js';
import { AdminMetrics } from './metrics.js';
import { Sampler, type SamplerOptions } from './sampler.js';
import type { HealthInfo } from './view-types.js';
import { WorkerWatcher, type WorkerTransition } from './worker-watch.js';
import { registerAutoscaleMetrics } from '../autoscale/metrics.js';
import type { AutoscaleAlert } from '../autoscale/autoscaler.js';

/** Everything the dashboard, metrics and alerts keep for one running app. */
export interface AdminRuntime {
  startedAt: number;
  audit: AuditLog;
  csrf: CsrfTokens;
  state: LiveState;
  live: LiveHub;
  sampler: Sampler;
  watcher: WorkerWatcher;
  alerts: AlertService;
  metrics: AdminMetrics;
  /** Starts timers and listeners (called when the app is ready). */
  start(): void;
  /** Closes dashboards and stops everything (called when the app closes). */
  stop(): Promise<void>;
}

/** Knobs tests turn; production uses the defaults and config. */
export interface AdminRuntimeOptions {
  sampler?: SamplerOptions;
  alerts?: Partial<AlertOptions>;
  liveMinIntervalMs?: number;
  watchIntervalMs?: number;
}

/** `frontend 1.45.0 (from gpu1)`, `FRONTEND_DIR`, ... for the dashboard's footer. */
export function frontendSummary(f: FrontendStatus): string {
  if (f.source === 'dir') return 'FRONTEND_DIR';
  if (f.version) return `${f.version.label} (copied from worker ${f.version.workerId})`;
  return f.mirroring ? 'none yet: copied from the first GPU worker that connects' : 'none (set FRONTEND_DIR)';
}

export async function createAdminRuntime(
  services: Services,
  opts: AdminRuntimeOptions = {},
): Promise<AdminRuntime> {
  const { config, store, queue, bus, logger, connections, broadcast } = services;
  // Every process's workers (the local registry alone with one process); metrics keep the local one.
  const workers = services.workerDirectory;
  const startedAt = Date.now();
  const audit = services.audit;
  const csrf = await CsrfTokens.open(store, services.cluster);
  const watcher = new WorkerWatcher(workers, opts.watchIntervalMs ?? 1000);
  const sampler = new Sampler(
    { store, queue, workers },
    { intervalMs: config.DASHBOARD_SAMPLE_SECONDS * 1000, ...opts.sampler },
  );
  const metrics = new AdminMetrics({
    store,
    queue,
    // Each process reports its own workers, so a worker is counted once across processes.
    workers: services.workers,
    tracker: connections,
    logins: () => services.bcrypt.stats(),
  });
  const cluster = services.cluster;
  const alerts = new AlertService(
    // Several processes: each raises the alert, one posts it.
    {
      store,
      queue,
      workers,
      ...(cluster.shared ? { once: (k: string, ms: number) => cluster.once(k, ms) } : {}),
    },
    {
      webhookUrl: config.ALERT_WEBHOOK_URL,
      topic: config.ALERT_WEBHOOK_TOPIC,
      repeatMs: config.ALERT_REPEAT_MINUTES * 60_000,
      stallMs: config.ALERT_STALL_MINUTES * 60_000,
      diskMinFree: config.ALERT_DISK_MIN_FREE,
      dataDir: config.DATA_DIR,
      maxAttempts: config.MAX_ATTEMPTS,
      publicUrl: config.PUBLIC_URL,
      logger,
      ...opts.alerts,
    },
  );
  const health = (): HealthInfo => ({
    version: VERSION,
    startedAt,
    store: store.backend,
    alertsWebhook: alerts.webhookConfigured,
    metricsProtected: Boolean(config.METRICS_TOKEN),
    recentAlerts: alerts.recent(),
    frontend: frontendSummary(services.frontend.status()),
    ...(services.cluster.shared
      ? {
          cluster: {
            process: services.cluster.processId,
            processes: 1 + services.workerDirectory.processes().length,
          },
        }
      : {}),
  });
  const state = new LiveState({
    store,
    queue,
    workers,
    accounts: services.accounts,
    tracker: connections,
    audit,
    broadcast,
    health,
    autoscale: () => services.autoscaler?.view() ?? null,
    downloads: () => services.models.list(),
    workshopModels: () => services.models.workshop(),
    ...(services.cluster.shared ? { processId: services.cluster.processId } : {}),
    loraQuota: config.LORA_QUOTA,
  });
  const live = new LiveHub(state, sampler, { minIntervalMs: opts.liveMinIntervalMs ?? 250, logger });

  const onQueue = (e: QueueEvent) => {
    if (e.type === 'settings') {
      live.markDirty('queue', 'pending', 'participants');
      return;
    }
    state.noteJob(e.job);
    switch (e.type) {
      case 'enqueued':
        live.markDirty('queue', 'pending', 'participants');
        break;
      case 'updated':
        live.markDirty('pending', 'workers');
        break;
      case 'finished':
        live.markDirty('queue', 'pending', 'workers', 'orphans', 'participants');
        if (e.job.status === 'failed') live.markDirty('failures');
        break;
      default: // claimed, requeued
        live.markDirty('queue', 'pending', 'workers', 'orphans', 'participants');
    }
  };
  const unsubscribes: (() => void)[] = [];
  let participantsTimer: NodeJS.Timeout | undefined;
  let started = false;

  return {
    startedAt,
    audit,
    csrf,
    state,
    live,
    sampler,
    watcher,
    alerts,
    metrics,
    start() {
      if (started) return;
      started = true;
      void audit.load().catch((err: unknown) => logger.error({ err }, 'could not read the audit log'));
      queue.on('event', onQueue);
      unsubscribes.push(() => queue.off('event', onQueue));
      unsubscribes.push(
        bus.subscribeAll((m) => {
          // Progress, current node and ComfyUI starting a job: what the worker cards show. A start
          // also turns a job sent ahead (next) into a running one in the tiles and participants.
          if (m.kind === 'event') live.markDirty('workers');
          else if (m.kind === 'status' && m.status === 'started')
            live.markDirty('workers', 'queue', 'participants');
        }),
      );
      // A worker (re)connecting may bring a new mirrored frontend (shown in the health footer).
      const onWorkers = () => live.markDirty('workers', 'orphans', 'health');
      watcher.on('change', onWorkers);
      unsubscribes.push(() => watcher.off('change', onWorkers));
      // Another process's snapshot arrived: look now rather than at the next tick.
      const onDirectory = () => {
        watcher.check();
        live.markDirty('health'); // how many processes report (pushed only when it changed)
      };
      workers.on('change', onDirectory);
      unsubscribes.push(() => workers.off('change', onDirectory));
      // Alerts about a worker come from the process holding its socket (the others merely see it).
      const onTransition = (t: WorkerTransition) => {
        if (t.worker.process === undefined) alerts.onWorkerTransition(t);
      };
      watcher.on('transition', onTransition);
      unsubscribes.push(() => watcher.off('transition', onTransition));
      // ... except for the workers of a killed process that came back nowhere: one survivor does.
      const onLost = (t: WorkerTransition) => void alerts.onOrphanLost(t);
      workers.on('lost', onLost);
      unsubscribes.push(() => workers.off('lost', onLost));
      const onConnections = () => live.markDirty('participants');
      connections.on('change', onConnections);
      unsubscribes.push(() => connections.off('change', onConnections));
      const onAudit = () => live.markDirty('audit');
      audit.on('entry', onAudit);
      unsubscribes.push(() => audit.off('entry', onAudit));
      const onDownloads = () => live.markDirty('downloads');
      services.models.on('change', onDownloads);
      unsubscribes.push(() => services.models.off('change', onDownloads));
      const onWorkshop = () => live.markDirty('workshopModels');
      services.models.on('workshop', onWorkshop);
      unsubscribes.push(() => services.models.off('workshop', onWorkshop));
      const onBroadcast = () => live.markDirty('broadcast');
      broadcast.on('change', onBroadcast);
      unsubscribes.push(() => broadcast.off('change', onBroadcast));
      const onAlert = (rec: { event: string; delivery: string }) => {
        metrics.alertsSent.inc({ event: rec.event, delivery: rec.delivery });
        live.markDirty('health');
      };
      alerts.on('alert', onAlert);
      unsubscribes.push(() => alerts.off('alert', onAlert));
      const scaler = services.autoscaler;
      if (scaler) {
        unsubscribes.push(registerAutoscaleMetrics(metrics.registry, scaler));
        const onScale = () => live.markDirty('autoscale');
        scaler.on('change', onScale);
        scaler.on('decision', onScale);
        unsubscribes.push(
          () => scaler.off('change', onScale),
          () => scaler.off('decision', onScale),
        );
        const onScaleAlert = (a: AutoscaleAlert) =>
          void alerts
            .notify({
              event: a.event,
              key: `${a.event}:${String(a.details.provider ?? '')}`,
              severity: a.event === 'budget_near' ? 'warning' : 'critical',
              title: a.title,
              message: a.message,
              details: a.details,
            })
            .catch((err: unknown) => logger.error({ err }, 'autoscale alert failed'));
        scaler.on('alert', onScaleAlert);
        unsubscribes.push(() => scaler.off('alert', onScaleAlert));
      }
      // Accounts created with the CLI and a broadcast set through the gateway have no event here.
      participantsTimer = setInterval(() => live.markDirty('participants', 'broadcast', 'health'), 30_000);
      participantsTimer.unref();
      watcher.start();
      sampler.start();
      alerts.start();
    },
    async stop() {
      clearInterval(participantsTimer);
      for (const u of unsubscribes.splice(0)) u();
      live.close();
      watcher.stop();
      sampler.stop();
      metrics.close();
      await alerts.stop();
    },
  };
}
