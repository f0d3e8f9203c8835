import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { JobStore, QueueSettings } from './types.js';

/** The queue settings a fresh store starts with, from config. */
export function defaultSettings(config: Config): QueueSettings {
  return {
    mode: config.QUEUE_MODE,
    paused: false,
    limits: {
      maxPendingPerUser: config.MAX_PENDING_PER_USER,
      maxRunningPerUser: config.MAX_RUNNING_PER_USER,
    },
    userLimits: {},
  };
}

/** Opens the configured backend. The only place that knows which backends exist. */
export async function openStore(config: Config): Promise<JobStore> {
  const defaults = defaultSettings(config);
  if (config.STORE === 'redis') {
    const { openRedisStore } = await import('./redis/redis-store.js');
    return openRedisStore({ url: config.REDIS_URL!, keyPrefix: config.REDIS_PREFIX, defaults });
  }
  mkdirSync(config.DATA_DIR, { recursive: true, mode: 0o700 });
  const { openSqliteStore } = await import('./sqlite/sqlite-store.js');
  return openSqliteStore({ path: join(config.DATA_DIR, 'comfy-multi.db'), defaults });
}
