/**
 * Decoding what the Redis store's scripts answer (flat hashes, heads) and the small checks and
 * encodings its operations share. Split out of `redis-store.ts`; nothing here talks to Redis.
 */
import { AppError } from '../../errors.js';
import { compareHeads, userHeads, type Candidate, type UserServeState } from '../../scheduler/policy.js';
import {
  PRIORITIES,
  type Job,
  type JobError,
  type JobOutput,
  type JobStatus,
  type Priority,
  type QueueLimits,
  type QueueMode,
} from '../types.js';

/** A Redis hash as HGETALL answers it: field, value, field, value, ... */
export type Flat = string[];

// Decoding

export function record(flat: Flat): Record<string, string | undefined> {
  const h: Record<string, string | undefined> = Object.create(null) as Record<string, string | undefined>;
  for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]!] = flat[i + 1];
  return h;
}

export function numOrNull(v: string | undefined): number | null {
  return v === undefined || v === '' ? null : Number(v);
}

export function jobFrom(h: Record<string, string | undefined>): Job {
  return {
    id: h.id!,
    seq: Number(h.seq),
    user: h.user!,
    status: h.status as JobStatus,
    priority: h.priority as Priority,
    front: Number(h.front ?? 0),
    prompt: JSON.parse(h.prompt ?? '{}') as Job['prompt'],
    models: JSON.parse(h.models ?? '[]') as string[],
    metadata: JSON.parse(h.metadata ?? '{}') as Record<string, unknown>,
    attempts: Number(h.attempts ?? 0),
    skips: Number(h.skips ?? 0),
    workerId: h.workerId ?? null,
    leaseExpiresAt: numOrNull(h.leaseExpiresAt),
    createdAt: Number(h.createdAt),
    startedAt: numOrNull(h.startedAt),
    finishedAt: numOrNull(h.finishedAt),
    error: h.error ? (JSON.parse(h.error) as JobError) : null,
    outputs: JSON.parse(h.outputs ?? '[]') as JobOutput[],
  };
}

export function parseJob(flat: unknown): Job {
  return jobFrom(record(flat as Flat));
}

/**
 * A head as lua/includes/heads.lua writes it: the policy's Candidate plus the user's serve state,
 * `[id, user, seq, priority, front, skips, models, lastServed, running]`.
 */
export type HeadTuple = [string, string, number, Priority, number, number, string[], number, number];

export interface Head {
  candidate: Candidate;
  state: UserServeState;
}

export function headFrom([
  id,
  user,
  seq,
  priority,
  front,
  skips,
  models,
  lastServed,
  running,
]: HeadTuple): Head {
  return { candidate: { id, user, seq, priority, front, skips, models }, state: { lastServed, running } };
}

export function usersOf(heads: readonly Head[]): Map<string, UserServeState> {
  const users = new Map<string, UserServeState>();
  for (const h of heads) users.set(h.candidate.user, h.state);
  return users;
}

/**
 * Drops the users who cannot be among the first `n` picks of `serviceOrder`: a user whose head
 * ranks below the n-th head is beaten, at each of the first n picks, by some user ranked above it
 * and not picked yet (heads of unpicked users do not change), so only the n best users matter.
 */
export function onlyContenders(
  mode: QueueMode,
  candidates: Candidate[],
  users: ReadonlyMap<string, UserServeState>,
  n: number,
): Candidate[] {
  const heads = userHeads(mode, candidates);
  if (heads.length <= n) return candidates;
  const keep = new Set(
    heads
      .sort(compareHeads(mode, users))
      .slice(0, n)
      .map((h) => h.user),
  );
  return candidates.filter((c) => keep.has(c.user));
}

/** Byte order of the UTF-8 encodings, like SQLite's BINARY collation. */
export function byCodePoint(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function encodeCursor(seq: number): string {
  return Buffer.from(`seq:${seq}`).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const m = /^seq:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new AppError('BAD_REQUEST', 'The page cursor is not valid.');
  return m[1]!;
}

export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return 50;
  return Math.min(500, Math.max(1, Math.floor(limit)));
}

export function checkPriority(p: Priority): void {
  if (!PRIORITIES.includes(p)) throw new AppError('VALIDATION_FAILED', `Unknown priority ${String(p)}.`);
}

/** Own property of a reply object, never something inherited from Object.prototype. */
export function own(o: Record<string, string | undefined>, key: string): string | undefined {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

export function checkLimits(l: Partial<QueueLimits>, where: string): void {
  for (const [k, v] of Object.entries(l)) {
    if (v === undefined) continue;
    if (k !== 'maxPendingPerUser' && k !== 'maxRunningPerUser') {
      throw new AppError('VALIDATION_FAILED', `Unknown limit ${where}.${k}.`);
    }
    if (!Number.isInteger(v) || v < 0) {
      throw new AppError('VALIDATION_FAILED', `${where}.${k} must be a whole number of at least 0.`);
    }
  }
}
