/**
 * CLI: `npm run standin -- --port 8188 [--host 127.0.0.1] [--dir /tmp/x] [--delay-ms 1000]
 * [--model checkpoints/sd15.safetensors ...] [--frontend-root <built frontend>] [--templates]
 * [--extension-dir <node name>=<web folder> ...] [--execution-log <file.jsonl>]`. Prints one line `comfyui-standin listening on
 * <url> (data: <dir>)` once ready. A dieMidJob fault exits the process (code 1), like a crash.
 */
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startStandin } from './server.js';

function parseModels(specs: string[]): Record<string, string[]> {
  const models: Record<string, string[]> = {};
  for (const spec of specs) {
    const slash = spec.indexOf('/');
    if (slash <= 0) throw new Error(`--model expects <folder>/<file>, got ${spec}`);
    (models[spec.slice(0, slash)] ??= []).push(spec.slice(slash + 1));
  }
  return models;
}

function parseExtensionDirs(specs: string[]): Record<string, string> {
  const dirs: Record<string, string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1)
      throw new Error(`--extension-dir expects <name>=<folder>, got ${spec}`);
    dirs[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  return dirs;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8188' },
      host: { type: 'string', default: '127.0.0.1' },
      dir: { type: 'string' },
      'delay-ms': { type: 'string' },
      model: { type: 'string', multiple: true, default: [] },
      'frontend-root': { type: 'string' },
      'extension-dir': { type: 'string', multiple: true, default: [] },
      'execution-log': { type: 'string' },
      templates: { type: 'boolean', default: false },
    },
  });
  const standin = await startStandin({
    port: Number(values.port),
    host: values.host,
    ...(values.dir ? { dir: values.dir } : {}),
    ...(values['delay-ms'] ? { delayMs: Number(values['delay-ms']) } : {}),
    models: parseModels(values.model),
    ...(values['frontend-root'] ? { frontendRoot: values['frontend-root'] } : {}),
    extensionDirs: parseExtensionDirs(values['extension-dir']),
    ...(values['execution-log'] ? { executionLog: values['execution-log'] } : {}),
    templates: values.templates === true,
    onCrash: () => {
      console.error('comfyui-standin: simulated crash (dieMidJob), exiting');
      if (!values.dir) rmSync(standin.dirs.root, { recursive: true, force: true }); // our own temp dir
      process.exit(1);
    },
  });
  console.log(`comfyui-standin listening on ${standin.url} (data: ${standin.dirs.root})`);
  const stop = () => void standin.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
