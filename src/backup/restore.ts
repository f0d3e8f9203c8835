/**
 * Restore a snapshot onto this machine: the state into the configured store, users' files into
 * the configured file store, DATA_DIR's small files back into DATA_DIR — every byte verified
 * against the manifest's checksums while it streams (a mismatch fails loudly, exit 4).
 *
 * Nothing is half-written locally: everything local is assembled in a staging folder beside
 * DATA_DIR (`<DATA_DIR>.restore-<random>`, same file system) and renamed into place at the very
 * end; on any failure the staging folder is removed and DATA_DIR is as it was. A DATA_DIR that is
 * not empty is refused unless `force`, and even then it is not deleted but moved aside to
 * `<DATA_DIR>.before-restore-<snapshot>`. With FILES=s3 the files are written to the bucket
 * (each object appears only once verified); with STORE=redis the state is imported last, after
 * every file was restored and verified.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import { openFileStore } from '../files/index.js';
import { LocalFileStore } from '../files/local-file-store.js';
import { defaultSettings, openStore } from '../store/index.js';
import { openSqliteStore } from '../store/sqlite/sqlite-store.js';
import { readStateRecords } from '../store/state-records.js';
import type { ImportCounts, JobStore, StateRecord } from '../store/types.js';
import { BackupError, EXIT, targetError } from './errors.js';
import {
  listSnapshots,
  objectKey,
  readManifest,
  referencedObjects,
  type Manifest,
  type ManifestFile,
} from './manifest.js';
import { formatBytes, silentProgress, type Progress } from './progress.js';
import { runPool, verifying } from './streams.js';
import type { BackupTarget } from './target.js';

const LARGE = 8 * 1024 * 1024;
const DB_FILE = 'comfy-multi.db';

export interface RestoreOptions {
  config: Config;
  target: BackupTarget;
  /** Snapshot id; default the newest. */
  snapshot?: string | undefined;
  /** Check the snapshot (manifest, every object present with its size) and say what would happen. */
  dryRun?: boolean | undefined;
  /** Restore over a data folder / store / bucket that is not empty (the old DATA_DIR is moved aside). */
  force?: boolean | undefined;
  progress?: Progress | undefined;
  /** Lines for the operator (what was restored). */
  print?: (line: string) => void;
  concurrency?: number | undefined;
}

export interface RestoreResult {
  snapshot: string;
  created: string;
  dryRun: boolean;
  files: number;
  bytes: number;
  extras: number;
  state: { kind: 'sqlite' | 'jsonl'; into: 'sqlite' | 'redis'; counts: ImportCounts | null };
  /** Where the previous, non-empty DATA_DIR was moved (with force). */
  movedAside: string | null;
  /** What was not empty (refused without force, or replaced with it). */
  notEmpty: string[];
}

async function isNonEmptyDir(dir: string): Promise<boolean> {
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return entries.length > 0;
}

async function storeHasData(store: JobStore): Promise<boolean> {
  for await (const r of store.exportState()) {
    if (r.type === 'header') continue;
    if (r.type === 'counters') {
      if (r.seq + r.front + r.serve > 0) return true;
      continue;
    }
    if (r.type === 'settings' && r.settings === null) continue;
    return true;
  }
  return false;
}

/** What at the destination already holds data. */
async function occupied(config: Config): Promise<string[]> {
  const found: string[] = [];
  if (await isNonEmptyDir(config.DATA_DIR)) found.push(`the data folder ${path.resolve(config.DATA_DIR)}`);
  if (config.STORE === 'redis') {
    const store = await openStore(config);
    try {
      if (await storeHasData(store)) found.push(`the Redis store (prefix ${config.REDIS_PREFIX})`);
    } finally {
      await store.close();
    }
  }
  if (config.FILES === 's3') {
    const files = await openFileStore(config);
    try {
      if ((await files.list('')).length > 0)
        found.push(`the files bucket s3://${config.S3_BUCKET}/${config.S3_PREFIX}`);
    } finally {
      files.close?.();
    }
  }
  return found;
}

