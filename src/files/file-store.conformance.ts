/**
 * The one conformance suite every `FileStore` backend runs unchanged (local folder, S3).
 *
 * A backend's test file calls `runFileStoreConformance('name', open)`; `open()` returns a fresh,
 * empty store and a `cleanup` that removes whatever it wrote. Only the `FileStore` interface is
 * used here.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import type { FileStore } from './file-store.js';
import { assertNoNameClash } from './name-clash.js';
import { userFileKey } from './safe-path.js';

export interface OpenedFileStore {
  store: FileStore;
  cleanup: () => Promise<void>;
}

const MiB = 1024 * 1024;

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

async function sha256OfStream(stream: Readable): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of stream) {
    h.update(c as Uint8Array);
    size += (c as Uint8Array).length;
  }
  return { sha256: h.digest('hex'), size };
}

/** `size` bytes of varied content in 1 MiB chunks, generated lazily, and the sha256 it will have. */
function generated(
  size: number,
  seed = 1,
): { stream: () => Readable; sha256: string; tailSha256: (n: number) => string } {
  const chunk = (i: number, len: number) => {
    const b = Buffer.alloc(len);
    // Cheap but non-repeating: every 4-byte word depends on its chunk and offset.
    for (let o = 0; o + 4 <= len; o += 4) b.writeUInt32LE(((i * 2654435761) ^ (o * 40503) ^ seed) >>> 0, o);
    return b;
  };
  const h = createHash('sha256');
  const chunks = Math.ceil(size / MiB);
  for (let i = 0; i < chunks; i++) h.update(chunk(i, Math.min(MiB, size - i * MiB)));
  return {
    sha256: h.digest('hex'),
    /** sha256 of the last `n` bytes (n ≤ 1 MiB). */
    tailSha256: (n: number) => {
      const last = Math.floor((size - 1) / MiB);
      const bytes = Buffer.concat([
        last > 0 ? chunk(last - 1, MiB) : Buffer.alloc(0),
        chunk(last, Math.min(MiB, size - last * MiB)),
      ]);
      return createHash('sha256')
        .update(bytes.subarray(bytes.length - n))
        .digest('hex');
    },
    stream: () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < chunks; i++) yield chunk(i, Math.min(MiB, size - i * MiB));
        })(),
      ),
  };
}

/** A full garbage collection, so a sample measures what is still referenced, not garbage. */
const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/**
 * Peak growth of live Buffer memory (array buffers after a full GC) while `fn` runs, in bytes,
 * sampled every 50 ms: how much of the file a streaming implementation holds at once.
 */
async function peakBufferGrowth(fn: () => Promise<void>): Promise<number> {
  collectGarbage();
  const base = process.memoryUsage().arrayBuffers;
  let peak = base;
  const sample = () => {
    collectGarbage();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  };
  const timer = setInterval(sample, 50);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return Math.max(0, peak - base);
}

async function expectAppError(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
}

export interface FileStoreConformanceOptions {
  /** Largest Buffer-memory growth allowed while streaming the big file through. Default 48 MiB. */
  maxBufferGrowth?: number;
}

