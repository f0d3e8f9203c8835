import { loadConfig, readEnv, ConfigError } from '../config/load-config.js';
import type { Config } from '../config/schema.js';
import { openStore } from '../store/index.js';
import type { JobStore } from '../store/types.js';

/** Reads and validates config for a command; prints each bad field and exits 2 on error. */
export function cliConfig(): Config {
  try {
    return loadConfig(readEnv());
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Runs `fn` with an open store and closes it afterwards, whatever happens. */
export async function withStore<T>(config: Config, fn: (store: JobStore) => Promise<T>): Promise<T> {
  const store = await openStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Reads all of stdin (for --password-stdin), without the trailing newline. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Prints a client-facing error without a stack trace and exits non-zero. */
export function fail(message: string, code = 1): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}
