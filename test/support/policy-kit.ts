/**
 * Helpers for the scheduling policy's tests (not used by the server): job and user builders, the
 * deliberately slow independent model of the documented rules (`naiveOrder`, `naiveSelect`; it
 * never calls policy.ts, see policy.test.ts), and the fast-check arbitraries of queues and users.
 */
import fc from 'fast-check';
import { expect } from 'vitest';

import type { AffinityOptions, Priority, QueueLimits, QueueMode } from '../../src/store/types.js';
import { PRIORITIES, QUEUE_MODES, priorityRank } from '../../src/store/types.js';
import type { Candidate, SelectInput, Selection, UserServeState } from '../../src/scheduler/policy.js';

export type Users = Map<string, UserServeState>;
export type UserLimits = Record<string, Partial<QueueLimits>>;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

export const LIMITS: QueueLimits = { maxPendingPerUser: 10, maxRunningPerUser: 1 };
export const OFF: AffinityOptions = { window: 1, maxSkips: 2 };

export function job(
  user: string,
  seq: number,
  extra: Partial<Omit<Candidate, 'id' | 'user' | 'seq'>> = {},
): Candidate {
  return { id: `${user}#${seq}`, user, seq, priority: 'normal', front: 0, models: [], skips: 0, ...extra };
}

