// Copies the non-TypeScript files the built server reads at run time into dist/.
import { cpSync, rmSync } from 'node:fs';

for (const dir of ['store/redis/lua']) {
  // Replaced, not merged: a script renamed since the last build (`adopt-9.lua` → `adopt-10.lua`)
  // must not stay behind in dist/.
  rmSync(new URL(`../dist/${dir}`, import.meta.url), { recursive: true, force: true });
  cpSync(new URL(`../src/${dir}`, import.meta.url), new URL(`../dist/${dir}`, import.meta.url), {
    recursive: true,
  });
}