export function runFileStoreConformance(
  name: string,
  open: () => Promise<OpenedFileStore>,
  opts: FileStoreConformanceOptions = {},
): void {
  describe(`FileStore conformance: ${name}`, () => {
    let ctx: OpenedFileStore;
    let files: FileStore;

    beforeEach(async () => {
      ctx = await open();
      files = ctx.store;
    });

    afterEach(async () => {
      await ctx.cleanup();
    });

    it('writes a Buffer and reads the same bytes back, with its stat', async () => {
      const key = userFileKey('user001', 'input', 'a.png');
      const body = Buffer.from('hello, world');
      const s = await files.write(key, body);
      expect(s).toMatchObject({ key, size: body.length });
      expect(s.mtimeMs).toBeGreaterThan(0);
      expect(await readAll(await files.read(key))).toEqual(body);
      expect(await files.stat(key)).toMatchObject({ key, size: body.length });
    });

    it('reads byte ranges: inclusive ends, open ends, clamped past the end, empty past the start', async () => {
      const key = userFileKey('user001', 'output', 'job1', 'clip.mp4');
      const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
      await files.write(key, body);
      const range = async (start: number, end?: number) => readAll(await files.read(key, { start, end }));
      expect(await range(0, 0)).toEqual(body.subarray(0, 1));
      expect(await range(10, 19)).toEqual(body.subarray(10, 20));
      expect(await range(123_456, 234_567)).toEqual(body.subarray(123_456, 234_568));
      expect(await range(299_999, 299_999)).toEqual(body.subarray(299_999));
      expect(await range(250_000)).toEqual(body.subarray(250_000));
      expect(await range(299_000, 10_000_000)).toEqual(body.subarray(299_000));
      expect(await range(300_000)).toEqual(Buffer.alloc(0));
      expect(await range(400_000, 500_000)).toEqual(Buffer.alloc(0));
      await expectAppError(
        files.read(userFileKey('user001', 'output', 'nope.mp4'), { start: 0, end: 9 }),
        'FILE_NOT_FOUND',
      );
    });

    it('writes a stream, and a second write replaces the file', async () => {
      const key = userFileKey('user001', 'output', 'job1', 'img.png');
      await files.write(key, Readable.from([Buffer.from('first '), Buffer.from('version')]));
      expect((await readAll(await files.read(key))).toString()).toBe('first version');
      await files.write(key, Readable.from([Buffer.from('v2')]));
      expect((await readAll(await files.read(key))).toString()).toBe('v2');
      expect((await files.stat(key))?.size).toBe(2);
    });

    it('writes an empty file', async () => {
      const key = userFileKey('user001', 'userdata', 'empty.json');
      expect((await files.write(key, Buffer.alloc(0))).size).toBe(0);
      expect(await readAll(await files.read(key))).toEqual(Buffer.alloc(0));
      expect(await files.list('user001')).toEqual([expect.objectContaining({ key, size: 0 })]);
    });

    it('missing files: stat null, read FILE_NOT_FOUND, delete false, move FILE_NOT_FOUND', async () => {
      const key = userFileKey('user001', 'input', 'nope.png');
      expect(await files.stat(key)).toBeNull();
      await expectAppError(files.read(key), 'FILE_NOT_FOUND');
      expect(await files.delete(key)).toBe(false);
      await expectAppError(files.move(key, userFileKey('user001', 'input', 'x.png')), 'FILE_NOT_FOUND');
    });

    it('a folder is not a file', async () => {
      await files.write(userFileKey('user001', 'input', 'dir', 'a.png'), Buffer.from('a'));
      expect(await files.stat('user001/input/dir')).toBeNull();
      await expectAppError(files.read('user001/input/dir'), 'FILE_NOT_FOUND');
    });

    it('deletes a file', async () => {
      const key = userFileKey('user001', 'temp', 'preview.png');
      await files.write(key, Buffer.from('x'));
      expect(await files.delete(key)).toBe(true);
      expect(await files.stat(key)).toBeNull();
      expect(await files.list('user001')).toEqual([]);
    });

    it('lists recursively under a folder prefix, sorted by key, never beyond the folder', async () => {
      const keys = [
        'user001/input/b.png',
        'user001/input/a.png',
        'user001/input/sub/deeper/c.png',
        'user001/input2/not-me.png',
        'user001/output/j/o.png',
        'user002/input/a.png',
      ];
      for (const k of keys) await files.write(k, Buffer.from(k));
      const listed = await files.list('user001/input');
      expect(listed.map((f) => f.key)).toEqual([
        'user001/input/a.png',
        'user001/input/b.png',
        'user001/input/sub/deeper/c.png',
      ]);
      expect(listed[0]).toMatchObject({ size: 'user001/input/a.png'.length });
      expect((await files.list('user001/input/')).map((f) => f.key)).toEqual(listed.map((f) => f.key));
      expect((await files.list('user001')).map((f) => f.key)).toEqual(
        [...keys.filter((k) => k.startsWith('user001/'))].sort(),
      );
      expect((await files.list('')).map((f) => f.key)).toEqual([...keys].sort());
      expect(await files.list('user003')).toEqual([]);
      expect(await files.list('user001/input/a.png')).toEqual([]);
    });

    it('moves a file (replacing the destination), across folders', async () => {
      const from = userFileKey('user001', 'temp', '.uploads', 'staged');
      const to = userFileKey('user001', 'input', 'sub', 'final.png');
      await files.write(to, Buffer.from('old'));
      await files.write(from, Buffer.from('new content'));
      await files.move(from, to);
      expect(await files.stat(from)).toBeNull();
      expect((await readAll(await files.read(to))).toString()).toBe('new content');
      expect((await files.list('user001')).map((f) => f.key)).toEqual([to]);
    });

    it('keys with spaces, unicode and punctuation round-trip through every operation', async () => {
      const names = [
        'my image (1).png',
        'ünïcødé 日本語 🎨.png',
        "it's+a#b&c=d,e;f@g$h!.png",
        '100% [draft] {x}~^`.json',
      ];
      for (const n of names) {
        const key = userFileKey('user001', 'input', 'fancy dir ✓', n);
        await files.write(key, Buffer.from(n));
        expect((await readAll(await files.read(key))).toString()).toBe(n);
        expect(await files.stat(key)).toMatchObject({ key, size: Buffer.byteLength(n) });
      }
      const listed = (await files.list('user001/input/fancy dir ✓')).map((f) => f.key);
      expect(listed).toEqual(names.map((n) => `user001/input/fancy dir ✓/${n}`).sort());
      // Moves with spaces and unicode in both names.
      const from = userFileKey('user001', 'input', 'fancy dir ✓', 'ünïcødé 日本語 🎨.png');
      const to = userFileKey('user001', 'output', 'ziel ordner', 'bild ä ö.png');
      await files.move(from, to);
      expect((await readAll(await files.read(to))).toString()).toBe('ünïcødé 日本語 🎨.png');
      expect(await files.stat(from)).toBeNull();
      expect(await files.delete(to)).toBe(true);
    });

    it('refuses keys that could leave the store: .., absolute, backslashes, NUL', async () => {
      const bad = [
        'user001/../user002/input/a.png',
        '../outside.txt',
        'user001/input/../../../etc/passwd',
        '/etc/passwd',
        'user001\\input\\a.png',
        'user001/input/a\u0000.png',
        'C:/windows/system32',
      ];
      for (const key of bad) {
        await expectAppError(files.write(key, Buffer.from('x')), 'INVALID_PATH');
        await expectAppError(files.read(key), 'INVALID_PATH');
        await expectAppError(files.stat(key), 'INVALID_PATH');
        await expectAppError(files.delete(key), 'INVALID_PATH');
        await expectAppError(files.list(key), 'INVALID_PATH');
      }
      await files.write('user001/input/ok.png', Buffer.from('ok'));
      await expectAppError(files.move('user001/input/ok.png', '../escaped.png'), 'INVALID_PATH');
      await expectAppError(files.move('../x', 'user001/input/ok2.png'), 'INVALID_PATH');
      expect((await files.list('')).map((f) => f.key)).toEqual(['user001/input/ok.png']);
      expect(() => userFileKey('user001', 'input', '..', 'x')).toThrow(AppError);
      expect(() => userFileKey('../user001', 'input', 'x')).toThrow(AppError);
    });

    it('a failing body stream leaves nothing new behind and keeps the old file', async () => {
      const key = userFileKey('user001', 'output', 'job', 'video.mp4');
      await files.write(key, Buffer.from('previous'));
      const boom = new Error('upload aborted');
      const body = new Readable({ read() {} });
      body.push(Buffer.alloc(64 * 1024, 1));
      setTimeout(() => body.destroy(boom), 20);
      await expect(files.write(key, body)).rejects.toBe(boom);
      expect((await readAll(await files.read(key))).toString()).toBe('previous');
      const fresh = userFileKey('user001', 'output', 'job', 'never.mp4');
      const body2 = new Readable({ read() {} });
      body2.push(Buffer.alloc(1000, 2));
      setTimeout(() => body2.destroy(boom), 20);
      await expect(files.write(fresh, body2)).rejects.toBe(boom);
      expect(await files.stat(fresh)).toBeNull();
      expect((await files.list('user001')).map((f) => f.key)).toEqual([key]);
    });

    it(
      'streams a 64 MiB file in and out with flat memory, bytes identical',
      { timeout: 120_000 },
      async () => {
        const size = 64 * MiB + 12_345;
        const data = generated(size);
        const key = userFileKey('user001', 'output', 'big job', 'video.mp4');
        const writeGrowth = await peakBufferGrowth(async () => {
          const s = await files.write(key, data.stream());
          expect(s.size).toBe(size);
        });
        let read = { sha256: '', size: 0 };
        const readGrowth = await peakBufferGrowth(async () => {
          read = await sha256OfStream(await files.read(key));
        });
        expect(read).toEqual({ sha256: data.sha256, size });
        expect((await files.stat(key))?.size).toBe(size);
        // A range near the end (a seek in a video) reads only those bytes, not the whole file.
        let tail: Buffer = Buffer.alloc(0);
        const rangeGrowth = await peakBufferGrowth(async () => {
          tail = await readAll(await files.read(key, { start: size - 100_000, end: size - 1 }));
        });
        expect(tail.length).toBe(100_000);
        expect(createHash('sha256').update(tail).digest('hex')).toBe(data.tailSha256(100_000));
        expect(rangeGrowth, 'buffer growth while reading the last 100 kB').toBeLessThan(8 * MiB);
        const limit = opts.maxBufferGrowth ?? 48 * MiB;
        expect(writeGrowth, `buffer growth while writing ${size} bytes`).toBeLessThan(limit);
        expect(readGrowth, `buffer growth while reading ${size} bytes`).toBeLessThan(limit);
      },
    );

    it('a body that fails before the store reads it (its client gone at once) rejects, never crashes', async () => {
      // Issue 10: an error emitted while the store was still preparing (making the folder) had
      // no listener yet and killed the process.
      const boom = new Error('client gone');
      for (const delay of [0, 1, 5]) {
        const key = userFileKey('user001', 'temp', `.uploads/${delay}`, 'early.bin');
        const body = new Readable({ read() {} });
        body.push(Buffer.alloc(100, 3));
        if (delay === 0) process.nextTick(() => body.destroy(boom));
        else setTimeout(() => body.destroy(boom), delay);
        await expect(files.write(key, body)).rejects.toBeTruthy();
        expect(await files.stat(key)).toBeNull();
      }
      expect(await files.list('user001')).toEqual([]);
    });

    it('a file and a folder cannot share a name (assertNoNameClash), on every backend', async () => {
      await files.write(userFileKey('user001', 'userdata', 'a.json'), Buffer.from('{}'));
      await files.write(userFileKey('user001', 'userdata', 'dir', 'inner.json'), Buffer.from('{}'));
      const clash = (rel: string) => assertNoNameClash(files, 'user001', 'userdata', rel);
      await expect(clash('a.json/b.json')).rejects.toMatchObject({ code: 'CONFLICT' });
      await expect(clash('a.json/deeper/b.json')).rejects.toMatchObject({ code: 'CONFLICT' });
      await expect(clash('dir')).rejects.toMatchObject({ code: 'CONFLICT' });
      await expect(clash('dir/inner.json')).resolves.toBeUndefined(); // replacing a file is fine
      await expect(clash('dir/new.json')).resolves.toBeUndefined();
      await expect(clash('other/x.json')).resolves.toBeUndefined();
      // Another user's or area's files never clash.
      await expect(assertNoNameClash(files, 'user002', 'userdata', 'a.json/b')).resolves.toBeUndefined();
      await expect(assertNoNameClash(files, 'user001', 'input', 'dir')).resolves.toBeUndefined();
    });

    it('parallel writes of different files all land', async () => {
      const keys = Array.from({ length: 20 }, (_, i) =>
        userFileKey(`user${String(i).padStart(3, '0')}`, 'input', `f${i}.bin`),
      );
      await Promise.all(keys.map((k, i) => files.write(k, Buffer.alloc(1000 + i, i))));
      const listed = await files.list('');
      expect(listed.map((f) => f.key)).toEqual([...keys].sort());
      expect(listed.map((f) => f.size).sort((a, b) => a - b)).toEqual(keys.map((_, i) => 1000 + i));
    });
  });
}
