import { userInfo } from 'node:os';

/**
 * A reason the server cannot start, phrased as one sentence for the operator: what is wrong and
 * what to do. `comfy-multi serve` prints it (never a stack trace) and exits with `exitCode`.
 */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StartupError';
  }
}

/** The name of the user this process runs as, for "cannot be read by user X" messages. */
export function processUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** The `code` of a Node.js system error (ENOENT, EACCES, EADDRINUSE, ...), if any. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * One sentence for any error that ends startup: a {@link StartupError}'s own message, a full disk
 * or a refused file for system errors the checks did not foresee, else the error's first line.
 */
export function describeStartupError(err: unknown): { message: string; exitCode: number } {
  if (err instanceof StartupError) return { message: err.message, exitCode: err.exitCode };
  const code = errorCode(err);
  const path = (err as { path?: unknown } | null)?.path;
  const where = typeof path === 'string' ? ` (${path})` : '';
  if (code === 'ENOSPC' || code === 'SQLITE_FULL') {
    return { message: `The disk is full${where}: free some space and start again.`, exitCode: 1 };
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return {
      message: `Permission denied${where} for user ${processUser()}: give that user access or run as the owner.`,
      exitCode: 1,
    };
  }
  if (code === 'SQLITE_CANTOPEN') {
    return {
      message: `The database in DATA_DIR cannot be opened by user ${processUser()}: check the folder's owner and permissions.`,
      exitCode: 1,
    };
  }
  const text = err instanceof Error ? err.message : String(err);
  const first = text.split('\n')[0]!.trim() || 'unknown error';
  return { message: `The server could not start: ${first}`, exitCode: 1 };
}
