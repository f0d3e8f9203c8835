/**
 * Builds a whole control plane in-process for tests: a fresh SQLite store in a temp folder, the
 * services and the fastify app (not listening; use `inject`, or `listen()` for WebSockets).
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
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';

export interface Harness {
  app: FastifyInstance;
  services: Services;
  config: Config;
  dataDir: string;
  /** `Authorization` header value for HTTP Basic. */
  basic(user: string, password: string): string;
  /** Creates an account and returns its Basic header. */
  addUser(name: string, role?: 'participant' | 'instructor'): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const dataDir = await mkdtemp(join(tmpdir(), 'cm-test-'));
  const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent', ...env });
  const store = await openSqliteStore({
    path: join(dataDir, 'comfy-multi.db'),
    defaults: defaultSettings(config),
  });
  const services = await createServices(config, store, createLogger('silent'));
  const app = await buildApp(services);
  await app.ready();
  const basic = (user: string, password: string) =>
    `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  return {
    app,
    services,
    config,
    dataDir,
    basic,
    async addUser(name, role = 'participant') {
      const password = `pw-${name}-0123456789`;
      await services.accounts.create(name, role, password);
      return basic(name, password);
    },
    async close() {
      services.queue.stop();
      await app.close();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
