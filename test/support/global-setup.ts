/**
 * Vitest global setup: one private redis-server for the whole test run. Tests read its URL with
 * `inject('redisUrl')` (or `process.env.TEST_REDIS_URL`) and keep apart by key prefix.
 */
import type { TestProject } from 'vitest/node';
import { startRedisServer } from './redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `redis://127.0.0.1:<port>` of the run's private redis-server. */
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startRedisServer();
  project.provide('redisUrl', server.url);
  process.env.TEST_REDIS_URL = server.url;
  return async () => {
    delete process.env.TEST_REDIS_URL;
    await server.stop();
  };
}
