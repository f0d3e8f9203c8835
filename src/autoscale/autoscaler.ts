/**
 * The autoscaler loop: every few seconds (and at once when a job is queued) it reads the queue,
 * the registered workers and the provider's instances, asks {@link decide} what to do, and does
 * it. It keeps the instances it started, the GPU time they billed (from the start request to
 * their end, as clouds bill), measured start times per provider and instance type, the recent
 * decisions with their reasons, and the instructor's overrides. A provider that fails never
 * touches the queue: waiting jobs simply wait for the next GPU, and the instructor is alerted.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { acceptsWork, type WorkerReader } from '../dispatch/worker-registry.js';
import type { QueueEvent, QueueService } from '../scheduler/queue-service.js';
import type { BlobStore, Job } from '../store/types.js';
import { decide, type Decision, type InstanceState, type PoolPolicy, type PoolState } from './decide.js';
import type { Provider } from './provider.js';
import type { AutoscaleAlert, AutoscaleView, DecisionRecord } from './view.js';
import { ManagedInstances } from './managed-instances.js';

export type { AutoscaleAlert, AutoscaleView, DecisionRecord } from './view.js';
export type { ManagedInstance } from './managed-instances.js';
import { CostLedger, type CostRow } from './cost.js';
import { etaSeconds, isStarting, StartTimes } from './start-times.js';
import { GpuUsage } from './usage.js';
import { AutoscaleShared, type Overrides } from './shared-state.js';
import type { ClusterBus } from '../cluster/index.js';

export interface AutoscalerOptions {
  policy: PoolPolicy;
  /** Between two looks. */
  intervalMs: number;
  /** Price of one instance hour (any currency), for the cost figures; 0 = unknown. */
  pricePerHour: number;
  /** Prices per hour by instance type (AUTOSCALE_PRICES); `pricePerHour` is the provider's default. */
  prices?: Record<string, number>;
  /** Log and show decisions without starting or stopping anything. */
  dryRun?: boolean;
  /** Worker names of started instances begin with this. Default `auto`. */
  namePrefix?: string;
  clock?: () => number;
  logger?: Logger;
}

export interface AutoscalerDeps {
  provider: Provider;
  queue: Pick<QueueService, 'pendingOrder' | 'on' | 'off'> & {
    store: Pick<BlobStore, 'getBlob' | 'putBlob'> & { countByStatus(): Promise<{ pending: number }> };
  };
  workers: WorkerReader;
  /** Several processes (a shared bus): the loop runs on one at a time; see shared-state.ts. */
  cluster?: Pick<ClusterBus, 'shared' | 'holdLease' | 'releaseLease' | 'publish' | 'subscribe'>;
}

const MAX_DECISIONS = 200;

