/**
 * Scheduling policies as pure functions. The stores feed them candidates and apply the choice
 * atomically; nothing here does I/O, so every rule can be tested exhaustively.
 *
 * Order of service, strongest rule first:
 * 1. Jobs moved to the front, most recently moved first (every mode).
 * 2. `priority` mode only: level `instructor` > `high` > `normal` > `low`.
 * 3. `round_robin` and `priority`: the user served least recently goes first (never-served users
 *    first, ties broken by who has waited longest). `fifo`: oldest job first.
 * 4. Within one user: oldest first (in `priority` mode, most urgent level first).
 *
 * Limits: a user already running `maxRunningPerUser` jobs is passed over while any other user has
 * an eligible job; when nobody else waits, the user may run more.
 *
 * Model affinity: when the top candidate (the best-ranked user head) is not warm on the worker, the
 * worker takes instead the first of the next `affinity.window - 1` candidates whose models are all
 * warm on it (a job without models is never warm), provided that it and every candidate it passes
 * over are in the top's tier (same front-ness and, in `priority` mode, the same level; moved jobs
 * rank by `front` alone, so their levels can interleave) and that no candidate passed over has
 * already been passed over `affinity.maxSkips` times. `window` 1, `maxSkips` 0 or no warm models
 * turn affinity off.
 *
 * The bound (docs/ARCHITECTURE.md must state the same; policy.test.ts checks both parts):
 * - Per turn: a job is passed over at most `maxSkips` times in all, so of the dispatches at which
 *   the policy without affinity would serve it, at most `maxSkips` go to other jobs. With nothing
 *   enqueued, moved or finished meanwhile, it runs at most `maxSkips` dispatches after the first
 *   dispatch at which it was the top candidate. No job starves.
 * - Not per position: the budget is per job, and passing a user over also pushes that user's later
 *   jobs back. Against the order {@link serviceOrder} gave when they were all pending (the queue
 *   positions shown; same conditions, and nobody held back by a running limit), a user's k-th job
 *   there may run up to k × `maxSkips` dispatches late: at most the number of times it and that
 *   user's earlier jobs were passed over. E.g. window 4, maxSkips 2, round robin, a worker that
 *   keeps `flux` warm, users W and X without flux and V with only flux jobs: V V W X V V V W X …;
 *   W's and X's k-th jobs each run 2k dispatches late.
 */
import type { AffinityOptions, Priority, QueueLimits, QueueMode } from '../store/types.js';
import { priorityRank } from '../store/types.js';

/** The facts about one pending job that the policy looks at. */
export interface Candidate {
  id: string;
  user: string;
  seq: number;
  priority: Priority;
  front: number;
  models: readonly string[];
  skips: number;
}

export interface UserServeState {
  /** Store-wide serve counter at the user's last claim; 0 when never served. */
  lastServed: number;
  running: number;
}

export interface SelectInput {
  mode: QueueMode;
  /** Pending jobs; any subset that contains each user's head (see {@link headOrder}). */
  candidates: readonly Candidate[];
  users: ReadonlyMap<string, UserServeState>;
  limits: QueueLimits;
  userLimits?: Readonly<Record<string, Partial<QueueLimits>>>;
  warmModels: ReadonlySet<string>;
  affinity: AffinityOptions;
}

export interface Selection {
  job: Candidate;
  /** Candidates affinity passed over; their `skips` must be incremented with the claim. */
  skipped: Candidate[];
}

const NEVER: UserServeState = { lastServed: 0, running: 0 };

/** Orders the jobs of one user: the first is the user's head, the only one that competes. */
export function headOrder(mode: QueueMode): (a: Candidate, b: Candidate) => number {
  return (a, b) =>
    b.front - a.front ||
    (mode === 'priority' ? priorityRank(a.priority) - priorityRank(b.priority) : 0) ||
    a.seq - b.seq;
}

/** Each user's first job under {@link headOrder}. */
export function userHeads(mode: QueueMode, candidates: readonly Candidate[]): Candidate[] {
  const cmp = headOrder(mode);
  const heads = new Map<string, Candidate>();
  for (const c of candidates) {
    const cur = heads.get(c.user);
    if (!cur || cmp(c, cur) < 0) heads.set(c.user, c);
  }
  return [...heads.values()];
}

