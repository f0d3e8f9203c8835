#!/usr/bin/env node
// Thin launcher so `npm start`, `npx comfy-multi` and an installed bin all run the built CLI.
// `npm ci` builds dist/ once (the `prepare` script); starting never rebuilds, so a restart takes
// well under the job lease and running jobs are kept.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const entry = new URL('../dist/cli/index.js', import.meta.url);

if (!existsSync(entry)) {
  process.stderr.write(
    'error: comfy-multi is not built yet: run `npm run build` in ' + root + ' (`npm ci` builds it too).\n',
  );
  process.exit(1);
}
warnIfStale();
await import(entry.href);

/** In a checkout, says so when a source file is newer than the build (a developer forgot to build). */
function warnIfStale() {
  const src = new URL('../src/', import.meta.url);
  if (!existsSync(src)) return;
  const built = statSync(entry).mtimeMs;
  const newer = readdirSync(src, { recursive: true, withFileTypes: true }).find(
    (e) =>
      e.isFile() &&
      /\.(ts|tsx|lua|css|html)$/.test(e.name) &&
      !/\.test\.ts$/.test(e.name) &&
      statSync(`${e.parentPath}/${e.name}`).mtimeMs > built,
  );
  if (newer) {
    process.stderr.write(
      `comfy-multi: ${newer.parentPath.slice(root.length)}/${newer.name} is newer than the build in dist/; ` +
        'run `npm run build` to use your changes.\n',
    );
  }
}
