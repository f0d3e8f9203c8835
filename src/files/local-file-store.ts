import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import type { FileStat, FileStore, ReadRange, WriteOptions } from './file-store.js';
import { isNameClash, NAME_CLASH_MESSAGE } from './name-clash.js';
import { safeRelativePath } from './safe-path.js';

const ignore = () => {};

/** Where {@link LocalFileStore.writeLate} puts bytes whose name is not decided yet (below the root). */
const INCOMING = '.incoming';

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
      await rm(tmp, { force: true });
      throw isNameClash(err) ? new AppError('CONFLICT', NAME_CLASH_MESSAGE) : err;
    }
    const s = await stat(path);
    return { key, size: s.size, mtimeMs: s.mtimeMs };
  }

  async read(key: string, range?: ReadRange): Promise<Readable> {
    const path = this.pathOf(key);
    const s = await stat(path).catch(() => null);
    if (!s?.isFile()) throw new AppError('FILE_NOT_FOUND');
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
      if (tmp) await rm(tmp, { force: true });
      throw isNameClash(err) ? new AppError('CONFLICT', NAME_CLASH_MESSAGE) : err;
    }
  }

  async stat(key: string): Promise<FileStat | null> {
    const s = await stat(this.pathOf(key)).catch(() => null);
    return s?.isFile() ? { key, size: s.size, mtimeMs: s.mtimeMs } : null;
  }

  async list(prefix: string): Promise<FileStat[]> {
    const base = this.pathOf(prefix);
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
