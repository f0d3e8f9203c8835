/**
 * Several control-plane "processes" in one test: each its own Redis store connection, its own
 * DATA_DIR, its own real RedisClusterBus (opened by createServices from STORE=redis) and its own
 * fastify app, all sharing one Redis key prefix (and, with `s3`, one bucket) — what N
 * `comfy-multi serve` processes behind a load balancer share. Drive them with `inject`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/logger.js';
import { createServices, type Services } from '../../src/services.js';
import { defaultSettings } from '../../src/store/index.js';
import { openRedisStore } from '../../src/store/redis/redis-store.js';

export interface ClusterProcess {
  name: string;
  app: FastifyInstance;
  services: Services;
  config: Config;
  dataDir: string;
  /** Closes this process's app, bus and store (a graceful stop). */
  close(): Promise<void>;
}

export interface ClusterKit {
  prefix: string;
  processes: ClusterProcess[];
  /** One more process on the same Redis prefix (and bucket). */
  add(env?: Record<string, string>): Promise<ClusterProcess>;
  basic(user: string, password: string): string;
  close(): Promise<void>;
}

export async function startClusterKit(opts: {
  redisUrl: string;
  count: number;
  /** Extra config for every process (FILES=s3 and its S3_* settings, ...). */
  env?: Record<string, string>;
  /** Build the app (default true); false gives services only. */
  app?: boolean;
}): Promise<ClusterKit> {
  const prefix = `test:ck:${process.pid}:${Math.random().toString(36).slice(2)}:`;
  const processes: ClusterProcess[] = [];
  const add = async (env: Record<string, string> = {}): Promise<ClusterProcess> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'cm-cluster-'));
    const config = loadConfig({
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      STORE: 'redis',
      REDIS_URL: opts.redisUrl,
      REDIS_PREFIX: prefix,
      ...opts.env,
      ...env,
    });
    const store = await openRedisStore({
      url: opts.redisUrl,
      keyPrefix: prefix,
      defaults: defaultSettings(config),
      name: `test-cluster-${processes.length}`,
    });
    const services = await createServices(config, store, createLogger('silent'));
    const app = await buildApp(services);
    if (opts.app !== false) await app.ready();
    let closed = false;
    const p: ClusterProcess = {
      name: `p${processes.length}`,
      app,
      services,
      config,
      dataDir,
      async close() {
        if (closed) return;
        closed = true;
        services.queue.stop();
        await app.close();
        await store.close();
        services.files.close?.();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
    processes.push(p);
    return p;
  };
  // Started together, as a fleet does: shared secrets must still agree.
  await Promise.all(Array.from({ length: opts.count }, () => add()));
  return {
    prefix,
    processes,
    add,
    basic: (user, password) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
    async close() {
      await Promise.all(processes.map((p) => p.close()));
    },
  };
}
