/**
 * The JSON the dashboard receives: the sections of the live state and the messages of the live
 * stream (`GET /admin/api/live`). Shared by the server (src/admin) and the page (src/admin/ui), so
 * this file holds types only and imports nothing at run time. Times are epoch milliseconds; the
 * page shows them in the viewer's local time.
 */
import type { AutoscaleView } from '../autoscale/view.js';
import type { JobStatus, Priority, QueueLimits, QueueMode, StatusCounts } from '../store/types.js';

export type { AutoscaleView };

export type { JobStatus, Priority, QueueLimits, QueueMode, StatusCounts };

export type WorkerStatus = 'idle' | 'busy' | 'unhealthy' | 'draining' | 'offline';

export interface QueueInfo {
  mode: QueueMode;
  paused: boolean;
  limits: QueueLimits;
  /** `running` is what ComfyUI executes (or nobody knows: its worker went away); not `next`. */
  counts: StatusCounts;
  /** Jobs sent ahead to a GPU that ComfyUI has not started yet. */
  next: number;
}

/** A waiting job, in the order the active policy will serve it. */
export interface PendingRow {
  id: string;
  /** The job's `seq`, the number ComfyUI shows. */
  number: number;
  position: number;
  user: string;
  workflow: string | null;
  models: string[];
  createdAt: number;
  priority: Priority;
  front: boolean;
  attempts: number;
}

/** A job a worker holds: running in ComfyUI, or prefetched into its queue. */
export interface HeldRow {
  jobId: string;
  number: number | null;
  user: string;
  workflow: string | null;
  attempt: number;
  state: 'assigned' | 'queued' | 'running';
  startedAt: number | null;
  /** ComfyUI node id being executed, its class and title (when the prompt names one). */
  node: string | null;
  nodeType: string | null;
  progress: { value: number; max: number } | null;
}

export interface WorkerRow {
  id: string;
  name: string;
  status: WorkerStatus;
  healthy: boolean;
  draining: boolean;
  /** The worker is shutting down by itself, finishing what it holds. */
  stopping: boolean;
  connected: boolean;
  comfyuiVersion: string;
  agentVersion: string;
  gpus: string[];
  vramUsed: number;
  vramTotal: number;
  connectedAt: number;
  disconnectedAt: number | null;
  lastHeartbeatAt: number | null;
  warmModels: string[];
  slots: number;
  held: HeldRow[];
  jobsCompleted: number;
  jobsFailed: number;
  /** Several control-plane processes: the one holding its connection. */
  process?: string;
}

/** A job the store shows running that no connected worker holds (its worker went away). */
export interface OrphanRow {
  id: string;
  number: number;
  user: string;
  workflow: string | null;
  workerId: string | null;
  startedAt: number | null;
  attempts: number;
  leaseExpiresAt: number | null;
}

export interface ParticipantRow {
  user: string;
  role: 'participant' | 'instructor';
  /** Open ComfyUI tabs (WebSockets on `/<user>/ws`); 0 = offline. */
  online: number;
  pending: number;
  /** Running in ComfyUI; jobs sent ahead to a GPU are `next`. */
  running: number;
  next: number;
  completed: number;
  failed: number;
  cancelled: number;
  gpuSeconds: number;
  lastActivityAt: number | null;
  /** Per-user overrides of the queue limits, null when the defaults apply. */
  limits: Partial<QueueLimits> | null;
  /** The participant's own level (all their jobs, now and later); null: `normal`. */
  priority: 'high' | 'low' | null;
  /** Their own LoRAs: how many, their bytes, and LORA_QUOTA; null when they have none. */
  loras: { count: number; bytes: number; quotaBytes: number } | null;
}

export interface FailureRow {
  id: string;
  number: number;
  user: string;
  workflow: string | null;
  finishedAt: number | null;
  reason: string;
  message: string;
  nodeId: string | null;
  nodeType: string | null;
  exceptionType: string | null;
  workerId: string | null;
  attempts: number;
}