export function jobs(
  user: string,
  seqs: readonly number[],
  extra: Partial<Omit<Candidate, 'id' | 'user' | 'seq'>> = {},
) {
  return seqs.map((s) => job(user, s, extra));
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

export function users(entries: Record<string, Partial<UserServeState>> = {}): Users {
  return new Map(Object.entries(entries).map(([u, s]) => [u, { lastServed: 0, running: 0, ...s }]));
}

export function input(over: Partial<SelectInput> & Pick<SelectInput, 'candidates'>): SelectInput {
  return {
    mode: 'round_robin',
    users: new Map(),
    limits: LIMITS,
    warmModels: new Set(),
    affinity: OFF,
    ...over,
  };
}

export const ids = (cs: readonly Candidate[]): string[] => cs.map((c) => c.id);
export const pick = (s: Selection | null) => (s ? { job: s.job.id, skipped: ids(s.skipped) } : null);

// ---------------------------------------------------------------------------------------------
// Independent model of the documented rules
// ---------------------------------------------------------------------------------------------

export function best<T>(xs: readonly T[], cmp: (a: T, b: T) => number): T {
  let b = xs[0];
  if (b === undefined) throw new Error('best() of nothing');
  for (const x of xs) if (cmp(x, b) < 0) b = x;
  return b;
}

/** The next job under rules 1–4 of the module doc, given who was served when. */
export function naiveNext(
  mode: QueueMode,
  pending: readonly Candidate[],
  last: ReadonlyMap<string, number>,
): Candidate {
  // 1. Moved to the front: most recently moved first, in every mode.
  const moved = pending.filter((c) => c.front > 0);
  if (moved.length > 0) return best(moved, (a, b) => b.front - a.front);
  // 2. priority mode: only the most urgent level present competes.
  let pool = pending;
  if (mode === 'priority') {
    const level = Math.min(...pool.map((c) => priorityRank(c.priority)));
    pool = pool.filter((c) => priorityRank(c.priority) === level);
  }
  const oldest = (cs: readonly Candidate[]) => best(cs, (a, b) => a.seq - b.seq);
  // 3. fifo: oldest job.
  if (mode === 'fifo') return oldest(pool);
  // 3. round robin: least recently served user (never served = 0), tie: who has waited longest;
  // 4. within the user: oldest.
  const byUser = new Map<string, Candidate[]>();
  for (const c of pool) byUser.set(c.user, [...(byUser.get(c.user) ?? []), c]);
  const heads = [...byUser.values()].map(oldest);
  return best(heads, (a, b) => (last.get(a.user) ?? 0) - (last.get(b.user) ?? 0) || a.seq - b.seq);
}

/** Service order when nobody runs anything and affinity is off. */
export function naiveOrder(
  mode: QueueMode,
  candidates: readonly Candidate[],
  served: ReadonlyMap<string, UserServeState>,
) {
  const pending = [...candidates];
  const last = new Map([...served].map(([u, s]) => [u, s.lastServed]));
  let clock = Math.max(0, ...last.values());
  const out: Candidate[] = [];
  while (pending.length > 0) {
    const next = naiveNext(mode, pending, last);
    out.push(next);
    pending.splice(pending.indexOf(next), 1);
    last.set(next.user, ++clock);
  }
  return out;
}

export function naiveHeads(mode: QueueMode, candidates: readonly Candidate[]): Candidate[] {
  const byUser = new Map<string, Candidate[]>();
  for (const c of candidates) byUser.set(c.user, [...(byUser.get(c.user) ?? []), c]);
  return [...byUser.values()].map((cs) => naiveOrder(mode, cs, new Map())[0]!);
}

export function naiveLimit(inp: SelectInput, user: string): number {
  return inp.userLimits?.[user]?.maxRunningPerUser ?? inp.limits.maxRunningPerUser;
}

/** Users under their running limit, or everybody when nobody is. */
export function naiveEligible(inp: SelectInput): Candidate[] {
  const under = inp.candidates.filter((c) => (inp.users.get(c.user)?.running ?? 0) < naiveLimit(inp, c.user));
  return under.length > 0 ? under : [...inp.candidates];
}

/** Heads of eligible users, best first. */
export function naiveRanked(inp: SelectInput): Candidate[] {
  return naiveOrder(inp.mode, naiveHeads(inp.mode, naiveEligible(inp)), inp.users);
}

export const tierOf = (mode: QueueMode, c: Candidate) =>
  `${c.front > 0}/${mode === 'priority' ? c.priority : '*'}`;
export const warmOn = (c: Candidate, warm: ReadonlySet<string>) =>
  c.models.length > 0 && c.models.every((m) => warm.has(m));

/**
 * The affinity rule of the module doc: the best-ranked warm job in the window such that it and every
 * job it passes over are in the top's tier and no job passed over is at `maxSkips`; else the top.
 */
export function naiveSelect(inp: SelectInput): Selection | null {
  const ranked = naiveRanked(inp);
  const top = ranked[0];
  if (!top) return null;
  if (!warmOn(top, inp.warmModels)) {
    for (let i = 1; i < Math.min(inp.affinity.window, ranked.length); i++) {
      const c = ranked[i]!;
      const passed = ranked.slice(0, i);
      if (
        warmOn(c, inp.warmModels) &&
        [c, ...passed].every((p) => tierOf(inp.mode, p) === tierOf(inp.mode, top)) &&
        passed.every((p) => p.skips < inp.affinity.maxSkips)
      ) {
        return { job: c, skipped: passed };
      }
    }
  }
  return { job: top, skipped: [] };
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

export const USERS = ['ann', 'bob', 'cat', 'dan', 'eve', 'fay'];
export const MODELS = ['sdxl', 'flux', 'wan', 'vae'];
export const AFFINITY_MODELS = ['sdxl', 'flux'];

export interface PoolOptions {
  /** Allow jobs moved to the front (default true). */
  moves?: boolean;
  maxJobs?: number;
  /**
   * Bias towards situations where affinity applies: two models, two levels, few jobs already
   * skipped. Unbiased pools make an affinity pick rare (about 1 input in 100).
   */
  affinity?: boolean;
}

export interface Pool {
  candidates: Candidate[];
  users: Users;
  userLimits: UserLimits;
}

export const specArb = (o: PoolOptions) =>
  fc.record({
    user: fc.constantFrom(...USERS),
    priority: o.affinity ? fc.constantFrom<Priority>('high', 'normal') : fc.constantFrom(...PRIORITIES),
    moved: o.moves === false ? fc.constant(false) : fc.nat(o.affinity ? 6 : 4).map((n) => n === 0),
    frontKey: fc.nat(50),
    models: fc.subarray(o.affinity ? AFFINITY_MODELS : MODELS),
    skips: o.affinity
      ? fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(3) })
      : fc.nat(3),
    gap: fc.integer({ min: 1, max: 3 }),
    slot: fc.nat(1000),
  });
export type Spec = ReturnType<typeof specArb> extends fc.Arbitrary<infer T> ? T : never;

export const userStateArb = (o: PoolOptions) =>
  fc.record({
    servedKey: fc.option(fc.nat(50), { nil: undefined }),
    running: o.affinity
      ? fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(2) })
      : fc.nat(2),
    listed: fc.boolean(),
    override: fc.option(
      fc.oneof(
        fc.nat(3).map((n): Partial<QueueLimits> => ({ maxRunningPerUser: n })),
        fc.constant<Partial<QueueLimits>>({ maxPendingPerUser: 5 }),
      ),
      { nil: undefined },
    ),
  });
export type UserSpec = ReturnType<typeof userStateArb> extends fc.Arbitrary<infer T> ? T : never;

