import { envSnapshotSchema, type EnvSnapshot } from '../worker/protocol.js';
import type { BlobStore } from '../store/types.js';

/**
 * ComfyUI environment snapshots (object_info, embeddings, model lists, extensions, system_stats)
 * that workers upload, so each participant's ComfyUI can answer those requests even while no GPU
 * is online. Stored as blobs in namespace `env`: key `<sha256>` holds a snapshot as JSON, key
 * `current` holds `{hash, workerId, at}` naming the snapshot of the most recent worker to register.
 */
export const ENV_NAMESPACE = 'env';
export const CURRENT_KEY = 'current';
const HASH_RE = /^[0-9a-f]{64}$/;

export interface CurrentEnvPointer {
  hash: string;
  /** The worker that registered with (or uploaded) it last. */
  workerId: string;
  at: number;
}

export interface CurrentEnv extends CurrentEnvPointer {
  snapshot: EnvSnapshot;
}

/** Parsed snapshots by store, so a busy facade does not re-parse megabytes of object_info. */
const cache = new WeakMap<BlobStore, { hash: string; snapshot: EnvSnapshot }>();

/** Whether a snapshot with this hash is stored (cheap: lists keys, never reads the snapshot). */
export async function hasEnv(store: BlobStore, hash: string): Promise<boolean> {
  if (!HASH_RE.test(hash)) return false;
  const keys = await store.listBlobs(ENV_NAMESPACE, hash);
  return keys.includes(hash);
}

/** Stores a snapshot under its hash. The hash is the agent's (see docs/worker-protocol.md). */
export async function saveEnv(store: BlobStore, hash: string, snapshot: EnvSnapshot): Promise<void> {
  if (!HASH_RE.test(hash)) throw new Error('env snapshot hash must be 64 lower-case hex digits');
  await store.putBlob(ENV_NAMESPACE, hash, JSON.stringify(snapshot));
}

/** The stored snapshot with this hash, or null. */
export async function loadEnv(store: BlobStore, hash: string): Promise<EnvSnapshot | null> {
  if (!HASH_RE.test(hash)) return null;
  const cached = cache.get(store);
  if (cached?.hash === hash) return cached.snapshot;
  const raw = await store.getBlob(ENV_NAMESPACE, hash);
  if (raw === null) return null;
  const parsed = envSnapshotSchema.safeParse(JSON.parse(raw));
  if (!parsed.success) return null;
  cache.set(store, { hash, snapshot: parsed.data });
  return parsed.data;
}

/** Makes `hash` the current environment. */
export async function setCurrentEnv(store: BlobStore, pointer: CurrentEnvPointer): Promise<void> {
  await store.putBlob(ENV_NAMESPACE, CURRENT_KEY, JSON.stringify(pointer));
}

export async function getCurrentEnvPointer(store: BlobStore): Promise<CurrentEnvPointer | null> {
  const raw = await store.getBlob(ENV_NAMESPACE, CURRENT_KEY);
  if (raw === null) return null;
  try {
    const p = JSON.parse(raw) as Partial<CurrentEnvPointer>;
    if (typeof p.hash !== 'string' || !HASH_RE.test(p.hash)) return null;
    return {
      hash: p.hash,
      workerId: typeof p.workerId === 'string' ? p.workerId : '',
      at: typeof p.at === 'number' ? p.at : 0,
    };
  } catch {
    return null;
  }
}

/**
 * The environment of the most recently registered worker, or null when no worker ever uploaded
 * one. One small blob read per call; the parsed snapshot is cached while the hash stays the same.
 */
export async function getCurrentEnv(store: BlobStore): Promise<CurrentEnv | null> {
  const pointer = await getCurrentEnvPointer(store);
  if (!pointer) return null;
  const snapshot = await loadEnv(store, pointer.hash);
  return snapshot ? { ...pointer, snapshot } : null;
}
