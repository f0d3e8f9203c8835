/**
 * Layout of a backup target, and the manifest that makes a snapshot.
 *
 *     objects/<sha256>               a file's bytes, content-addressed: shared by every snapshot
 *                                    that has this content, uploaded once
 *     objects/<sha256>.state.gz      a state snapshot (SQLite file or JSON-lines export), gzip
 *     snapshots/<id>/manifest.json   the snapshot: what to restore and every checksum
 *
 * The manifest is written last, after every object it names is in place: a snapshot exists
 * exactly when its manifest does, so an interrupted backup is never taken for a good one (its
 * objects are reused by the next backup, or collected by retention).
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { FileStore } from '../files/file-store.js';
import { BackupError, EXIT } from './errors.js';

export const MANIFEST_FORMAT = 'comfy-multi-backup';
export const MANIFEST_VERSION = 1;

const sha = z.string().regex(/^[0-9a-f]{64}$/);
const size = z.number().int().min(0);

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.number().int().min(1),
  id: z.string().regex(/^[0-9]{8}T[0-9]{6}(\.[0-9]{3})?Z-[0-9a-f]{4,}$/),
  created: z.string(),
  tool: z.object({ name: z.string(), version: z.string() }),
  source: z.object({
    host: z.string(),
    store: z.enum(['sqlite', 'redis']),
    files: z.enum(['local', 's3']),
  }),
  state: z.object({
    /** `sqlite`: a copy of the database file; `jsonl`: a `comfy-multi store export`. */
    kind: z.enum(['sqlite', 'jsonl']),
    object: z.string().min(1),
    /** Of the uncompressed bytes. */
    sha256: sha,
    size,
    encoding: z.literal('gzip'),
    storedSize: size,
  }),
  /** Users' files (FileStore keys), all areas but `temp`. */
  files: z.array(z.object({ key: z.string().min(1), size, sha256: sha, mtimeMs: z.number() })),
  /** Small files at the top of DATA_DIR (credentials.txt, participants.txt, htpasswd, ...). */
  extras: z.array(z.object({ name: z.string().regex(/^[^/\\]+$/), size, sha256: sha })),
  totals: z.object({ files: size, bytes: size }),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestFile = Manifest['files'][number];

export const objectKey = (sha256: string) => `objects/${sha256}`;
export const stateObjectKey = (sha256: string) => `objects/${sha256}.state.gz`;
export const manifestKey = (id: string) => `snapshots/${id}/manifest.json`;

/** `20250314T093000.123Z-1a2b`: sorts by time (to the millisecond); the random tail keeps ids unique. */
export function newSnapshotId(now: Date): string {
  return `${now.toISOString().replace(/[-:]/g, '')}-${randomBytes(2).toString('hex')}`;
}

/** Ids of the complete snapshots (those with a manifest), oldest first. */
export async function listSnapshots(files: FileStore): Promise<string[]> {
  const ids: string[] = [];
  for (const f of await files.list('snapshots')) {
    const m = /^snapshots\/([^/]+)\/manifest\.json$/.exec(f.key);
    if (m) ids.push(m[1]!);
  }
  return ids.sort();
}

async function readAll(files: FileStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await files.read(key)) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

export async function readManifest(files: FileStore, id: string): Promise<Manifest> {
  let text: string;
  try {
    text = (await readAll(files, manifestKey(id))).toString('utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'FILE_NOT_FOUND') {
      throw new BackupError(`there is no snapshot ${id}`, EXIT.VERIFY, { cause: err });
    }
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new BackupError(`the manifest of snapshot ${id} is not valid JSON`, EXIT.VERIFY, { cause: err });
  }
  const r = manifestSchema.safeParse(parsed);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new BackupError(
      `the manifest of snapshot ${id} is damaged (${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''})`,
      EXIT.VERIFY,
    );
  }
  if (r.data.version > MANIFEST_VERSION) {
    throw new BackupError(
      `snapshot ${id} was written by a newer comfy-multi (manifest version ${r.data.version}); upgrade to restore it`,
      EXIT.VERIFY,
    );
  }
  if (r.data.id !== id)
    throw new BackupError(`the manifest at snapshot ${id} names snapshot ${r.data.id}`, EXIT.VERIFY);
  return r.data;
}

/** Every object key a manifest refers to. */
export function referencedObjects(m: Manifest): Set<string> {
  const keys = new Set<string>([m.state.object]);
  for (const f of m.files) keys.add(objectKey(f.sha256));
  for (const e of m.extras) keys.add(objectKey(e.sha256));
  return keys;
}