export class Autoscaler extends EventEmitter<{
  change: [];
  alert: [AutoscaleAlert];
  decision: [DecisionRecord];
}> {
  private readonly usage = new GpuUsage();
  /** The instances it started or adopted, and the provider calls about them (managed-instances.ts). */
  private readonly managed: ManagedInstances;
  readonly cost: CostLedger;
  private readonly decisions: DecisionRecord[] = [];
  private readonly clock: () => number;
  private readonly log: Logger | undefined;
  readonly startTimes: StartTimes;
  private lastUpAt: number | null = null;
  private lastDownAt: number | null = null;
  private hold: { count: number; until: number } | null = null;
  private stopAll = false;
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | null = null;
  private again = false;
  private lastHold = '';
  /** Since when the pool has had an idle ready worker and nothing waiting (see PoolState.spareSince). */
  private spareSince: number | null = null;
  private readonly alerted = new Set<string>();
  /** Null for a single process: then this one always leads. */
  private readonly shared: AutoscaleShared | null;
  private leader: boolean;
  /** The leader's view, shown by a process that does not lead. */
  private leaderView: AutoscaleView | null = null;
  private unsubscribeOverrides: (() => void) | null = null;
  private readonly onQueue = (e: QueueEvent) => {
    if (e.type === 'enqueued' || e.type === 'requeued') this.kick();
    if (e.type === 'finished') this.jobFinished(e.job);
  };

  constructor(
    private readonly deps: AutoscalerDeps,
    private readonly opts: AutoscalerOptions,
  ) {
    super();
    this.clock = opts.clock ?? Date.now;
    this.log = opts.logger;
    this.startTimes = new StartTimes(deps.queue.store, `${deps.provider.name}/${deps.provider.instanceType}`);
    this.cost = new CostLedger((t) => this.priceOf(t), deps.queue.store);
    this.shared = deps.cluster?.shared
      ? new AutoscaleShared(deps.cluster, deps.queue.store, Math.max(3 * opts.intervalMs, 15_000))
      : null;
    this.leader = this.shared === null;
    this.managed = new ManagedInstances(
      {
        provider: deps.provider,
        workers: deps.workers,
        startTimes: this.startTimes,
        usage: this.usage,
        cost: this.cost,
        log: this.log,
        record: (r) => this.record(r),
        alert: (a) => this.emit('alert', a),
      },
      opts,
    );
    // Overrides set on another process (every process keeps its own copy for its view).
    this.unsubscribeOverrides =
      this.shared?.onOverrides(
        () =>
          void this.readOverrides().then(() => {
            if (this.timer) this.kick();
          }),
      ) ?? null;
  }

  /** Whether this process runs the loop (always, for a single process). */
  get leading(): boolean {
    return this.leader;
  }

  /** Price per hour of an instance type: AUTOSCALE_PRICES, else the provider's price for its own. */
  priceOf(instanceType: string): number {
    return (
      this.opts.prices?.[instanceType] ??
      (instanceType === this.deps.provider.instanceType ? this.opts.pricePerHour : 0)
    );
  }

  get provider(): Provider {
    return this.deps.provider;
  }

  async start(): Promise<void> {
    await this.startTimes.load();
    await this.cost.load();
    this.deps.queue.on('event', this.onQueue);
    this.timer = setInterval(() => this.kick(), this.opts.intervalMs);
    this.timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.deps.queue.off('event', this.onQueue);
    this.unsubscribeOverrides?.();
    await this.ticking;
    // Only the leader's ledger is the stored one; another process would overwrite it with a stale copy.
    if (this.leader) await this.cost.save();
    if (this.shared && this.leader) {
      this.leader = false;
      await this.shared.release().catch(() => undefined);
    }
  }

  /** Looks again soon (coalesced). */
  kick(): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.tick();
    }, 50);
    this.soon.unref();
  }

  /** One look: reconcile, decide, act. Runs one at a time; a call during a tick runs once after. */
  tick(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return this.ticking;
    }
    this.ticking = this.doTick()
      .catch((err: unknown) => this.log?.error({ err }, 'autoscaler tick failed'))
      .finally(() => {
        this.ticking = null;
        if (this.again) {
          this.again = false;
          void this.tick();
        }
      });
    return this.ticking;
  }

  // ---- instructor overrides ------------------------------------------------------------------

  /** Keep at least `count` workers for `minutes` (0 ends a hold). */
  setHold(count: number, minutes: number): void {
    this.hold = count > 0 && minutes > 0 ? { count, until: this.clock() + minutes * 60_000 } : null;
    this.shareOverrides();
    this.record({
      action: 'hold',
      reason: this.hold ? `instructor: hold ${count} warm for ${minutes} min` : 'instructor: hold ended',
    });
    this.kick();
  }

  /** Stop every GPU now (idle at once, busy ones once they finish) and start none; false resumes. */
  setStopAll(on: boolean): void {
    this.stopAll = on;
    this.shareOverrides();
    this.record({ action: 'hold', reason: on ? 'instructor: stop all' : 'instructor: autoscaling resumed' });
    this.kick();
  }

  // ---- views ---------------------------------------------------------------------------------

  view(): AutoscaleView {
    if (!this.leader && this.leaderView) {
      // The overrides are shown as set here at once, before the leader's next tick.
      const now = this.clock();
      return {
        ...this.leaderView,
        hold: this.hold && this.hold.until > now ? this.hold : null,
        stopAll: this.stopAll,
      };
    }
    return this.ownView();
  }

  private ownView(): AutoscaleView {
    const now = this.clock();
    const est = this.startTimes.estimateMs();
    const instances = this.managed.list().map((i) => ({
      name: i.name,
      id: i.id,
      phase: i.phase,
      requestedAt: i.requestedAt,
      readyAt: i.readyAt,
      held: i.held,
      etaSeconds: etaSeconds(i, est, now),
    }));
    const todayMs = this.usedTodayMs(now);
    return {
      provider: this.deps.provider.name,
      instanceType: this.deps.provider.instanceType,
      dryRun: this.opts.dryRun === true,
      minWorkers: this.opts.policy.minWorkers,
      maxWorkers: this.opts.policy.maxWorkers,
      instances,
      startEstimateSeconds: est === null ? null : Math.round(est / 1000),
      startsMeasured: this.startTimes.count,
      starting: this.starting(),
      hold: this.hold && this.hold.until > now ? this.hold : null,
      stopAll: this.stopAll,
      usage: {
        todaySeconds: Math.round(todayMs / 1000),
        todayCost: Math.round((todayMs / 3_600_000) * this.opts.pricePerHour * 100) / 100,
        pricePerHour: this.opts.pricePerHour,
        budgetSeconds: Math.round(this.opts.policy.dailyBudgetMs / 1000),
        participants: this.cost.participants().slice(0, 50),
      },
      decisions: this.decisions.slice(-50).reverse(),
    };
  }

  /**
   * A GPU is on its way (started, not yet registered): what waiting participants are told, with
   * the measured typical start time minus the time it has been starting (null before any start
   * was measured). Null when none is starting.
   */
  starting(): { etaSeconds: number | null } | null {
    if (!this.leader) return this.leaderView?.starting ?? null;
    const now = this.clock();
    const est = this.startTimes.estimateMs();
    const starting = this.managed.list().filter(isStarting);
    if (starting.length === 0) return null;
    const etas = starting.map((i) => etaSeconds(i, est, now)).filter((e): e is number => e !== null);
    return { etaSeconds: etas.length > 0 ? Math.min(...etas) : null };
  }

  /** GPU time billed since midnight UTC (ended and running instances). */
  usedTodayMs(now = this.clock()): number {
    return this.usage.todayMs(now, this.running());
  }

  /** GPU seconds per worker name, ended and running (for /metrics and the cost figures). */
  usageByWorker(now = this.clock()): Map<string, number> {
    return this.usage.byWorker(now, this.running());
  }

  /** Cost rows per worker, UTC day and participant, running instances billed up to now. */
  costRows(now = this.clock()): CostRow[] {
    const type = this.deps.provider.instanceType;
    return this.cost.rows(
      now,
      this.running().map((r) => ({ ...r, instanceType: type })),
    );
  }

  private running(): { name: string; from: number }[] {
    return this.managed.list().map((i) => ({ name: i.name, from: i.requestedAt }));
  }

  /**
   * A finished job's GPU time goes to its participant, priced by the instance type of the worker
   * that ran it: this provider's type for workers it started, `manual` for workers started by hand.
   */
  private jobFinished(job: Job): void {
    if (job.workerId === null || job.startedAt === null || job.finishedAt === null) return;
    const worker = job.workerId.slice(job.workerId.indexOf(':') + 1);
    const ours =
      this.managed.has(worker) ||
      this.deps.workers
        .online()
        .some((w) => w.name === worker && w.ephemeral?.provider === this.deps.provider.name);
    const type = ours ? this.deps.provider.instanceType : 'manual';
    this.cost.addJob(job.user, worker, type, job.startedAt, job.finishedAt);
  }

  // ---- the loop ------------------------------------------------------------------------------

  private async doTick(): Promise<void> {
    if (this.shared && !(await this.takeTurn())) return;
    // A slow provider call must not let the lease lapse mid-tick (another process would start a
    // second loop): renew it while the tick runs.
    const renew = this.shared
      ? setInterval(() => void this.shared?.lead().catch(() => false), 5_000)
      : undefined;
    try {
      const now = this.clock();
      await this.managed.reconcile(now);
      const state = await this.poolState(now);
      const decisions = decide(state, this.opts.policy);
      for (const d of decisions) await this.apply(d, now);
      await this.cost.save();
      if (this.shared) await this.shared.saveView(this.ownView());
    } finally {
      clearInterval(renew);
    }
    this.emit('change');
  }

  /**
   * Several processes: renews (or takes) the lease. A new leader reads what the previous one
   * stored (start times, cost ledger, overrides); the instances it started are adopted from the
   * provider's list by reconcile, as after a restart. A process that does not lead refreshes its
   * copy of the leader's view instead. True when this process should run the loop now.
   */
  private async takeTurn(): Promise<boolean> {
    const shared = this.shared!;
    const lead = await shared.lead();
    if (lead && !this.leader) {
      await this.startTimes.load();
      await this.cost.reload();
      await this.readOverrides();
      this.log?.info('autoscaler: this process runs the autoscaling loop now');
    }
    this.leader = lead;
    if (lead) return true;
    this.leaderView = await shared.loadView();
    await this.cost.reload();
    this.emit('change');
    return false;
  }

  private async readOverrides(): Promise<void> {
    const o = await this.shared?.loadOverrides();
    if (!o) return;
    this.hold = o.hold;
    this.stopAll = o.stopAll;
  }

  private shareOverrides(): void {
    const o: Overrides = { hold: this.hold, stopAll: this.stopAll };
    this.shared
      ?.saveOverrides(o)
      .catch((err: unknown) => this.log?.warn({ err }, 'autoscaler: could not share an override'));
  }

  private async poolState(now: number): Promise<PoolState> {
    const [counts, order] = await Promise.all([
      this.deps.queue.store.countByStatus(),
      this.deps.queue.pendingOrder(),
    ]);
    let oldest: number | null = null;
    for (const j of order) if (oldest === null || j.createdAt < oldest) oldest = j.createdAt;
    const managed = new Set(this.managed.names());
    const otherWorkers = this.deps.workers
      .online()
      .filter((w) => !managed.has(w.name) && acceptsWork(w)).length;
    const instances: InstanceState[] = this.managed.list().map((i) => ({
      id: i.name,
      phase: i.phase === 'requested' ? 'starting' : i.phase,
      requestedAt: i.requestedAt,
      held: i.held,
      idleSince: i.idleSince,
    }));
    const spare = counts.pending === 0 && instances.some((i) => i.phase === 'ready' && i.held === 0);
    this.spareSince = spare ? (this.spareSince ?? now) : null;
    return {
      now,
      spareSince: this.spareSince,
      pending: counts.pending,
      oldestPendingAt: counts.pending > 0 ? oldest : null,
      instances,
      otherWorkers,
      lastUpAt: this.lastUpAt,
      lastDownAt: this.lastDownAt,
      usedTodayMs: this.usedTodayMs(now),
      hold: this.hold,
      stopAll: this.stopAll,
    };
  }

  private async apply(d: Decision, now: number): Promise<void> {
    switch (d.action) {
      case 'alert': {
        const key = `${d.kind}:${Math.floor(now / 86_400_000)}`;
        if (this.alerted.has(key)) return;
        this.alerted.add(key);
        this.record({ action: 'alert', reason: d.reason });
        this.emit('alert', {
          event: d.kind,
          title: d.kind === 'budget_near' ? 'GPU budget nearly spent' : 'GPU budget spent',
          message: d.reason,
          details: { usedSeconds: Math.round(this.usedTodayMs(now) / 1000) },
        });
        return;
      }
      case 'hold':
        // The same reason every few seconds is one line, not hundreds.
        if (d.reason !== this.lastHold) this.record({ action: 'hold', reason: d.reason });
        this.lastHold = d.reason;
        return;
      case 'stop':
        // A scale-down starts the down cool-down; a failed start or the instructor's stop-all does not.
        if (this.managed.has(d.id) && !this.opts.dryRun && !d.failedStart && !this.stopAll) {
          this.lastDownAt = now;
        }
        return this.managed.stopOne(d.id, d.reason, d.failedStart);
      case 'start':
        this.lastUpAt = now;
        this.lastHold = '';
        for (let n = 0; n < d.count; n++) await this.managed.startOne(d.reason, now);
        return;
    }
  }

  private record(r: Omit<DecisionRecord, 'at'>): void {
    const rec: DecisionRecord = { at: this.clock(), ...r };
    this.decisions.push(rec);
    if (this.decisions.length > MAX_DECISIONS)
      this.decisions.splice(0, this.decisions.length - MAX_DECISIONS);
    this.log?.info({ autoscale: rec.action, instance: rec.instance }, `autoscaler: ${rec.reason}`);
    this.emit('decision', rec);
  }
}
