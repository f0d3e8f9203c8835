/**
 * Serverless pools — RunPod serverless endpoints and Verda container deployments — against a local
 * replay of their APIs (test/support/cloud-replay.ts, never the live clouds): the minimum replica
 * count follows the autoscaler's starts and stops, the instructor's other settings survive, the
 * failure modes map to their kinds; then the autoscaler loop with two real agents that register
 * under names of their own and are bound to the slots, run the waiting jobs and are scaled away.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloudReplay } from '../../test/support/cloud-replay.js';
import { startHarness } from '../../test/support/app-harness.js';
import { startTestAgent } from '../../test/support/agent.js';
import { startStandin } from '../../test/support/comfyui-standin/server.js';
import { waitFor } from '../../test/support/processes.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { listen } from '../../test/support/gateway-kit.js';
import type { AgentHandle } from '../worker/agent/index.js';
import { Autoscaler } from './autoscaler.js';
import { ProviderError } from './provider.js';
import { bindPoolWorkers } from './replica-pool.js';
import { RunpodServerlessProvider } from './runpod-serverless-provider.js';
import { VerdaContainersProvider } from './verda-containers-provider.js';
import { testPolicy } from '../../test/support/autoscale.js';

let replay: CloudReplay;
beforeEach(async () => {
  replay = await new CloudReplay().start();
  replay.endpoints.set('ep1', { id: 'ep1', name: 'comfy', workersMin: 0, workersMax: 1, idleTimeout: 5 });
  replay.deployments.set('comfy-gpu', {
    min_replica_count: 0,
    max_replica_count: 1,
    scale_down_policy: { delay_seconds: 300 },
    scale_up_policy: { delay_seconds: 0 },
    queue_message_ttl_seconds: 500,
    concurrent_requests_per_replica: 1,
    scaling_triggers: { queue_load: { threshold: 1 } },
  });
});
afterEach(async () => {
  await replay.close();
});

const noSleep = { sleep: async () => {} };
const runpod = (endpointId = 'ep1') =>
  new RunpodServerlessProvider({
    apiUrl: `${replay.url}/runpod/v1`,
    apiKey: 'rp-key',
    endpointId,
    instanceType: 'runpod-serverless',
    ...noSleep,
  });
const verda = (deployment = 'comfy-gpu') =>
  new VerdaContainersProvider({
    apiUrl: `${replay.url}/verda/v1`,
    clientId: 'cid',
    clientSecret: 'secret',
    deployment,
    instanceType: 'verda-containers',
    ...noSleep,
  });

describe('runpod-serverless', () => {
  it("each start raises the endpoint's minimum workers by one (and the maximum with it), each stop lowers it", async () => {
    const p = runpod();
    await p.check();
    const a = await p.start({ name: 'auto-a' });
    const b = await p.start({ name: 'auto-b' });
    expect(replay.endpoints.get('ep1')).toMatchObject({ workersMin: 2, workersMax: 2 });
    expect(await p.list()).toEqual([
      { id: a.id, name: 'auto-a' },
      { id: b.id, name: 'auto-b' },
    ]);
    await p.stop(a.id);
    expect(replay.endpoints.get('ep1')).toMatchObject({ workersMin: 1, workersMax: 2 });
    expect((await p.list()).map((i) => i.name)).toEqual(['auto-b']);
    // Stopping a slot twice never lowers the count for another one.
    await p.stop(a.id);
    expect(replay.endpoints.get('ep1')!.workersMin).toBe(1);
    expect(replay.requests('PATCH', '/runpod/v1/endpoints/ep1').map((r) => r.body)).toEqual([
      { workersMin: 1, workersMax: 1 },
      { workersMin: 2, workersMax: 2 },
      { workersMin: 1, workersMax: 2 },
    ]);
  });

  it('after a control-plane restart, replicas the endpoint still keeps are listed to be adopted', async () => {
    replay.endpoints.get('ep1')!.workersMin = 2;
    const names = (await runpod().list()).map((i) => i.name);
    expect(names).toEqual(['adopted-runpod-serverless-0', 'adopted-runpod-serverless-1']);
  });

  it('an unknown endpoint, a bad key and an empty balance fail in one sentence each, with their kinds', async () => {
    await expect(runpod('nope').check()).rejects.toThrow(
      'RunPod has no serverless endpoint nope; check AUTOSCALE_RUNPOD_ENDPOINT_ID',
    );
    replay.quota = true;
    const quota = await runpod()
      .start({ name: 'x' })
      .catch((e: unknown) => e);
    expect(quota).toBeInstanceOf(ProviderError);
    expect((quota as ProviderError).kind).toBe('quota');
    replay.badCredentials = true;
    const creds = await runpod()
      .check()
      .catch((e: unknown) => e);
    expect((creds as ProviderError).kind).toBe('credentials');
    expect((creds as Error).message).not.toContain('rp-key');
  });
});

describe('verda-containers', () => {
  it("sets the deployment's minimum replicas and keeps the instructor's other scaling settings", async () => {
    const p = verda();
    await p.check();
    const a = await p.start({ name: 'auto-a' });
    await p.start({ name: 'auto-b' });
    expect(replay.deployments.get('comfy-gpu')).toMatchObject({
      min_replica_count: 2,
      max_replica_count: 2,
      scale_down_policy: { delay_seconds: 300 },
      queue_message_ttl_seconds: 500,
    });
    await p.stop(a.id);
    expect(replay.deployments.get('comfy-gpu')).toMatchObject({ min_replica_count: 1, max_replica_count: 2 });
    const patch = replay.requests('PATCH', '/verda/v1/container-deployments/comfy-gpu/scaling')[0]!;
    expect(patch.body).toMatchObject({ scaling_triggers: { queue_load: { threshold: 1 } } });
    expect(patch.auth).toMatch(/^Bearer tok-/);
  });

  it('an expired token is renewed; an unknown deployment fails in one sentence', async () => {
    const p = verda();
    await p.start({ name: 'a' });
    replay.expireTokens();
    await p.start({ name: 'b' });
    expect(replay.deployments.get('comfy-gpu')!.min_replica_count).toBe(2);
    await expect(verda('gone').check()).rejects.toThrow(
      'Verda has no container deployment gone; check AUTOSCALE_VERDA_DEPLOYMENT',
    );
  });
});

describe('binding pool replicas to slots', () => {
  it('the oldest free slots take the replicas that registered, in order; bound slots keep theirs', () => {
    const slots = [
      { name: 'auto-2', requestedAt: 20 },
      { name: 'auto-1', requestedAt: 10 },
      { name: 'runpod-x', requestedAt: 5 },
    ];
    expect(bindPoolWorkers(slots, ['runpod-x', 'runpod-y', 'runpod-z', 'runpod-w'])).toEqual([
      ['auto-1', 'runpod-y'],
      ['auto-2', 'runpod-z'],
    ]);
    // A bound replica that went away frees its slot for the platform's replacement.
    expect(bindPoolWorkers([{ name: 'runpod-x', requestedAt: 5 }], ['runpod-v'])).toEqual([
      ['runpod-x', 'runpod-v'],
    ]);
    expect(bindPoolWorkers(slots, [])).toEqual([]);
  });
});

describe('the autoscaler loop with a serverless endpoint', () => {
  it('starts slots for waiting jobs, binds the replicas that register, runs the jobs, then scales to zero', async () => {
    const TOKEN = 'serverless-test-worker-token-0123';
    const h = await startHarness({ WORKER_TOKENS: `pool:${TOKEN}` });
    const standin = await startStandin({ delayMs: 20 });
    const agents: AgentHandle[] = [];
    let now = Date.now();
    const provider = runpod();
    replay.endpoints.get('ep1')!.workersMax = 2;
    const scaler = new Autoscaler(
      { provider, queue: h.services.queue, workers: h.services.workers },
      {
        policy: testPolicy({ jobsPerWorker: 2, idleMs: 60_000, upCooldownMs: 0, downCooldownMs: 0 }),
        intervalMs: 60_000,
        pricePerHour: 1,
        clock: () => now,
      },
    );
    try {
      const base = await listen(h);
      const jobs = await Promise.all(
        [0, 1, 2, 3].map(() => h.services.queue.enqueue({ user: 'alice', prompt: modelFreePrompt() })),
      );
      await scaler.tick();
      expect(replay.endpoints.get('ep1')!.workersMin).toBe(2);
      expect(scaler.view().instances.map((i) => i.phase)).toEqual(['starting', 'starting']);
      // What RunPod does next: two workers start the image; each agent names itself after its pod.
      for (const pod of ['p1', 'p2'])
        agents.push(
          startTestAgent({
            serverUrl: base,
            token: TOKEN,
            comfyuiUrl: standin.url,
            name: `runpod-${pod}`,
            mirrorFrontend: false,
            ephemeral: { provider: 'runpod-serverless', instance: pod, exitWhenIdleSeconds: 600 },
          }),
        );
      await waitFor(() => h.services.workers.online().length === 2, 30_000, 'both replicas to register');
      now += 30_000;
      await scaler.tick();
      const view = scaler.view().instances;
      expect(view.map((i) => i.name).sort()).toEqual(['runpod-p1', 'runpod-p2']);
      expect(view.every((i) => i.phase === 'ready')).toBe(true);
      await waitFor(
        async () => {
          const all = await Promise.all(jobs.map((j) => h.services.queue.store.getJob(j.id)));
          return all.every((j) => j?.status === 'completed');
        },
        30_000,
        'the four jobs to complete',
      );
      // Idle past the limit: both slots are given back and the endpoint goes to zero.
      await scaler.tick();
      now += 61_000;
      await scaler.tick();
      now += 1000;
      await scaler.tick();
      expect(replay.endpoints.get('ep1')!.workersMin).toBe(0);
      expect(scaler.view().instances.map((i) => i.phase)).toEqual(['stopping', 'stopping']);
      // RunPod ends the workers it no longer has to keep; once gone, nothing is left to bill.
      await Promise.all(agents.map((a) => a.stop()));
      await waitFor(() => h.services.workers.online().length === 0, 30_000, 'the replicas to leave');
      await scaler.tick();
      expect(scaler.view().instances).toEqual([]);
    } finally {
      await scaler.stop();
      await Promise.all(agents.map((a) => a.stop()));
      await standin.close();
      await h.close();
    }
  }, 60_000);
});
