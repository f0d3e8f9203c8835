import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { configSchema, type Config } from './schema.js';

/** Configuration problems, one line per bad variable, ready to print. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Reads `.env` (if present) under the real environment, which wins. */
export function readEnv(env: NodeJS.ProcessEnv = process.env, dotenvPath = '.env'): Record<string, string> {
  const fromFile = existsSync(dotenvPath) ? parseEnv(readFileSync(dotenvPath, 'utf8')) : {};
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...fromFile, ...env })) if (typeof v === 'string') merged[k] = v;
  return merged;
}

/** Validates the environment against the schema; empty strings count as unset. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const keys = Object.keys(configSchema.shape);
  const input: Record<string, string> = {};
  for (const k of keys) {
    const v = env[k];
    if (v !== undefined && v !== '') input[k] = v;
  }
  const parsed = configSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    const key = String(i.path[0] ?? 'config');
    // Never echo a secret's value back into logs.
    return `${key}: ${i.message}`;
  });
  throw new ConfigError(problems);
}
