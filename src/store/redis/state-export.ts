/**
 * Whole-store export and import for Redis (see `StateRecord` in ../types.ts), keeping the key
 * layout of `keys.ts` exactly.
 *
 * Export reads the small things through the store's own methods and the jobs page by page from
 * `idx:all` (by seq): each job is read atomically, but the whole is not one snapshot — stop the
 * server for an exact copy of a busy store (the SQLite export is one snapshot).
 *
 * Import writes each batch of jobs with one MULTI (job hash, `idx:*`, `users`, `act:<user>`,
 * `idx:finished`, `leases`, `running`, `gpu`), then fills the per-user pending queues and the heads
 * with the store's own Lua helpers (`addPending`, `refreshHeads` from lua/includes), so the scores
 * and head format are the scripts' own, sets the counters and starts a new heads epoch (claimers
 * drop any heads they cached). It is not atomic: a failed import leaves a partial store; import
 * again with `replace`.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import {
  isTerminal,
  JOB_STATUSES,
  type ImportCounts,
  type ImportOptions,
  type Job,
  type JobStore,
  type StateRecord,
} from '../types.js';
import { ImportTracker, STATE_FORMAT, STATE_VERSION, notEmptyError, toAsync } from '../state-records.js';
import type { RedisKeys } from './keys.js';
import { LUA_DIR } from './lua-scripts.js';

/**
 * What export and import use of the Redis store: its client and key layout, and the store's own
 * methods for the small records (so their encoding stays in one place). Named structurally rather
 * than as `RedisStore`, so this module does not import the store that imports it.
 */
export type RedisStateStore = Pick<
  JobStore,
  'getSettings' | 'listAccounts' | 'listWorkerTokens' | 'getJob' | 'putAccount' | 'putWorkerToken' | 'putBlob'
> & { readonly client: Redis; readonly keys: RedisKeys };

const PAGE = 500;
const JOB_BATCH = 200;
const USER_BATCH = 200;

/** `*`, `?`, `[`, `]` and `\` in a key prefix must not act as SCAN wildcards. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

async function scanKeys(client: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

function byCodePoint(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function exec(multi: ReturnType<Redis['multi']>): Promise<unknown[]> {
  const res = (await multi.exec()) ?? [];
  for (const [err] of res) if (err) throw err;
  return res.map(([, v]) => v);
}

export async function* exportRedisState(store: RedisStateStore): AsyncGenerator<StateRecord> {
  const { client, keys: k } = store;
  const [seq, front, served, hasSettings] = await exec(
    client.multi().get(k.seq).get(k.front).get(k.served).exists(k.settings),
  );
  yield {
    type: 'header',
    format: STATE_FORMAT,
    version: STATE_VERSION,
    backend: 'redis',
    exportedAt: Date.now(),
  };
  yield {
    type: 'counters',
    seq: Number(seq ?? 0),
    front: Number(front ?? 0),
    serve: Number(served ?? 0),
  };
  yield { type: 'settings', settings: Number(hasSettings) === 1 ? await store.getSettings() : null };
  for (const account of await store.listAccounts()) yield { type: 'account', account };
  for (const token of await store.listWorkerTokens()) yield { type: 'worker_token', token };
  const blobPrefix = `${k.prefix}blob:`;
  const namespaces = (await scanKeys(client, `${globEscape(blobPrefix)}*`))
    .map((key) => key.slice(blobPrefix.length))
    .sort(byCodePoint);
  for (const ns of namespaces) {
    const h = await client.hgetall(k.blob(ns));
    for (const key of Object.keys(h).sort(byCodePoint)) yield { type: 'blob', ns, key, value: h[key]! };
  }
  const lastServed = await client.hgetall(k.lastServed);
  for (const user of Object.keys(lastServed).sort(byCodePoint)) {
    const n = Number(lastServed[user]);
    if (n > 0) yield { type: 'user', user, lastServed: n };
  }
  let after = '-inf';
  for (;;) {
    const page = await client.zrangebyscore(k.idxAll, after, '+inf', 'WITHSCORES', 'LIMIT', 0, PAGE);
    if (page.length === 0) return;
    const ids: string[] = [];
    for (let i = 0; i < page.length; i += 2) ids.push(page[i]!);
    // getJob keeps the hash decoding in one place (the store); auto-pipelining batches the reads.
    const jobs = await Promise.all(ids.map((id) => store.getJob(id)));
    for (const job of jobs) {
      if (!job) continue;
      const before = job.status === 'running' ? await client.hget(k.job(job.id), 'servedBefore') : null;
      yield before === null ? { type: 'job', job } : { type: 'job', job, servedBefore: Number(before) };
    }
    if (page.length < PAGE * 2) return;
    after = `(${page[page.length - 1]!}`;
  }
}

/** Every key of the store's layout (keys.ts), and nothing else under the prefix. */
async function storeKeys(client: Redis, k: RedisKeys): Promise<string[]> {
  const p = globEscape(k.prefix);
  const fixed = [
    k.seq,
    k.front,
    k.served,
    k.headsSeq,
    k.headsPrio,
    k.headsChanged,
    k.headsMeta,
    k.lastServed,
    k.running,
    k.leases,
    k.idxAll,
    k.idxFinished,
    k.users,
    k.gpu,
    k.settings,
    k.accounts,
    k.workerTokens,
    k.workerTokensRevoked,
  ];
  const patterns = ['job:*', 'pq:seq:*', 'pq:prio:*', 'idx:s:*', 'idx:u:*', 'idx:us:*', 'act:*', 'blob:*'];
  const found = await Promise.all(patterns.map((pat) => scanKeys(client, `${p}${pat}`)));
  return [...fixed, ...found.flat()];
}

