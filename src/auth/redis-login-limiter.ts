/**
 * The login throttle of {@link MemoryLoginLimiter}, kept in Redis so every control-plane process
 * sharing the store (STORE=redis) counts the same failures: a password-guessing storm spread over
 * three processes behind a load balancer is throttled as if it hit one.
 *
 * Same three leaky buckets, same arithmetic, done atomically by two Lua scripts (check-and-reserve,
 * finish). Per bucket a hash `{l: level, t: at}` and a sorted set of reservations in flight (scored
 * by when they lapse, so a process killed mid-check does not hold a place for ever). Every key
 * carries a TTL no longer than its window, so Redis memory stays bounded under any flood.
 */
import type { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import { isConnectionError } from '../store/redis/redis-client.js';
import type {
  Admission,
  BucketLimit,
  LoginAttempt,
  LoginLimiter,
  LoginLimits,
  LoginPermit,
} from './login-throttle.js';

/** A reservation whose outcome never came (its process died) stops counting after this long. */
const IN_FLIGHT_TTL_MS = 60_000;

// KEYS[1] trust key; then per bucket i: KEYS[2i] hash, KEYS[2i+1] in-flight set (pair, address, account).
// ARGV: now, hasDevice, permitId, inFlightTtl, then per bucket: maxFailures, windowMs.
// Returns {1, buckets held} or {0, waitMs, bucket index}.
const ADMIT_LUA = `
local now = tonumber(ARGV[1])
local permit = ARGV[3]
local flightTtl = tonumber(ARGV[4])
local count = 3
if ARGV[2] == '1' then count = 2
else
  local trustedUntil = tonumber(redis.call('GET', KEYS[1]) or '0')
  if trustedUntil > now then count = 2 end
end
local bestWait, bestScope = 0, 0
for i = 1, count do
  local hk, zk = KEYS[2 * i], KEYS[2 * i + 1]
  local max, window = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)
  local inflight = redis.call('ZCARD', zk)
  local h = redis.call('HMGET', hk, 'l', 't')
  local level = 0
  if h[1] then level = math.max(0, tonumber(h[1]) - (now - tonumber(h[2])) * max / window) end
  local excess = level + inflight + 1 - max
  if excess > 0 then
    local wait = math.max(1000, math.min(excess, level) * window / max)
    if wait > bestWait then bestWait, bestScope = wait, i end
  end
end
if bestWait > 0 then return {0, math.ceil(bestWait), bestScope} end
for i = 1, count do
  local zk = KEYS[2 * i + 1]
  redis.call('ZADD', zk, now + flightTtl, permit)
  redis.call('PEXPIRE', zk, flightTtl)
end
return {1, count}
`;

// KEYS as for admit (only the buckets held). ARGV: now, permitId, outcome, trustedMs, then per
// bucket: maxFailures, windowMs, scope.
const FINISH_LUA = `
local now = tonumber(ARGV[1])
local permit, outcome = ARGV[2], ARGV[3]
local count = (#KEYS - 1) / 2
for i = 1, count do
  local hk, zk = KEYS[2 * i], KEYS[2 * i + 1]
  local max, window, scope = tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i]), ARGV[4 + 3 * i]
  if permit ~= '' then redis.call('ZREM', zk, permit) end
  if outcome == 'fail' or (outcome == 'busy' and scope == 'address') then
    local h = redis.call('HMGET', hk, 'l', 't')
    local level = 0
    if h[1] then level = math.max(0, tonumber(h[1]) - (now - tonumber(h[2])) * max / window) end
    redis.call('HSET', hk, 'l', tostring(level + 1), 't', tostring(now))
    -- A level of at most maxFailures drains within one window.
    redis.call('PEXPIRE', hk, math.ceil(window * math.max(1, (level + 1) / max)))
  end
  if outcome == 'succeed' and i == 1 then
    if redis.call('ZCARD', zk) == 0 then redis.call('DEL', hk)
    else redis.call('HSET', hk, 'l', '0', 't', tostring(now)) end
  end
end
if outcome == 'succeed' then
  redis.call('SET', KEYS[1], tostring(now + tonumber(ARGV[4])), 'PX', ARGV[4])
end
return 1
`;

type Scope = 'pair' | 'address' | 'account';
const SCOPES: Scope[] = ['pair', 'address', 'account'];

/** A cached correct login within this long of the last one for its pair skips the Redis call. */
const SUCCEEDED_QUIET_MS = 60_000;
const SUCCEEDED_MEMORY = 10_000;

/** {@link LoginLimiter} shared by every process on one Redis (STORE=redis). */
export class RedisLoginLimiter implements LoginLimiter {
  /**
   * Pairs this process reported as signed in lately. Scripts sending HTTP Basic with every request
   * hit the credentials cache each time; one reset per pair a minute is enough (a failure at worst
   * stays counted a little longer), so such requests cost no Redis round trip.
   */
  private readonly recentSuccess = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    /** REDIS_PREFIX: keys are `<prefix>login:…`. */
    private readonly prefix: string,
    private readonly limits: LoginLimits,
    private readonly now: () => number = Date.now,
  ) {}

  async admit(attempt: LoginAttempt): Promise<Admission> {
    const permitId = randomBytes(9).toString('base64url');
    const keys = this.keys(attempt, 3);
    const args: (string | number)[] = [this.now(), attempt.device ? '1' : '0', permitId, IN_FLIGHT_TTL_MS];
    for (const s of SCOPES) args.push(this.limits[s].maxFailures, this.limits[s].windowMs);
    const r = (await this.io(this.redis.eval(ADMIT_LUA, keys.length, ...keys, ...args))) as number[];
    if (r[0] !== 1) {
      return { ok: false, retryAfter: Math.max(1, Math.ceil(r[1]! / 1000)), scope: SCOPES[r[2]! - 1]! };
    }
    const held = r[1]!;
    let done = false;
    const finish = async (outcome: 'fail' | 'succeed' | 'release' | 'busy'): Promise<void> => {
      if (done) return;
      done = true;
      await this.finish(attempt, held, permitId, outcome);
    };
    const permit: LoginPermit = {
      fail: () => finish('fail'),
      succeed: () => finish('succeed'),
      release: () => finish('release'),
      busy: () => finish('busy'),
    };
    return { ok: true, permit };
  }

  async succeeded(attempt: LoginAttempt): Promise<void> {
    const pair = this.keys(attempt, 1)[1]!;
    const now = this.now();
    if (now - (this.recentSuccess.get(pair) ?? -Infinity) < SUCCEEDED_QUIET_MS) return;
    this.recentSuccess.delete(pair);
    this.recentSuccess.set(pair, now);
    if (this.recentSuccess.size > SUCCEEDED_MEMORY)
      this.recentSuccess.delete(this.recentSuccess.keys().next().value!);
    await this.finish(attempt, 1, '', 'succeed');
  }

  private async finish(
    attempt: LoginAttempt,
    held: number,
    permitId: string,
    outcome: string,
  ): Promise<void> {
    // A failure must not be hidden by a recent reset remembered here.
    if (outcome === 'fail') this.recentSuccess.delete(this.keys(attempt, 1)[1]!);
    const keys = this.keys(attempt, held);
    const args: (string | number)[] = [this.now(), permitId, outcome, this.limits.trustedPairMs];
    for (const s of SCOPES.slice(0, held)) {
      const l: BucketLimit = this.limits[s];
      args.push(l.maxFailures, l.windowMs, s);
    }
    await this.io(this.redis.eval(FINISH_LUA, keys.length, ...keys, ...args));
  }

  private keys(a: LoginAttempt, buckets: number): string[] {
    const p = `${this.prefix}login:`;
    const pair = a.device ? `device:${a.device}\u0000${a.account}` : `${a.address}\u0000${a.account}`;
    const ids = [`p\u0000${pair}`, `a\u0000${a.address}`, `u\u0000${a.account}`];
    const keys = [`${p}trust:${pair}`];
    for (const id of ids.slice(0, buckets)) keys.push(`${p}b:${id}`, `${p}f:${id}`);
    return keys;
  }

  private async io<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if (isConnectionError(err)) {
        throw new AppError('STORE_UNAVAILABLE', `Redis is unavailable: ${(err as Error).message}`, {
          retryAfter: 2,
          cause: err,
        });
      }
      throw err;
    }
  }
}