export async function runRestore(o: RestoreOptions): Promise<RestoreResult> {
  const print = o.print ?? (() => {});
  const progress = o.progress ?? silentProgress;
  const target = o.target;
  const src = target.files;
  const where = target.description;
  const remote = async <T>(what: string, p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      if (err instanceof BackupError || target.kind === 'local') throw err;
      throw targetError(`${what} (${where})`, err);
    }
  };

  await target.check('restore');
  const ids = await remote('listing snapshots', listSnapshots(src));
  if (ids.length === 0) throw new BackupError(`there are no snapshots in ${where}`, EXIT.VERIFY);
  const id = o.snapshot ?? ids[ids.length - 1]!;
  if (!ids.includes(id)) {
    throw new BackupError(
      `there is no snapshot ${id} in ${where} (newest: ${ids[ids.length - 1]})`,
      EXIT.VERIFY,
    );
  }
  const manifest = await remote('reading the manifest', readManifest(src, id));

  // Every object must be there, with the size the manifest says.
  const present = new Map<string, number>();
  for (const f of await remote('listing objects', src.list('objects'))) present.set(f.key, f.size);
  const missing: string[] = [];
  const sizes = new Map<string, number>([[manifest.state.object, manifest.state.storedSize]]);
  for (const f of [...manifest.files, ...manifest.extras]) sizes.set(objectKey(f.sha256), f.size);
  for (const key of referencedObjects(manifest)) {
    if (present.get(key) !== sizes.get(key)) missing.push(key);
  }
  if (missing.length > 0) {
    throw new BackupError(
      `snapshot ${id} is damaged: ${missing.length} object(s) missing or of the wrong size, e.g. ${missing.slice(0, 3).join(', ')}`,
      EXIT.VERIFY,
    );
  }

  const notEmpty = await occupied(o.config);
  const summary = (counts: ImportCounts | null, movedAside: string | null): RestoreResult => ({
    snapshot: id,
    created: manifest.created,
    dryRun: !!o.dryRun,
    files: manifest.files.length,
    bytes: manifest.totals.bytes,
    extras: manifest.extras.length,
    state: { kind: manifest.state.kind, into: o.config.STORE, counts },
    movedAside,
    notEmpty,
  });
  print(
    `snapshot ${id} (created ${manifest.created} on ${manifest.source.host}, ${manifest.source.store} state, ` +
      `${manifest.files.length} files, ${formatBytes(manifest.totals.bytes)})`,
  );
  if (o.dryRun) {
    print(
      `would restore the ${manifest.state.kind} state (${formatBytes(manifest.state.size)}) into ${o.config.STORE}`,
    );
    print(
      `would restore ${manifest.files.length} files into ${o.config.FILES === 's3' ? `s3://${o.config.S3_BUCKET}/${o.config.S3_PREFIX}` : path.join(path.resolve(o.config.DATA_DIR), 'files')}`,
    );
    for (const [area, n] of countByArea(manifest.files))
      print(`  ${area}: ${n.files} files, ${formatBytes(n.bytes)}`);
    if (manifest.extras.length)
      print(`would restore into DATA_DIR: ${manifest.extras.map((e) => e.name).join(', ')}`);
    print('every object is present with the recorded size');
    if (notEmpty.length) print(`would refuse without --force: not empty: ${notEmpty.join('; ')}`);
    return summary(null, null);
  }
  if (notEmpty.length > 0 && !o.force) {
    throw new BackupError(
      `refusing to restore over data that exists: ${notEmpty.join('; ')}. Restore onto a fresh machine or an empty DATA_DIR, or pass --force (the old DATA_DIR is moved aside, not deleted).`,
      EXIT.NOT_EMPTY,
    );
  }

  const dataDir = path.resolve(o.config.DATA_DIR);
  const staging = `${dataDir}.restore-${randomBytes(4).toString('hex')}`;
  await mkdir(path.dirname(dataDir), { recursive: true });
  await mkdir(staging, { mode: 0o700 });
  let movedAside: string | null = null;
  let remoteFiles: FileStore | null = null;
  try {
    // 1. Files, verified as they stream.
    progress.phase('files');
    progress.addTotal(manifest.totals.bytes, manifest.files.length);
    const dest: FileStore =
      o.config.FILES === 's3'
        ? (remoteFiles = await openFileStore(o.config))
        : new LocalFileStore(path.join(staging, 'files'));
    await mkdir(path.join(staging, 'files'), { recursive: true, mode: 0o700 });
    const restoreFile = async (f: ManifestFile): Promise<void> => {
      const body = await remote(`reading ${objectKey(f.sha256)}`, src.read(objectKey(f.sha256)));
      const checked = verifying(f, `${f.key} (object ${objectKey(f.sha256)})`, (n) => progress.advance(n));
      body.on('error', (err) => checked.destroy(err));
      await dest.write(f.key, body.pipe(checked), { mtimeMs: f.mtimeMs });
      progress.fileDone();
    };
    const abort = new AbortController();
    const guarded = async (f: ManifestFile) => {
      try {
        await restoreFile(f);
      } catch (err) {
        abort.abort(err);
        throw err;
      }
    };
    // Oldest first: where times cannot be set (object storage), the new ones keep the old order.
    const byAge = [...manifest.files].sort((a, b) => a.mtimeMs - b.mtimeMs);
    await Promise.all([
      runPool(
        byAge.filter((f) => f.size < LARGE),
        o.concurrency ?? 4,
        guarded,
        abort.signal,
      ),
      runPool(
        byAge.filter((f) => f.size >= LARGE),
        1,
        guarded,
        abort.signal,
      ),
    ]);
    if (remoteFiles && o.force) {
      // The bucket should hold exactly the snapshot's files.
      const wanted = new Set(manifest.files.map((f) => f.key));
      for (const f of await remoteFiles.list('')) if (!wanted.has(f.key)) await remoteFiles.delete(f.key);
    }

    // 2. DATA_DIR's small files.
    for (const e of manifest.extras) {
      const body = await remote(`reading ${objectKey(e.sha256)}`, src.read(objectKey(e.sha256)));
      const checked = verifying(e, `${e.name} (object ${objectKey(e.sha256)})`);
      body.on('error', (err) => checked.destroy(err));
      await pipeline(body, checked, createWriteStream(path.join(staging, e.name), { mode: 0o600 }));
    }

    // 3. State: downloaded and verified first, then loaded.
    progress.phase('state');
    const download = path.join(staging, '.state-download');
    const body = await remote('reading the state snapshot', src.read(manifest.state.object));
    const checked = verifying(manifest.state, `the state snapshot (object ${manifest.state.object})`, (n) =>
      progress.advance(n),
    );
    progress.addTotal(manifest.state.size);
    await pipeline(body, createGunzip(), checked, createWriteStream(download, { mode: 0o600 }));
    const counts = await loadState(o.config, manifest, download, staging, !!o.force);
    await rm(download, { force: true });

    // 4. Into place.
    progress.finish();
    try {
      await rmdir(dataDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        movedAside = `${dataDir}.before-restore-${id}`;
        await rename(dataDir, movedAside);
      } else if (code !== 'ENOENT') throw err;
    }
    await rename(staging, dataDir);
    print(`restored snapshot ${id} into ${dataDir}`);
    print(
      `  state: ${manifest.state.kind} → ${o.config.STORE}: ${counts.jobs} jobs, ${counts.accounts} accounts, ` +
        `${counts.workerTokens} worker tokens, ${counts.blobs} blobs`,
    );
    print(
      `  files: ${manifest.files.length} (${formatBytes(manifest.totals.bytes)}), every checksum verified`,
    );
    for (const [area, n] of countByArea(manifest.files))
      print(`    ${area}: ${n.files} files, ${formatBytes(n.bytes)}`);
    if (manifest.extras.length) print(`  DATA_DIR files: ${manifest.extras.map((e) => e.name).join(', ')}`);
    if (movedAside) print(`  the previous data folder was moved to ${movedAside}`);
    return summary(counts, movedAside);
  } catch (err) {
    progress.finish();
    await rm(staging, { recursive: true, force: true });
    throw err;
  } finally {
    remoteFiles?.close?.();
  }
}