async function isEmpty(client: Redis, k: RedisKeys): Promise<boolean> {
  const r = await exec(
    client
      .multi()
      .exists(k.seq, k.front, k.served, k.settings, k.accounts, k.workerTokens, k.lastServed, k.idxAll),
  );
  if (Number(r[0]) > 0) return false;
  return (await scanKeys(client, `${globEscape(k.prefix)}blob:*`)).length === 0;
}

/** The job as the store's Lua scripts keep it: absent field = null, numbers as decimal strings. */
function jobFields(j: Job, servedBefore: number | undefined): Record<string, string> {
  const f: Record<string, string> = {
    id: j.id,
    seq: String(j.seq),
    user: j.user,
    status: j.status,
    priority: j.priority,
    front: String(j.front),
    prompt: JSON.stringify(j.prompt),
    models: JSON.stringify(j.models),
    metadata: JSON.stringify(j.metadata),
    attempts: String(j.attempts),
    skips: String(j.skips),
    createdAt: String(j.createdAt),
    outputs: JSON.stringify(j.outputs),
  };
  if (j.workerId !== null) f.workerId = j.workerId;
  if (j.leaseExpiresAt !== null) f.leaseExpiresAt = String(j.leaseExpiresAt);
  if (j.startedAt !== null) f.startedAt = String(j.startedAt);
  if (j.finishedAt !== null) f.finishedAt = String(j.finishedAt);
  if (j.error !== null) f.error = JSON.stringify(j.error);
  // requeue-expired marks the jobs it failed, so a late report from the lost worker is 'terminal'.
  if (j.status === 'failed' && j.error?.reason === 'worker_lost') f.lostLease = '1';
  if (j.status === 'running' && servedBefore !== undefined) f.servedBefore = String(servedBefore);
  return f;
}

const LUA_BODY = `
local H = headsKeys()
local op = ARGV[2]
if op == 'pending' then
  for i = 3, #ARGV do
    local id = ARGV[i]
    local f = redis.call('HMGET', jobKey(id), 'user', 'seq', 'front', 'priority', 'status')
    if f[5] == 'pending' then addPending(f[1], id, f[2], f[3], f[4]) end
  end
elseif op == 'heads' then
  for i = 3, #ARGV do refreshHeads(H, ARGV[i]) end
end
return #ARGV - 2
`;

let importLua: string | undefined;

/** The store's own helpers (lua/includes/common + heads) followed by the import steps. */
function importScript(): string {
  importLua ??= [
    readFileSync(path.join(LUA_DIR, 'includes', 'common.lua'), 'utf8'),
    readFileSync(path.join(LUA_DIR, 'includes', 'heads.lua'), 'utf8'),
    LUA_BODY,
  ].join('\n');
  return importLua;
}

