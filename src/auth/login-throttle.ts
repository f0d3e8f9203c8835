/**
 * Login throttling. Three leaky buckets of *failures* guard every password check:
 *
 * - **pair** `(address, account)`: the person at one address typing one account's password. A few
 *   failures are free; after that one attempt per `window / maxFailures`. A success for the pair
 *   empties it, so a participant who mistyped is never slowed afterwards.
 * - **address**: a ceiling for one address over all accounts, well above what a room behind one
 *   venue NAT produces (20 people × a few typos), so a script spraying names is stopped but the
 *   room is not.
 * - **account**: a ceiling for one account over all addresses, against guessing from many
 *   addresses. It only slows (one attempt per `window / maxFailures` once full) and pairs that
 *   signed in successfully recently skip it, so a guesser elsewhere cannot lock a participant out.
 *
 * A bucket leaks continuously (each failure is forgotten after `window / maxFailures`), so a wait
 * is always short and nothing doubles. The decision is made before any bcrypt work and counts
 * attempts still in flight as failures-to-be, so a burst of concurrent requests cannot all pass
 * the check before the first failure is recorded (see {@link LoginLimiter.admit}).
 */
export interface BucketLimit {
  /** Failures allowed at once (the bucket's size). */
  maxFailures: number;
  /** Time for a full bucket to drain; one failure leaks every `windowMs / maxFailures`. */
  windowMs: number;
}

export interface LoginLimits {
  pair: BucketLimit;
  address: BucketLimit;
  account: BucketLimit;
  /** How long a pair that signed in successfully skips the account ceiling. */
  trustedPairMs: number;
}

/** One login attempt's identity: the client address (see {@link addressKey}) and account name. */
export interface LoginAttempt {
  address: string;
  account: string;
  /**
   * Set when the browser proved (signed device cookie) it signed in as this account before: its
   * attempts get a pair bucket of their own instead of the address's, and skip the account
   * ceiling, so a guesser at the same address cannot slow the owner on that browser.
   */
  device?: string;
}

/** An admitted attempt. Exactly one of its methods must be called when the check is done. */
export interface LoginPermit {
  /** The password was wrong: record a failure. */
  fail(): Promise<void>;
  /** The password was right: empty the pair and trust it for a while. */
  succeed(): Promise<void>;
  /** No password was checked because of an error on our side: forget the attempt. */
  release(): Promise<void>;
  /**
   * No password was checked because too many checks were waiting: counts against the address
   * only, so one address flooding the bcrypt queue soon meets its ceiling and stops crowding out
   * everyone else, while the accounts it named are not charged.
   */
  busy(): Promise<void>;
}

export type Admission =
  | { ok: true; permit: LoginPermit }
  | { ok: false; retryAfter: number; scope: 'pair' | 'address' | 'account' };

/**
 * What the authenticator needs from a throttle. Async, so a store-backed implementation (shared by
 * several control-plane processes, e.g. a Redis script doing the same arithmetic atomically) can
 * replace {@link MemoryLoginLimiter} without touching the callers.
 */
export interface LoginLimiter {
  /** Admits the attempt (reserving its place in every bucket) or says how long to wait. */
  admit(attempt: LoginAttempt): Promise<Admission>;
  /** A correct login that needed no check (credentials cached): same effect as a permit's succeed. */
  succeeded(attempt: LoginAttempt): Promise<void>;
}

interface Bucket {
  /** Failures not yet leaked, as of `at`. */
  level: number;
  at: number;
  /** Admitted attempts whose outcome is not known yet. */
  inFlight: number;
}

/** Above this many buckets, drained ones are dropped; then the oldest, so memory stays bounded. */
const MAX_BUCKETS = 50_000;

