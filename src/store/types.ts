/**
 * Terminology
 * -----------
 * - **user**: an account. A *participant* owns one per-user ComfyUI at `/<user>/`; an *instructor*
 *   can see and steer everything.
 * - **prompt**: a ComfyUI API-format graph (`{"<node id>": {class_type, inputs}}`) — what ComfyUI
 *   itself calls a prompt.
 * - **job**: one prompt accepted into the central queue for one user. Its id doubles as the
 *   ComfyUI `prompt_id` the participant's browser sees.
 * - **worker**: an agent beside one GPU ComfyUI that claims jobs and runs them.
 * - **lease**: the time-limited right of one worker to run one claimed job. The worker renews it;
 *   when it lapses the job returns to the queue (see {@link JobStore.requeueExpired}).
 * - **attempt**: one claim of a job. `attempts` counts claims; completion and failure are keyed by
 *   `(jobId, attempt)` so a stale worker can never finish a job twice.
 * - **policy**: the rule that picks the next job for a worker: `fifo`, `round_robin` or
 *   `priority` (see `src/scheduler/policy.ts`).
 * - **front**: an instructor's "move to front". A job moved to the front outranks every job not
 *   moved, in every mode; among moved jobs the most recently moved goes first.
 * - **seq**: a store-wide, strictly increasing enqueue number. It is the FIFO order and the
 *   `number` ComfyUI shows in its queue.
 */

export const JOB_STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Highest first. `instructor` is reserved for instructors' own jobs. */
export const PRIORITIES = ['instructor', 'high', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];
/** 0 is the most urgent level. */
export function priorityRank(p: Priority): number {
  return PRIORITIES.indexOf(p);
}

export const QUEUE_MODES = ['fifo', 'round_robin', 'priority'] as const;
export type QueueMode = (typeof QUEUE_MODES)[number];

export const ROLES = ['participant', 'instructor'] as const;
export type Role = (typeof ROLES)[number];

/** A ComfyUI API-format prompt. Kept loose here; `src/comfy/` validates its shape. */
export type ComfyPrompt = Record<
  string,
  { class_type: string; inputs: Record<string, unknown>; _meta?: unknown }
>;

/** Why a job failed, with ComfyUI's details when ComfyUI raised the error. */
export interface JobError {
  /** `worker_lost`, `execution_error`, `interrupted`, `invalid_prompt`, `upload_failed`, ... */
  reason: string;
  message: string;
  nodeId?: string;
  nodeType?: string;
  exceptionType?: string;
  traceback?: string[];
  details?: Record<string, unknown>;
}

/** One file a job produced, stored in its owner's output space. */
export interface JobOutput {
  /** ComfyUI node id that produced it. */
  nodeId: string;
  filename: string;
  /** Sub-folder under the owner's output folder ('' for the top level). */
  subfolder: string;
  /** `output` or `temp`, as in ComfyUI's `/view?type=`. */
  type: 'output' | 'temp';
  /** The key ComfyUI used in the node's `ui` output: `images`, `gifs`, `videos`, `audio`, ... */
  kind: string;
  size?: number;
  sha256?: string;
  /**
   * A non-file entry of the node's `ui[kind]` list, kept as ComfyUI reported it (`true` of
   * `animated`, a string of `text`, ...). Present only on such entries; their filename and
   * subfolder are ''. History rebuilds each node's output from the files and these, in order.
   */
  value?: unknown;
  /** Further fields of a file entry after filename/subfolder/type (VHS `format`, `frame_rate`, ...). */
  extra?: Record<string, unknown>;
}

/**
 * One output file name to number in its owner's own sequence: ComfyUI named it
 * `<prefix>_<counter>...` in `subfolder` (the participant's own subfolder) on the worker.
 */
export interface OutputNameClaim {
  subfolder: string;
  prefix: string;
  /** The counter in the worker's name (each job starts its own at 1). */
  counter: number;
  /** Numbers up to this one are taken already (files found in the folder). Default 0. */
  floor?: number;
}

export interface Job {
  id: string;
  seq: number;
  user: string;
  status: JobStatus;
  priority: Priority;
  /** 0 when never moved to the front; otherwise a store-wide increasing counter (latest first). */
  front: number;
  prompt: ComfyPrompt;
  /** Model files the prompt's loader nodes reference, e.g. `checkpoints/flux2.safetensors`. */
  models: string[];
  /** Free-form: ComfyUI `extra_data`, `client_id`, workflow name, ... Never interpreted by the store. */
  metadata: Record<string, unknown>;
  /** Number of times the job has been claimed. */
  attempts: number;
  /** How often model affinity has passed this job over (bounded, see the policy). */
  skips: number;
  workerId: string | null;
  leaseExpiresAt: number | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  error: JobError | null;
  outputs: JobOutput[];
}

export interface NewJob {
  id?: string;
  user: string;
  prompt: ComfyPrompt;
  priority?: Priority;
  models?: string[];
  metadata?: Record<string, unknown>;
  /** Enqueue already moved to the front (an instructor's `front: true`). Default false. */
  front?: boolean;
}

