/**
 * Throttles failed logins per key (an IP, a user name). After `maxFailures` failures inside
 * `windowMs` the key is locked for `windowMs`, doubling with each further failure (capped at
 * one hour). A success clears the key. In memory: one control-plane process serves a workshop.
 */
export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  now?: () => number;
}

interface Entry {
  failures: number;
  firstAt: number;
  lockedUntil: number;
  lockMs: number;
}

const MAX_LOCK_MS = 3_600_000;
const MAX_KEYS = 100_000;

export class LoginThrottle {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly opts: ThrottleOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Seconds to wait before the next attempt for any of the keys, or 0 when allowed. */
  retryAfter(keys: string[]): number {
    const t = this.now();
    let wait = 0;
    for (const k of keys) {
      const e = this.entries.get(k);
      if (e && e.lockedUntil > t) wait = Math.max(wait, Math.ceil((e.lockedUntil - t) / 1000));
    }
    return wait;
  }

  fail(keys: string[]): void {
    const t = this.now();
    if (this.entries.size > MAX_KEYS) this.sweep(t);
    for (const k of keys) {
      let e = this.entries.get(k);
      if (!e || (t - e.firstAt > this.opts.windowMs && e.lockedUntil <= t && e.lockMs === 0)) {
        e = { failures: 0, firstAt: t, lockedUntil: 0, lockMs: 0 };
        this.entries.set(k, e);
      }
      e.failures++;
      if (e.failures >= this.opts.maxFailures) {
        e.lockMs = e.lockMs === 0 ? this.opts.windowMs : Math.min(e.lockMs * 2, MAX_LOCK_MS);
        e.lockedUntil = t + e.lockMs;
      }
    }
  }

  succeed(keys: string[]): void {
    for (const k of keys) this.entries.delete(k);
  }

  private sweep(t: number): void {
    for (const [k, e] of this.entries) {
      if (e.lockedUntil <= t && t - e.firstAt > this.opts.windowMs) this.entries.delete(k);
    }
  }
}
