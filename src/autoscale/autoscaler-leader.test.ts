/**
 * The autoscaler with several control-plane processes (a MemoryClusterHub standing in for Redis):
 * one loop at a time, the others show the leader's view and pass on the instructor's overrides,
 * and when the leader dies another takes over after its lease lapses, adopting its GPUs.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { MemoryClusterHub } from '../cluster/cluster-bus.js';
import { Autoscaler } from './autoscaler.js';
import type { Provider, ProviderInstance } from './provider.js';
import { testPolicy } from '../../test/support/autoscale.js';

/** A cloud that starts whatever it is asked to; shared by every process, as a real one is. */
class CountingProvider implements Provider {
  readonly name = 'counting';
  readonly instanceType = 'gpu-x';
  running = new Map<string, string>();
  starts = 0;
  async check() {}
  async start(req: { name: string }): Promise<ProviderInstance> {
    this.starts++;
    this.running.set(`i-${req.name}`, req.name);
    return { id: `i-${req.name}`, name: req.name };
  }
  async stop(id: string) {
    this.running.delete(id);
  }
  async list() {
    return [...this.running].map(([id, name]) => ({ id, name }));
  }
  describeStart(req: { name: string }) {
    return `counting ${req.name}`;
  }
  async close() {}
}

const policy = testPolicy({ maxWorkers: 4, jobsPerWorker: 1, upCooldownMs: 0 });

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 1000) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

let h: Harness;
let now: number;
const scalers: Autoscaler[] = [];

beforeEach(async () => {
  h = await startHarness();
  now = Date.UTC(2026, 11, 6, 9, 0, 0);
});
afterEach(async () => {
  for (const s of scalers.splice(0)) await s.stop();
  await h.close();
});

describe('autoscaler on several processes', () => {
  it('runs on one process at a time; the others show its view and pass on overrides; a dead leader is replaced', async () => {
    const hub = new MemoryClusterHub(() => now);
    const provider = new CountingProvider();
    const make = () => {
      const s = new Autoscaler(
        { provider, queue: h.services.queue, workers: h.services.workers, cluster: hub.join() },
        { policy, intervalMs: 5_000, pricePerHour: 2, clock: () => now },
      );
      scalers.push(s);
      return s;
    };
    const [a, b, c] = [make(), make(), make()];
    await h.services.queue.enqueue({ user: 'alice', prompt: modelFreePrompt() });

    // Every process's timer fires: only one runs the loop, so one GPU is started, not three.
    for (const s of [a, b, c]) await s.tick();
    expect(provider.starts).toBe(1);
    expect([a, b, c].filter((s) => s.leading)).toEqual([a]);
    for (const s of [b, c]) {
      expect(s.view().instances).toHaveLength(1);
      expect(s.view().instances[0]).toMatchObject({ phase: 'starting' });
      expect(s.starting()).toEqual({ etaSeconds: null });
    }

    // The instructor, routed to b, stops all GPUs: the leader follows it.
    b.setStopAll(true);
    expect(b.view().stopAll).toBe(true);
    await until(() => a.view().stopAll);
    b.setStopAll(false);
    await until(() => !a.view().stopAll);

    // The leader is killed (it simply stops renewing). Until its lease lapses nobody else leads...
    now += 5_000;
    for (const s of [b, c]) await s.tick();
    expect(b.leading || c.leading).toBe(false);
    // ...then the next to tick takes over and adopts the GPU the dead leader started.
    now += 15_000;
    for (const s of [b, c]) await s.tick();
    const leaders = [b, c].filter((s) => s.leading);
    expect(leaders).toHaveLength(1);
    expect(provider.starts).toBe(1);
    expect(leaders[0]!.view().instances.map((i) => i.name)).toEqual([...provider.running.values()]);
    scalers.splice(scalers.indexOf(a), 1);
  });
});
