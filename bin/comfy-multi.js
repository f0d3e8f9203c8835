#!/usr/bin/env node
// Thin launcher so `npm start`, `npx comfy-multi` and an installed bin (`npm link`) all run the built CLI.
try {
  await import('../dist/cli/index.js');
} catch (err) {
  // Not built yet (a fresh checkout): one clear sentence instead of a module-resolution stack.
  if (
    err?.code === 'ERR_MODULE_NOT_FOUND' &&
    /Cannot find module '[^']*\/dist\/cli\/index\.js'/.test(String(err.message))
  ) {
    const root = new URL('..', import.meta.url).pathname;
    process.stderr.write(
      `error: comfy-multi is not built yet: run \`npm run build\` (or \`npm start\`) in ${root}\n`,
    );
    process.exit(1);
  }
  throw err;
}
