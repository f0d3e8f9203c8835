/**
 * Errors of backup and restore, each with the exit code the CLI ends with, so scripts (and
 * cron) can tell "fix the credentials" from "the backup is damaged".
 */
import { classifyS3Error } from '../files/s3-client.js';

export const EXIT = {
  OK: 0,
  /** Anything else (a bug, a disk error, ...). */
  FAILED: 1,
  /** Bad usage or configuration (options, environment variables). */
  USAGE: 2,
  /** The target cannot be used: unreachable endpoint, refused credentials, missing bucket or folder. */
  TARGET: 3,
  /** No such snapshot, a damaged manifest, a missing object or a checksum that does not match. */
  VERIFY: 4,
  /** Restore refused: the data folder (or the Redis store, or the files bucket) is not empty; see --force. */
  NOT_EMPTY: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class BackupError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.FAILED,
    opts: { cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'BackupError';
  }
}

/** Wraps an error from talking to an S3 target with a sentence about what to fix. */
export function targetError(where: string, err: unknown): BackupError {
  if (err instanceof BackupError) return err;
  const { problem, message } = classifyS3Error(err);
  const hint = {
    credentials:
      "check BACKUP_S3_ACCESS_KEY_ID / BACKUP_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the token's permissions",
    bucket: 'create the bucket first, or fix the bucket name in the target',
    unreachable: 'check BACKUP_S3_ENDPOINT / S3_ENDPOINT and the network',
    other: '',
  }[problem];
  return new BackupError(
    `${where}: ${message}${hint ? ` (${hint})` : ''}`,
    problem === 'other' ? EXIT.FAILED : EXIT.TARGET,
    { cause: err },
  );
}
