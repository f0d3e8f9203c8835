/**
 * Tests of the pure scheduling policies.
 *
 * Most properties (policy.property.test.ts) are checked against `naiveOrder` / `naiveSelect` in
 * test-kit.ts: a deliberately slow, independent model written from the rules in the module doc of
 * policy.ts (it never calls policy.ts), so a bug in a comparator shared by `serviceOrder` and
 * `selectJob` cannot hide in both. The rule-by-rule properties and the example tables (this file)
 * then name each rule on its own; policy.starvation.test.ts runs long simulations against the
 * affinity bounds below.
 *
 * Affinity bounds tested (the same as in the module doc of policy.ts):
 * - per turn: at most `maxSkips` (precisely `maxSkips - skips`) of the dispatches at which the
 *   policy without affinity would serve a job go to other jobs; with nothing enqueued, moved or
 *   finished in between, a job runs at most that many dispatches after the first dispatch at which
 *   it was the no-affinity choice;
 * - per position: against `serviceOrder` of a static queue, a job runs late by at most the number of
 *   times it and its user's earlier jobs were passed over, so a user's k-th job by k × `maxSkips`.
 */
import { describe, expect, it } from 'vitest';
import { QUEUE_MODES, type QueueMode } from '../store/types.js';
import {
  type Candidate,
  type SelectInput,
  type UserServeState,
  headOrder,
  selectJob,
  serviceOrder,
  userHeads,
} from './policy.js';
import {
  type Users,
  LIMITS,
  job,
  jobs,
  range,
  users,
  input,
  ids,
  pick,
  naiveOrder,
  naiveSelect,
} from '../../test/support/policy-kit.js';

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
