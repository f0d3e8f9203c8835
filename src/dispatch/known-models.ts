/**
 * What the known workers hold, for the submit-time model check: each known worker's environment
 * snapshot (its model lists and object_info). "Known" = the current environment (the most recently
 * registered worker's) and every worker in the registry (connected, or gone for less than
 * WORKER_OFFLINE_RETENTION_MINUTES). With no snapshot at all, nothing is known and nothing is
 * refused.
 */
import { getCurrentEnvPointer, loadEnv } from './env-snapshots.js';
import type { ModelHolder } from '../comfy/model-requirements.js';
import { comboOptions, type NodeDef, type ObjectInfo } from '../comfy/protocol.js';
import type { BlobStore } from '../store/types.js';
import type { EnvSnapshot } from '../worker/protocol.js';

/** Parsed snapshots by hash (loadEnv caches only the latest one; several workers alternate). */
const snapshots = new Map<string, EnvSnapshot>();
const MAX_CACHED = 8;

async function snapshot(store: BlobStore, hash: string): Promise<EnvSnapshot | null> {
  const hit = snapshots.get(hash);
  if (hit) return hit;
  const env = await loadEnv(store, hash);
  if (!env) return null;
  if (snapshots.size >= MAX_CACHED) snapshots.delete(snapshots.keys().next().value!);
  snapshots.set(hash, env);
  return env;
}

/** The worker registry, as far as this needs it (every known worker's environment hash). */
export interface KnownWorkers {
  all?(): readonly { envHash: string | null }[];
}

export interface KnownHolder extends ModelHolder {
  hash: string;
  objectInfo: ObjectInfo;
}

/** The environments of the known workers (distinct snapshots), or of the current one. */
export async function knownModelHolders(
  store: BlobStore,
  workers: KnownWorkers | null,
): Promise<KnownHolder[]> {
  const hashes = new Set<string>();
  // The current environment is the most recently registered worker's: known even when the
  // registry is another process's (several control planes) or has forgotten it.
  const current = await getCurrentEnvPointer(store);
  if (current) hashes.add(current.hash);
  for (const w of workers?.all?.() ?? []) if (w.envHash) hashes.add(w.envHash);
  const out: KnownHolder[] = [];
  for (const hash of hashes) {
    const env = await snapshot(store, hash);
    if (env) out.push({ hash, models: env.models, objectInfo: env.objectInfo as ObjectInfo });
  }
  return out;
}

const merged = new Map<string, ObjectInfo>();

/**
 * `base` with each combo input listing the options any known worker offers, so validating a
 * prompt against it does not refuse a model file that only another worker has.
 */
export function objectInfoOfAllWorkers(base: ObjectInfo, holders: readonly KnownHolder[]): ObjectInfo {
  const others = holders.filter((h) => h.objectInfo !== base);
  if (others.length === 0) return base;
  const key = holders.map((h) => h.hash).join(',');
  const hit = merged.get(key);
  if (hit) return hit;
  const out: ObjectInfo = { ...base };
  for (const [cls, def] of Object.entries(base)) {
    let copy: NodeDef | null = null;
    for (const group of ['required', 'optional'] as const) {
      for (const [input, spec] of Object.entries(def.input[group] ?? {})) {
        const mine = comboOptions(spec);
        if (!mine) continue;
        const all = new Set(mine);
        for (const h of others) {
          const d = h.objectInfo[cls];
          for (const o of comboOptions(d?.input.required?.[input] ?? d?.input.optional?.[input]) ?? [])
            all.add(o);
        }
        if (all.size === mine.length) continue;
        copy ??= { ...def, input: { ...def.input } };
        const options = [...all];
        copy.input[group] = {
          ...copy.input[group],
          [input]: Array.isArray(spec[0])
            ? [options, ...spec.slice(1)]
            : ['COMBO', { ...(spec[1] ?? {}), options }, ...spec.slice(2)],
        } as NonNullable<NodeDef['input'][typeof group]>;
      }
    }
    if (copy) out[cls] = copy;
  }
  if (merged.size >= MAX_CACHED) merged.delete(merged.keys().next().value!);
  merged.set(key, out);
  return out;
}
