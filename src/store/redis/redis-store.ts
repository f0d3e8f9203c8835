/**
 * `JobStore` on Redis. Every operation that changes job state is one Lua script (see `lua/`,
 * loaded by `lua-scripts.ts`), so each is atomic; reads are single commands or MULTI/EXEC. The key
 * layout is documented in `keys.ts`.
 *
 * Claiming is two round trips. `gather` (script `heads-since`) reads the settings and every
 * active user's head (kept up to date in `heads:seq` / `heads:prio`, with the user's serve state,
 * by every script that changes them); the store caches the heads and Redis sends only those that
 * changed since the last claim. `selectJob` from the policy picks (after `preselect` narrowed the
 * heads to the ones it can look at); the `claim` script applies the choice (running, lease,
 * lastServed, running count, skips) only if the job is still pending, else the claim starts over.
 * Claims from one store instance are serialised, so only claimers in other processes can make a
 * claim start over.
 *
 * Durability is Redis's: run it with AOF on (`appendonly yes`); `persistence()` reports it.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AppError, QueueLimitError } from '../../errors.js';
import {
  selectJob,
  serviceOrder,
  type Candidate,
  type SelectInput,
  type UserServeState,
} from '../../scheduler/policy.js';
import {
  JOB_STATUSES,
  QUEUE_MODES,
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
  type QueueLimits,
  type QueueMode,
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
import { DEFAULT_KEY_PREFIX, redisKeys, type RedisKeys } from './keys.js';
import { registerLuaScripts, type ScriptRunner } from './lua-scripts.js';
import { preselect } from './preselect.js';
import { exportRedisState, importRedisState } from './state-export.js';
import { createRedisClient, isConnectionError, redactRedisUrl, waitUntilReady } from './redis-client.js';
import {
  byCodePoint,
  checkLimits,
  checkPriority,
  clampLimit,
  decodeCursor,
  encodeCursor,
  headFrom,
  jobFrom,
  onlyContenders,
  own,
  parseJob,
  record,
  usersOf,
  type Flat,
  type Head,
  type HeadTuple,
} from './redis-rows.js';

export interface OpenRedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]`; the store creates and owns the client. */
  url?: string;
  /** An existing client instead of `url`; the store never closes it. */
  client?: Redis;
  /** Prefix of every key. Default `cm:`. */
  keyPrefix?: string;
  /** Settings returned while none are stored. */
  defaults: QueueSettings;
  /** Connection name suffix (`comfy-multi:<name>`). Default `store`. */
  name?: string;
  /** How long opening waits for Redis. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Connection errors after opening (already redacted). */
  onError?: (err: Error) => void;
}

/** Claim rounds lost to other claimers before giving up with null. */
const MAX_CLAIM_ROUNDS = 50;
const REQUEUE_BATCH = 200;
const DELETE_BATCH = 500;
const MIN_REDIS = [6, 2] as const;

