import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDataDir } from './data-dir-check.js';
import { StartupError, describeStartupError } from './startup-error.js';

const dir = mkdtempSync(join(tmpdir(), 'cm-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sysError = (code: string, path?: string) =>
  Object.assign(new Error(`${code}: boom\n    at x`), { code, path });

describe('describeStartupError', () => {
  it("passes a StartupError's sentence and exit code through", () => {
    expect(describeStartupError(new StartupError('Port taken.', 3))).toEqual({
      message: 'Port taken.',
      exitCode: 3,
    });
  });

  it('turns a full disk and a refused file into one sentence each', () => {
    expect(describeStartupError(sysError('ENOSPC', '/d/x.db')).message).toBe(
      'The disk is full (/d/x.db): free some space and start again.',
    );
    expect(describeStartupError(sysError('SQLITE_FULL')).message).toMatch(/^The disk is full: /);
    expect(describeStartupError(sysError('EACCES', '/d')).message).toMatch(
      /^Permission denied \(\/d\) for user /,
    );
  });

  it('keeps only the first line of anything else', () => {
    const r = describeStartupError(new Error('Redis refused\n    at somewhere (file.js:1:1)'));
    expect(r).toEqual({ message: 'The server could not start: Redis refused', exitCode: 1 });
  });
});

describe('checkDataDir', () => {
  it('creates a missing folder and accepts it', () => {
    expect(() => checkDataDir(join(dir, 'new', 'data'))).not.toThrow();
  });

  it('says when DATA_DIR is a file', () => {
    const file = join(dir, 'file');
    writeFileSync(file, '');
    expect(() => checkDataDir(file)).toThrow(
      new StartupError(`DATA_DIR ${file} is a file, not a folder: point DATA_DIR at a folder.`),
    );
  });

  it('refuses to start on a (nearly) full disk', () => {
    expect(() => checkDataDir(dir, Number.MAX_SAFE_INTEGER)).toThrow(
      /^The disk holding DATA_DIR .* is full \(\d+ MB free, at least \d+ MB needed\): free some space and start again\.$/,
    );
  });
});
