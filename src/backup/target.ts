/**
 * Where backups go: a folder (`--to /mnt/backups/workshop`) or an S3-compatible bucket
 * (`--to s3://bucket/prefix`). Both are used through the `FileStore` interface — atomic writes
 * (a temporary file renamed into place; an S3 object that appears only when its upload
 * completes), streaming reads, listing — plus a preflight `check` that turns unusable targets into
 * one clear error before any work is done.
 *
 * An s3:// target's endpoint, region and path style come from BACKUP_S3_* and default to the
 * S3_* settings of the files; its credentials are BACKUP_S3_ACCESS_KEY_ID/SECRET when set, else
 * the standard AWS variables (the SDK's default chain).
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import { LocalFileStore } from '../files/local-file-store.js';
import { BackupError, EXIT, targetError } from './errors.js';

export type TargetSpec = { kind: 's3'; bucket: string; prefix: string } | { kind: 'local'; dir: string };

export interface BackupTarget {
  readonly kind: 'local' | 's3';
  /** `s3://bucket/prefix/` or the folder's absolute path, for messages. */
  readonly description: string;
  /** The target's objects: `snapshots/<id>/manifest.json`, `objects/<sha256>`, ... */
  readonly files: FileStore;
  /**
   * Fails with a BackupError (exit 3) unless the target can be used: for a backup it is created
   * when missing (folders) and must be writable; for a restore it must exist.
   */
  check(mode: 'backup' | 'restore'): Promise<void>;
  /** Leftovers of interrupted writes older than `olderThanMs` (local folders), removed by retention. */
  removeStalePartials(olderThanMs: number): Promise<number>;
  close(): void;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseTargetSpec(spec: string): TargetSpec {
  const s = spec.trim();
  if (s.startsWith('s3://')) {
    const rest = s.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash === -1 ? rest : rest.slice(0, slash);
    const prefix = slash === -1 ? '' : rest.slice(slash + 1);
    if (!BUCKET.test(bucket)) {
      throw new BackupError(
        `"${spec}" is not a valid s3://bucket/prefix target (bad bucket name)`,
        EXIT.USAGE,
      );
    }
    return { kind: 's3', bucket, prefix };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) && !s.startsWith('file://')) {
    throw new BackupError(
      `unsupported target "${spec}": use s3://bucket/prefix or a folder path`,
      EXIT.USAGE,
    );
  }
  const dir = s.startsWith('file://') ? new URL(s).pathname : s;
  if (!dir) throw new BackupError('the backup target is empty', EXIT.USAGE);
  return { kind: 'local', dir: path.resolve(dir) };
}

class LocalTarget implements BackupTarget {
  readonly kind = 'local' as const;
  readonly files: FileStore;

  constructor(readonly dir: string) {
    this.files = new LocalFileStore(dir);
  }

  get description(): string {
    return this.dir;
  }

  async check(mode: 'backup' | 'restore'): Promise<void> {
    try {
      if (mode === 'backup') await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const s = await stat(this.dir);
      if (!s.isDirectory()) throw new Error('it is not a folder');
      await access(this.dir, mode === 'backup' ? fsConstants.W_OK | fsConstants.R_OK : fsConstants.R_OK);
    } catch (err) {
      const why =
        (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (err as Error).message;
      throw new BackupError(`cannot use the backup folder ${this.dir}: ${why}`, EXIT.TARGET, { cause: err });
    }
  }

  async removeStalePartials(olderThanMs: number): Promise<number> {
    let n = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.name.endsWith('.partial')) {
          const s = await stat(full).catch(() => null);
          if (s && s.mtimeMs < olderThanMs) {
            await rm(full, { force: true });
            n++;
          }
        }
      }
    };
    await walk(this.dir);
    return n;
  }

  close(): void {}
}

class S3Target implements BackupTarget {
  readonly kind = 's3' as const;

  constructor(
    readonly files: FileStore & { check(): Promise<void>; close(): void; location: string },
    private readonly where: string,
  ) {}

  get description(): string {
    return this.files.location;
  }

  async check(mode: 'backup' | 'restore'): Promise<void> {
    try {
      await this.files.check();
      if (mode === 'backup') {
        // Listing can be allowed where writing is not (read-only tokens): find out now.
        const probe = `tmp/probe-${randomUUID()}`;
        await this.files.write(probe, Buffer.from('comfy-multi backup write check\n'));
        await this.files.delete(probe);
      }
    } catch (err) {
      throw targetError(`cannot use the backup target ${this.where}`, err);
    }
  }

  async removeStalePartials(): Promise<number> {
    return 0; // unfinished multipart uploads never become objects; see docs/backup.md (lifecycle rule)
  }

  close(): void {
    this.files.close();
  }
}

/** Opens a target from its spec, with the S3 settings of `config` (see the module comment). */
export async function openTarget(spec: string, config: Config): Promise<BackupTarget> {
  const t = parseTargetSpec(spec);
  if (t.kind === 'local') return new LocalTarget(t.dir);
  const { S3FileStore } = await import('../files/s3-file-store.js');
  const files = new S3FileStore({
    bucket: t.bucket,
    prefix: t.prefix,
    endpoint: config.BACKUP_S3_ENDPOINT ?? config.S3_ENDPOINT,
    region: config.BACKUP_S3_REGION ?? config.S3_REGION,
    forcePathStyle: config.BACKUP_S3_FORCE_PATH_STYLE ?? config.S3_FORCE_PATH_STYLE,
    credentials:
      config.BACKUP_S3_ACCESS_KEY_ID && config.BACKUP_S3_SECRET_ACCESS_KEY
        ? { accessKeyId: config.BACKUP_S3_ACCESS_KEY_ID, secretAccessKey: config.BACKUP_S3_SECRET_ACCESS_KEY }
        : undefined,
    partSize: 8 * 1024 * 1024,
    queueSize: 3,
  });
  return new S3Target(files, `s3://${t.bucket}/${t.prefix}`);
}
