/**
 * The verda and runpod providers against a local replay of their APIs (test/support/cloud-replay.ts,
 * never the live clouds): starts, lists and stops, and the failure modes — no capacity in a
 * location, quota, expired or bad credentials, rate limits — each mapped to the failure kind the
 * autoscaler shows. Then the autoscaler loop with verda: an instance that never registers is
 * stopped at the provider and the job stays queued.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloudReplay } from '../../test/support/cloud-replay.js';
import { startHarness } from '../../test/support/app-harness.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { loadConfig } from '../config/load-config.js';
import { Autoscaler, type AutoscaleAlert } from './autoscaler.js';
import { retryAfterMs } from './cloud-http.js';
import { describeAutoscale } from './index.js';
import { ProviderError } from './provider.js';
import { RunpodProvider, type RunpodOptions } from './runpod-provider.js';
import { VerdaProvider, type VerdaOptions } from './verda-provider.js';
import { testPolicy } from '../../test/support/autoscale.js';

let replay: CloudReplay;
const sleeps: number[] = [];
beforeEach(async () => {
  replay = await new CloudReplay().start();
  sleeps.length = 0;
});
afterEach(async () => {
  await replay.close();
});

const common = {
  serverUrl: 'https://workshop.example',
  token: "tok'en",
  exitWhenIdleSeconds: 420,
  sleep: async (ms: number) => void sleeps.push(ms),
};
const verda = (o: Partial<VerdaOptions> = {}) =>
  new VerdaProvider({
    apiUrl: `${replay.url}/verda/v1`,
    clientId: 'cid',
    clientSecret: 'secret',
    instanceType: '1RTX4090.16V',
    image: 'ubuntu-24.04-cuda-12.8-docker',
    locations: ['FIN-01', 'ICE-01'],
    sshKeyIds: [],
    workerImage: 'registry.example/comfy-multi-gpu:1',
    spot: false,
    ...common,
    ...o,
  });
const runpod = (o: Partial<RunpodOptions> = {}) =>
  new RunpodProvider({
    apiUrl: `${replay.url}/runpod/v1`,
    apiKey: 'rp-key',
    gpuTypes: ['NVIDIA GeForce RTX 4090'],
    instanceType: 'rtx-4090',
    image: 'registry.example/comfy-multi-gpu:1',
    cloudType: 'SECURE',
    dataCenters: [],
    containerDiskGb: 40,
    ...common,
    ...o,
  });

async function failure(p: Promise<unknown>): Promise<ProviderError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  return err as ProviderError;
}

describe('verda', () => {
  it('checks the instance type at start, then starts, lists and deletes an instance', async () => {
    const p = verda();
    await p.check();
    expect((await failure(verda({ instanceType: '8X9000' }).check())).message).toMatch(
      /^AUTOSCALE_INSTANCE_TYPE=8X9000 is not a Verda instance type \(known: 1RTX4090\.16V, /,
    );
    const inst = await p.start({ name: 'auto-verda-1' });
    expect(inst).toEqual({ id: expect.stringMatching(/^inst-/), name: 'auto-verda-1' });
    const created = replay.verdaInstances.get(inst.id)!;
    expect(created).toMatchObject({
      hostname: 'auto-verda-1',
      location: 'FIN-01',
      instance_type: '1RTX4090.16V',
    });
    const script = replay.verdaScripts.get(created.startup_script_id!)!.script;
    expect(script).toContain("-e WORKER_NAME='auto-verda-1'");
    expect(script).toContain("-e COMFY_MULTI_TOKEN='tok'\\''en'");
    expect(script).toMatch(/WORKER_EXIT_WHEN_IDLE_SECONDS=420[\s\S]*\npoweroff\n$/);
    // The account's other instances are not ours.
    replay.verdaInstances.set('other', {
      ...created,
      id: 'other',
      hostname: 'x',
      description: 'my notebook',
    });
    expect(await p.list()).toEqual([{ id: inst.id, name: 'auto-verda-1' }]);
    await p.stop(inst.id);
    expect(replay.requests('PUT', '/verda/v1/instances').at(-1)!.body).toEqual({
      action: 'delete',
      id: [inst.id],
    });
    // Its startup script (it holds the worker token) went with it.
    expect(replay.verdaScripts.size).toBe(0);
    expect(await p.list()).toEqual([]);
  });

  it('an instance powered off after its idle exit is deleted by list (it would bill on)', async () => {
    const p = verda();
    const inst = await p.start({ name: 'auto-verda-2' });
    replay.verdaInstances.get(inst.id)!.status = 'offline';
    expect(await p.list()).toEqual([]);
    expect(replay.verdaInstances.has(inst.id)).toBe(false);
  });

  it('no capacity in the first location tries the next; none anywhere fails as capacity', async () => {
    replay.noCapacity.add('FIN-01');
    const inst = await verda().start({ name: 'auto-verda-3' });
    expect(replay.verdaInstances.get(inst.id)!.location).toBe('ICE-01');
    replay.noCapacity.add('ICE-01');
    const err = await failure(verda().start({ name: 'auto-verda-4' }));
    expect(replay.verdaScripts.size).toBe(1); // only the first start's, whose instance runs
    expect(err.kind).toBe('capacity');
    expect(err.message).toMatch(
      /^no 1RTX4090\.16V capacity in FIN-01, ICE-01 \(Verda POST \/instances: 400 invalid_request: No capacity/,
    );
  });

  it('quota: out of funds fails as quota', async () => {
    replay.quota = true;
    const err = await failure(verda().start({ name: 'auto-verda-5' }));
    expect(err).toMatchObject({
      kind: 'quota',
      message: 'Verda POST /instances: 400 insufficient_funds: Not enough balance to deploy this instance',
    });
  });

  it('an expired access token is renewed once; refused credentials fail as credentials', async () => {
    const p = verda();
    await p.list();
    replay.expireTokens();
    await p.list();
    expect(replay.requests('POST', '/verda/v1/oauth2/token')).toHaveLength(2);
    replay.expireTokens();
    replay.badCredentials = true;
    const err = await failure(p.list());
    expect(err.kind).toBe('credentials');
    expect(err.message).toMatch(
      /^Verda refused the client credentials \(401: Invalid client credentials\); check AUTOSCALE_VERDA_CLIENT_ID/,
    );
    expect(err.message).not.toContain('secret');
  });

  it('rate limits: a short Retry-After is waited out, a long one fails as rate_limit', async () => {
    const p = verda();
    replay.rateLimit = 1;
    replay.retryAfter = '2';
    await p.list();
    expect(sleeps).toEqual([2000]);
    replay.rateLimit = 1;
    replay.retryAfter = '120';
    const err = await failure(p.list());
    expect(err).toMatchObject({
      kind: 'rate_limit',
      message: 'verda API rate limit (429, retry after 120 s)',
    });
  });

  it('an unreachable API fails with one line, never the key', async () => {
    const err = await failure(verda({ apiUrl: 'http://127.0.0.1:1/v1' }).list());
    expect(err.kind).toBe('failed');
    expect(err.message).toMatch(/^verda API unreachable \(POST \/v1\/oauth2\/token: /);
  });
});

describe('runpod', () => {
  it('starts a pod with the worker environment, lists ours, terminates', async () => {
    const p = runpod();
    await p.check();
    const pod = await p.start({ name: 'auto-runpod-1' });
    const created = replay.pods.get(pod.id)!;
    expect(created).toMatchObject({
      name: 'comfy-multi-auto-runpod-1',
      gpuTypeIds: ['NVIDIA GeForce RTX 4090'],
      env: {
        WORKER_NAME: 'auto-runpod-1',
        COMFY_MULTI_TOKEN: "tok'en",
        WORKER_PROVIDER: 'runpod',
        WORKER_EXIT_WHEN_IDLE_SECONDS: '420',
      },
    });
    expect(p.describeStart({ name: 'x' })).not.toContain("tok'en");
    replay.pods.set('mine', { ...created, id: 'mine', name: 'jupyter' });
    expect(await p.list()).toEqual([{ id: pod.id, name: 'auto-runpod-1' }]);
    await p.stop(pod.id);
    await p.stop(pod.id); // already gone: fine
    expect(await p.list()).toEqual([]);
  });

  it('an exited pod is terminated by list', async () => {
    const p = runpod();
    const pod = await p.start({ name: 'auto-runpod-2' });
    replay.pods.get(pod.id)!.desiredStatus = 'EXITED';
    expect(await p.list()).toEqual([]);
    expect(replay.pods.has(pod.id)).toBe(false);
  });

  it('maps no capacity, quota, a bad key and rate limits to their kinds', async () => {
    replay.runpodNoCapacity = true;
    expect((await failure(runpod().start({ name: 'a' }))).kind).toBe('capacity');
    replay.runpodNoCapacity = false;
    replay.quota = true;
    expect((await failure(runpod().start({ name: 'a' }))).kind).toBe('quota');
    const bad = await failure(runpod({ apiKey: 'expired' }).check());
    expect(bad).toMatchObject({
      kind: 'credentials',
      message:
        'RunPod GET /pods: 401: Unauthorized: invalid api key (bad, expired or revoked AUTOSCALE_RUNPOD_API_KEY)',
    });
    replay.rateLimit = 3;
    replay.retryAfter = '1';
    expect((await failure(runpod().list())).kind).toBe('rate_limit');
    expect(sleeps).toEqual([1000, 1000]);
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates', () => {
    expect(retryAfterMs('5')).toBe(5000);
    expect(retryAfterMs(new Date(Date.now() + 30_000).toUTCString())).toBeGreaterThan(28_000);
    expect(retryAfterMs('soon')).toBeNull();
    expect(retryAfterMs(null)).toBeNull();
  });
});

describe('the autoscaler loop with verda', () => {
  it('no capacity anywhere, an API outage, then an instance that never registers: the job stays queued, the instance is deleted', async () => {
    const h = await startHarness();
    let now = Date.UTC(2026, 11, 6, 9);
    const alerts: AutoscaleAlert[] = [];
    const scaler = new Autoscaler(
      { provider: verda(), queue: h.services.queue, workers: h.services.workers },
      {
        policy: testPolicy({ maxWorkers: 1 }),
        intervalMs: 60_000,
        pricePerHour: 1,
        clock: () => now,
      },
    );
    scaler.on('alert', (a) => alerts.push(a));
    try {
      const job = await h.services.queue.enqueue({ user: 'alice', prompt: modelFreePrompt() });
      replay.noCapacity.add('FIN-01').add('ICE-01');
      await scaler.tick();
      expect(alerts[0]).toMatchObject({
        event: 'gpu_start_failed',
        details: { provider: 'verda', kind: 'capacity' },
      });
      replay.noCapacity.clear();
      now += 31_000;
      await scaler.tick();
      const [inst] = scaler.view().instances;
      expect(inst).toMatchObject({ phase: 'starting', id: expect.stringMatching(/^inst-/) });
      // An outage of the provider's API forgets nothing and loses no job.
      replay.outage = true;
      now += 5000;
      await scaler.tick();
      expect(alerts.at(-1)).toMatchObject({
        event: 'provider_error',
        title: 'GPU provider verda: list failed',
        message: 'Verda GET /instances: 503: 503 Service Unavailable',
      });
      expect(scaler.view().instances).toHaveLength(1);
      expect((await h.services.queue.store.getJob(job.id))!.status).toBe('pending');
      replay.outage = false;
      now += 595_000;
      await scaler.tick();
      expect(replay.verdaInstances.has(inst!.id!)).toBe(false);
      expect(replay.requests('PUT', '/verda/v1/instances').map((r) => r.body)).toEqual([
        { action: 'delete', id: [inst!.id] },
      ]);
      expect(alerts.map((a) => a.title)).toContain('A GPU never registered');
      expect((await h.services.queue.store.getJob(job.id))!.status).toBe('pending');
    } finally {
      await scaler.stop();
      await h.close();
    }
  });
});

describe('comfy-multi autoscale --dry-run with a cloud provider', () => {
  const env = () => ({
    DATA_DIR: '/tmp/x',
    AUTOSCALE_PROVIDER: 'verda',
    AUTOSCALE_WORKER_TOKEN: 't',
    AUTOSCALE_VERDA_API_URL: `${replay.url}/verda/v1`,
    AUTOSCALE_VERDA_CLIENT_ID: 'cid',
    AUTOSCALE_VERDA_CLIENT_SECRET: 'secret',
    AUTOSCALE_VERDA_IMAGE: 'ubuntu-24.04-cuda-12.8-docker',
    AUTOSCALE_INSTANCE_TYPE: '1RTX4090.16V',
    AUTOSCALE_WORKER_IMAGE: 'registry.example/comfy-multi-gpu:1',
  });

  it('checks the key and instance type at the API and prints the start, starting nothing', async () => {
    const out = await describeAutoscale(loadConfig(env()));
    expect(out).toContain(
      `a start would run: verda: POST ${replay.url}/verda/v1/instances {"instance_type":"1RTX4090.16V","image":"ubuntu-24.04-cuda-12.8-docker","hostname":"auto-verda-example","location_code":"FIN-01","is_spot":false}`,
    );
    expect(replay.requests('POST', '/verda/v1/instances')).toEqual([]);
    await expect(
      describeAutoscale(loadConfig({ ...env(), AUTOSCALE_INSTANCE_TYPE: '1B300.30V' })),
    ).rejects.toThrow(
      /^AUTOSCALE_PROVIDER=verda: AUTOSCALE_INSTANCE_TYPE=1B300\.30V is not a Verda instance type \(known: /,
    );
    replay.badCredentials = true;
    await expect(describeAutoscale(loadConfig(env()))).rejects.toThrow(
      /^AUTOSCALE_PROVIDER=verda: Verda refused the client credentials \(401: Invalid client credentials\)/,
    );
  });
});
