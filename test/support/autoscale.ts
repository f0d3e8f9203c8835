/**
 * The autoscaler's pool policy as its tests start from: at most two GPUs, one per 8 waiting jobs
 * or 2 minutes' wait, no budget. A test overrides only the rules it is about.
 */
import type { PoolPolicy } from '../../src/autoscale/decide.js';

export function testPolicy(overrides: Partial<PoolPolicy> = {}): PoolPolicy {
  return {
    minWorkers: 0,
    maxWorkers: 2,
    jobsPerWorker: 8,
    maxWaitMs: 120_000,
    idleMs: 300_000,
    upCooldownMs: 30_000,
    downCooldownMs: 60_000,
    startTimeoutMs: 600_000,
    dailyBudgetMs: 0,
    budgetAlertFraction: 0.8,
    ...overrides,
  };
}
