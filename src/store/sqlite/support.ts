/** File creation, argument checks and error mapping for the SQLite store. */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { AppError } from '../../errors.js';
import { PRIORITIES, type Priority } from '../types.js';

/** A row count for LIMIT: Infinity means all, NaN and negatives none. */
export function clampCount(n: number): number {
  if (Number.isNaN(n) || n <= 0) return 0;
  return Number.isFinite(n) ? Math.trunc(n) : Number.MAX_SAFE_INTEGER;
}

export function checkPriority(p: Priority): Priority {
  if (!PRIORITIES.includes(p)) throw new AppError('VALIDATION_FAILED', `Unknown priority: ${String(p)}.`);
  return p;
}

/** Creates the file with mode 0600 (and its directory) before SQLite does; false for in-memory. */
export function createFile(path: string): boolean {
  if (path === ':memory:' || path === '' || path.startsWith('file:')) return false;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  return true;
}

/** SQLite gives -wal/-shm the main file's mode; this only tightens ones left by older runs. */
export function restrictSidecars(path: string): void {
  for (const f of [`${path}-wal`, `${path}-shm`]) {
    try {
      if (existsSync(f)) chmodSync(f, 0o600);
    } catch {
      // Not ours to change (another user's file): leave it.
    }
  }
}

function sqliteCode(e: unknown): string | undefined {
  return e instanceof Database.SqliteError ? e.code : undefined;
}

export function isUniqueViolation(e: unknown): boolean {
  const code = sqliteCode(e);
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export function mapErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const code = sqliteCode(e);
    if (code === 'SQLITE_BUSY' || code?.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
      throw new AppError('STORE_UNAVAILABLE', 'The database is busy; try again.', {
        retryAfter: 1,
        cause: e,
      });
    }
    throw e;
  }
}
