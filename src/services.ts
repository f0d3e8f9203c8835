import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import type { JobStore } from './store/types.js';
import type { RedisStore } from './store/redis/redis-store.js';
import { AccountService } from './auth/account-service.js';
import { Authenticator } from './auth/authenticator.js';
import { MemoryLoginLimiter, type LoginLimiter, type LoginLimits } from './auth/login-throttle.js';
import { BcryptPool } from './auth/bcrypt-pool.js';
import { BCRYPT_COST } from './auth/passwords.js';
import { SessionRevocations } from './auth/session-revocations.js';
import { SessionSigner } from './auth/sessions.js';
import { QueueService, type QueueEvent } from './scheduler/queue-service.js';
import { requiredModelPaths } from './comfy/model-requirements.js';
import type { FileStore } from './files/file-store.js';
import { openFileStore } from './files/index.js';
import { WorkerTokenService } from './auth/worker-tokens.js';
import { JobEventBus } from './dispatch/job-event-bus.js';
import { WorkerRegistry } from './dispatch/worker-registry.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import { OutputsInFlight } from './dispatch/outputs-in-flight.js';
import { WorkerHub } from './dispatch/worker-hub.js';
import { ModelDownloadService } from './dispatch/model-downloads.js';
import { BroadcastService } from './broadcast/broadcast.js';
import { ConnectionTracker } from './admin/connection-tracker.js';
import { AuditLog } from './admin/audit-log.js';
import { openFrontend, type FrontendCache, type FrontendSite } from './frontend/index.js';
import { FrontendShare } from './frontend/frontend-share.js';
import { createAutoscaler, type Autoscaler } from './autoscale/index.js';
import { openTemplateLibrary, type TemplateLibrary } from './templates/library.js';
import { WorkshopTemplates } from './templates/workshop-templates.js';
import { openClusterBus, type ClusterBus } from './cluster/index.js';
import { recoverMissedEvents } from './gateway/event-recovery.js';
import { openEventRelay, type EventLog, type EventRelay } from './cluster/events.js';
import { WorkerDirectory, type WorkerDirectoryOptions } from './cluster/worker-directory.js';
import { WorkerCommands } from './cluster/worker-commands.js';
import { ModelDownloadRelay } from './cluster/model-download-relay.js';

/** Everything the HTTP layer needs, built once from config and a store. Tests build their own. */
export interface Services {
  config: Config;
  store: JobStore;
  logger: Logger;
  accounts: AccountService;
  auth: Authenticator;
  /** Bounded bcrypt work (logins, new passwords); closed with the app. */
  bcrypt: BcryptPool;
  queue: QueueService;
  /** Users' files (inputs, outputs, temp, userdata). */
  files: FileStore;
  /** Live job events, previews and status changes, for per-user `/ws` and the dashboard. */
  bus: JobEventBus;
  /** This process's connected workers (the dispatcher and hub act on these sockets). */
  workers: WorkerRegistry;
  /**
   * Every process's workers (and participants' open tabs) for readers: dashboard, `/api/v1/workers`,
   * status, banner, autoscaler. Just the local registry with one process. Started with the app.
   */
  workerDirectory: WorkerDirectory;
  /** Instructor commands for a worker (drain), run by the process holding its socket. */
  workerCommands: WorkerCommands;
  workerTokens: WorkerTokenService;
  /** Pushes jobs to workers; started and stopped with the app (see app.ts). */
  dispatcher: Dispatcher;
  /** The worker WebSocket endpoint (`/worker/v1/ws`). */
  hub: WorkerHub;
  /**
   * One process: job outputs announced before they are stored, which `/view` waits for
   * (`welcome.earlyOutputs`). Null with several processes (an upload may land on another one).
   */
  inFlight: OutputsInFlight | null;
  /** Model files downloaded onto workers (`/api/v1/models/downloads`, the dashboard). */
  models: ModelDownloadService;
  /**
   * Model downloads for workers on other processes, and every process's copy of the records
   * (src/cluster/model-download-relay.ts). Started with the app; a no-op with one process.
   */
  modelRelay: ModelDownloadRelay;
  /** The instructor's message in every participant's ComfyUI banner (get/set; `change` events). */
  broadcast: BroadcastService;
  /** Who did what: every instructor action, from the dashboard or a participant page. */
  audit: AuditLog;
  /** Open WebSockets by kind, and which participants have a ComfyUI tab open (fed in src/admin). */
  connections: ConnectionTracker;
  /** The ComfyUI frontend served at /<user>/: FRONTEND_DIR, or mirrored from workers. */
  frontend: FrontendSite;
  /** Mirrored frontend versions on disk; null with FRONTEND_DIR or FRONTEND_MIRROR=false. */
  frontendCache: FrontendCache | null;
  /**
   * Mirrored versions shared with the other processes through the file store and the store (see
   * frontend-share.ts); null for a single process or without a mirror. Closed with the app.
   */
  frontendShare: FrontendShare | null;
  /** ComfyUI's template library mirrored from workers; null with TEMPLATE_LIBRARY_MIRROR=false. */
  templateLibrary: TemplateLibrary | null;
  /** The instructor's workshop templates (dashboard-managed, in the store). */
  workshopTemplates: WorkshopTemplates;
  /** GPUs on demand (AUTOSCALE_PROVIDER); null when off. Started and stopped with the app. */
  autoscaler: Autoscaler | null;
  /**
   * Messages, leases and send-once keys between control-plane processes sharing one store
   * (src/cluster); the no-op single-process bus with SQLite. Closed with the app.
   */
  cluster: ClusterBus;
  /**
   * Queue events and job-bus messages to and from the other processes, and the durable per-user
   * event log a reconnecting `/ws` resumes from (src/cluster/event-relay.ts); null with one process.
   * Closed with the app.
   */
  events: EventRelay | null;
}

