/**
 * A Redis outage while a worker reports a finished job (STORE=redis, a real redis-server with AOF,
 * stopped and started again): the control plane acknowledges the report only once Redis has it,
 * so the agent's repeat after the outage completes the job, which never runs again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultSettings } from '../store/index.js';
import { openRedisStore } from '../store/redis/redis-store.js';
import { startRedisServer, type RedisServerHandle } from '../../test/support/redis-server.js';
import {
  PROMPT,
  TestAgent,
  startControlPlane,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

let cp: ControlPlane | undefined;
let redis: RedisServerHandle | undefined;
const agents: TestAgent[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  await cp?.close();
  cp = undefined;
  await redis?.stop();
  redis = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('a Redis outage during completion', () => {
  it('acks the report only once Redis recorded it; the repeat after the outage completes the job', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-redis-outage-'));
    dirs.push(dir);
    redis = await startRedisServer({ appendonly: true, dir, args: ['--appendfsync', 'always'] });
    const { port, url } = redis;
    cp = await startControlPlane(
      {},
      {
        openStore: (config) =>
          openRedisStore({ url, defaults: defaultSettings(config), keyPrefix: 'outage:' }),
      },
    );
    const token = await cp.token('gpu-x');
    const { agent: a } = await TestAgent.register(cp.wsUrl, token, { name: 'x1', acks: true });
    agents.push(a);
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');

    await redis.stop();
    a.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    expect(await a.next('error', () => true, 15_000)).toMatchObject({ code: 'internal' });
    expect(await a.none('ack', 200)).toBe(true);

    redis = await startRedisServer({ appendonly: true, dir, port, args: ['--appendfsync', 'always'] });
    // The agent sends its unacknowledged report again (here by hand, as its overdue-ack timer would).
    let ack: unknown = null;
    for (let i = 0; i < 20 && !ack; i++) {
      a.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
      ack = await a.next('ack', () => true, 5000).catch(() => null);
    }
    expect(ack).toMatchObject({ type: 'ack', report: 'job_completed', jobId: j.id, attempt: 1 });
    expect(await cp.store.getJob(j.id)).toMatchObject({ status: 'completed', attempts: 1 });
  }, 90_000);
});