export interface QueueLimits {
  /** Most pending jobs one user may hold. Default 10. */
  maxPendingPerUser: number;
  /** Most running jobs one user may hold while other users wait. Default 1. */
  maxRunningPerUser: number;
}

export interface AffinityOptions {
  /** How many of the policy's top candidates affinity may choose among. Default 4; 1 disables it. */
  window: number;
  /** How many times one job may be passed over for affinity before it must be served. Default 2. */
  maxSkips: number;
}

export interface QueueSettings {
  mode: QueueMode;
  paused: boolean;
  limits: QueueLimits;
  /** Per-user overrides of the limits, set by an instructor. */
  userLimits: Record<string, Partial<QueueLimits>>;
}

export interface ClaimRequest {
  workerId: string;
  /** Models loaded on the worker right now, for affinity. */
  warmModels: string[];
  /**
   * Whether this worker can run a job needing these model files (`Job.models`). A user whose
   * next job fails it is passed over for this claim — the job waits for a GPU that has its files,
   * and the user's later jobs wait behind it (their order never changes). Default: every job.
   */
  runnable?: (models: readonly string[]) => boolean;
  leaseMs: number;
  now: number;
  affinity: AffinityOptions;
}

export interface JobQuery {
  user?: string;
  status?: JobStatus | JobStatus[];
  /** Default 50, at most 500. */
  limit?: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** `desc` (newest first, default) or `asc`. */
  order?: 'asc' | 'desc';
}

export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

export type StatusCounts = Record<JobStatus, number>;

export interface UserCounters extends StatusCounts {
  user: string;
  /** Milliseconds of claimed-to-finished time over the user's finished jobs. */
  gpuMs: number;
  lastActivityAt: number | null;
}

export interface Account {
  name: string;
  role: Role;
  /** bcrypt hash. */
  passwordHash: string;
  createdAt: number;
  /** Bumped when the password changes, to invalidate sessions. */
  passwordVersion: number;
}

export interface WorkerToken {
  name: string;
  /** sha256 hex of the token; the token itself is never stored. */
  tokenHash: string;
  createdAt: number;
  revokedAt: number | null;
}

/** Outcome of a transition keyed by `(jobId, attempt)`. */
export type TransitionResult =
  | {
      ok: true;
      job: Job;
      duplicate?: boolean;
      /**
       * The finish came from an attempt whose lease had lapsed: the job was back in the queue, or
       * already re-claimed by a later attempt (which the caller must now tell to stop).
       */
      late?: boolean;
    }
  | { ok: false; reason: 'not_found' | 'stale' | 'not_running' | 'terminal'; job?: Job };

export interface RequeueResult {
  requeued: Job[];
  failed: Job[];
}

/** A key/value blob the control plane persists: settings, userdata index, env snapshots, ... */
export interface BlobStore {
  getBlob(ns: string, key: string): Promise<string | null>;
  putBlob(ns: string, key: string, value: string): Promise<void>;
  deleteBlob(ns: string, key: string): Promise<boolean>;
  listBlobs(ns: string, prefix?: string): Promise<string[]>;
}

/**
 * One record of a whole-store export (`exportState` / `importState`; one JSON object per line in
 * files, see `state-records.ts`). An export is: a `header`, the `counters`, the stored `settings`
 * (null while none are stored), every account, worker token and blob, each user's serve state,
 * then every job with all its fields. Indexes and per-user summaries are not exported: they are
 * rebuilt from the jobs on import, so an imported store behaves exactly like the original.
 */
export type StateRecord =
  | {
      type: 'header';
      format: 'comfy-multi-state';
      version: number;
      backend: 'sqlite' | 'redis';
      exportedAt: number;
    }
  /** The store-wide counters: last `seq`, last `front`, last serve number. */
  | { type: 'counters'; seq: number; front: number; serve: number }
  | { type: 'settings'; settings: QueueSettings | null }
  | { type: 'account'; account: Account }
  | { type: 'worker_token'; token: WorkerToken }
  | { type: 'blob'; ns: string; key: string; value: string }
  /** A user's serve state (`lastServed`), kept even when the user has no jobs left. */
  | { type: 'user'; user: string; lastServed: number }
  /**
   * `servedBefore` (running jobs only): the user's `lastServed` before the claim, which a
   * hand-back restores; absent when unknown.
   */
  | { type: 'job'; job: Job; servedBefore?: number };

export interface ImportOptions {
  /** Replace whatever the store holds. Without it, importing into a non-empty store is refused. */
  replace?: boolean;
}

/** How many records of each kind an import wrote. */
export interface ImportCounts {
  settings: number;
  accounts: number;
  workerTokens: number;
  blobs: number;
  users: number;
  jobs: number;
}