/** Fills seq (increasing, with gaps) and front (distinct store-wide counter values) from specs. */
export function buildJobs(specs: readonly Spec[], firstSeq = 0, firstFront = 0): Candidate[] {
  let seq = firstSeq;
  const out = specs.map((s): Candidate => ({
    id: '',
    user: s.user,
    seq: (seq += s.gap),
    priority: s.priority,
    front: 0,
    models: s.models,
    skips: s.skips,
  }));
  for (const c of out) c.id = `${c.user}#${c.seq}`;
  specs
    .map((s, i) => ({ s, i }))
    .filter(({ s }) => s.moved)
    .sort((a, b) => a.s.frontKey - b.s.frontKey || a.i - b.i)
    .forEach(({ i }, k) => (out[i]!.front = firstFront + k + 1));
  // The stores may hand candidates over in any order.
  return out
    .map((c, i) => ({ c, slot: specs[i]!.slot }))
    .sort((a, b) => a.slot - b.slot)
    .map(({ c }) => c);
}

export function buildPool(specs: readonly Spec[], states: readonly UserSpec[]): Pool {
  const served = states
    .map((s, i) => ({ s, i }))
    .filter(({ s }) => s.servedKey !== undefined)
    .sort((a, b) => a.s.servedKey! - b.s.servedKey! || a.i - b.i);
  const lastServed = new Map(served.map(({ i }, k) => [USERS[i]!, k + 1]));
  const map: Users = new Map();
  const userLimits: UserLimits = {};
  states.forEach((s, i) => {
    const u = USERS[i]!;
    const state = { lastServed: lastServed.get(u) ?? 0, running: s.running };
    if (state.lastServed > 0 || state.running > 0 || s.listed) map.set(u, state);
    if (s.override) userLimits[u] = s.override;
  });
  return { candidates: buildJobs(specs), users: map, userLimits };
}

export const poolArb = (o: PoolOptions = {}) =>
  fc
    .record({
      specs: fc.array(specArb(o), { minLength: o.affinity ? 4 : 0, maxLength: o.maxJobs ?? 24 }),
      states: fc.array(userStateArb(o), { minLength: USERS.length, maxLength: USERS.length }),
    })
    .map(({ specs, states }) => buildPool(specs, states));

export const modeArb = fc.constantFrom(...QUEUE_MODES);

export const inputArb = (o: PoolOptions = {}) =>
  fc
    .record({
      mode: modeArb,
      pool: poolArb(o),
      maxRunning: fc.nat(2),
      warm: o.affinity ? fc.subarray(AFFINITY_MODELS, { minLength: 1 }) : fc.subarray(MODELS),
      window: fc.integer({ min: o.affinity ? 2 : 1, max: 6 }),
      maxSkips: o.affinity ? fc.integer({ min: 1, max: 3 }) : fc.nat(3),
    })
    .map(({ mode, pool, maxRunning, warm, window, maxSkips }): SelectInput => ({
      mode,
      candidates: pool.candidates,
      users: pool.users,
      limits: { maxPendingPerUser: 10, maxRunningPerUser: maxRunning },
      userLimits: pool.userLimits,
      warmModels: new Set(warm),
      affinity: { window, maxSkips },
    }));

export const RUNS = { numRuns: 300 };

/** Unbiased inputs and inputs biased towards affinity picks, half and half. */
export const anyInputArb = fc.oneof(inputArb(), inputArb({ affinity: true }));

// ---------------------------------------------------------------------------------------------
// Helpers for the rule properties
// ---------------------------------------------------------------------------------------------

/** Between two consecutive services of any user, every other user is served at most once. */
export function expectRoundRobin(order: readonly Candidate[]): void {
  const lastAt = new Map<string, number>();
  order.forEach((c, i) => {
    const prev = lastAt.get(c.user);
    if (prev !== undefined) {
      const between = order.slice(prev + 1, i).map((x) => x.user);
      expect(new Set(between).size, `${c.user} waited for ${between.join(',')}`).toBe(between.length);
    }
    lastAt.set(c.user, i);
  });
}

/** Every user's first job comes within (number of active users) turns. */
export function expectFirstServiceWithinUsers(order: readonly Candidate[]): void {
  const active = new Set(order.map((c) => c.user));
  for (const u of active) {
    expect(
      order.findIndex((c) => c.user === u),
      `first turn of ${u}`,
    ).toBeLessThan(active.size);
  }
}

export const noRunning = (u: Users): Users => new Map([...u].map(([k, s]) => [k, { ...s, running: 0 }]));