/** In-memory {@link LoginLimiter} for one control-plane process. */
export class MemoryLoginLimiter implements LoginLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly trusted = new Map<string, number>();
  private readonly now: () => number;

  constructor(
    private readonly limits: LoginLimits,
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
  }

  // Synchronous inside: check and reservation happen in one turn of the event loop, so they are
  // atomic for this process.
  admit(attempt: LoginAttempt): Promise<Admission> {
    const t = this.now();
    const pairKey = pairKeyOf(attempt);
    const trustedUntil = attempt.device ? Infinity : (this.trusted.get(pairKey) ?? 0);
    const checks: { key: string; limit: BucketLimit; scope: 'pair' | 'address' | 'account' }[] = [
      { key: pairKey, limit: this.limits.pair, scope: 'pair' },
      { key: `a\u0000${attempt.address}`, limit: this.limits.address, scope: 'address' },
    ];
    if (trustedUntil <= t) {
      if (trustedUntil > 0) this.trusted.delete(pairKey);
      checks.push({ key: `u\u0000${attempt.account}`, limit: this.limits.account, scope: 'account' });
    }
    let refusal: { retryAfter: number; scope: 'pair' | 'address' | 'account' } | null = null;
    for (const c of checks) {
      const wait = this.waitMs(this.buckets.get(c.key), c.limit, t);
      if (wait > 0 && (!refusal || wait / 1000 > refusal.retryAfter)) {
        refusal = { retryAfter: Math.max(1, Math.ceil(wait / 1000)), scope: c.scope };
      }
    }
    if (refusal) return Promise.resolve({ ok: false, ...refusal });
    const admission = this.reserve(checks, pairKey, t);
    return Promise.resolve(admission);
  }

  succeeded(attempt: LoginAttempt): Promise<void> {
    const pairKey = pairKeyOf(attempt);
    const b = this.buckets.get(pairKey);
    if (b?.inFlight === 0) this.buckets.delete(pairKey);
    else if (b) b.level = 0;
    this.trust(pairKey, this.now());
    return Promise.resolve();
  }

  private reserve(
    checks: { key: string; limit: BucketLimit; scope: 'pair' | 'address' | 'account' }[],
    pairKey: string,
    t: number,
  ): Admission {
    if (this.buckets.size > MAX_BUCKETS) this.sweep(t);
    const held = checks.map((c) => {
      let b = this.buckets.get(c.key);
      if (!b) {
        b = { level: 0, at: t, inFlight: 0 };
        this.buckets.set(c.key, b);
      }
      b.inFlight++;
      return { ...c, bucket: b };
    });
    let done = false;
    const finish = (outcome: 'fail' | 'succeed' | 'release' | 'busy'): Promise<void> => {
      if (done) return Promise.resolve();
      done = true;
      const at = this.now();
      for (const h of held) {
        h.bucket.inFlight--;
        if (outcome === 'fail' || (outcome === 'busy' && h.scope === 'address')) {
          this.leak(h.bucket, h.limit, at);
          h.bucket.level += 1;
        }
      }
      if (outcome === 'succeed') {
        const pair = held[0]!;
        if (pair.bucket.inFlight === 0) this.buckets.delete(pair.key);
        else pair.bucket.level = 0;
        this.trust(pairKey, at);
      }
      return Promise.resolve();
    };
    return {
      ok: true,
      permit: {
        fail: () => finish('fail'),
        succeed: () => finish('succeed'),
        release: () => finish('release'),
        busy: () => finish('busy'),
      },
    };
  }

  private trust(pairKey: string, t: number): void {
    this.trusted.delete(pairKey);
    this.trusted.set(pairKey, t + this.limits.trustedPairMs);
    if (this.trusted.size > MAX_BUCKETS) this.trusted.delete(this.trusted.keys().next().value!);
  }

  /** Buckets held in memory (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  /** Milliseconds until one more attempt fits in the bucket; 0 when it fits now. */
  private waitMs(b: Bucket | undefined, limit: BucketLimit, t: number): number {
    if (!b) return 0;
    const level = this.levelAt(b, limit, t);
    const excess = level + b.inFlight + 1 - limit.maxFailures;
    if (excess <= 0) return 0;
    const perFailureMs = limit.windowMs / limit.maxFailures;
    // In-flight attempts resolve within a bcrypt check; only recorded failures need to leak.
    return Math.max(1000, Math.min(excess, level) * perFailureMs);
  }

  private levelAt(b: Bucket, limit: BucketLimit, t: number): number {
    const leaked = ((t - b.at) * limit.maxFailures) / limit.windowMs;
    return Math.max(0, b.level - leaked);
  }

  private leak(b: Bucket, limit: BucketLimit, t: number): void {
    b.level = this.levelAt(b, limit, t);
    b.at = t;
  }

  private sweep(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.inFlight === 0 && this.drained(k, b, t)) this.buckets.delete(k);
    }
    for (const [k, until] of this.trusted) if (until <= t) this.trusted.delete(k);
    // Still too many (a flood from very many addresses): drop the least recently created idle
    // ones, pairs first. Forgetting a few counts under such a flood beats unbounded memory.
    for (const prefix of ['p\u0000', '']) {
      for (const [k, b] of this.buckets) {
        if (this.buckets.size <= MAX_BUCKETS * 0.9) return;
        if (b.inFlight === 0 && k.startsWith(prefix)) this.buckets.delete(k);
      }
    }
  }

  private drained(key: string, b: Bucket, t: number): boolean {
    const limit =
      key[0] === 'p' ? this.limits.pair : key[0] === 'a' ? this.limits.address : this.limits.account;
    return this.levelAt(b, limit, t) === 0;
  }
}

function pairKeyOf(a: LoginAttempt): string {
  return a.device ? `p\u0000device:${a.device}\u0000${a.account}` : `p\u0000${a.address}\u0000${a.account}`;
}

/**
 * The address a throttle counts: IPv4 as is (also when IPv4-mapped), IPv6 by its /64 prefix, since
 * one client usually holds a whole /64 and could otherwise rotate addresses for free.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.split('%')[0]!.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
