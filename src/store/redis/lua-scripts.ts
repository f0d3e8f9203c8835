/**
 * Loads the store's Lua scripts from `lua/` next to this module (bullmq style): a file
 * `verb-<numKeys>.lua` becomes the ioredis command `cm_<verb>` taking `numKeys` KEYS. A line
 * `--- @include "name"` is replaced by `lua/includes/name.lua` (each include at most once).
 *
 * The build must copy `src/store/redis/lua/**\/*.lua` to `dist/store/redis/lua/`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';

export const LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

export interface LuaScript {
  /** `enqueue`, `requeue-expired`, ... */
  verb: string;
  /** The ioredis command name: `cm_enqueue`, `cm_requeue_expired`, ... */
  command: string;
  numberOfKeys: number;
  /** Absolute path of the script file. */
  file: string;
  /** The file's own text, without includes. */
  source: string;
  /** The text sent to Redis, includes inlined. */
  lua: string;
}

const FILE_NAME = /^([a-z][a-z0-9-]*)-(\d+)\.lua$/;
const INCLUDE = /^---\s*@include\s+"([a-z0-9_-]+)"\s*$/gm;

function inlineIncludes(source: string, dir: string, seen: Set<string>): string {
  return source.replace(INCLUDE, (_line, name: string) => {
    if (seen.has(name)) return `-- (include "${name}" already inlined)`;
    seen.add(name);
    const text = readFileSync(path.join(dir, 'includes', `${name}.lua`), 'utf8');
    return `-- begin include "${name}"\n${inlineIncludes(text, dir, seen)}\n-- end include "${name}"`;
  });
}

const cache = new Map<string, LuaScript[]>();

/** Reads every `verb-<numKeys>.lua` in `dir` (cached per directory). */
export function loadLuaScripts(dir: string = LUA_DIR): LuaScript[] {
  const cached = cache.get(dir);
  if (cached) return cached;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.lua'));
  } catch (err) {
    throw new Error(
      `The Redis store's Lua scripts are missing from ${dir}; the build must copy src/store/redis/lua/ next to the compiled redis-store.js.`,
      { cause: err },
    );
  }
  const scripts = names.sort().map((name): LuaScript => {
    const m = FILE_NAME.exec(name);
    if (!m) throw new Error(`Lua script ${name} is not named verb-<numKeys>.lua`);
    const verb = m[1]!;
    const file = path.join(dir, name);
    const source = readFileSync(file, 'utf8');
    return {
      verb,
      command: `cm_${verb.replace(/-/g, '_')}`,
      numberOfKeys: Number(m[2]),
      file,
      source,
      lua: inlineIncludes(source, dir, new Set()),
    };
  });
  // Two files for one verb (say `adopt-9.lua` left in dist/ beside its successor `adopt-10.lua`)
  // would register one command under the other's key count: refuse to start instead.
  const seen = new Map<string, string>();
  for (const s of scripts) {
    const other = seen.get(s.verb);
    if (other)
      throw new Error(
        `Two Lua scripts define ${s.verb} in ${dir}: ${path.basename(other)} and ${path.basename(s.file)}; rebuild (npm run build) so only the current one is there.`,
      );
    seen.set(s.verb, s.file);
  }
  cache.set(dir, scripts);
  return scripts;
}

/** A registered script, called as `run(keys, args)`. */
export type ScriptRunner = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

/** Defines every script on the client (idempotent) and returns a runner per verb. */
export function registerLuaScripts(
  client: Redis,
  scripts: LuaScript[] = loadLuaScripts(),
): Map<string, ScriptRunner> {
  const runners = new Map<string, ScriptRunner>();
  const commands = client as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>;
  for (const s of scripts) {
    if (typeof commands[s.command] !== 'function') {
      client.defineCommand(s.command, { lua: s.lua, numberOfKeys: s.numberOfKeys });
    }
    runners.set(s.verb, (keys, args) => {
      if (keys.length !== s.numberOfKeys) {
        throw new Error(`script ${s.verb} takes ${s.numberOfKeys} keys, got ${keys.length}`);
      }
      return commands[s.command]!.call(client, ...keys, ...args);
    });
  }
  return runners;
}