function countByArea(files: Manifest['files']): Map<string, { files: number; bytes: number }> {
  const m = new Map<string, { files: number; bytes: number }>();
  for (const f of files) {
    const area = f.key.split('/')[1] ?? '?';
    const e = m.get(area) ?? { files: 0, bytes: 0 };
    e.files++;
    e.bytes += f.size;
    m.set(area, e);
  }
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function* fromSqliteFile(file: string, config: Config): AsyncGenerator<StateRecord> {
  const store = await openSqliteStore({ path: file, defaults: defaultSettings(config) });
  try {
    yield* store.exportState();
  } finally {
    await store.close();
  }
}

/** Loads the verified state download into the configured store; the counts of what it holds. */
async function loadState(
  config: Config,
  manifest: Manifest,
  download: string,
  staging: string,
  force: boolean,
): Promise<ImportCounts> {
  const records = (): AsyncIterable<StateRecord> =>
    manifest.state.kind === 'sqlite'
      ? fromSqliteFile(download, config)
      : readStateRecords(createReadStream(download));
  if (config.STORE === 'sqlite') {
    const dbPath = path.join(staging, DB_FILE);
    if (manifest.state.kind === 'sqlite') {
      await rename(download, dbPath);
      // Opening migrates an older schema; counting checks the file is a usable store.
      const store = await openSqliteStore({ path: dbPath, defaults: defaultSettings(config) });
      try {
        const problems = store.checkConsistency();
        if (problems.length) {
          throw new BackupError(
            `the restored database is inconsistent: ${problems.slice(0, 3).join('; ')}`,
            EXIT.VERIFY,
          );
        }
        return await countRecords(store.exportState());
      } finally {
        await store.close();
      }
    }
    const store = await openSqliteStore({ path: dbPath, defaults: defaultSettings(config) });
    try {
      return await store.importState(records());
    } finally {
      await store.close();
    }
  }
  const store = await openStore(config);
  try {
    return await store.importState(records(), { replace: force });
  } finally {
    await store.close();
  }
}

async function countRecords(records: AsyncIterable<StateRecord>): Promise<ImportCounts> {
  const c: ImportCounts = { settings: 0, accounts: 0, workerTokens: 0, blobs: 0, users: 0, jobs: 0 };
  for await (const r of records) {
    if (r.type === 'settings' && r.settings !== null) c.settings++;
    else if (r.type === 'account') c.accounts++;
    else if (r.type === 'worker_token') c.workerTokens++;
    else if (r.type === 'blob') c.blobs++;
    else if (r.type === 'user') c.users++;
    else if (r.type === 'job') c.jobs++;
  }
  return c;
}
