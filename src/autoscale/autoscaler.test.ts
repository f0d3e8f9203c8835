/**
 * The autoscaler loop against a real queue (SQLite) and worker registry, with a scripted provider
 * that fails the way clouds do: no capacity or quota on start, an outage while listing, a stop
 * that fails, an instance that never registers. Whatever the provider does, no job is lost: the
 * queue keeps it for the next GPU, and the instructor is alerted.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { Autoscaler, type AutoscaleAlert } from './autoscaler.js';
import { ProviderError, type Provider, type ProviderInstance } from './provider.js';
import { testPolicy } from '../../test/support/autoscale.js';

class ScriptedProvider implements Provider {
  readonly name = 'scripted';
  readonly instanceType = 'gpu-x';
  running = new Map<string, string>();
  startError: ProviderError | null = null;
  listError: Error | null = null;
  /** Like a cloud (Provider.listLags), and its list never shows what was started. */
  listLags = false;
  stopError: Error | null = null;
  stops: string[] = [];
  async check() {}
  async start(req: { name: string }): Promise<ProviderInstance> {
    if (this.startError) throw this.startError;
    this.running.set(`i-${req.name}`, req.name);
    return { id: `i-${req.name}`, name: req.name };
  }
  async stop(id: string) {
    if (this.stopError) throw this.stopError;
    this.stops.push(id);
    this.running.delete(id);
  }
  async list() {
    if (this.listError) throw this.listError;
    if (this.listLags) return [];
    return [...this.running].map(([id, name]) => ({ id, name }));
  }
  describeStart(req: { name: string }) {
    return `scripted ${req.name}`;
  }
  async close() {}
}

const policy = testPolicy();

let h: Harness;
let provider: ScriptedProvider;
let now: number;
let scaler: Autoscaler;
let alerts: AutoscaleAlert[];

beforeEach(async () => {
  h = await startHarness();
  provider = new ScriptedProvider();
  now = Date.UTC(2026, 11, 6, 9, 0, 0);
  alerts = [];
  scaler = new Autoscaler(
    { provider, queue: h.services.queue, workers: h.services.workers },
    { policy, intervalMs: 60_000, pricePerHour: 2, clock: () => now },
  );
  scaler.on('alert', (a) => alerts.push(a));
});
afterEach(async () => {
  await scaler.stop();
  await h.close();
});

const enqueue = () => h.services.queue.enqueue({ user: 'alice', prompt: modelFreePrompt() });
const actions = () => scaler.view().decisions.map((d) => `${d.action}: ${d.reason}`);

