/**
 * Redis key layout of the job store. Every key starts with the store's prefix `<p>` (default
 * `cm:`), so several stores (tests, staging) can share one Redis and be dropped by prefix.
 * User names and ids always come last in a key, so no two (kind, user, status) map to one key.
 *
 * Counters (strings)
 *   <p>seq                  INCR, the store-wide enqueue number (`Job.seq`)
 *   <p>front                INCR, the store-wide move-to-front number (`Job.front`)
 *   <p>served               INCR, the store-wide serve number (a user's `lastServed`)
 *
 * Jobs
 *   <p>job:<id>             hash, one field per `Job` field; absent field = null; numbers as
 *                           decimal strings; prompt, models, metadata, error, outputs as JSON;
 *                           plus `lostLease` = '1' when requeueExpired failed it, and while it
 *                           runs `servedBefore`, its user's lastServed before the claim (not Job fields)
 *
 * Scheduling (pending jobs only)
 *   <p>pq:seq:<user>        zset id → -front for moved jobs, else seq  (headOrder of fifo, round_robin)
 *   <p>pq:prio:<user>       zset id → -front for moved jobs, else level·2^44 + seq (headOrder of priority)
 *   <p>heads:seq            hash user → the user's first job in pq:seq as JSON
 *                           `[id, user, seq, priority, front, skips, models, lastServed, running]`
 *                           (the policy's Candidate plus the user's serve state); only users with
 *                           pending jobs
 *   <p>heads:prio           hash user → the same for pq:prio
 *   <p>heads:changed        zset user → clock tick of the user's last head change
 *   <p>heads:meta           hash tick (the head change clock), epoch (random, set by the store;
 *                           a claimer's cached heads are only valid for the same epoch)
 *   <p>served:user          hash user → serve number of the user's last claim (`lastServed`)
 *   <p>running              hash user → number of running jobs (field removed at 0)
 *   <p>leases               zset id → leaseExpiresAt, running jobs only
 *
 * Listing and counting (zsets id → seq)
 *   <p>idx:all              every job
 *   <p>idx:s:<status>       jobs in one status
 *   <p>idx:u:<user>         one user's jobs
 *   <p>idx:us:<status>:<user>  one user's jobs in one status (ZCARD of the pending one is the limit check)
 *   <p>idx:finished         zset id → finishedAt, terminal jobs (history pruning)
 *
 * Per-user accounting
 *   <p>users                set of users who have any job
 *   <p>gpu                  hash user → sum of finishedAt − startedAt over finished jobs that started
 *   <p>act:<user>           zset id → latest of createdAt/finishedAt (max score = lastActivityAt)
 *
 * Control plane
 *   <p>settings             hash mode, paused ('1'/'0'), maxPendingPerUser, maxRunningPerUser,
 *                           userLimits (JSON); absent until the first updateSettings
 *   <p>accounts             hash name → Account JSON
 *   <p>wtokens              hash name → WorkerToken JSON without revokedAt
 *   <p>wtokens:revoked      hash name → revokedAt
 *   <p>blob:<ns>            hash key → value
 *
 * Lua scripts build the per-job and per-user names from the prefix (passed as ARGV[1]) with the
 * same rules (see lua/includes/common.lua); the global keys are passed in KEYS. Because of the
 * derived names the store needs one Redis (or one Cluster slot, with a hash tag in the prefix,
 * e.g. `cm:{q}:`).
 */
import type { JobStatus } from '../types.js';

export const DEFAULT_KEY_PREFIX = 'cm:';

export function redisKeys(p: string) {
  return {
    prefix: p,
    seq: `${p}seq`,
    front: `${p}front`,
    served: `${p}served`,
    job: (id: string) => `${p}job:${id}`,
    pqSeq: (user: string) => `${p}pq:seq:${user}`,
    pqPrio: (user: string) => `${p}pq:prio:${user}`,
    headsSeq: `${p}heads:seq`,
    headsPrio: `${p}heads:prio`,
    headsChanged: `${p}heads:changed`,
    headsMeta: `${p}heads:meta`,
    lastServed: `${p}served:user`,
    running: `${p}running`,
    leases: `${p}leases`,
    idxAll: `${p}idx:all`,
    idxStatus: (s: JobStatus) => `${p}idx:s:${s}`,
    idxUser: (user: string) => `${p}idx:u:${user}`,
    idxUserStatus: (s: JobStatus, user: string) => `${p}idx:us:${s}:${user}`,
    idxFinished: `${p}idx:finished`,
    users: `${p}users`,
    gpu: `${p}gpu`,
    activity: (user: string) => `${p}act:${user}`,
    settings: `${p}settings`,
    accounts: `${p}accounts`,
    workerTokens: `${p}wtokens`,
    workerTokensRevoked: `${p}wtokens:revoked`,
    blob: (ns: string) => `${p}blob:${ns}`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;