export async function importRedisState(
  store: RedisStateStore,
  records: AsyncIterable<StateRecord> | Iterable<StateRecord>,
  opts: ImportOptions,
): Promise<ImportCounts> {
  const { client, keys: k } = store;
  if (!(await isEmpty(client, k))) {
    if (!opts.replace) throw notEmptyError('Redis');
    const all = await storeKeys(client, k);
    for (let i = 0; i < all.length; i += 500) await client.unlink(...all.slice(i, i + 500));
  }
  const script = importScript();
  const headsKeys = [k.headsSeq, k.headsPrio, k.lastServed, k.running, k.headsChanged, k.headsMeta];
  const runScript = (op: 'pending' | 'heads', args: string[]) =>
    client.eval(script, headsKeys.length, ...headsKeys, k.prefix, op, ...args);

  const tracker = new ImportTracker();
  const pendingUsers = new Set<string>();
  let batch: { job: Job; servedBefore?: number }[] = [];

  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const m = client.multi();
    const pendingIds: string[] = [];
    for (const { job: j, servedBefore } of batch) {
      m.hset(k.job(j.id), jobFields(j, servedBefore));
      m.zadd(k.idxAll, j.seq, j.id);
      m.zadd(k.idxStatus(j.status), j.seq, j.id);
      m.zadd(k.idxUser(j.user), j.seq, j.id);
      m.zadd(k.idxUserStatus(j.status, j.user), j.seq, j.id);
      m.sadd(k.users, j.user);
      m.zadd(k.activity(j.user), Math.max(j.createdAt, j.finishedAt ?? j.createdAt), j.id);
      if (isTerminal(j.status) && j.finishedAt !== null) m.zadd(k.idxFinished, j.finishedAt, j.id);
      if (j.startedAt !== null && j.finishedAt !== null)
        m.hincrbyfloat(k.gpu, j.user, j.finishedAt - j.startedAt);
      if (j.status === 'running') {
        m.hincrby(k.running, j.user, 1);
        if (j.leaseExpiresAt !== null) m.zadd(k.leases, j.leaseExpiresAt, j.id);
      }
      if (j.status === 'pending') {
        pendingIds.push(j.id);
        pendingUsers.add(j.user);
      }
    }
    await exec(m);
    if (pendingIds.length > 0) await runScript('pending', pendingIds);
    batch = [];
  };

  for await (const r of toAsync(records)) {
    tracker.observe(r);
    switch (r.type) {
      case 'job':
        if (!JOB_STATUSES.includes(r.job.status)) throw new Error(`unknown job status ${r.job.status}`);
        batch.push({ job: r.job, servedBefore: r.servedBefore });
        if (batch.length >= JOB_BATCH) await flush();
        break;
      case 'settings':
        if (r.settings === null) await client.del(k.settings);
        else {
          const s = r.settings;
          await exec(
            client
              .multi()
              .del(k.settings)
              .hset(k.settings, {
                mode: s.mode,
                paused: s.paused ? '1' : '0',
                maxPendingPerUser: String(s.limits.maxPendingPerUser),
                maxRunningPerUser: String(s.limits.maxRunningPerUser),
                userLimits: JSON.stringify(s.userLimits),
              }),
          );
        }
        break;
      case 'account':
        await store.putAccount(r.account);
        break;
      case 'worker_token':
        await store.putWorkerToken(r.token);
        break;
      case 'blob':
        await store.putBlob(r.ns, r.key, r.value);
        break;
      case 'user':
        await client.hset(k.lastServed, r.user, String(r.lastServed));
        break;
      default:
        break; // header, counters: handled by the tracker
    }
  }
  await flush();
  const c = tracker.finalCounters();
  await exec(
    client.multi().set(k.seq, String(c.seq)).set(k.front, String(c.front)).set(k.served, String(c.serve)),
  );
  const users = [...pendingUsers];
  for (let i = 0; i < users.length; i += USER_BATCH) await runScript('heads', users.slice(i, i + USER_BATCH));
  // A new epoch: every claimer (in this process or another) reloads all heads at its next claim.
  await client.hset(k.headsMeta, 'epoch', randomUUID());
  return tracker.counts;
}
