/**
 * The autoscaler's decision as one pure function: the state of one pool (queue, instances, clock,
 * budget, instructor overrides) and its policy in, decisions with their reasons out. The control
 * plane's loop (loop.ts) and the day simulation (bench/autoscale.ts) call the same function, and
 * property tests (decide.test.ts) check its promises:
 *
 * - never stops an instance that holds a job ("never below what is running");
 * - never has more than `maxWorkers` instances alive (starting or ready);
 * - starts only when the scale-up cool-down has passed and the daily budget is not spent;
 * - stops for idleness only after `idleMs` idle (that worker, or the pool having one to spare all
 *   that time), the scale-down cool-down, with nothing waiting, and never below `minWorkers` (or
 *   an instructor's hold);
 * - a start that has not registered within `startTimeoutMs` is given up (stopped, reported as a
 *   failed start); its jobs never depended on it, they simply stay in the queue.
 */

export interface PoolPolicy {
  minWorkers: number;
  maxWorkers: number;
  /** Waiting + running jobs one worker is expected to absorb before another is wanted. */
  jobsPerWorker: number;
  /** The oldest job waiting longer than this asks for one more worker (if none is idle). */
  maxWaitMs: number;
  /** A ready worker holding nothing this long is stopped. */
  idleMs: number;
  /** Least time between two scale-ups (start decisions). */
  upCooldownMs: number;
  /** Least time between two idle scale-downs. */
  downCooldownMs: number;
  /** A start that has not registered as a worker by then is given up. */
  startTimeoutMs: number;
  /** GPU time the pool may bill per day, in ms; 0 = no cap. */
  dailyBudgetMs: number;
  /** Alert once today's use passes this share of the budget (0–1). */
  budgetAlertFraction: number;
}

export interface InstanceState {
  id: string;
  /** `starting`: asked of the provider, not yet registered; `ready`: its worker is registered. */
  phase: 'starting' | 'ready' | 'stopping';
  /** When the start was asked for (the bill starts then). */
  requestedAt: number;
  /** Jobs its worker holds now. */
  held: number;
  /** Since when it has held nothing (ready instances), else null. */
  idleSince: number | null;
}

export interface PoolState {
  now: number;
  /** Jobs waiting in the queue. */
  pending: number;
  /** Creation time of the oldest waiting job, null when none waits. */
  oldestPendingAt: number | null;
  instances: InstanceState[];
  /** Usable workers nobody here started (by hand); they take jobs too. */
  otherWorkers: number;
  lastUpAt: number | null;
  lastDownAt: number | null;
  /** GPU time this pool billed today so far (running instances included), in ms. */
  usedTodayMs: number;
  /**
   * Since when, without a break, at least one ready worker was idle and nothing waited (the pool
   * had a worker to spare); null when that is not so now. Jobs spread over all workers, so no
   * single worker may ever idle for `idleMs` while the pool as a whole has one too many.
   */
  spareSince?: number | null;
  /** Instructor: keep at least `count` workers until `until`. */
  hold: { count: number; until: number } | null;
  /** Instructor: stop everything now (idle ones at once, busy ones when they finish). */
  stopAll: boolean;
}

export type Decision =
  | { action: 'start'; count: number; reason: string }
  | { action: 'stop'; id: string; reason: string; failedStart: boolean }
  /** Something was wanted but a rule held it back (cool-down, budget, maximum, stop-all). */
  | { action: 'hold'; reason: string }
  | { action: 'alert'; kind: 'budget_near' | 'budget_reached'; reason: string };

const secs = (ms: number) => `${Math.round(ms / 1000)} s`;

/** How many workers the queue asks for (hand-started ones included). */
export function wantedWorkers(state: PoolState, policy: PoolPolicy): number {
  const running = state.instances.reduce((n, i) => n + (i.phase === 'ready' ? i.held : 0), 0);
  if (state.pending === 0) return Math.ceil(running / policy.jobsPerWorker);
  return Math.max(1, Math.ceil((state.pending + running) / policy.jobsPerWorker));
}

