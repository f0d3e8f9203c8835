// Copies the non-TypeScript files the built server reads at run time into dist/.
import { cpSync } from 'node:fs';

for (const dir of ['store/redis/lua']) {
  cpSync(new URL(`../src/${dir}`, import.meta.url), new URL(`../dist/${dir}`, import.meta.url), {
    recursive: true,
  });
}
