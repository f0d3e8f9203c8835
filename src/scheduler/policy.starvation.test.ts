/**
 * No starvation under affinity: long simulated runs of the scheduling policy, checking the
 * affinity bounds listed in policy.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AffinityOptions, QueueLimits, QueueMode } from '../store/types.js';
import { type Candidate, selectJob, serviceOrder } from './policy.js';
import {
  type Users,
  type UserLimits,
  LIMITS,
  job,
  range,
  ids,
  pick,
  naiveSelect,
  MODELS,
  AFFINITY_MODELS,
  type Pool,
  specArb,
  buildJobs,
  poolArb,
  modeArb,
  noRunning,
} from '../../test/support/policy-kit.js';

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
