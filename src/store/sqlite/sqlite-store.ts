/**
 * The SQLite `JobStore`: one file (WAL, synchronous=NORMAL, busy_timeout), safe for several
 * processes at once. Every multi-step operation runs in one IMMEDIATE transaction, so writers
 * serialise on the database lock and a job can never be claimed twice.
 *
 * Layout and the reasons for it: see `schema.ts`. Claim and service order: `scheduling.ts`. How an
 * attempt ends (complete / fail / release / cancel, the lease sweep, adoption): `job-transitions.ts`.
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { AppError, QueueLimitError } from '../../errors.js';
import {
  isTerminal,
  priorityRank,
  type Account,
  type ClaimRequest,
  type Job,
  type JobError,
  type JobOutput,
  type JobPage,
  type JobQuery,
  type JobStore,
  type OutputNameClaim,
  type NewJob,
  type Priority,
  type QueueSettings,
  type RequeueResult,
  type StatusCounts,
  type TransitionResult,
  type UserCounters,
  type WorkerToken,
  type ImportCounts,
  type ImportOptions,
  type StateRecord,
} from '../types.js';
import {
  OUTPUT_COUNTERS_NS,
  OUTPUT_NAMES_NS,
  checkClaims,
  outputClaimKey,
  outputCounterKey,
} from '../output-names.js';
import { Accounts, Blobs, SettingsRow, mergeSettings, type SettingsPatch } from './accounts.js';
import { History } from './history.js';
import { prepareJobStatements, type JobStatements } from './job-statements.js';
import { JobTransitions } from './job-transitions.js';
import { JobReader, toJob } from './rows.js';
import { Checkpointer } from './checkpointer.js';
import { applyPragmas, migrate } from './schema.js';
import { Scheduler } from './scheduling.js';
import { exportSqliteState, importSqliteState } from './state-export.js';
import {
  checkPriority,
  clampCount,
  createFile,
  isUniqueViolation,
  mapErrors,
  restrictSidecars,
} from './support.js';
import { UserState, checkUserState } from './user-state.js';

export interface SqliteStoreOptions {
  /** Database file, or ':memory:'. Created (mode 0600) with its directory when missing. */
  path: string;
  /** Settings used until an instructor changes them. */
  defaults: QueueSettings;
  /** How long to wait for another process's write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
}

type Tx = <T>(fn: () => T) => T;

/** Finished jobs deleted per transaction when pruning history. */
const PRUNE_CHUNK = 2000;

export class SqliteStore implements JobStore {
  readonly backend = 'sqlite' as const;
  readonly path: string;
  private readonly db: Database.Database;
  private readonly users: UserState;
  private readonly scheduler: Scheduler;
  private readonly history: History;
  private readonly accounts: Accounts;
  private readonly blobs: Blobs;
  private readonly settings: SettingsRow;
  private readonly jobs: JobReader;
  private readonly transitions: JobTransitions;
  private readonly write: Tx;
  private readonly read: Tx;
  private readonly s: JobStatements;

  private checkpointer: Checkpointer | undefined;

  constructor(opts: SqliteStoreOptions) {
    this.path = opts.path;
    const busy = opts.busyTimeoutMs ?? 5000;
    const onDisk = createFile(opts.path);
    this.db = new Database(opts.path, { timeout: busy });
    try {
      applyPragmas(this.db, busy);
      migrate(this.db);
    } catch (e) {
      this.db.close();
      throw e;
    }
    if (onDisk) {
      restrictSidecars(opts.path);
      // SQLite's automatic checkpoint runs inside whichever commit crosses 1000 WAL pages, which
      // made one claim in a hundred take 10–100 ms. Checkpoint every second from a thread of its
      // own instead (see checkpointer.ts), off the event loop; other processes on the same file
      // (the CLI) keep the automatic one.
      this.db.pragma('wal_autocheckpoint = 0');
      this.checkpointer = new Checkpointer(this.db, opts.path, busy);
    }
    this.users = new UserState(this.db);
    this.scheduler = new Scheduler(this.db, this.users);
    this.history = new History(this.db, this.users);
    this.accounts = new Accounts(this.db);
    this.blobs = new Blobs(this.db);
    this.settings = new SettingsRow(this.db, structuredClone(opts.defaults));
    this.jobs = new JobReader(this.db);
    this.s = prepareJobStatements(this.db);
    this.transitions = new JobTransitions(this.s, this.jobs, this.users);
    const txn = this.db.transaction((fn: () => unknown) => fn());
    this.write = <T>(fn: () => T): T => mapErrors(() => txn.immediate(fn) as T);
    this.read = <T>(fn: () => T): T => mapErrors(() => txn.deferred(fn) as T);
  }

  // ---- jobs ----

