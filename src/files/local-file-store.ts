import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { mkdir, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import type { FileStat, FileStore, ReadRange, WriteOptions } from './file-store.js';
import { isNameClash, NAME_CLASH_MESSAGE } from './name-clash.js';
import { safeRelativePath } from './safe-path.js';

const ignore = () => {};

/**
 * Removes a scratch file after a failed write. `force` only forgives a missing file: where a folder
 * on the way is a file (ENOTDIR) the removal fails too, and must not hide the write's own error
 * (a name clash, answered 409).
 */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // Nothing was written there.
  }
}

/** Where {@link LocalFileStore.writeLate} puts bytes whose name is not decided yet (below the root). */
const INCOMING = '.incoming';

/**
 * Files up to this size are read, and outputs up to it written, with synchronous calls. An image
 * on a local disk takes microseconds that way; through the thread pool each of the four or five
 * calls of a read or write cost a turn of an event loop that is busy relaying ComfyUI's events
 * (a job's output was stored 1.9 ms after its upload began, and `/view` answered 2.4 ms after
 * that, traced against a real ComfyUI). Larger files (videos) stream as before.
 */
const SMALL_FILE = 1024 * 1024;

/** Files under one folder; directories 0700, files 0600 (least privilege). */
export class LocalFileStore implements FileStore {
  readonly backend = 'local' as const;

  constructor(private readonly root: string) {}

  private incoming: Promise<string> | null = null;

  private pathOf(key: string): string {
    // Keys are built by userFileKey; re-checking here means no caller can slip past it.
    return join(this.root, safeRelativePath(key));
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  async write(key: string, body: Readable | Buffer, opts: WriteOptions = {}): Promise<FileStat> {
    const path = this.pathOf(key);
    // A stream body may fail (its client went away) while the folder is still being made, before
    // pipeline() listens: without a listener from the start that error would crash the process.
    // pipeline() still sees it (the stream is left errored) and rejects.
    if (!Buffer.isBuffer(body)) body.on('error', ignore);
    // Write beside, then rename: readers never see a half-written file. The scratch name is short
    // and fixed-length, so a name that fits the file system's 255-byte limit also fits here.
    const tmp = join(dirname(path), `.${randomUUID()}.partial`);
    if (Buffer.isBuffer(body) && body.length <= SMALL_FILE) {
      // In hand and small (an image): synchronous calls, as for reads (see SMALL_FILE).
      try {
        try {
          writeFileSync(tmp, body, { mode: 0o600 });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
          writeFileSync(tmp, body, { mode: 0o600 });
        }
        if (opts.mtimeMs !== undefined) utimesSync(tmp, new Date(), new Date(opts.mtimeMs));
        const s = statSync(tmp);
        renameSync(tmp, path);
        return { key, size: s.size, mtimeMs: s.mtimeMs };
      } catch (err) {
        removeQuietly(tmp);
        throw isNameClash(err) ? new AppError('CONFLICT', NAME_CLASH_MESSAGE) : err;
      }
    }
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await pipeline(
        Buffer.isBuffer(body) ? Readable.from([body]) : body,
        createWriteStream(tmp, { mode: 0o600 }),
      );
      if (opts.mtimeMs !== undefined) await utimes(tmp, new Date(), new Date(opts.mtimeMs));
      await rename(tmp, path);
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy();
      removeQuietly(tmp);
      throw isNameClash(err) ? new AppError('CONFLICT', NAME_CLASH_MESSAGE) : err;
    }
    const s = await stat(path);
    return { key, size: s.size, mtimeMs: s.mtimeMs };
  }

  async read(key: string, range?: ReadRange): Promise<Readable> {
    const path = this.pathOf(key);
    const s = statSync(path, { throwIfNoEntry: false });
    if (!s?.isFile()) throw new AppError('FILE_NOT_FOUND');
    if (!range && s.size <= SMALL_FILE) {
      try {
        return Readable.from([readFileSync(path)]);
      } catch {
        throw new AppError('FILE_NOT_FOUND'); // removed since its stat
      }
    }
    if (!range) return createReadStream(path);
    // createReadStream seeks to `start` and stops after `end` (inclusive), as HTTP ranges count.
    if (range.start >= s.size || (range.end !== undefined && range.end < range.start))
      return Readable.from([]);
    return createReadStream(path, { start: range.start, end: range.end ?? s.size - 1 });
  }

