/**
 * Properties of the pure scheduling policies, checked against the independent model in
 * test-kit.ts and rule by rule (see policy.test.ts for the model and the affinity bounds).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PRIORITIES, priorityRank } from '../store/types.js';
import { headOrder, rankedHeads, selectJob, serviceOrder, userHeads } from './policy.js';
import {
  OFF,
  input,
  ids,
  pick,
  naiveOrder,
  naiveHeads,
  naiveLimit,
  naiveEligible,
  naiveRanked,
  tierOf,
  warmOn,
  naiveSelect,
  poolArb,
  modeArb,
  inputArb,
  RUNS,
  anyInputArb,
  expectRoundRobin,
  expectFirstServiceWithinUsers,
  noRunning,
} from '../../test/support/policy-kit.js';

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
