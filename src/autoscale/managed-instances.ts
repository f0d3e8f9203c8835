/**
 * The instances the autoscaler started (or adopted after a restart) and what it asks the provider
 * about them: reconciling them with the provider's list and the registered workers, starting and
 * stopping them, and the alerts when the provider fails. The loop (autoscaler.ts) decides; this
 * carries out and keeps track. It reports through the loop's decision log and alerts, given as
 * callbacks, so it does not import the loop.
 */
import type { Logger } from 'pino';
import type { WorkerReader } from '../dispatch/worker-registry.js';
import type { CostLedger } from './cost.js';
import { ProviderError, type Provider } from './provider.js';
import { bindPoolWorkers } from './replica-pool.js';
import type { StartTimes } from './start-times.js';
import type { GpuUsage } from './usage.js';
import type { AutoscaleAlert, DecisionRecord } from './view.js';

export interface ManagedInstance {
  /** The worker name it registers with; our key for it. */
  name: string;
  /** The provider's id (known once the start was accepted). */
  id: string | null;
  phase: 'requested' | 'starting' | 'ready' | 'stopping';
  requestedAt: number;
  readyAt: number | null;
  held: number;
  idleSince: number | null;
  stopReason: string | null;
  /** Found at the provider after a restart: its start was not seen, so it is not measured. */
  adopted?: boolean;
  /** The provider's list has shown it at least once. */
  listed?: boolean;
}

export interface ManagedInstancesDeps {
  provider: Provider;
  workers: WorkerReader;
  startTimes: StartTimes;
  usage: GpuUsage;
  cost: CostLedger;
  log: Logger | undefined;
  /** Adds to the autoscaler's decision log. */
  record(r: Omit<DecisionRecord, 'at'>): void;
  alert(a: AutoscaleAlert): void;
}

/** How long a started instance may be missing from the provider's list before it counts as ended. */
const LIST_LAG_MS = 60_000;

export class ManagedInstances {
  private readonly instances = new Map<string, ManagedInstance>();
  private counter = 0;

  constructor(
    private readonly deps: ManagedInstancesDeps,
    /** The autoscaler's options, read at each use. */
    private readonly opts: { dryRun?: boolean; namePrefix?: string },
  ) {}

  has(name: string): boolean {
    return this.instances.has(name);
  }

  /** Worker names of the instances (the map's keys; bindPool keeps them equal to `name`). */
  names(): string[] {
    return [...this.instances.keys()];
  }

  list(): ManagedInstance[] {
    return [...this.instances.values()];
  }

  /**
   * Brings the instances up to date with the provider's list and the registered workers: adopts
   * ones the provider runs that we do not know, marks registered ones ready (measuring the start),
   * and forgets ended ones (billing them; one that never registered is a failed start).
   */
  async reconcile(now: number): Promise<void> {
    let listed: Map<string, string | undefined> | null = null;
    try {
      listed = new Map((await this.deps.provider.list()).map((i) => [i.id, i.name]));
    } catch (err) {
      this.providerTrouble('list', err);
    }
    const online = new Map(this.deps.workers.online().map((w) => [w.name, w]));
    // Instances the provider still runs that we do not know (the control plane restarted): adopt.
    if (listed) {
      const known = new Set([...this.instances.values()].map((i) => i.id));
      for (const [id, name] of listed) {
        if (known.has(id) || !name || this.instances.has(name)) continue;
        this.instances.set(name, {
          name,
          id,
          phase: 'starting',
          requestedAt: now,
          readyAt: null,
          held: 0,
          idleSince: null,
          stopReason: null,
          adopted: true,
        });
        this.deps.record({
          action: 'ready',
          reason: 'found running at the provider; adopted',
          instance: name,
        });
      }
    }
    if (this.deps.provider.pool) this.bindPool();
    for (const inst of [...this.instances.values()]) {
      const worker = online.get(inst.name);
      if (worker && (inst.phase === 'starting' || inst.phase === 'requested')) {
        inst.phase = 'ready';
        inst.readyAt = now;
        inst.idleSince = now;
        const took = now - inst.requestedAt;
        if (!inst.adopted) {
          await this.deps.startTimes.add(took);
          this.deps.record({
            action: 'ready',
            reason: `registered ${Math.round(took / 1000)} s after its start`,
            instance: inst.name,
          });
        }
      }
      if (worker) {
        inst.held = worker.held.size;
        if (inst.held > 0) inst.idleSince = null;
        else inst.idleSince ??= now;
      } else {
        inst.held = 0;
      }
      // Gone: the provider no longer lists it (stopped, or it ended itself after its idle limit).
      // One never listed yet may just be new to the provider's list (a cloud's list lags its create
      // call; a list script may run before the up script's instance shows): not gone until it was
      // listed once, or LIST_LAG_MS passed.
      if (listed !== null && inst.id !== null && listed.has(inst.id)) inst.listed = true;
      const gone =
        listed !== null &&
        inst.id !== null &&
        !listed.has(inst.id) &&
        !worker &&
        (inst.listed === true || !this.deps.provider.listLags || now - inst.requestedAt > LIST_LAG_MS);
      if (!gone) continue;
      if (inst.phase === 'starting' && inst.readyAt === null) {
        // It ended before its worker ever registered: a failed start. The jobs stay queued.
        this.forget(inst, now, 'ended before its worker registered');
        this.startFailed(inst.name, 'the instance ended before its worker registered');
      } else {
        this.forget(
          inst,
          now,
          inst.phase === 'stopping' ? (inst.stopReason ?? 'stopped') : 'ended by itself',
        );
      }
    }
  }