/** Compares two user heads: negative when `a` is served first. */
export function compareHeads(
  mode: QueueMode,
  users: ReadonlyMap<string, UserServeState>,
): (a: Candidate, b: Candidate) => number {
  return (a, b) => {
    if (a.front !== b.front) return b.front - a.front;
    if (mode === 'fifo') return a.seq - b.seq;
    if (mode === 'priority') {
      const byLevel = priorityRank(a.priority) - priorityRank(b.priority);
      if (byLevel !== 0) return byLevel;
    }
    const la = (users.get(a.user) ?? NEVER).lastServed;
    const lb = (users.get(b.user) ?? NEVER).lastServed;
    return la - lb || a.seq - b.seq;
  };
}

/**
 * The service order of the given pending jobs if nobody ran and no affinity applied: repeatedly
 * take the best head, then treat its user as just served. Stops after `limit` jobs.
 * Used for queue positions and as the reference model in tests.
 */
export function serviceOrder(
  mode: QueueMode,
  candidates: readonly Candidate[],
  users: ReadonlyMap<string, UserServeState>,
  limit = Infinity,
): Candidate[] {
  const perUser = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const list = perUser.get(c.user);
    if (list) list.push(c);
    else perUser.set(c.user, [c]);
  }
  const byHead = headOrder(mode);
  // Each user's jobs reversed so the head is last and pop() is O(1).
  for (const list of perUser.values()) list.sort((a, b) => byHead(b, a));
  const state = new Map(users);
  let counter = Math.max(0, ...[...users.values()].map((u) => u.lastServed));
  const out: Candidate[] = [];
  while (out.length < limit && perUser.size > 0) {
    const heads = [...perUser.values()].map((list) => list[list.length - 1]!);
    const next = heads.reduce((best, h) => (compareHeads(mode, state)(h, best) < 0 ? h : best));
    out.push(next);
    const list = perUser.get(next.user)!;
    list.pop();
    if (list.length === 0) perUser.delete(next.user);
    state.set(next.user, { ...(state.get(next.user) ?? NEVER), lastServed: ++counter });
  }
  return out;
}

function limitFor(input: SelectInput, user: string): number {
  return input.userLimits?.[user]?.maxRunningPerUser ?? input.limits.maxRunningPerUser;
}

/** Heads in service order, users at their running limit left out unless nobody else waits. */
export function rankedHeads(input: SelectInput): Candidate[] {
  const heads = userHeads(input.mode, input.candidates).sort(compareHeads(input.mode, input.users));
  const eligible = heads.filter((h) => (input.users.get(h.user) ?? NEVER).running < limitFor(input, h.user));
  return eligible.length > 0 ? eligible : heads;
}

function sameTier(mode: QueueMode, a: Candidate, b: Candidate): boolean {
  return a.front > 0 === b.front > 0 && (mode !== 'priority' || a.priority === b.priority);
}

function isWarm(c: Candidate, warm: ReadonlySet<string>): boolean {
  return c.models.length > 0 && c.models.every((m) => warm.has(m));
}

/** Picks the job a worker should claim now, or null when there is none. */
export function selectJob(input: SelectInput): Selection | null {
  const ranked = rankedHeads(input);
  const top = ranked[0];
  if (!top) return null;
  if (input.affinity.window <= 1 || input.warmModels.size === 0 || isWarm(top, input.warmModels)) {
    return { job: top, skipped: [] };
  }
  const window = ranked.slice(0, input.affinity.window);
  for (let i = 1; i < window.length; i++) {
    const c = window[i]!;
    if (!sameTier(input.mode, top, c)) break;
    const passedOver = window.slice(0, i);
    if (passedOver.some((p) => p.skips >= input.affinity.maxSkips)) break;
    if (isWarm(c, input.warmModels)) return { job: c, skipped: passedOver };
  }
  return { job: top, skipped: [] };
}
