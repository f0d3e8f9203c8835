/**
 * What every part of the Redis store shares: the client, the key layout, the loaded Lua scripts,
 * the configured defaults, and the one place where Redis failures become STORE_UNAVAILABLE.
 *
 * `RedisStore` (redis-store.ts) is a thin facade over domain parts (claim.ts, job-writes.ts,
 * job-reads.ts, settings.ts, records.ts). Those parts take this core rather than the store, so
 * none of them imports the module that imports them.
 */
import type { Redis } from 'ioredis';
import { AppError } from '../../errors.js';
import type { QueueSettings } from '../types.js';
import { redisKeys, type RedisKeys } from './keys.js';
import { registerLuaScripts, type ScriptRunner } from './lua-scripts.js';
import { isConnectionError } from './redis-client.js';

export class RedisStoreCore {
  readonly keys: RedisKeys;
  /** Settings returned while none are stored (a copy: the caller's object may change). */
  readonly defaults: QueueSettings;
  private readonly scripts: Map<string, ScriptRunner>;
  /**
   * Set by `RedisStore.close()`. Kept here because `raise` reads it: after close, a failing call
   * is reported as a closed store rather than as Redis being down.
   */
  closed = false;

  constructor(
    readonly client: Redis,
    keyPrefix: string,
    defaults: QueueSettings,
  ) {
    this.keys = redisKeys(keyPrefix);
    this.defaults = structuredClone(defaults);
    this.scripts = registerLuaScripts(client);
  }

  raise(err: unknown): never {
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

  async io<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.raise(err);
    }
  }

  async run(verb: string, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown[]> {
    const script = this.scripts.get(verb);
    if (!script) throw new Error(`no Lua script ${verb}`);
    try {
      return (await script(keys, args)) as unknown[];
    } catch (err) {
      this.raise(err);
    }
  }

  /** The first four KEYS of every script that keeps heads up to date (lua/includes/heads.lua). */
  headsKeys(): string[] {
    const k = this.keys;
    return [k.headsSeq, k.headsPrio, k.lastServed, k.running, k.headsChanged, k.headsMeta];
  }

  transitionKeys(): string[] {
    const k = this.keys;
    return [...this.headsKeys(), k.leases, k.idxFinished, k.gpu];
  }
}