  async enqueue(job: NewJob, now: number): Promise<Job> {
    const id = job.id ?? randomUUID();
    const priority = checkPriority(job.priority ?? 'normal');
    const rank = priorityRank(priority);
    const models = JSON.stringify(job.models ?? []);
    const metadata = JSON.stringify(job.metadata ?? {});
    const prompt = JSON.stringify(job.prompt);
    let seq: number;
    let front: number;
    try {
      ({ seq, front } = this.write(() => {
        const s = this.settings.get();
        const limit = s.userLimits[job.user]?.maxPendingPerUser ?? s.limits.maxPendingPerUser;
        if (this.users.pendingOf(job.user) >= limit) throw new QueueLimitError(job.user, limit);
        const c = this.s.nextSeq.get(job.front ? 1 : 0)!;
        const f = job.front ? c.front : 0;
        this.s.insertJob.run({ seq: c.seq, id, user: job.user, priority, rank, front: f, now, models });
        this.s.insertData.run(c.seq, metadata, prompt);
        this.users.enqueued(job.user, c.seq, f, rank, now);
        return { seq: c.seq, front: f };
      }));
    } catch (e) {
      if (isUniqueViolation(e))
        throw new AppError('CONFLICT', `A job with id ${id} already exists.`, { cause: e });
      throw e;
    }
    return toJob({
      seq,
      id,
      user: job.user,
      status: 'pending',
      priority,
      front,
      attempts: 0,
      skips: 0,
      worker_id: null,
      lease_expires_at: null,
      created_at: now,
      started_at: null,
      finished_at: null,
      models,
      error: null,
      outputs: '[]',
      metadata,
      prompt,
    });
  }

  async claim(req: ClaimRequest): Promise<Job | null> {
    return this.write(() => {
      const seq = this.scheduler.claim(this.settings.get(), req);
      return seq === null ? null : this.jobs.bySeq(seq);
    });
  }

  async renewLease(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    return mapErrors(() => this.s.renew.run(now + leaseMs, jobId, workerId, attempt).changes === 1);
  }

  async complete(
    jobId: string,
    attempt: number,
    outputs: JobOutput[],
    now: number,
  ): Promise<TransitionResult> {
    return this.write(() => this.transitions.complete(jobId, attempt, outputs, now));
  }

  async fail(jobId: string, attempt: number, error: JobError, now: number): Promise<TransitionResult> {
    return this.write(() => this.transitions.fail(jobId, attempt, error, now));
  }

  async adopt(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    return this.write(() => this.transitions.adopt(jobId, workerId, attempt, leaseMs, now));
  }

  async release(jobId: string, attempt: number, _now: number): Promise<TransitionResult> {
    return this.write(() => this.transitions.release(jobId, attempt));
  }

  async cancel(jobId: string, now: number): Promise<TransitionResult> {
    return this.write(() => this.transitions.cancel(jobId, now));
  }

  async requeueExpired(now: number, maxAttempts: number): Promise<RequeueResult> {
    return this.write(() => this.transitions.requeueExpired(now, maxAttempts));
  }

  async setPriority(jobId: string, priority: Priority): Promise<Job | null> {
    checkPriority(priority);
    return this.write(() => {
      const st = this.jobs.state(jobId);
      if (!st) return null;
      if (!isTerminal(st.status)) {
        this.s.setPriority.run(priority, priorityRank(priority), st.seq);
        if (st.status === 'pending') this.users.apply(st.user, {}, true);
      }
      return this.jobs.bySeq(st.seq);
    });
  }

  async moveToFront(jobId: string): Promise<Job | null> {
    return this.write(() => {
      const st = this.jobs.state(jobId);
      if (!st) return null;
      if (st.status === 'pending') {
        this.s.setFront.run(this.s.nextFront.get()!, st.seq);
        this.users.apply(st.user, {}, true);
      }
      return this.jobs.bySeq(st.seq);
    });
  }

  async getJob(id: string): Promise<Job | null> {
    return mapErrors(() => this.jobs.byId(id));
  }

  async listJobs(q: JobQuery): Promise<JobPage> {
    return this.read(() => {
      const { seqs, nextCursor } = this.history.page(q);
      return { jobs: this.jobs.bySeqs(seqs), nextCursor };
    });
  }

  async pendingInOrder(limit: number): Promise<Job[]> {
    return this.read(() =>
      this.jobs.bySeqs(this.scheduler.pendingOrder(this.settings.get().mode, clampCount(limit))),
    );
  }

  async countByStatus(user?: string): Promise<StatusCounts> {
    return mapErrors(() => this.users.counts(user));
  }

  async userCounters(): Promise<UserCounters[]> {
    return mapErrors(() => this.users.counters());
  }