  /**
   * As {@link write}, for a name that is decided while the bytes arrive (a job's output, named by
   * the store as ComfyUI would): they go to a scratch file under the root at once and are renamed
   * into place when `key` resolves, so the naming and the writing overlap. `.partial` until then,
   * like every unfinished write, so no listing ever shows it; removed if anything fails.
   */
  async writeLate(key: Promise<string>, body: Readable): Promise<FileStat> {
    body.on('error', ignore);
    key.catch(ignore);
    let tmp: string | null = null;
    try {
      this.incoming ??= mkdir(join(this.root, INCOMING), { recursive: true, mode: 0o700 }).then(
        () => join(this.root, INCOMING),
        (err: unknown) => {
          this.incoming = null;
          throw err;
        },
      );
      tmp = join(await this.incoming, `${randomUUID()}.partial`);
      const small = await smallBody(body);
      if (small) {
        // An image: written, then renamed into place, with synchronous calls (see SMALL_FILE).
        writeFileSync(tmp, small.bytes, { mode: 0o600 });
        const k = await key;
        const path = this.pathOf(k);
        const s = statSync(tmp);
        try {
          renameSync(tmp, path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
          renameSync(tmp, path);
        }
        return { key: k, size: s.size, mtimeMs: s.mtimeMs };
      }
      await pipeline(body, createWriteStream(tmp, { mode: 0o600 }));
      // Renaming keeps size and mtime: read them while the name may still be on its way.
      const [s, k] = await Promise.all([stat(tmp), key]);
      const path = this.pathOf(k);
      try {
        await rename(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        // The folder is new (or the scratch folder was removed under us: then this fails again).
        await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        await rename(tmp, path);
      }
      return { key: k, size: s.size, mtimeMs: s.mtimeMs };
    } catch (err) {
      body.destroy();
      if (tmp) rmSync(tmp, { force: true });
      throw isNameClash(err) ? new AppError('CONFLICT', NAME_CLASH_MESSAGE) : err;
    }
  }

  async stat(key: string): Promise<FileStat | null> {
    // Synchronous: one call on a local disk, on every `/view` (see SMALL_FILE).
    const s = statSync(this.pathOf(key), { throwIfNoEntry: false });
    return s?.isFile() ? { key, size: s.size, mtimeMs: s.mtimeMs } : null;
  }

  async list(prefix: string): Promise<FileStat[]> {
    const base = this.pathOf(prefix);
    // A folder that is not there (a job's own output folder, usually: counted names never use it)
    // costs one synchronous stat, not a failing readdir on the thread pool and its error object.
    if (!statSync(base, { throwIfNoEntry: false })?.isDirectory()) return [];
    const out: FileStat[] = [];
    const walk = async (dir: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && !e.name.endsWith('.partial')) {
          const s = await stat(full);
          out.push({ key: relative(this.root, full).split(sep).join('/'), size: s.size, mtimeMs: s.mtimeMs });
        }
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async fileNames(folder: string): Promise<string[]> {
    const entries = await readdir(this.pathOf(folder), { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isFile() && !e.name.endsWith('.partial')).map((e) => e.name);
  }

  async delete(key: string): Promise<boolean> {
    return unlink(this.pathOf(key)).then(
      () => true,
      () => false,
    );
  }

  async move(from: string, to: string): Promise<void> {
    const src = this.pathOf(from);
    if (!(await this.stat(from))) throw new AppError('FILE_NOT_FOUND');
    const dest = this.pathOf(to);
    try {
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      await rename(src, dest);
    } catch (err) {
      throw isNameClash(err) ? new AppError('CONFLICT', NAME_CLASH_MESSAGE) : err;
    }
  }
}

/**
 * The whole body when it ends within {@link SMALL_FILE} bytes; otherwise null, and `body` then
 * yields every byte again from the start (what was read is put back in front of the rest).
 */
async function smallBody(body: Readable): Promise<{ bytes: Buffer } | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const chunk = body.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > SMALL_FILE) {
        for (let i = chunks.length - 1; i >= 0; i--) body.unshift(chunks[i]!);
        return null;
      }
      continue;
    }
    if (body.readableEnded) return { bytes: Buffer.concat(chunks, size) };
    if (body.destroyed) throw body.errored ?? new Error('the upload was cut off');
    // Wait for more, the end, or the stream's failure (which the caller's pipeline then reports).
    const more = await new Promise<'more' | 'end' | Error>((resolve) => {
      const done = (v: 'more' | 'end' | Error) => {
        body.off('readable', onReadable);
        body.off('end', onEnd);
        body.off('error', onError);
        body.off('close', onClose);
        resolve(v);
      };
      const onReadable = () => done('more');
      const onEnd = () => done('end');
      const onError = (err: Error) => done(err);
      const onClose = () => done(body.readableEnded ? 'end' : new Error('the upload was cut off'));
      body.once('readable', onReadable);
      body.once('end', onEnd);
      body.once('error', onError);
      body.once('close', onClose);
    });
    if (more instanceof Error) throw more;
    if (more === 'end' && body.readableLength === 0) return { bytes: Buffer.concat(chunks, size) };
  }
}