export interface ServiceOptions {
  /** Use this bus instead of opening one from config (tests join several to a MemoryClusterHub). */
  cluster?: ClusterBus;
  /** With a shared `cluster`: this event log instead of one in Redis (tests share a MemoryEventLog). */
  eventLog?: EventLog;
  /** Refresh and expiry of the worker directory's snapshots (tests shorten them). */
  presence?: WorkerDirectoryOptions;
  /** How long a command waits for the process holding the worker (default 5 s). */
  commandTimeoutMs?: number;
}

export async function createServices(
  config: Config,
  store: JobStore,
  logger: Logger,
  opts: ServiceOptions = {},
): Promise<Services> {
  const cluster = opts.cluster ?? (await openClusterBus(config, logger));
  const bcrypt = new BcryptPool({
    threads: config.LOGIN_BCRYPT_THREADS,
    maxQueued: config.LOGIN_QUEUE_MAX,
    rounds: BCRYPT_COST,
  });
  const accounts = new AccountService(store, Date.now, bcrypt);
  const limits: LoginLimits = {
    pair: { maxFailures: config.LOGIN_MAX_FAILURES, windowMs: config.LOGIN_WINDOW_SECONDS * 1000 },
    address: {
      maxFailures: config.LOGIN_ADDRESS_MAX_FAILURES,
      windowMs: config.LOGIN_ADDRESS_WINDOW_SECONDS * 1000,
    },
    account: {
      maxFailures: config.LOGIN_ACCOUNT_MAX_FAILURES,
      windowMs: config.LOGIN_ACCOUNT_WINDOW_SECONDS * 1000,
    },
    trustedPairMs: 12 * 3_600_000,
  };
  // With Redis the buckets live there, so every process sharing the store counts the same failures.
  const throttle = await openLoginLimiter(store, config, limits);
  const auth = new Authenticator(
    accounts,
    throttle,
    config.API_TOKENS,
    await SessionSigner.open(store, cluster),
    new SessionRevocations(store),
  );
  const queue = new QueueService(store, {
    leaseMs: config.LEASE_MS,
    maxAttempts: config.MAX_ATTEMPTS,
    affinityWindow: config.AFFINITY_WINDOW,
    affinityMaxSkips: config.AFFINITY_MAX_SKIPS,
    historyRetentionMs: config.HISTORY_RETENTION_DAYS * 86_400_000,
    // Model affinity uses the same requirement sets as the submit check and doctor.
    modelsOf: (prompt) => requiredModelPaths(prompt),
    logger,
  });
  const files = await openFileStore(config);
  const bus = new JobEventBus((err) => logger.error({ err }, 'job event listener failed'));
  const workers = new WorkerRegistry({ retentionMs: config.WORKER_OFFLINE_RETENTION_MINUTES * 60_000 });
  const workerTokens = new WorkerTokenService(store, config.WORKER_TOKENS);
  // Set once the event relay is open (several processes with a durable event log).
  let recoverEvents: ReturnType<typeof recoverMissedEvents> | null = null;
  const inFlight = cluster.shared ? null : new OutputsInFlight();
  // A job that is over (recorded, failed, handed back, lost) uploads nothing more: `/view` stops waiting.
  if (inFlight)
    queue.on('event', (e: QueueEvent) => {
      if (e.type === 'finished' || e.type === 'requeued') inFlight.settled(e.job.id);
    });
  const dispatcher = new Dispatcher(queue, workers, bus, logger, {
    inFlight: inFlight ?? undefined,
    files,
    clustered: cluster.shared,
    recoverEvents: (job, workerId, seen, o) =>
      recoverEvents ? recoverEvents(job, workerId, seen, o) : Promise.resolve([]),
    settle: () => events?.flushed() ?? Promise.resolve(),
  });
  const { site: frontend, cache: frontendCache } = await openFrontend(config, logger);
  const models = new ModelDownloadService(workers, logger, {
    store,
    onWorkerReady: () => dispatcher.trigger(),
  });
  const frontendShare =
    cluster.shared && frontendCache
      ? new FrontendShare({
          cache: frontendCache,
          files,
          store,
          cluster,
          logger,
          keepVersions: config.FRONTEND_KEEP_VERSIONS,
        })
      : null;
  // Syncs in the background: a process starts at once and serves the frontend once copied.
  frontendShare?.start();
  const templateLibrary = await openTemplateLibrary(config, logger);
  const hub = new WorkerHub(
    { store, dispatcher, bus, logger, models, verifyTokenHash: (hash) => workerTokens.verifyHash(hash) },
    {
      // At least three heartbeats per lease, so one lost beat never costs a job.
      leaseMs: config.LEASE_MS,
      heartbeatMs: Math.min(config.HEARTBEAT_MS, Math.floor(config.LEASE_MS / 3)),
      mirrorFrontend: () => frontend.wantsMirror(),
      mirrorTemplates: () => templateLibrary !== null,
      earlyOutputs: inFlight !== null,
    },
  );
  const connections = new ConnectionTracker();
  const workerDirectory = new WorkerDirectory(workers, cluster, connections, opts.presence);
  const workerCommands = new WorkerCommands(
    { cluster, directory: workerDirectory, dispatcher, hub, logger },
    { timeoutMs: opts.commandTimeoutMs },
  );
  const modelRelay = new ModelDownloadRelay(
    { cluster, directory: workerDirectory, models, logger },
    { timeoutMs: opts.commandTimeoutMs },
  );
  const autoscaler = await createAutoscaler(config, {
    queue,
    // Counts every process's workers; the loop itself runs on one process (helper C's lease).
    workers: workerDirectory,
    verifyWorkerToken: (token) => workerTokens.verify(token),
    logger,
    cluster,
  });
  const broadcast = new BroadcastService(store);
  const audit = new AuditLog(store);
  const events = await openEventRelay({ config, cluster, queue, bus, logger, log: opts.eventLog });
  if (events) recoverEvents = recoverMissedEvents(events);
  return {
    config,
    store,
    logger,
    accounts,
    auth,
    bcrypt,
    queue,
    files,
    bus,
    workers,
    workerDirectory,
    workerCommands,
    workerTokens,
    dispatcher,
    hub,
    inFlight,
    models,
    modelRelay,
    broadcast,
    audit,
    connections,
    frontend,
    frontendCache,
    frontendShare,
    templateLibrary,
    workshopTemplates: new WorkshopTemplates(store),
    autoscaler,
    cluster,
    events,
  };
}

async function openLoginLimiter(store: JobStore, config: Config, limits: LoginLimits): Promise<LoginLimiter> {
  const client =
    store.backend === 'redis' ? (store as Partial<Pick<RedisStore, 'client'>>).client : undefined;
  if (!client) return new MemoryLoginLimiter(limits);
  const { RedisLoginLimiter } = await import('./auth/redis-login-limiter.js');
  return new RedisLoginLimiter(client, config.REDIS_PREFIX, limits);
}