export const AUDIT_ACTIONS = [
  'job.submit',
  'job.cancel',
  'job.front',
  'job.priority',
  'queue.mode',
  'queue.pause',
  'queue.resume',
  'queue.limits',
  'user.limits',
  'user.priority',
  'user.reset_password',
  'worker.drain',
  'worker.undrain',
  'broadcast.set',
  'broadcast.clear',
  'alerts.test',
  'frontend.use',
  'template.add',
  'template.replace',
  'template.reorder',
  'template.remove',
  'template.default',
  'template.send',
  'autoscale.hold',
  'autoscale.stop_all',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** One instructor action: who did what to what, when, and whether it worked. */
export interface AuditEntry {
  id: string;
  at: number;
  by: string;
  action: AuditAction;
  /** Job id, user name, worker id, ... or null for queue-wide actions. */
  target: string | null;
  /** What changed (never a password). */
  details: Record<string, unknown>;
  ok: boolean;
  /** The error code when the action failed. */
  error?: string;
}

export interface BroadcastInfo {
  message: string;
  at: number;
  by: string;
}

export type AlertEvent =
  | 'worker_lost'
  | 'job_failed'
  | 'queue_stalled'
  | 'disk_low'
  | 'test'
  // GPUs on demand (src/autoscale)
  | 'gpu_start_failed'
  | 'budget_near'
  | 'budget_reached'
  | 'provider_error';

export interface AlertRecord {
  at: number;
  event: AlertEvent;
  severity: 'info' | 'warning' | 'critical';
  title: string;
  message: string;
  /**
   * `sent`, `failed` (the webhook refused or was unreachable), `suppressed` (rate limit), `local`
   * (no webhook) or `elsewhere` (another control-plane process posted it).
   */
  delivery: 'sent' | 'failed' | 'suppressed' | 'local' | 'elsewhere';
}

export interface HealthInfo {
  version: string;
  startedAt: number;
  store: string;
  alertsWebhook: boolean;
  metricsProtected: boolean;
  recentAlerts: AlertRecord[];
  /** Which ComfyUI web frontend participants get, in a few words. */
  frontend: string;
  /** Several control-plane processes: this one's id and how many report (this one included). */
  cluster?: { process: string; processes: number };
}

export interface LiveSections {
  queue: QueueInfo;
  pending: PendingRow[];
  workers: WorkerRow[];
  orphans: OrphanRow[];
  participants: ParticipantRow[];
  failures: FailureRow[];
  audit: AuditEntry[];
  broadcast: BroadcastInfo | null;
  health: HealthInfo;
  /** GPUs on demand: instances, decisions with reasons, usage; null when autoscaling is off. */
  autoscale: AutoscaleView | null;
}

export type SectionName = keyof LiveSections;

/** One point of the charts: a 10 s interval. */
export interface SamplePoint {
  /** End of the interval, epoch ms. */
  t: number;
  pending: number;
  running: number;
  /** Age of the oldest waiting job at `t`, seconds (null: nobody waits). */
  waitMax: number | null;
  /** Average wait of the jobs that started during the interval, seconds (null: none started). */
  waitAvg: number | null;
  /** Share of the interval each connected worker was running a job, 0..1, by worker id. */
  busy: Record<string, number>;
}

export type LiveMessage =
  | {
      type: 'hello';
      serverTime: number;
      user: string;
      sampleMs: number;
      sections: LiveSections;
      series: SamplePoint[];
    }
  | { type: 'patch'; serverTime: number; sections: Partial<LiveSections> }
  | { type: 'sample'; serverTime: number; point: SamplePoint };

/** What `GET /admin/api/me` answers. */
export interface MeInfo {
  user: string;
  role: 'participant' | 'instructor';
  csrfToken: string;
  version: string;
  csrfHeader: string;
}