  async pruneHistory(before: number): Promise<number> {
    // In chunks of ~2,000 jobs, yielding between them: an hourly prune of a long history must not
    // hold the write lock (and the event loop) for seconds while participants queue prompts.
    let total = 0;
    for (;;) {
      const cut = await this.write(() => this.history.pruneChunk(before, PRUNE_CHUNK));
      const n = await this.write(() => this.history.prune(cut));
      total += n;
      if (cut >= before) return total;
      if (n === 0) {
        // Every job before `cut` is still running or pending; step past them.
        const rest = await this.write(() => this.history.prune(before));
        return total + rest;
      }
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  async nameOutputs(user: string, jobId: string, claims: readonly OutputNameClaim[]): Promise<number[]> {
    checkClaims(claims);
    if (claims.length === 0) return [];
    return this.write(() => {
      const raw = this.blobs.get(OUTPUT_NAMES_NS, jobId);
      const names = (raw ? JSON.parse(raw) : {}) as Record<string, number>;
      let changed = false;
      const out = claims.map((c) => {
        const claim = outputClaimKey(c);
        const known = names[claim];
        if (known !== undefined) return known;
        const counterKey = outputCounterKey(user, c);
        const n = Math.max(Number(this.blobs.get(OUTPUT_COUNTERS_NS, counterKey) ?? 0), c.floor ?? 0) + 1;
        this.blobs.put(OUTPUT_COUNTERS_NS, counterKey, String(n));
        names[claim] = n;
        changed = true;
        return n;
      });
      if (changed) this.blobs.put(OUTPUT_NAMES_NS, jobId, JSON.stringify(names));
      return out;
    });
  }

  async deleteHistory(user: string, ids?: string[]): Promise<number> {
    return this.write(() => this.history.deleteUser(user, ids));
  }

  // ---- settings, accounts, tokens, blobs ----

  async getSettings(): Promise<QueueSettings> {
    return mapErrors(() => structuredClone(this.settings.get()));
  }

  async updateSettings(patch: SettingsPatch): Promise<QueueSettings> {
    return this.write(() => {
      const next = mergeSettings(this.settings.get(), patch);
      this.settings.put(next);
      return structuredClone(next);
    });
  }

  async getAccount(name: string): Promise<Account | null> {
    return mapErrors(() => this.accounts.get(name));
  }

  async listAccounts(): Promise<Account[]> {
    return mapErrors(() => this.accounts.list());
  }

  async putAccount(account: Account): Promise<void> {
    mapErrors(() => this.accounts.put(account));
  }

  async deleteAccount(name: string): Promise<boolean> {
    return mapErrors(() => this.accounts.delete(name));
  }

  async putWorkerToken(token: WorkerToken): Promise<void> {
    mapErrors(() => this.accounts.putToken(token));
  }

  async listWorkerTokens(): Promise<WorkerToken[]> {
    return mapErrors(() => this.accounts.listTokens());
  }

  async revokeWorkerToken(name: string, now: number): Promise<boolean> {
    return this.write(() => this.accounts.revokeToken(name, now));
  }

  async getBlob(ns: string, key: string): Promise<string | null> {
    return mapErrors(() => this.blobs.get(ns, key));
  }

  async putBlob(ns: string, key: string, value: string): Promise<void> {
    mapErrors(() => this.blobs.put(ns, key, value));
  }

  async deleteBlob(ns: string, key: string): Promise<boolean> {
    return mapErrors(() => this.blobs.delete(ns, key));
  }

  async listBlobs(ns: string, prefix?: string): Promise<string[]> {
    return mapErrors(() => this.blobs.list(ns, prefix));
  }

  async ping(): Promise<void> {
    mapErrors(() => this.s.ping.get());
  }

  async close(): Promise<void> {
    await this.checkpointer?.close();
    this.checkpointer = undefined;
    if (this.db.open) this.db.close();
  }

  // ---- whole-store export / import and snapshots (see state-export.ts) ----

  exportState(): AsyncIterable<StateRecord> {
    return exportSqliteState(this.db, this.path);
  }

  async importState(
    records: AsyncIterable<StateRecord> | Iterable<StateRecord>,
    opts: ImportOptions = {},
  ): Promise<ImportCounts> {
    return importSqliteState(this.db, records, opts);
  }

  /** Writes a consistent copy of the whole database to `dest` (SQLite's online backup API). */
  async snapshotTo(dest: string): Promise<void> {
    await this.db.backup(dest);
  }

  /** Differences between `user_state` and the jobs it summarises (empty when consistent). Scans. */
  checkConsistency(): string[] {
    return this.read(() => checkUserState(this.db));
  }
}

export async function openSqliteStore(opts: SqliteStoreOptions): Promise<SqliteStore> {
  return new SqliteStore(opts);
}
