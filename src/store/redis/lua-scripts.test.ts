import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { loadLuaScripts } from './lua-scripts.js';

let dir: string | null = null;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

it('refuses two scripts for one verb (a renamed script left behind by an old build)', () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-lua-'));
  writeFileSync(join(dir, 'adopt-9.lua'), 'return 0\n');
  writeFileSync(join(dir, 'adopt-10.lua'), 'return 1\n');
  expect(() => loadLuaScripts(dir!)).toThrow(
    /Two Lua scripts define adopt in .*adopt-10\.lua and adopt-9\.lua/,
  );
});

it('reads one command per verb, with its key count from the file name', () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-lua-'));
  writeFileSync(join(dir, 'adopt-10.lua'), 'return 1\n');
  expect(loadLuaScripts(dir).map((s) => [s.command, s.numberOfKeys])).toEqual([['cm_adopt', 10]]);
});
