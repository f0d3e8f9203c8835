import { join } from 'node:path';
import type { OutputsInFlight } from '../dispatch/outputs-in-flight.js';
import type { Logger } from 'pino';
import { VideoPreviews } from '../media/video-previews.js';
import type { Config } from '../config/schema.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { AccountService } from '../auth/account-service.js';
import type { FileStore } from '../files/file-store.js';
import type { JobEventBus } from '../dispatch/job-event-bus.js';
import type { EventRelay } from '../cluster/event-relay.js';
import type { QueueService } from '../scheduler/queue-service.js';
import type { JobStore } from '../store/types.js';
import type { Services } from '../services.js';
import { TemplateSource } from './templates.js';
import type { FrontendSite } from '../frontend/index.js';
import type { BroadcastService } from '../broadcast/broadcast.js';
import type { AuditLog } from '../admin/audit-log.js';
import type { TemplateLibrary } from '../templates/library.js';
import type { WorkshopTemplates } from '../templates/workshop-templates.js';

/** How many GPU workers are connected right now (the dispatcher's registry, when there is one). */
export interface WorkerPresence {
  online(): readonly { held: ReadonlyMap<string, { user: string; state: string }> }[];
  /** Every known worker (online or recently gone), for the model files they hold. */
  all?(): readonly { envHash: string | null }[];
}

/** What the per-user ComfyUI API needs from the rest of the control plane. */
export interface GatewayDeps {
  config: Config;
  store: JobStore;
  logger: Logger;
  auth: Authenticator;
  accounts: AccountService;
  queue: QueueService;
  files: FileStore;
  bus: JobEventBus | null;
  /** Several processes: job events of every process and the durable event log (src/cluster). */
  events?: EventRelay | null;
  workers: WorkerPresence | null;
  frontend: FrontendSite;
  /** The instructors' banner message (emits changes to every open page). */
  broadcast: BroadcastService;
  audit: AuditLog;
  templates: TemplateSource;
  /** The instructor's workshop templates (first in the Templates dialog; the default workflow). */
  workshopTemplates: WorkshopTemplates;
  /** ComfyUI's template library mirrored from workers, or null (TEMPLATE_LIBRARY_MIRROR=false). */
  templateLibrary: TemplateLibrary | null;
  /** Poster frames and durations of the gallery's videos (ffmpeg/ffprobe, optional). */
  previews: VideoPreviews;
  clock: () => number;
  /** One process: outputs announced before they are stored, which `/view` waits for. */
  inFlight?: OutputsInFlight | null;
  /** A GPU started on demand is on its way, with its measured ETA (src/autoscale); null: none. */
  gpuStarting?: () => { etaSeconds: number | null } | null;
}

export function gatewayDeps(services: Services): GatewayDeps {
  const s = services;
  return {
    config: s.config,
    store: s.store,
    logger: s.logger,
    auth: s.auth,
    accounts: s.accounts,
    queue: s.queue,
    files: s.files,
    bus: s.bus ?? null,
    events: s.events ?? null,
    // Every process's workers: the banner's GPU count and a job sent ahead on another process.
    workers: s.workerDirectory ?? s.workers ?? null,
    frontend: services.frontend,
    broadcast: s.broadcast,
    audit: s.audit,
    templates: new TemplateSource(s.config.TEMPLATES_DIR ?? null, s.config.DEFAULT_WORKFLOW ?? null),
    workshopTemplates: s.workshopTemplates,
    templateLibrary: s.templateLibrary,
    previews: new VideoPreviews(s.files, {
      ffprobe: s.config.FFPROBE_PATH,
      ffmpeg: s.config.FFMPEG_PATH,
      cacheDir: join(s.config.DATA_DIR, 'cache', 'posters'),
      logger: s.logger,
    }),
    clock: Date.now,
    inFlight: s.inFlight,
    gpuStarting: () => s.autoscaler?.starting() ?? null,
  };
}
