/** What `backup`, `restore` and `store` share: progress on stderr, errors as exit codes. */
import { AppError } from '../../errors.js';
import { BackupError, EXIT } from '../../backup/errors.js';
import { createProgress, type Progress } from '../../backup/progress.js';

export function cliProgress(label: string): Progress {
  return createProgress({
    label,
    write: (s) => process.stderr.write(s),
    tty: !!process.stderr.isTTY && process.env.TERM !== 'dumb',
    columns: process.stderr.columns,
  });
}

/** Prints `error: …` (never a stack trace) and returns the exit code for it. */
export function reportError(err: unknown): number {
  if (err instanceof BackupError) {
    process.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  if (err instanceof AppError) {
    process.stderr.write(`error: ${err.message}\n`);
    return err.code === 'VALIDATION_FAILED' ? EXIT.VERIFY : EXIT.FAILED;
  }
  const e = err as NodeJS.ErrnoException;
  process.stderr.write(`error: ${e?.message ?? String(err)}\n`);
  if (process.env.COMFY_MULTI_DEBUG) process.stderr.write(`${e?.stack ?? ''}\n`);
  return EXIT.FAILED;
}

/** Runs a command body, then exits with its code (S3 clients' keep-alive sockets must not hold the process). */
export async function runCommand(body: () => Promise<number | void>): Promise<never> {
  let code: number;
  try {
    code = (await body()) ?? EXIT.OK;
  } catch (err) {
    code = reportError(err);
  }
  process.exit(code);
}

export function parseKeep(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) {
    process.stderr.write('error: --keep must be a whole number (0 keeps every snapshot)\n');
    process.exit(EXIT.USAGE);
  }
  return n;
}
