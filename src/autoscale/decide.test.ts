/**
 * The autoscaler's decision function: its promises checked over random pools (fast-check), and a
 * few named situations.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, type InstanceState, type PoolPolicy, type PoolState } from './decide.js';
import { testPolicy } from '../../test/support/autoscale.js';

const policy = testPolicy({ maxWorkers: 3, jobsPerWorker: 4, maxWaitMs: 60_000 });

const NOW = 10_000_000;

const policyArb: fc.Arbitrary<PoolPolicy> = fc
  .record({
    minWorkers: fc.integer({ min: 0, max: 4 }),
    extra: fc.integer({ min: 0, max: 4 }),
    jobsPerWorker: fc.integer({ min: 1, max: 8 }),
    maxWaitMs: fc.integer({ min: 1000, max: 600_000 }),
    idleMs: fc.integer({ min: 0, max: 900_000 }),
    upCooldownMs: fc.integer({ min: 0, max: 300_000 }),
    downCooldownMs: fc.integer({ min: 0, max: 300_000 }),
    startTimeoutMs: fc.integer({ min: 1000, max: 1_200_000 }),
    dailyBudgetMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 * 3_600_000 })),
    budgetAlertFraction: fc.double({ min: 0.1, max: 1, noNaN: true }),
  })
  .map(({ extra, ...p }) => ({ ...p, maxWorkers: Math.max(1, p.minWorkers + extra) }));

const instanceArb = (i: number): fc.Arbitrary<InstanceState> =>
  fc
    .record({
      phase: fc.constantFrom('starting', 'ready', 'stopping'),
      age: fc.integer({ min: 0, max: 3_600_000 }),
      held: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 })),
      idleFor: fc.integer({ min: 0, max: 3_600_000 }),
    })
    .map(({ phase, age, held, idleFor }) => ({
      id: `i${i}`,
      phase: phase as InstanceState['phase'],
      requestedAt: NOW - age,
      held: phase === 'ready' ? held : 0,
      idleSince: phase === 'ready' && held === 0 ? NOW - Math.min(idleFor, age) : null,
    }));

const stateArb = (p: PoolPolicy): fc.Arbitrary<PoolState> =>
  fc
    .record({
      pending: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60 })),
      oldestAge: fc.integer({ min: 0, max: 1_800_000 }),
      n: fc.integer({ min: 0, max: p.maxWorkers + 1 }),
      otherWorkers: fc.integer({ min: 0, max: 2 }),
      lastUp: fc.option(fc.integer({ min: 0, max: 600_000 })),
      lastDown: fc.option(fc.integer({ min: 0, max: 600_000 })),
      used: fc.integer({ min: 0, max: 24 * 3_600_000 }),
      hold: fc.option(
        fc.record({
          count: fc.integer({ min: 0, max: 5 }),
          left: fc.integer({ min: -60_000, max: 3_600_000 }),
        }),
      ),
      stopAll: fc.boolean(),
      spare: fc.option(fc.integer({ min: 0, max: 1_800_000 })),
    })
    .chain((r) =>
      fc.tuple(...Array.from({ length: r.n }, (_, i) => instanceArb(i))).map((instances) => ({
        now: NOW,
        pending: r.pending,
        oldestPendingAt: r.pending > 0 ? NOW - r.oldestAge : null,
        instances,
        otherWorkers: r.otherWorkers,
        lastUpAt: r.lastUp === null ? null : NOW - r.lastUp,
        lastDownAt: r.lastDown === null ? null : NOW - r.lastDown,
        usedTodayMs: r.used,
        hold: r.hold ? { count: r.hold.count, until: NOW + r.hold.left } : null,
        stopAll: r.stopAll,
        spareSince: r.spare === null ? null : NOW - r.spare,
      })),
    );

const both = policyArb.chain((p) => stateArb(p).map((s) => ({ p, s })));

describe('decide: properties', () => {
  it('never stops an instance that holds a job (never below what is running)', () => {
    fc.assert(
      fc.property(both, ({ p, s }) => {
        for (const d of decide(s, p)) {
          if (d.action !== 'stop') continue;
          expect(s.instances.find((i) => i.id === d.id)!.held).toBe(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('never has more than maxWorkers alive after its starts', () => {
    fc.assert(
      fc.property(both, ({ p, s }) => {
        const ds = decide(s, p);
        const stopped = new Set(ds.flatMap((d) => (d.action === 'stop' ? [d.id] : [])));
        const alive = s.instances.filter((i) => i.phase !== 'stopping' && !stopped.has(i.id)).length;
        const started = ds.reduce((n, d) => n + (d.action === 'start' ? d.count : 0), 0);
        if (started > 0) expect(alive + started).toBeLessThanOrEqual(p.maxWorkers);
        expect(started).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 2000 },
    );
  });

  it('starts only after the scale-up cool-down, within budget, and not while "stop all" is on', () => {
    fc.assert(
      fc.property(both, ({ p, s }) => {
        if (!decide(s, p).some((d) => d.action === 'start')) return;
        if (s.lastUpAt !== null) expect(s.now - s.lastUpAt).toBeGreaterThanOrEqual(p.upCooldownMs);
        if (p.dailyBudgetMs > 0) expect(s.usedTodayMs).toBeLessThan(p.dailyBudgetMs);
        expect(s.stopAll).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it('stops for idleness only after idleMs, the scale-down cool-down, with nothing waiting, above the floor', () => {
    fc.assert(
      fc.property(both, ({ p, s }) => {
        const stops = decide(s, p).filter(
          (d): d is Extract<typeof d, { action: 'stop' }> => d.action === 'stop' && !d.failedStart,
        );
        if (stops.length === 0 || s.stopAll || (p.dailyBudgetMs > 0 && s.usedTodayMs >= p.dailyBudgetMs))
          return;
        expect(stops).toHaveLength(1);
        const inst = s.instances.find((i) => i.id === stops[0]!.id)!;
        expect(inst.phase).toBe('ready');
        expect(inst.held).toBe(0);
        const spare = s.spareSince != null && s.now - s.spareSince >= p.idleMs;
        if (!spare) expect(s.now - inst.idleSince!).toBeGreaterThanOrEqual(p.idleMs);
        if (s.lastDownAt !== null) expect(s.now - s.lastDownAt).toBeGreaterThanOrEqual(p.downCooldownMs);
        expect(s.pending).toBe(0);
        const alive = s.instances.filter(
          (i) =>
            i.phase !== 'stopping' && !(i.phase === 'starting' && s.now - i.requestedAt >= p.startTimeoutMs),
        ).length;
        const hold = s.hold && s.hold.until > s.now ? s.hold.count : 0;
        expect(alive - 1).toBeGreaterThanOrEqual(Math.min(p.maxWorkers, Math.max(p.minWorkers, hold)));
      }),
      { numRuns: 2000 },
    );
  });

  it('gives up exactly the starts older than the start timeout', () => {
    fc.assert(
      fc.property(both, ({ p, s }) => {
        const failed = decide(s, p)
          .filter((d) => d.action === 'stop' && d.failedStart)
          .map((d) => (d as { id: string }).id)
          .sort();
        const expected = s.instances
          .filter((i) => i.phase === 'starting' && s.now - i.requestedAt >= p.startTimeoutMs)
          .map((i) => i.id)
          .sort();
        expect(failed).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });
});

function pool(over: Partial<PoolState> = {}): PoolState {
  return {
    now: NOW,
    pending: 0,
    oldestPendingAt: null,
    instances: [],
    otherWorkers: 0,
    lastUpAt: null,
    lastDownAt: null,
    usedTodayMs: 0,
    hold: null,
    stopAll: false,
    ...over,
  };
}

const ready = (id: string, held: number, idleFor = 0): InstanceState => ({
  id,
  phase: 'ready',
  requestedAt: NOW - 3_600_000,
  held,
  idleSince: held === 0 ? NOW - idleFor : null,
});

describe('decide: situations', () => {
  it('a job queued into a cold pool starts one GPU at once', () => {
    expect(decide(pool({ pending: 1, oldestPendingAt: NOW }), policy)).toEqual([
      { action: 'start', count: 1, reason: '1 waiting, 0 running, 0 workers' },
    ]);
  });

  it('a burst starts one GPU per jobsPerWorker, up to the maximum', () => {
    const d = decide(pool({ pending: 30, oldestPendingAt: NOW }), policy);
    expect(d).toEqual([expect.objectContaining({ action: 'start', count: 3 })]);
  });

  it('a long wait asks for one more GPU even below jobsPerWorker', () => {
    const d = decide(pool({ pending: 2, oldestPendingAt: NOW - 90_000, instances: [ready('a', 1)] }), policy);
    expect(d).toEqual([{ action: 'start', count: 1, reason: 'oldest job waiting 90 s' }]);
  });

  it('holds during the cool-down and says so', () => {
    const d = decide(pool({ pending: 30, oldestPendingAt: NOW, lastUpAt: NOW - 10_000 }), policy);
    expect(d).toEqual([{ action: 'hold', reason: expect.stringMatching(/cool-down/) }]);
  });

  it('stops the longest-idle GPU after the idle limit, one per cool-down, keeping the minimum', () => {
    const inst = [ready('a', 0, 400_000), ready('b', 0, 500_000), ready('c', 1)];
    expect(decide(pool({ instances: inst }), policy)).toEqual([
      { action: 'stop', id: 'b', failedStart: false, reason: 'idle for 500 s' },
    ]);
    expect(decide(pool({ instances: inst }), { ...policy, minWorkers: 3 })).toEqual([]);
  });

  it('jobs spread over two GPUs: the pool having one to spare for the idle limit stops one', () => {
    const inst = [ready('a', 0, 20_000), ready('b', 0, 5000)];
    expect(decide(pool({ instances: inst, spareSince: NOW - 200_000 }), policy)).toEqual([]);
    expect(decide(pool({ instances: inst, spareSince: NOW - 300_000 }), policy)).toEqual([
      { action: 'stop', id: 'a', failedStart: false, reason: 'a worker to spare for 300 s' },
    ]);
  });

  it('"stop all" stops idle GPUs now and leaves busy ones to finish', () => {
    const d = decide(
      pool({ stopAll: true, pending: 20, oldestPendingAt: NOW, instances: [ready('a', 0), ready('b', 2)] }),
      policy,
    );
    expect(d).toEqual([
      { action: 'hold', reason: expect.stringMatching(/stop all/) },
      { action: 'stop', id: 'a', failedStart: false, reason: 'instructor: stop all' },
    ]);
  });

  it('a hold keeps GPUs warm until it ends', () => {
    const hold = { count: 2, until: NOW + 60_000 };
    expect(decide(pool({ hold }), policy)).toEqual([
      { action: 'start', count: 2, reason: 'instructor hold: 2 warm' },
    ]);
    const idle = [ready('a', 0, 900_000), ready('b', 0, 900_000)];
    expect(decide(pool({ hold, instances: idle }), policy)).toEqual([]);
    expect(decide(pool({ hold: { ...hold, until: NOW - 1 }, instances: idle }), policy)[0]).toMatchObject({
      action: 'stop',
    });
  });

  it('alerts before the budget is reached, and starts nothing once it is', () => {
    const p = { ...policy, dailyBudgetMs: 10 * 3_600_000 };
    expect(decide(pool({ usedTodayMs: 8.5 * 3_600_000 }), p)).toEqual([
      { action: 'alert', kind: 'budget_near', reason: "8.50 GPU h of today's 10.00 GPU h GPU budget used" },
    ]);
    const d = decide(pool({ usedTodayMs: 10 * 3_600_000, pending: 3, oldestPendingAt: NOW }), p);
    expect(d.map((x) => x.action)).toEqual(['alert', 'hold']);
  });

  it('gives up a start that never registered', () => {
    const d = decide(
      pool({
        pending: 1,
        oldestPendingAt: NOW - 700_000,
        lastUpAt: NOW - 700_000,
        instances: [{ id: 'x', phase: 'starting', requestedAt: NOW - 700_000, held: 0, idleSince: null }],
      }),
      policy,
    );
    expect(d).toEqual([
      { action: 'stop', id: 'x', failedStart: true, reason: 'did not register within 600 s of its start' },
      { action: 'start', count: 1, reason: '1 waiting, 0 running, 0 workers' },
    ]);
  });
});
