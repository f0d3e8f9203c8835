/**
 * One backup run: a consistent snapshot of the state store, every user's files (all areas but
 * `temp`) and DATA_DIR's small top-level files, sent incrementally to a target, then the
 * manifest, then retention.
 *
 * Incremental by content: a file's bytes live at `objects/<sha256>`, so unchanged files (and
 * identical files anywhere) are sent once. Hashing every file every time would read everything,
 * so a file whose size and modification time match the previous snapshot's entry reuses that
 * entry's hash (`rehash` turns this off). Everything that is sent is verified while it streams:
 * a file that changed between hashing and sending is hashed and sent again.
 *
 * Memory stays flat: files stream from the FileStore to the target (small files four at a time,
 * large ones one at a time with a few multipart parts in flight); the state snapshot goes through
 * a temporary file that is always removed.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { FileStore } from '../files/file-store.js';
import { encodeStateRecord } from '../store/state-records.js';
import type { JobStore, StateRecord } from '../store/types.js';
import { BackupError, EXIT, targetError } from './errors.js';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  listSnapshots,
  manifestKey,
  newSnapshotId,
  objectKey,
  readManifest,
  stateObjectKey,
  type Manifest,
  type ManifestFile,
} from './manifest.js';
import { formatBytes, silentProgress, type Progress } from './progress.js';
import { applyRetention, type RetentionResult } from './retention.js';
import { hashStream, hashingTap, runPool, verifying, type Digest } from './streams.js';
import type { BackupTarget } from './target.js';

/** Files at least this large go one at a time (each already uploads several parts in parallel). */
const LARGE = 8 * 1024 * 1024;
/** DATA_DIR files larger than this are not "small top-level files". */
const MAX_EXTRA = 16 * 1024 * 1024;
/** What lives in DATA_DIR but is not an extra: the database (in the state) and the files folder. */
const NOT_EXTRAS = /^(comfy-multi\.db(-wal|-shm|-journal)?|files)$/;

export interface BackupOptions {
  store: JobStore;
  files: FileStore;
  target: BackupTarget;
  /** DATA_DIR, whose small top-level files (credentials.txt, participants.txt, htpasswd) are kept too. */
  dataDir?: string | undefined;
  /** Snapshots to keep after this one is written (older ones are deleted); 0 or undefined keeps all. */
  keep?: number | undefined;
  /** Hash every file instead of trusting unchanged size + modification time. */
  rehash?: boolean | undefined;
  progress?: Progress | undefined;
  signal?: AbortSignal | undefined;
  /** Small files sent at once. Default 4. */
  concurrency?: number | undefined;
  toolVersion: string;
  now?: () => Date;
}

export interface BackupResult {
  id: string;
  created: string;
  target: string;
  files: number;
  bytes: number;
  /** Files whose content had to be sent (the rest were already in the target). */
  uploadedFiles: number;
  uploadedBytes: number;
  /** Files read and hashed in this run (the rest matched the previous snapshot's size and time). */
  hashedFiles: number;
  state: { kind: 'sqlite' | 'jsonl'; size: number; storedSize: number; uploaded: boolean };
  extras: number;
  retention: RetentionResult | null;
  durationMs: number;
}

type Snapshotable = JobStore & { snapshotTo(dest: string): Promise<void> };

function canSnapshot(store: JobStore): store is Snapshotable {
  return typeof (store as Partial<Snapshotable>).snapshotTo === 'function';
}

async function* jsonLines(records: AsyncIterable<StateRecord>): AsyncGenerator<string> {
  for await (const r of records) yield encodeStateRecord(r);
}

/** The state as a file in `dir`, gzip-compressed; sha256 and size of the uncompressed bytes. */
async function snapshotState(
  store: JobStore,
  dir: string,
): Promise<Digest & { kind: 'sqlite' | 'jsonl'; gzPath: string; storedSize: number }> {
  const raw = path.join(dir, 'state.raw');
  let kind: 'sqlite' | 'jsonl';
  if (canSnapshot(store)) {
    // SQLite's online backup: a consistent copy while the server keeps writing.
    await store.snapshotTo(raw);
    kind = 'sqlite';
  } else {
    await pipeline(Readable.from(jsonLines(store.exportState())), createWriteStream(raw, { mode: 0o600 }));
    kind = 'jsonl';
  }
  const gzPath = path.join(dir, 'state.gz');
  const tap = hashingTap();
  await pipeline(
    createReadStream(raw),
    tap,
    createGzip({ level: 6 }),
    createWriteStream(gzPath, { mode: 0o600 }),
  );
  await rm(raw, { force: true });
  return { kind, ...tap.digest(), gzPath, storedSize: (await stat(gzPath)).size };
}

