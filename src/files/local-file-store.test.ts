import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runFileStoreConformance } from './file-store.conformance.js';
import { LocalFileStore } from './local-file-store.js';

runFileStoreConformance('local', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-files-'));
  return {
    store: new LocalFileStore(join(dir, 'files')),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

/** Runs `fn` with a store in a fresh folder, removed afterwards. */
async function withStore(fn: (files: LocalFileStore, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-files-'));
  try {
    await fn(new LocalFileStore(dir), dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('LocalFileStore specifics', () => {
  it('keeps a given modification time, streamed or in hand (restores keep galleries in their date order)', () =>
    withStore(async (files) => {
      const when = Date.UTC(2024, 5, 1, 12, 0, 0, 250);
      const bodies: [string, Readable | Buffer][] = [
        ['a.png', Readable.from([Buffer.from('x')])],
        ['b.png', Buffer.from('png')],
      ];
      for (const [name, body] of bodies) {
        const s = await files.write(`user001/output/${name}`, body, { mtimeMs: when });
        expect(Math.abs(s.mtimeMs - when)).toBeLessThan(1);
        expect((await files.stat(`user001/output/${name}`))!.mtimeMs).toBe(s.mtimeMs);
      }
      for (const f of await files.list('user001')) expect(Math.abs(f.mtimeMs - when)).toBeLessThan(1);
    }));

  it('a file where a folder of the name should be: a name clash (409), for bytes in hand and streamed', () =>
    withStore(async (files, dir) => {
      await files.write('user001/output/a', Buffer.from('a file'));
      await expect(files.write('user001/output/a/b.png', Buffer.from('png'))).rejects.toMatchObject({
        code: 'CONFLICT',
      });
      await expect(
        files.write('user001/output/a/c.png', Readable.from([Buffer.from('png')])),
      ).rejects.toMatchObject({ code: 'CONFLICT' });
      expect(readdirSync(join(dir, 'user001', 'output'))).toEqual(['a']);
    }));

  it('writes bytes whose name comes later: never listed before, in place after, nothing left on failure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-files-'));
    try {
      const files = new LocalFileStore(dir);
      let name: (k: string) => void = () => undefined;
      const key = new Promise<string>((r) => (name = r));
      const writing = files.writeLate(key, Readable.from([Buffer.from('late '), Buffer.from('bytes')]));
      // The bytes arrive before the name: nothing under the root is listed meanwhile.
      await new Promise((r) => setTimeout(r, 50));
      expect(await files.list('')).toEqual([]);
      name('user001/output/sub/bar_00007_.png');
      const s = await writing;
      expect(s).toMatchObject({ key: 'user001/output/sub/bar_00007_.png', size: 10 });
      expect(await files.list('')).toEqual([{ key: s.key, size: 10, mtimeMs: s.mtimeMs }]);
      const chunks: Buffer[] = [];
      for await (const c of await files.read(s.key)) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('late bytes');

      // A name that never comes, or one that is not allowed: the write fails and leaves nothing.
      await expect(
        files.writeLate(Promise.reject(new Error('store away')), Readable.from([Buffer.from('x')])),
      ).rejects.toThrow('store away');
      await expect(
        files.writeLate(Promise.resolve('user001/../../etc/x'), Readable.from([Buffer.from('x')])),
      ).rejects.toBeInstanceOf(Error);
      // A failing body, too.
      const broken = new Readable({
        read() {
          this.destroy(new Error('client went away'));
        },
      });
      await expect(files.writeLate(Promise.resolve('user001/output/y.png'), broken)).rejects.toThrow(
        'client went away',
      );
      expect(readdirSync(join(dir, '.incoming'))).toEqual([]);
      expect((await files.list('')).map((f) => f.key)).toEqual([s.key]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes late a body of any size: one at the small-file limit and one past it, chunk by chunk, land intact; one cut off past the limit leaves nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-files-'));
    try {
      const files = new LocalFileStore(dir);
      const bytes = (n: number) =>
        Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (n % 251)) & 0xff));
      // Arrives in 64 KiB pieces, a turn of the event loop apart, as from a socket.
      const socketLike = (b: Buffer, failAt?: number) =>
        Readable.from(
          (async function* () {
            for (let at = 0; at < b.length; at += 65536) {
              if (failAt !== undefined && at >= failAt) throw new Error('client went away');
              await new Promise((r) => setImmediate(r));
              yield b.subarray(at, at + 65536);
            }
          })(),
        );
      for (const n of [1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 + 12345]) {
        const want = bytes(n);
        const s = await files.writeLate(Promise.resolve(`user001/output/f${n}.bin`), socketLike(want));
        expect(s.size).toBe(n);
        const chunks: Buffer[] = [];
        for await (const c of await files.read(s.key)) chunks.push(c as Buffer);
        expect(Buffer.concat(chunks).equals(want)).toBe(true);
      }
      await expect(
        files.writeLate(
          Promise.resolve('user001/output/cut.bin'),
          socketLike(bytes(3 * 1024 * 1024), 2 * 1024 * 1024),
        ),
      ).rejects.toThrow('client went away');
      expect(readdirSync(join(dir, '.incoming'))).toEqual([]);
      expect(await files.stat('user001/output/cut.bin')).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names a folder's own files only: not below it, not partial writes, nothing for a missing folder", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-files-'));
    try {
      const files = new LocalFileStore(dir);
      await files.write('user001/output/a_00001_.png', Buffer.from('x'));
      await files.write('user001/output/b.png', Buffer.from('x'));
      await files.write('user001/output/job/c_00009_.png', Buffer.from('x'));
      writeFileSync(join(dir, 'user001/output/.x.partial'), 'x');
      expect((await files.fileNames('user001/output/')).sort()).toEqual(['a_00001_.png', 'b.png']);
      expect(await files.fileNames('user001/output/nothing')).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
