/**
 * The harness of the JobStore conformance suite (store.conformance.ts) and the helpers its parts
 * share. `conformanceKit(open)` is called inside the suite's `describe`: it opens a fresh store
 * before each test, cleans it up after, and hands the parts (`*.conformance.ts`) the store and the
 * helpers that act on it. The parts import this module, never the suite that runs them. Named
 * `*.conformance.ts` so the build leaves it out, like the suites (it imports vitest).
 */
import { afterEach, beforeEach, expect } from 'vitest';
import type { Candidate } from '../scheduler/policy.js';
import type { OpenStore, OpenedStore } from './conformance-types.js';
import type {
  AffinityOptions,
  ClaimRequest,
  ComfyPrompt,
  Job,
  JobStore,
  NewJob,
  QueueSettings,
} from './types.js';

/** The defaults every conformance test store is opened with. */
export const CONFORMANCE_DEFAULTS: QueueSettings = {
  mode: 'fifo',
  paused: false,
  limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
  userLimits: {},
};

export const T0 = 1_700_000_000_000;
export const LEASE = 30_000;
export const NO_AFFINITY: AffinityOptions = { window: 1, maxSkips: 2 };
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function prompt(n: number): ComfyPrompt {
  return {
    '3': { class_type: 'KSampler', inputs: { seed: n, steps: 20, model: ['4', 0] } },
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'flux2.safetensors' } },
  };
}

export function must<T>(value: T | null | undefined, what = 'value'): T {
  if (value === null || value === undefined) throw new Error(`expected a ${what}`);
  return value;
}

export function ids(jobs: readonly { id: string }[]): string[] {
  return jobs.map((j) => j.id);
}

export function toCandidate(j: Job): Candidate {
  return {
    id: j.id,
    user: j.user,
    seq: j.seq,
    priority: j.priority,
    front: j.front,
    models: j.models,
    skips: j.skips,
  };
}

/**
 * What a part of the suite works with. `store` is the store of the running test; a reopen
 * replaces it, so a part reads it again after calling `reopen` (never keeps an old one).
 */
export interface ConformanceKit {
  readonly store: JobStore;
  /** Whether the backend can close and open the same data again (`OpenedStore.reopen`). */
  readonly canReopen: boolean;
  add(user: string, extra?: Partial<NewJob>, now?: number): Promise<Job>;
  claim(workerId?: string, now?: number, extra?: Partial<ClaimRequest>): Promise<Job | null>;
  /** Claims and completes until nothing is left, so running limits never interfere. */
  drain(now?: number): Promise<string[]>;
  raisePendingLimit(n?: number): Promise<void>;
  /** Closes the store and opens the same data again; `store` is the new one after. */
  reopen(): Promise<void>;
}

/** Opens a fresh store for each test of the enclosing `describe` and returns the kit on it. */
export function conformanceKit(open: OpenStore): ConformanceKit {
  let ctx: OpenedStore;
  let store: JobStore;

  beforeEach(async () => {
    ctx = await open(structuredClone(CONFORMANCE_DEFAULTS));
    store = ctx.store;
  });

  afterEach(async () => {
    await ctx.cleanup();
  });

  // ---- helpers (they read `store`, so they follow a reopen) ----

  let promptCounter = 0;
  const add = (user: string, extra: Partial<NewJob> = {}, now = T0): Promise<Job> =>
    store.enqueue({ user, prompt: prompt(++promptCounter), ...extra }, now);

  const claim = (workerId = 'w1', now = T0, extra: Partial<ClaimRequest> = {}): Promise<Job | null> =>
    store.claim({ workerId, warmModels: [], leaseMs: LEASE, now, affinity: NO_AFFINITY, ...extra });

  /** Claims and completes until nothing is left, so running limits never interfere. */
  async function drain(now = T0): Promise<string[]> {
    const order: string[] = [];
    for (;;) {
      const j = await claim('drainer', now);
      if (!j) return order;
      order.push(j.id);
      const r = await store.complete(j.id, j.attempts, [], now + 1);
      expect(r.ok).toBe(true);
    }
  }

  async function raisePendingLimit(n = 10_000): Promise<void> {
    await store.updateSettings({ limits: { maxPendingPerUser: n } });
  }

  async function reopen(): Promise<void> {
    store = await must(ctx.reopen, 'reopen')();
  }

  return {
    get store() {
      return store;
    },
    get canReopen() {
      return ctx.reopen !== undefined;
    },
    add,
    claim,
    drain,
    raisePendingLimit,
    reopen,
  };
}
