/**
 * `pendingInOrder`: the pending jobs in the order they will be served, which must be the policy's
 * service order.
 * Part of the JobStore conformance suite (store.conformance.ts), run inside its `describe`.
 */
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { QueueLimitError } from '../errors.js';
import { selectJob, serviceOrder, type Candidate, type UserServeState } from '../scheduler/policy.js';
import {
  PRIORITIES,
  QUEUE_MODES,
  isTerminal,
  type Job,
  type JobStatus,
  type JobStore,
  type Priority,
  type QueueMode,
} from './types.js';
import { T0, ids, must, prompt, toCandidate, type ConformanceKit } from './kit.conformance.js';

export function pendingOrderConformance(kit: ConformanceKit): void {
  const { add, claim, drain, raisePendingLimit } = kit;
  /** The store of the running test: set before each, and again after a reopen. */
  let store: JobStore;

  /**
   * Users' serve states as the policy sees them. Stores do not expose `lastServed`, so tests
   * that need it rebuild it from the order of claims; this helper is only used where every
   * user with pending jobs was served in a known order (see `served`).
   */
  let served: string[] = [];
  async function serveStates(): Promise<Map<string, UserServeState>> {
    const m = new Map<string, UserServeState>();
    served.forEach((u, i) => m.set(u, { lastServed: i + 1, running: 0 }));
    for (const j of (await store.listJobs({ status: 'running', limit: 500 })).jobs) {
      const s = m.get(j.user) ?? { lastServed: 0, running: 0 };
      m.set(j.user, { ...s, running: s.running + 1 });
    }
    return m;
  }
  beforeEach(() => {
    served = [];
  });

  async function expectPendingOrderMatchesPolicy(): Promise<void> {
    const settings = await store.getSettings();
    const pending = (await store.listJobs({ status: 'pending', limit: 500 })).jobs;
    const users = await serveStates();
    const expected = serviceOrder(settings.mode, pending.map(toCandidate), users);
    expect(ids(await store.pendingInOrder(1000))).toEqual(ids(expected));
  }

  describe('pendingInOrder', () => {
    beforeEach(() => {
      store = kit.store;
    });

    for (const mode of QUEUE_MODES) {
      it(`${mode}: matches serviceOrder from the policy, honours limit, excludes non-pending`, async () => {
        await raisePendingLimit();
        await store.updateSettings({ mode, limits: { maxRunningPerUser: 100 } });
        const users = ['ann', 'ben', 'cat', 'dan', 'eve'];
        let k = 0;
        for (let i = 0; i < 40; i++) {
          const u = users[(i * 7 + (i >> 2)) % users.length]!;
          await add(u, { priority: PRIORITIES[(i * 5 + 1) % 4]!, front: i % 13 === 5 });
        }
        // Serve a few users so lastServed differs, and leave some running.
        for (let i = 0; i < 6; i++) {
          const j = must(await claim(`w${k++}`));
          served = served.filter((u) => u !== j.user).concat(j.user);
          if (i % 2) await store.complete(j.id, 1, [], T0);
        }
        const pend = (await store.listJobs({ status: 'pending', limit: 500 })).jobs;
        must(await store.moveToFront(must(pend[20]).id));
        await store.cancel(must(pend[3]).id, T0);
        await expectPendingOrderMatchesPolicy();
        const full = ids(await store.pendingInOrder(1000));
        expect(full).toHaveLength(40 - 6 - 1);
        expect(ids(await store.pendingInOrder(5))).toEqual(full.slice(0, 5));
        expect(ids(await store.pendingInOrder(1))).toEqual(full.slice(0, 1));
        // The order it promises is the order claims follow (no affinity, no running limits).
        expect(await drain()).toEqual(full);
      });
    }

    for (const mode of QUEUE_MODES) {
      it(`${mode}: with many users, every limit gives a prefix of the policy's order`, async () => {
        await store.updateSettings({ mode, limits: { maxRunningPerUser: 100 } });
        const users = Array.from({ length: 70 }, (_, i) => `user${String(i).padStart(2, '0')}`);
        for (let round = 0; round < 3; round++) {
          for (const [i, u] of users.entries()) {
            await add(u, { priority: PRIORITIES[(i + round) % 4]!, front: (i * 7 + round) % 31 === 0 });
          }
        }
        // Serve 25 users in a scrambled order so lastServed differs.
        for (let i = 0; i < 25; i++) {
          const j = must(await claim(`w${i}`));
          served = served.filter((u) => u !== j.user).concat(j.user);
          await store.complete(j.id, 1, [], T0);
        }
        await expectPendingOrderMatchesPolicy();
        const full = ids(await store.pendingInOrder(1000));
        expect(full).toHaveLength(210 - 25);
        for (const limit of [1, 2, 3, 63, 64, 65, 100, 128, 129, 184, 185, 500]) {
          expect(ids(await store.pendingInOrder(limit))).toEqual(full.slice(0, limit));
        }
      });
    }

    it('returns full jobs', async () => {
      const a = await add('a', { models: ['m/a'], metadata: { k: 1 } });
      expect(await store.pendingInOrder(10)).toEqual([a]);
    });

    it('model-based: random operations agree with a reference model on claims and order', async () => {
      let run = 0;
      // Mostly `normal`, rarely moved: affinity only acts within a tier, so keep tiers crowded.
      const priorityArb = fc.oneof(
        { weight: 3, arbitrary: fc.constant<Priority>('normal') },
        fc.constantFrom(...PRIORITIES),
      );
      const modelsArb = fc.subarray(['m/a', 'm/b', 'm/c'], { minLength: 1, maxLength: 2 });
      const opArb = fc.oneof(
        {
          weight: 6,
          arbitrary: fc.record({
            t: fc.constant('enqueue' as const),
            user: fc.nat(4),
            priority: priorityArb,
            front: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
            models: fc.oneof(modelsArb, fc.constant<string[]>([])),
          }),
        },
        {
          weight: 4,
          arbitrary: fc.record({
            t: fc.constant('claim' as const),
            warm: modelsArb,
            window: fc.integer({ min: 1, max: 4 }),
            maxSkips: fc.integer({ min: 0, max: 2 }),
          }),
        },
        { weight: 3, arbitrary: fc.record({ t: fc.constant('complete' as const), pick: fc.nat() }) },
        { weight: 1, arbitrary: fc.record({ t: fc.constant('cancel' as const), pick: fc.nat() }) },
        { weight: 1, arbitrary: fc.record({ t: fc.constant('release' as const), pick: fc.nat() }) },
        { weight: 1, arbitrary: fc.record({ t: fc.constant('moveToFront' as const), pick: fc.nat() }) },
        {
          weight: 1,
          arbitrary: fc.record({
            t: fc.constant('setPriority' as const),
            pick: fc.nat(),
            priority: fc.constantFrom(...PRIORITIES),
          }),
        },
        {
          weight: 1,
          arbitrary: fc.record({ t: fc.constant('mode' as const), mode: fc.constantFrom(...QUEUE_MODES) }),
        },
        { weight: 1, arbitrary: fc.record({ t: fc.constant('expire' as const) }) },
      );

      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...QUEUE_MODES),
          fc.constantFrom(1, 2, 5),
          fc.array(opArb, { minLength: 1, maxLength: 40, size: 'max' }),
          async (startMode, maxRunning, ops) => {
            run++;
            // A failed (shrinking) run may leave jobs behind: finish them so each run starts clean.
            for (const status of ['pending', 'running'] as const) {
              for (const j of (await store.listJobs({ status, limit: 500 })).jobs)
                await store.cancel(j.id, T0);
            }
            const userName = (u: number) => `r${run}u${u}`;
            let mode: QueueMode = startMode;
            const limits = { maxPendingPerUser: 4, maxRunningPerUser: maxRunning };
            await store.updateSettings({ mode, limits, userLimits: {} });
            interface MJob extends Candidate {
              status: JobStatus;
              attempts: number;
              lease: number;
              /** The user's lastServed before the claim that started it: a hand-back restores it. */
              servedBefore: number;
            }
            const jobs = new Map<string, MJob>();
            const order: string[] = [];
            const users = new Map<string, UserServeState>();
            let serveCounter = 0;
            let maxFront = 0;
            let now = T0 + run * 1_000_000;
            const lease = 5;
            const maxAttempts = 2;
            const pick = (n: number, pred: (j: MJob) => boolean): MJob | undefined => {
              const list = order.map((id) => jobs.get(id)!).filter(pred);
              return list.length ? list[n % list.length] : undefined;
            };
            const user = (u: string) => users.get(u) ?? { lastServed: 0, running: 0 };
            const pendingCandidates = () =>
              order.map((id) => jobs.get(id)!).filter((j) => j.status === 'pending');
            const toPending = (j: MJob) => {
              j.status = 'pending';
              const u = user(j.user);
              users.set(j.user, {
                lastServed: Math.min(u.lastServed, j.servedBefore),
                running: u.running - 1,
              });
            };
            const toTerminal = (j: MJob, status: JobStatus) => {
              if (j.status === 'running')
                users.set(j.user, { ...user(j.user), running: user(j.user).running - 1 });
              j.status = status;
            };

            for (const op of ops) {
              now += 1;
              switch (op.t) {
                case 'enqueue': {
                  const u = userName(op.user);
                  const pendingCount = pendingCandidates().filter((j) => j.user === u).length;
                  const res = await store
                    .enqueue(
                      {
                        user: u,
                        prompt: prompt(now),
                        priority: op.priority,
                        models: op.models,
                        front: op.front,
                      },
                      now,
                    )
                    .catch((e: unknown) => e);
                  if (pendingCount >= limits.maxPendingPerUser) {
                    expect(res).toBeInstanceOf(QueueLimitError);
                    break;
                  }
                  if (!(res && typeof res === 'object' && 'id' in res)) throw res;
                  const j = res as Job;
                  if (op.front) {
                    expect(j.front).toBeGreaterThan(maxFront);
                    maxFront = j.front;
                  } else expect(j.front).toBe(0);
                  jobs.set(j.id, {
                    ...toCandidate(j),
                    status: 'pending',
                    attempts: 0,
                    lease: 0,
                    servedBefore: 0,
                  });
                  order.push(j.id);
                  break;
                }
                case 'claim': {
                  const affinity = { window: op.window, maxSkips: op.maxSkips };
                  const sel = selectJob({
                    mode,
                    candidates: pendingCandidates(),
                    users,
                    limits,
                    userLimits: {},
                    warmModels: new Set(op.warm),
                    affinity,
                  });
                  const got = await store.claim({
                    workerId: 'w',
                    warmModels: op.warm,
                    leaseMs: lease,
                    now,
                    affinity,
                  });
                  expect(got?.id ?? null).toBe(sel?.job.id ?? null);
                  if (!sel || !got) break;
                  const j = jobs.get(sel.job.id)!;
                  j.status = 'running';
                  j.attempts += 1;
                  j.lease = now + lease;
                  j.servedBefore = user(j.user).lastServed;
                  expect(got.attempts).toBe(j.attempts);
                  users.set(j.user, { lastServed: ++serveCounter, running: user(j.user).running + 1 });
                  for (const s of sel.skipped) jobs.get(s.id)!.skips += 1;
                  break;
                }
                case 'complete': {
                  const j = pick(op.pick, (x) => x.status === 'running');
                  if (!j) break;
                  expect(await store.complete(j.id, j.attempts, [], now)).toMatchObject({ ok: true });
                  toTerminal(j, 'completed');
                  break;
                }
                case 'cancel': {
                  const j = pick(op.pick, () => true);
                  if (!j) break;
                  const r = await store.cancel(j.id, now);
                  if (isTerminal(j.status)) expect(r).toMatchObject({ ok: false, reason: 'terminal' });
                  else {
                    expect(r).toMatchObject({ ok: true, job: { status: 'cancelled' } });
                    toTerminal(j, 'cancelled');
                  }
                  break;
                }
                case 'release': {
                  const j = pick(op.pick, (x) => x.status === 'running');
                  if (!j) break;
                  expect(await store.release(j.id, j.attempts, now)).toMatchObject({ ok: true });
                  j.attempts -= 1;
                  toPending(j);
                  break;
                }
                case 'moveToFront': {
                  const j = pick(op.pick, () => true);
                  if (!j) break;
                  const r = must(await store.moveToFront(j.id));
                  if (j.status === 'pending') {
                    expect(r.front).toBeGreaterThan(maxFront);
                    maxFront = r.front;
                    j.front = r.front;
                  } else expect(r.front).toBe(j.front);
                  break;
                }
                case 'setPriority': {
                  const j = pick(op.pick, () => true);
                  if (!j) break;
                  const r = must(await store.setPriority(j.id, op.priority));
                  if (!isTerminal(j.status)) j.priority = op.priority;
                  expect(r.priority).toBe(j.priority);
                  break;
                }
                case 'mode': {
                  mode = op.mode;
                  await store.updateSettings({ mode });
                  break;
                }
                case 'expire': {
                  const res = await store.requeueExpired(now, maxAttempts);
                  const expired = order
                    .map((id) => jobs.get(id)!)
                    .filter((j) => j.status === 'running' && j.lease <= now);
                  const wantFailed = expired.filter((j) => j.attempts >= maxAttempts);
                  const wantRequeued = expired.filter((j) => j.attempts < maxAttempts);
                  expect(ids(res.failed).sort()).toEqual(ids(wantFailed).sort());
                  expect(ids(res.requeued).sort()).toEqual(ids(wantRequeued).sort());
                  for (const j of wantFailed) toTerminal(j, 'failed');
                  for (const j of wantRequeued) toPending(j);
                  break;
                }
              }
              const expected = serviceOrder(mode, pendingCandidates(), users);
              expect(ids(await store.pendingInOrder(1000))).toEqual(ids(expected));
            }

            // Every job: the store agrees on status, attempts and skips.
            for (const j of jobs.values()) {
              expect(await store.getJob(j.id)).toMatchObject({
                status: j.status,
                attempts: j.attempts,
                skips: j.skips,
                front: j.front,
                priority: j.priority,
              });
            }
            // Finish everything: every accepted job ends in exactly one terminal state.
            for (const j of jobs.values()) if (!isTerminal(j.status)) await store.cancel(j.id, now + 1);
            for (const u of new Set([...jobs.values()].map((j) => j.user))) {
              const c = await store.countByStatus(u);
              const mine = [...jobs.values()].filter((j) => j.user === u);
              expect(c.pending + c.running).toBe(0);
              expect(c.completed + c.failed + c.cancelled).toBe(mine.length);
              expect(c.completed).toBe(mine.filter((j) => j.status === 'completed').length);
              expect(c.failed).toBe(mine.filter((j) => j.status === 'failed').length);
            }
            expect(await store.pendingInOrder(10)).toEqual([]);
          },
        ),
        { numRuns: 40 },
      );
    });
  });
}