/** `<user>/temp/...`: ComfyUI's temporary previews, never backed up. */
function isTemp(key: string): boolean {
  return key.split('/')[1] === 'temp';
}

async function listExtras(dataDir: string | undefined): Promise<{ name: string; size: number }[]> {
  if (!dataDir) return [];
  const out: { name: string; size: number }[] = [];
  for (const e of await readdir(dataDir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isFile() || e.name.startsWith('.') || NOT_EXTRAS.test(e.name) || e.name.endsWith('.partial'))
      continue;
    const s = await stat(path.join(dataDir, e.name)).catch(() => null);
    if (s && s.size <= MAX_EXTRA) out.push({ name: e.name, size: s.size });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

export async function runBackup(o: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  const created = (o.now ?? (() => new Date()))();
  const id = newSnapshotId(created);
  const progress = o.progress ?? silentProgress;
  const target = o.target;
  const out = target.files;
  const where = target.description;
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(o.signal?.reason ?? new BackupError('the backup was stopped'));
  o.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (o.signal?.aborted) onOuterAbort();
  // Errors from the target are about the target (credentials, bucket, network) unless they are ours.
  const remote = async <T>(what: string, p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      if (err instanceof BackupError || target.kind === 'local') throw err;
      throw targetError(`${what} (${where})`, err);
    }
  };

  await target.check('backup');
  progress.phase('scanning');
  const existing = new Map<string, number>();
  for (const f of await remote('listing objects', out.list('objects'))) existing.set(f.key, f.size);
  const previous = new Map<string, ManifestFile>();
  const ids = await remote('listing snapshots', listSnapshots(out));
  if (!o.rehash && ids.length > 0) {
    try {
      for (const f of (await readManifest(out, ids[ids.length - 1]!)).files) previous.set(f.key, f);
    } catch {
      // An unreadable previous manifest only costs hashing everything again.
    }
  }

  const tmp = await mkdtemp(path.join(tmpdir(), 'comfy-multi-backup-'));
  let uploadedFiles = 0;
  let uploadedBytes = 0;
  let hashedFiles = 0;
  const inflight = new Map<string, Promise<void>>();

  /** Sends `open()`'s bytes to `key` unless the target has that object already. */
  const send = (key: string, digest: Digest, what: string, open: () => Promise<Readable>): Promise<void> => {
    if (existing.get(key) === digest.size) return Promise.resolve();
    const running = inflight.get(key);
    if (running) return running;
    const p = (async () => {
      if (digest.size >= LARGE) progress.note(`uploading ${what} (${formatBytes(digest.size)})`);
      progress.addTotal(digest.size);
      const source = await open();
      const checked = verifying(digest, `${what} changed while it was being backed up`, (n) =>
        progress.advance(n),
      );
      source.on('error', (err) => checked.destroy(err));
      const onAbort = () => source.destroy(abort.signal.reason as Error);
      abort.signal.addEventListener('abort', onAbort, { once: true });
      try {
        await remote(`uploading ${what}`, out.write(key, source.pipe(checked)));
      } finally {
        abort.signal.removeEventListener('abort', onAbort);
      }
      existing.set(key, digest.size);
      uploadedFiles++;
      uploadedBytes += digest.size;
    })().finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  };

  try {
    // 1. State: one consistent snapshot.
    progress.phase('state');
    const state = await snapshotState(o.store, tmp);
    const stateKey = stateObjectKey(state.sha256);
    const stateUploaded = existing.get(stateKey) !== state.storedSize;
    if (stateUploaded) {
      progress.addTotal(state.storedSize);
      const body = createReadStream(state.gzPath);
      body.on('data', (c: Buffer | string) => progress.advance(c.length));
      await remote('uploading the state snapshot', out.write(stateKey, body));
      existing.set(stateKey, state.storedSize);
    }

    // 2. Users' files.
    progress.phase('files');
    const all = (await o.files.list('')).filter((f) => !isTemp(f.key));
    progress.addTotal(
      all.reduce((n, f) => n + f.size, 0),
      all.length,
    );
    const entries: (ManifestFile | null)[] = new Array<ManifestFile | null>(all.length).fill(null);
    const backUpFile = async (i: number): Promise<void> => {
      const f = all[i]!;
      for (let attempt = 1; ; attempt++) {
        const prev = previous.get(f.key);
        let digest: Digest;
        // Times within a millisecond: restored times go through a float of seconds (utimes).
        if (attempt === 1 && prev && prev.size === f.size && Math.abs(prev.mtimeMs - f.mtimeMs) < 1) {
          digest = { sha256: prev.sha256, size: prev.size };
          progress.advance(f.size);
        } else {
          try {
            digest = await hashStream(await o.files.read(f.key), (n) => progress.advance(n));
          } catch (err) {
            if ((err as { code?: string }).code === 'FILE_NOT_FOUND') {
              progress.note(`skipped ${f.key}: deleted during the backup`);
              return;
            }
            throw err;
          }
          hashedFiles++;
        }
        try {
          await send(objectKey(digest.sha256), digest, f.key, () => o.files.read(f.key));
        } catch (err) {
          // Changed between hashing and sending (a participant saved again): hash it again.
          if (err instanceof BackupError && err.exitCode === EXIT.VERIFY && attempt < 3) continue;
          throw err;
        }
        entries[i] = { key: f.key, size: digest.size, sha256: digest.sha256, mtimeMs: f.mtimeMs };
        progress.fileDone();
        return;
      }
    };
    const small: number[] = [];
    const large: number[] = [];
    all.forEach((f, i) => (f.size >= LARGE ? large : small).push(i));
    const guarded = (fn: (i: number) => Promise<void>) => async (i: number) => {
      try {
        await fn(i);
      } catch (err) {
        abort.abort(err);
        throw err;
      }
    };
    await Promise.all([
      runPool(small, o.concurrency ?? 4, guarded(backUpFile), abort.signal),
      runPool(large, 1, guarded(backUpFile), abort.signal),
    ]);
    const files = entries.filter((e): e is ManifestFile => e !== null);

    // 3. DATA_DIR's small files.
    const extras: Manifest['extras'] = [];
    for (const e of await listExtras(o.dataDir)) {
      const file = path.join(o.dataDir!, e.name);
      const digest = await hashStream(createReadStream(file));
      await send(objectKey(digest.sha256), digest, e.name, async () => createReadStream(file));
      extras.push({ name: e.name, size: digest.size, sha256: digest.sha256 });
    }

    // 4. Everything the manifest names must be in place (another run's retention could have
    // removed an object this run found at the start).
    const present = new Map<string, number>();
    for (const f of await remote('listing objects', out.list('objects'))) present.set(f.key, f.size);
    if (present.get(stateKey) !== state.storedSize) {
      await remote('uploading the state snapshot', out.write(stateKey, createReadStream(state.gzPath)));
    }
    for (const f of files) {
      const key = objectKey(f.sha256);
      if (present.get(key) === f.size) continue;
      existing.delete(key);
      await send(key, f, f.key, () => o.files.read(f.key));
    }

    // 5. The manifest, last: from now on the snapshot exists.
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      id,
      created: created.toISOString(),
      tool: { name: 'comfy-multi', version: o.toolVersion },
      source: { host: hostname(), store: o.store.backend, files: o.files.backend },
      state: {
        kind: state.kind,
        object: stateKey,
        sha256: state.sha256,
        size: state.size,
        encoding: 'gzip',
        storedSize: state.storedSize,
      },
      files,
      extras,
      totals: { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0) },
    };
    if (abort.signal.aborted) throw abort.signal.reason;
    await remote(
      'writing the manifest',
      out.write(manifestKey(id), Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`)),
    );

    // 6. Retention.
    let retention: RetentionResult | null = null;
    if (o.keep && o.keep > 0) {
      progress.phase('retention');
      retention = await remote('applying retention', applyRetention(target, o.keep, started));
    }
    progress.finish();
    return {
      id,
      created: manifest.created,
      target: where,
      files: files.length,
      bytes: manifest.totals.bytes,
      uploadedFiles,
      uploadedBytes,
      hashedFiles,
      state: { kind: state.kind, size: state.size, storedSize: state.storedSize, uploaded: stateUploaded },
      extras: extras.length,
      retention,
      durationMs: Date.now() - started,
    };
  } catch (err) {
    progress.finish();
    throw err;
  } finally {
    o.signal?.removeEventListener('abort', onOuterAbort);
    await rm(tmp, { recursive: true, force: true });
  }
}