describe('autoscaler loop', () => {
  it('a start refused for quota: the job waits, the instructor is alerted, the retry waits for the cool-down', async () => {
    const job = await enqueue();
    provider.startError = new ProviderError('QuotaExceeded: no GPUs left in FIN-01', 'quota');
    await scaler.tick();
    expect(actions()[0]).toBe('start_failed: QuotaExceeded: no GPUs left in FIN-01');
    expect(alerts[0]).toMatchObject({ event: 'gpu_start_failed', details: { kind: 'quota' } });
    expect((await h.services.queue.store.getJob(job.id))!.status).toBe('pending');

    now += 10_000;
    await scaler.tick();
    expect(actions()[0]).toMatch(/^hold: .*scale-up cool-down/);
    provider.startError = null;
    now += 25_000;
    await scaler.tick();
    expect(scaler.view().instances).toMatchObject([
      { phase: 'starting', id: expect.stringMatching(/^i-auto-/) },
    ]);
    expect(scaler.view().starting).toEqual({ etaSeconds: null });
  });

  it('a provider outage while listing forgets nothing; once it answers, an ended instance is forgotten', async () => {
    await enqueue();
    await scaler.tick();
    expect(scaler.view().instances).toHaveLength(1);
    now += 1000;
    await scaler.tick(); // the provider lists it (a start it never listed gets LIST_LAG_MS)
    provider.listError = new Error('503 Service Unavailable');
    provider.running.clear(); // it ended meanwhile, but the provider cannot say so
    now += 5000;
    await scaler.tick();
    expect(scaler.view().instances).toHaveLength(1);
    expect(alerts.map((a) => a.event)).toContain('provider_error');
    provider.listError = null;
    now += 5000;
    await scaler.tick();
    expect(actions()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^gone: ended before its worker registered; billed 11 s$/),
      ]),
    );
    expect(actions()).toEqual(
      expect.arrayContaining(['start_failed: the instance ended before its worker registered']),
    );
  });

  it('a start the provider does not list yet is not taken for ended (its list lags), until a minute passed', async () => {
    provider.listLags = true;
    await enqueue();
    await scaler.tick();
    now += 1000;
    await scaler.tick();
    expect(scaler.view().instances).toMatchObject([{ phase: 'starting' }]);
    expect(actions().some((a) => a.startsWith('gone:'))).toBe(false);
    now += 60_000;
    await scaler.tick();
    expect(actions()).toEqual(
      expect.arrayContaining(['start_failed: the instance ended before its worker registered']),
    );
  });

  it('a start that never registers is stopped after the start timeout and alerted; its GPU time is counted', async () => {
    await enqueue();
    await scaler.tick();
    const name = scaler.view().instances[0]!.name;
    now += 600_000;
    await scaler.tick();
    expect(provider.stops).toEqual([`i-${name}`]);
    expect(alerts.find((a) => a.title === 'A GPU never registered')?.message).toMatch(
      /did not register within 600 s of its start; it is being stopped and waiting jobs stay queued/,
    );
    // Ten minutes of a 2/h GPU, billed though it never ran a job.
    expect(scaler.view().usage).toMatchObject({ todaySeconds: 600, todayCost: 0.33 });
  });

  it('after a restart it adopts the instances the provider still runs, without counting them as starts', async () => {
    provider.running.set('i-old', 'auto-scripted-old');
    await scaler.tick();
    expect(scaler.view().instances).toMatchObject([
      { name: 'auto-scripted-old', id: 'i-old', phase: 'starting' },
    ]);
    expect(actions()).toEqual(['ready: found running at the provider; adopted']);
    expect(scaler.view().startsMeasured).toBe(0);
  });

  it('prices the jobs of a started worker by its instance type, and its billed time once it ended', async () => {
    await scaler.start();
    const job = await enqueue();
    await scaler.tick();
    const name = scaler.view().instances[0]!.name;
    const claimed = await h.services.queue.claim(`auto:${name}`, []);
    // The job runs a while: claimed and completed within one millisecond it would have no GPU time
    // to price (the ledger keeps no empty rows), which made this test fail now and then.
    await new Promise((r) => setTimeout(r, 5));
    await h.services.queue.complete(job.id, claimed!.attempts, []);
    provider.running.clear();
    now += 1_800_000;
    await scaler.tick();
    const rows = scaler.costRows();
    expect(rows[0]).toMatchObject({
      kind: 'worker',
      worker: name,
      instanceType: 'gpu-x',
      gpuSeconds: 1800,
      cost: 1,
    });
    expect(rows[1]).toMatchObject({
      kind: 'participant',
      worker: name,
      participant: 'alice',
      instanceType: 'gpu-x',
      pricePerHour: 2,
    });
  });

  it('a stop that fails is tried again on the next look', async () => {
    await enqueue();
    await scaler.tick();
    const name = scaler.view().instances[0]!.name;
    provider.stopError = new Error('429 Too Many Requests');
    now += 600_000;
    await scaler.tick();
    expect(actions()).toContain('stop_failed: 429 Too Many Requests');
    expect(provider.running.has(`i-${name}`)).toBe(true);
    // Meanwhile the job still waits: a replacement is started.
    expect(actions()[0]).toBe('start: 1 waiting, 0 running, 0 workers');
    provider.stopError = null;
    now += 5000;
    await scaler.tick();
    expect(provider.stops).toEqual([`i-${name}`]);
  });
});
