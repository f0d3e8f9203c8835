/**
 * Tests of the pure scheduling policies.
 *
 * Most properties are checked against `naiveOrder` / `naiveSelect` below: a deliberately slow,
 * independent model written from the rules in the module doc of policy.ts (it never calls
 * policy.ts), so a bug in a comparator shared by `serviceOrder` and `selectJob` cannot hide in both.
 * The rule-by-rule properties and the example tables then name each rule on its own.
 *
 * Affinity bounds tested (the same as in the module doc of policy.ts):
 * - per turn: at most `maxSkips` (precisely `maxSkips - skips`) of the dispatches at which the
 *   policy without affinity would serve a job go to other jobs; with nothing enqueued, moved or
 *   finished in between, a job runs at most that many dispatches after the first dispatch at which
 *   it was the no-affinity choice;
 * - per position: against `serviceOrder` of a static queue, a job runs late by at most the number of
 *   times it and its user's earlier jobs were passed over, so a user's k-th job by k × `maxSkips`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import type { AffinityOptions, Priority, QueueLimits, QueueMode } from '../store/types.js';
import { PRIORITIES, QUEUE_MODES, priorityRank } from '../store/types.js';
import {
  type Candidate,
  type SelectInput,
  type Selection,
  type UserServeState,
  headOrder,
  rankedHeads,
  selectJob,
  serviceOrder,
  userHeads,
} from './policy.js';

type Users = Map<string, UserServeState>;
type UserLimits = Record<string, Partial<QueueLimits>>;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const LIMITS: QueueLimits = { maxPendingPerUser: 10, maxRunningPerUser: 1 };
const OFF: AffinityOptions = { window: 1, maxSkips: 2 };

function job(
  user: string,
  seq: number,
  extra: Partial<Omit<Candidate, 'id' | 'user' | 'seq'>> = {},
): Candidate {
  return { id: `${user}#${seq}`, user, seq, priority: 'normal', front: 0, models: [], skips: 0, ...extra };
}

function jobs(
  user: string,
  seqs: readonly number[],
  extra: Partial<Omit<Candidate, 'id' | 'user' | 'seq'>> = {},
) {
  return seqs.map((s) => job(user, s, extra));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function users(entries: Record<string, Partial<UserServeState>> = {}): Users {
  return new Map(Object.entries(entries).map(([u, s]) => [u, { lastServed: 0, running: 0, ...s }]));
}

function input(over: Partial<SelectInput> & Pick<SelectInput, 'candidates'>): SelectInput {
  return {
    mode: 'round_robin',
    users: new Map(),
    limits: LIMITS,
    warmModels: new Set(),
    affinity: OFF,
    ...over,
  };
}

const ids = (cs: readonly Candidate[]): string[] => cs.map((c) => c.id);
const pick = (s: Selection | null) => (s ? { job: s.job.id, skipped: ids(s.skipped) } : null);

// ---------------------------------------------------------------------------------------------
// Independent model of the documented rules
// ---------------------------------------------------------------------------------------------

function best<T>(xs: readonly T[], cmp: (a: T, b: T) => number): T {
  let b = xs[0];
  if (b === undefined) throw new Error('best() of nothing');
  for (const x of xs) if (cmp(x, b) < 0) b = x;
  return b;
}

/** The next job under rules 1–4 of the module doc, given who was served when. */
function naiveNext(
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
function naiveOrder(
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

function naiveHeads(mode: QueueMode, candidates: readonly Candidate[]): Candidate[] {
  const byUser = new Map<string, Candidate[]>();
  for (const c of candidates) byUser.set(c.user, [...(byUser.get(c.user) ?? []), c]);
  return [...byUser.values()].map((cs) => naiveOrder(mode, cs, new Map())[0]!);
}

function naiveLimit(inp: SelectInput, user: string): number {
  return inp.userLimits?.[user]?.maxRunningPerUser ?? inp.limits.maxRunningPerUser;
}

/** Users under their running limit, or everybody when nobody is. */
function naiveEligible(inp: SelectInput): Candidate[] {
  const under = inp.candidates.filter((c) => (inp.users.get(c.user)?.running ?? 0) < naiveLimit(inp, c.user));
  return under.length > 0 ? under : [...inp.candidates];
}

/** Heads of eligible users, best first. */
function naiveRanked(inp: SelectInput): Candidate[] {
  return naiveOrder(inp.mode, naiveHeads(inp.mode, naiveEligible(inp)), inp.users);
}

const tierOf = (mode: QueueMode, c: Candidate) => `${c.front > 0}/${mode === 'priority' ? c.priority : '*'}`;
const warmOn = (c: Candidate, warm: ReadonlySet<string>) =>
  c.models.length > 0 && c.models.every((m) => warm.has(m));

/**
 * The affinity rule of the module doc: the best-ranked warm job in the window such that it and every
 * job it passes over are in the top's tier and no job passed over is at `maxSkips`; else the top.
 */
function naiveSelect(inp: SelectInput): Selection | null {
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

const USERS = ['ann', 'bob', 'cat', 'dan', 'eve', 'fay'];
const MODELS = ['sdxl', 'flux', 'wan', 'vae'];
const AFFINITY_MODELS = ['sdxl', 'flux'];

interface PoolOptions {
  /** Allow jobs moved to the front (default true). */
  moves?: boolean;
  maxJobs?: number;
  /**
   * Bias towards situations where affinity applies: two models, two levels, few jobs already
   * skipped. Unbiased pools make an affinity pick rare (about 1 input in 100).
   */
  affinity?: boolean;
}

interface Pool {
  candidates: Candidate[];
  users: Users;
  userLimits: UserLimits;
}

const specArb = (o: PoolOptions) =>
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
type Spec = ReturnType<typeof specArb> extends fc.Arbitrary<infer T> ? T : never;

const userStateArb = (o: PoolOptions) =>
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
type UserSpec = ReturnType<typeof userStateArb> extends fc.Arbitrary<infer T> ? T : never;

/** Fills seq (increasing, with gaps) and front (distinct store-wide counter values) from specs. */
function buildJobs(specs: readonly Spec[], firstSeq = 0, firstFront = 0): Candidate[] {
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

function buildPool(specs: readonly Spec[], states: readonly UserSpec[]): Pool {
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

const poolArb = (o: PoolOptions = {}) =>
  fc
    .record({
      specs: fc.array(specArb(o), { minLength: o.affinity ? 4 : 0, maxLength: o.maxJobs ?? 24 }),
      states: fc.array(userStateArb(o), { minLength: USERS.length, maxLength: USERS.length }),
    })
    .map(({ specs, states }) => buildPool(specs, states));

const modeArb = fc.constantFrom(...QUEUE_MODES);

const inputArb = (o: PoolOptions = {}) =>
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

const RUNS = { numRuns: 300 };

/** Unbiased inputs and inputs biased towards affinity picks, half and half. */
const anyInputArb = fc.oneof(inputArb(), inputArb({ affinity: true }));

// ---------------------------------------------------------------------------------------------
// Helpers for the rule properties
// ---------------------------------------------------------------------------------------------

/** Between two consecutive services of any user, every other user is served at most once. */
function expectRoundRobin(order: readonly Candidate[]): void {
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
function expectFirstServiceWithinUsers(order: readonly Candidate[]): void {
  const active = new Set(order.map((c) => c.user));
  for (const u of active) {
    expect(
      order.findIndex((c) => c.user === u),
      `first turn of ${u}`,
    ).toBeLessThan(active.size);
  }
}

const noRunning = (u: Users): Users => new Map([...u].map(([k, s]) => [k, { ...s, running: 0 }]));

// ---------------------------------------------------------------------------------------------
// Example tables
// ---------------------------------------------------------------------------------------------

describe('serviceOrder examples', () => {
  const alice10 = jobs('alice', range(1, 10));
  it.each<[string, QueueMode, Candidate[], Users, string[]]>([
    [
      'fifo: Alice 10 jobs, Bob 1 job → Bob last (oldest first)',
      'fifo',
      [...alice10, job('bob', 11)],
      users(),
      [...range(1, 10).map((s) => `alice#${s}`), 'bob#11'],
    ],
    [
      'round robin: Alice 10 jobs, Bob 1 job → Bob second',
      'round_robin',
      [...alice10, job('bob', 11)],
      users(),
      ['alice#1', 'bob#11', ...range(2, 10).map((s) => `alice#${s}`)],
    ],
    [
      'round robin: Bob second even when Alice was never served and Bob was',
      'round_robin',
      [...alice10, job('bob', 11)],
      users({ bob: { lastServed: 4 } }),
      ['alice#1', 'bob#11', ...range(2, 10).map((s) => `alice#${s}`)],
    ],
    [
      'round robin: three users take turns, the longest waiting first',
      'round_robin',
      [...jobs('carol', [6]), ...jobs('bob', [4, 5]), ...jobs('alice', [1, 2, 3])],
      users(),
      ['alice#1', 'bob#4', 'carol#6', 'alice#2', 'bob#5', 'alice#3'],
    ],
    [
      'round robin: a never-served user goes before one served earlier',
      'round_robin',
      [job('alice', 1), job('bob', 2)],
      users({ alice: { lastServed: 5 } }),
      ['bob#2', 'alice#1'],
    ],
    [
      'round robin: the user served least recently goes first',
      'round_robin',
      [job('alice', 1), job('bob', 2), job('carol', 3)],
      users({ alice: { lastServed: 9 }, bob: { lastServed: 7 }, carol: { lastServed: 8 } }),
      ['bob#2', 'carol#3', 'alice#1'],
    ],
    [
      'round robin ignores priority levels',
      'round_robin',
      [job('alice', 1, { priority: 'low' }), job('bob', 2, { priority: 'instructor' })],
      users(),
      ['alice#1', 'bob#2'],
    ],
    [
      'fifo ignores priority levels and who was served',
      'fifo',
      [job('alice', 1, { priority: 'low' }), job('bob', 2, { priority: 'instructor' })],
      users({ alice: { lastServed: 3 } }),
      ['alice#1', 'bob#2'],
    ],
    [
      'priority: instructor > high > normal > low, whatever the age',
      'priority',
      [
        job('dan', 1, { priority: 'low' }),
        job('carol', 2, { priority: 'normal' }),
        job('bob', 3, { priority: 'high' }),
        job('alice', 4, { priority: 'instructor' }),
      ],
      users(),
      ['alice#4', 'bob#3', 'carol#2', 'dan#1'],
    ],
    [
      'priority: round robin within a level, then the next level',
      'priority',
      [
        ...jobs('alice', [1, 2, 3], { priority: 'high' }),
        job('bob', 4, { priority: 'high' }),
        job('carol', 5),
      ],
      users(),
      ['alice#1', 'bob#4', 'alice#2', 'alice#3', 'carol#5'],
    ],
    [
      "priority: a user's urgent job goes before their older ones",
      'priority',
      [job('alice', 1), job('alice', 2, { priority: 'high' }), job('alice', 3, { priority: 'low' })],
      users(),
      ['alice#2', 'alice#1', 'alice#3'],
    ],
    ...QUEUE_MODES.map((mode): [string, QueueMode, Candidate[], Users, string[]] => [
      `${mode}: a job moved to the front goes first, most recently moved first`,
      mode,
      [
        job('alice', 1, { priority: 'instructor' }),
        job('bob', 2, { priority: 'low', front: 1 }),
        job('carol', 3, { priority: 'low', front: 2 }),
        job('alice', 4, { priority: 'instructor' }),
      ],
      users({ carol: { lastServed: 9 } }),
      ['carol#3', 'bob#2', 'alice#1', 'alice#4'],
    ]),
    [
      "round robin: a moved job jumps its own user's older jobs too",
      'round_robin',
      [job('alice', 1), job('alice', 2, { front: 1 }), job('bob', 3)],
      users(),
      ['alice#2', 'bob#3', 'alice#1'],
    ],
  ])('%s', (_name, mode, candidates, served, expected) => {
    expect(ids(serviceOrder(mode, candidates, served))).toEqual(expected);
    expect(ids(naiveOrder(mode, candidates, served))).toEqual(expected);
  });
});

describe('selectJob examples: running limits', () => {
  const older = job('alice', 1);
  const newer = job('bob', 2);
  it.each<[string, Partial<SelectInput>, string]>([
    [
      'Alice at her running limit → Bob served although Alice waited longer',
      { users: users({ alice: { running: 1 } }) },
      'bob#2',
    ],
    [
      'fifo: the oldest job of a user under the limit',
      { mode: 'fifo', users: users({ alice: { running: 1 } }) },
      'bob#2',
    ],
    [
      'everyone at the limit → served as if there were no limit',
      { users: users({ alice: { running: 1 }, bob: { running: 3 } }) },
      'alice#1',
    ],
    [
      'a per-user override of 2 lets Alice run a second job',
      { users: users({ alice: { running: 1 } }), userLimits: { alice: { maxRunningPerUser: 2 } } },
      'alice#1',
    ],
    [
      'a per-user override of 0 holds Alice back while Bob waits',
      { userLimits: { alice: { maxRunningPerUser: 0 } } },
      'bob#2',
    ],
    [
      'an override of another limit falls back to the global one',
      { users: users({ alice: { running: 1 } }), userLimits: { alice: { maxPendingPerUser: 3 } } },
      'bob#2',
    ],
    [
      "an override for Bob does not lift Alice's limit",
      { users: users({ alice: { running: 1 } }), userLimits: { bob: { maxRunningPerUser: 5 } } },
      'bob#2',
    ],
    [
      'a global limit of 2 lets Alice run a second job',
      { users: users({ alice: { running: 1 } }), limits: { ...LIMITS, maxRunningPerUser: 2 } },
      'alice#1',
    ],
  ])('%s', (_name, over, expected) => {
    expect(selectJob(input({ candidates: [older, newer], ...over }))?.job.id).toBe(expected);
  });

  it('Alice alone at her limit is still served: nobody else waits', () => {
    expect(selectJob(input({ candidates: [older], users: users({ alice: { running: 4 } }) }))?.job.id).toBe(
      'alice#1',
    );
  });

  it("a moved job of a user at the limit waits while others' jobs are eligible", () => {
    const moved = job('alice', 3, { front: 1 });
    const inp = input({ candidates: [moved, newer], users: users({ alice: { running: 1 } }) });
    expect(selectJob(inp)?.job.id).toBe('bob#2');
  });

  it('returns null when nothing is pending', () => {
    expect(selectJob(input({ candidates: [] }))).toBeNull();
  });
});

describe('selectJob examples: model affinity', () => {
  // Ranked (round robin, nobody served): alice#1, bob#2, carol#3, dan#4.
  const queue = (models: Record<string, string[]>, extra: Record<string, Partial<Candidate>> = {}) =>
    ['alice', 'bob', 'carol', 'dan'].map((u, i) =>
      job(u, i + 1, { models: models[u] ?? ['sdxl'], ...extra[u] }),
    );
  const warmFlux = { warmModels: new Set(['flux']), affinity: { window: 4, maxSkips: 2 } };

  it.each<[string, Partial<SelectInput> & Pick<SelectInput, 'candidates'>, ReturnType<typeof pick>]>([
    [
      'top cold, second warm → second, top skipped',
      { ...warmFlux, candidates: queue({ bob: ['flux'] }) },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      'the first warm job in the window; every job ranked above it is skipped',
      { ...warmFlux, candidates: queue({ carol: ['flux'], dan: ['flux'] }) },
      { job: 'carol#3', skipped: ['alice#1', 'bob#2'] },
    ],
    [
      'the last job of the window can be taken',
      { ...warmFlux, candidates: queue({ dan: ['flux'] }) },
      { job: 'dan#4', skipped: ['alice#1', 'bob#2', 'carol#3'] },
    ],
    [
      'a warm job just outside the window is not taken',
      { ...warmFlux, affinity: { window: 3, maxSkips: 2 }, candidates: queue({ dan: ['flux'] }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'top warm → top',
      { ...warmFlux, candidates: queue({ alice: ['flux'], bob: ['flux'] }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'window 1 → no affinity',
      { ...warmFlux, affinity: { window: 1, maxSkips: 2 }, candidates: queue({ bob: ['flux'] }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'maxSkips 0 → no affinity',
      { ...warmFlux, affinity: { window: 4, maxSkips: 0 }, candidates: queue({ bob: ['flux'] }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'no warm models → no affinity',
      { ...warmFlux, warmModels: new Set(), candidates: queue({ bob: [] }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'the top already passed over maxSkips times → top',
      { ...warmFlux, candidates: queue({ bob: ['flux'] }, { alice: { skips: 2 } }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'the top passed over fewer times → may still be passed over',
      { ...warmFlux, candidates: queue({ bob: ['flux'] }, { alice: { skips: 1 } }) },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      'a job in between at maxSkips blocks warm jobs behind it…',
      { ...warmFlux, candidates: queue({ carol: ['flux'] }, { bob: { skips: 2 } }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      '…but not a warm job before it',
      { ...warmFlux, candidates: queue({ bob: ['flux'], dan: ['flux'] }, { carol: { skips: 2 } }) },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      'a job needing a cold model too is not warm',
      { ...warmFlux, candidates: queue({ bob: ['flux', 'sdxl'], carol: ['flux'] }) },
      { job: 'carol#3', skipped: ['alice#1', 'bob#2'] },
    ],
    [
      'a job without models is never an affinity pick',
      { ...warmFlux, candidates: queue({ bob: [] }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'a moved job is not passed over for a job not moved',
      { ...warmFlux, candidates: queue({ bob: ['flux'] }, { alice: { front: 1 } }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'a job not moved is not taken over moved ones',
      { ...warmFlux, candidates: queue({ carol: ['flux'] }, { alice: { front: 2 }, bob: { front: 1 } }) },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'among moved jobs affinity may pick a less recently moved one',
      { ...warmFlux, candidates: queue({ bob: ['flux'] }, { alice: { front: 2 }, bob: { front: 1 } }) },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      'priority mode: a warm job of a lower level is not taken',
      {
        ...warmFlux,
        mode: 'priority',
        candidates: queue({ bob: ['flux'] }, { alice: { priority: 'high' } }),
      },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'priority mode: a warm job of the same level is taken',
      {
        ...warmFlux,
        mode: 'priority',
        candidates: queue({ bob: ['flux'] }, { alice: { priority: 'high' }, bob: { priority: 'high' } }),
      },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      'priority mode: never passes over a job of another tier, even among moved jobs',
      {
        ...warmFlux,
        mode: 'priority',
        // Moved jobs rank by front alone, so levels interleave: alice (high), bob (low), carol (high).
        candidates: queue(
          { carol: ['flux'] },
          {
            alice: { priority: 'high', front: 3 },
            bob: { priority: 'low', front: 2 },
            carol: { priority: 'high', front: 1 },
          },
        ),
      },
      { job: 'alice#1', skipped: [] },
    ],
    [
      'round robin: levels are no tier, a warm lower-level job is taken',
      { ...warmFlux, candidates: queue({ bob: ['flux'] }, { alice: { priority: 'high' } }) },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      'fifo: same rules over the oldest jobs',
      { ...warmFlux, mode: 'fifo', candidates: queue({ bob: ['flux'] }) },
      { job: 'bob#2', skipped: ['alice#1'] },
    ],
    [
      "the window counts users' heads, not jobs",
      {
        ...warmFlux,
        affinity: { window: 2, maxSkips: 2 },
        candidates: [...jobs('alice', [1, 2, 3]), job('bob', 4, { models: ['flux'] })],
      },
      { job: 'bob#4', skipped: ['alice#1'] },
    ],
    [
      'a user at the running limit is not in the window',
      { ...warmFlux, users: users({ bob: { running: 1 } }), candidates: queue({ bob: ['flux'] }) },
      { job: 'alice#1', skipped: [] },
    ],
  ])('%s', (_name, over, expected) => {
    const inp = input(over);
    expect(pick(selectJob(inp))).toEqual(expected);
    expect(pick(naiveSelect(inp))).toEqual(expected);
  });

  it('Bob waits exactly maxSkips dispatches behind warm jobs, then is served', () => {
    // Bob's sdxl job is first in line; a flux worker keeps claiming. maxSkips = 2.
    const pending = [
      job('bob', 1, { models: ['sdxl'] }),
      ...range(2, 6).map((s) => job(`u${s}`, s, { models: ['flux'] })),
    ];
    const served = new Map<string, UserServeState>();
    const order: string[] = [];
    for (let clock = 1; pending.length > 0; clock++) {
      const sel = selectJob(input({ candidates: pending, users: served, ...warmFlux }))!;
      order.push(sel.job.id);
      pending.splice(pending.indexOf(sel.job), 1);
      for (const s of sel.skipped) s.skips++;
      served.set(sel.job.user, { lastServed: clock, running: 0 });
    }
    expect(order).toEqual(['u2#2', 'u3#3', 'bob#1', 'u4#4', 'u5#5', 'u6#6']);
  });
});

describe('headOrder / userHeads examples', () => {
  it.each<[QueueMode, string[]]>([
    ['fifo', ['alice#3', 'alice#1', 'alice#2', 'alice#4']],
    ['round_robin', ['alice#3', 'alice#1', 'alice#2', 'alice#4']],
    ['priority', ['alice#3', 'alice#2', 'alice#1', 'alice#4']],
  ])('%s: moved first, then (priority mode) level, then oldest', (mode, expected) => {
    const mine = [
      job('alice', 4, { priority: 'low' }),
      job('alice', 2, { priority: 'high' }),
      job('alice', 3, { priority: 'low', front: 1 }),
      job('alice', 1),
    ];
    expect(ids([...mine].sort(headOrder(mode)))).toEqual(expected);
    expect(
      userHeads(mode, [...mine, job('bob', 5), job('bob', 6)])
        .map((h) => h.id)
        .sort(),
    ).toEqual([expected[0], 'bob#5']);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

describe('serviceOrder properties', () => {
  it('matches the independent model of the documented rules (all modes, moves, served users)', () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates, users: served }) => {
        expect(ids(serviceOrder(mode, candidates, served))).toEqual(
          ids(naiveOrder(mode, candidates, served)),
        );
      }),
      RUNS,
    );
  });

  it('serves every candidate exactly once', () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates, users: served }) => {
        expect(ids(serviceOrder(mode, candidates, served)).sort()).toEqual(ids(candidates).sort());
      }),
      RUNS,
    );
  });

  it('fifo: with no front moves, ascending seq', () => {
    fc.assert(
      fc.property(poolArb({ moves: false }), ({ candidates, users: served }) => {
        const seqs = serviceOrder('fifo', candidates, served).map((c) => c.seq);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        expect(seqs.length).toBe(candidates.length);
      }),
      RUNS,
    );
  });

  it('every mode: moved jobs first, most recently moved first', () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates, users: served }) => {
        const order = serviceOrder(mode, candidates, served);
        const moved = candidates.filter((c) => c.front > 0).length;
        const fronts = order.slice(0, moved).map((c) => c.front);
        expect(fronts).toEqual(
          [...candidates.filter((c) => c.front > 0).map((c) => c.front)].sort((a, b) => b - a),
        );
        expect(order.slice(moved).every((c) => c.front === 0)).toBe(true);
      }),
      RUNS,
    );
  });

  it('round robin: between two services of a user, each other user is served at most once', () => {
    fc.assert(
      fc.property(poolArb({ moves: false, maxJobs: 30 }), ({ candidates, users: served }) => {
        expectRoundRobin(serviceOrder('round_robin', candidates, served));
      }),
      RUNS,
    );
  });

  it('round robin: every user (e.g. one with a single job) is served within (number of active users) turns', () => {
    fc.assert(
      fc.property(poolArb({ moves: false, maxJobs: 30 }), ({ candidates, users: served }) => {
        expectFirstServiceWithinUsers(serviceOrder('round_robin', candidates, served));
      }),
      RUNS,
    );
  });

  it('priority: no job is served before a job of a more urgent level', () => {
    fc.assert(
      fc.property(poolArb({ moves: false, maxJobs: 30 }), ({ candidates, users: served }) => {
        const ranks = serviceOrder('priority', candidates, served).map((c) => priorityRank(c.priority));
        expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
      }),
      RUNS,
    );
  });

  it('priority: round robin among users within each level', () => {
    fc.assert(
      fc.property(poolArb({ moves: false, maxJobs: 30 }), ({ candidates, users: served }) => {
        const order = serviceOrder('priority', candidates, served);
        for (const level of PRIORITIES) {
          const segment = order.filter((c) => c.priority === level);
          expectRoundRobin(segment);
          expectFirstServiceWithinUsers(segment);
        }
      }),
      RUNS,
    );
  });

  it('with a limit, returns the prefix of the unlimited order', () => {
    fc.assert(
      fc.property(modeArb, poolArb(), fc.nat(30), (mode, { candidates, users: served }, limit) => {
        const full = ids(serviceOrder(mode, candidates, served));
        expect(ids(serviceOrder(mode, candidates, served, limit))).toEqual(full.slice(0, limit));
      }),
      RUNS,
    );
  });

  it('does not mutate its inputs', () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates, users: served }) => {
        const before = JSON.stringify([candidates, [...served]]);
        serviceOrder(mode, candidates, served);
        expect(JSON.stringify([candidates, [...served]])).toBe(before);
      }),
      { numRuns: 50 },
    );
  });
});

describe('userHeads / headOrder properties', () => {
  it("userHeads returns one head per user: the user's first job under headOrder", () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates }) => {
        const heads = userHeads(mode, candidates);
        expect(heads.map((h) => h.user).sort()).toEqual([...new Set(candidates.map((c) => c.user))].sort());
        const cmp = headOrder(mode);
        for (const h of heads) {
          const mine = candidates.filter((c) => c.user === h.user);
          expect(mine.every((c) => c === h || cmp(h, c) < 0)).toBe(true);
        }
        expect(ids(heads).sort()).toEqual(ids(naiveHeads(mode, candidates)).sort());
      }),
      RUNS,
    );
  });

  it("headOrder sorts one user's jobs in the order they are served", () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates, users: served }) => {
        const mine = candidates.filter((c) => c.user === 'ann');
        expect(ids([...mine].sort(headOrder(mode)))).toEqual(ids(naiveOrder(mode, mine, served)));
      }),
      RUNS,
    );
  });
});

