import { accessSync, constants, mkdirSync, statfsSync } from 'node:fs';
import { resolve } from 'node:path';
import { StartupError, errorCode, processUser } from './startup-error.js';

/** Below this much free space the server refuses to start: SQLite and uploads would fail at once. */
export const MIN_FREE_BYTES = 32 * 1024 * 1024;

/**
 * Before the store opens: DATA_DIR exists (created 0700 if missing), this user may write it, and
 * its disk is not full. Each failure is one sentence naming the folder and the fix.
 */
export function checkDataDir(dataDir: string, minFree = MIN_FREE_BYTES): void {
  const dir = resolve(dataDir);
  const user = processUser();
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = errorCode(err);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new StartupError(
        `DATA_DIR ${dir} cannot be created by user ${user} (${code === 'EROFS' ? 'read-only file system' : 'permission denied'}): create it and make that user its owner.`,
      );
    }
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new StartupError(`DATA_DIR ${dir} is a file, not a folder: point DATA_DIR at a folder.`);
    }
    if (code === 'ENOSPC')
      throw new StartupError(`The disk holding DATA_DIR ${dir} is full: free some space.`);
    throw new StartupError(`DATA_DIR ${dir} cannot be created: ${(err as Error).message}.`);
  }
  try {
    accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch {
    throw new StartupError(
      `DATA_DIR ${dir} is not readable and writable by user ${user}: make that user its owner (chown -R ${user} ${dir}) or run the server as the folder's owner.`,
    );
  }
  let free: number | undefined;
  try {
    const s = statfsSync(dir);
    free = s.bavail * s.bsize;
  } catch {
    // Not every file system reports free space; the store's own errors still say "disk full".
  }
  if (free !== undefined && free < minFree) {
    throw new StartupError(
      `The disk holding DATA_DIR ${dir} is full (${Math.floor(free / 1024 / 1024)} MB free, at least ${Math.round(minFree / 1024 / 1024)} MB needed): free some space and start again.`,
    );
  }
}
