import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

describe('LocalFileStore specifics', () => {
  it('keeps a given modification time (restores keep galleries in their date order)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-files-'));
    try {
      const files = new LocalFileStore(dir);
      const when = Date.UTC(2024, 5, 1, 12, 0, 0, 250);
      const s = await files.write('user001/output/a.png', Readable.from([Buffer.from('x')]), {
        mtimeMs: when,
      });
      expect(Math.abs(s.mtimeMs - when)).toBeLessThan(1);
      expect(Math.abs((await files.list('user001'))[0]!.mtimeMs - when)).toBeLessThan(1);
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