describe('selectJob properties', () => {
  it('matches the independent model of the documented rules (limits, affinity, all modes)', () => {
    fc.assert(
      fc.property(anyInputArb, (inp) => {
        expect(ids(rankedHeads(inp))).toEqual(ids(naiveRanked(inp)));
        expect(pick(selectJob(inp))).toEqual(pick(naiveSelect(inp)));
      }),
      { numRuns: 1000 },
    );
  });

  it('needs only each user’s head among the candidates', () => {
    fc.assert(
      fc.property(anyInputArb, fc.array(fc.boolean(), { minLength: 24, maxLength: 24 }), (inp, keep) => {
        const heads = new Set(naiveHeads(inp.mode, inp.candidates));
        const subset = inp.candidates.filter((c, i) => heads.has(c) || keep[i]);
        expect(pick(selectJob({ ...inp, candidates: subset }))).toEqual(pick(selectJob(inp)));
      }),
      RUNS,
    );
  });

  it('claiming one job after another without affinity follows serviceOrder (queue positions are true)', () => {
    fc.assert(
      fc.property(modeArb, poolArb(), (mode, { candidates, users: served }) => {
        const expected = ids(serviceOrder(mode, candidates, served));
        const pending = [...candidates];
        const state = noRunning(served);
        let clock = Math.max(0, ...[...served.values()].map((s) => s.lastServed));
        const got: string[] = [];
        for (;;) {
          const sel = selectJob(input({ mode, candidates: pending, users: state }));
          if (!sel) break;
          got.push(sel.job.id);
          pending.splice(pending.indexOf(sel.job), 1);
          state.set(sel.job.user, { lastServed: ++clock, running: 0 });
        }
        expect(got).toEqual(expected);
      }),
      RUNS,
    );
  });

  it('fifo: returns the oldest job among users under their running limit (any job if none is)', () => {
    fc.assert(
      fc.property(inputArb({ moves: false }), (inp) => {
        const sel = selectJob({ ...inp, mode: 'fifo', affinity: OFF });
        const eligible = inp.candidates.filter(
          (c) => (inp.users.get(c.user)?.running ?? 0) < naiveLimit(inp, c.user),
        );
        const pool = eligible.length > 0 ? eligible : inp.candidates;
        expect(sel?.job.seq).toBe(pool.length > 0 ? Math.min(...pool.map((c) => c.seq)) : undefined);
      }),
      RUNS,
    );
  });

  it('priority: returns a job of the most urgent level among eligible users', () => {
    fc.assert(
      fc.property(inputArb({ moves: false }), (inp) => {
        const sel = selectJob({ ...inp, mode: 'priority', affinity: OFF });
        const pool = naiveEligible(inp);
        if (pool.length === 0) return;
        expect(priorityRank(sel!.job.priority)).toBe(Math.min(...pool.map((c) => priorityRank(c.priority))));
      }),
      RUNS,
    );
  });

  it('every mode: the most recently moved job of an eligible user wins', () => {
    fc.assert(
      fc.property(anyInputArb, (inp) => {
        const moved = naiveEligible(inp).filter((c) => c.front > 0);
        if (moved.length === 0) return;
        expect(selectJob({ ...inp, affinity: OFF })?.job.front).toBe(Math.max(...moved.map((c) => c.front)));
      }),
      RUNS,
    );
  });

  it('running limits: a user at the limit is passed over while anyone else has a job, served when nobody else waits', () => {
    fc.assert(
      fc.property(anyInputArb, (inp) => {
        const under = (u: string) => (inp.users.get(u)?.running ?? 0) < naiveLimit(inp, u);
        const sel = selectJob(inp);
        if (inp.candidates.length === 0) return void expect(sel).toBeNull();
        expect(sel).not.toBeNull();
        if (inp.candidates.some((c) => under(c.user))) expect(under(sel!.job.user)).toBe(true);
      }),
      RUNS,
    );
  });

  it('affinity: picks only a warm job within the window, passing over only jobs of its tier that are under maxSkips', () => {
    fc.assert(
      fc.property(anyInputArb, (inp) => {
        const sel = selectJob(inp);
        const ranked = naiveRanked(inp);
        if (!sel) return void expect(ranked).toEqual([]);
        const top = ranked[0]!;
        const at = ranked.findIndex((c) => c.id === sel.job.id);
        expect(at).toBeGreaterThanOrEqual(0);
        expect(at).toBeLessThan(Math.max(1, inp.affinity.window));
        if (at === 0) return void expect(sel.skipped).toEqual([]);
        expect(warmOn(top, inp.warmModels)).toBe(false);
        expect(warmOn(sel.job, inp.warmModels)).toBe(true);
        for (const p of [sel.job, ...sel.skipped]) expect(tierOf(inp.mode, p)).toBe(tierOf(inp.mode, top));
        expect(ids(sel.skipped)).toEqual(ids(ranked.slice(0, at)));
        expect(sel.skipped.every((s) => s.skips < inp.affinity.maxSkips)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('affinity: window 1, no warm models or maxSkips 0 → identical to no affinity; a warm top is always taken', () => {
    fc.assert(
      fc.property(anyInputArb, (inp) => {
        const plain = naiveRanked(inp)[0];
        const expected = plain ? { job: plain.id, skipped: [] } : null;
        expect(pick(selectJob({ ...inp, affinity: { ...inp.affinity, window: 1 } }))).toEqual(expected);
        expect(pick(selectJob({ ...inp, warmModels: new Set() }))).toEqual(expected);
        expect(pick(selectJob({ ...inp, affinity: { ...inp.affinity, maxSkips: 0 } }))).toEqual(expected);
        if (plain && warmOn(plain, inp.warmModels)) expect(pick(selectJob(inp))).toEqual(expected);
      }),
      RUNS,
    );
  });

  it('does not mutate its input', () => {
    fc.assert(
      fc.property(anyInputArb, (inp) => {
        const before = JSON.stringify([inp.candidates, [...inp.users]]);
        selectJob(inp);
        expect(JSON.stringify([inp.candidates, [...inp.users]])).toBe(before);
      }),
      { numRuns: 50 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// No starvation under affinity: long simulated runs
// ---------------------------------------------------------------------------------------------

interface Sim {
  mode: QueueMode;
  pending: Map<string, Candidate>;
  users: Users;
  limits: QueueLimits;
  userLimits: UserLimits;
  affinity: AffinityOptions;
  clock: number;
  /** Per job: how many dispatches went elsewhere while it was the no-affinity choice. */
  denied: Map<string, number>;
  /** Per job: its skips when it entered the simulation. */
  initialSkips: Map<string, number>;
  firstTurn: Map<string, number>;
  servedAt: Map<string, number>;
  steps: number;
  /** Per served job: its skips when claimed. */
  finalSkips: Map<string, number>;
}

function newSim(mode: QueueMode, pool: Pool, limits: QueueLimits, affinity: AffinityOptions): Sim {
  const sim: Sim = {
    mode,
    pending: new Map(),
    users: new Map([...pool.users].map(([u, s]) => [u, { ...s }])),
    limits,
    userLimits: pool.userLimits,
    affinity,
    clock: Math.max(0, ...[...pool.users.values()].map((s) => s.lastServed)),
    denied: new Map(),
    initialSkips: new Map(),
    firstTurn: new Map(),
    servedAt: new Map(),
    steps: 0,
    finalSkips: new Map(),
  };
  for (const c of pool.candidates) addJob(sim, c);
  return sim;
}

function addJob(sim: Sim, c: Candidate): void {
  sim.pending.set(c.id, { ...c });
  sim.initialSkips.set(c.id, c.skips);
  sim.denied.set(c.id, 0);
}

/** One claim the way the store does it: select, claim, bump `skips` of every skipped job. */
function claim(sim: Sim, warm: readonly string[]): Candidate {
  const base = {
    mode: sim.mode,
    candidates: [...sim.pending.values()],
    users: sim.users,
    limits: sim.limits,
    userLimits: sim.userLimits,
    warmModels: new Set(warm),
  };
  const turn = naiveSelect({ ...base, affinity: { window: 1, maxSkips: 0 } })!.job;
  const sel = selectJob({ ...base, affinity: sim.affinity });
  expect(pick(sel)).toEqual(pick(naiveSelect({ ...base, affinity: sim.affinity })));
  const chosen = sel!.job;
  if (!sim.firstTurn.has(turn.id)) sim.firstTurn.set(turn.id, sim.steps);
  if (chosen.id !== turn.id) sim.denied.set(turn.id, sim.denied.get(turn.id)! + 1);
  sim.finalSkips.set(chosen.id, chosen.skips);
  sim.pending.delete(chosen.id);
  sim.servedAt.set(chosen.id, sim.steps);
  const prev = sim.users.get(chosen.user) ?? { lastServed: 0, running: 0 };
  sim.users.set(chosen.user, { ...prev, lastServed: ++sim.clock });
  for (const s of sel!.skipped) sim.pending.get(s.id)!.skips++;
  sim.steps++;
  return chosen;
}

function allowedDelay(sim: Sim, id: string): number {
  return Math.max(0, sim.affinity.maxSkips - sim.initialSkips.get(id)!);
}

function expectSkipsBounded(sim: Sim): void {
  for (const c of sim.pending.values()) {
    expect(c.skips).toBeLessThanOrEqual(Math.max(sim.affinity.maxSkips, sim.initialSkips.get(c.id)!));
  }
}

const workersArb = fc.array(
  fc.oneof(fc.subarray(MODELS, { minLength: 1 }), fc.subarray(AFFINITY_MODELS, { minLength: 1 })),
  { minLength: 1, maxLength: 4 },
);
const simPoolArb = (maxJobs: number) => fc.oneof(poolArb({ maxJobs }), poolArb({ maxJobs, affinity: true }));

describe('no starvation under affinity', () => {
  it('static queue: every job is dispatched at most maxSkips − skips dispatches after its no-affinity turn', () => {
    fc.assert(
      fc.property(
        modeArb,
        simPoolArb(40),
        fc.nat(2),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(4),
        workersArb,
        fc.array(fc.nat(3), { minLength: 1, maxLength: 50 }),
        (mode, pool, maxRunning, window, maxSkips, workers, turns) => {
          const sim = newSim(mode, pool, { ...LIMITS, maxRunningPerUser: maxRunning }, { window, maxSkips });
          const total = sim.pending.size;
          while (sim.pending.size > 0) {
            claim(sim, workers[turns[sim.steps % turns.length]! % workers.length]!);
            expectSkipsBounded(sim);
          }
          expect(sim.steps).toBe(total);
          for (const [id, t0] of sim.firstTurn) {
            const delay = sim.servedAt.get(id)! - t0;
            expect(delay, `${id} waited ${delay} dispatches past its turn`).toBeLessThanOrEqual(
              allowedDelay(sim, id),
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('with arrivals, front moves and jobs finishing: no job loses more than maxSkips of its turns', () => {
    const eventArb = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('claim' as const), worker: fc.nat(3) }) },
      {
        weight: 2,
        arbitrary: fc.record({ kind: fc.constant('enqueue' as const), spec: specArb({ moves: false }) }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('front' as const), which: fc.nat(100) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('finish' as const), which: fc.nat(100) }) },
    );
    fc.assert(
      fc.property(
        modeArb,
        simPoolArb(20),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(4),
        workersArb,
        fc.array(eventArb, { maxLength: 120 }),
        (mode, pool, maxRunning, window, maxSkips, workers, events) => {
          const sim = newSim(mode, pool, { ...LIMITS, maxRunningPerUser: maxRunning }, { window, maxSkips });
          const running: Candidate[] = [];
          let seq = Math.max(0, ...pool.candidates.map((c) => c.seq));
          let front = Math.max(0, ...pool.candidates.map((c) => c.front));
          const claimOne = (worker: number) => {
            const chosen = claim(sim, workers[worker % workers.length]!);
            running.push(chosen);
            const u = sim.users.get(chosen.user)!;
            sim.users.set(chosen.user, { ...u, running: u.running + 1 });
          };
          for (const e of events) {
            if (e.kind === 'claim' && sim.pending.size > 0) claimOne(e.worker);
            if (e.kind === 'enqueue') {
              const [c] = buildJobs([{ ...e.spec, skips: 0 }], seq);
              seq = c!.seq;
              addJob(sim, c!);
            }
            if (e.kind === 'front' && sim.pending.size > 0) {
              const c = [...sim.pending.values()][e.which % sim.pending.size]!;
              c.front = ++front;
            }
            if (e.kind === 'finish' && running.length > 0) {
              const [done] = running.splice(e.which % running.length, 1);
              const u = sim.users.get(done!.user)!;
              sim.users.set(done!.user, { ...u, running: u.running - 1 });
            }
            expectSkipsBounded(sim);
          }
          let w = 0;
          while (sim.pending.size > 0) claimOne(w++);
          for (const [id, n] of sim.denied) {
            expect(n, `${id} lost ${n} turns`).toBeLessThanOrEqual(allowedDelay(sim, id));
          }
          expect(sim.servedAt.size).toBe(sim.denied.size);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("against serviceOrder of a static queue: a user's k-th job is late by at most the pass-overs of its first k jobs (≤ k × maxSkips)", () => {
    fc.assert(
      fc.property(
        modeArb,
        simPoolArb(40),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(4),
        workersArb,
        fc.array(fc.nat(3), { minLength: 1, maxLength: 50 }),
        (mode, generated, window, maxSkips, workers, turns) => {
          // Queue positions ignore running limits, so nobody runs anything here.
          const pool = { ...generated, users: noRunning(generated.users), userLimits: {} };
          const predicted = ids(serviceOrder(mode, pool.candidates, pool.users));
          const sim = newSim(mode, pool, LIMITS, { window, maxSkips });
          while (sim.pending.size > 0)
            claim(sim, workers[turns[sim.steps % turns.length]! % workers.length]!);
          const passes = new Map<string, number>();
          const kth = new Map<string, number>();
          predicted.forEach((id, position) => {
            const user = pool.candidates.find((c) => c.id === id)!.user;
            const passed = (passes.get(user) ?? 0) + sim.finalSkips.get(id)! - sim.initialSkips.get(id)!;
            const k = (kth.get(user) ?? 0) + 1;
            passes.set(user, passed);
            kth.set(user, k);
            const late = sim.servedAt.get(id)! - position;
            expect(late, `${id} (job ${k} of ${user}, passed over ${passed} times)`).toBeLessThanOrEqual(
              passed,
            );
            expect(passed).toBeLessThanOrEqual(k * maxSkips);
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("example: a worker keeping flux warm makes W's and X's k-th jobs run 2k dispatches late (maxSkips 2)", () => {
    const queue: Candidate[] = [];
    for (let round = 0; round < 10; round++) {
      for (const user of ['w', 'x', 'v']) {
        queue.push(job(user, queue.length + 1, { models: [user === 'v' ? 'flux' : 'sdxl'] }));
      }
    }
    for (let s = 31; s <= 50; s++) queue.push(job('v', s, { models: ['flux'] }));
    const predicted = ids(serviceOrder('round_robin', queue, new Map()));
    const sim = newSim('round_robin', { candidates: queue, users: new Map(), userLimits: {} }, LIMITS, {
      window: 4,
      maxSkips: 2,
    });
    while (sim.pending.size > 0) claim(sim, ['flux']);
    const served = [...sim.servedAt].sort((a, b) => a[1] - b[1]).map(([id]) => id.split('#')[0]);
    expect(served.slice(0, 10).join(' ')).toBe('v v w x v v v w x v');
    for (const user of ['w', 'x']) {
      const mine = predicted.filter((id) => id.startsWith(`${user}#`));
      expect(mine.map((id) => sim.servedAt.get(id)! - predicted.indexOf(id))).toEqual(
        range(1, 10).map((k) => 2 * k),
      );
    }
  });
});