/**
 * Everything the control plane keeps about jobs, accounts and queue settings, as domain
 * operations. The scheduler and the HTTP code use only this; no database client leaks past it.
 * Every method is atomic on its own.
 */
export interface JobStore extends BlobStore {
  readonly backend: 'sqlite' | 'redis';

  /** Adds a pending job. Rejects with `QueueLimitError` when the user holds too many pending jobs. */
  enqueue(job: NewJob, now: number): Promise<Job>;
  /** Claims the next job for a worker under the active policy, or null (paused, nothing eligible). */
  claim(req: ClaimRequest): Promise<Job | null>;
  /** Extends the lease if the worker still holds this attempt. */
  renewLease(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean>;
  /**
   * Ends an attempt as completed. Besides the running attempt, a *late* finish is accepted: from
   * the attempt whose lease lapsed while the job waits in the queue again (`pending`, `attempts`
   * unchanged), or from an earlier attempt while a later one runs (the first finish wins; the
   * result says `late` so the caller stops the other). A job that finished never runs again.
   */
  complete(jobId: string, attempt: number, outputs: JobOutput[], now: number): Promise<TransitionResult>;
  /** As {@link complete}, ending `failed`. */
  fail(jobId: string, attempt: number, error: JobError, now: number): Promise<TransitionResult>;
  /**
   * A worker says (after reconnecting, or while its leases could not be renewed) that it still
   * runs this attempt: renews the lease when the worker holds it (as {@link renewLease}), or takes
   * the job back from the queue for that worker when its lease lapsed and nobody claimed it since
   * (`pending` with `attempts === attempt`: running again, same attempt, lease now + leaseMs).
   * False otherwise (finished, cancelled, or claimed by a later attempt).
   */
  adopt(jobId: string, workerId: string, attempt: number, leaseMs: number, now: number): Promise<boolean>;
  /** Gives a claimed job back to the queue at its old place, without counting a lost attempt. */
  release(jobId: string, attempt: number, now: number): Promise<TransitionResult>;
  /** Cancels a pending or running job. Terminal jobs stay as they are (`ok: false, reason: terminal`). */
  cancel(jobId: string, now: number): Promise<TransitionResult>;
  /** Returns jobs whose lease lapsed to pending (attempts kept) or fails them after `maxAttempts`. */
  requeueExpired(now: number, maxAttempts: number): Promise<RequeueResult>;
  setPriority(jobId: string, priority: Priority): Promise<Job | null>;
  moveToFront(jobId: string): Promise<Job | null>;
  getJob(id: string): Promise<Job | null>;
  listJobs(q: JobQuery): Promise<JobPage>;
  /** Pending jobs in the order the active policy would serve them (ignoring affinity). */
  pendingInOrder(limit: number): Promise<Job[]>;
  countByStatus(user?: string): Promise<StatusCounts>;
  userCounters(): Promise<UserCounters[]>;
  /**
   * Numbers a job's output names the way one ComfyUI would: one counter per (user, subfolder,
   * prefix), continuing across jobs and workers, each new claim taking the next number (above its
   * `floor`). The same claim of the same job (subfolder, prefix, worker counter) always gets the
   * same number, so a repeated event, upload or report of it names the same file. Atomic.
   */
  nameOutputs(user: string, jobId: string, claims: readonly OutputNameClaim[]): Promise<number[]>;
  /** Deletes terminal jobs finished before `before`; returns how many. */
  pruneHistory(before: number): Promise<number>;
  /** Deletes a user's terminal jobs (ComfyUI's "clear history"), or the listed ones. */
  deleteHistory(user: string, ids?: string[]): Promise<number>;

  getSettings(): Promise<QueueSettings>;
  updateSettings(
    patch: Partial<Omit<QueueSettings, 'limits'>> & { limits?: Partial<QueueLimits> },
  ): Promise<QueueSettings>;

  getAccount(name: string): Promise<Account | null>;
  listAccounts(): Promise<Account[]>;
  /** Creates or replaces an account. */
  putAccount(account: Account): Promise<void>;
  deleteAccount(name: string): Promise<boolean>;

  putWorkerToken(token: WorkerToken): Promise<void>;
  listWorkerTokens(): Promise<WorkerToken[]>;
  revokeWorkerToken(name: string, now: number): Promise<boolean>;

  /**
   * Every record of the store, streamed (see {@link StateRecord}); consistent as of one moment
   * on SQLite, per job on Redis (stop the server for an exact copy of a busy Redis store).
   */
  exportState(): AsyncIterable<StateRecord>;
  /**
   * Loads an export: ids, seq, front, attempts, timestamps and serve order survive, and the
   * counters continue after the imported ones. Rejects with `AppError('CONFLICT')` when the store
   * is not empty, unless `replace`. For offline use: nothing else should use the store meanwhile.
   */
  importState(
    records: AsyncIterable<StateRecord> | Iterable<StateRecord>,
    opts?: ImportOptions,
  ): Promise<ImportCounts>;

  /** Cheap round trip for `/ready`. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
