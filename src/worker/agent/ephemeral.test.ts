/**
 * Ephemeral worker mode (`--exit-when-idle`): the agent says who started it and leaves by itself
 * once it has held nothing for the idle limit — never while a job runs or a report is unacknowledged.
 * Real stand-in ComfyUI, small real control plane.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveWorkerArgs } from '../../cli/commands/worker.js';
import { startFakeControlPlane, type FakeControlPlane } from '../../../test/support/fake-control-plane.js';
import { modelFreePrompt } from '../../../test/support/prompts.js';
import { startStandin, type Standin } from '../../../test/support/comfyui-standin/server.js';
import { IdleWatch } from './idle-watch.js';
import { createAgent, type WorkerAgent } from './index.js';

const logger = pino({ level: process.env.AGENT_TEST_LOG ?? 'silent' });

let standin: Standin;
let cp: FakeControlPlane | undefined;
let agent: WorkerAgent | undefined;

beforeAll(async () => {
  standin = await startStandin({ delayMs: 300 });
});
afterAll(async () => {
  await standin.close();
});
afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await cp?.close();
  cp = undefined;
});

function startEphemeral(idleMs: number, onIdle: () => void): WorkerAgent {
  agent = createAgent({
    serverUrl: cp!.url,
    token: cp!.token,
    comfyuiUrl: standin.url,
    name: 'as-local-1',
    logger,
    probeIntervalMs: 200,
    failuresToUnhealthy: 1,
    backoff: { baseMs: 50, maxMs: 300 },
    mirrorFrontend: false,
    ephemeral: { provider: 'local', instance: 'pid-123', exitWhenIdleSeconds: 1 },
    exitWhenIdleMs: idleMs,
    onIdle,
  });
  agent.start();
  return agent;
}

describe('ephemeral worker', () => {
  it('registers as ephemeral and leaves after the idle limit, but not while a job runs', async () => {
    cp = await startFakeControlPlane();
    let idleAt: number | null = null;
    const startedAt = Date.now();
    startEphemeral(1500, () => (idleAt = Date.now()));
    const hello = await cp.waitFor('hello', (h) => h.healthy);
    expect(hello.ephemeral).toEqual({ provider: 'local', instance: 'pid-123', exitWhenIdleSeconds: 1 });

    // A job of ~2 s (longer than the idle limit) keeps it: idle counts from the job's end.
    cp.send({
      type: 'assign',
      job: {
        jobId: 'j1',
        attempt: 1,
        user: 'alice',
        prompt: modelFreePrompt({ sleep: { seconds: 2, steps: 2, seed: Date.now() } }),
        extraData: {},
        front: false,
      },
    });
    await cp.waitFor('job_completed', (m) => m.jobId === 'j1', 15_000);
    const doneAt = Date.now();
    expect(idleAt).toBeNull();
    expect(agent!.status().idleMs).not.toBeNull();
    const until = Date.now() + 10_000;
    while (idleAt === null && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(idleAt).not.toBeNull();
    expect(idleAt! - doneAt).toBeGreaterThanOrEqual(1000);
    expect(idleAt! - startedAt).toBeGreaterThan(2000);
  });

  it('a hand-started worker says nothing about being ephemeral', async () => {
    cp = await startFakeControlPlane();
    agent = createAgent({
      serverUrl: cp.url,
      token: cp.token,
      comfyuiUrl: standin.url,
      name: 'by-hand',
      logger,
      probeIntervalMs: 200,
      mirrorFrontend: false,
    });
    agent.start();
    const hello = await cp.waitFor('hello', (h) => h.healthy);
    expect(hello.ephemeral).toBeUndefined();
    expect(agent.status().idleMs).toBeNull();
  });
});

describe('IdleWatch', () => {
  it('fires once after the idle limit, counting from the last busy moment', () => {
    let now = 0;
    let busy = false;
    let fired = 0;
    const w = new IdleWatch({ idleMs: 1000, busy: () => busy, onIdle: () => fired++, clock: () => now });
    now = 900;
    w.check();
    busy = true;
    now = 950;
    w.check();
    busy = false;
    now = 1900;
    w.check();
    expect(fired).toBe(0);
    now = 1950;
    w.check();
    w.check();
    expect(fired).toBe(1);
  });
});

describe('worker command flags', () => {
  const env = { COMFY_MULTI_SERVER: 'http://cp', COMFY_MULTI_TOKEN: 't' };
  it('reads --exit-when-idle, --provider and --instance from flags or environment', () => {
    const r = resolveWorkerArgs(
      { exitWhenIdle: '300', provider: 'local' },
      { ...env, WORKER_INSTANCE: 'i-42' },
    );
    expect(r.ok && r.args).toMatchObject({ exitWhenIdle: 300, provider: 'local', instance: 'i-42' });
    const off = resolveWorkerArgs({}, env);
    expect(off.ok && off.args.exitWhenIdle).toBe(0);
  });
  it('a serverless replica without WORKER_NAME is named after its RunPod pod id, else its host name', () => {
    const pod = resolveWorkerArgs({}, { ...env, RUNPOD_POD_ID: 'abc123xyz', HOSTNAME: 'h' });
    expect(pod.ok && pod.args.name).toBe('runpod-abc123xyz');
    const host = resolveWorkerArgs({}, { ...env, HOSTNAME: 'gpu-box' });
    expect(host.ok && host.args.name).toBe('gpu-box');
    const named = resolveWorkerArgs({}, { ...env, RUNPOD_POD_ID: 'abc', WORKER_NAME: 'gpu1' });
    expect(named.ok && named.args.name).toBe('gpu1');
  });
  it('refuses a bad idle limit, and a provider without an idle limit, in one sentence each', () => {
    const bad = resolveWorkerArgs({ exitWhenIdle: '-1' }, env);
    expect(!bad.ok && bad.errors).toEqual([
      '--exit-when-idle (WORKER_EXIT_WHEN_IDLE_SECONDS) must be whole seconds from 0 to 86400',
    ]);
    const lonely = resolveWorkerArgs({ provider: 'local' }, env);
    expect(!lonely.ok && lonely.errors[0]).toMatch(/set --exit-when-idle too/);
  });
});
