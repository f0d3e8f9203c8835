/**
 * What the autoscaler's tests start from: a pool policy and a `command` provider's settings. A test
 * overrides only the rules it is about.
 */
import type { PoolPolicy } from '../../src/autoscale/decide.js';

/** At most two GPUs, one per 8 waiting jobs or 2 minutes' wait, no budget. */
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

/**
 * A `command` provider whose scripts start instance `i-1` and do nothing else, with agents
 * authenticating as `workerToken` (which the control plane must accept).
 * `extra` adds or overrides settings.
 */
export function commandProviderEnv(
  workerToken: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    AUTOSCALE_PROVIDER: 'command',
    AUTOSCALE_WORKER_TOKEN: workerToken,
    AUTOSCALE_COMMAND_UP: 'echo i-1',
    AUTOSCALE_COMMAND_DOWN: 'true',
    AUTOSCALE_COMMAND_LIST: 'true',
    ...extra,
  };
}
