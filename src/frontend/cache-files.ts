/**
 * The file operations of the frontend cache (frontend-cache.ts) on its folder: uploads checked
 * against their size and sha256 into blobs/, a version's folder linked together from those blobs,
 * and whole-file writes through tmp/. Separate because they hold none of the cache's state (its
 * versions, pending offers and current choice); each takes the cache's root folder.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import type { FrontendFile } from '../worker/protocol.js';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

export function blobPath(root: string, sha256: string): string {
  return join(root, 'blobs', sha256);
}

/** Streams `body` into blobs/ if its size and sha256 are the expected ones. */
export async function storeBlob(
  root: string,
  sha256: string,
  expected: number,
  body: Readable,
): Promise<{ sha256: string; size: number }> {
  const final = blobPath(root, sha256);
  const tmp = join(root, 'tmp', `${sha256}.${randomBytes(6).toString('hex')}`);
  const hash = createHash('sha256');
  let size = 0;
  // Past the offered size the rest is read and dropped rather than failing the pipeline: failing it
  // would destroy the request stream, and the worker would get a reset connection instead of the
  // HASH_MISMATCH answer (the body itself is bounded by the route's body limit).
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > expected) return cb();
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(body, meter, createWriteStream(tmp, { mode: FILE_MODE }));
    if (size > expected) throw new AppError('HASH_MISMATCH', 'The content is longer than offered.');
    const got = hash.digest('hex');
    if (got !== sha256 || size !== expected) {
      throw new AppError('HASH_MISMATCH', `Got ${size} bytes with sha256 ${got}; the path names ${sha256}.`);
    }
    await rename(tmp, final);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { sha256, size };
}

export async function missingBlobs(root: string, shas: Iterable<string>): Promise<string[]> {
  const missing: string[] = [];
  for (const sha of new Set(shas)) if (!(await isFile(blobPath(root, sha)))) missing.push(sha);
  return missing;
}

/** Links every file of the version into a fresh folder, then renames it into place as `final`. */
export async function assembleVersion(
  root: string,
  v: { id: string; files: readonly Pick<FrontendFile, 'path' | 'sha256'>[] },
  final: string,
): Promise<void> {
  const staging = join(root, 'tmp', `v-${v.id}-${randomBytes(6).toString('hex')}`);
  try {
    for (const f of v.files) {
      const dest = join(staging, ...f.path.split('/'));
      await mkdir(dirname(dest), { recursive: true, mode: DIR_MODE });
      // A hard link costs no space; copy where links are not possible (another file system).
      await link(blobPath(root, f.sha256), dest).catch(() => copyFile(blobPath(root, f.sha256), dest));
    }
    await rm(final, { recursive: true, force: true });
    await rename(staging, final);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

export async function writeAtomic(path: string, text: string, root: string): Promise<void> {
  const tmp = join(root, 'tmp', `w-${randomBytes(6).toString('hex')}`);
  await writeFile(tmp, text, { mode: FILE_MODE });
  await rename(tmp, path);
}

export async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() ?? false;
}

export async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() ?? false;
}