  /** Serverless pools: free slots take the replicas that registered under names of their own. */
  private bindPool(): void {
    const poolWorkers = this.deps.workers
      .online()
      .filter((w) => w.ephemeral?.provider === this.deps.provider.name)
      .map((w) => w.name);
    const slots = [...this.instances.values()].filter((i) => i.phase !== 'stopping');
    for (const [from, to] of bindPoolWorkers(slots, poolWorkers)) {
      const inst = this.instances.get(from)!;
      this.instances.delete(from);
      inst.name = to;
      this.instances.set(to, inst);
      this.deps.log?.info({ slot: from, worker: to }, 'autoscaler: a pool replica took its slot');
    }
  }

  private forget(inst: ManagedInstance, now: number, why: string): void {
    this.instances.delete(inst.name);
    this.deps.usage.end(inst.name, inst.requestedAt, now);
    this.deps.cost.addWorker(inst.name, this.deps.provider.instanceType, inst.requestedAt, now);
    this.deps.record({
      action: 'gone',
      reason: `${why}; billed ${Math.round((now - inst.requestedAt) / 1000)} s`,
      instance: inst.name,
    });
  }

  /** Asks the provider for one more instance (or only records it, in a dry run). */
  async startOne(reason: string, now: number): Promise<void> {
    const name = `${this.opts.namePrefix ?? 'auto'}-${this.deps.provider.name}-${now.toString(36)}${(this.counter++).toString(36)}`;
    if (this.opts.dryRun) {
      this.deps.record({
        action: 'start',
        reason: `${reason} (dry run: ${this.deps.provider.describeStart({ name })})`,
      });
      return;
    }
    const inst: ManagedInstance = {
      name,
      id: null,
      phase: 'requested',
      requestedAt: now,
      readyAt: null,
      held: 0,
      idleSince: null,
      stopReason: null,
    };
    this.instances.set(name, inst);
    this.deps.record({ action: 'start', reason, instance: name });
    try {
      const started = await this.deps.provider.start({ name });
      inst.id = started.id;
      if (inst.phase === 'requested') inst.phase = 'starting';
    } catch (err) {
      // The jobs stay in the queue for the next GPU; the cool-down spaces out the retries.
      this.instances.delete(name);
      const message = err instanceof Error ? err.message : String(err);
      this.startFailed(name, message, err instanceof ProviderError ? err.kind : 'failed');
    }
  }

  private startFailed(name: string, message: string, kind = 'failed'): void {
    this.deps.record({ action: 'start_failed', reason: message, instance: name });
    this.deps.alert({
      event: 'gpu_start_failed',
      title: 'A GPU could not be started',
      message: `${this.deps.provider.name}: ${message}. Waiting jobs stay queued; the autoscaler tries again.`,
      details: { provider: this.deps.provider.name, kind },
    });
  }

  /** Asks the provider to stop one instance; it stays listed as stopping until it is gone. */
  async stopOne(name: string, reason: string, failedStart: boolean): Promise<void> {
    const inst = this.instances.get(name);
    if (!inst) return;
    if (this.opts.dryRun) {
      this.deps.record({ action: 'stop', reason: `${reason} (dry run)`, instance: name });
      return;
    }
    inst.phase = 'stopping';
    inst.stopReason = reason;
    this.deps.record({ action: 'stop', reason, instance: name });
    if (failedStart) {
      this.deps.alert({
        event: 'gpu_start_failed',
        title: 'A GPU never registered',
        message: `${this.deps.provider.name} instance ${inst.id ?? name} ${reason}; it is being stopped and waiting jobs stay queued.`,
        details: { provider: this.deps.provider.name, instance: inst.id ?? name },
      });
    }
    if (inst.id === null) return;
    try {
      await this.deps.provider.stop(inst.id);
    } catch (err) {
      this.deps.record({ action: 'stop_failed', reason: (err as Error).message, instance: name });
      this.providerTrouble('stop', err);
      // Try again next time: it still bills.
      inst.phase = inst.readyAt !== null ? 'ready' : 'starting';
    }
  }

  private providerTrouble(what: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.deps.log?.warn(
      { err: message, provider: this.deps.provider.name },
      `autoscaler: provider ${what} failed`,
    );
    this.deps.alert({
      event: 'provider_error',
      title: `GPU provider ${this.deps.provider.name}: ${what} failed`,
      message,
      details: { provider: this.deps.provider.name, operation: what },
    });
  }
}
