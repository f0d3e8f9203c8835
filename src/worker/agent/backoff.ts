import { AGENT_MAX_RECONNECT_MS } from '../protocol.js';

/** Reconnect timing: exponential backoff with "equal jitter" (half fixed, half random). */
export interface BackoffOptions {
  /** First delay, before jitter. Default 250 ms. */
  baseMs: number;
  /** Largest delay, before jitter. Default 15 000 ms. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, maxMs: AGENT_MAX_RECONNECT_MS };

/**
 * Delay before reconnect number `attempt` (0-based): between half and all of
 * `min(maxMs, baseMs * 2^attempt)`, so a fleet of agents that lost the server together does not
 * come back in lock step.
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
