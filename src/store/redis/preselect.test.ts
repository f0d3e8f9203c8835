import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  selectJob,
  userHeads,
  type Candidate,
  type SelectInput,
  type UserServeState,
} from '../../scheduler/policy.js';
import { PRIORITIES, QUEUE_MODES } from '../types.js';
import { preselect } from './preselect.js';

const MODELS = ['m/a', 'm/b', 'm/c'];

const inputArb = fc
  .record({
    mode: fc.constantFrom(...QUEUE_MODES),
    users: fc.integer({ min: 1, max: 40 }),
    jobs: fc.array(
      fc.record({
        user: fc.nat(39),
        priority: fc.constantFrom(...PRIORITIES),
        front: fc.integer({ min: 0, max: 6 }),
        skips: fc.integer({ min: 0, max: 3 }),
        models: fc.subarray(MODELS),
      }),
      { minLength: 1, maxLength: 120 },
    ),
    lastServed: fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 40, maxLength: 40 }),
    running: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 40, maxLength: 40 }),
    maxRunning: fc.integer({ min: 0, max: 3 }),
    overrides: fc.dictionary(
      fc.nat(39).map((u) => `u${u}`),
      fc.record({ maxRunningPerUser: fc.integer({ min: 0, max: 3 }) }),
    ),
    warm: fc.subarray(MODELS),
    window: fc.integer({ min: 0, max: 6 }),
    maxSkips: fc.integer({ min: 0, max: 3 }),
  })
  .map((r): SelectInput => {
    let frontCounter = 0;
    const all: Candidate[] = r.jobs.map((j, i) => ({
      id: `j${i}`,
      user: `u${j.user % r.users}`,
      seq: i + 1,
      priority: j.priority,
      front: j.front === 1 ? ++frontCounter : 0,
      skips: j.skips,
      models: j.models,
    }));
    const users = new Map<string, UserServeState>();
    for (let u = 0; u < r.users; u++) {
      users.set(`u${u}`, { lastServed: r.lastServed[u]!, running: r.running[u]! });
    }
    return {
      mode: r.mode,
      // The store hands selectJob each user's head only.
      candidates: userHeads(r.mode, all),
      users,
      limits: { maxPendingPerUser: 10, maxRunningPerUser: r.maxRunning },
      userLimits: r.overrides,
      warmModels: new Set(r.warm),
      affinity: { window: r.window, maxSkips: r.maxSkips },
    };
  });

describe('preselect', () => {
  it('makes selectJob decide exactly as it does on all heads', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const full = selectJob(input);
        const fast = selectJob({ ...input, candidates: preselect(input) });
        expect(fast?.job.id ?? null).toBe(full?.job.id ?? null);
        expect((fast?.skipped ?? []).map((c) => c.id)).toEqual((full?.skipped ?? []).map((c) => c.id));
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps at most window candidates', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        expect(preselect(input).length).toBeLessThanOrEqual(Math.max(1, input.affinity.window));
      }),
      { numRuns: 300 },
    );
  });
});
