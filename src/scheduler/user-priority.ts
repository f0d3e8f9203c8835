/**
 * A participant's own priority level, set by an instructor ("raise this participant"): it replaces
 * the default `normal` on every job of theirs, those waiting now and those they queue later. Jobs
 * given another level explicitly (an instructor's own jobs, a job raised on its own) keep it.
 * Stored as one blob, so it survives restarts, is shared by every process on a Redis store and
 * travels with state exports.
 */
import { z } from 'zod';
import type { BlobStore, Priority } from '../store/types.js';

export const USER_PRIORITY_NS = 'queue';
export const USER_PRIORITY_KEY = 'user-priority';

/** The levels a participant can be given; `normal` is the default (no entry). */
export const USER_LEVELS = ['high', 'low'] as const;
export type UserLevel = (typeof USER_LEVELS)[number];

const stored = z.record(z.string(), z.enum(USER_LEVELS));

/** Every participant's level, by user (those at `normal` are absent). */
export async function userLevels(store: BlobStore): Promise<Record<string, UserLevel>> {
  const raw = await store.getBlob(USER_PRIORITY_NS, USER_PRIORITY_KEY);
  if (!raw) return {};
  try {
    const parsed = stored.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

export async function saveUserLevel(store: BlobStore, user: string, level: UserLevel | null): Promise<void> {
  const all = await userLevels(store);
  if (level === null) delete all[user];
  else all[user] = level;
  await store.putBlob(USER_PRIORITY_NS, USER_PRIORITY_KEY, JSON.stringify(all));
}

/** The priority a job of a user at `level` gets: the level instead of the default `normal`. */
export function effectivePriority(requested: Priority, level: UserLevel | undefined): Priority {
  return requested === 'normal' && level ? level : requested;
}