/** Opens a Redis job store: connects (failing fast with STORE_UNAVAILABLE), checks the server, loads the scripts. */
export async function openRedisStore(opts: OpenRedisStoreOptions): Promise<RedisStore> {
  let client: Redis;
  let owns: boolean;
  let where: string;
  if (opts.client) {
    client = opts.client;
    owns = false;
    where = `redis://${opts.client.options.host ?? '127.0.0.1'}:${opts.client.options.port ?? 6379}`;
  } else if (opts.url) {
    client = createRedisClient(opts.url, {
      name: opts.name ?? 'store',
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
      ...(opts.onError ? { onError: opts.onError } : {}),
    });
    owns = true;
    where = opts.url;
  } else {
    throw new Error('openRedisStore needs a url or a client');
  }
  if (client.options.keyPrefix) {
    if (owns) client.disconnect();
    throw new Error(
      'openRedisStore: the client must not have a keyPrefix; pass keyPrefix to the store instead',
    );
  }
  try {
    await waitUntilReady(client, where, opts.connectTimeoutMs ?? 5000);
    const info = await client.info('server');
    const version = /redis_version:(\d+)\.(\d+)/.exec(info);
    const [major, minor] = [Number(version?.[1] ?? 0), Number(version?.[2] ?? 0)];
    if (major < MIN_REDIS[0] || (major === MIN_REDIS[0] && minor < MIN_REDIS[1])) {
      throw new Error(`Redis at ${redactRedisUrl(where)} is ${major}.${minor}; the store needs 6.2 or newer`);
    }
  } catch (err) {
    if (owns) client.disconnect();
    if (err instanceof AppError) throw err;
    if (isConnectionError(err)) {
      throw new AppError(
        'STORE_UNAVAILABLE',
        `Cannot reach Redis at ${redactRedisUrl(where)}: ${(err as Error).message}`,
        {
          retryAfter: 5,
          cause: err,
        },
      );
    }
    throw err;
  }
  // The epoch that claimers' cached heads are checked against (kept when it exists).
  await client
    .hsetnx(redisKeys(opts.keyPrefix ?? DEFAULT_KEY_PREFIX).headsMeta, 'epoch', randomUUID())
    .catch(() => 0);
  return new RedisStore(client, {
    keyPrefix: opts.keyPrefix ?? DEFAULT_KEY_PREFIX,
    defaults: opts.defaults,
    ownsClient: owns,
  });
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------

export class RedisStore implements JobStore {
  readonly backend = 'redis' as const;
  readonly keys: RedisKeys;
  private readonly scripts: Map<string, ScriptRunner>;
  private readonly defaults: QueueSettings;
  private readonly ownsClient: boolean;
  private closed = false;
  private claimQueue: Promise<unknown> = Promise.resolve();
  /** The heads as of the last claim, by user (never mutated by the policy). */
  private readonly heads: { mode: QueueMode | null; epoch: string; tick: string; byUser: Map<string, Head> } =
    {
      mode: null,
      epoch: '',
      tick: '0',
      byUser: new Map(),
    };
  private userLimitsCache: { json: string; value: QueueSettings['userLimits'] } = { json: '{}', value: {} };

  constructor(
    readonly client: Redis,
    opts: { keyPrefix?: string; defaults: QueueSettings; ownsClient?: boolean },
  ) {
    this.keys = redisKeys(opts.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.defaults = structuredClone(opts.defaults);
    this.ownsClient = opts.ownsClient ?? false;
    this.scripts = registerLuaScripts(client);
  }

  // --- plumbing --------------------------------------------------------------------------------

  private raise(err: unknown): never {
    if (err instanceof AppError) throw err;
    if (this.closed) throw new AppError('STORE_UNAVAILABLE', 'The Redis store is closed.', { cause: err });
    if (isConnectionError(err)) {
      throw new AppError('STORE_UNAVAILABLE', `Redis is unavailable: ${(err as Error).message}`, {
        retryAfter: 2,
        cause: err,
      });
    }
    throw err;
  }

  private async io<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.raise(err);
    }
  }

  private async run(
    verb: string,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown[]> {
    const script = this.scripts.get(verb);
    if (!script) throw new Error(`no Lua script ${verb}`);
    try {
      return (await script(keys, args)) as unknown[];
    } catch (err) {
      this.raise(err);
    }
  }

  /** The first four KEYS of every script that keeps heads up to date (lua/includes/heads.lua). */
  private headsKeys(): string[] {
    const k = this.keys;
    return [k.headsSeq, k.headsPrio, k.lastServed, k.running, k.headsChanged, k.headsMeta];
  }

  private transitionKeys(): string[] {
    const k = this.keys;
    return [...this.headsKeys(), k.leases, k.idxFinished, k.gpu];
  }

  private transition(r: unknown[]): TransitionResult {
    const tag = r[0] as string;
    switch (tag) {
      case 'ok':
        return { ok: true, job: parseJob(r[1]) };
      case 'late':
        return { ok: true, job: parseJob(r[1]), late: true };
      case 'duplicate':
        return { ok: true, job: parseJob(r[1]), duplicate: true };
      case 'not_found':
        return { ok: false, reason: 'not_found' };
      case 'stale':
      case 'terminal':
      case 'not_running':
        return { ok: false, reason: tag, job: parseJob(r[1]) };
      default:
        throw new Error(`unexpected script reply ${tag}`);
    }
  }

  private settingsFrom(stored: Flat | Record<string, string | undefined>): QueueSettings {
    const h = Array.isArray(stored) ? record(stored) : stored;
    if (h.mode === undefined && h.paused === undefined && h.maxPendingPerUser === undefined) {
      return structuredClone(this.defaults);
    }
    const d = this.defaults;
    const ulJson = h.userLimits ?? JSON.stringify(d.userLimits);
    if (ulJson !== this.userLimitsCache.json) {
      this.userLimitsCache = { json: ulJson, value: JSON.parse(ulJson) as QueueSettings['userLimits'] };
    }
    return {
      mode: (h.mode as QueueMode | undefined) ?? d.mode,
      paused: h.paused === undefined ? d.paused : h.paused === '1',
      limits: {
        maxPendingPerUser:
          h.maxPendingPerUser === undefined ? d.limits.maxPendingPerUser : Number(h.maxPendingPerUser),
        maxRunningPerUser:
          h.maxRunningPerUser === undefined ? d.limits.maxRunningPerUser : Number(h.maxRunningPerUser),
      },
      userLimits: structuredClone(this.userLimitsCache.value),
    };
  }

  // --- jobs --------------------------------------------------------------------------------------

  async enqueue(job: NewJob, now: number): Promise<Job> {
    const k = this.keys;
    const id = job.id ?? randomUUID();
    const priority = job.priority ?? 'normal';
    checkPriority(priority);
    const prompt = JSON.stringify(job.prompt);
    const models = JSON.stringify(job.models ?? []);
    const metadata = JSON.stringify(job.metadata ?? {});
    const defaultLimit =
      this.defaults.userLimits[job.user]?.maxPendingPerUser ?? this.defaults.limits.maxPendingPerUser;
    const r = await this.run(
      'enqueue',
      [...this.headsKeys(), k.seq, k.front, k.settings, k.idxAll, k.users],
      [k.prefix, id, job.user, priority, job.front ? '1' : '0', now, prompt, models, metadata, defaultLimit],
    );
    if (r[0] === 'conflict') throw new AppError('CONFLICT', `A job with id ${id} already exists.`);
    if (r[0] === 'limit') throw new QueueLimitError(job.user, Number(r[1]));
    return {
      id,
      seq: Number(r[1]),
      user: job.user,
      status: 'pending',
      priority,
      front: Number(r[2]),
      prompt: JSON.parse(prompt) as Job['prompt'],
      models: JSON.parse(models) as string[],
      metadata: JSON.parse(metadata) as Record<string, unknown>,
      attempts: 0,
      skips: 0,
      workerId: null,
      leaseExpiresAt: null,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      error: null,
      outputs: [],
    };
  }

  /**
   * Claims run one at a time per store instance: concurrent claimers in one process would all
   * pick the same top job and all but one would lose and start over. Claimers in other processes
   * still race; the claim script settles that.
   */
  claim(req: ClaimRequest): Promise<Job | null> {
    const result = this.claimQueue.then(() => this.claimNow(req));
    this.claimQueue = result.catch(() => undefined);
    return result;
  }

  private async claimNow(req: ClaimRequest): Promise<Job | null> {
    const k = this.keys;
    const defaultPaused = this.defaults.paused ? '1' : '0';
    const warm = new Set(req.warmModels);
    for (let round = 0; round < MAX_CLAIM_ROUNDS; round++) {
      const g = await this.gather();
      if (!g) return null;
      const { mode, settings, users } = g;
      // Heads only (one per user): a user whose head this worker cannot run waits for another GPU.
      const runnable = req.runnable;
      const candidates = runnable ? g.candidates.filter((c) => runnable(c.models)) : g.candidates;
      if (candidates.length === 0) return null;
      const input: SelectInput = {
        mode,
        candidates,
        users,
        limits: settings.limits,
        userLimits: settings.userLimits,
        warmModels: warm,
        affinity: req.affinity,
      };
      // Same decision as selectJob(input), without sorting every user's head (see preselect.ts).
      const selection = selectJob({ ...input, candidates: preselect(input) });
      if (!selection) return null;
      const r = await this.run(
        'claim',
        [...this.headsKeys(), k.settings, k.served, k.leases],
        [
          k.prefix,
          defaultPaused,
          selection.job.id,
          req.workerId,
          req.now,
          req.now + req.leaseMs,
          ...selection.skipped.map((c) => c.id),
        ],
      );
      if (r[0] === 'ok') return parseJob(r[1]);
      if (r[0] === 'paused') return null;
      // 'lost': another claimer took the job between the two round trips; pick again.
    }
    return null;
  }

  /**
   * One round trip (`heads-since`): the settings and the active users' heads under the mode's
   * head order. The store keeps the heads it saw last; Redis sends only the users whose head
   * changed since then (usually one or two per claim), or everything when the cache is from
   * another mode or epoch. Null when paused or nothing is pending.
   */
  private async gather(): Promise<{
    mode: QueueMode;
    settings: QueueSettings;
    candidates: Candidate[];
    users: Map<string, UserServeState>;
  } | null> {
    const k = this.keys;
    const cache = this.heads;
    const r = await this.run(
      'heads-since',
      [k.settings, k.headsSeq, k.headsPrio, k.headsChanged, k.headsMeta],
      [this.defaults.mode, this.defaults.paused ? '1' : '0', cache.mode ?? '', cache.epoch, cache.tick],
    );
    const settings = this.settingsFrom(r[0] as Flat);
    if (r[1] === 'paused') return null;
    const [, kind, epoch, tick, pairs] = r as [Flat, 'full' | 'delta', string, string, Flat];
    if (kind === 'full') {
      cache.byUser.clear();
      // A keyspace without an epoch (new, or flushed under us): give it one for the next claim.
      if (epoch === '') await this.io(this.client.hsetnx(k.headsMeta, 'epoch', randomUUID()));
    }
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const user = pairs[i]!;
      const text = pairs[i + 1]!;
      if (text === '') cache.byUser.delete(user);
      else cache.byUser.set(user, headFrom(JSON.parse(text) as HeadTuple));
    }
    Object.assign(cache, { mode: settings.mode, epoch, tick });
    if (cache.byUser.size === 0) return null;
    const candidates: Candidate[] = [];
    const users = new Map<string, UserServeState>();
    for (const h of cache.byUser.values()) {
      candidates.push(h.candidate);
      users.set(h.candidate.user, h.state);
    }
    return { mode: settings.mode, settings, candidates, users };
  }

  async renewLease(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    const k = this.keys;
    const r = (await this.run(
      'renew-lease',
      [k.leases],
      [k.prefix, jobId, workerId, attempt, now + leaseMs],
    )) as unknown;
    return r === 1;
  }

  async adopt(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    const r = (await this.run(
      'adopt',
      [...this.transitionKeys(), this.keys.served],
      [this.keys.prefix, jobId, workerId, attempt, now, now + leaseMs],
    )) as unknown;
    return r === 1;
  }

  async complete(
    jobId: string,
    attempt: number,
    outputs: JobOutput[],
    now: number,
  ): Promise<TransitionResult> {
    const k = this.keys;
    return this.transition(
      await this.run('finish', this.transitionKeys(), [
        k.prefix,
        jobId,
        attempt,
        'completed',
        'outputs',
        JSON.stringify(outputs),
        now,
      ]),
    );
  }

  async fail(jobId: string, attempt: number, error: JobError, now: number): Promise<TransitionResult> {
    const k = this.keys;
    return this.transition(
      await this.run('finish', this.transitionKeys(), [
        k.prefix,
        jobId,
        attempt,
        'failed',
        'error',
        JSON.stringify(error),
        now,
      ]),
    );
  }

  async release(jobId: string, attempt: number, _now: number): Promise<TransitionResult> {
    return this.transition(
      await this.run('release', this.transitionKeys(), [this.keys.prefix, jobId, attempt]),
    );
  }

  async cancel(jobId: string, now: number): Promise<TransitionResult> {
    return this.transition(await this.run('cancel', this.transitionKeys(), [this.keys.prefix, jobId, now]));
  }

  async requeueExpired(now: number, maxAttempts: number): Promise<RequeueResult> {
    const out: RequeueResult = { requeued: [], failed: [] };
    for (;;) {
      const r = await this.run('requeue-expired', this.transitionKeys(), [
        this.keys.prefix,
        now,
        maxAttempts,
        REQUEUE_BATCH,
      ]);
      for (const flat of r[1] as Flat[]) out.requeued.push(parseJob(flat));
      for (const flat of r[2] as Flat[]) out.failed.push(parseJob(flat));
      if (Number(r[0]) < REQUEUE_BATCH) return out;
    }
  }

  async setPriority(jobId: string, priority: Priority): Promise<Job | null> {
    checkPriority(priority);
    const k = this.keys;
    const r = await this.run('set-priority', this.headsKeys(), [k.prefix, jobId, priority]);
    return r[0] === 'ok' ? parseJob(r[1]) : null;
  }

  async moveToFront(jobId: string): Promise<Job | null> {
    const k = this.keys;
    const r = await this.run('move-to-front', [...this.headsKeys(), k.front], [k.prefix, jobId]);
    return r[0] === 'ok' ? parseJob(r[1]) : null;
  }

  async getJob(id: string): Promise<Job | null> {
    const h = await this.io(this.client.hgetall(this.keys.job(id)));
    return h.id === undefined ? null : jobFrom(h);
  }

  async listJobs(q: JobQuery): Promise<JobPage> {
    const k = this.keys;
    const limit = clampLimit(q.limit);
    const statuses =
      q.status === undefined ? [] : [...new Set(Array.isArray(q.status) ? q.status : [q.status])];
    for (const s of statuses) {
      if (!JOB_STATUSES.includes(s)) throw new AppError('BAD_REQUEST', `Unknown job status ${String(s)}.`);
    }
    const cursor = q.cursor ? decodeCursor(q.cursor) : '';
    const order = q.order === 'asc' ? 'asc' : 'desc';
    const r = await this.run(
      'list-jobs',
      [k.idxAll],
      [k.prefix, q.user === undefined ? '0' : '1', q.user ?? '', order, cursor, limit, ...statuses],
    );
    const jobs = (r[1] as Flat[]).map(parseJob);
    const last = jobs[jobs.length - 1];
    return { jobs, nextCursor: r[0] === '1' && last ? encodeCursor(last.seq) : null };
  }

  async pendingInOrder(limit: number): Promise<Job[]> {
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    let jobs: Job[] = [];
    for (let attempt = 0; attempt < 5; attempt++) {
      const ids = await this.pendingOrderIds(n);
      if (ids.length === 0) return [];
      const multi = this.client.multi();
      for (const id of ids) multi.hgetall(this.keys.job(id));
      const res = (await this.io(multi.exec())) ?? [];
      jobs = [];
      let consistent = true;
      for (const [err, h] of res) {
        if (err) this.raise(err);
        const fields = h as Record<string, string | undefined>;
        if (fields.id === undefined || fields.status !== 'pending') {
          consistent = false;
          continue;
        }
        jobs.push(jobFrom(fields));
      }
      // Between the two round trips a job was claimed or cancelled: compute again.
      if (consistent) return jobs;
    }
    return jobs;
  }

  /**
   * The ids of the first `n` pending jobs in service order. Loads, per user, only a prefix of the
   * user's jobs in head order; the result is exact as long as no user whose prefix was cut short
   * runs out of loaded jobs before the n-th pick, else that user's prefix grows and it repeats.
   */
  private async pendingOrderIds(n: number): Promise<string[]> {
    const k = this.keys;
    let defaultK = 0; // automatic: twice each user's share of n
    const perUser = new Map<string, number>();
    for (let round = 0; ; round++) {
      const exact = round >= 20;
      const args: (string | number)[] = [k.prefix, this.defaults.mode, n, exact ? n : defaultK];
      if (!exact) for (const [u, kk] of perUser) args.push(u, kk);
      const r = await this.run('pending-order', [...this.headsKeys(), k.settings], args);
      const mode = r[0] as QueueMode;
      const names = JSON.parse(r[1] as string) as string[];
      const totals = JSON.parse(r[2] as string) as number[];
      const heads = (JSON.parse(r[3] as string) as HeadTuple[]).map(headFrom);
      const users = usersOf(heads);
      const candidates = heads.map((h) => h.candidate);
      const loaded = new Map<string, number>();
      for (const c of candidates) loaded.set(c.user, (loaded.get(c.user) ?? 0) + 1);
      const cut = new Set(names.filter((u, i) => (loaded.get(u) ?? 0) < (totals[i] ?? 0)));
      const order = serviceOrder(mode, onlyContenders(mode, candidates, users, n), users, n);
      if (exact) return order.map((c) => c.id);
      const taken = new Map<string, number>();
      let short: string | undefined;
      for (let i = 0; i < order.length && i < n - 1; i++) {
        const u = order[i]!.user;
        const t = (taken.get(u) ?? 0) + 1;
        taken.set(u, t);
        if (cut.has(u) && t === loaded.get(u)) {
          short = u;
          break;
        }
      }
      if (short === undefined) return order.map((c) => c.id);
      perUser.set(short, Math.min(n, Math.max(4, loaded.get(short)! * 4)));
      // When few jobs were loaded overall, everyone probably needs more: double the default too.
      const usedK = defaultK || Math.max(...loaded.values());
      defaultK = candidates.length < 4 * n ? Math.min(n, usedK * 2) : usedK;
    }
  }

  async countByStatus(user?: string): Promise<StatusCounts> {
    const k = this.keys;
    const multi = this.client.multi();
    for (const s of JOB_STATUSES) multi.zcard(user === undefined ? k.idxStatus(s) : k.idxUserStatus(s, user));
    const res = (await this.io(multi.exec())) ?? [];
    const counts = {} as StatusCounts;
    JOB_STATUSES.forEach((s, i) => {
      const entry = res[i];
      if (entry?.[0]) this.raise(entry[0]);
      counts[s] = Number(entry?.[1] ?? 0);
    });
    return counts;
  }

  async userCounters(): Promise<UserCounters[]> {
    const k = this.keys;
    const rows = (await this.run('user-counters', [k.users, k.gpu], [k.prefix])) as unknown[][];
    return rows
      .map((row): UserCounters => ({
        user: row[0] as string,
        pending: Number(row[1]),
        running: Number(row[2]),
        completed: Number(row[3]),
        failed: Number(row[4]),
        cancelled: Number(row[5]),
        gpuMs: Number(row[6]),
        lastActivityAt: row[7] === '' ? null : Number(row[7]),
      }))
      .sort((a, b) => byCodePoint(a.user, b.user));
  }

  async pruneHistory(before: number): Promise<number> {
    const k = this.keys;
    let total = 0;
    for (;;) {
      const r = await this.run(
        'prune',
        [k.idxAll, k.idxFinished, k.users, k.gpu],
        [k.prefix, before, DELETE_BATCH],
      );
      total += Number(r[1]);
      if (Number(r[0]) < DELETE_BATCH) return total;
    }
  }

  async nameOutputs(user: string, jobId: string, claims: readonly OutputNameClaim[]): Promise<number[]> {
    checkClaims(claims);
    if (claims.length === 0) return [];
    const args: (string | number)[] = [jobId];
    for (const c of claims) args.push(outputCounterKey(user, c), outputClaimKey(c), c.floor ?? 0);
    const k = this.keys;
    const r = await this.run('name-outputs', [k.blob(OUTPUT_COUNTERS_NS), k.blob(OUTPUT_NAMES_NS)], args);
    return r.map(Number);
  }

  async deleteHistory(user: string, ids?: string[]): Promise<number> {
    const k = this.keys;
    const keys = [k.idxAll, k.idxFinished, k.users, k.gpu];
    let total = 0;
    if (ids) {
      const unique = [...new Set(ids)];
      for (let i = 0; i < unique.length; i += DELETE_BATCH) {
        const r = await this.run('delete-history', keys, [
          k.prefix,
          user,
          DELETE_BATCH,
          ...unique.slice(i, i + DELETE_BATCH),
        ]);
        total += Number(r[1]);
      }
      return total;
    }
    for (;;) {
      const r = await this.run('delete-history', keys, [k.prefix, user, DELETE_BATCH]);
      total += Number(r[1]);
      if (Number(r[0]) < DELETE_BATCH || Number(r[1]) === 0) return total;
    }
  }

  // --- settings ----------------------------------------------------------------------------------

  async getSettings(): Promise<QueueSettings> {
    return this.settingsFrom(await this.io(this.client.hgetall(this.keys.settings)));
  }

  async updateSettings(
    patch: Partial<Omit<QueueSettings, 'limits'>> & { limits?: Partial<QueueLimits> },
  ): Promise<QueueSettings> {
    const d = this.defaults;
    const pairs: (string | number)[] = [];
    if (patch.mode !== undefined) {
      if (!QUEUE_MODES.includes(patch.mode))
        throw new AppError('VALIDATION_FAILED', `Unknown queue mode ${patch.mode}.`);
      pairs.push('mode', patch.mode);
    }
    if (patch.paused !== undefined) pairs.push('paused', patch.paused ? '1' : '0');
    if (patch.limits) {
      checkLimits(patch.limits, 'limits');
      if (patch.limits.maxPendingPerUser !== undefined)
        pairs.push('maxPendingPerUser', patch.limits.maxPendingPerUser);
      if (patch.limits.maxRunningPerUser !== undefined)
        pairs.push('maxRunningPerUser', patch.limits.maxRunningPerUser);
    }
    if (patch.userLimits !== undefined) {
      for (const [user, l] of Object.entries(patch.userLimits)) checkLimits(l, `userLimits.${user}`);
      pairs.push('userLimits', JSON.stringify(patch.userLimits));
    }
    const r = await this.run(
      'update-settings',
      [this.keys.settings],
      [
        d.mode,
        d.paused ? '1' : '0',
        d.limits.maxPendingPerUser,
        d.limits.maxRunningPerUser,
        JSON.stringify(d.userLimits),
        ...pairs,
      ],
    );
    return this.settingsFrom(r as Flat);
  }

  // --- accounts, tokens, blobs -------------------------------------------------------------------

  async getAccount(name: string): Promise<Account | null> {
    const v = await this.io(this.client.hget(this.keys.accounts, name));
    return v === null ? null : (JSON.parse(v) as Account);
  }

  async listAccounts(): Promise<Account[]> {
    const values = await this.io(this.client.hvals(this.keys.accounts));
    return values.map((v) => JSON.parse(v) as Account).sort((a, b) => byCodePoint(a.name, b.name));
  }

  async putAccount(account: Account): Promise<void> {
    const a: Account = {
      name: account.name,
      role: account.role,
      passwordHash: account.passwordHash,
      createdAt: account.createdAt,
      passwordVersion: account.passwordVersion,
    };
    await this.io(this.client.hset(this.keys.accounts, account.name, JSON.stringify(a)));
  }

  async deleteAccount(name: string): Promise<boolean> {
    return (await this.io(this.client.hdel(this.keys.accounts, name))) > 0;
  }

  async putWorkerToken(token: WorkerToken): Promise<void> {
    const k = this.keys;
    const multi = this.client
      .multi()
      .hset(
        k.workerTokens,
        token.name,
        JSON.stringify({ name: token.name, tokenHash: token.tokenHash, createdAt: token.createdAt }),
      );
    if (token.revokedAt === null) multi.hdel(k.workerTokensRevoked, token.name);
    else multi.hset(k.workerTokensRevoked, token.name, String(token.revokedAt));
    const res = await this.io(multi.exec());
    for (const [err] of res ?? []) if (err) this.raise(err);
  }

  async listWorkerTokens(): Promise<WorkerToken[]> {
    const k = this.keys;
    const res =
      (await this.io(this.client.multi().hgetall(k.workerTokens).hgetall(k.workerTokensRevoked).exec())) ??
      [];
    for (const [err] of res) if (err) this.raise(err);
    const tokens = (res[0]?.[1] ?? {}) as Record<string, string>;
    const revoked = (res[1]?.[1] ?? {}) as Record<string, string>;
    return Object.entries(tokens)
      .map(([name, json]): WorkerToken => {
        const t = JSON.parse(json) as Omit<WorkerToken, 'revokedAt'>;
        const r = own(revoked, name);
        return {
          name: t.name,
          tokenHash: t.tokenHash,
          createdAt: t.createdAt,
          revokedAt: r === undefined ? null : Number(r),
        };
      })
      .sort((a, b) => byCodePoint(a.name, b.name));
  }

  async revokeWorkerToken(name: string, now: number): Promise<boolean> {
    const k = this.keys;
    const r = (await this.run(
      'revoke-token',
      [k.workerTokens, k.workerTokensRevoked],
      [name, now],
    )) as unknown;
    return r === 1;
  }

  async getBlob(ns: string, key: string): Promise<string | null> {
    return this.io(this.client.hget(this.keys.blob(ns), key));
  }

  async putBlob(ns: string, key: string, value: string): Promise<void> {
    await this.io(this.client.hset(this.keys.blob(ns), key, value));
  }

  async deleteBlob(ns: string, key: string): Promise<boolean> {
    return (await this.io(this.client.hdel(this.keys.blob(ns), key))) > 0;
  }

  async listBlobs(ns: string, prefix?: string): Promise<string[]> {
    const keys = await this.io(this.client.hkeys(this.keys.blob(ns)));
    return (prefix ? keys.filter((k) => k.startsWith(prefix)) : keys).sort(byCodePoint);
  }

  // --- whole-store export / import (see state-export.ts) ---------------------------------------

  exportState(): AsyncIterable<StateRecord> {
    return exportRedisState(this);
  }

  async importState(
    records: AsyncIterable<StateRecord> | Iterable<StateRecord>,
    opts: ImportOptions = {},
  ): Promise<ImportCounts> {
    try {
      return await importRedisState(this, records, opts);
    } catch (err) {
      this.raise(err);
    }
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  /** One PING; rejects with STORE_UNAVAILABLE after `timeoutMs` (default 1500) at the latest. */
  async ping(timeoutMs = 1500): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new AppError('STORE_UNAVAILABLE', `Redis did not answer PING within ${timeoutMs} ms.`, {
              retryAfter: 2,
            }),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.io(this.client.ping()), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether the server persists writes with AOF (`appendonly yes`); the store's durability depends on it. */
  async persistence(): Promise<{ aofEnabled: boolean; fsync: string | null }> {
    const info = await this.io(this.client.info('persistence'));
    const aofEnabled = /aof_enabled:1/.test(info);
    let fsync: string | null = null;
    try {
      const cfg = (await this.client.config('GET', 'appendfsync')) as unknown as string[];
      fsync = cfg[1] ?? null;
    } catch {
      // CONFIG may be disabled (managed Redis); not knowing is fine.
    }
    return { aofEnabled, fsync };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.ownsClient) return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
