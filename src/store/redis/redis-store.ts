/**
 * `JobStore` on Redis. Every operation that changes job state is one Lua script (see `lua/`,
 * loaded by `lua-scripts.ts`), so each is atomic; reads are single commands or MULTI/EXEC. The key
 * layout is documented in `keys.ts`.
 *
 * `RedisStore` is the facade its importers use; the work is done by parts along the store's
 * seams, each taking the shared `RedisStoreCore` (store-core.ts: client, keys, scripts, errors):
 * claiming (claim.ts), changing jobs (job-writes.ts), reading them (job-reads.ts), queue settings
 * (settings.ts), accounts, worker tokens and blobs (records.ts), whole-store export and import
 * (state-export.ts).
 *
 * Durability is Redis's: run it with AOF on (`appendonly yes`); `persistence()` reports it.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AppError } from '../../errors.js';
import type {
  Account,
  ClaimRequest,
  ImportCounts,
  ImportOptions,
  Job,
  JobError,
  JobOutput,
  JobPage,
  JobQuery,
  JobStore,
  NewJob,
  OutputNameClaim,
  Priority,
  QueueLimits,
  QueueSettings,
  RequeueResult,
  StateRecord,
  StatusCounts,
  TransitionResult,
  UserCounters,
  WorkerToken,
} from '../types.js';
import { RedisClaimer } from './claim.js';
import { RedisJobReads } from './job-reads.js';
import { RedisJobWrites } from './job-writes.js';
import { DEFAULT_KEY_PREFIX, redisKeys, type RedisKeys } from './keys.js';
import { RedisRecords } from './records.js';
import { createRedisClient, isConnectionError, redactRedisUrl, waitUntilReady } from './redis-client.js';
import { RedisSettings } from './settings.js';
import { exportRedisState, importRedisState } from './state-export.js';
import { RedisStoreCore } from './store-core.js';

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

export class RedisStore implements JobStore {
  readonly backend = 'redis' as const;
  readonly keys: RedisKeys;
  private readonly core: RedisStoreCore;
  private readonly settings: RedisSettings;
  private readonly claimer: RedisClaimer;
  private readonly writes: RedisJobWrites;
  private readonly reads: RedisJobReads;
  private readonly records: RedisRecords;
  private readonly ownsClient: boolean;

  constructor(
    readonly client: Redis,
    opts: { keyPrefix?: string; defaults: QueueSettings; ownsClient?: boolean },
  ) {
    this.core = new RedisStoreCore(client, opts.keyPrefix ?? DEFAULT_KEY_PREFIX, opts.defaults);
    this.keys = this.core.keys;
    this.ownsClient = opts.ownsClient ?? false;
    this.settings = new RedisSettings(this.core);
    this.claimer = new RedisClaimer(this.core, this.settings);
    this.writes = new RedisJobWrites(this.core);
    this.reads = new RedisJobReads(this.core);
    this.records = new RedisRecords(this.core);
  }

  // --- jobs (job-writes.ts, claim.ts, job-reads.ts) ------------------------------------------------

  enqueue(job: NewJob, now: number): Promise<Job> {
    return this.writes.enqueue(job, now);
  }

  claim(req: ClaimRequest): Promise<Job | null> {
    return this.claimer.claim(req);
  }

  renewLease(
    jobId: string,
    workerId: string,
    attempt: number,
    leaseMs: number,
    now: number,
  ): Promise<boolean> {
    return this.writes.renewLease(jobId, workerId, attempt, leaseMs, now);
  }

  adopt(jobId: string, workerId: string, attempt: number, leaseMs: number, now: number): Promise<boolean> {
    return this.writes.adopt(jobId, workerId, attempt, leaseMs, now);
  }

  complete(jobId: string, attempt: number, outputs: JobOutput[], now: number): Promise<TransitionResult> {
    return this.writes.complete(jobId, attempt, outputs, now);
  }

  fail(jobId: string, attempt: number, error: JobError, now: number): Promise<TransitionResult> {
    return this.writes.fail(jobId, attempt, error, now);
  }

  release(jobId: string, attempt: number, now: number): Promise<TransitionResult> {
    return this.writes.release(jobId, attempt, now);
  }

  cancel(jobId: string, now: number): Promise<TransitionResult> {
    return this.writes.cancel(jobId, now);
  }

  requeueExpired(now: number, maxAttempts: number): Promise<RequeueResult> {
    return this.writes.requeueExpired(now, maxAttempts);
  }

  setPriority(jobId: string, priority: Priority): Promise<Job | null> {
    return this.writes.setPriority(jobId, priority);
  }

  moveToFront(jobId: string): Promise<Job | null> {
    return this.writes.moveToFront(jobId);
  }

  getJob(id: string): Promise<Job | null> {
    return this.reads.getJob(id);
  }

  listJobs(q: JobQuery): Promise<JobPage> {
    return this.reads.listJobs(q);
  }

  pendingInOrder(limit: number): Promise<Job[]> {
    return this.reads.pendingInOrder(limit);
  }

  countByStatus(user?: string): Promise<StatusCounts> {
    return this.reads.countByStatus(user);
  }

  userCounters(): Promise<UserCounters[]> {
    return this.reads.userCounters();
  }

  pruneHistory(before: number): Promise<number> {
    return this.writes.pruneHistory(before);
  }

  nameOutputs(user: string, jobId: string, claims: readonly OutputNameClaim[]): Promise<number[]> {
    return this.writes.nameOutputs(user, jobId, claims);
  }

  deleteHistory(user: string, ids?: string[]): Promise<number> {
    return this.writes.deleteHistory(user, ids);
  }

  // --- settings (settings.ts) ----------------------------------------------------------------------

  getSettings(): Promise<QueueSettings> {
    return this.settings.getSettings();
  }

  updateSettings(
    patch: Partial<Omit<QueueSettings, 'limits'>> & { limits?: Partial<QueueLimits> },
  ): Promise<QueueSettings> {
    return this.settings.updateSettings(patch);
  }

  // --- accounts, tokens, blobs (records.ts) --------------------------------------------------------

  getAccount(name: string): Promise<Account | null> {
    return this.records.getAccount(name);
  }

  listAccounts(): Promise<Account[]> {
    return this.records.listAccounts();
  }

  putAccount(account: Account): Promise<void> {
    return this.records.putAccount(account);
  }

  deleteAccount(name: string): Promise<boolean> {
    return this.records.deleteAccount(name);
  }

  putWorkerToken(token: WorkerToken): Promise<void> {
    return this.records.putWorkerToken(token);
  }

  listWorkerTokens(): Promise<WorkerToken[]> {
    return this.records.listWorkerTokens();
  }

  revokeWorkerToken(name: string, now: number): Promise<boolean> {
    return this.records.revokeWorkerToken(name, now);
  }

  getBlob(ns: string, key: string): Promise<string | null> {
    return this.records.getBlob(ns, key);
  }

  putBlob(ns: string, key: string, value: string): Promise<void> {
    return this.records.putBlob(ns, key, value);
  }

  deleteBlob(ns: string, key: string): Promise<boolean> {
    return this.records.deleteBlob(ns, key);
  }

  listBlobs(ns: string, prefix?: string): Promise<string[]> {
    return this.records.listBlobs(ns, prefix);
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
      this.core.raise(err);
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
      await Promise.race([this.core.io(this.client.ping()), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether the server persists writes with AOF (`appendonly yes`); the store's durability depends on it. */
  async persistence(): Promise<{ aofEnabled: boolean; fsync: string | null }> {
    const info = await this.core.io(this.client.info('persistence'));
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
    if (this.core.closed) return;
    this.core.closed = true;
    if (!this.ownsClient) return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