export function decide(state: PoolState, policy: PoolPolicy): Decision[] {
  const { now } = state;
  const out: Decision[] = [];

  // Starts that never registered: give them up; the queue keeps the jobs for the next GPU.
  const timedOut = new Set<string>();
  for (const i of state.instances) {
    if (i.phase === 'starting' && now - i.requestedAt >= policy.startTimeoutMs) {
      timedOut.add(i.id);
      out.push({
        action: 'stop',
        id: i.id,
        failedStart: true,
        reason: `did not register within ${secs(policy.startTimeoutMs)} of its start`,
      });
    }
  }
  const alive = state.instances.filter((i) => i.phase !== 'stopping' && !timedOut.has(i.id));
  const busy = alive.filter((i) => i.held > 0).length;

  const capped = policy.dailyBudgetMs > 0;
  const overBudget = capped && state.usedTodayMs >= policy.dailyBudgetMs;
  if (overBudget) {
    out.push({
      action: 'alert',
      kind: 'budget_reached',
      reason: `today's GPU budget (${hours(policy.dailyBudgetMs)}) is spent: no new GPUs, idle ones stop`,
    });
  } else if (capped && state.usedTodayMs >= policy.budgetAlertFraction * policy.dailyBudgetMs) {
    out.push({
      action: 'alert',
      kind: 'budget_near',
      reason: `${hours(state.usedTodayMs)} of today's ${hours(policy.dailyBudgetMs)} GPU budget used`,
    });
  }

  const holding = state.hold && state.hold.until > now ? state.hold.count : 0;
  const floor =
    state.stopAll || overBudget ? 0 : Math.min(policy.maxWorkers, Math.max(policy.minWorkers, holding));
  const wanted = Math.max(0, wantedWorkers(state, policy) - state.otherWorkers);
  const idleReady = alive.filter((i) => i.phase === 'ready' && i.held === 0).length;
  const starting = alive.filter((i) => i.phase === 'starting').length;
  // A job waiting too long asks for one more GPU, unless one is idle or already on its way.
  const slow =
    state.oldestPendingAt !== null &&
    now - state.oldestPendingAt >= policy.maxWaitMs &&
    idleReady === 0 &&
    starting === 0;
  const target = Math.min(policy.maxWorkers, Math.max(floor, wanted, slow ? alive.length + 1 : 0));

  if (target > alive.length) {
    const why =
      alive.length < floor
        ? holding > policy.minWorkers
          ? `instructor hold: ${holding} warm`
          : `minimum ${policy.minWorkers}`
        : slow && target === alive.length + 1 && wanted <= alive.length
          ? `oldest job waiting ${secs(now - state.oldestPendingAt!)}`
          : `${state.pending} waiting, ${busy} running, ${alive.length + state.otherWorkers} workers`;
    if (state.stopAll) out.push({ action: 'hold', reason: `${why}, but "stop all" is on` });
    else if (overBudget) out.push({ action: 'hold', reason: `${why}, but today's budget is spent` });
    else if (state.lastUpAt !== null && now - state.lastUpAt < policy.upCooldownMs)
      out.push({ action: 'hold', reason: `${why}; scale-up cool-down (${secs(policy.upCooldownMs)})` });
    else out.push({ action: 'start', count: target - alive.length, reason: why });
    if (!state.stopAll && !overBudget) return out;
  }

  // Scale down: only idle, registered workers; never one that holds a job.
  const idle = alive
    .filter((i) => i.phase === 'ready' && i.held === 0)
    .sort((a, b) => (a.idleSince ?? now) - (b.idleSince ?? now));
  if (state.stopAll || overBudget) {
    const reason = state.stopAll ? 'instructor: stop all' : "today's GPU budget is spent";
    for (const i of idle) out.push({ action: 'stop', id: i.id, failedStart: false, reason });
    return out;
  }
  if (state.pending > 0 || alive.length <= floor) return out;
  const poolSpare = state.spareSince != null && now - state.spareSince >= policy.idleMs;
  const longIdle = poolSpare ? idle : idle.filter((i) => now - (i.idleSince ?? now) >= policy.idleMs);
  if (longIdle.length === 0) return out;
  if (state.lastDownAt !== null && now - state.lastDownAt < policy.downCooldownMs) {
    out.push({
      action: 'hold',
      reason: `idle worker; scale-down cool-down (${secs(policy.downCooldownMs)})`,
    });
    return out;
  }
  const victim = longIdle[0]!;
  out.push({
    action: 'stop',
    id: victim.id,
    failedStart: false,
    reason:
      now - (victim.idleSince ?? now) >= policy.idleMs
        ? `idle for ${secs(now - (victim.idleSince ?? now))}`
        : `a worker to spare for ${secs(now - state.spareSince!)}`,
  });
  return out;
}

function hours(ms: number): string {
  return `${(ms / 3_600_000).toFixed(2)} GPU h`;
}
